//! Multi-stage builds and `COPY --from`: from a stage by name and by index,
//! from a stage built `FROM --platform=$BUILDPLATFORM`, and from an image whose
//! layers delete and replace files (whiteouts written by umoci) — read back by
//! skopeo and umoci. Stages the target does not need are never resolved; an
//! unknown stage is a clear error.

use std::path::Path;

use crate::common::fixtures::copy_and_unpack;
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed};
use crate::common::registry::RegistryServer;
use crate::common::tempdir;
use crate::common::tools::{image_arg, skopeo_copy_with, umoci, umoci_unpack};
use crate::e2e_platforms::{elf_machine, push_two_arch_alpine};

/// An image made by umoci alone: layer 1 writes `/data/{keep,gone}.txt` and
/// `/data/dir/old.txt`; layer 2 deletes `gone.txt`, replaces `data/dir` with a
/// directory holding only `new.txt` and rewrites `keep.txt`. Pushed to `reg`
/// as `whiteouts:v1`.
fn push_whiteout_image(reg: &RegistryServer) -> String {
    let work = tempdir("whiteouts");
    let layout = work.path().join("layout");
    let image = image_arg(&layout, "v1");
    umoci(&["init".as_ref(), "--layout".as_ref(), layout.as_os_str()]);
    umoci(&["new".as_ref(), "--image".as_ref(), &image]);
    let write = |root: &Path, rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    let b1 = work.path().join("b1");
    umoci_unpack(&layout, "v1", &b1);
    let root = b1.join("rootfs");
    write(&root, "data/keep.txt", "old keep\n");
    write(&root, "data/gone.txt", "gone\n");
    write(&root, "data/dir/old.txt", "old\n");
    umoci(&[
        "repack".as_ref(),
        "--image".as_ref(),
        &image,
        b1.as_os_str(),
    ]);
    let b2 = work.path().join("b2");
    umoci_unpack(&layout, "v1", &b2);
    let root = b2.join("rootfs");
    std::fs::remove_file(root.join("data/gone.txt")).unwrap();
    std::fs::remove_dir_all(root.join("data/dir")).unwrap();
    write(&root, "data/dir/new.txt", "new\n");
    write(&root, "data/keep.txt", "new keep\n");
    umoci(&[
        "repack".as_ref(),
        "--image".as_ref(),
        &image,
        b2.as_os_str(),
    ]);
    umoci(&[
        "config".as_ref(),
        "--image".as_ref(),
        &image,
        "--os=linux".as_ref(),
        "--architecture=arm64".as_ref(),
    ]);
    let dst = format!("{}/whiteouts:v1", reg.addr());
    skopeo_copy_with(
        &format!("oci:{}", image.to_string_lossy()),
        None,
        &format!("docker://{dst}"),
        None,
    );
    dst
}

#[test]
fn stages_and_copy_from_images_with_whiteouts() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let b = RegistryServer::start();
    push_two_arch_alpine(&sb, &a);
    let whiteouts = push_whiteout_image(&a);

    let ctx = tempdir("stages");
    std::fs::write(ctx.path().join("greeting.txt"), "hi from a stage\n").unwrap();
    let dockerfile = ctx.path().join("Dockerfile");
    std::fs::write(
        &dockerfile,
        format!(
            "FROM alpine:latest AS base\n\
             COPY greeting.txt /etc/greeting.txt\n\
             \n\
             FROM nothing.invalid/never/resolved:1 AS unused\n\
             COPY does-not-exist /x\n\
             \n\
             FROM --platform=$BUILDPLATFORM alpine:latest AS tools\n\
             \n\
             FROM scratch\n\
             ARG TARGETPLATFORM\n\
             ARG TARGETARCH\n\
             ARG BUILDARCH\n\
             LABEL target=$TARGETPLATFORM arch=$TARGETARCH build=$BUILDARCH\n\
             COPY --from=base /etc/greeting.txt /greeting.txt\n\
             COPY --from=0 /bin/busybox /target-busybox\n\
             COPY --from=tools /bin/busybox /build-busybox\n\
             COPY --from={whiteouts} /data /data/\n"
        ),
    )
    .unwrap();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--platform".as_ref(),
        "linux/arm64".as_ref(),
        dockerfile.as_os_str(),
        format!("{}/stages:v1", b.addr()).as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/stages", b.addr()));

    let img = copy_and_unpack(&format!("docker://{}/stages:v1", b.addr()), None);
    let root = &img.rootfs;
    assert_eq!(img.config["architecture"], "arm64");
    let labels = &img.config["config"]["Labels"];
    assert_eq!(labels["target"], "linux/arm64", "{labels:#}");
    assert_eq!(labels["arch"], "arm64");
    assert_eq!(labels["build"], "amd64");
    assert_eq!(
        std::fs::read_to_string(root.join("greeting.txt")).unwrap(),
        "hi from a stage\n"
    );
    assert_eq!(
        elf_machine(&root.join("target-busybox")),
        0xb7,
        "stage 0 is arm64"
    );
    assert_eq!(
        elf_machine(&root.join("build-busybox")),
        0x3e,
        "FROM --platform=$BUILDPLATFORM is the host's"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep.txt")).unwrap(),
        "new keep\n",
        "the upper layer wins"
    );
    assert!(!root.join("data/gone.txt").exists(), "a whiteout deletes");
    assert!(
        !root.join("data/dir/old.txt").exists(),
        "a replaced directory hides what was below"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/dir/new.txt")).unwrap(),
        "new\n"
    );
    let mut top: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(
        top,
        ["build-busybox", "data", "greeting.txt", "target-busybox"],
        "only the copied files: the final stage is FROM scratch"
    );
}

#[test]
fn unknown_stages_are_clear_errors() {
    let sb = Sandbox::new();
    let b = RegistryServer::start();
    let ctx = tempdir("unknown-stage");
    for (name, text, needle) in [
        (
            "Dockerfile.index",
            "FROM scratch AS one\nFROM scratch\nCOPY --from=5 /a /b\n",
            "Dockerfile:3: stage \"5\" is not defined before this line",
        ),
        (
            "Dockerfile.later",
            "FROM scratch AS first\nCOPY --from=later /a /b\nFROM scratch AS later\nFROM first\n",
            "Dockerfile:2: stage \"later\" is not defined before this line",
        ),
    ] {
        let df = ctx.path().join(name);
        std::fs::write(&df, text).unwrap();
        let out = sb.ocipush([df.as_os_str(), format!("{}/unknown:v1", b.addr()).as_ref()]);
        let err = assert_failed(&out, 1);
        assert!(err.contains(needle), "{name}: {err}");
    }
    let df = ctx.path().join("Dockerfile.missing");
    std::fs::write(
        &df,
        "FROM scratch AS a\nCOPY x /x\nFROM scratch\nCOPY --from=a /nope /n\n",
    )
    .unwrap();
    std::fs::write(ctx.path().join("x"), "x").unwrap();
    let out = sb.ocipush([df.as_os_str(), format!("{}/unknown:v1", b.addr()).as_ref()]);
    let err = assert_failed(&out, 1);
    assert!(
        err.contains("Dockerfile:4") && err.contains("/nope not found"),
        "{err}"
    );
    assert_eq!(
        b.count("PUT", "/v2/unknown/manifests/"),
        0,
        "nothing tagged"
    );
}
