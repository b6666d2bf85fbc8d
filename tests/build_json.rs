//! The JSON ocipush writes (config, manifest) for a build that needs no registry, pinned by
//! insta snapshots; and the digest's independence from file mtimes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ocipush::auth::Anonymous;
use ocipush::build::BuildArgs;
use ocipush::build::{BuildOptions, BuiltImage, build_image};
use ocipush::events;
use ocipush::image::{Format, Platform};
use ocipush::layers::Compression;
use ocipush::registries_conf::RegistriesConf;
use ocipush::registry::{ClientOptions, RegistryClient};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

async fn build(context: &Path, format: Format, epoch: u64) -> BuiltImage {
    let spool = tempfile::tempdir().unwrap();
    let mut opts = BuildOptions::new(context.join("Dockerfile"), context, spool.path());
    opts.build_args = BuildArgs::parse(["VERSION=2.5"]).unwrap();
    opts.platform = Platform::linux_amd64();
    opts.format = format;
    opts.epoch = epoch;
    opts.compression = Compression::Gzip { level: 6 };
    opts.cache_dir = None;
    let client = RegistryClient::new(ClientOptions {
        credentials: Arc::new(Anonymous),
        ..ClientOptions::default()
    })
    .unwrap();
    let registries = RegistriesConf::default();
    let image = build_image(&opts, &client, &registries, &events::ignore())
        .await
        .unwrap();
    std::mem::forget(spool); // the blobs must outlive the returned image in these tests
    image
}

fn pretty(bytes: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
    serde_json::to_string_pretty(&v).unwrap()
}

#[tokio::test]
async fn kitchen_sink_config_and_manifest() {
    let image = build(&testdata("kitchen-sink"), Format::Oci, 1_700_000_000).await;
    insta::assert_snapshot!("kitchen_sink_config", pretty(&image.config.bytes));
    insta::assert_snapshot!("kitchen_sink_manifest", pretty(&image.manifest.bytes));
    let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    let layers = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .count();
    assert_eq!(
        layers,
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn docker_format_media_types() {
    let image = build(&testdata("kitchen-sink"), Format::Docker, 0).await;
    insta::assert_snapshot!(
        "kitchen_sink_docker_manifest",
        pretty(&image.manifest.bytes)
    );
}

#[tokio::test]
async fn digest_ignores_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&testdata("kitchen-sink"), dir.path());
    let first = build(dir.path(), Format::Oci, 0).await.manifest.digest;
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    for entry in walk(dir.path()) {
        let f = std::fs::File::options()
            .write(entry.is_file())
            .read(true)
            .open(&entry)
            .unwrap();
        f.set_modified(later).unwrap();
    }
    let second = build(dir.path(), Format::Oci, 0).await.manifest.digest;
    assert_eq!(first, second);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}
