//! Typed `--flag` parsing for one instruction, like BuildKit's `BFlags`: declared string,
//! boolean and repeatable flags; unknown, duplicate and value-less flags are errors.

use std::collections::BTreeMap;

use super::error::ParseError;

/// The kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `--name=value`, at most once.
    String,
    /// `--name`, `--name=true|false`, at most once.
    Bool,
    /// `--name=value`, repeatable.
    Strings,
}

/// The parsed flags of one instruction.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl Flags {
    /// Parse `raw` (the node's flags) against the `allowed` declarations.
    pub(crate) fn parse(
        raw: &[String],
        allowed: &[(&'static str, Kind)],
        instruction: &str,
        line: usize,
    ) -> Result<Flags, ParseError> {
        let err = |message: String| ParseError::Flag {
            line,
            instruction: instruction.to_string(),
            message,
        };
        let mut flags = Flags::default();
        for arg in raw {
            let Some(body) = arg.strip_prefix("--") else {
                return Err(err(format!("flag {arg:?} should start with --")));
            };
            if body.is_empty() {
                break;
            }
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(key, kind)) = allowed.iter().find(|(n, _)| *n == name) else {
                let known = if allowed.is_empty() {
                    format!("{instruction} takes no flags")
                } else {
                    let names: Vec<String> =
                        allowed.iter().map(|(n, _)| format!("--{n}")).collect();
                    format!("valid flags are {}", names.join(", "))
                };
                return Err(err(format!("unknown flag: --{name}: {known}")));
            };
            let seen = flags.values.entry(key).or_default();
            if !seen.is_empty() && kind != Kind::Strings {
                return Err(err(format!(
                    "duplicate flag specified: --{name}: give it once"
                )));
            }
            match kind {
                Kind::Bool => {
                    let v = match value.map(str::to_ascii_lowercase).as_deref() {
                        None => "true".to_string(),
                        Some("") => {
                            return Err(err(format!(
                                "missing a value on flag: --{name}: write --{name} or --{name}=true|false"
                            )));
                        }
                        Some(v @ ("true" | "false")) => v.to_string(),
                        Some(_) => {
                            return Err(err(format!(
                                "expecting boolean value for flag --{name}, not: {}: use true or false",
                                value.unwrap_or_default()
                            )));
                        }
                    };
                    seen.push(v);
                }
                Kind::String | Kind::Strings => {
                    let Some(v) = value else {
                        return Err(err(format!(
                            "missing a value on flag: --{name}: write --{name}=<value>"
                        )));
                    };
                    seen.push(v.to_string());
                }
            }
        }
        Ok(flags)
    }

    /// The value of a string flag, if given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.first()).cloned()
    }

    /// The value of a boolean flag (`false` if absent).
    pub(crate) fn bool(&self, name: &str) -> bool {
        self.opt_bool(name).unwrap_or(false)
    }

    /// The value of a boolean flag, `None` if absent.
    pub(crate) fn opt_bool(&self, name: &str) -> Option<bool> {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map(|v| v == "true")
    }

    /// All values of a repeatable flag.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOWED: &[(&str, Kind)] = &[
        ("from", Kind::String),
        ("link", Kind::Bool),
        ("exclude", Kind::Strings),
    ];

    fn parse(raw: &[&str]) -> Result<Flags, ParseError> {
        let raw: Vec<String> = raw.iter().map(|s| s.to_string()).collect();
        Flags::parse(&raw, ALLOWED, "COPY", 7)
    }

    #[test]
    fn values() {
        let f = parse(&["--from=a", "--link", "--exclude=x", "--exclude=y"]).unwrap();
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert!(f.bool("link"));
        assert_eq!(f.strings("exclude"), vec!["x", "y"]);
        assert!(!parse(&["--link=FALSE"]).unwrap().bool("link"));
        assert_eq!(parse(&[]).unwrap().opt_bool("link"), None);
    }

    #[test]
    fn errors() {
        let e = parse(&["--nope=1"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "COPY: unknown flag: --nope: valid flags are --from, --link, --exclude (Dockerfile:7)"
        );
        assert!(
            parse(&["--from=a", "--from=b"])
                .unwrap_err()
                .to_string()
                .contains("duplicate flag specified: --from")
        );
        assert!(
            parse(&["--from"])
                .unwrap_err()
                .to_string()
                .contains("missing a value on flag: --from")
        );
        assert!(
            parse(&["--link=yes"])
                .unwrap_err()
                .to_string()
                .contains("expecting boolean value")
        );
        assert!(
            parse(&["--link="])
                .unwrap_err()
                .to_string()
                .contains("missing a value")
        );
        let none: Vec<String> = vec!["--x".into()];
        assert!(
            Flags::parse(&none, &[], "USER", 1)
                .unwrap_err()
                .to_string()
                .contains("USER takes no flags")
        );
    }
}
