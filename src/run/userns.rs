//! Rootless RUN: what changes when ocipush is not root.
//!
//! As root, RUN's sandbox, snapshots and upper directories use the host's ids. As any other
//! user, the sandbox first enters a **user namespace** and everything that needs an id other
//! than the user's own happens inside one, as buildah's rootless mode, BuildKit rootless
//! (rootlesskit) and podman do:
//!
//! - **Mapping** ([`Ids`]): with ranges for the user in `/etc/subuid` and `/etc/subgid` and
//!   `newuidmap`/`newgidmap` installed (Debian package `uidmap`), container id 0 is the user's
//!   own id and ids `1..=N` are the subordinate range (`newuidmap <pid> 0 <uid> 1 1 <start>
//!   <N>`, podman's default). Without them, a single-id mapping (container 0 → the user,
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

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RunError;

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
    /// (first host id, count) of `/etc/subuid`.
    pub(crate) uids: (u32, u32),
    /// (first host id, count) of `/etc/subgid`.
    pub(crate) gids: (u32, u32),
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

/// `(start, count)` of the first line for `name` or `uid` in a subuid/subgid file's text.
pub(crate) fn parse_range(text: &str, name: Option<&str>, id: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        let start = f.next()?.trim().parse::<u32>().ok()?;
        let count = f.next()?.trim().parse::<u32>().ok()?;
        let matches = Some(who) == name || who.parse::<u32>().ok() == Some(id);
        (matches && count > 0).then_some((start, count))
    })
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
        let uids = parse_range(&read("subuid"), name.as_deref(), uid);
        let gids = parse_range(&read("subgid"), name.as_deref(), uid);
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
            Some(r) => uid <= r.uids.1 && gid <= r.gids.1,
        }
    }

    /// The image ids of host ids `(uid, gid)` (65534 outside the mapping, as the kernel shows).
    pub(crate) fn to_image(&self, uid: u32, gid: u32) -> (u32, u32) {
        let one = |id: u32, own: u32, range: Option<(u32, u32)>| {
            if id == own {
                return 0;
            }
            match range {
                Some((start, count)) if id >= start && id - start < count => id - start + 1,
                _ => OVERFLOW_ID,
            }
        };
        (
            one(uid, self.uid, self.ranges.as_ref().map(|r| r.uids)),
            one(gid, self.gid, self.ranges.as_ref().map(|r| r.gids)),
        )
    }

    /// The snapshot directory's name for this mapping.
    pub(crate) fn snapshot_dir(&self) -> String {
        match &self.ranges {
            None => format!("snapshots-rootless-{}-{}", self.uid, self.gid),
            Some(r) => format!(
                "snapshots-rootless-{}-{}-{}-{}-{}-{}",
                self.uid, self.gid, r.uids.0, r.uids.1, r.gids.0, r.gids.1
            ),
        }
    }

    /// Say once that only root can own files (single-id mapping).
    pub(crate) fn warn_once(&self, warn: &dyn Fn(&str)) {
        if self.ranges.is_none() && !WARNED.swap(true, Ordering::Relaxed) {
            warn(&format!(
                "RUN is rootless with a single-id mapping ({}): {}; files can only be owned by root in the image, and a chown to another id fails",
                self.user,
                self.why_single()
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
                for (tool, own, (start, count)) in [
                    (&r.newuidmap, self.uid, r.uids),
                    (&r.newgidmap, self.gid, r.gids),
                ] {
                    let out = std::process::Command::new(tool)
                        .arg(pid.to_string())
                        .args(["0", &own.to_string(), "1", "1"])
                        .args([start.to_string(), count.to_string()])
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
                                "{} {pid} 0 {own} 1 1 {start} {count} failed ({}): {}",
                                tool.display(),
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

/// A mode to put back after [`Ids::grant_read`].
pub(crate) struct Restore {
    path: PathBuf,
    uid: u32,
    gid: u32,
    mode: u32,
}

impl Restore {
    /// Put the mode back.
    pub(crate) fn restore(self) -> Result<(), RunError> {
        let Some(r) = ids().rootless() else {
            return Ok(());
        };
        let mut o = Owners::default();
        o.push(&self.path, self.uid, self.gid, self.mode, false)?;
        o.apply_as(r)
    }
}

/// Owners and modes to set in image ids, inside the namespace (nothing to do as root, which
/// sets them as it goes).
#[derive(Default)]
pub(crate) struct Owners {
    /// (path, uid, gid, mode; mode is not set on symlinks).
    list: Vec<(CString, u32, u32, u32, bool)>,
    paths: Vec<PathBuf>,
}

impl Owners {
    /// Set `p`'s owner to image `uid`/`gid` and its mode (unless `symlink`).
    pub(crate) fn push(
        &mut self,
        p: &Path,
        uid: u32,
        gid: u32,
        mode: u32,
        symlink: bool,
    ) -> Result<(), RunError> {
        self.list
            .push((cpath(p)?, uid, gid, mode & 0o7777, symlink));
        self.paths.push(p.to_path_buf());
        Ok(())
    }

    /// Whether a rootless unpack leaves the entry of `h` out: a device node cannot be made
    /// without privilege, in a user namespace either (containers/storage skips them there
    /// too: `pkg/archive` `createTarFile`). The command then sees no node at that path.
    pub(crate) fn skip(&mut self, h: &tar::Header) -> bool {
        let t = h.entry_type();
        let skip = t.is_character_special() || t.is_block_special();
        if skip {
            tracing::debug!(
                "rootless RUN: device node {} of a base layer is not made",
                String::from_utf8_lossy(&h.path_bytes())
            );
        }
        skip
    }

    /// After a rootless unpack of the entry of `h` at `p`: keep a directory writable for
    /// what follows, and note the image's owner and mode to set inside. Ids the mapping
    /// lacks stay root's (the single-id mapping's limit).
    pub(crate) fn unpacked(&mut self, p: &Path, h: &tar::Header) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let t = h.entry_type();
        if t.is_hard_link() {
            return Ok(());
        }
        let mode = h.mode()? & 0o7777;
        let id = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let (mut uid, mut gid) = (id(h.uid()?), id(h.gid()?));
        if let Some(r) = ids().rootless() {
            if !r.maps(uid, 0) {
                uid = 0;
            }
            if !r.maps(0, gid) {
                gid = 0;
            }
        }
        let closed_dir = t.is_dir() && mode & 0o700 != 0o700;
        if closed_dir {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o700))?;
        }
        if uid != 0 || gid != 0 || mode & 0o7000 != 0 || closed_dir {
            self.push(p, uid, gid, mode, t.is_symlink())
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    /// Set them all (one namespaced child); nothing as root.
    pub(crate) fn apply(self) -> Result<(), RunError> {
        match ids() {
            Ids::Root => Ok(()),
            Ids::Rootless(r) => self.apply_as(r),
        }
    }

    fn apply_as(self, r: &Rootless) -> Result<(), RunError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let paths = self.paths;
        run_inside(r, &Op::Own(self.list)).map_err(|(i, source)| {
            let path = paths.get(i).cloned().unwrap_or_default();
            match source.raw_os_error() {
                Some(libc::EINVAL) if r.ranges.is_none() => RunError::Invalid {
                    what: format!(
                        "{} is owned by a user other than root in the image, which a single-id user namespace cannot represent ({}); {}",
                        path.display(),
                        r.why_single(),
                        r.fix()
                    ),
                },
                _ => RunError::Io {
                    action: "set the image's owner and mode of",
                    path,
                    source,
                },
            }
        })
    }
}

fn cpath(p: &Path) -> Result<CString, RunError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RunError::Invalid {
        what: format!("{} contains a NUL byte", p.display()),
    })
}

/// What a namespaced child does (prepared before the fork).
enum Op {
    Own(Vec<(CString, u32, u32, u32, bool)>),
    Remove(CString),
}

/// A pipe, both ends close-on-exec.
pub(crate) fn pipe() -> Result<(libc::c_int, libc::c_int), RunError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RunError::Io {
            action: "create a pipe",
            path: PathBuf::new(),
            source: io::Error::last_os_error(),
        });
    }
    Ok((fds[0], fds[1]))
}

/// The pipes of the handshake: the child says "unshared" on `ready`, the parent says "mapped"
/// on `go`.
pub(crate) struct Handshake {
    pub(crate) ready: (libc::c_int, libc::c_int),
    pub(crate) go: (libc::c_int, libc::c_int),
}

impl Handshake {
    pub(crate) fn new() -> Result<Handshake, RunError> {
        let ready = pipe()?;
        let go = pipe().inspect_err(|_| close_all(&[ready.0, ready.1]))?;
        Ok(Handshake { ready, go })
    }

    /// Parent side, after the fork: wait for the child's `unshare`, write its maps, let it go.
    /// On an error the child is left to see the closed pipe and exit.
    pub(crate) fn parent(&self, r: &Rootless, pid: libc::pid_t) -> Result<(), RunError> {
        close_all(&[self.ready.1, self.go.0]);
        let mut b = [0u8; 5];
        let n = read_full(self.ready.0, &mut b);
        let result = if n == 5 && b[0] == b'R' {
            r.map_child(pid)
        } else if n == 5 && b[0] == b'E' {
            Err(refused(i32::from_ne_bytes([b[1], b[2], b[3], b[4]])))
        } else {
            Err(RunError::Setup {
                step: "create the user namespace (the child ended before it)",
                source: io::Error::other("no answer on the handshake pipe"),
            })
        };
        if result.is_ok() {
            // SAFETY: writing one byte from a valid buffer.
            unsafe { libc::write(self.go.1, b"G".as_ptr().cast(), 1) };
        }
        close_all(&[self.ready.0, self.go.1]);
        result
    }
}

fn close_all(fds: &[libc::c_int]) {
    for &fd in fds {
        // SAFETY: closing descriptors the caller owns.
        unsafe { libc::close(fd) };
    }
}

fn read_full(fd: libc::c_int, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the rest of `buf` is valid.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    got
}

fn errno() -> i32 {
    // SAFETY: reading the thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Child side, after the fork: `unshare(CLONE_NEWUSER)`, tell the parent, wait until it has
/// written the maps. Returns false (after telling the parent) when the kernel refused, or
/// when the parent gave up. Async-signal-safe.
///
/// # Safety
/// Call only in a freshly forked child, with `h` made before the fork.
pub(crate) unsafe fn child_enter(h: &Handshake) -> bool {
    // SAFETY: plain system calls on descriptors made before the fork.
    unsafe {
        libc::close(h.ready.0);
        libc::close(h.go.1);
        let mut msg = [b'R', 0, 0, 0, 0];
        let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
        if !ok {
            msg[0] = b'E';
            msg[1..].copy_from_slice(&errno().to_ne_bytes());
        }
        libc::write(h.ready.1, msg.as_ptr().cast(), msg.len());
        libc::close(h.ready.1);
        if !ok {
            return false;
        }
        let mut b = [0u8; 1];
        loop {
            let n = libc::read(h.go.0, b.as_mut_ptr().cast(), 1);
            if n == 1 {
                break;
            }
            if n == 0 || errno() != libc::EINTR {
                return false;
            }
        }
        libc::close(h.go.0);
        // Become root of the namespace (the ids the parent mapped).
        libc::setresgid(0, 0, 0) == 0 && libc::setresuid(0, 0, 0) == 0
    }
}

/// Run `op` in a fresh namespaced child; on failure, the index of the entry and the error.
fn run_inside(r: &Rootless, op: &Op) -> Result<(), (usize, io::Error)> {
    let sys = |e: RunError| (usize::MAX, io::Error::other(e.to_string()));
    let h = Handshake::new().map_err(sys)?;
    let (rep_r, rep_w) = pipe().map_err(sys)?;
    // SAFETY: the child makes system calls on memory allocated before the fork only, and
    // never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        close_all(&[h.ready.0, h.ready.1, h.go.0, h.go.1, rep_r, rep_w]);
        return Err((usize::MAX, e));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::close(rep_r);
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            if !child_enter(&h) {
                libc::_exit(126);
            }
            let (i, e) = child_op(op);
            if e != 0 {
                let mut rec = [0u8; 12];
                rec[..8].copy_from_slice(&(i as u64).to_ne_bytes());
                rec[8..].copy_from_slice(&e.to_ne_bytes());
                libc::write(rep_w, rec.as_ptr().cast(), rec.len());
            }
            libc::_exit(if e == 0 { 0 } else { 1 })
        }
    }
    close_all(&[rep_w]);
    let mapped = h.parent(r, pid);
    let mut rec = [0u8; 12];
    let n = read_full(rep_r, &mut rec);
    close_all(&[rep_r]);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && errno() == libc::EINTR {}
    mapped.map_err(sys)?;
    if n == 12 {
        let i = u64::from_ne_bytes(rec[..8].try_into().unwrap_or_default()) as usize;
        let e = i32::from_ne_bytes(rec[8..].try_into().unwrap_or_default());
        return Err((i, io::Error::from_raw_os_error(e)));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err((
            usize::MAX,
            io::Error::other(format!(
                "the user namespace's helper process ended with status {status:#x}"
            )),
        ));
    }
    Ok(())
}

/// The operation, in the child: (index, errno) of the first failure, errno 0 when done.
unsafe fn child_op(op: &Op) -> (usize, i32) {
    // SAFETY: system calls on prepared C strings.
    unsafe {
        match op {
            Op::Own(list) => {
                for (i, (p, uid, gid, mode, symlink)) in list.iter().enumerate() {
                    if libc::lchown(p.as_ptr(), *uid, *gid) != 0 {
                        return (i, errno());
                    }
                    // After chown, which clears set-id bits.
                    if !symlink && libc::chmod(p.as_ptr(), *mode) != 0 {
                        return (i, errno());
                    }
                }
                (0, 0)
            }
            Op::Remove(p) => {
                let e = remove_tree(libc::AT_FDCWD, p.as_ptr());
                (0, if e == libc::ENOENT { 0 } else { e })
            }
        }
    }
}

/// Remove `name` (relative to `dirfd`) and everything below, with system calls only: the
/// first entry of a directory is read into a stack buffer, removed (recursively), and the
/// directory read again until it is empty. Returns errno (0 when done).
unsafe fn remove_tree(dirfd: libc::c_int, name: *const libc::c_char) -> i32 {
    // SAFETY: system calls on valid descriptors and buffers.
    unsafe {
        if libc::unlinkat(dirfd, name, 0) == 0 {
            return 0;
        }
        let e = errno();
        if e != libc::EISDIR && e != libc::EPERM {
            return e;
        }
        let fd = libc::openat(
            dirfd,
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return errno();
        }
        let mut buf = [0u8; 1024];
        loop {
            libc::lseek(fd, 0, libc::SEEK_SET);
            let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
            if n < 0 {
                let e = errno();
                libc::close(fd);
                return e;
            }
            let mut off = 0usize;
            let mut child = [0u8; 256];
            let mut found = false;
            while off < n as usize {
                // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
                let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
                let nm = &buf[off + 19..off + reclen];
                let len = nm.iter().position(|&b| b == 0).unwrap_or(nm.len());
                let nm = &nm[..len];
                off += reclen;
                if nm == b"." || nm == b".." {
                    continue;
                }
                child[..len].copy_from_slice(nm);
                child[len] = 0;
                found = true;
                break;
            }
            if !found {
                break;
            }
            let e = remove_tree(fd, child.as_ptr().cast());
            if e != 0 {
                libc::close(fd);
                return e;
            }
        }
        libc::close(fd);
        if libc::unlinkat(dirfd, name, libc::AT_REMOVEDIR) != 0 {
            return errno();
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let text = "other:200000:65536\n# x\nbob:100000:65536\n1001:300000:10\n";
        assert_eq!(parse_range(text, Some("bob"), 1000), Some((100000, 65536)));
        assert_eq!(parse_range(text, Some("eve"), 1001), Some((300000, 10)));
        assert_eq!(parse_range(text, Some("eve"), 1002), None);
        assert_eq!(parse_range("bob:1:0\n", Some("bob"), 5), None);
    }

    #[test]
    fn host_ids_map_back_to_image_ids() {
        let r = Rootless {
            user: "bob".into(),
            uid: 1000,
            gid: 1001,
            ranges: Some(Ranges {
                uids: (100000, 65536),
                gids: (200000, 65536),
                newuidmap: "newuidmap".into(),
                newgidmap: "newgidmap".into(),
            }),
        };
        assert_eq!(r.to_image(1000, 1001), (0, 0));
        assert_eq!(r.to_image(100999, 200999), (1000, 1000));
        assert_eq!(r.to_image(100000, 200000), (1, 1));
        assert_eq!(r.to_image(5, 165536 + 100000), (OVERFLOW_ID, OVERFLOW_ID));
        assert!(r.maps(65536, 0) && !r.maps(65537, 0));
        let single = Rootless { ranges: None, ..r };
        assert_eq!(single.to_image(100999, 1001), (OVERFLOW_ID, 0));
        assert!(single.maps(0, 0) && !single.maps(1000, 1000));
        assert_ne!(single.snapshot_dir(), "snapshots");
    }

    #[test]
    fn disabled_user_namespaces_are_named_with_the_sysctl_to_change() {
        let d = tempfile::tempdir().unwrap();
        assert!(namespaces_unavailable_in(d.path()).is_none());
        std::fs::create_dir_all(d.path().join("kernel")).unwrap();
        std::fs::write(d.path().join("kernel/unprivileged_userns_clone"), "0\n").unwrap();
        let e = namespaces_unavailable_in(d.path()).unwrap().to_string();
        assert!(e.contains("unprivileged_userns_clone is 0"), "{e}");
        assert!(
            e.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
            "{e}"
        );
        std::fs::create_dir_all(d.path().join("user")).unwrap();
        std::fs::write(d.path().join("user/max_user_namespaces"), "0\n").unwrap();
        let e = namespaces_unavailable_in(d.path()).unwrap().to_string();
        assert!(e.contains("max_user_namespaces is 0"), "{e}");
        assert!(e.contains("or run ocipush as root"), "{e}");
    }

    #[test]
    fn a_mount_refused_under_apparmor_names_the_restriction() {
        let d = tempfile::tempdir().unwrap();
        let setup = || RunError::Setup {
            step: "mount the overlay filesystem",
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        let plain = explain_setup_in(setup(), d.path()).to_string();
        assert!(!plain.contains("apparmor_restrict"), "{plain}");
        std::fs::create_dir_all(d.path().join("kernel")).unwrap();
        std::fs::write(
            d.path()
                .join("kernel/apparmor_restrict_unprivileged_userns"),
            "1\n",
        )
        .unwrap();
        let e = explain_setup_in(setup(), d.path()).to_string();
        assert!(e.contains("mount the overlay filesystem"), "{e}");
        assert!(e.contains("apparmor_restrict_unprivileged_userns=0"), "{e}");
    }

    #[test]
    fn a_rootless_unpack_keeps_files_the_users_and_notes_the_images_owners() {
        use std::os::unix::fs::PermissionsExt;
        let mut b = tar::Builder::new(Vec::new());
        for (path, t, mode, uid) in [
            ("ro/", tar::EntryType::Directory, 0o555, 0),
            ("ro/f", tar::EntryType::Regular, 0o4755, 7),
            ("dev/", tar::EntryType::Directory, 0o755, 0),
            ("dev/null", tar::EntryType::Char, 0o666, 0),
            ("plain", tar::EntryType::Regular, 0o644, 0),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(t);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(if uid == 0 { 0 } else { uid + 1 });
            h.set_size(0);
            h.set_path(path).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        let t = b.into_inner().unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut owners = Owners::default();
        super::super::snapshot::unpack(&mut &t[..], d.path(), Some(&mut owners)).unwrap();
        // No device node; the closed directory stays writable until the owners are set.
        assert!(std::fs::symlink_metadata(d.path().join("dev/null")).is_err());
        let ro = std::fs::metadata(d.path().join("ro")).unwrap();
        assert_eq!(ro.permissions().mode() & 0o7777, 0o755);
        let f = std::fs::metadata(d.path().join("ro/f")).unwrap();
        assert_ne!(f.uid(), 7, "not chowned outside the namespace");
        let noted: Vec<(PathBuf, u32, u32, u32)> = owners
            .paths
            .iter()
            .cloned()
            .zip(owners.list.iter())
            .map(|(p, (_, u, g, m, _))| (p.strip_prefix(d.path()).unwrap().into(), *u, *g, *m))
            .collect();
        // Ids the process's mapping lacks (as root: none is rootless) stay root's.
        let id = |v: u32| {
            if ids().rootless().is_some_and(|r| !r.maps(v, v)) {
                0
            } else {
                v
            }
        };
        assert_eq!(
            noted,
            [
                (PathBuf::from("ro"), 0, 0, 0o555),
                (PathBuf::from("ro/f"), id(7), id(8), 0o4755),
            ]
        );
    }

    #[test]
    fn a_chown_failure_under_a_single_id_mapping_is_explained() {
        let r = Rootless {
            user: "bob".into(),
            uid: 1000,
            gid: 1000,
            ranges: None,
        };
        let failed = |tail: &str| RunError::Failed {
            command: "chown app /f".into(),
            status: "exited with code 1".into(),
            tail: tail.into(),
        };
        let e = explain_failure(&r, failed("chown: /f: Invalid argument\n")).to_string();
        assert!(e.contains("single-id user namespace"), "{e}");
        assert!(
            e.contains("--add-subuids 100000-165535 --add-subgids 100000-165535 bob"),
            "{e}"
        );
        let e = explain_failure(&r, failed("make: *** Error 2\n")).to_string();
        assert!(!e.contains("single-id"), "{e}");
    }

    #[test]
    fn ranges_are_read_from_the_etc_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("passwd"),
            "bob:x:1000:1000::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("subuid"), "bob:100000:65536\n").unwrap();
        std::fs::write(d.path().join("subgid"), "bob:100000:65536\n").unwrap();
        let r = Rootless::for_user(1000, 1000, d.path());
        assert_eq!(r.user, "bob");
        if find_tool("newuidmap").is_some() && find_tool("newgidmap").is_some() {
            assert_eq!(r.ranges.unwrap().uids, (100000, 65536));
        } else {
            assert!(r.ranges.is_none());
        }
        std::fs::write(d.path().join("subgid"), "").unwrap();
        assert!(Rootless::for_user(1000, 1000, d.path()).ranges.is_none());
    }
}
