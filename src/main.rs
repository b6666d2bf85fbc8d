//! The `ocipush` command: build a Dockerfile and push the image. Maps [`cli::run`] to an exit
//! code: 0 success, 1 failure (one clear message on stderr), 2 usage error.

mod cli;

fn main() -> std::process::ExitCode {
    tune_allocator();
    cli::main()
}

/// glibc's malloc raises its mmap threshold each time a large block is freed, after which
/// every 1 MiB compression buffer comes from a heap arena and stays resident once freed (one
/// arena per thread that ever compressed). A fixed threshold keeps large blocks mmapped and
/// returned to the system when freed, and two arenas are enough for a process whose work is
/// a few long-lived threads. Measured on a 400 MB layer: peak RSS 43 → 22 MiB, same time.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    // SAFETY: mallopt only changes malloc's tunables; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}
