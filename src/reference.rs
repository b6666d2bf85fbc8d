//! Image references, `[registry[:port]/]repository[:tag][@digest]`, parsed and normalised the
//! way Docker does it: `alpine` is `docker.io/library/alpine:latest`, `index.docker.io` is
//! `docker.io`, and a first path component is a registry only when it contains `.` or `:` or is
//! `localhost`.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry of references that name none.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag of references that name neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository path (registry excluded) Docker accepts.
const MAX_NAME_LEN: usize = 255;

/// What is wrong with an image reference.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference is empty.
    #[error(
        "invalid image reference: it is empty; write e.g. `alpine:3.20` or `registry.example.com/team/app:1.0`"
    )]
    Empty,
    /// The registry part is not a host name, IP address or `host:port`.
    #[error("invalid image reference {input:?}: registry {registry:?} is not a valid host[:port]")]
    InvalidRegistry {
        /// The whole reference.
        input: String,
        /// The registry part.
        registry: String,
    },
    /// The repository path has upper-case letters.
    #[error("invalid image reference {input:?}: repository {repository:?} must be lowercase")]
    Uppercase {
        /// The whole reference.
        input: String,
        /// The repository part.
        repository: String,
    },
    /// A repository path component is empty or has characters Docker does not allow.
    #[error(
        "invalid image reference {input:?}: repository component {component:?} is invalid: \
         use lowercase letters, digits and single separators (`.`, `_`, `__`, `-`) between them"
    )]
    InvalidRepository {
        /// The whole reference.
        input: String,
        /// The offending component.
        component: String,
    },
    /// The repository path is longer than 255 characters.
    #[error("invalid image reference {input:?}: the repository name is longer than 255 characters")]
    NameTooLong {
        /// The whole reference.
        input: String,
    },
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "invalid image reference {input:?}: tag {tag:?} is invalid: a tag is 1 to 128 of \
         letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
    )]
    InvalidTag {
        /// The whole reference.
        input: String,
        /// The tag.
        tag: String,
    },
    /// The digest after `@` is not a valid digest.
    #[error("invalid image reference {input:?}: {source}")]
    InvalidDigest {
        /// The whole reference.
        input: String,
        /// Why the digest is invalid.
        #[source]
        source: DigestError,
    },
}

/// A parsed, normalised image reference.
///
/// `registry` is the registry as written (except that Docker Hub's aliases become `docker.io`),
/// `repository` the full path (`library/alpine` for Docker Hub official images).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The registry, `host[:port]`.
    pub registry: String,
    /// The repository path inside the registry.
    pub repository: String,
    /// The tag, if one was written.
    pub tag: Option<String>,
    /// The digest, if one was written.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalise `input`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_input = || input.to_string();
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => {
                let digest =
                    d.parse::<Digest>()
                        .map_err(|source| ReferenceError::InvalidDigest {
                            input: err_input(),
                            source,
                        })?;
                (n, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(colon) if last_slash.is_none_or(|s| colon > s) => {
                (&name_tag[..colon], Some(&name_tag[colon + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(ReferenceError::InvalidTag {
                input: err_input(),
                tag: tag.to_string(),
            });
        }
        if name.is_empty() {
            return Err(ReferenceError::InvalidRepository {
                input: err_input(),
                component: String::new(),
            });
        }
        let (registry, repository) = match name.split_once('/') {
            // As Docker: a first component with `.` or `:`, `localhost`, or upper case is a registry.
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_registry(first) {
                    return Err(ReferenceError::InvalidRegistry {
                        input: err_input(),
                        registry: first.to_string(),
                    });
                }
                (normalize_registry(first), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: err_input(),
                repository,
            });
        }
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::InvalidRepository {
                    input: err_input(),
                    component: component.to_string(),
                });
            }
        }
        if repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong { input: err_input() });
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// What to ask the registry for: the digest if any, else the tag, else `latest`.
    pub fn reference_str(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The short form a user would write: Docker Hub's `docker.io/` and `library/` dropped,
    /// any other registry kept as written; the tag and digest as written.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d.as_str());
        }
        out
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The full normalised form: `registry/repository[:tag][@digest]`, with `:latest` when neither
/// a tag nor a digest was given.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        match (&self.tag, &self.digest) {
            (Some(t), _) => write!(f, ":{t}")?,
            (None, None) => write!(f, ":{DEFAULT_TAG}")?,
            _ => {}
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker Hub's aliases become `docker.io`; every other registry is kept as written.
fn normalize_registry(r: &str) -> String {
    if r.eq_ignore_ascii_case("index.docker.io") || r.eq_ignore_ascii_case("docker.io") {
        DOCKER_HUB.to_string()
    } else {
        r.to_string()
    }
}

/// `host[:port]`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `t` is a valid tag: `[\w][\w.-]{0,127}` (the distribution spec's grammar).
pub fn valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalisation_table() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest", "alpine"),
            (
                "alpine:3.20",
                "docker.io/library/alpine:3.20",
                "alpine:3.20",
            ),
            (
                "library/alpine",
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "docker.io/alpine",
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
                "alpine",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            ("localhost/app", "localhost/app:latest", "localhost/app"),
            (
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
                "localhost:5000/a/b:t",
            ),
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest",
                "127.0.0.1:5000/app",
            ),
            ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app"),
            (
                "Registry.Example.com/team/app",
                "Registry.Example.com/team/app:latest",
                "Registry.Example.com/team/app",
            ),
            (
                "foo_bar.com:8080/x__y/a-b--c",
                "foo_bar.com:8080/x__y/a-b--c:latest",
                "",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
            ),
        ];
        for (input, full, familiar) in cases {
            if input.starts_with("foo_bar") {
                // '_' is not valid in a host name.
                assert!(Reference::parse(input).is_err(), "{input}");
                continue;
            }
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digest_and_tag() {
        let r = Reference::parse(&format!("alpine:3@{D}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("3"));
        assert_eq!(r.reference_str(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/alpine:3@{D}"));
        let r = Reference::parse(&format!("localhost:5000/app@{D}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.to_string(), format!("localhost:5000/app@{D}"));
        assert_eq!(Reference::parse("a").unwrap().reference_str(), "latest");
        assert_eq!(Reference::parse("a:v").unwrap().reference_str(), "v");
    }

    #[test]
    fn rejects_bad_input_with_reason() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Uppercase { .. })
        ));
        // An upper-case first component is a registry, as in Docker.
        assert_eq!(Reference::parse("Foo/bar").unwrap().registry, "Foo");
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
        assert!(matches!(
            Reference::parse("a/-b"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
        assert!(matches!(
            Reference::parse("a/b___c"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
        assert!(matches!(
            Reference::parse("a:.bad"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a:"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(matches!(
            Reference::parse(&long_tag),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a@sha256:abc"),
            Err(ReferenceError::InvalidDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("host:port/a"),
            Err(ReferenceError::InvalidRegistry { .. })
        ));
        assert!(matches!(
            Reference::parse(":tag"),
            Err(ReferenceError::InvalidRepository { .. })
        ));
        let long = format!("x/{}", "a".repeat(260));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::NameTooLong { .. })
        ));
        let e = Reference::parse("a/B").unwrap_err().to_string();
        assert!(e.contains("\"a/B\"") && e.contains("lowercase"), "{e}");
    }
}
