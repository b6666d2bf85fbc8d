//! ECR registry host names: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]` (and the
//! isolated partitions), parsed into [`EcrHost`]; repository references into [`EcrRepository`].

use std::fmt;

/// Why a string is not an ECR host or repository reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcrHostError {
    /// The host is not an ECR registry host.
    #[error(
        "{host:?} is not an Amazon ECR registry host: expected <12-digit account>.dkr.ecr.<region>.amazonaws.com \
         (or .amazonaws.com.cn, or dkr.ecr-fips.)"
    )]
    NotEcr {
        /// The host given.
        host: String,
    },
    /// The reference names no repository.
    #[error(
        "{reference:?} names no ECR repository: expected <account>.dkr.ecr.<region>.amazonaws.com/<repository>"
    )]
    NoRepository {
        /// The reference given.
        reference: String,
    },
}

/// An ECR registry: account, region, partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrHost {
    /// The 12-digit account id (the registry id).
    pub account: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, `aws-iso`, `aws-iso-b`.
    pub partition: &'static str,
    /// Whether the host is a FIPS endpoint (`dkr.ecr-fips.`).
    pub fips: bool,
}

const SUFFIXES: &[(&str, &str)] = &[
    (".amazonaws.com.cn", "aws-cn"),
    (".amazonaws.com", "aws"),
    (".c2s.ic.gov", "aws-iso"),
    (".sc2s.sgov.gov", "aws-iso-b"),
];

impl EcrHost {
    /// Parse a registry host (a `:port` suffix is not ECR). Case-insensitive.
    pub fn parse(host: &str) -> Result<EcrHost, EcrHostError> {
        let not = || EcrHostError::NotEcr {
            host: host.to_string(),
        };
        let lower = host.to_ascii_lowercase();
        let (rest, mut partition) = SUFFIXES
            .iter()
            .find_map(|(suffix, partition)| {
                lower.strip_suffix(suffix).map(|rest| (rest, *partition))
            })
            .ok_or_else(not)?;
        let mut labels = rest.split('.');
        let account = labels.next().ok_or_else(not)?;
        let (dkr, ecr, region) = (labels.next(), labels.next(), labels.next());
        if labels.next().is_some() || dkr != Some("dkr") {
            return Err(not());
        }
        let fips = match ecr {
            Some("ecr") => false,
            Some("ecr-fips") => true,
            _ => return Err(not()),
        };
        let region = region.ok_or_else(not)?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not());
        }
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(not());
        }
        if partition == "aws" && region.starts_with("us-gov-") {
            partition = "aws-us-gov";
        }
        Ok(EcrHost {
            account: account.to_string(),
            region: region.to_string(),
            partition,
            fips,
        })
    }

    /// Whether `host` is an ECR registry host.
    pub fn is_ecr(host: &str) -> bool {
        EcrHost::parse(host).is_ok()
    }

    /// `arn:<partition>:ecr:<region>:<account>:repository/<name>`.
    pub fn repository_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:ecr:{}:{}:repository/{}",
            self.partition, self.region, self.account, name
        )
    }

    /// The registry host name, canonical (lower case).
    pub fn hostname(&self) -> String {
        let suffix = match self.partition {
            "aws-cn" => "amazonaws.com.cn",
            "aws-iso" => "c2s.ic.gov",
            "aws-iso-b" => "sc2s.sgov.gov",
            _ => "amazonaws.com",
        };
        let ecr = if self.fips { "ecr-fips" } else { "ecr" };
        format!("{}.dkr.{ecr}.{}.{suffix}", self.account, self.region)
    }
}

impl fmt::Display for EcrHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hostname())
    }
}

/// One repository of an ECR registry: `<host>/<name>` (a `:tag` / `@digest` is stripped).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrRepository {
    /// The registry.
    pub host: EcrHost,
    /// The repository name, e.g. `ec2-ecr-test` or `team/app`.
    pub name: String,
}

impl EcrRepository {
    /// Parse `<account>.dkr.ecr.<region>.amazonaws.com/<name>[:tag][@digest]`.
    pub fn parse(reference: &str) -> Result<EcrRepository, EcrHostError> {
        let (host, path) = reference
            .split_once('/')
            .ok_or_else(|| EcrHostError::NoRepository {
                reference: reference.to_string(),
            })?;
        let host = EcrHost::parse(host)?;
        let path = path.split_once('@').map_or(path, |(p, _)| p);
        let name = match path.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => path,
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
            return Err(EcrHostError::NoRepository {
                reference: reference.to_string(),
            });
        }
        Ok(EcrRepository {
            host,
            name: name.to_string(),
        })
    }

    /// The repository ARN.
    pub fn arn(&self) -> String {
        self.host.repository_arn(&self.name)
    }
}

impl fmt::Display for EcrRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commercial() {
        let h = EcrHost::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            h,
            EcrHost {
                account: "123456789012".into(),
                region: "us-east-1".into(),
                partition: "aws",
                fips: false
            }
        );
        assert_eq!(
            h.repository_arn("ec2-ecr-test"),
            "arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test"
        );
        assert_eq!(h.hostname(), "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    }

    #[test]
    fn china() {
        let h = EcrHost::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap();
        assert_eq!((h.partition, h.region.as_str()), ("aws-cn", "cn-north-1"));
        assert_eq!(
            h.repository_arn("a/b"),
            "arn:aws-cn:ecr:cn-north-1:123456789012:repository/a/b"
        );
        assert_eq!(
            h.hostname(),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn govcloud_and_fips() {
        let h = EcrHost::parse("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com").unwrap();
        assert_eq!((h.partition, h.fips), ("aws-us-gov", false));
        let f = EcrHost::parse("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").unwrap();
        assert_eq!((f.partition, f.fips), ("aws-us-gov", true));
        assert_eq!(
            f.hostname(),
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"
        );
        let c = EcrHost::parse("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com").unwrap();
        assert_eq!((c.partition, c.fips), ("aws", true));
        let iso = EcrHost::parse("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov").unwrap();
        assert_eq!(iso.partition, "aws-iso");
    }

    #[test]
    fn not_ecr() {
        for h in [
            "docker.io",
            "localhost:5000",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com:443",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.amazonaws.com",
            "123456789012.ecr.us-east-1.amazonaws.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "public.ecr.aws",
            "",
        ] {
            assert!(EcrHost::parse(h).is_err(), "{h}");
        }
    }

    #[test]
    fn repository_reference() {
        let r = EcrRepository::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:v1")
            .unwrap();
        assert_eq!(r.name, "team/app");
        assert_eq!(
            r.arn(),
            "arn:aws:ecr:us-east-1:123456789012:repository/team/app"
        );
        let d = format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:{}",
            "a".repeat(64)
        );
        assert_eq!(EcrRepository::parse(&d).unwrap().name, "app");
        assert!(EcrRepository::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").is_err());
        assert!(EcrRepository::parse("docker.io/library/alpine").is_err());
    }
}
