//! End to end: a build context → COPY and WORKDIR layers → an OCI layout → `umoci unpack`,
//! checking modes, ownership, symlinks and `.dockerignore`, and that the whole image is
//! reproducible from a copy of the context made elsewhere.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use bytes::Bytes;
use ocipush::blob::{BytesBlob, FileBlob};
use ocipush::dest::Destination;
use ocipush::digest::Digest;
use ocipush::image::{Descriptor, media_types};
use ocipush::layers::{
    Compression, Context, CopySpec, LayerOptions, Spool, build_copy_layer, build_dirs_layer,
};
use ocipush::layout::OciLayout;
use serde_json::json;

fn make_context(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::write(root.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("bin/app"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("conf"), "secret=1\n").unwrap();
    fs::set_permissions(root.join("conf"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("debug.log"), "noise").unwrap();
    symlink("bin/app", root.join("run")).unwrap();
    fs::write(root.join(".dockerignore"), "*.log\n.dockerignore\n").unwrap();
}

fn no_progress(_: u64) {}

async fn build_and_push(ctx_dir: &Path, work: &Path, tag: &str) -> (Digest, OciLayout) {
    let spool = Spool::new(work.join("spool")).unwrap();
    let opts = LayerOptions {
        compression: Compression::Gzip { level: 6 },
        epoch: 0,
        threads: 0,
    };
    let ctx = Context::open(ctx_dir).unwrap();
    let spec = CopySpec {
        srcs: vec![".".into()],
        dest: "/srv/".into(),
        chown: Some((1000, 1000)),
        ..Default::default()
    };
    let copy = build_copy_layer(&ctx, &spec, &spool, &opts).unwrap();
    let dirs = build_dirs_layer(&["/srv/work".into()], &spool, &opts).unwrap();

    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"WorkingDir": "/srv/work"},
        "rootfs": {"type": "layers", "diff_ids": [copy.diff_id, dirs.diff_id]},
    });
    let config = Bytes::from(serde_json::to_vec(&config).unwrap());
    let config_desc = Descriptor::new(
        media_types::OCI_CONFIG,
        Digest::of(&config),
        config.len() as u64,
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config_desc,
        "layers": [copy.descriptor(true), dirs.descriptor(true)],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());

    let layout = OciLayout::open_or_create(work.join("oci"), None).unwrap();
    for layer in [&copy, &dirs] {
        layout
            .put_blob(
                &layer.descriptor(true),
                &FileBlob {
                    path: layer.path.clone(),
                },
                &no_progress,
            )
            .await
            .unwrap();
    }
    layout
        .put_blob(&config_desc, &BytesBlob(config), &no_progress)
        .await
        .unwrap();
    let digest = layout
        .put_manifest(tag, media_types::OCI_MANIFEST, manifest)
        .await
        .unwrap()
        .unwrap();
    (digest, layout)
}

#[tokio::test]
async fn context_to_layout_to_umoci() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx_dir = tmp.path().join("ctx");
    make_context(&ctx_dir);
    let (digest, layout) = build_and_push(&ctx_dir, &tmp.path().join("w1"), "v1").await;
    assert_eq!(layout.resolve("v1").unwrap().digest, digest);

    // The same context, created elsewhere later, gives the very same image.
    let ctx2 = tmp.path().join("elsewhere/ctx");
    make_context(&ctx2);
    let (digest2, _) = build_and_push(&ctx2, &tmp.path().join("w2"), "v1").await;
    assert_eq!(digest, digest2);

    let Some(umoci) = ["/usr/bin/umoci", "/usr/local/bin/umoci"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "umoci is not installed but CI is set"
        );
        eprintln!("skipping the umoci part: umoci is not installed");
        return;
    };
    let is_root = fs::metadata("/proc/self").unwrap().uid() == 0;
    let bundle = tmp.path().join("bundle");
    let mut cmd = std::process::Command::new(umoci);
    cmd.arg("unpack");
    if !is_root {
        cmd.arg("--rootless");
    }
    let out = cmd
        .arg("--image")
        .arg(format!("{}:v1", layout.dir().display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    let app = fs::metadata(rootfs.join("srv/bin/app")).unwrap();
    assert_eq!(app.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(rootfs.join("srv/conf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
    if is_root {
        assert_eq!((app.uid(), app.gid()), (1000, 1000));
    }
    assert_eq!(
        fs::read_link(rootfs.join("srv/run")).unwrap(),
        Path::new("bin/app")
    );
    assert!(!rootfs.join("srv/debug.log").exists());
    assert!(!rootfs.join("srv/.dockerignore").exists());
    assert!(rootfs.join("srv/work").is_dir());
}
