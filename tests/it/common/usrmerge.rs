//! A usrmerge base image assembled from the umoci-built Alpine (no ocipush
//! involved): `/bin`, `/sbin`, `/lib` are merged into `/usr/…` and become the
//! symlinks `/bin → usr/bin`, `/sbin → usr/sbin`, `/lib → usr/lib` (Debian
//! and Fedora's layout); `/etc/passwd` and `/etc/group` gain `app` (uid and
//! gid 1000) with `/home/app` owned 1000:1000 mode 0750; `/tmp` is 1777.
//!
//! Built with umoci (`unpack`, edit the rootfs, `repack`), so the image has
//! two layers and the second one carries umoci's whiteouts for what moved.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::fixtures::{alpine_oci_layout, publish_layout};
use super::tools::{check, image_arg, run_bounded, umoci, umoci_unpack};

/// Tag of the usrmerge image in its layout.
pub const USRMERGE_TAG: &str = "usrmerge";

/// The uid and gid of the `app` user of the usrmerge base.
pub const APP_ID: u32 = 1000;

/// The usrmerge layout (tag [`USRMERGE_TAG`]), built once and shared
/// read-only, like [`alpine_oci_layout`] (a private directory under
/// `CARGO_TARGET_TMPDIR`, renamed into place atomically).
pub fn usrmerge_oci_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let alpine = alpine_oci_layout();
        let name = format!(
            "{}-usrmerge-v1",
            alpine.file_name().unwrap().to_string_lossy()
        );
        let final_dir = base.join(&name);
        if final_dir.join("index.json").is_file() {
            return final_dir;
        }
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}-"))
            .tempdir_in(base)
            .unwrap();
        let layout = staging.path().join("layout");
        let cp = super::require_tool("cp", "coreutils");
        check(
            "cp -a alpine layout",
            run_bounded(
                &cp,
                &["-a".into(), alpine.into(), layout.clone().into()],
                &[],
            ),
        );
        let bundle = staging.path().join("bundle");
        umoci_unpack(&layout, "latest", &bundle);
        usrmerge_rootfs(&bundle.join("rootfs"));
        // `repack --image LAYOUT:TAG` writes the edited rootfs as a new layer
        // on top of the unpacked image, under TAG.
        umoci(&[
            "repack".as_ref(),
            "--image".as_ref(),
            &image_arg(&layout, USRMERGE_TAG),
            bundle.as_os_str(),
        ]);
        umoci(&["gc".as_ref(), "--layout".as_ref(), layout.as_os_str()]);
        publish_layout(&layout, &final_dir);
        final_dir
    })
}

/// Edits an unpacked Alpine root filesystem into the usrmerge layout.
pub fn usrmerge_rootfs(rootfs: &Path) {
    for d in ["bin", "sbin", "lib"] {
        let src = rootfs.join(d);
        let dst = rootfs.join("usr").join(d);
        assert!(
            dst.is_dir(),
            "{} missing in the Alpine rootfs",
            dst.display()
        );
        merge_into(&src, &dst);
        std::fs::remove_dir(&src).unwrap();
        symlink(format!("usr/{d}"), &src).unwrap();
    }
    append(
        &rootfs.join("etc/passwd"),
        "app:x:1000:1000:app:/home/app:/bin/sh\n",
    );
    append(&rootfs.join("etc/group"), "app:x:1000:\n");
    let home = rootfs.join("home/app");
    std::fs::create_dir_all(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(APP_ID), Some(APP_ID)).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Moves every entry of `src` into `dst`: directories present in both are
/// merged, anything else in `dst` is replaced by `src`'s entry (Alpine's
/// `/usr/lib/libcrypto.so.3 → ../../lib/libcrypto.so.3` gives way to the
/// real file, which would otherwise become a loop).
fn merge_into(src: &Path, dst: &Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let from = e.path();
        let to = dst.join(e.file_name());
        let from_is_dir = e.file_type().unwrap().is_dir();
        match std::fs::symlink_metadata(&to) {
            Ok(m) if m.is_dir() && from_is_dir => {
                merge_into(&from, &to);
                std::fs::remove_dir(&from).unwrap();
            }
            Ok(m) => {
                if m.is_dir() {
                    std::fs::remove_dir_all(&to).unwrap();
                } else {
                    std::fs::remove_file(&to).unwrap();
                }
                std::fs::rename(&from, &to).unwrap();
            }
            Err(_) => std::fs::rename(&from, &to).unwrap(),
        }
    }
}

fn append(p: &Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
    f.write_all(line.as_bytes()).unwrap();
}
