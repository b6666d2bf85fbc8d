//! `RUN` without a daemon (feature `run`, Linux): the command runs in a sandbox made of
//! kernel namespaces over an overlay of the stage's layers, and what it changed — the
//! overlay's upper directory — becomes the instruction's layer.
//!
//! **Mechanism.** ocipush forks and sets the sandbox up itself with `unshare(2)`, `mount(2)`
//! and `pivot_root(2)` ([`sandbox`]), the way buildah's chroot isolation and runc's init do,
//! rather than driving an OCI runtime binary: no runc/crun needs to be installed (the point of
//! a single daemonless binary), nothing is written as an OCI bundle, and the command starts in
//! two forks (no runtime process, no config parsing). Measured on the development host
//! (kernel 6.18, 2 cores): crun 1.x, the only runtime installed, refuses to start any
//! container there ("cgroups in hybrid mode not supported", also with
//! `--cgroup-manager=disabled`), while this sandbox ran 20 one-line RUNs on Alpine in 0.2 s
//! in all (layers included, snapshots warm; 0.45 s with the base unpacked first). An OCI
//! runtime would add seccomp and cgroups, which this sandbox does not set (yet); for want of a
//! devices cgroup it withholds `CAP_MKNOD`, and it makes `/proc/sys` & co. read-only and masks
//! `/proc`'s kernel files as runc does. The sandbox has its own mount, PID, IPC and
//! UTS namespaces; the network is the host's (BuildKit's default with the host provider), or
//! a fresh empty namespace for `--network=none`; `/proc`, `/sys` (read-only), a minimal
//! `/dev`, `/etc/hosts`, `/etc/resolv.conf` (the host's) and the hostname are BuildKit's
//! defaults; the host's root is detached, so nothing of the host is reachable besides those.
//! Root inside keeps only the OCI default capabilities.
//!
//! **Snapshots** ([`snapshot`]): each layer is unpacked once per cache, keyed by chain id, in
//! overlay format, and mounted as a lower directory. **Layer** ([`upper`]): the upper
//! directory walked in a fixed order into the same layer writer as COPY (so it is compressed
//! and uploaded while written, mtimes set to the build's epoch), whiteouts and opaque
//! directories translated, and applied to the stage's filesystem for later instructions; it
//! then becomes the snapshot of the new chain id by a rename. **Cache** ([`cache`]): a RUN
//! whose parent chain id and inputs are unchanged is served from the layer cache unexecuted. Mount points the image lacks are
//! made and removed again ([`stubs`]) so they never reach the layer. **Mounts** ([`mounts`]):
//! `RUN --mount` bind (context mirror or stage overlay), cache, tmpfs and secret mounts,
//! resolved inside their roots by the sandbox (`openat2(RESOLVE_IN_ROOT)`).
//!
//! **Rootless** ([`userns`]): as any user but root, the sandbox first enters a user
//! namespace mapped by `newuidmap`/`newgidmap` from `/etc/subuid` and `/etc/subgid` (or a
//! single-id mapping), the overlay is mounted with `userxattr`, and owners are set and read
//! back through the namespace, so the layers equal a root build's.
//!
//! **Without overlayfs** ([`snapshotter`]): where overlay cannot be mounted (no overlay in
//! the kernel, the snapshots on an overlayfs as in a container, the mount refused), the
//! stage's root is copied into a plain directory the sandbox binds as its root
//! ([`copyroot`]) and compared with a stat snapshot after the command ([`rootdiff`]), which
//! yields the upper directory overlay would have left: the same layer, digest for digest; a
//! `--mount` of a stage, an image or a writable context is a bound copy too. As root only (`OCIPUSH_RUN_SNAPSHOTTER=copy|overlay|auto` forces either).
//!
//! Not yet: `--mount=type=ssh`, seccomp and cgroup limits, extended attributes in RUN
//! layers, foreign architectures (qemu-user), the copy snapshotter rootless.

#[cfg(all(feature = "run", target_os = "linux"))]
mod cache;
#[cfg(all(feature = "run", target_os = "linux"))]
mod cache_mount;
#[cfg(all(feature = "run", target_os = "linux"))]
mod copyroot;
#[cfg(all(feature = "run", target_os = "linux"))]
mod exec;
#[cfg(all(feature = "run", target_os = "linux"))]
mod mirror;
#[cfg(all(feature = "run", target_os = "linux"))]
mod mounts;
#[cfg(all(feature = "run", target_os = "linux"))]
mod rootdiff;
#[cfg(all(feature = "run", target_os = "linux"))]
mod sandbox;
#[cfg(all(feature = "run", target_os = "linux"))]
mod snapshot;
#[cfg(all(feature = "run", target_os = "linux"))]
mod snapshotter;
#[cfg(all(feature = "run", target_os = "linux"))]
mod stubs;
#[cfg(all(feature = "run", target_os = "linux"))]
mod upper;
#[cfg(all(feature = "run", target_os = "linux"))]
mod userns;

#[cfg(all(test, feature = "run", target_os = "linux"))]
mod tests;

#[cfg(all(feature = "run", target_os = "linux"))]
pub(crate) use exec::{RunContext, run_layer};
#[cfg(all(feature = "run", target_os = "linux"))]
pub(crate) use mounts::MountSource;

use std::path::PathBuf;

/// The [`RunError::Io`] for `action` on `path` (for `map_err`).
#[cfg(all(feature = "run", target_os = "linux"))]
fn io_err(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> RunError + use<> {
    let path = path.to_path_buf();
    move |source| RunError::Io {
        action,
        path,
        source,
    }
}

/// A [`RunError::Invalid`].
#[cfg(all(feature = "run", target_os = "linux"))]
fn invalid(what: String) -> RunError {
    RunError::Invalid { what }
}

/// Clears what RUN left in a build's temporary directory (the spool, where snapshots go when
/// there is no cache) when dropped, before the directory itself is removed: rootless, those
/// snapshots hold files of subordinate ids that the user cannot remove itself, so they are
/// removed inside the user namespace. Nothing to do as root.
#[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(dead_code))]
pub(crate) struct SpoolGuard(pub(crate) PathBuf);

impl Drop for SpoolGuard {
    fn drop(&mut self) {
        #[cfg(all(feature = "run", target_os = "linux"))]
        {
            let run = self.0.join("run");
            if userns::ids().rootless().is_some() && run.exists() {
                snapshot::remove_all(&run);
            }
        }
    }
}

/// Why a `RUN` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// RUN cannot work here at all.
    #[error("RUN cannot be executed here: {what}. {fix}")]
    Unavailable {
        /// What is missing.
        what: String,
        /// What to do.
        fix: String,
    },
    /// The build was cancelled while the command ran: the sandbox was killed.
    #[error("RUN {command} was stopped: the build was cancelled")]
    Cancelled {
        /// The instruction's command as written.
        command: String,
    },
    /// The command ran and failed.
    #[error("RUN {command} {status}{}", tail_text(.tail))]
    Failed {
        /// The instruction's command as written.
        command: String,
        /// "exited with code 1", "was killed by signal 9".
        status: String,
        /// The last lines of its output.
        tail: String,
    },
    /// A rootless RUN failed and its output shows an ownership change refused: the user
    /// namespace maps only the user (no subordinate ids).
    #[error(
        "RUN {command} {status}{}\nThis RUN ran rootless in a single-id user namespace ({why}): files can only be owned by root, so changing an owner to any other id (chown, adduser's home directory, a package's user) fails. To fix it, {fix}",
        tail_text(.tail)
    )]
    SingleIdMapping {
        /// The instruction's command as written.
        command: String,
        /// "exited with code 1".
        status: String,
        /// The last lines of its output.
        tail: String,
        /// Why the mapping holds one id.
        why: String,
        /// What to do.
        fix: String,
    },
    /// The sandbox could not be set up.
    #[error("could not {step}: {source}{}", hint(.source))]
    Setup {
        /// The step.
        step: &'static str,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A `RUN --mount` could not be set up in the sandbox.
    #[error("RUN --mount on {target}: could not {step}: {source}{}", hint(.source))]
    Mount {
        /// The mount's target as written.
        target: String,
        /// The step.
        step: &'static str,
        /// The system's answer.
        #[source]
        source: std::io::Error,
    },
    /// The command is not in the image.
    #[error(
        "RUN {command}: {program} was not found in the image (looked in PATH={path}); install it in an earlier step or use its absolute path"
    )]
    NotFound {
        /// The instruction's command.
        command: String,
        /// argv\[0\].
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// A base layer could not be unpacked.
    #[error("unpacking layer {layer} of {image} for RUN: {source}")]
    Unpack {
        /// The image (or stage).
        image: String,
        /// The layer's digest.
        layer: crate::digest::Digest,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A base layer could not be fetched.
    #[error(transparent)]
    Layers(#[from] crate::layerfs::LayerFsError),
    /// `USER` does not resolve in the image.
    #[error(transparent)]
    User(#[from] crate::rootfs::users::UserError),
    /// Writing the layer failed.
    #[error(transparent)]
    Layer(#[from] crate::layers::BuildError),
    /// Something the command left or asked for cannot be handled.
    #[error("{what}")]
    Invalid {
        /// What.
        what: String,
    },
    /// A local file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn tail_text(tail: &str) -> String {
    if tail.trim().is_empty() {
        "; it printed nothing".into()
    } else {
        format!("; the end of its output:\n{}", tail.trim_end())
    }
}

fn hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (the kernel refused: inside a container, RUN needs namespaces and mounts allowed, e.g. --privileged or a seccomp/AppArmor profile permitting unshare and mount)"
        }
        Some(libc::ENODEV) => " (the kernel lacks this filesystem: load the overlay module)",
        Some(libc::EINVAL) => " (the kernel does not support this here)",
        _ => "",
    }
}
