//! `oci:<dir>[:<tag>]` destinations: an OCI image layout on disk that umoci
//! unpacks and skopeo reads.

use std::path::Path;

use crate::common::fixtures::{alpine_base_registry, alpine_dockerfile, copy_alpine_tarball};
use crate::common::ocipush::{Sandbox, assert_no_panic, assert_valid_digest, describe, stdout};
use crate::common::tempdir;
use crate::common::testdata;
use crate::common::tools::{
    image_arg, run_image, run_in_chroot, skopeo_inspect, skopeo_inspect_config, umoci_unpack,
};

/// The digest ocipush printed for an `oci:` push: one line ending in
/// `@sha256:<hex>` (the part before `@` names the destination).
fn printed_digest(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    assert_no_panic(out);
    let text = stdout(out);
    let line = text.strip_suffix('\n').unwrap_or(&text);
    assert!(
        !line.contains('\n'),
        "stdout must be one line:\n{}",
        describe(out)
    );
    let (_, digest) = line
        .rsplit_once('@')
        .unwrap_or_else(|| panic!("stdout must end in @sha256:<hex>:\n{}", describe(out)));
    assert_valid_digest(digest);
    digest.to_owned()
}

/// The manifest digest the layout's index.json records for `tag`.
fn index_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in index.json: {index:#}"));
    m["digest"].as_str().unwrap().to_owned()
}

#[test]
fn hello_to_oci_layout_unpacks_and_runs() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let out_dir = tempdir("oci-dest");
    let layout = out_dir.path().join("image");
    let dest = format!("oci:{}:v1", layout.display());
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        testdata("hello/Dockerfile").as_os_str(),
        dest.as_ref(),
    ]);
    let digest = printed_digest(&out);
    assert_eq!(index_digest(&layout, "v1"), digest);
    assert!(layout.join("oci-layout").is_file());

    let summary = skopeo_inspect(&dest, false, None);
    assert_eq!(summary["Digest"], digest.as_str(), "{summary:#}");
    let config = skopeo_inspect_config(&dest, false, None);

    let bundle = out_dir.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle);
    let run = run_image(&bundle.join("rootfs"), &config);
    assert_eq!(run.stdout, "hello\n", "{run:?}");
}

#[test]
fn alpine_from_scratch_to_oci_layout_without_any_registry() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    copy_alpine_tarball(&ctx);
    std::fs::write(ctx.join("Dockerfile"), alpine_dockerfile()).unwrap();
    let layout = sb.path().join("alpine-layout");
    let dest = format!("oci:{}:3.20.3", layout.display());
    let out = sb.ocipush([ctx.join("Dockerfile").as_os_str(), dest.as_ref()]);
    let digest = printed_digest(&out);
    assert_eq!(index_digest(&layout, "3.20.3"), digest);

    let config = skopeo_inspect_config(&dest, false, None);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        "FROM scratch gets the default PATH: {config:#}"
    );
    let bundle = sb.path().join("bundle");
    umoci_unpack(&layout, "3.20.3", &bundle);
    let rootfs = bundle.join("rootfs");
    // ADD of a local tar.gz extracts it, keeping modes and owners.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let busybox = std::fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
    assert_eq!((busybox.uid(), busybox.gid()), (0, 0));
    assert!(
        std::fs::symlink_metadata(rootfs.join("bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        !rootfs
            .join(crate::common::alpine_tarball_name("x86_64"))
            .exists()
    );

    let env = vec!["PATH=/usr/bin:/bin".to_owned()];
    let argv: Vec<String> = ["sh", "-c", "echo hello"].map(String::from).into();
    let run = run_in_chroot(&rootfs, &argv, &env);
    assert_eq!(run.stdout, "hello\n", "{run:?}");

    // The layout is a valid image for other tools: skopeo copies it further.
    let again = sb.path().join("copy");
    crate::common::tools::skopeo_copy(
        &dest,
        &format!("oci:{}", image_arg(&again, "x").to_string_lossy()),
    );
}
