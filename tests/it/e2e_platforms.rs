//! Multi-platform builds end to end: a two-arch Alpine (both shared minirootfs
//! tarballs, `ARG TARGETARCH` choosing one) pushed as an index; the reference
//! Dockerfile built for linux/amd64,linux/arm64 on top of it, read back with
//! skopeo (an index of both; arm64's busybox is an aarch64 ELF; amd64 runs in a
//! chroot and prints `hello`); a derived image in another repository of the
//! same registry mounts the base layers instead of uploading them; a platform
//! the base lacks is a clear error and tags nothing.

use std::ffi::OsString;
use std::path::Path;

use serde_json::Value;

use crate::common::fixtures::{copy_and_unpack, map_docker_alpine_to};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed};
use crate::common::registry::{RegistryServer, summarize};
use crate::common::tools::{
    check, image_arg, run_image, skopeo_inspect, skopeo_inspect_raw, skopeo_inspect_raw_bytes,
    skopeo_raw, umoci_unpack,
};
use crate::common::{alpine_tarball, tempdir, testdata};

/// A context with both minirootfs tarballs named by GOARCH, and its Dockerfile.
pub(crate) fn two_arch_alpine_context(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ctx = dir.join("alpine2-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(alpine_tarball("x86_64"), ctx.join("alpine-amd64.tar.gz")).unwrap();
    std::fs::copy(alpine_tarball("aarch64"), ctx.join("alpine-arm64.tar.gz")).unwrap();
    let dockerfile = dir.join("Dockerfile.alpine2");
    std::fs::write(
        &dockerfile,
        "FROM scratch\nARG TARGETARCH\nADD alpine-${TARGETARCH}.tar.gz /\nCMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    (ctx, dockerfile)
}

/// Builds the two-arch Alpine and pushes it to `a` as docker.io/library/alpine:latest
/// (the sandbox's registries.conf maps it there); returns the index digest.
pub(crate) fn push_two_arch_alpine(sb: &Sandbox, a: &RegistryServer) -> String {
    let (ctx, dockerfile) = two_arch_alpine_context(sb.path());
    let conf = map_docker_alpine_to(sb, a);
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        conf.as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
        "--context".as_ref(),
        ctx.as_os_str(),
        dockerfile.as_os_str(),
        "docker.io/library/alpine:latest".as_ref(),
    ]);
    assert_pushed(&out, "docker.io/library/alpine")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The index's platforms as `os/arch`, in order.
fn index_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// `skopeo copy --override-arch ARCH docker://IMAGE oci:DIR:t`, then umoci unpack.
fn unpack_arch(image: &str, arch: &str, work: &Path) -> std::path::PathBuf {
    let layout = work.join(format!("layout-{arch}"));
    let dst = format!("oci:{}", image_arg(&layout, "t").to_string_lossy());
    let args: Vec<OsString> = [
        "copy",
        "--src-tls-verify=false",
        "--src-no-creds",
        "--override-arch",
        arch,
        &format!("docker://{image}"),
        &dst,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    check("skopeo copy --override-arch", skopeo_raw(&args));
    let bundle = work.join(format!("bundle-{arch}"));
    umoci_unpack(&layout, "t", &bundle);
    bundle.join("rootfs")
}

/// ELF `e_machine` of a file: 0x3e x86-64, 0xb7 aarch64.
pub(crate) fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(
        &bytes[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    u16::from_le_bytes([bytes[18], bytes[19]])
}

#[test]
fn two_arch_alpine_then_hello_for_amd64_and_arm64() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let b = RegistryServer::start();

    // 1. Alpine for both architectures, pushed as one OCI index.
    let alpine_digest = push_two_arch_alpine(&sb, &a);
    let alpine_ref = format!("docker://{}/library/alpine:latest", a.addr());
    let raw = skopeo_inspect_raw_bytes(&alpine_ref, false, None);
    assert_eq!(
        sha256_hex(&raw),
        alpine_digest,
        "the tag points at the printed index"
    );
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);
    // Each per-platform manifest is in the repository by digest.
    for m in index["manifests"].as_array().unwrap() {
        let by_digest = format!(
            "docker://{}/library/alpine@{}",
            a.addr(),
            m["digest"].as_str().unwrap()
        );
        let s = skopeo_inspect(&by_digest, false, None);
        assert_eq!(s["Architecture"], m["platform"]["architecture"], "{s:#}");
    }

    // 2. The reference Dockerfile for both platforms, to registry B.
    let reference = testdata("hello/Dockerfile");
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
        reference.as_os_str(),
        format!("{}/ec2-ecr-test:v1", b.addr()).as_ref(),
    ]);
    let digest = assert_pushed(&out, &format!("{}/ec2-ecr-test", b.addr()));
    let image = format!("{}/ec2-ecr-test:v1", b.addr());
    let raw = skopeo_inspect_raw_bytes(&format!("docker://{image}"), false, None);
    assert_eq!(sha256_hex(&raw), digest, "stdout names the index");
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(index_platforms(&index), ["linux/amd64", "linux/arm64"]);

    let work = tempdir("platforms");
    let arm_root = unpack_arch(&image, "arm64", work.path());
    assert_eq!(
        elf_machine(&arm_root.join("bin/busybox")),
        0xb7,
        "aarch64 busybox"
    );
    let amd_root = unpack_arch(&image, "amd64", work.path());
    assert_eq!(
        elf_machine(&amd_root.join("bin/busybox")),
        0x3e,
        "x86-64 busybox"
    );

    // The amd64 image runs and prints hello; its config says amd64, arm64's says arm64.
    let amd = copy_and_unpack(&format!("docker://{image}"), None);
    assert_eq!(amd.config["architecture"], "amd64");
    let run = run_image(&amd.rootfs, &amd.config);
    assert_eq!(run.stdout, "hello\n", "{run:?}");
    let arm_config = crate::common::tools::skopeo_inspect_config(
        &format!(
            "docker://{}/ec2-ecr-test@{}",
            b.addr(),
            index["manifests"][1]["digest"].as_str().unwrap()
        ),
        false,
        None,
    );
    assert_eq!(arm_config["architecture"], "arm64", "{arm_config:#}");
    assert_eq!(arm_config["os"], "linux");

    // 3. --format docker: a Docker manifest list.
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--format".as_ref(),
        "docker".as_ref(),
        "--platform".as_ref(),
        "linux/arm64,linux/amd64".as_ref(),
        reference.as_os_str(),
        format!("{}/hello-docker:v1", b.addr()).as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/hello-docker", b.addr()));
    let list = skopeo_inspect_raw(
        &format!("docker://{}/hello-docker:v1", b.addr()),
        false,
        None,
    );
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(index_platforms(&list), ["linux/arm64", "linux/amd64"]);

    // 4. A platform the base does not have: a clear error, nothing tagged.
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm/v7".as_ref(),
        reference.as_os_str(),
        format!("{}/missing:v1", b.addr()).as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(
        err.contains("has no linux/arm/v7") && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:1"), "{err}");
    assert_eq!(
        b.count("PUT", "/v2/missing/manifests/"),
        0,
        "nothing tagged"
    );
}

#[test]
fn derived_image_in_the_same_registry_mounts_base_layers() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    push_two_arch_alpine(&sb, &a);
    let ctx = tempdir("derived");
    std::fs::write(ctx.path().join("note.txt"), "derived\n").unwrap();
    let dockerfile = ctx.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM alpine:latest\nCOPY note.txt /note.txt\n").unwrap();
    let mark = a.log_mark();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
        dockerfile.as_os_str(),
        format!("{}/team/derived:v1", a.addr()).as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/team/derived", a.addr()));
    let log = a.access_log_since(mark);
    let mounts: Vec<_> = log
        .iter()
        .filter(|e| {
            e.method == "POST"
                && e.path() == "/v2/team/derived/blobs/uploads/"
                && e.uri.contains("mount=")
                && e.uri.contains("from=library%2Falpine")
        })
        .collect();
    assert_eq!(
        mounts.len(),
        2,
        "one mount per base layer (amd64, arm64): {:#?}",
        summarize(&log)
    );
    assert!(mounts.iter().all(|e| e.status == 201), "{mounts:#?}");
    // Uploads: only the two COPY layers and two configs, nothing of the base.
    let uploads = log
        .iter()
        .filter(|e| {
            e.method == "POST"
                && e.path() == "/v2/team/derived/blobs/uploads/"
                && !e.uri.contains("mount=")
        })
        .count();
    assert!(
        uploads <= 4,
        "re-uploaded what it could mount: {:#?}",
        summarize(&log)
    );
    // The COPY is placed on the base's filesystem, so each base layer is read at most once
    // for its tar headers (then indexed in the cache dir), besides the two configs. Here the
    // layers were built by this sandbox's ocipush, so its cache has them already: none is
    // downloaded.
    let base_gets = log
        .iter()
        .filter(|e| e.method == "GET" && e.path().starts_with("/v2/library/alpine/blobs/"))
        .count();
    assert_eq!(
        base_gets,
        2,
        "the two base configs, and no base layer (they are in the cache): {:#?}",
        summarize(&log)
    );
}
