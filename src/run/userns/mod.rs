//! Rootless RUN: what changes when ocipush is not root.
//!
//! As root, RUN's sandbox, snapshots and upper directories use the host's ids. As any other
//! user, the sandbox first enters a **user namespace** and everything that needs an id other
//! than the user's own happens inside one, as buildah's rootless mode, BuildKit rootless
//! (rootlesskit) and podman do:
//!
//! - **Mapping** ([`Ids`]): with ranges for the user in `/etc/subuid` and `/etc/subgid` and
//!   `newuidmap`/`newgidmap` installed (Debian package `uidmap`), container id 0 is the user's
//!   own id and ids `1..=N` are the subordinate ranges, one after the other ([`SubIds`]:
//!   `newuidmap <pid> 0 <uid> 1 1 <start> <N>` for one range, podman's default). Without them, a single-id mapping (container 0 → the user,
//!   written to `/proc/<pid>/uid_map` after `setgroups` `deny`, as an unprivileged process
//!   may): files can only be owned by root in the image, which a warning says once.
//! - **Handshake**: the namespaced child `unshare`s `CLONE_NEWUSER`, says so on a pipe and
//!   waits; the parent (outside) writes its maps and lets it go ([`child_enter`],
//!   [`Rootless::map_child`]). A namespaced child is a plain `fork` of the build and uses
//!   only system calls on memory allocated before the fork, like the sandbox.
//! - **Overlay** in a user namespace (kernel ≥ 5.11) is mounted with `userxattr`: opaque
//!   directories are marked `user.overlay.opaque` instead of `trusted.overlay.opaque` (which
//!   only init-namespace root may write); whiteouts stay `0/0` character devices, which the
//!   kernel lets anyone create since 5.8 (checked on kernel 6.18: overlay in the namespace
//!   makes `rm` a `0/0` device and a replaced directory `user.overlay.opaque=y`).
//! - **Ownership on disk**: a file owned by image uid `u > 0` is owned on disk by
//!   `start + u − 1`. Snapshots are unpacked by the user (all files its own, directories
//!   writable), then one namespaced child sets the image's owners and modes ([`Owners`]);
//!   the upper directory is read back outside, each owner mapped back ([`Ids::image_owner`]),
//!   and what the user may not read is opened up for the read and restored
//!   ([`Ids::grant_read`]). Device nodes in base layers cannot be made without privilege
//!   and are skipped, as containers/storage does in a user namespace
//!   (`pkg/archive: createTarFile`). Removing such trees also happens inside.
//! - **Where**: a rootless build's snapshots are in `run/snapshots-rootless-<mapping>` of
//!   the user's own cache (`$XDG_CACHE_HOME/ocipush` by default), one directory per
//!   mapping, since the ids on disk depend on it.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RunError;

mod inside;
mod subids;
pub(crate) use inside::{Handshake, Owners, Restore, child_enter};
use inside::{Op, cpath, run_inside};
pub(crate) use subids::SubIds;

/// The uid the kernel shows for an id outside the mapping (`/proc/sys/kernel/overflowuid`).
const OVERFLOW_ID: u32 = 65534;

/// Who RUN runs as.
#[derive(Debug)]
pub(crate) enum Ids {
    /// ocipush is root: host ids are image ids.
    Root,
    /// ocipush is an unprivileged user.
    Rootless(Rootless),
}

/// An unprivileged user's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rootless {
    /// The user's name (or uid) for messages.
    pub(crate) user: String,
    /// The user's uid and primary gid (container 0).
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The subordinate ranges (container ids `1..=count`), when the user has them.
    pub(crate) ranges: Option<Ranges>,
}

/// Subordinate ranges and the tools that write them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ranges {
    /// The user's ranges in `/etc/subuid`.
    pub(crate) uids: SubIds,
    /// The user's ranges in `/etc/subgid`.
    pub(crate) gids: SubIds,
    pub(crate) newuidmap: PathBuf,
    pub(crate) newgidmap: PathBuf,
}

static IDS: OnceLock<Ids> = OnceLock::new();
static WARNED: AtomicBool = AtomicBool::new(false);

/// This process's [`Ids`] (worked out once).
pub(crate) fn ids() -> &'static Ids {
    IDS.get_or_init(|| {
        // SAFETY: no preconditions.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid == 0 {
            return Ids::Root;
        }
        Ids::Rootless(Rootless::for_user(uid, gid, Path::new("/etc")))
    })
}

/// Why this host cannot make user namespaces, if a sysctl says so.
pub(crate) fn namespaces_unavailable() -> Option<RunError> {
    namespaces_unavailable_in(Path::new("/proc/sys"))
}

/// [`namespaces_unavailable`] with the sysctls under `sys` (`/proc/sys`).
fn namespaces_unavailable_in(sys: &Path) -> Option<RunError> {
    let read = |p: &str| {
        std::fs::read_to_string(sys.join(p))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let (what, fix) = if read("user/max_user_namespaces").as_deref() == Some("0") {
        (
            "user namespaces are disabled on this host (/proc/sys/user/max_user_namespaces is 0)",
            "Allow them (`sysctl -w user.max_user_namespaces=15000`), or run ocipush as root",
        )
    } else if read("kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        (
            "unprivileged user namespaces are disabled on this host (/proc/sys/kernel/unprivileged_userns_clone is 0)",
            "Allow them (`sysctl -w kernel.unprivileged_userns_clone=1`), or run ocipush as root",
        )
    } else {
        return None;
    };
    Some(RunError::Unavailable {
        what: format!("rootless RUN needs a user namespace, but {what}"),
        fix: fix.into(),
    })
}

/// The error for a user namespace the kernel refused to make (`errno`).
pub(crate) fn refused(errno: i32) -> RunError {
    namespaces_unavailable().unwrap_or_else(|| RunError::Unavailable {
        what: format!(
            "the kernel refused to create a user namespace for rootless RUN ({})",
            io::Error::from_raw_os_error(errno)
        ),
        fix: "Allow unprivileged user namespaces (sysctls user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1, and on Ubuntu kernel.apparmor_restrict_unprivileged_userns=0; inside a container, a seccomp profile permitting unshare), or run ocipush as root".into(),
    })
}

/// A failed command's error, explained when the single-id mapping is the likely cause (its
/// output shows a refused ownership change: busybox and coreutils `chown` print
/// "Invalid argument" for an id outside the namespace, others "Operation not permitted").
pub(crate) fn explain_failure(r: &Rootless, failed: RunError) -> RunError {
    match failed {
        RunError::Failed {
            command,
            status,
            tail,
        } if r.ranges.is_none() && looks_like_chown_failure(&tail) => RunError::SingleIdMapping {
            command,
            status,
            tail,
            why: r.why_single(),
            fix: r.fix(),
        },
        other => other,
    }
}

fn looks_like_chown_failure(tail: &str) -> bool {
    let t = tail.to_ascii_lowercase();
    t.contains("chown")
        || t.contains("operation not permitted")
        || t.contains("invalid argument")
        || t.contains("eperm")
}

/// A sandbox set-up error of a rootless RUN, explained when the kernel refused a step
/// because Ubuntu's AppArmor strips an unprivileged user namespace of its capabilities
/// (`kernel.apparmor_restrict_unprivileged_userns=1`: `unshare` succeeds, mounts fail).
pub(crate) fn explain_setup(e: RunError) -> RunError {
    explain_setup_in(e, Path::new("/proc/sys"))
}

fn explain_setup_in(e: RunError, sys: &Path) -> RunError {
    let restricted =
        std::fs::read_to_string(sys.join("kernel/apparmor_restrict_unprivileged_userns"))
            .is_ok_and(|v| v.trim() == "1");
    match e {
        RunError::Setup { step, source }
            if restricted
                && matches!(source.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) =>
        {
            RunError::Unavailable {
                what: format!(
                    "the kernel refused to {step} in rootless RUN's user namespace ({source}): AppArmor restricts unprivileged user namespaces here (kernel.apparmor_restrict_unprivileged_userns is 1)"
                ),
                fix: "Allow them (`sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or an AppArmor profile granting `userns` to ocipush), or run ocipush as root".into(),
            }
        }
        other => other,
    }
}

/// The user's name from `/etc/passwd` text.
fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Rootless {
    /// The mapping of `uid`/`gid` from `etc`'s `passwd`, `subuid` and `subgid`.
    pub(crate) fn for_user(uid: u32, gid: u32, etc: &Path) -> Rootless {
        let read = |f: &str| std::fs::read_to_string(etc.join(f)).unwrap_or_default();
        let name = user_name(&read("passwd"), uid);
        let uids = SubIds::parse(&read("subuid"), name.as_deref(), uid, uid);
        let gids = SubIds::parse(&read("subgid"), name.as_deref(), uid, gid);
        let ranges = match (uids, gids, find_tool("newuidmap"), find_tool("newgidmap")) {
            (Some(uids), Some(gids), Some(newuidmap), Some(newgidmap)) => Some(Ranges {
                uids,
                gids,
                newuidmap,
                newgidmap,
            }),
            _ => None,
        };
        Rootless {
            user: name.unwrap_or_else(|| uid.to_string()),
            uid,
            gid,
            ranges,
        }
    }

    /// Whether image uid `uid` and gid `gid` exist in the namespace.
    pub(crate) fn maps(&self, uid: u32, gid: u32) -> bool {
        match &self.ranges {
            None => uid == 0 && gid == 0,
            Some(r) => uid <= r.uids.total() && gid <= r.gids.total(),
        }
    }

    /// The image ids of host ids `(uid, gid)` (65534 outside the mapping, as the kernel shows).
    pub(crate) fn to_image(&self, uid: u32, gid: u32) -> (u32, u32) {
        let one = |id: u32, own: u32, ranges: Option<&SubIds>| {
            if id == own {
                return 0;
            }
            ranges.and_then(|r| r.to_image(id)).unwrap_or(OVERFLOW_ID)
        };
        (
            one(uid, self.uid, self.ranges.as_ref().map(|r| &r.uids)),
            one(gid, self.gid, self.ranges.as_ref().map(|r| &r.gids)),
        )
    }

    /// The snapshot directory's name for this mapping.
    pub(crate) fn snapshot_dir(&self) -> String {
        match &self.ranges {
            None => format!("snapshots-rootless-{}-{}", self.uid, self.gid),
            Some(r) => {
                let key = format!("{}-{}", r.uids.key(), r.gids.key());
                // Many ranges: their digest, within a file name's length.
                let key = if key.len() > 120 {
                    crate::digest::Digest::of(key.as_bytes()).hex()[..32].to_string()
                } else {
                    key
                };
                format!("snapshots-rootless-{}-{}-{key}", self.uid, self.gid)
            }
        }
    }

    /// Say once that only root can own files (single-id mapping).
    pub(crate) fn warn_once(&self, warn: &dyn Fn(&str)) {
        if self.ranges.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
            warn(&format!(
                "RUN is rootless with a single-id mapping ({}): {}; files can only be owned by root in the image, and a chown to another id fails. To map more ids, {}",
                self.user,
                self.why_single(),
                self.fix()
            ));
        }
    }

    /// Why the mapping holds one id.
    pub(crate) fn why_single(&self) -> String {
        if find_tool("newuidmap").is_none() || find_tool("newgidmap").is_none() {
            "newuidmap/newgidmap are not installed (Debian package `uidmap`)".into()
        } else {
            format!("{} has no range in /etc/subuid and /etc/subgid", self.user)
        }
    }

    /// What to do to get a full mapping.
    pub(crate) fn fix(&self) -> String {
        format!(
            "give {u} subordinate ids (`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {u}`) and install newuidmap/newgidmap (`apt-get install uidmap`), or run as root",
            u = self.user
        )
    }

    /// Write the maps of `pid` (a child that has unshared its user namespace and waits).
    pub(crate) fn map_child(&self, pid: libc::pid_t) -> Result<(), RunError> {
        match &self.ranges {
            Some(r) => {
                for (tool, own, ranges) in [
                    (&r.newuidmap, self.uid, &r.uids),
                    (&r.newgidmap, self.gid, &r.gids),
                ] {
                    let args = ranges.map_args(own);
                    let out = std::process::Command::new(tool)
                        .arg(pid.to_string())
                        .args(&args)
                        .stdin(std::process::Stdio::null())
                        .output()
                        .map_err(|source| RunError::Io {
                            action: "run",
                            path: tool.clone(),
                            source,
                        })?;
                    if !out.status.success() {
                        return Err(RunError::Unavailable {
                            what: format!(
                                "{} {pid} {} failed ({}): {}",
                                tool.display(),
                                args.join(" "),
                                out.status,
                                String::from_utf8_lossy(&out.stderr).trim()
                            ),
                            fix: format!(
                                "check {}'s ranges in /etc/subuid and /etc/subgid and that newuidmap/newgidmap are setuid root or have file capabilities",
                                self.user
                            ),
                        });
                    }
                }
                Ok(())
            }
            None => {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                for (file, text) in [
                    ("setgroups", "deny".to_string()),
                    ("uid_map", format!("0 {} 1\n", self.uid)),
                    ("gid_map", format!("0 {} 1\n", self.gid)),
                ] {
                    let p = proc.join(file);
                    std::fs::write(&p, text).map_err(|source| RunError::Io {
                        action: "write the user namespace's map",
                        path: p,
                        source,
                    })?;
                }
                Ok(())
            }
        }
    }
}

impl Ids {
    /// The rootless mapping, if any.
    pub(crate) fn rootless(&self) -> Option<&Rootless> {
        match self {
            Ids::Root => None,
            Ids::Rootless(r) => Some(r),
        }
    }

    /// The directory (under the cache's `run/`) of this process's snapshots.
    pub(crate) fn snapshot_dir(&self) -> String {
        match self {
            Ids::Root => "snapshots".into(),
            Ids::Rootless(r) => r.snapshot_dir(),
        }
    }

    /// Overlay options besides the directories.
    pub(crate) fn overlay_options(&self) -> &'static str {
        match self {
            // No redirects or metadata-only copy-ups: every change is whole in the upper
            // directory (a renamed directory is copied, not recorded as an overlay redirect).
            // `volatile`: no syncfs of the whole disk at unmount (see `snapshot::valid`).
            Ids::Root => "redirect_dir=off,metacopy=off,volatile",
            // `userxattr` implies no redirects (and refuses `redirect_dir=off`).
            Ids::Rootless(_) => "userxattr,metacopy=off,volatile",
        }
    }

    /// The attribute marking an opaque directory in this process's snapshots.
    pub(crate) fn opaque_xattr(&self) -> &'static [u8] {
        match self {
            Ids::Root => b"trusted.overlay.opaque\0",
            Ids::Rootless(_) => b"user.overlay.opaque\0",
        }
    }

    /// The image owner of a file of a snapshot or upper directory.
    pub(crate) fn image_owner(&self, m: &std::fs::Metadata) -> (u32, u32) {
        match self {
            Ids::Root => (m.uid(), m.gid()),
            Ids::Rootless(r) => r.to_image(m.uid(), m.gid()),
        }
    }

    /// Let this process read the directory or file `p` (metadata `m`) if it cannot: its mode
    /// gains read (and search) for others, inside the namespace. Returns what to restore.
    pub(crate) fn grant_read(
        &self,
        p: &Path,
        m: &std::fs::Metadata,
    ) -> Result<Option<Restore>, RunError> {
        let Ids::Rootless(r) = self else {
            return Ok(None);
        };
        let want = if m.is_dir() {
            libc::R_OK | libc::X_OK
        } else {
            libc::R_OK
        };
        let cp = cpath(p)?;
        // SAFETY: a valid C string.
        if unsafe { libc::access(cp.as_ptr(), want) } == 0 {
            return Ok(None);
        }
        let mode = m.mode() & 0o7777;
        let extra = if m.is_dir() { 0o005 } else { 0o004 };
        let (uid, gid) = r.to_image(m.uid(), m.gid());
        let mut o = Owners::default();
        o.push(p, uid, gid, mode | extra, false)?;
        o.apply_as(r)?;
        Ok(Some(Restore {
            path: p.to_path_buf(),
            uid,
            gid,
            mode,
        }))
    }

    /// Remove the tree `p` as root of the namespace (what the user cannot remove itself).
    pub(crate) fn remove_inside(&self, p: &Path) -> Result<(), RunError> {
        let Ids::Rootless(r) = self else {
            return Ok(());
        };
        let op = Op::Remove(cpath(p)?);
        run_inside(r, &op).map_err(|(_, source)| RunError::Io {
            action: "remove",
            path: p.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests;
