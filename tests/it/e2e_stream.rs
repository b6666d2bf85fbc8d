//! Layers uploaded while they are built: the library's growing upload against the real
//! registry (chunks sent before the blob is finished; a finished blob the registry has is not
//! sent again; a build that stops fails the upload), and the CLI streaming a new layer.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocipush::digest::Digest;
use ocipush::image::{Descriptor, media_types};
use ocipush::reference::Reference;
use ocipush::registries_conf::RegistriesConf;
use ocipush::registry::{ClientOptions, RegistryClient, Repository, RetryPolicy};
use ocipush::streaming::{GrowingBlob, GrowingFile, LayerTap};

use crate::common::fixtures::{alpine_base_registry, copy_and_unpack};
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::registry::{AccessLogEntry, RegistryServer};
use crate::common::tools::run_image;

const MIB: usize = 1024 * 1024;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn repository(reg: &RegistryServer, name: &str) -> Repository {
    let r = Reference::parse(&format!("{}/{name}", reg.addr())).unwrap();
    let endpoint = RegistriesConf::default().resolve(&r).unwrap();
    RegistryClient::new(ClientOptions {
        retry: RetryPolicy::none(),
        ..ClientOptions::default()
    })
    .unwrap()
    .repository(&endpoint)
}

use crate::common::fixtures::noise;

/// A file being written, and the blob a tap published for it.
fn growing() -> (GrowingFile, GrowingBlob, tempfile::NamedTempFile) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let slot = Arc::new(Mutex::new(None));
    let s = slot.clone();
    let tap = LayerTap::new(move |b| *s.lock().unwrap() = Some(b));
    let file = tap.publish(tmp.as_file().try_clone().unwrap()).unwrap();
    let blob = slot.lock().unwrap().take().unwrap();
    (file, blob, tmp)
}

fn blob_requests(log: &[AccessLogEntry]) -> Vec<String> {
    log.iter()
        .filter(|e| e.path().contains("/blobs/"))
        .map(|e| {
            let what = if e.path().contains("/uploads/") {
                if e.uri.contains("digest=") {
                    "close"
                } else {
                    "upload"
                }
            } else {
                "blob"
            };
            format!("{} {what} {}", e.method, e.status)
        })
        .collect()
}

#[test]
fn chunks_are_sent_while_the_blob_is_still_being_written() {
    let reg = RegistryServer::start();
    let repo = repository(&reg, "stream/grow");
    let data = noise(20 * MIB, 7);
    let (mut file, blob, _tmp) = growing();
    // More than one 16 MiB chunk is written; the rest only once the first chunk went out.
    file.write_all(&data[..17 * MIB]).unwrap();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<()>();
    let rt = rt();
    let upload = rt.spawn(async move {
        let sent_tx = Mutex::new(Some(sent_tx));
        let progress = move |n: u64| {
            if n >= 16 * MIB as u64
                && let Some(tx) = sent_tx.lock().unwrap().take()
            {
                let _ = tx.send(());
            }
        };
        repo.upload_growing(&blob, &progress).await
    });
    // A hang guard, not a timing assertion: an upload that waited for the end never gets here.
    sent_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("no chunk was sent before the blob was finished");
    file.write_all(&data[17 * MIB..]).unwrap();
    let digest = Digest::of(&data);
    file.finish(&digest, data.len() as u64);
    let (got, size) = rt.block_on(upload).unwrap().unwrap();
    assert_eq!((got, size), (digest.clone(), data.len() as u64));

    let log = reg.access_log();
    assert_eq!(
        blob_requests(&log),
        [
            "POST upload 202",
            "PATCH upload 202",
            // Finished with 4 MiB unsent: asked whether the registry has it (no).
            "HEAD blob 404",
            "PATCH upload 202",
            "PUT close 201"
        ],
        "{log:#?}"
    );
    let stored = std::fs::read(
        reg.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .join("data"),
    )
    .unwrap();
    assert!(stored == data, "the registry stored other bytes");
}

#[test]
fn a_finished_blob_the_registry_has_is_not_sent_again() {
    let reg = RegistryServer::start();
    let repo = repository(&reg, "stream/again");
    let data = noise(3 * MIB, 11);
    let digest = Digest::of(&data);
    let rt = rt();
    rt.block_on(async {
        use ocipush::dest::Destination;
        let d = Descriptor::new(
            media_types::OCI_LAYER_TAR,
            digest.clone(),
            data.len() as u64,
        );
        let src = ocipush::blob::BytesBlob(bytes::Bytes::from(data.clone()));
        repo.put_blob(&d, &src, &|_| {}).await.unwrap();
    });
    let mark = reg.log_mark();
    let (mut file, blob, _tmp) = growing();
    file.write_all(&data).unwrap();
    file.finish(&digest, data.len() as u64);
    let got = rt.block_on(repo.upload_growing(&blob, &|_| {})).unwrap();
    assert_eq!(got, (digest, data.len() as u64));
    let log = reg.access_log_since(mark);
    assert_eq!(
        blob_requests(&log),
        ["POST upload 202", "HEAD blob 200"],
        "{log:#?}"
    );
}

#[test]
fn a_layer_that_stops_being_built_fails_its_upload_and_is_never_closed() {
    let reg = RegistryServer::start();
    let repo = repository(&reg, "stream/stopped");
    let (mut file, blob, _tmp) = growing();
    file.write_all(&noise(17 * MIB, 3)).unwrap();
    let rt = rt();
    let upload = rt.spawn(async move { repo.upload_growing(&blob, &|_| {}).await });
    drop(file);
    let err = rt.block_on(upload).unwrap().unwrap_err();
    assert!(err.to_string().contains("stopped being built"), "{err}");
    let log = reg.access_log();
    assert!(
        !blob_requests(&log).iter().any(|r| r.contains("close")),
        "{log:#?}"
    );
}

#[test]
fn the_cli_uploads_a_new_layer_while_building_it_and_the_image_runs() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("big.bin"), noise(40 * MIB, 5)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\nCMD [\"sh\", \"-c\", \"echo hello\"]\n",
    )
    .unwrap();
    let out = sb
        .command()
        .arg("--no-cache")
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(ctx.join("Dockerfile"))
        .arg(format!("{}/stream:v1", b.addr()))
        .output()
        .unwrap();
    let digest = assert_pushed(&out, &format!("{}/stream", b.addr()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("while it was built"), "{stderr}");
    // The layer went up in chunks before its digest was known: no HEAD of it came first, and
    // its session was closed once (with its digest).
    let log = b.access_log();
    let layer_close = log
        .iter()
        .filter(|e| e.method == "PUT" && e.uri.contains("digest=") && e.status == 201)
        .count();
    // The base layer (copied from the other registry), the new layer, the config.
    assert_eq!(layer_close, 3, "{log:#?}");
    assert!(
        log.iter()
            .filter(|e| e.method == "PATCH" && e.status == 202)
            .count()
            >= 3,
        "{log:#?}"
    );
    let img = copy_and_unpack(&format!("docker://{}/stream@{digest}", b.addr()), None);
    assert_eq!(
        std::fs::metadata(img.rootfs.join("big.bin")).unwrap().len(),
        40 * MIB as u64
    );
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

/// A layer being streamed that the registry turns out to have already (found when it is
/// finished with most of it unsent) is not sent in full: the session is left, the rest not
/// sent, and a `blob_already_there` fallback says so. The registry has it from a first push;
/// in the second, the streamed upload's session is held until the layer is built.
#[test]
fn a_streamed_layer_the_registry_has_is_not_sent_in_full() {
    use std::io::BufRead;
    use std::process::Stdio;

    use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
    use crate::common::ocipush::Spawned;

    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("big.bin"), noise(8 * MIB, 23)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\n",
    )
    .unwrap();
    let push = || {
        let mut cmd = sb.command();
        cmd.args(["--progress", "rawjson", "--no-cache", "--registries-conf"])
            .arg(sb.registries_conf())
            .arg(ctx.join("Dockerfile"))
            .arg(format!("{}/again:v1", proxy.addr()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    let first = push().output().unwrap();
    let digest = assert_pushed(&first, &format!("{}/again", proxy.addr()));
    let events = crate::e2e_options::rawjson_events(&String::from_utf8_lossy(&first.stderr));
    let layer = events
        .iter()
        .find(|e| e["event"] == "layer_built")
        .map(|e| e["data"]["digest"].as_str().unwrap().to_string())
        .expect("the COPY layer was built");

    // The first session opened in the second push is the streamed layer's (the base layer and
    // the config are there already).
    proxy.add(Rule::new("POST", "/blobs/uploads/", 1, Fault::Hold));
    let mark = proxy.log().len();
    let mut run = Spawned::new(push());
    let stderr = run.child().stderr.take().unwrap();
    let (built_tx, built) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for l in std::io::BufReader::new(stderr).lines() {
            let l = l.unwrap();
            if l.contains("\"event\":\"layer_built\"") {
                let _ = built_tx.send(());
            }
            lines.push(l);
        }
        lines.join("\n")
    });
    proxy.wait_held();
    // A watchdog, not a timing assertion: the build finishes while its upload waits.
    built
        .recv_timeout(Duration::from_secs(300))
        .expect("the layer was built while its upload session was held");
    proxy.release();
    let out = run.wait_with_output();
    let err = reader.join().unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}/again@{digest}", proxy.addr()),
        "{err}"
    );
    let events = crate::e2e_options::rawjson_events(&err);
    let there = crate::e2e_options::fallbacks(&events, "blob_already_there");
    assert_eq!(there.len(), 1, "{err}");
    let detail = there[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("the registry has {layer} already")),
        "{detail}"
    );
    // Nothing of the layer was sent in the second push: its session was opened, never
    // written to or closed with a digest, and deleted at the end.
    let second = proxy.log().split_off(mark);
    let uploads = |method: &str| crate::common::fault_proxy::upload_requests(&second, method);
    assert_eq!(
        (
            uploads("POST"),
            uploads("PATCH"),
            uploads("PUT"),
            uploads("DELETE")
        ),
        (1, 0, 0, 1),
        "{second:#?}"
    );
}

#[test]
fn only_the_target_stage_layers_are_streamed() {
    let sb = Sandbox::new();
    let b = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("big.bin"), noise(20 * MIB, 9)).unwrap();
    std::fs::write(ctx.join("small.txt"), "small\n").unwrap();
    // The builder stage's 20 MiB layer is only read by COPY --from: it never reaches the registry.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS builder\nCOPY big.bin small.txt /src/\n\
         FROM scratch\nCOPY --from=builder /src/small.txt /small.txt\nCOPY small.txt /again.txt\n",
    )
    .unwrap();
    let out = sb
        .command()
        .arg("--no-cache")
        .arg(ctx.join("Dockerfile"))
        .arg(format!("{}/stages:v1", b.addr()))
        .output()
        .unwrap();
    assert_pushed(&out, &format!("{}/stages", b.addr()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("while it was built").count(),
        2,
        "the two layers of the target stage: {stderr}"
    );
    let log = b.access_log();
    let started = log
        .iter()
        .filter(|e| e.method == "POST" && e.path().ends_with("/blobs/uploads/"))
        .count();
    let closed = log
        .iter()
        .filter(|e| e.method == "PUT" && e.uri.contains("digest=") && e.status == 201)
        .count();
    // Two layers and the config; no session for the builder's layer.
    assert_eq!((started, closed), (3, 3), "{log:#?}");
    let stored: u64 = walk_sizes(&b.storage_dir().join("docker/registry/v2/blobs"));
    assert!(stored < MIB as u64, "{stored} bytes stored");
}

/// The total size of the files under `dir`.
fn walk_sizes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                walk_sizes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}
