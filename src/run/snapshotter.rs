//! Which snapshotter a RUN uses: an overlay of the stage's snapshots (the default), or — where
//! overlayfs cannot be mounted — the copy snapshotter ([`super::copyroot`],
//! [`super::rootdiff`]): the merged root copied into a plain directory and compared with its
//! stat snapshot after the command. Both give the same layer.
//!
//! `OCIPUSH_RUN_SNAPSHOTTER` chooses: `overlay`, `copy`, or `auto` (the default): overlay
//! unless the kernel has none (`/proc/filesystems`) or the snapshot directory is itself on an
//! overlayfs (a build inside a container, where overlay refuses an upper directory on
//! overlay), and the copy when the overlay mount fails in the sandbox all the same. The copy
//! snapshotter runs as root only: rootless, overlay is required.

use std::path::Path;

use super::RunError;

/// The environment variable choosing the snapshotter.
pub(crate) const ENV: &str = "OCIPUSH_RUN_SNAPSHOTTER";

/// overlayfs's `f_type` (`OVERLAYFS_SUPER_MAGIC`).
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// What a RUN does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Mount an overlay; `fallback`: on the mount's failure, run again with the copy.
    Overlay { fallback: bool },
    /// Copy the root.
    Copy,
}

/// The setting of [`ENV`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Auto,
    Overlay,
    Copy,
}

fn setting(value: Option<&str>) -> Result<Setting, RunError> {
    match value.map(str::trim) {
        None | Some("") | Some("auto") => Ok(Setting::Auto),
        Some("overlay") => Ok(Setting::Overlay),
        Some("copy") => Ok(Setting::Copy),
        Some(other) => Err(RunError::Invalid {
            what: format!("{ENV}={other:?}: expected overlay, copy or auto"),
        }),
    }
}

/// Whether the kernel lists overlay in `/proc/filesystems`.
fn kernel_has_overlay() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// Whether `dir` is on an overlayfs.
fn on_overlayfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string and a statfs to fill.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    let t = st.f_type as i64;
    t == OVERLAYFS_MAGIC
}

/// The snapshotter for a RUN whose snapshots are under `snapshots`.
pub(crate) fn choose(snapshots: &Path) -> Result<Choice, RunError> {
    let value = std::env::var(ENV).ok();
    choose_with(
        setting(value.as_deref())?,
        kernel_has_overlay(),
        on_overlayfs(snapshots),
        super::userns::ids().rootless().is_some(),
        snapshots,
    )
}

fn choose_with(
    setting: Setting,
    has_overlay: bool,
    on_overlay: bool,
    rootless: bool,
    snapshots: &Path,
) -> Result<Choice, RunError> {
    let missing = if !has_overlay {
        Some("the kernel has no overlay filesystem (not in /proc/filesystems)".to_string())
    } else if on_overlay {
        Some(format!(
            "the snapshot directory {} is on an overlay filesystem (a build inside a container), where overlay cannot put its upper directory",
            snapshots.display()
        ))
    } else {
        None
    };
    match (setting, missing) {
        (Setting::Copy, _) if rootless => Err(rootless_copy(&format!("{ENV}=copy"))),
        (Setting::Copy, _) => Ok(Choice::Copy),
        (Setting::Overlay, None) => Ok(Choice::Overlay { fallback: false }),
        (Setting::Overlay, Some(what)) => Err(RunError::Unavailable {
            what,
            fix: format!(
                "Load overlay (`modprobe overlay`) or put the cache on a disk that is not overlayfs (a volume), or set {ENV}=auto to copy the root instead"
            ),
        }),
        (Setting::Auto, None) => Ok(Choice::Overlay {
            fallback: !rootless,
        }),
        (Setting::Auto, Some(what)) if rootless => Err(rootless_copy(&what)),
        (Setting::Auto, Some(what)) => {
            tracing::info!("RUN copies the root instead of mounting an overlay: {what}");
            Ok(Choice::Copy)
        }
    }
}

/// The copy snapshotter is refused rootless (`why` it was wanted).
pub(crate) fn rootless_copy(why: &str) -> RunError {
    RunError::Unavailable {
        what: format!(
            "rootless RUN needs overlayfs, and {why}; the copy snapshotter (RUN without overlay) runs as root only"
        ),
        fix: "Run ocipush as root, or on a host (or with a cache directory) where overlayfs can be mounted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_is_parsed_and_checked() {
        assert_eq!(setting(None).unwrap(), Setting::Auto);
        assert_eq!(setting(Some("auto")).unwrap(), Setting::Auto);
        assert_eq!(setting(Some("copy")).unwrap(), Setting::Copy);
        assert_eq!(setting(Some(" overlay ")).unwrap(), Setting::Overlay);
        let e = setting(Some("vfs")).unwrap_err().to_string();
        assert!(e.contains("OCIPUSH_RUN_SNAPSHOTTER=\"vfs\""), "{e}");
    }

    #[test]
    fn auto_copies_where_overlay_cannot_be_mounted_and_only_as_root() {
        let p = Path::new("/cache/run/snapshots");
        let c = |s, has, on, rootless| choose_with(s, has, on, rootless, p);
        use Setting::*;
        assert_eq!(
            c(Auto, true, false, false).unwrap(),
            Choice::Overlay { fallback: true }
        );
        assert_eq!(
            c(Auto, true, false, true).unwrap(),
            Choice::Overlay { fallback: false }
        );
        assert_eq!(c(Auto, false, false, false).unwrap(), Choice::Copy);
        assert_eq!(c(Auto, true, true, false).unwrap(), Choice::Copy);
        assert_eq!(c(Copy, true, false, false).unwrap(), Choice::Copy);
        assert_eq!(
            c(Overlay, true, false, false).unwrap(),
            Choice::Overlay { fallback: false }
        );
        let e = c(Overlay, true, true, false).unwrap_err().to_string();
        assert!(e.contains("is on an overlay filesystem"), "{e}");
        let e = c(Auto, false, false, true).unwrap_err().to_string();
        assert!(e.contains("rootless RUN needs overlayfs"), "{e}");
        assert!(e.contains("no overlay filesystem"), "{e}");
        let e = c(Copy, true, false, true).unwrap_err().to_string();
        assert!(e.contains("OCIPUSH_RUN_SNAPSHOTTER=copy"), "{e}");
    }
}
