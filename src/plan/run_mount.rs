//! `RUN --mount=…`: each value parsed and checked as BuildKit's Dockerfile frontend does
//! (`frontend/dockerfile/instructions/commands_runmount.go`, `parseMount`), with its defaults
//! filled in as `dockerfile2llb/convert_runmount.go` (`dispatchRunMounts`) and
//! `convert_secrets.go` (`dispatchSecret`) fill them:
//!
//! - the value is CSV (`go-csvvalue`): `key=value` fields, and the bare flags `ro`/`readonly`,
//!   `rw`/`readwrite` and (secret, ssh) `required`; keys are case-insensitive;
//! - `type` defaults to `bind`; bind and secret mounts are read-only unless `rw`, cache and
//!   tmpfs mounts read-write unless `ro`;
//! - `mode`/`uid`/`gid` only for cache, secret and ssh mounts; `sharing` only for cache;
//!   `size` only for tmpfs; `required` only for secret and ssh;
//! - values are expanded with the stage's ARG/ENV, except `from`, which may hold no variable;
//! - a relative target is joined to the working directory; `/` is not a target;
//! - a cache's id defaults to its (cleaned) target; a secret's id to the basename of its
//!   target, its target (unless it is exposed with `env=` only) to `/run/secrets/<id>`.
//!
//! `type=ssh` is refused (no SSH agent forwarding). A cache's `source` needs a `from` (without
//! one the cache starts empty, so there is nothing to take it from).

use crate::plan::CopyFrom;

/// How RUNs share a cache mount (`sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    /// Every RUN uses the same directory at once (the default).
    Shared,
    /// A RUN finding the directory in use gets another one.
    Private,
    /// One RUN at a time; the others wait.
    Locked,
}

impl CacheSharing {
    /// The name as written in a Dockerfile.
    #[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(dead_code))]
    pub fn name(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// One `--mount` of a `RUN`, checked, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// `type=bind`: files of the build context, a stage or an image.
    Bind {
        /// Absolute path in the image.
        target: String,
        /// Path in the source (`/`-rooted; `/` for all of it).
        source: String,
        /// `None`: the build context.
        from: Option<CopyFrom>,
        /// `rw`: writable, writes discarded after the RUN.
        readwrite: bool,
    },
    /// `type=cache`: a directory kept across RUNs and builds, keyed by `id`.
    Cache {
        /// Absolute path in the image.
        target: String,
        /// `from=`: what a new cache starts with (`source` of it); `None`: empty.
        from: Option<CopyFrom>,
        /// Path in `from` (`/`-rooted).
        source: String,
        /// The cache's id.
        id: String,
        /// `sharing=`.
        sharing: CacheSharing,
        /// Permission bits of the directory when it is made.
        mode: u32,
        /// Owner of the directory when it is made.
        uid: u32,
        /// Group of the directory when it is made.
        gid: u32,
        /// `ro`.
        readonly: bool,
    },
    /// `type=tmpfs`: an empty memory filesystem.
    Tmpfs {
        /// Absolute path in the image.
        target: String,
        /// `size=` in bytes (`None`: the kernel's default).
        size: Option<u64>,
    },
    /// `type=secret`: a `--secret` of the build, as a file and/or an environment variable.
    Secret {
        /// The secret's id.
        id: String,
        /// Where the file goes (`None`: only `env`).
        target: Option<String>,
        /// `env=NAME`: the content as this environment variable.
        env: Option<String>,
        /// `required`: a missing secret fails the RUN (else the mount is left out).
        required: bool,
        /// The file's permission bits.
        mode: u32,
        /// The file's owner.
        uid: u32,
        /// The file's group.
        gid: u32,
    },
}

impl RunMount {
    /// Where it is mounted in the image (`None`: a secret exposed as a variable only).
    pub fn target(&self) -> Option<&str> {
        match self {
            RunMount::Bind { target, .. }
            | RunMount::Cache { target, .. }
            | RunMount::Tmpfs { target, .. } => Some(target),
            RunMount::Secret { target, .. } => target.as_deref(),
        }
    }
}

/// Why a `--mount` value was refused (the caller adds the line).
#[derive(Debug)]
pub(crate) enum MountError {
    /// Expanding a value or resolving `from` failed.
    Plan(super::PlanError),
    /// Not valid (BuildKit refuses it too).
    Invalid(String),
    /// Valid, not supported by ocipush.
    Unsupported {
        what: &'static str,
        why: &'static str,
        fix: &'static str,
    },
}

/// What [`parse_mount`] needs from the planner.
pub(crate) struct MountAt<'a> {
    /// The working directory (absolute), for relative targets.
    pub(crate) workdir: &'a str,
    /// Expands a value with the stage's ARG/ENV.
    pub(crate) expand: &'a dyn Fn(&str) -> Result<String, super::PlanError>,
    /// Resolves `from=` to a stage or an image.
    pub(crate) from: &'a dyn Fn(&str) -> Result<CopyFrom, super::PlanError>,
}

/// The fields as BuildKit's `parseMount` reads them, before defaults.
#[derive(Default)]
struct Raw {
    kind: Option<String>,
    from: Option<String>,
    source: Option<String>,
    target: Option<String>,
    readonly: Option<bool>,
    size: Option<u64>,
    id: Option<String>,
    sharing: Option<CacheSharing>,
    required: bool,
    env: Option<String>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn invalid(m: impl Into<String>) -> MountError {
    MountError::Invalid(m.into())
}

/// `strconv.ParseBool`.
fn parse_bool(key: &str, v: &str) -> Result<bool, MountError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(invalid(format!("invalid value for {key}: {v}"))),
    }
}

/// `go-units`' `RAMInBytes`: a number with an optional binary unit (b, k, m, g, t, p, with
/// an optional `b`/`ib`), case-insensitive.
fn ram_in_bytes(v: &str) -> Option<u64> {
    let s = v.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "p" | "pb" | "pib" => 1 << 50,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

/// Split a CSV record as Go's `encoding/csv` (which `go-csvvalue` follows) does: fields
/// separated by commas, a field starting with `"` quoted (`""` inside is a quote).
fn csv_fields(s: &str) -> Result<Vec<String>, MountError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(invalid("failed to parse csv mounts: unterminated quote")),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => {
                    return Err(invalid(
                        "failed to parse csv mounts: extraneous character after a quoted field",
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

const ALL_KEYS: &str = "type, from, source, target, readonly, id, sharing, required, size, mode, uid, gid, src, dst, destination, ro, rw, readwrite, env";

fn read_fields(val: &str, at: &MountAt<'_>) -> Result<Raw, MountError> {
    let mut raw = Raw::default();
    for field in csv_fields(val)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let kind = raw.kind.clone().unwrap_or_else(|| "bind".into());
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => raw.readonly = Some(true),
                "readwrite" | "rw" => raw.readonly = Some(false),
                "required" if kind == "secret" || kind == "ssh" => raw.required = true,
                "required" => {
                    return Err(invalid(format!(
                        "unexpected key 'required' for mount type '{kind}'"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "invalid field '{field}' must be a key=value pair"
                    )));
                }
            }
            continue;
        };
        if key == "from"
            && let Some(i) = value.find('$')
            && i != value.len() - 1
        {
            return Err(invalid(
                "'from' doesn't support variable expansion, define alias stage instead",
            ));
        }
        let value = (at.expand)(value).map_err(MountError::Plan)?;
        let num = |radix: u32| {
            u32::from_str_radix(&value, radix)
                .map_err(|_| invalid(format!("invalid value {value} for {key}")))
        };
        match key.as_str() {
            "type" => {
                let t = value.to_ascii_lowercase();
                if !matches!(t.as_str(), "bind" | "cache" | "tmpfs" | "secret" | "ssh") {
                    return Err(invalid(format!(
                        "unsupported mount type {value:?} (use bind, cache, tmpfs, secret or ssh)"
                    )));
                }
                raw.kind = Some(t);
            }
            "from" => raw.from = Some(value),
            "source" | "src" => raw.source = Some(value),
            "target" | "dst" | "destination" => raw.target = Some(value),
            "readonly" | "ro" => raw.readonly = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => raw.readonly = Some(!parse_bool(&key, &value)?),
            "required" if kind == "secret" || kind == "ssh" => {
                raw.required = parse_bool(&key, &value)?
            }
            "size" if kind == "tmpfs" => {
                raw.size = Some(
                    ram_in_bytes(&value)
                        .ok_or_else(|| invalid(format!("invalid value for size: {value}")))?,
                )
            }
            "required" | "size" => {
                return Err(invalid(format!(
                    "unexpected key '{key}' for mount type '{kind}'"
                )));
            }
            "id" => raw.id = Some(value),
            "sharing" => {
                raw.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(invalid(format!(
                            "unsupported sharing value {value:?} (use shared, private or locked)"
                        )));
                    }
                })
            }
            "mode" => {
                let m = num(8).map_err(|_| invalid(format!("invalid value {value} for mode")))?;
                raw.mode = Some(m);
            }
            "uid" => raw.uid = Some(num(10)?),
            "gid" => raw.gid = Some(num(10)?),
            "env" => raw.env = Some(value),
            _ => {
                return Err(invalid(format!(
                    "unexpected key '{key}' in '{field}' (known keys: {ALL_KEYS})"
                )));
            }
        }
    }
    Ok(raw)
}

/// `path.Clean` of an absolute path.
fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The absolute, clean target (relative ones joined to the working directory).
fn target_path(target: &str, workdir: &str) -> Result<String, MountError> {
    let t = if target.starts_with('/') {
        clean_abs(target)
    } else {
        clean_abs(&format!("{workdir}/{target}"))
    };
    if t == "/" {
        return Err(invalid(format!("invalid mount target {target:?}")));
    }
    Ok(t)
}

/// Parse one `--mount` value.
pub(crate) fn parse_mount(val: &str, at: &MountAt<'_>) -> Result<RunMount, MountError> {
    let raw = read_fields(val, at)?;
    let kind = raw.kind.as_deref().unwrap_or("bind");
    let file_info = matches!(kind, "secret" | "ssh" | "cache");
    if !file_info {
        for (name, set) in [
            ("mode", raw.mode.is_some()),
            ("uid", raw.uid.is_some()),
            ("gid", raw.gid.is_some()),
        ] {
            if set {
                return Err(invalid(format!(
                    "{name} not allowed for \"{kind}\" type mounts"
                )));
            }
        }
    }
    if raw.sharing.is_some() && kind != "cache" {
        return Err(invalid(format!(
            "invalid cache sharing set for {kind} mount"
        )));
    }
    let readonly = raw.readonly.unwrap_or(!matches!(kind, "cache" | "tmpfs"));
    let target = |raw_target: &Option<String>| -> Result<String, MountError> {
        match raw_target {
            Some(t) if !t.is_empty() => target_path(t, at.workdir),
            _ => Err(invalid(format!("a {kind} mount needs a target"))),
        }
    };
    match kind {
        "ssh" => Err(MountError::Unsupported {
            what: "RUN --mount=type=ssh",
            why: "ocipush does not forward an SSH agent to commands",
            fix: "Fetch what needs SSH before the build and COPY it, or use --mount=type=secret for a key",
        }),
        "secret" => {
            if raw.from.is_some() {
                return Err(invalid("secret mount should not have a from"));
            }
            if raw.source.is_none() && raw.target.is_none() && raw.id.is_none() {
                return Err(invalid(
                    "invalid secret mount. one of source, target required",
                ));
            }
            if raw.source.is_some() && raw.id.is_some() {
                return Err(invalid("both source and id can't be set"));
            }
            let id = match raw.source.clone().or(raw.id.clone()) {
                Some(id) if !id.is_empty() => id,
                _ => match &raw.target {
                    Some(t) if !t.is_empty() => base_name(t),
                    _ => return Err(invalid("one of source, target required")),
                },
            };
            let file = match (&raw.target, &raw.env) {
                (Some(t), _) if !t.is_empty() => Some(target_path(t, at.workdir)?),
                (_, Some(_)) => None,
                _ => Some(format!("/run/secrets/{}", base_name(&id))),
            };
            if let Some(e) = &raw.env
                && (e.is_empty() || e.contains('=') || e.contains('\0'))
            {
                return Err(invalid(format!("invalid environment variable name {e:?}")));
            }
            Ok(RunMount::Secret {
                id,
                target: file,
                env: raw.env,
                required: raw.required,
                mode: raw.mode.unwrap_or(0o400),
                uid: raw.uid.unwrap_or(0),
                gid: raw.gid.unwrap_or(0),
            })
        }
        "tmpfs" => Ok(RunMount::Tmpfs {
            target: target(&raw.target)?,
            size: raw.size,
        }),
        "cache" => {
            let from = match raw.from.as_deref() {
                None | Some("") => None,
                Some(f) => Some((at.from)(f).map_err(MountError::Plan)?),
            };
            let source = clean_abs(raw.source.as_deref().unwrap_or(""));
            if from.is_none() && source != "/" {
                return Err(invalid(
                    "a cache mount's source needs from=<stage|image|context> (without it the cache starts empty)",
                ));
            }
            let target = target(&raw.target)?;
            let id = match raw.id {
                Some(id) if !id.is_empty() => id,
                _ => target.clone(),
            };
            Ok(RunMount::Cache {
                target,
                from,
                source,
                id,
                sharing: raw.sharing.unwrap_or(CacheSharing::Shared),
                mode: raw.mode.unwrap_or(0o755),
                uid: raw.uid.unwrap_or(0),
                gid: raw.gid.unwrap_or(0),
                readonly,
            })
        }
        _ => {
            let from = match raw.from.as_deref() {
                None | Some("") => None,
                Some(f) => Some((at.from)(f).map_err(MountError::Plan)?),
            };
            Ok(RunMount::Bind {
                target: target(&raw.target)?,
                source: clean_abs(raw.source.as_deref().unwrap_or("")),
                from,
                readwrite: !readonly,
            })
        }
    }
}

/// `path.Base`.
fn base_name(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Refuse two mounts on one target (the later would hide the earlier).
pub(crate) fn check_targets(mounts: &[RunMount]) -> Result<(), MountError> {
    let mut seen: Vec<&str> = Vec::new();
    for m in mounts {
        if let Some(t) = m.target() {
            if seen.contains(&t) {
                return Err(invalid(format!("two mounts have the target {t}")));
            }
            seen.push(t);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "run_mount_tests.rs"]
mod tests;
