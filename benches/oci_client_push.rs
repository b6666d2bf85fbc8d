//! A peer for `benches/compare.sh`: push one image of an OCI image layout to a registry with the
//! `oci-client` crate (`Client::push`), over plain HTTP and anonymously.
//!
//!     cargo bench --bench oci_client_push -- <LAYOUT_DIR> <TAG> <HOST:PORT/REPO:TAG>
//!
//! Without those arguments (as when `cargo bench` runs every bench) it prints a usage note and
//! exits 0. The manifest, config and layers are read from the layout's `index.json` and
//! `blobs/sha256/`. `oci-client` takes each layer as in-memory bytes (`ImageLayer::data`), so
//! every layer is read whole into memory before the push starts: that is its design, and it
//! shows in the peak RSS. `Client::push` re-serialises the manifest (canonical JSON), so the
//! pushed manifest digest can differ from the layout's; both are printed.
//!
//! `OCI_CLIENT_MONOLITHIC=1` uses one PUT per blob instead of oci-client's default 4 MiB
//! PATCH chunks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;

const USAGE: &str = "oci_client_push: usage: cargo bench --bench oci_client_push -- \
                     <LAYOUT_DIR> <TAG> <HOST:PORT/REPO:TAG> (no arguments: nothing to do)";

const REF_NAME: &str = "org.opencontainers.image.ref.name";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, Error> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("not a sha256 digest: {digest}"))?;
    Ok(layout.join("blobs/sha256").join(hex))
}

/// The manifest descriptor tagged `tag` in the layout's `index.json`.
fn manifest_descriptor(layout: &Path, tag: &str) -> Result<Value, Error> {
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let manifests = index["manifests"]
        .as_array()
        .ok_or("index.json has no manifests array")?;
    manifests
        .iter()
        .find(|m| m["annotations"][REF_NAME].as_str() == Some(tag))
        .cloned()
        .ok_or_else(|| format!("no manifest tagged {tag:?} in {}", layout.display()).into())
}

async fn run(layout: &Path, tag: &str, dest: &str) -> Result<(), Error> {
    let desc = manifest_descriptor(layout, tag)?;
    let digest = desc["digest"]
        .as_str()
        .ok_or("manifest descriptor without digest")?;
    let raw = std::fs::read(blob_path(layout, digest)?)?;
    let manifest: OciImageManifest = serde_json::from_slice(&raw)
        .map_err(|e| format!("{digest} is not an OCI image manifest (an index?): {e}"))?;

    let start = Instant::now();
    let config = Config::new(
        std::fs::read(blob_path(layout, &manifest.config.digest)?)?,
        manifest.config.media_type.clone(),
        None,
    );
    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut bytes = config.data.len();
    for l in &manifest.layers {
        let data = std::fs::read(blob_path(layout, &l.digest)?)?;
        bytes += data.len();
        layers.push(ImageLayer::new(data, l.media_type.clone(), None));
    }
    let read = start.elapsed();

    let reference: Reference = dest.parse()?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: std::env::var_os("OCI_CLIENT_MONOLITHIC").is_some_and(|v| v == "1"),
        ..ClientConfig::default()
    });
    let pushed = client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await?;
    let total = start.elapsed();
    println!(
        "oci-client pushed {} blobs ({:.1} MiB, all held in memory) in {:.2} s (reading the layout: {:.2} s)",
        layers.len() + 1,
        bytes as f64 / (1024.0 * 1024.0),
        total.as_secs_f64(),
        read.as_secs_f64(),
    );
    println!("manifest: {}", pushed.manifest_url);
    println!("layout manifest digest: {digest}");
    Ok(())
}

fn main() -> ExitCode {
    // `cargo bench` adds `--bench` (and may add other flags); only positional words count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [layout, tag, dest] = args.as_slice() else {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oci_client_push: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(Path::new(layout), tag, dest)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci_client_push: {e}");
            ExitCode::FAILURE
        }
    }
}
