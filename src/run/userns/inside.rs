//! What happens inside the user namespace: a plain `fork` of the build that `unshare`s
//! `CLONE_NEWUSER`, waits on a pipe until the parent has written its maps ([`Handshake`]),
//! and then, as root of the namespace, sets owners and modes ([`Owners`]) or removes a tree.
//! Like the sandbox, a child uses only system calls on memory allocated before the fork.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{Ids, Rootless, ids, refused};
use crate::run::RunError;

/// A mode to put back after [`Ids::grant_read`](super::Ids::grant_read).
pub(crate) struct Restore {
    pub(super) path: PathBuf,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
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
    pub(super) list: Vec<(CString, u32, u32, u32, bool)>,
    pub(super) paths: Vec<PathBuf>,
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

    pub(super) fn apply_as(self, r: &Rootless) -> Result<(), RunError> {
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

pub(super) fn cpath(p: &Path) -> Result<CString, RunError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RunError::Invalid {
        what: format!("{} contains a NUL byte", p.display()),
    })
}

/// What a namespaced child does (prepared before the fork).
pub(super) enum Op {
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
pub(super) fn run_inside(r: &Rootless, op: &Op) -> Result<(), (usize, io::Error)> {
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
