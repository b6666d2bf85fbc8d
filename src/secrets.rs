//! Build secrets (`--secret id=ID[,src=PATH|,env=VAR][,type=file|env]`): where each one's
//! content comes from, for `RUN --mount=type=secret`. The syntax and lookup are buildx's
//! (`util/buildflags/secrets.go` parses, BuildKit's `secretsprovider.NewStore` resolves):
//!
//! - fields are `key=value` (`type`, `id`, `src`/`source`, `env`); `type=env` makes `src` the
//!   variable's name;
//! - with neither `src` nor `env`, the environment variable named like the id is used when it
//!   is set, else the file named like the id;
//! - a file must exist when the build starts and hold at most [`MAX_SECRET_SIZE`] bytes;
//! - a later `--secret` with the same id replaces an earlier one.
//!
//! Only where a secret comes from is kept here: its content is read when a RUN mounts it,
//! registered with [`crate::auth::redact`] then, and never logged, cached, or put in an error.

use std::path::PathBuf;

/// BuildKit's limit on a secret's size (`secretsprovider.MaxSecretSize`, 500 KiB).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Where one secret's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file on the build host.
    File(PathBuf),
    /// An environment variable of the ocipush process.
    Env(String),
}

/// The build's secrets by id (no content: see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildSecrets {
    entries: Vec<(String, SecretSource)>,
}

/// Why a `--secret` or a secret's content was refused. Never holds the content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The `--secret` value is malformed.
    #[error("invalid --secret {given:?}: {why}")]
    Invalid {
        /// The value as given.
        given: String,
        /// What is wrong.
        why: String,
    },
    /// The secret's file cannot be read.
    #[error("secret {id}: cannot read {}: {source}", path.display())]
    Read {
        /// The secret's id.
        id: String,
        /// Its file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The secret is larger than BuildKit allows.
    #[error(
        "secret {id} is {size} bytes, more than the {MAX_SECRET_SIZE} bytes a build secret may hold"
    )]
    TooLarge {
        /// The secret's id.
        id: String,
        /// Its size.
        size: u64,
    },
}

impl BuildSecrets {
    /// Parse `--secret` values (buildx's syntax), checking files as BuildKit's store does.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Result<BuildSecrets, SecretError> {
        Self::parse_with(values, &|k| std::env::var_os(k).is_some())
    }

    fn parse_with<S: AsRef<str>>(
        values: &[S],
        env_set: &dyn Fn(&str) -> bool,
    ) -> Result<BuildSecrets, SecretError> {
        let mut out = BuildSecrets::default();
        for v in values {
            let v = v.as_ref();
            if v.is_empty() {
                continue;
            }
            let bad = |why: String| SecretError::Invalid {
                given: v.to_string(),
                why,
            };
            let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
            for field in v.split(',') {
                let Some((k, val)) = field.split_once('=') else {
                    return Err(bad(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                };
                match k.to_ascii_lowercase().as_str() {
                    "type" if val == "file" || val == "env" => typ = Some(val.to_string()),
                    "type" => return Err(bad(format!("unsupported secret type {val:?}"))),
                    "id" => id = Some(val.to_string()),
                    "source" | "src" => src = Some(val.to_string()),
                    "env" => env = Some(val.to_string()),
                    _ => return Err(bad(format!("unexpected key '{k}' in '{field}'"))),
                }
            }
            if typ.as_deref() == Some("env") && env.as_deref().unwrap_or("").is_empty() {
                env = src.take();
            }
            let id = match id {
                Some(id) if !id.is_empty() => id,
                _ => return Err(bad("secret missing ID (id=…)".into())),
            };
            let source = match (env.filter(|e| !e.is_empty()), src.filter(|s| !s.is_empty())) {
                (Some(e), _) => SecretSource::Env(e),
                (None, Some(s)) => SecretSource::File(PathBuf::from(s)),
                (None, None) if env_set(&id) => SecretSource::Env(id.clone()),
                (None, None) => SecretSource::File(PathBuf::from(&id)),
            };
            if let SecretSource::File(path) = &source {
                let meta = std::fs::metadata(path).map_err(|source| SecretError::Read {
                    id: id.clone(),
                    path: path.clone(),
                    source,
                })?;
                if meta.len() > MAX_SECRET_SIZE {
                    return Err(SecretError::TooLarge {
                        id,
                        size: meta.len(),
                    });
                }
            }
            out.entries.retain(|(i, _)| *i != id);
            out.entries.push((id, source));
        }
        Ok(out)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where secret `id` comes from.
    pub fn source(&self, id: &str) -> Option<&SecretSource> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, s)| s)
    }

    /// The content of secret `id` (`None`: no such secret), registered with the redaction
    /// of log lines. An unset variable is an empty secret, as in BuildKit.
    pub fn read(&self, id: &str) -> Result<Option<Vec<u8>>, SecretError> {
        let data = match self.source(id) {
            None => return Ok(None),
            Some(SecretSource::Env(var)) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .unwrap_or_default(),
            Some(SecretSource::File(path)) => {
                let read_err = |source| SecretError::Read {
                    id: id.to_string(),
                    path: path.clone(),
                    source,
                };
                use std::io::Read;
                let f = std::fs::File::open(path).map_err(read_err)?;
                let mut data = Vec::new();
                f.take(MAX_SECRET_SIZE + 1)
                    .read_to_end(&mut data)
                    .map_err(read_err)?;
                if data.len() as u64 > MAX_SECRET_SIZE {
                    return Err(SecretError::TooLarge {
                        id: id.to_string(),
                        size: data.len() as u64,
                    });
                }
                data
            }
        };
        if let Ok(text) = std::str::from_utf8(&data) {
            crate::auth::redact::register(text);
            let trimmed = text.trim();
            if trimmed != text {
                crate::auth::redact::register(trimmed);
            }
        }
        Ok(Some(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildx_syntax_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tok");
        std::fs::write(&file, "file-secret-value").unwrap();
        let f = file.display().to_string();
        let env_set = |k: &str| k == "FROM_ENV";
        let s = BuildSecrets::parse_with(
            &[
                format!("id=a,src={f}"),
                "id=b,env=HOME".to_string(),
                "type=env,id=c,src=PATH".to_string(),
                "id=FROM_ENV".to_string(),
                format!("id=a,source={f},type=file"),
                String::new(),
            ],
            &env_set,
        )
        .unwrap();
        assert_eq!(s.source("a"), Some(&SecretSource::File(file.clone())));
        assert_eq!(s.source("b"), Some(&SecretSource::Env("HOME".into())));
        assert_eq!(s.source("c"), Some(&SecretSource::Env("PATH".into())));
        assert_eq!(
            s.source("FROM_ENV"),
            Some(&SecretSource::Env("FROM_ENV".into()))
        );
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.read("a").unwrap().unwrap(), b"file-secret-value");
        assert!(s.read("missing").unwrap().is_none());
        // Registered for redaction once read.
        assert_eq!(
            crate::auth::redact::scrub("x file-secret-value y"),
            "x <redacted> y"
        );
        // Neither src nor env, no such variable: the file named like the id.
        let e = BuildSecrets::parse_with(&["id=/no/such/file"], &env_set).unwrap_err();
        assert!(
            e.to_string().contains("secret /no/such/file: cannot read"),
            "{e}"
        );
    }

    #[test]
    fn refusals() {
        for (v, want) in [
            ("src=/x", "secret missing ID"),
            ("id=a,type=ssh", "unsupported secret type \"ssh\""),
            ("id=a,bogus=1", "unexpected key 'bogus'"),
            ("id=a,nokey", "must be a key=value pair"),
        ] {
            let e = BuildSecrets::parse_with(&[v], &|_| false).unwrap_err();
            assert!(e.to_string().contains(want), "{v}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let e = BuildSecrets::parse_with(&[format!("id=big,src={}", big.display())], &|_| false)
            .unwrap_err();
        assert!(matches!(e, SecretError::TooLarge { .. }), "{e}");
    }
}
