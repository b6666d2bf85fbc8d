//! `--chown=user[:group]` and `USER` (for WORKDIR) resolved against the stage's own
//! `/etc/passwd` and `/etc/group`, as BuildKit does (`llb.WithUser` splits the value at the
//! first `:`, a number is an id; `solver/llbsolver/ops/user_linux.go` `readUser` looks names
//! up, a numeric user also sets the group, a user name takes its primary group from passwd).
//!
//! One deliberate difference: BuildKit silently uses 0 for a name it cannot find; ocipush
//! refuses it, naming the file it looked in, since an image owned by root where the Dockerfile
//! asked for `app` is a security surprise. An empty user (`--chown=:99`) is root, as in
//! BuildKit.

use std::io::Read;

use super::{MAX_USER_FILE, RootFs, UserFile};

/// Why a user or group could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The name is not in the stage's file.
    #[error(
        "{what} {name:?} is not in the image's /{file}; use a numeric id, or add the {what} to /{file} in an earlier instruction or the base image"
    )]
    Unknown {
        /// "user" or "group".
        what: &'static str,
        /// The name.
        name: String,
        /// `etc/passwd` or `etc/group`.
        file: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read the image's /{file}: {reason}")]
    Unreadable {
        /// The file.
        file: &'static str,
        /// Why.
        reason: String,
    },
}

/// `user[:group]` → (uid, gid).
pub(crate) fn resolve_owner(fs: &RootFs, spec: &str) -> Result<(u32, u32), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (mut uid, mut gid) = (0, 0);
    if let Ok(n) = user.parse::<u32>() {
        (uid, gid) = (n, n);
    } else if !user.is_empty() {
        let text = read(fs, "etc/passwd")?;
        let found = text
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == user)
            .and_then(|f| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)));
        (uid, gid) = found.ok_or_else(|| UserError::Unknown {
            what: "user",
            name: user.to_string(),
            file: "etc/passwd",
        })?;
    }
    if let Some(group) = group {
        if let Ok(n) = group.parse::<u32>() {
            gid = n;
        } else if !group.is_empty() {
            let text = read(fs, "etc/group")?;
            gid = text
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse::<u32>().ok())
                .ok_or_else(|| UserError::Unknown {
                    what: "group",
                    name: group.to_string(),
                    file: "etc/group",
                })?;
        }
    }
    Ok((uid, gid))
}

/// The text of a user file; empty when the stage has none (every name is then unknown).
fn read(fs: &RootFs, file: &'static str) -> Result<String, UserError> {
    let bytes: Vec<u8> = match fs.user_file(file) {
        None => return Ok(String::new()),
        Some(UserFile::Bytes(b)) => b.to_vec(),
        Some(UserFile::Path(p)) => {
            let mut out = Vec::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_USER_FILE + 1).read_to_end(&mut out))
                .map_err(|e| UserError::Unreadable {
                    file,
                    reason: e.to_string(),
                })?;
            out
        }
    };
    if bytes.len() as u64 > MAX_USER_FILE {
        return Err(UserError::Unreadable {
            file,
            reason: format!("it is larger than {MAX_USER_FILE} bytes"),
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
