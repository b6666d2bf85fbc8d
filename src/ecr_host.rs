//! ECR registry host names, parsed into [`EcrHost`]; repository references into [`EcrRepository`];
//! Amazon ECR Public references (`public.ecr.aws/<registry alias>/<repository>`) into
//! [`EcrPublicRepository`].
//!
//! The host forms (AWS General Reference, "Amazon ECR endpoints and quotas",
//! <https://docs.aws.amazon.com/general/latest/gr/ecr.html>, and "Making requests to Amazon ECR
//! registries", <https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html>):
//!
//! | form | what |
//! |---|---|
//! | `<account>.dkr.ecr.<region>.amazonaws.com` | IPv4 (commercial, GovCloud by its `us-gov-` region) |
//! | `<account>.dkr.ecr-fips.<region>.amazonaws.com` | FIPS |
//! | `<account>.dkr-ecr.<region>.on.aws` | dual-stack (IPv4 and IPv6) |
//! | `<account>.dkr-ecr-fips.<region>.on.aws` | dual-stack FIPS |
//! | `<account>.dkr.ecr.<region>.amazonaws.com.cn` | China (`aws-cn`) |
//! | `<account>.dkr.ecr.<region>.amazonaws.eu` | European Sovereign Cloud (`aws-eusc`) |
//! | `… .c2s.ic.gov`, `.sc2s.sgov.gov`, `.cloud.adc-e.uk`, `.csp.hci.ic.gov` | the isolated partitions |
//!
//! The partition names and DNS suffixes are those of the AWS SDKs' partition table (aws-sdk-ecr's
//! `endpoint_lib.rs`: `aws-eusc` → `amazonaws.eu`, regions `eusc-de-*`).

// Without the `ecr` feature only the host test (upload sizing) is used.
#![cfg_attr(not(feature = "ecr"), allow(dead_code))]

use std::fmt;

/// Why a string is not an ECR host or repository reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcrHostError {
    /// The host is not an ECR registry host.
    #[error(
        "{host:?} is not an Amazon ECR registry host: expected <12-digit account>.dkr.ecr.<region>.amazonaws.com \
         (or dkr.ecr-fips., .amazonaws.com.cn, .amazonaws.eu, or the dual-stack <account>.dkr-ecr[-fips].<region>.on.aws){}",
        if host.eq_ignore_ascii_case(PUBLIC_HOST) {
            format!("; {PUBLIC_HOST} is Amazon ECR Public, whose repositories are named {PUBLIC_HOST}/<registry alias>/<repository>")
        } else {
            String::new()
        }
    )]
    NotEcr {
        /// The host given.
        host: String,
    },
    /// An ECR Public reference without both a registry alias and a repository.
    #[error(
        "{reference:?} names no Amazon ECR Public repository: expected public.ecr.aws/<registry alias>/<repository>"
    )]
    NoPublicRepository {
        /// The reference given.
        reference: String,
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

/// The Amazon ECR Public registry host.
pub const PUBLIC_HOST: &str = "public.ecr.aws";

/// How to log in to ECR Public by hand, for when ocipush got no ECR Public token itself.
pub const PUBLIC_HINT: &str = "or log in first with `aws ecr-public get-login-password --region us-east-1 | \
     docker login --username AWS --password-stdin public.ecr.aws`";

/// The only region of the ECR Public API (its `GetAuthorizationToken` exists nowhere else).
pub const PUBLIC_REGION: &str = "us-east-1";

/// An ECR registry: account, region, partition, endpoint kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrHost {
    /// The 12-digit account id (the registry id).
    pub account: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The partition: `aws`, `aws-cn`, `aws-us-gov`, `aws-eusc`, `aws-iso`, `aws-iso-b`,
    /// `aws-iso-e`, `aws-iso-f`.
    pub partition: &'static str,
    /// Whether the host is a FIPS endpoint (`dkr.ecr-fips.`, `dkr-ecr-fips.`).
    pub fips: bool,
    /// Whether the host is a dual-stack (IPv4 and IPv6) endpoint (`dkr-ecr[-fips].<region>.on.aws`):
    /// the ECR API is then reached over its dual-stack endpoint too (`ecr.<region>.api.aws`).
    pub dual_stack: bool,
}

/// The IPv4 suffixes and their partitions (the SDK partition table's `dnsSuffix`).
const SUFFIXES: &[(&str, &str)] = &[
    (".amazonaws.com.cn", "aws-cn"),
    (".amazonaws.com", "aws"),
    (".amazonaws.eu", "aws-eusc"),
    (".c2s.ic.gov", "aws-iso"),
    (".sc2s.sgov.gov", "aws-iso-b"),
    (".cloud.adc-e.uk", "aws-iso-e"),
    (".csp.hci.ic.gov", "aws-iso-f"),
];

/// The dual-stack registry suffix (`<account>.dkr-ecr.<region>.on.aws`).
const DUAL_STACK_SUFFIX: &str = ".on.aws";

impl EcrHost {
    /// Parse a registry host (a `:port` suffix is not ECR). Case-insensitive.
    pub fn parse(host: &str) -> Result<EcrHost, EcrHostError> {
        let not = || EcrHostError::NotEcr {
            host: host.to_string(),
        };
        let lower = host.to_ascii_lowercase();
        let (labels, mut partition, dual_stack) =
            if let Some(rest) = lower.strip_suffix(DUAL_STACK_SUFFIX) {
                // <account>.dkr-ecr[-fips].<region>
                (rest.split('.').collect::<Vec<_>>(), "aws", true)
            } else {
                let (rest, partition) = SUFFIXES
                    .iter()
                    .find_map(|(suffix, partition)| {
                        lower.strip_suffix(suffix).map(|rest| (rest, *partition))
                    })
                    .ok_or_else(not)?;
                // <account>.dkr.ecr[-fips].<region>: join "dkr" and "ecr" into one label.
                let mut l: Vec<&str> = rest.split('.').collect();
                if l.len() != 4 || l[1] != "dkr" {
                    return Err(not());
                }
                l.remove(1);
                (l, partition, false)
            };
        let [account, service, region] = labels[..] else {
            return Err(not());
        };
        let fips = match (dual_stack, service) {
            (false, "ecr") | (true, "dkr-ecr") => false,
            (false, "ecr-fips") | (true, "dkr-ecr-fips") => true,
            _ => return Err(not()),
        };
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
            dual_stack,
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
        if self.dual_stack {
            let ecr = if self.fips { "dkr-ecr-fips" } else { "dkr-ecr" };
            return format!("{}.{ecr}.{}{DUAL_STACK_SUFFIX}", self.account, self.region);
        }
        let suffix = SUFFIXES
            .iter()
            .find(|(_, p)| *p == self.partition)
            .map_or(".amazonaws.com", |(s, _)| *s);
        let ecr = if self.fips { "ecr-fips" } else { "ecr" };
        format!("{}.dkr.{ecr}.{}{suffix}", self.account, self.region)
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

/// One Amazon ECR Public repository: `public.ecr.aws/<registry alias>/<name>` (a `:tag` /
/// `@digest` is stripped). The alias names the registry but not the account that owns it, so
/// ARNs take the account from the caller
/// (<https://docs.aws.amazon.com/AmazonECR/latest/public/public-repositories.html>).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrPublicRepository {
    /// The registry alias, e.g. `a1b2c3d4` or a custom alias.
    pub alias: String,
    /// The repository name within the registry, e.g. `app` or `team/app`.
    pub name: String,
}

impl EcrPublicRepository {
    /// Whether `host` is the ECR Public registry host (case-insensitive).
    pub fn is_public_host(host: &str) -> bool {
        host.eq_ignore_ascii_case(PUBLIC_HOST)
    }

    /// Parse `public.ecr.aws/<alias>/<name>[:tag][@digest]`.
    pub fn parse(reference: &str) -> Result<EcrPublicRepository, EcrHostError> {
        let no_repository = || EcrHostError::NoPublicRepository {
            reference: reference.to_string(),
        };
        let (host, path) = reference.split_once('/').ok_or_else(no_repository)?;
        if !Self::is_public_host(host) {
            return Err(EcrHostError::NotEcr {
                host: host.to_string(),
            });
        }
        let path = path.split_once('@').map_or(path, |(p, _)| p);
        let path = match path.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => name,
            _ => path,
        };
        let (alias, name) = path.split_once('/').ok_or_else(no_repository)?;
        if alias.is_empty() || name.is_empty() || name.starts_with('/') || name.ends_with('/') {
            return Err(no_repository());
        }
        Ok(EcrPublicRepository {
            alias: alias.to_string(),
            name: name.to_string(),
        })
    }

    /// `arn:aws:ecr-public::<account>:repository/<name>`: ECR Public ARNs carry no region
    /// (Service Authorization Reference, "Amazon Elastic Container Registry Public",
    /// <https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistrypublic.html>).
    /// `account` is `*` when not known (the alias does not say it).
    pub fn arn(&self, account: Option<&str>) -> String {
        format!(
            "arn:aws:ecr-public::{}:repository/{}",
            account.unwrap_or("*"),
            self.name
        )
    }
}

impl fmt::Display for EcrPublicRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_HOST}/{}/{}", self.alias, self.name)
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
                fips: false,
                dual_stack: false,
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
    fn dual_stack_hosts() {
        // https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html
        let h = EcrHost::parse("123456789012.dkr-ecr.us-east-2.on.aws").unwrap();
        assert_eq!(
            (h.partition, h.region.as_str(), h.fips, h.dual_stack),
            ("aws", "us-east-2", false, true)
        );
        assert_eq!(h.hostname(), "123456789012.dkr-ecr.us-east-2.on.aws");
        assert_eq!(
            h.repository_arn("app"),
            "arn:aws:ecr:us-east-2:123456789012:repository/app"
        );
        let f = EcrHost::parse("123456789012.DKR-ECR-FIPS.us-east-1.on.aws").unwrap();
        assert_eq!((f.fips, f.dual_stack), (true, true));
        assert_eq!(f.hostname(), "123456789012.dkr-ecr-fips.us-east-1.on.aws");
        let g = EcrHost::parse("123456789012.dkr-ecr.us-gov-west-1.on.aws").unwrap();
        assert_eq!(g.partition, "aws-us-gov");
    }

    #[test]
    fn sovereign_and_isolated_partitions() {
        let e = EcrHost::parse("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu").unwrap();
        assert_eq!(
            (e.partition, e.region.as_str()),
            ("aws-eusc", "eusc-de-east-1")
        );
        assert_eq!(
            e.repository_arn("app"),
            "arn:aws-eusc:ecr:eusc-de-east-1:123456789012:repository/app"
        );
        assert_eq!(
            e.hostname(),
            "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu"
        );
        for (host, partition) in [
            (
                "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
                "aws-iso-b",
            ),
            (
                "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
                "aws-iso-e",
            ),
            (
                "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
                "aws-iso-f",
            ),
        ] {
            let h = EcrHost::parse(host).unwrap();
            assert_eq!(h.partition, partition, "{host}");
            assert_eq!(h.hostname(), host);
        }
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
            "123456789012.dkr.ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.on.aws",
            "123456789012.dkr.ecr-fips.us-east-1.on.aws",
            "123456789012.dkr.dkr.ecr.us-east-1.amazonaws.com",
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
        let d = EcrRepository::parse("123456789012.dkr-ecr.eu-west-1.on.aws/team/app:v1").unwrap();
        assert_eq!(
            d.arn(),
            "arn:aws:ecr:eu-west-1:123456789012:repository/team/app"
        );
        // ECR Public is named as such.
        let e = EcrRepository::parse("public.ecr.aws/alias/app:v1").unwrap_err();
        assert!(e.to_string().contains("Amazon ECR Public"), "{e}");
    }

    #[test]
    fn public_repository_reference() {
        let r = EcrPublicRepository::parse("public.ecr.aws/a1b2c3d4/team/app:v1").unwrap();
        assert_eq!(
            (r.alias.as_str(), r.name.as_str()),
            ("a1b2c3d4", "team/app")
        );
        assert_eq!(r.to_string(), "public.ecr.aws/a1b2c3d4/team/app");
        assert_eq!(
            r.arn(Some("123456789012")),
            "arn:aws:ecr-public::123456789012:repository/team/app"
        );
        assert_eq!(r.arn(None), "arn:aws:ecr-public::*:repository/team/app");
        let d = format!("PUBLIC.ECR.AWS/alias/app@sha256:{}", "a".repeat(64));
        assert_eq!(EcrPublicRepository::parse(&d).unwrap().name, "app");
        for bad in [
            "public.ecr.aws/alias",
            "public.ecr.aws/alias/",
            "public.ecr.aws//app",
            "public.ecr.aws",
            "docker.io/library/alpine",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        ] {
            assert!(EcrPublicRepository::parse(bad).is_err(), "{bad}");
        }
    }
}
