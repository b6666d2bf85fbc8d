//! The sandbox a `RUN` executes in: two `fork`s and raw syscalls (`libc`), no runtime binary.
//!
//! The first child (the *keeper*) moves its stdout/stderr to the output pipe, (rootless)
//! `unshare`s a user namespace and waits until the parent has written its maps
//! ([`super::userns`]), `unshare`s new mount, PID, IPC and UTS namespaces (and a network
//! one for `--network=none`), and forks again; the grandchild is PID 1 of the new PID
//! namespace. It makes every mount private, mounts the overlay (lower directories relative
//! to the snapshot directory, so the option string stays short; or, for the copy
//! snapshotter, binds the copied root on itself), a fresh `/proc`, a `/dev`
//! tmpfs holding bind mounts of the host's `null`, `zero`, `full`, `random`, `urandom` and
//! `tty` plus `pts`, `shm` and the usual links, a read-only `/sys` (rootless with the host's
//! network: the host's, bound), and the generated `/etc/hosts` and `/etc/resolv.conf`;
//! performs the `RUN --mount`s ([`MountOp`]: sources and targets opened with
//! `openat2(RESOLVE_IN_ROOT)` and mounted through their `/proc/self/fd` paths, so no `..` or
//! symlink leads out of a root; a secret written into a tmpfs of its own; read-only ones
//! remounted `MS_RDONLY`); sets the hostname; `pivot_root`s into the overlay and detaches the
//! old root (runc's
//! `pivot_root(".", ".")` + `umount2(".", MNT_DETACH)`), so no host path stays reachable;
//! narrows the capability bounding set to the OCI runtime default set (runc/containerd
//! `oci.defaultUnixCaps`); switches to the image user; and `execve`s the command, looking
//! argv\[0\] up in the image's `PATH` itself. The keeper waits for it and reports its wait
//! status on a pipe; the kernel kills whatever the command left running when PID 1 exits,
//! and both children die with the build (`PR_SET_PDEATHSIG`).
//!
//! Cancelling the build kills PID 1 of the sandbox (the keeper reports its pid first): the
//! kernel then kills every process of the namespace before PID 1's exit is reported, so when
//! [`run`] returns [`RunError::Cancelled`] nothing of the command is left. The keeper starts
//! a session of its own, so signals sent to ocipush's process group (Ctrl-C) go through
//! that cancellation rather than straight to the command.
//!
//! This file is the parent's side (preparing, forking, relaying output, cancelling, reading
//! the reports); the children's code is `sandbox_child.rs`, their mount steps
//! `sandbox_mounts.rs`.
//!
//! Everything the children use is allocated before the first fork: after `fork` in a
//! multithreaded process only async-signal-safe calls are allowed, and every call here is a
//! plain system call. A failing step writes (step, errno) on the report pipe and exits.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

use super::RunError;
use super::userns::{Handshake, Rootless};
use mounts::{PreparedMount, mount_one, prepare_mount};

#[path = "sandbox_child.rs"]
mod child;
#[path = "sandbox_mounts.rs"]
mod mounts;

/// The devices bound from the host into `/dev` (the OCI runtime spec's default devices
/// without `console`/`ptmx`, which come from `pts`).
pub(crate) const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// BuildKit's sandbox hostname (`executor/oci`: `defaultHostname`).
pub(crate) const HOSTNAME: &str = "buildkitsandbox";

/// Capabilities kept: runc and containerd's default set for containers (CHOWN,
/// DAC_OVERRIDE, FSETID, FOWNER, NET_RAW, SETGID, SETUID, SETFCAP, SETPCAP,
/// NET_BIND_SERVICE, SYS_CHROOT, KILL, AUDIT_WRITE) *without MKNOD*: runtimes keep MKNOD
/// because the devices cgroup stops a container from opening the nodes it makes; with no
/// cgroup here, MKNOD would let a command make and open the host's disks.
const KEPT_CAPS: [u32; 13] = [0, 1, 4, 3, 13, 6, 7, 31, 8, 10, 18, 5, 29];

/// `/proc` entries made read-only (runc's default `readonlyPaths`): writing `/proc/sys` as
/// root would change the host's kernel settings.
const PROC_READONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];
/// `/proc` files hidden under `/dev/null` (runc's default `maskedPaths`).
const PROC_MASKED_FILES: [&str; 6] = [
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
];
/// `/proc` directories hidden under an empty read-only tmpfs (runc's `maskedPaths`).
const PROC_MASKED_DIRS: [&str; 2] = ["acpi", "scsi"];

/// What to run and where; paths are on the host.
pub(crate) struct Spec {
    /// The directory the overlay's lower directories are relative to.
    pub(crate) base: PathBuf,
    /// `lowerdir=…,upperdir=…,workdir=…` (relative to `base`); `None`: `merged` is a plain
    /// directory holding the whole root (the copy snapshotter, [`super::copyroot`]), bound on
    /// itself instead.
    pub(crate) overlay: Option<String>,
    /// Where the overlay is mounted (or the copied root).
    pub(crate) merged: PathBuf,
    /// In-image paths (relative, resolved) of the mount points.
    pub(crate) proc_dir: String,
    pub(crate) dev_dir: String,
    pub(crate) sys_dir: String,
    /// Files bound over in-image paths: (host file, in-image path).
    pub(crate) files: Vec<(PathBuf, String)>,
    /// A new network namespace (`--network=none`).
    pub(crate) new_net: bool,
    /// The user.
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
    /// Working directory in the image.
    pub(crate) cwd: String,
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<String>,
    /// `RUN --mount`s, mounted in this order after the generated files.
    pub(crate) mounts: Vec<MountOp>,
    /// Rootless: the user namespace's mapping (see [`super::userns`]).
    pub(crate) rootless: Option<Rootless>,
}

/// One `RUN --mount` as the sandbox performs it (host paths absolute or relative to
/// [`Spec::base`]).
pub(crate) struct MountOp {
    /// What goes on the target.
    pub(crate) what: MountWhat,
    /// The target in the image, relative to its root; resolved with `RESOLVE_IN_ROOT`.
    pub(crate) target: String,
    /// Make the target first when it is missing (a directory when `true`): it lies in another
    /// mount.
    pub(crate) create: Option<bool>,
    /// Remount read-only.
    pub(crate) readonly: bool,
    /// The target as written (for messages).
    pub(crate) shown: String,
}

/// What a [`MountOp`] mounts.
pub(crate) enum MountWhat {
    /// `rel` inside the host directory `root`, resolved with `RESOLVE_IN_ROOT`.
    Bind { root: PathBuf, rel: String },
    /// An overlay with `opts` mounted at `at`, then `rel` inside it as with `Bind`.
    Overlay {
        opts: String,
        at: PathBuf,
        rel: String,
    },
    /// A fresh tmpfs with `opts`.
    Tmpfs { opts: String },
    /// A tmpfs at `at` holding one file with `data` (mode, uid, gid), made read-only and bound
    /// on the target: the content is never written to disk.
    Secret {
        at: PathBuf,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Exited(i32),
    Signaled(i32),
}

/// Steps a child can fail at (reported as a byte).
const STEPS: [&str; 31] = [
    "create the mount, PID, IPC and UTS namespaces (unshare)",
    "fork the sandbox's first process",
    "make the mounts private",
    "enter the snapshot directory",
    "mount the overlay filesystem",
    "mount /proc",
    "mount the /dev tmpfs",
    "create a device node mount point",
    "bind a device from the host's /dev",
    "mount /dev/pts",
    "mount /dev/shm",
    "create the /dev links",
    "mount /sys",
    "bind /etc/hosts or /etc/resolv.conf",
    "set the hostname",
    "pivot_root into the image",
    "detach the host's root",
    "enter the working directory",
    "narrow the capability bounding set",
    "switch to the image user",
    "execute the command",
    "redirect the command's standard streams",
    "make /proc/sys and its siblings read-only",
    "mask /proc's kernel files",
    "bind the host's /sys (rootless, host network)",
    "mount the source overlay",
    "open the source",
    "make the mount point",
    "open the mount point",
    "mount",
    "write the secret into its tmpfs",
];
/// Whether `e` is the sandbox's report that the overlay could not be mounted (overlay on
/// overlay, refused in this namespace…): the copy snapshotter can do instead.
pub(crate) fn overlay_refused(e: &RunError) -> bool {
    matches!(e, RunError::Setup { step, .. } if *step == STEPS[S_OVERLAY as usize])
}

const S_UNSHARE: u8 = 0;
const S_FORK: u8 = 1;
const S_PRIVATE: u8 = 2;
const S_BASE: u8 = 3;
const S_OVERLAY: u8 = 4;
const S_PROC: u8 = 5;
const S_DEV: u8 = 6;
const S_DEVNODE: u8 = 7;
const S_DEVBIND: u8 = 8;
const S_PTS: u8 = 9;
const S_SHM: u8 = 10;
const S_LINKS: u8 = 11;
const S_SYS: u8 = 12;
const S_FILES: u8 = 13;
const S_HOSTNAME: u8 = 14;
const S_PIVOT: u8 = 15;
const S_DETACH: u8 = 16;
const S_CWD: u8 = 17;
const S_CAPS: u8 = 18;
const S_USER: u8 = 19;
const S_EXEC: u8 = 20;
const S_STDIO: u8 = 21;
const S_PROC_RO: u8 = 22;
const S_PROC_MASK: u8 = 23;
const S_SYS_BIND: u8 = 24;
const S_M_OVERLAY: u8 = 25;
const S_M_SOURCE: u8 = 26;
const S_M_CREATE: u8 = 27;
const S_M_TARGET: u8 = 28;
const S_M_MOUNT: u8 = 29;
const S_M_SECRET: u8 = 30;
/// The first step that concerns one `--mount` (its index is reported with it).
const S_M_FIRST: u8 = S_M_OVERLAY;

fn cstr(b: &[u8]) -> Result<CString, RunError> {
    CString::new(b).map_err(|_| RunError::Invalid {
        what: format!(
            "{:?} contains a NUL byte",
            String::from_utf8_lossy(b).into_owned()
        ),
    })
}

pub(crate) fn cpath(p: &Path) -> Result<CString, RunError> {
    cstr(p.as_os_str().as_bytes())
}

/// Everything the children touch, allocated before the fork.
struct Prepared {
    base: CString,
    /// `None`: bind `merged` on itself (a copied root) instead of mounting an overlay.
    overlay_opts: Option<CString>,
    merged: CString,
    proc_dir: CString,
    proc_readonly: Vec<CString>,
    proc_masked_files: Vec<CString>,
    proc_masked_dirs: Vec<CString>,
    dev_dir: CString,
    dev_opts: CString,
    devices: Vec<(CString, CString)>,
    pts: CString,
    pts_opts: CString,
    shm: CString,
    shm_opts: CString,
    links: Vec<(CString, CString)>,
    sys_dir: CString,
    files: Vec<(CString, CString)>,
    hostname: CString,
    dev_null: CString,
    cwd: CString,
    new_net: bool,
    /// In a user namespace: `/sys` is bound from the host unless the network is new
    /// (sysfs can only be mounted by the owner of the network namespace).
    bind_sys: bool,
    /// `setgroups` is allowed (not after a single-id mapping's `setgroups deny`).
    set_groups: bool,
    uid: u32,
    gid: u32,
    groups: Vec<libc::gid_t>,
    last_cap: u32,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    mounts: Vec<PreparedMount>,
    /// `/proc/self/fd/`.
    fd_dir: CString,
}

fn prepare(spec: &Spec) -> Result<Prepared, RunError> {
    let m = |rel: &str| cpath(&spec.merged.join(rel));
    let dev = spec.merged.join(&spec.dev_dir);
    let mut devices = Vec::new();
    for d in DEVICES {
        devices.push((cstr(format!("/dev/{d}").as_bytes())?, cpath(&dev.join(d))?));
    }
    let mut links = Vec::new();
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        links.push((cstr(target.as_bytes())?, cpath(&dev.join(name))?));
    }
    let mut files = Vec::new();
    for (host, inside) in &spec.files {
        files.push((cpath(host)?, m(inside)?));
    }
    let path = spec
        .env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(crate::image::DEFAULT_LINUX_PATH);
    let prog = &spec.argv[0];
    let mut candidates = Vec::new();
    if prog.contains('/') {
        candidates.push(cstr(prog.as_bytes())?);
    } else {
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            candidates.push(cstr(
                format!("{}/{prog}", dir.trim_end_matches('/')).as_bytes(),
            )?);
        }
    }
    let proc_paths = |names: &[&str]| -> Result<Vec<CString>, RunError> {
        names
            .iter()
            .map(|n| cpath(&spec.merged.join(&spec.proc_dir).join(n)))
            .collect()
    };
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    Ok(Prepared {
        base: cpath(&spec.base)?,
        overlay_opts: match &spec.overlay {
            Some(o) => Some(cstr(o.as_bytes())?),
            None => None,
        },
        merged: cpath(&spec.merged)?,
        proc_dir: m(&spec.proc_dir)?,
        proc_readonly: proc_paths(&PROC_READONLY)?,
        proc_masked_files: proc_paths(&PROC_MASKED_FILES)?,
        proc_masked_dirs: proc_paths(&PROC_MASKED_DIRS)?,
        dev_dir: m(&spec.dev_dir)?,
        dev_opts: cstr(b"mode=755,size=65536k")?,
        devices,
        pts: cpath(&dev.join("pts"))?,
        pts_opts: cstr(b"newinstance,ptmxmode=0666,mode=0620")?,
        shm: cpath(&dev.join("shm"))?,
        shm_opts: cstr(b"mode=1777,size=65536k")?,
        links,
        sys_dir: m(&spec.sys_dir)?,
        files,
        hostname: cstr(HOSTNAME.as_bytes())?,
        dev_null: cstr(b"/dev/null")?,
        cwd: cstr(spec.cwd.as_bytes())?,
        new_net: spec.new_net,
        bind_sys: spec.rootless.is_some() && !spec.new_net,
        set_groups: spec.rootless.as_ref().is_none_or(|r| r.ranges.is_some()),
        uid: spec.uid,
        gid: spec.gid,
        groups: spec.groups.clone(),
        last_cap,
        candidates,
        argv: spec
            .argv
            .iter()
            .map(|a| cstr(a.as_bytes()))
            .collect::<Result<_, _>>()?,
        env: spec
            .env
            .iter()
            .map(|a| {
                cstr(a.as_bytes()).map_err(|_| RunError::Invalid {
                    what: format!(
                        "the environment variable {} contains a NUL byte",
                        a.split('=').next().unwrap_or_default()
                    ),
                })
            })
            .collect::<Result<_, _>>()?,
        mounts: spec
            .mounts
            .iter()
            .map(prepare_mount)
            .collect::<Result<_, _>>()?,
        fd_dir: cstr(b"/proc/self/fd/")?,
    })
}

/// A pipe, both ends close-on-exec.
fn pipe() -> Result<(libc::c_int, libc::c_int), RunError> {
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

/// How often a running command checks for cancellation: the token is checked between waits
/// on the command's output, not woken by a task (a task may be dropped unpolled when the
/// runtime shuts down, right when a cancelled CLI returns).
const CANCEL_POLL_MS: libc::c_int = 50;

/// Run `spec`, feeding its output (stdout and stderr, interleaved) to `on_output` as it comes.
/// When `cancel` fires, the sandbox is killed and the result is `RunError::Cancelled` (with an
/// empty command, which the caller fills in).
pub(crate) fn run(
    spec: &Spec,
    cancel: &CancellationToken,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<Status, RunError> {
    let p = prepare(spec)?;
    let argv: Vec<*const libc::c_char> = p
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = p
        .env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let (out_r, out_w) = pipe()?;
    let (rep_r, rep_w) = pipe()?;
    let handshake = match &spec.rootless {
        Some(_) => Some(Handshake::new()?),
        None => None,
    };
    // SAFETY: after fork the child only makes system calls on memory allocated before it
    // (see the module doc) and never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = io::Error::last_os_error();
        // SAFETY: closing descriptors this function owns.
        unsafe {
            for fd in [out_r, out_w, rep_r, rep_w] {
                libc::close(fd);
            }
        }
        return Err(RunError::Io {
            action: "fork",
            path: PathBuf::new(),
            source: e,
        });
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe { child::keeper(&p, &argv, &envp, out_w, rep_w, handshake.as_ref()) }
    }
    // SAFETY: the parent's copies of the write ends.
    unsafe {
        libc::close(out_w);
        libc::close(rep_w);
    }
    if let (Some(h), Some(r)) = (&handshake, &spec.rootless)
        && let Err(e) = h.parent(r, pid)
    {
        let mut status = 0;
        // SAFETY: our own child (it exits on the closed handshake) and our read ends.
        unsafe {
            while libc::waitpid(pid, &mut status, 0) < 0 && errno() == libc::EINTR {}
            libc::close(out_r);
            libc::close(rep_r);
        }
        return Err(e);
    }
    let (report, cancelled) = relay(out_r, rep_r, cancel, on_output);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    // SAFETY: closing our read ends.
    unsafe {
        libc::close(out_r);
        libc::close(rep_r);
    }
    if cancelled {
        return Err(RunError::Cancelled {
            command: String::new(),
        });
    }
    let mut waited = None;
    for rec in report.chunks_exact(9) {
        let a = i32::from_ne_bytes([rec[1], rec[2], rec[3], rec[4]]);
        let b = i32::from_ne_bytes([rec[5], rec[6], rec[7], rec[8]]);
        match rec[0] {
            b'E' => {
                let (code, index) = ((a & 0xff) as u8, (a >> 8) as usize);
                let step = if code == S_OVERLAY && spec.overlay.is_none() {
                    "bind the copied root on itself"
                } else {
                    STEPS
                        .get(code as usize)
                        .copied()
                        .unwrap_or("set up the sandbox")
                };
                let source = io::Error::from_raw_os_error(b);
                if code >= S_M_FIRST
                    && let Some(m) = spec.mounts.get(index)
                {
                    return Err(RunError::Mount {
                        target: m.shown.clone(),
                        step,
                        source,
                    });
                }
                return Err(RunError::Setup { step, source });
            }
            b'S' => waited = Some(a),
            _ => {}
        }
    }
    let Some(st) = waited else {
        return Err(RunError::Setup {
            step: "wait for the command (the sandbox's keeper process ended without a report)",
            source: io::Error::other(format!("keeper wait status {status:#x}")),
        });
    };
    if libc::WIFSIGNALED(st) {
        Ok(Status::Signaled(libc::WTERMSIG(st)))
    } else {
        Ok(Status::Exited(libc::WEXITSTATUS(st)))
    }
}

/// Until the command's output and the keeper's reports both end: pass the output on, collect
/// the reports, and on cancellation kill the sandbox's PID 1 (as soon as the keeper has
/// reported its pid, which it does right after forking it; not once it reported PID 1's
/// exit, when the pid may be reused). Returns the reports and whether the run was cancelled.
fn relay(
    out_r: libc::c_int,
    rep_r: libc::c_int,
    cancel: &CancellationToken,
    on_output: &mut dyn FnMut(&[u8]),
) -> (Vec<u8>, bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut report = Vec::new();
    let mut init: Option<libc::pid_t> = None;
    let mut cancelled = false;
    // poll(2) skips entries with a negative fd: a stream that ended.
    let mut fds = [
        libc::pollfd {
            fd: out_r,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: rep_r,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    let kill = |report: &[u8], pid: libc::pid_t| {
        if !report.chunks_exact(9).any(|rec| rec[0] == b'S') {
            // SAFETY: kill(2) on the sandbox's PID 1, not yet reaped by the keeper.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    };
    while fds[0].fd >= 0 || fds[1].fd >= 0 {
        // SAFETY: `fds` is a valid array of its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, CANCEL_POLL_MS) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            break;
        }
        for (i, pfd) in fds.iter_mut().enumerate() {
            if pfd.fd < 0 || pfd.revents == 0 {
                continue;
            }
            // SAFETY: `buf` is valid for its length.
            let r = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r > 0 {
                let got = &buf[..r as usize];
                if i == 0 {
                    on_output(got);
                } else {
                    report.extend_from_slice(got);
                    if init.is_none() {
                        init = report
                            .chunks_exact(9)
                            .find(|rec| rec[0] == b'P')
                            .map(|rec| i32::from_ne_bytes([rec[1], rec[2], rec[3], rec[4]]));
                        if let (true, Some(p)) = (cancelled, init) {
                            kill(&report, p);
                        }
                    }
                }
            } else if r == 0 || errno() != libc::EINTR {
                pfd.fd = -1;
            }
        }
        if !cancelled && cancel.is_cancelled() {
            cancelled = true;
            tracing::debug!("the build was cancelled: killing the RUN's sandbox");
            if let Some(p) = init {
                kill(&report, p);
            }
        }
    }
    (report, cancelled)
}

fn errno() -> i32 {
    // SAFETY: reading the thread's errno.
    unsafe { *libc::__errno_location() }
}
