//! `RUN` without overlayfs (as root): the copy snapshotter (`OCIPUSH_RUN_SNAPSHOTTER=copy`)
//! gives the same image, digest for digest, as the overlay one for the RUN suite's
//! Dockerfile plus a replaced directory, a chmod-only and a chown-only change, a file
//! rewritten in place with the same size and a temporary file; the image runs.

use crate::common::fixtures::{alpine_base_registry, copy_and_unpack, write_files};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr};
use crate::common::registry::RegistryServer;
use crate::common::tools::run_image;
use crate::e2e_run::{DOCKERFILE, layer_entries, layout_layers};

const EPOCH: u64 = 1_700_000_000;

/// More changes, before the suite's CMD (the last two: a directory dated 2001, older than the
/// epoch, so its date stays in the layer, and overlay copies it up with that date when a file
/// is made below it); the first RUN prints the root's filesystem type and
/// what of that filesystem it shows (an overlay: its `/`; the copy: the copied root's
/// directory).
const MORE: &str = r#"RUN awk '$5 == "/" { for (i = 6; i <= NF; i++) if ($i == "-") print "rootfs=" $(i + 1) " at " $4 }' /proc/self/mountinfo
RUN rm -rf /etc/periodic && mkdir -p /etc/periodic/daily && echo job > /etc/periodic/daily/job
RUN chmod 600 /etc/issue
RUN chown 1000:1000 /etc/shells
RUN printf HOME | dd of=/data/home bs=1 count=4 conv=notrunc 2>/dev/null && touch /tmp/t && rm /tmp/t
RUN mkdir -p /old/sub && touch -t 200101010000 /old/sub /old
RUN echo x > /old/sub/f
"#;

/// The RUN printing the root's mount says it was an overlay's root.
fn overlay_root(err: &str) -> bool {
    err.lines().any(|l| l.ends_with("| rootfs=overlay at /"))
}

/// … that it was a copied root, bound from its directory.
fn copied_root(err: &str) -> bool {
    err.lines()
        .any(|l| l.contains("| rootfs=") && l.ends_with("/root"))
}

/// Builds the Dockerfile with `OCIPUSH_RUN_SNAPSHOTTER=snapshotter` (every RUN executed).
fn build(sb: &Sandbox, reg: &RegistryServer, snapshotter: &str) -> std::process::Output {
    let ctx = sb.path().join("ctx");
    let dockerfile = DOCKERFILE.replace("CMD [", &format!("{MORE}CMD ["));
    write_files(
        &ctx,
        &[("late.txt", "late\n"), ("Dockerfile", dockerfile.as_str())],
    );
    let args: Vec<std::ffi::OsString> = vec![
        "--registries-conf".into(),
        sb.registries_conf().into(),
        "--no-cache".into(),
        "--build-arg".into(),
        "GREETING=hi".into(),
        "--build-arg".into(),
        "HOSTPATH=/nonexistent".into(),
        ctx.join("Dockerfile").into(),
        format!("{}/copy:{snapshotter}", reg.addr()).into(),
    ];
    sb.ocipush_env(
        args,
        &[
            ("SOURCE_DATE_EPOCH", &EPOCH.to_string()),
            ("OCIPUSH_RUN_SNAPSHOTTER", snapshotter),
        ],
    )
}

#[test]
fn the_copy_snapshotter_gives_the_overlay_image() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let name = format!("{}/copy", reg.addr());

    let overlay = build(&sb, &reg, "overlay");
    let by_overlay = assert_pushed(&overlay, &name);
    assert!(overlay_root(&stderr(&overlay)), "{}", stderr(&overlay));
    let copy = build(&sb, &reg, "copy");
    let by_copy = assert_pushed(&copy, &name);
    // The root was a plain directory, not an overlay.
    assert!(copied_root(&stderr(&copy)), "{}", stderr(&copy));
    assert_eq!(by_copy, by_overlay, "the same layers both ways");

    let img = copy_and_unpack(&format!("docker://{name}@{by_copy}"), None);
    let root = &img.rootfs;
    // The replaced directory is opaque in its layer; the same-size rewrite landed.
    let layers = layout_layers(&img.layout);
    assert!(
        layers.iter().any(|l| layer_entries(l)
            .iter()
            .any(|e| e.0 == "etc/periodic/.wh..wh..opq")),
        "no opaque /etc/periodic"
    );
    assert!(!root.join("etc/periodic/weekly").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("data/home")).unwrap(),
        "HOME=/home/app\n"
    );
    let run = run_image(root, &img.config);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, "hi world\n1000\napp\nmotd-gone\n");

    // An unknown snapshotter is refused by name.
    let bad = build(&sb, &reg, "vfs");
    let err = assert_failed(&bad, 1);
    assert!(err.contains("OCIPUSH_RUN_SNAPSHOTTER=\"vfs\""), "{err}");
}

/// An overlayfs mounted for the test (unmounted when dropped).
struct OverlayMount(std::path::PathBuf);

impl OverlayMount {
    fn new(dir: &std::path::Path) -> OverlayMount {
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            dir.join("lower").display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        let st = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .status()
            .unwrap();
        assert!(st.success(), "mount an overlay at {}", merged.display());
        OverlayMount(merged)
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn auto_copies_when_the_cache_is_on_overlayfs_as_in_a_container() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let name = format!("{}/auto", reg.addr());
    let ovl = OverlayMount::new(&sb.path().join("ovl"));
    let ctx = sb.path().join("ctx");
    // A stage bound read-only and writable (overlays too, where overlay works).
    let dockerfile = format!(
        "FROM alpine:latest AS tools\nRUN echo tool > /tool.txt\n\
         FROM alpine:latest\nRUN mkdir /data && echo home=/home/app > /data/home\n\
         RUN --mount=type=bind,from=tools,target=/t cat /t/tool.txt > /from-stage\n\
         RUN --mount=type=bind,from=tools,target=/t,rw echo x > /t/tool.txt && cat /t/tool.txt > /rw-seen\n{MORE}"
    );
    write_files(&ctx, &[("Dockerfile", dockerfile.as_str())]);
    let build = |cache: &std::path::Path, tag: &str| {
        let args: Vec<std::ffi::OsString> = vec![
            "--registries-conf".into(),
            sb.registries_conf().into(),
            "--cache-dir".into(),
            cache.into(),
            ctx.join("Dockerfile").into(),
            format!("{name}:{tag}").into(),
        ];
        let epoch = EPOCH.to_string();
        let envs = [
            ("SOURCE_DATE_EPOCH", epoch.as_str()),
            ("OCIPUSH_RUN_SNAPSHOTTER", "auto"),
        ];
        sb.ocipush_env(args, &envs)
    };

    // On overlayfs, an overlay cannot be mounted (EINVAL): the root and the stage are copied.
    let on_overlay = build(&ovl.0.join("cache"), "a");
    let copied = assert_pushed(&on_overlay, &name);
    assert!(copied_root(&stderr(&on_overlay)), "{}", stderr(&on_overlay));
    // On the host's disk, overlay; the same image.
    let plain = build(&sb.path().join("cache"), "b");
    assert_eq!(assert_pushed(&plain, &name), copied);
    assert!(overlay_root(&stderr(&plain)), "{}", stderr(&plain));
}
