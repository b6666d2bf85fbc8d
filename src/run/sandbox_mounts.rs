//! The sandbox's side of `RUN --mount` ([`MountOp`]s), run by PID 1 before `pivot_root`:
//! each source and target is opened with `openat2(RESOLVE_IN_ROOT)` in its own root and
//! mounted through its `/proc/self/fd` path, so no `..` or symlink leads out of a root; a
//! missing target inside another mount is made there; a secret is written into a tmpfs of its
//! own (never to disk) that is then made read-only; read-only mounts are remounted
//! `MS_RDONLY`. Everything here is a plain system call on memory prepared before the fork.

use std::ffi::CString;

use super::{
    MountOp, MountWhat, Prepared, RunError, S_M_CREATE, S_M_MOUNT, S_M_OVERLAY, S_M_SECRET,
    S_M_SOURCE, S_M_TARGET, child::report, cpath, cstr, errno,
};

/// A [`MountOp`] as C strings.
pub(super) struct PreparedMount {
    /// `(at, opts)` of an overlay to mount first.
    overlay: Option<(CString, CString)>,
    /// Root and path of the source (bind, overlay, secret).
    source: Option<(CString, CString)>,
    /// Tmpfs options.
    tmpfs: Option<CString>,
    /// Secret: the tmpfs mount point, the file in it, the content and its metadata.
    secret: Option<(CString, CString, Vec<u8>, u32, u32, u32)>,
    target: CString,
    /// Parent of the target and its last component, when it may need making.
    create: Option<(CString, CString, bool)>,
    readonly: bool,
}

/// `op` as C strings, allocated before the fork.
pub(super) fn prepare_mount(op: &MountOp) -> Result<PreparedMount, RunError> {
    let rel = |r: &str| cstr(if r.is_empty() { b"." } else { r.as_bytes() });
    let mut pm = PreparedMount {
        overlay: None,
        source: None,
        tmpfs: None,
        secret: None,
        target: rel(&op.target)?,
        create: None,
        readonly: op.readonly,
    };
    match &op.what {
        MountWhat::Bind { root, rel: r } => pm.source = Some((cpath(root)?, rel(r)?)),
        MountWhat::Overlay { opts, at, rel: r } => {
            pm.overlay = Some((cpath(at)?, cstr(opts.as_bytes())?));
            pm.source = Some((cpath(at)?, rel(r)?));
        }
        MountWhat::Tmpfs { opts } => pm.tmpfs = Some(cstr(opts.as_bytes())?),
        MountWhat::Secret {
            at,
            data,
            mode,
            uid,
            gid,
        } => {
            pm.secret = Some((
                cpath(at)?,
                cpath(&at.join("secret"))?,
                data.clone(),
                *mode,
                *uid,
                *gid,
            ));
            pm.source = Some((cpath(at)?, cstr(b"secret")?));
        }
    }
    if let Some(dir) = op.create {
        let (parent, name) = op.target.rsplit_once('/').unwrap_or(("", &op.target));
        pm.create = Some((rel(parent)?, cstr(name.as_bytes())?, dir));
    }
    Ok(pm)
}

/// Fail a step of `--mount` number `index`.
unsafe fn fail_mount(fd: libc::c_int, step: u8, index: usize) -> ! {
    let e = errno();
    // SAFETY: async-signal-safe calls only.
    unsafe {
        report(fd, b'E', step as i32 | ((index as i32) << 8), e);
        libc::_exit(127)
    }
}

/// `/proc/self/fd/<fd>` in `buf` (NUL-terminated), without allocating.
fn fd_path(p: &Prepared, fd: libc::c_int, buf: &mut [u8; 64]) -> *const libc::c_char {
    let dir = p.fd_dir.as_bytes();
    buf[..dir.len()].copy_from_slice(dir);
    let mut digits = [0u8; 12];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[dir.len() + i] = digits[len - 1 - i];
    }
    buf[dir.len() + len] = 0;
    buf.as_ptr().cast()
}

/// `openat2(dirfd, path, O_PATH|O_CLOEXEC, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)`: `path`
/// resolved with `dirfd` as its root, so neither `..` nor a symlink leaves it.
unsafe fn open_in_root(dirfd: libc::c_int, path: &CString, dir_only: bool) -> libc::c_int {
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags =
        (libc::O_PATH | libc::O_CLOEXEC | if dir_only { libc::O_DIRECTORY } else { 0 }) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `how` and `path` are valid for the call.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        ) as libc::c_int
    }
}

/// Perform `RUN --mount` number `index` (before `pivot_root`, the current directory being
/// the snapshot root). Async-signal-safe: system calls on memory prepared before the fork.
pub(super) unsafe fn mount_one(p: &Prepared, m: &PreparedMount, rep: libc::c_int, index: usize) {
    use libc::{MS_BIND, MS_NODEV, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT};
    let none: *const libc::c_char = std::ptr::null();
    let c = |s: &'static [u8]| s.as_ptr().cast::<libc::c_char>();
    let mut sbuf = [0u8; 64];
    let mut tbuf = [0u8; 64];
    // SAFETY: system calls on memory prepared before the fork.
    unsafe {
        let fail = |step| fail_mount(rep, step, index);
        if let Some((at, opts)) = &m.overlay
            && libc::mount(
                c(b"overlay\0"),
                at.as_ptr(),
                c(b"overlay\0"),
                0,
                opts.as_ptr().cast(),
            ) != 0
        {
            fail(S_M_OVERLAY);
        }
        if let Some((at, file, data, mode, uid, gid)) = &m.secret {
            if libc::mount(
                c(b"tmpfs\0"),
                at.as_ptr(),
                c(b"tmpfs\0"),
                MS_NOSUID | MS_NODEV | libc::MS_NOEXEC,
                c(b"mode=0700\0").cast(),
            ) != 0
            {
                fail(S_M_SECRET);
            }
            let fd = libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            );
            if fd < 0 {
                fail(S_M_SECRET);
            }
            let mut off = 0;
            while off < data.len() {
                let n = libc::write(fd, data[off..].as_ptr().cast(), data.len() - off);
                if n < 0 {
                    if errno() == libc::EINTR {
                        continue;
                    }
                    fail(S_M_SECRET);
                }
                off += n as usize;
            }
            if libc::fchown(fd, *uid, *gid) != 0 || libc::fchmod(fd, *mode) != 0 {
                fail(S_M_SECRET);
            }
            libc::close(fd);
            if libc::mount(
                none,
                at.as_ptr(),
                none,
                MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) != 0
            {
                fail(S_M_SECRET);
            }
        }
        let mut src = -1;
        if let Some((root, rel)) = &m.source {
            let root_fd = libc::open(
                root.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if root_fd < 0 {
                fail(S_M_SOURCE);
            }
            src = open_in_root(root_fd, rel, false);
            if src < 0 {
                fail(S_M_SOURCE);
            }
            libc::close(root_fd);
        }
        let merged = libc::open(
            p.merged.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if merged < 0 {
            fail(S_M_TARGET);
        }
        let mut target = open_in_root(merged, &m.target, false);
        if target < 0 && errno() == libc::ENOENT {
            if let Some((parent, name, dir)) = &m.create {
                let pfd = open_in_root(merged, parent, true);
                if pfd < 0 {
                    fail(S_M_CREATE);
                }
                if *dir {
                    if libc::mkdirat(pfd, name.as_ptr(), 0o755) != 0 && errno() != libc::EEXIST {
                        fail(S_M_CREATE);
                    }
                } else {
                    let f = libc::openat(
                        pfd,
                        name.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                        0o644,
                    );
                    if f < 0 {
                        fail(S_M_CREATE);
                    }
                    libc::close(f);
                }
                libc::close(pfd);
                target = open_in_root(merged, &m.target, false);
            }
        }
        if target < 0 {
            fail(S_M_TARGET);
        }
        let tpath = fd_path(p, target, &mut tbuf);
        let r = match &m.tmpfs {
            Some(opts) => libc::mount(
                c(b"tmpfs\0"),
                tpath,
                c(b"tmpfs\0"),
                MS_NOSUID | MS_NODEV,
                opts.as_ptr().cast(),
            ),
            None => libc::mount(
                fd_path(p, src, &mut sbuf),
                tpath,
                none,
                MS_BIND | MS_REC,
                std::ptr::null(),
            ),
        };
        if r != 0 {
            fail(S_M_MOUNT);
        }
        libc::close(target);
        if src >= 0 {
            libc::close(src);
        }
        if m.readonly {
            // The new mount is what the target path leads to now.
            let top = open_in_root(merged, &m.target, false);
            if top < 0
                || libc::mount(
                    none,
                    fd_path(p, top, &mut tbuf),
                    none,
                    MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
                    std::ptr::null(),
                ) != 0
            {
                fail(S_M_MOUNT);
            }
            libc::close(top);
        }
        libc::close(merged);
    }
}
