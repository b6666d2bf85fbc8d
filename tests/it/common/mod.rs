//! The shared test harness: a real registry ([`registry`]), wrappers around
//! tools we did not write ([`tools`]: skopeo, umoci, chroot), the `ocipush`
//! binary in a clean environment ([`ocipush`]) and fixtures ([`fixtures`]).
#![allow(dead_code)]

pub mod buildah;
pub mod ecr_faults;
pub mod fault_proxy;
pub mod fixtures;
pub mod flatten;
pub mod http_server;
pub mod ocipush;
pub mod registry;
pub mod tls_server;
pub mod tools;
pub mod users;
pub mod usrmerge;

use std::path::{Path, PathBuf};

/// True when running under CI (`CI=true`), where a missing tool is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `name` in `PATH` (or the usual system directories). A missing tool
/// fails the test with the Debian package to install; `scripts/test.sh`
/// installs all of them.
pub fn require_tool(name: &str, debian_package: &str) -> PathBuf {
    if let Some(p) = find_tool(name) {
        return p;
    }
    panic!(
        "required tool `{name}` not found in PATH{}; install it with \
         `apt-get install -y {debian_package}` or run ./scripts/test.sh, which installs \
         every tool the tests need",
        if in_ci() { " (CI=true)" } else { "" }
    );
}

/// Looks `name` up in `PATH`, then `/usr/sbin`, `/usr/bin`, `/sbin`, `/bin`.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The directory of data shared beside the repository (`../shared`):
/// `$OCIPUSH_SHARED` if set, else `$CARGO_MANIFEST_DIR/../shared`, else
/// `$CARGO_MANIFEST_DIR/../../shared` (a git worktree one level deeper).
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OCIPUSH_SHARED") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "OCIPUSH_SHARED={} is not a directory",
            dir.display()
        );
        return dir;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [manifest.join("../shared"), manifest.join("../../shared")];
    for c in &candidates {
        if c.join("testdata").is_dir() {
            return c.canonicalize().unwrap_or_else(|_| c.clone());
        }
    }
    panic!(
        "shared test data not found: set OCIPUSH_SHARED or place `shared/` beside the \
         repository (looked in {} and {})",
        candidates[0].display(),
        candidates[1].display()
    );
}

/// The Alpine 3.20.3 minirootfs tarball for `arch` (`x86_64` or `aarch64`).
pub fn alpine_tarball(arch: &str) -> PathBuf {
    let p = shared_dir()
        .join("testdata/alpine")
        .join(alpine_tarball_name(arch));
    assert!(p.is_file(), "missing shared Alpine tarball {}", p.display());
    p
}

/// `alpine-minirootfs-3.20.3-<arch>.tar.gz`.
pub fn alpine_tarball_name(arch: &str) -> String {
    format!("alpine-minirootfs-3.20.3-{arch}.tar.gz")
}

/// A fresh temp dir with a recognisable prefix.
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ocipush-{prefix}-"))
        .tempdir()
        .expect("create temp dir")
}

/// The repository root (`CARGO_MANIFEST_DIR`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `testdata/<rel>` in this repository.
pub fn testdata(rel: &str) -> PathBuf {
    repo_root().join("testdata").join(rel)
}
