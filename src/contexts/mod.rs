//! BuildKit's named build contexts: `--build-context NAME=VALUE` (frontend/dockerui
//! `namedcontext.go`, `config.go` `NamedContext`; dockerfile2llb `convert.go`).
//!
//! A named context stands in for what a name would otherwise resolve to:
//! - `FROM NAME`: the image `NAME` (`docker-image://REF` pulls REF instead,
//!   `oci-layout://DIR[:TAG|@DIGEST]` reads an OCI image layout on disk, a directory makes an
//!   image whose filesystem is that directory, as BuildKit's local context does);
//! - a stage `AS NAME`: the whole stage (its instructions are not run);
//! - `COPY --from=NAME`: an image context is read like `COPY --from=<image>`, a directory is
//!   a build context of its own (its `.dockerignore` applies, as BuildKit reads it unless
//!   told not to).
//!
//! Names are matched as BuildKit matches them: normalised like an image reference, in lower
//! case, `docker.io/library/` and `:latest` dropped (`Alpine`, `alpine:latest` and
//! `docker.io/library/alpine` are one name). `scratch` and `context` are never looked up.
//! Git and HTTP contexts are refused: ocipush neither clones nor downloads build contexts.
//!
//! - [`parse`](NamedContexts::parse): the CLI's and library's `NAME=VALUE` strings;
//! - [`layout`]: an image out of an OCI layout directory;
//! - [`resolve`]: a base image for `FROM`, from any kind of context.

mod error;
mod layout;
mod resolve;

use std::path::PathBuf;

pub use error::ContextError;
pub use resolve::{ResolveEnv, resolve_base};

use crate::digest::Digest;
use crate::reference::Reference;

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A local directory.
    Dir(PathBuf),
    /// `docker-image://REF`: an image in a registry.
    Image(String),
    /// `oci-layout://DIR[:TAG|@DIGEST]`: an image in an OCI layout on disk.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// Which of its images.
        reference: LayoutRef,
    },
}

/// Which image of an OCI layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutRef {
    /// `latest`, else the only image in `index.json`.
    Default,
    /// The image tagged so (`org.opencontainers.image.ref.name`).
    Tag(String),
    /// The manifest or index with this digest.
    Digest(Digest),
}

/// One `--build-context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    /// The name, normalised ([`normalize_name`]).
    pub name: String,
    /// The name as given.
    pub given: String,
    /// What it is.
    pub source: ContextSource,
}

/// Every `--build-context` of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContexts {
    list: Vec<NamedContext>,
}

/// `name` as BuildKit keys named contexts: lower case, parsed as an image reference, in its
/// familiar form (`docker.io/library/` dropped), without `:latest`. `None` when it is not a
/// valid reference.
pub fn normalize_name(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let r = Reference::parse(&lower).ok()?;
    let familiar = r.familiar();
    Some(match familiar.strip_suffix(":latest") {
        Some(s) if r.digest.is_none() => s.to_string(),
        _ => familiar,
    })
}

impl NamedContexts {
    /// Parse `NAME=VALUE` strings (`--build-context`). A directory must exist.
    pub fn parse<I, S>(items: I) -> Result<NamedContexts, ContextError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<NamedContext> = Vec::new();
        for item in items {
            let item = item.as_ref();
            let nc = parse_one(item)?;
            if let Some(prev) = list.iter().find(|c| c.name == nc.name) {
                return Err(ContextError::Invalid {
                    given: item.to_string(),
                    reason: format!(
                        "the name {:?} is given twice (also as {:?}); give each context once",
                        nc.given, prev.given
                    ),
                });
            }
            list.push(nc);
        }
        Ok(NamedContexts { list })
    }

    /// Add a context made in code (by [`crate::builder`]); its name must be new.
    pub(crate) fn push(&mut self, context: NamedContext) {
        self.list.push(context);
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every context, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &NamedContext> {
        self.list.iter()
    }

    /// The context `name` (a FROM image, a stage name, a `--from` value) refers to.
    pub fn get(&self, name: &str) -> Option<&NamedContext> {
        // dockerfile2llb never looks these two up (convert.go `namedContextFunc`).
        if self.list.is_empty()
            || name.eq_ignore_ascii_case("scratch")
            || name.eq_ignore_ascii_case("context")
        {
            return None;
        }
        let key = normalize_name(name)?;
        self.list.iter().find(|c| c.name == key)
    }
}

fn parse_one(item: &str) -> Result<NamedContext, ContextError> {
    let invalid = |reason: String| ContextError::Invalid {
        given: item.to_string(),
        reason,
    };
    let (given, value) = item.split_once('=').ok_or_else(|| {
        invalid("expected NAME=VALUE, e.g. base=docker-image://alpine:3.20".into())
    })?;
    let name = normalize_name(given).ok_or_else(|| {
        invalid(format!(
            "{given:?} is not a valid context name: use what FROM or COPY --from names (lower-case letters, digits, '.', '_', '-', '/', an optional :tag)"
        ))
    })?;
    if name == "scratch" || name == "context" {
        return Err(invalid(format!(
            "{name:?} cannot be a context name: BuildKit never looks it up"
        )));
    }
    if value.is_empty() {
        return Err(invalid(
            "the value is empty: give a directory, docker-image://REF or oci-layout://DIR".into(),
        ));
    }
    let source = parse_value(value).map_err(invalid)?;
    Ok(NamedContext {
        name,
        given: given.to_string(),
        source,
    })
}

fn parse_value(value: &str) -> Result<ContextSource, String> {
    if let Some(r) = value.strip_prefix("docker-image://") {
        Reference::parse(r).map_err(|e| e.to_string())?;
        return Ok(ContextSource::Image(r.to_string()));
    }
    if let Some(rest) = value.strip_prefix("oci-layout://") {
        return parse_layout(rest);
    }
    let scheme = value
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if value.starts_with("git@") || matches!(scheme.as_deref(), Some("git" | "ssh")) {
        return Err(
            "git contexts are not supported: ocipush does not clone repositories; clone it and give the directory".into(),
        );
    }
    if matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(
            "URL contexts are not supported: ocipush does not download build contexts; download and unpack it, and give the directory".into(),
        );
    }
    if let Some(s) = scheme {
        return Err(format!(
            "{s}:// contexts are not supported: give a directory, docker-image://REF or oci-layout://DIR[:TAG|@DIGEST]"
        ));
    }
    if value.starts_with("input:") {
        return Err("input: contexts exist only inside BuildKit; give a directory".into());
    }
    let dir = PathBuf::from(value);
    if !dir.is_dir() {
        return Err(format!(
            "{} is not a directory (a named context is a directory, docker-image://REF or oci-layout://DIR)",
            dir.display()
        ));
    }
    Ok(ContextSource::Dir(dir))
}

/// `DIR`, `DIR:TAG` (the `:` after the last `/`) or `DIR@sha256:…`.
fn parse_layout(rest: &str) -> Result<ContextSource, String> {
    let (dir, reference) = if let Some((d, digest)) = rest.rsplit_once('@') {
        let digest = digest
            .parse::<Digest>()
            .map_err(|e| format!("oci-layout://{rest}: {e}"))?;
        (d, LayoutRef::Digest(digest))
    } else {
        let last_slash = rest.rfind('/');
        match rest.rfind(':') {
            Some(c) if last_slash.is_none_or(|s| c > s) && c > 0 => {
                let tag = &rest[c + 1..];
                if tag.is_empty() || tag.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                    return Err(format!("oci-layout://{rest}: {tag:?} is not a valid tag"));
                }
                (&rest[..c], LayoutRef::Tag(tag.to_string()))
            }
            _ => (rest, LayoutRef::Default),
        }
    };
    if dir.is_empty() {
        return Err("oci-layout:// needs a directory: oci-layout://DIR[:TAG|@DIGEST]".into());
    }
    Ok(ContextSource::Layout {
        dir: PathBuf::from(dir),
        reference,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_normalise_like_references() {
        assert_eq!(normalize_name("alpine").as_deref(), Some("alpine"));
        assert_eq!(normalize_name("Alpine:latest").as_deref(), Some("alpine"));
        assert_eq!(
            normalize_name("docker.io/library/alpine:3.20").as_deref(),
            Some("alpine:3.20")
        );
        assert_eq!(
            normalize_name("127.0.0.1:5000/x/y").as_deref(),
            Some("127.0.0.1:5000/x/y")
        );
        assert_eq!(normalize_name("not valid!"), None);
    }

    #[test]
    fn values_parse() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let cs = NamedContexts::parse([
            format!("Src={d}"),
            "base=docker-image://alpine:3.20".to_string(),
            format!("lay=oci-layout://{d}/l:v1"),
            format!("lay2=oci-layout://{d}/l@sha256:{}", "a".repeat(64)),
            format!("lay3=oci-layout://{d}"),
        ])
        .unwrap();
        assert_eq!(
            cs.get("SRC").unwrap().source,
            ContextSource::Dir(dir.path().into())
        );
        assert_eq!(
            cs.get("docker.io/library/base:latest").unwrap().source,
            ContextSource::Image("alpine:3.20".into())
        );
        assert_eq!(
            cs.get("lay").unwrap().source,
            ContextSource::Layout {
                dir: dir.path().join("l"),
                reference: LayoutRef::Tag("v1".into())
            }
        );
        assert!(matches!(
            cs.get("lay2").unwrap().source,
            ContextSource::Layout {
                reference: LayoutRef::Digest(_),
                ..
            }
        ));
        assert!(matches!(
            cs.get("lay3").unwrap().source,
            ContextSource::Layout {
                reference: LayoutRef::Default,
                ..
            }
        ));
        assert!(cs.get("scratch").is_none());
        assert!(cs.get("other").is_none());

        for (bad, want) in [
            ("noequals", "expected NAME=VALUE"),
            ("x=https://example.com/ctx.tar", "does not download"),
            ("x=git@github.com:o/r.git", "does not clone"),
            ("x=https://github.com/o/r.git", "does not download"),
            ("x=/definitely/not/here", "is not a directory"),
            ("x=docker-image://UPPER/Case", "lowercase"),
            ("x=oci-layout://", "needs a directory"),
            ("bad name=docker-image://alpine", "not a valid context name"),
            ("scratch=docker-image://alpine", "never looks it up"),
        ] {
            let e = NamedContexts::parse([bad]).unwrap_err().to_string();
            assert!(
                e.to_lowercase().contains(&want.to_lowercase()),
                "{bad}: {e}"
            );
        }
        let e = NamedContexts::parse(["a=docker-image://x", "A=docker-image://y"]).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
