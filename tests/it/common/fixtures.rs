//! Fixtures built with tools we did not write: an Alpine OCI image made by
//! umoci from the shared minirootfs (no ocipush involved), and contexts.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::registry::RegistryServer;
use super::tools::{image_arg, skopeo_copy_with, umoci, umoci_unpack, untar_gz};
use super::{alpine_tarball, alpine_tarball_name};

/// Builds, WITHOUT ocipush, an OCI image layout at `layout_dir` holding
/// `tag`: one layer with the Alpine minirootfs for `arch` (`x86_64`,
/// `aarch64`), `Cmd ["/bin/sh"]`, a default `PATH`, linux/amd64 or arm64 —
/// the same image as Alpine's official `FROM scratch` + `ADD` + `CMD`.
/// Steps: `umoci init`, `umoci new`, `umoci unpack`, `tar -x` into the
/// rootfs, `umoci repack`, `umoci config`.
pub fn build_alpine_layout_with_umoci(layout_dir: &Path, tag: &str, arch: &str) {
    let work = super::tempdir("umoci-alpine");
    let bundle = work.path().join("bundle");
    let image = image_arg(layout_dir, tag);
    umoci(&["init".as_ref(), "--layout".as_ref(), layout_dir.as_os_str()]);
    umoci(&["new".as_ref(), "--image".as_ref(), &image]);
    umoci_unpack(layout_dir, tag, &bundle);
    untar_gz(&alpine_tarball(arch), &bundle.join("rootfs"));
    umoci(&[
        "repack".as_ref(),
        "--image".as_ref(),
        &image,
        bundle.as_os_str(),
    ]);
    let goarch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("unknown arch {other}"),
    };
    umoci(&[
        "config".as_ref(),
        "--image".as_ref(),
        &image,
        "--os=linux".as_ref(),
        format!("--architecture={goarch}").as_ref(),
        "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".as_ref(),
        "--config.cmd=/bin/sh".as_ref(),
    ]);
    umoci(&["gc".as_ref(), "--layout".as_ref(), layout_dir.as_os_str()]);
}

/// A umoci-built Alpine x86_64 layout with tag `latest`, built once and
/// shared read-only by every test (across test processes too: it is built in
/// a private directory under `CARGO_TARGET_TMPDIR` and renamed into place
/// atomically; a loser of the race discards its copy).
pub fn alpine_oci_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tarball = alpine_tarball("x86_64");
        let size = tarball.metadata().unwrap().len();
        let name = format!("alpine-umoci-x86_64-{size}-v1");
        let final_dir = base.join(&name);
        if final_dir.join("index.json").is_file() {
            return final_dir;
        }
        std::fs::create_dir_all(base).unwrap();
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .tempdir_in(base)
            .unwrap();
        let layout = staging.path().join("layout");
        build_alpine_layout_with_umoci(&layout, "latest", "x86_64");
        publish_layout(&layout, &final_dir);
        final_dir
    })
}

/// Moves a layout built in a staging directory to `final_dir`, where other tests look for it;
/// another test having published it first is fine (the rename then fails on a full directory).
pub fn publish_layout(layout: &Path, final_dir: &Path) {
    match std::fs::rename(layout, final_dir) {
        Ok(()) => {}
        Err(_) if final_dir.join("index.json").is_file() => {}
        Err(e) => panic!(
            "rename {} -> {}: {e}",
            layout.display(),
            final_dir.display()
        ),
    }
}

/// Pushes the umoci-built Alpine (see [`alpine_oci_layout`]) to `reg` as
/// `repo_tag` (e.g. `library/alpine:latest`) with skopeo, using the
/// registry's credentials if it has any. Returns `127.0.0.1:P/repo_tag`.
pub fn seed_alpine(reg: &RegistryServer, repo_tag: &str) -> String {
    let src = format!(
        "oci:{}",
        image_arg(alpine_oci_layout(), "latest").to_string_lossy()
    );
    let dst = format!("{}/{repo_tag}", reg.addr());
    skopeo_copy_with(&src, None, &format!("docker://{dst}"), reg.credentials());
    dst
}

/// Copies the shared Alpine x86_64 tarball into `dir` and returns its file
/// name. A copy, not a hard link: tests touch context files, and a hard
/// link would change the shared file's mtime (we are root: no write bit
/// stops us).
pub fn copy_alpine_tarball(dir: &Path) -> String {
    let name = alpine_tarball_name("x86_64");
    std::fs::copy(alpine_tarball("x86_64"), dir.join(&name)).unwrap();
    name
}

/// The Dockerfile of Alpine's official image for the shared tarball.
pub fn alpine_dockerfile() -> String {
    format!(
        "FROM scratch\nADD {} /\nCMD [\"/bin/sh\"]\n",
        alpine_tarball_name("x86_64")
    )
}

/// Writes `files` (`relative path`, `contents`) under `dir`, creating parents.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, contents) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
    }
}

/// Sets the mtime of every file and directory under `dir` to `secs` since
/// the epoch, to prove that builds ignore context mtimes.
pub fn touch_tree(dir: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for entry in walk(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        // Directories cannot be opened for writing; files can.
        let f = if meta.is_dir() {
            std::fs::File::open(&entry)
        } else {
            std::fs::OpenOptions::new().write(true).open(&entry)
        };
        f.and_then(|f| f.set_modified(t))
            .unwrap_or_else(|e| panic!("touch {}: {e}", entry.display()));
    }
}

/// Every path under `dir` (files and directories, not `dir` itself).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Starts an anonymous registry holding the umoci-built Alpine as
/// `library/alpine:latest` and points the sandbox's registries.conf at it:
/// `docker.io/library/alpine` → `127.0.0.1:P/library/alpine`. A Dockerfile
/// `FROM alpine:latest` then resolves there (pass `--registries-conf
/// sb.registries_conf()`).
pub fn alpine_base_registry(sb: &super::ocipush::Sandbox) -> RegistryServer {
    let a = RegistryServer::start();
    seed_alpine(&a, "library/alpine:latest");
    map_docker_alpine_to(sb, &a);
    a
}

/// Writes the sandbox registries.conf mapping `docker.io/library/alpine` to
/// `reg` (`127.0.0.1:P/library/alpine`).
pub fn map_docker_alpine_to(sb: &super::ocipush::Sandbox, reg: &RegistryServer) -> PathBuf {
    map_docker_alpine_to_addr(sb, &reg.addr())
}

/// Writes the sandbox registries.conf mapping `docker.io/library/alpine` to
/// `addr/library/alpine` (a registry, or a proxy in front of one).
pub fn map_docker_alpine_to_addr(sb: &super::ocipush::Sandbox, addr: &str) -> PathBuf {
    sb.set_registries(&[(
        "docker.io/library/alpine",
        &format!("{addr}/library/alpine"),
    )])
}

/// An image copied out of a registry (or layout) and unpacked by umoci.
pub struct Unpacked {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// `BUNDLE/rootfs`.
    pub rootfs: PathBuf,
    /// The OCI layout skopeo wrote (tag `t`).
    pub layout: PathBuf,
    /// The image config blob (`skopeo inspect --config`).
    pub config: serde_json::Value,
}

/// `skopeo copy SRC oci:TMP/layout:t`, `umoci unpack`, and read the config.
/// `src` is a full skopeo reference (`docker://…` or `oci:…`).
pub fn copy_and_unpack(src: &str, creds: super::tools::Creds) -> Unpacked {
    let dir = super::tempdir("unpacked");
    let layout = dir.path().join("layout");
    let dst = format!("oci:{}", image_arg(&layout, "t").to_string_lossy());
    skopeo_copy_with(src, creds, &dst, None);
    let bundle = dir.path().join("bundle");
    umoci_unpack(&layout, "t", &bundle);
    let config = super::tools::skopeo_inspect_config(&dst, false, None);
    Unpacked {
        rootfs: bundle.join("rootfs"),
        layout,
        config,
        dir,
    }
}

/// Copies the tree `src` into `dst` (created), giving files mode 0644 and
/// directories 0755 whatever the checkout's umask was, so tests that check
/// modes do not depend on how the repository was cloned.
pub fn copy_tree(src: &Path, dst: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dst).unwrap();
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&e.path(), &to);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// `len` incompressible bytes (xorshift from `seed`): layers whose size survives gzip.
pub fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
