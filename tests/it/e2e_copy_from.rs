//! `COPY --from` reading image layers: a source path through a symlinked middle component
//! (`/lib → usr/lib`, as in Debian) and wildcards through it; each source layer fetched from
//! the registry once per build however many instructions read it (and not at all by a later
//! build that shares the layer cache) — counted in the registry's access log; zstd layers,
//! both of a source image and of a stage built with `--compression zstd`. Read back with
//! skopeo and umoci.

use std::os::unix::fs::symlink;
use std::path::Path;

use std::collections::BTreeMap;
use std::io::Read;

use crate::common::fixtures::copy_and_unpack;
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::registry::RegistryServer;
use crate::common::tempdir;
use crate::common::tools::{image_arg, skopeo_copy, skopeo_inspect, skopeo_inspect_raw};

/// Builds and pushes `<reg>/src:<tag>`, two layers: `/usr/lib/x86_64-linux-gnu/lib{c,m}.so.6`
/// (+ `libc.so` → `libc.so.6`), then `/lib` → `usr/lib` and `/etc/os-release`. In a sandbox of
/// its own, so the layers are not in the layer cache of the builds under test.
fn push_source(reg: &RegistryServer, tag: &str, compression: &str) -> String {
    let sb = Sandbox::new();
    let ctx = tempdir("copy-from-src");
    let p = ctx.path();
    let lib = p.join("one/usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("libc.so.6"), "LIBC\n").unwrap();
    std::fs::write(lib.join("libm.so.6"), "LIBM\n").unwrap();
    symlink("libc.so.6", lib.join("libc.so")).unwrap();
    std::fs::create_dir_all(p.join("two/etc")).unwrap();
    std::fs::write(p.join("two/etc/os-release"), "ID=test\n").unwrap();
    symlink("usr/lib", p.join("two/lib")).unwrap();
    std::fs::write(
        p.join("Dockerfile"),
        "FROM scratch\nCOPY one/ /\nCOPY two/ /\n",
    )
    .unwrap();
    let dst = format!("{}/src:{tag}", reg.addr());
    let out = sb.ocipush([
        "--compression".as_ref(),
        compression.as_ref(),
        p.join("Dockerfile").as_os_str(),
        dst.as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/src", reg.addr()));
    dst
}

/// The layer digests of `image` (`host:port/repo:tag`).
fn layer_digests(image: &str) -> Vec<String> {
    let v = skopeo_inspect(&format!("docker://{image}"), false, None);
    v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

/// GETs of `digest`'s blob in the log since `mark`.
fn blob_gets(reg: &RegistryServer, mark: usize, digest: &str) -> usize {
    reg.access_log_since(mark)
        .iter()
        .filter(|e| e.method == "GET" && e.path().ends_with(&format!("/blobs/{digest}")))
        .count()
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn symlinked_middle_components_and_each_layer_fetched_once() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let src = push_source(&reg, "gz", "gzip");
    let layers = layer_digests(&src);
    assert_eq!(layers.len(), 2);

    let ctx = tempdir("copy-from-once");
    let df = ctx.path().join("Dockerfile");
    std::fs::write(
        &df,
        format!(
            "FROM scratch AS mid\n\
             COPY --from={src} /lib/x86_64-linux-gnu/libc.so.6 /m/\n\
             FROM scratch\n\
             COPY --from={src} /lib/x86_64-linux-gnu/libc.so.6 /x/\n\
             COPY --from={src} /lib/x86_64-linux-gnu/*.so* /y/\n\
             COPY --from={src} /lib/../etc /etc\n\
             COPY --from=mid /m /m\n"
        ),
    )
    .unwrap();
    let dst = format!("{}/once:v1", reg.addr());
    let mark = reg.log_mark();
    let out = sb.ocipush([df.as_os_str(), dst.as_ref()]);
    assert_pushed(&out, &format!("{}/once", reg.addr()));
    for l in &layers {
        assert_eq!(
            blob_gets(&reg, mark, l),
            1,
            "source layer {l} is fetched once for four COPY --from of its image"
        );
    }

    let img = copy_and_unpack(&format!("docker://{dst}"), None);
    let root = &img.rootfs;
    assert_eq!(read(root, "x/libc.so.6"), "LIBC\n");
    assert_eq!(read(root, "m/libc.so.6"), "LIBC\n");
    assert_eq!(read(root, "etc/os-release"), "ID=test\n");
    let mut y: Vec<String> = std::fs::read_dir(root.join("y"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    y.sort();
    assert_eq!(y, ["libc.so", "libc.so.6", "libm.so.6"]);
    assert!(
        !root.join("y/libc.so").is_symlink(),
        "each wildcard match is followed, as BuildKit does"
    );
    assert_eq!(read(root, "y/libc.so"), "LIBC\n");

    // A second build sharing the layer cache (the sandbox's) fetches no source layer.
    let mark = reg.log_mark();
    let out = sb.ocipush([df.as_os_str(), dst.as_ref()]);
    assert_pushed(&out, &format!("{}/once", reg.addr()));
    for l in &layers {
        assert_eq!(blob_gets(&reg, mark, l), 0, "{l} comes from the cache");
    }
}

#[test]
fn zstd_layers_of_images_and_stages_are_read() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let src = push_source(&reg, "zst", "zstd");
    let manifest = skopeo_inspect_raw(&format!("docker://{src}"), false, None);
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
            "{manifest:#}"
        );
    }

    let ctx = tempdir("copy-from-zstd");
    std::fs::write(ctx.path().join("greeting.txt"), "hi\n").unwrap();
    let df = ctx.path().join("Dockerfile");
    std::fs::write(
        &df,
        format!(
            "FROM scratch AS built\n\
             COPY greeting.txt /g.txt\n\
             FROM {src} AS based\n\
             COPY greeting.txt /etc/g.txt\n\
             FROM scratch\n\
             COPY --from={src} /lib/x86_64-linux-gnu/libm.so.6 /z/\n\
             COPY --from=built /g.txt /g.txt\n\
             COPY --from=based /etc/ /based/\n"
        ),
    )
    .unwrap();
    let dst = format!("{}/zstd:v1", reg.addr());
    let out = sb.ocipush([
        "--compression".as_ref(),
        "zstd".as_ref(),
        df.as_os_str(),
        dst.as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/zstd", reg.addr()));
    // umoci cannot unpack zstd layers: list them here instead.
    let files = zstd_image_files(&dst);
    assert_eq!(files["z/libm.so.6"], "LIBM\n", "{files:?}");
    assert_eq!(files["g.txt"], "hi\n");
    assert_eq!(files["based/os-release"], "ID=test\n");
    assert_eq!(files["based/g.txt"], "hi\n");
}

/// The regular files of every (zstd) layer of `image`, copied out by skopeo: path → content.
fn zstd_image_files(image: &str) -> BTreeMap<String, String> {
    let dir = tempdir("zstd-image");
    let layout = dir.path().join("layout");
    skopeo_copy(
        &format!("docker://{image}"),
        &format!("oci:{}", image_arg(&layout, "t").to_string_lossy()),
    );
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut files = BTreeMap::new();
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        let f = std::fs::File::open(blob(l["digest"].as_str().unwrap())).unwrap();
        let mut ar = tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type().is_file() {
                let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                files.insert(name, text);
            }
        }
    }
    files
}
