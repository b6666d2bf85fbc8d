//! The sandbox's children (see [`super`]): the keeper, which enters the namespaces and waits
//! for PID 1, and PID 1 itself, which mounts, pivots, drops capabilities and execs the command.
//! Only async-signal-safe system calls on memory prepared before the fork; a failing step is
//! reported on the report pipe as (step, errno).

use super::*;

/// Report (tag, a, b) on `fd`; async-signal-safe.
pub(super) unsafe fn report(fd: libc::c_int, tag: u8, a: i32, b: i32) {
    let mut rec = [0u8; 9];
    rec[0] = tag;
    rec[1..5].copy_from_slice(&a.to_ne_bytes());
    rec[5..9].copy_from_slice(&b.to_ne_bytes());
    // SAFETY: `rec` is valid; a short write only loses the report.
    unsafe {
        libc::write(fd, rec.as_ptr().cast(), rec.len());
    }
}

/// Fail `step` with errno and exit.
unsafe fn fail(fd: libc::c_int, step: u8) -> ! {
    let e = errno();
    // SAFETY: async-signal-safe calls only.
    unsafe {
        report(fd, b'E', step as i32, e);
        libc::_exit(127)
    }
}

/// The first child: namespaces, then the command as PID 1 of the new PID namespace.
pub(super) unsafe fn keeper(
    p: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    out_w: libc::c_int,
    rep: libc::c_int,
    userns: Option<&Handshake>,
) -> ! {
    // SAFETY: system calls on memory prepared before the fork.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        // A session of its own: a terminal's Ctrl-C (sent to the foreground process group)
        // or `timeout`'s signal to its group reaches ocipush, which cancels the build and
        // kills the sandbox, never the sandbox directly.
        libc::setsid();
        let null = libc::open(p.dev_null.as_ptr(), libc::O_RDONLY);
        if null < 0
            || libc::dup2(null, 0) < 0
            || libc::dup2(out_w, 1) < 0
            || libc::dup2(out_w, 2) < 0
        {
            fail(rep, S_STDIO);
        }
        // Rootless: the user namespace first (the parent writes its maps), so the others
        // belong to it.
        if let Some(h) = userns
            && !crate::run::userns::child_enter(h)
        {
            libc::_exit(126);
        }
        let mut flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if p.new_net {
            flags |= libc::CLONE_NEWNET;
        }
        if libc::unshare(flags) != 0 {
            fail(rep, S_UNSHARE);
        }
        let pid = libc::fork();
        if pid < 0 {
            fail(rep, S_FORK);
        }
        if pid == 0 {
            init(p, argv, envp, rep);
        }
        // PID 1's pid here, so a cancelled build can kill the namespace.
        report(rep, b'P', pid, 0);
        let mut st = 0;
        while libc::waitpid(pid, &mut st, 0) < 0 {
            if errno() != libc::EINTR {
                fail(rep, S_FORK);
            }
        }
        report(rep, b'S', st, 0);
        libc::_exit(0)
    }
}

/// PID 1 of the sandbox: mounts, root, user, exec.
unsafe fn init(
    p: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    rep: libc::c_int,
) -> ! {
    use libc::{MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC};
    let none: *const libc::c_char = std::ptr::null();
    let c = |s: &'static [u8]| s.as_ptr().cast::<libc::c_char>();
    let p_null = || p.dev_null.as_ptr();
    // SAFETY: system calls on memory prepared before the fork.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::mount(none, c(b"/\0"), none, MS_REC | MS_PRIVATE, std::ptr::null()) != 0 {
            fail(rep, S_PRIVATE);
        }
        if libc::chdir(p.base.as_ptr()) != 0 {
            fail(rep, S_BASE);
        }
        let root = match &p.overlay_opts {
            Some(opts) => libc::mount(
                c(b"overlay\0"),
                p.merged.as_ptr(),
                c(b"overlay\0"),
                0,
                opts.as_ptr().cast(),
            ),
            // pivot_root needs a mount point: the copied root bound on itself.
            None => libc::mount(
                p.merged.as_ptr(),
                p.merged.as_ptr(),
                none,
                MS_BIND | MS_REC,
                std::ptr::null(),
            ),
        };
        if root != 0 {
            fail(rep, S_OVERLAY);
        }
        if libc::mount(
            c(b"proc\0"),
            p.proc_dir.as_ptr(),
            c(b"proc\0"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            fail(rep, S_PROC);
        }
        // A path this kernel's /proc lacks is skipped, as runc does.
        for p in &p.proc_readonly {
            if libc::mount(
                p.as_ptr(),
                p.as_ptr(),
                none,
                MS_BIND | MS_REC,
                std::ptr::null(),
            ) != 0
            {
                if errno() == libc::ENOENT {
                    continue;
                }
                fail(rep, S_PROC_RO);
            }
            let ro = MS_BIND | libc::MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
            if libc::mount(none, p.as_ptr(), none, ro, std::ptr::null()) != 0 {
                fail(rep, S_PROC_RO);
            }
        }
        for p in &p.proc_masked_files {
            if libc::mount(p_null(), p.as_ptr(), none, MS_BIND, std::ptr::null()) != 0
                && errno() != libc::ENOENT
            {
                fail(rep, S_PROC_MASK);
            }
        }
        for p in &p.proc_masked_dirs {
            if libc::mount(
                c(b"tmpfs\0"),
                p.as_ptr(),
                c(b"tmpfs\0"),
                MS_RDONLY,
                std::ptr::null(),
            ) != 0
                && errno() != libc::ENOENT
            {
                fail(rep, S_PROC_MASK);
            }
        }
        if libc::mount(
            c(b"tmpfs\0"),
            p.dev_dir.as_ptr(),
            c(b"tmpfs\0"),
            MS_NOSUID | libc::MS_STRICTATIME,
            p.dev_opts.as_ptr().cast(),
        ) != 0
        {
            fail(rep, S_DEV);
        }
        for (host, target) in &p.devices {
            let fd = libc::open(
                target.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o666,
            );
            if fd < 0 {
                fail(rep, S_DEVNODE);
            }
            libc::close(fd);
            if libc::mount(
                host.as_ptr(),
                target.as_ptr(),
                none,
                MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                fail(rep, S_DEVBIND);
            }
        }
        if libc::mkdir(p.pts.as_ptr(), 0o755) != 0
            || libc::mount(
                c(b"devpts\0"),
                p.pts.as_ptr(),
                c(b"devpts\0"),
                MS_NOSUID | MS_NOEXEC,
                p.pts_opts.as_ptr().cast(),
            ) != 0
        {
            fail(rep, S_PTS);
        }
        if libc::mkdir(p.shm.as_ptr(), 0o1777) != 0
            || libc::mount(
                c(b"shm\0"),
                p.shm.as_ptr(),
                c(b"tmpfs\0"),
                MS_NOSUID | MS_NODEV | MS_NOEXEC,
                p.shm_opts.as_ptr().cast(),
            ) != 0
        {
            fail(rep, S_SHM);
        }
        for (target, link) in &p.links {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                fail(rep, S_LINKS);
            }
        }
        if p.bind_sys {
            let ro = MS_BIND | libc::MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;
            if libc::mount(
                c(b"/sys\0"),
                p.sys_dir.as_ptr(),
                none,
                MS_BIND | MS_REC,
                std::ptr::null(),
            ) != 0
                || libc::mount(none, p.sys_dir.as_ptr(), none, ro, std::ptr::null()) != 0
            {
                fail(rep, S_SYS_BIND);
            }
        } else if libc::mount(
            c(b"sysfs\0"),
            p.sys_dir.as_ptr(),
            c(b"sysfs\0"),
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            fail(rep, S_SYS);
        }
        for (host, target) in &p.files {
            if libc::mount(
                host.as_ptr(),
                target.as_ptr(),
                none,
                MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                fail(rep, S_FILES);
            }
        }
        for (i, m) in p.mounts.iter().enumerate() {
            mount_one(p, m, rep, i);
        }
        if libc::sethostname(p.hostname.as_ptr(), p.hostname.as_bytes().len()) != 0 {
            fail(rep, S_HOSTNAME);
        }
        if libc::chdir(p.merged.as_ptr()) != 0
            || libc::syscall(libc::SYS_pivot_root, c(b".\0"), c(b".\0")) != 0
        {
            fail(rep, S_PIVOT);
        }
        if libc::umount2(c(b".\0"), libc::MNT_DETACH) != 0 || libc::chdir(c(b"/\0")) != 0 {
            fail(rep, S_DETACH);
        }
        if libc::chdir(p.cwd.as_ptr()) != 0 {
            fail(rep, S_CWD);
        }
        for cap in 0..=p.last_cap {
            if !KEPT_CAPS.contains(&cap)
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                && errno() != libc::EINVAL
            {
                fail(rep, S_CAPS);
            }
        }
        if (p.set_groups && libc::setgroups(p.groups.len(), p.groups.as_ptr()) != 0)
            || libc::setresgid(p.gid, p.gid, p.gid) != 0
            || libc::setresuid(p.uid, p.uid, p.uid) != 0
        {
            fail(rep, S_USER);
        }
        let mut err = libc::ENOENT;
        for cand in &p.candidates {
            libc::execve(cand.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
        }
        *libc::__errno_location() = err;
        fail(rep, S_EXEC)
    }
}
