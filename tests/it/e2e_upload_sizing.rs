//! Upload sizing and resume against registries as they really answer, reproduced by the fault
//! proxy in front of the real `docker-registry`: GHCR's 4 MiB request cap (its exact 416),
//! `OCI-Chunk-Min-Length` on the answer that opens a session (distribution-spec v1.1), and a
//! `PATCH` cut before its first byte — twice — so the registry's upload status says the
//! ambiguous `0-0`. Each time a new 12 MiB layer is streamed while it is built, the push
//! completes, and the image read back by skopeo has the file, byte for byte, and runs.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::fault_proxy::{Fault, FaultProxy, ProxyLogEntry, Rule};
use crate::common::fixtures::{alpine_base_registry, copy_and_unpack};
use crate::common::ocipush::{Sandbox, assert_pushed, describe};
use crate::common::registry::RegistryServer;
use crate::common::tools::run_image;

const MIB: u64 = 1024 * 1024;
/// The streamed layer's file: over 10 MiB, incompressible.
const BIG: usize = 12 * MIB as usize;
const UPLOADS: &str = "/blobs/uploads/";

use crate::common::fixtures::noise;

/// A context copying a random 12 MiB file onto alpine; returns the Dockerfile and the bytes.
fn big_context(sb: &Sandbox) -> (PathBuf, Vec<u8>) {
    context_of(sb, BIG)
}

/// A context copying a random file of `len` bytes onto alpine.
fn context_of(sb: &Sandbox, len: usize) -> (PathBuf, Vec<u8>) {
    let ctx = sb.path().join("big");
    std::fs::create_dir(&ctx).unwrap();
    let data = noise(len, 0x9e37_79b9);
    std::fs::write(ctx.join("big.bin"), &data).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\nCMD [\"sh\", \"-c\", \"echo hello\"]\n",
    )
    .unwrap();
    (ctx.join("Dockerfile"), data)
}

/// `ocipush -v [extra…] --registries-conf … DOCKERFILE PROXY/sizing:v1`; the push must
/// complete, with the new layer uploaded while it was built (not pushed again afterwards).
fn push(sb: &Sandbox, proxy: &FaultProxy, dockerfile: &Path, extra: &[&str]) -> (Output, String) {
    let mut cmd = sb.command();
    cmd.arg("-v")
        .args(extra)
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(dockerfile)
        .arg(format!("{}/sizing:v1", proxy.addr()));
    let out = cmd.output().expect("run ocipush");
    let digest = assert_pushed(&out, &format!("{}/sizing", proxy.addr()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("uploading a layer while it was built failed")
            && !stderr.contains("\"layer_stream_failed\""),
        "the streamed upload failed and the layer was pushed again after the build:\n{}",
        describe(&out)
    );
    (out, digest)
}

/// The image, read back from the registry itself by skopeo: `/big.bin` is the file, and it runs.
fn assert_read_back(reg: &RegistryServer, digest: &str, data: &[u8]) {
    let img = copy_and_unpack(&format!("docker://{}/sizing@{digest}", reg.addr()), None);
    let got = std::fs::read(img.rootfs.join("big.bin")).unwrap();
    assert!(
        got == data,
        "big.bin differs ({} bytes read back)",
        got.len()
    );
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

fn patches(log: &[ProxyLogEntry]) -> Vec<&ProxyLogEntry> {
    log.iter()
        .filter(|e| e.method == "PATCH" && e.path().contains(UPLOADS))
        .collect()
}

/// `(method, path, Content-Range, Content-Length, fault, status)` of each upload request.
fn summary(log: &[ProxyLogEntry]) -> Vec<String> {
    log.iter()
        .filter(|e| e.path().contains(UPLOADS))
        .map(|e| {
            format!(
                "{} {} range={:?} len={} fault={:?} status={:?}",
                e.method,
                e.path(),
                e.content_range,
                e.content_length,
                e.fault,
                e.status
            )
        })
        .collect()
}

/// The PATCHes sent to the upload session at `path`.
fn session_of<'a>(log: &'a [ProxyLogEntry], path: &str) -> Vec<&'a ProxyLogEntry> {
    patches(log)
        .into_iter()
        .filter(|e| e.path() == path)
        .collect()
}

/// The upload session that carried the streamed layer: the one whose PATCHes sent the most.
fn layer_session(log: &[ProxyLogEntry]) -> String {
    let mut best: Option<(u64, String)> = None;
    for p in patches(log) {
        let sent: u64 = session_of(log, p.path())
            .iter()
            .filter(|e| e.status.is_some_and(|s| s < 300))
            .map(|e| e.content_length)
            .sum();
        if best.as_ref().is_none_or(|(n, _)| sent > *n) {
            best = Some((sent, p.path().to_string()));
        }
    }
    best.expect("no PATCH reached the registry").1
}

#[test]
fn ghcr_s_4_mib_cap_shrinks_the_chunks_and_the_same_session_goes_on() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // GHCR: any body over 4 MiB gets its 416 (rust-oci-client#35).
    proxy.add(Rule::new("", "/v2/", usize::MAX, Fault::ghcr_too_large()).larger_than(4 * MIB));
    let (dockerfile, data) = big_context(&sb);
    let (out, digest) = push(&sb, &proxy, &dockerfile, &["--progress", "rawjson"]);
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    let refused: Vec<_> = log.iter().filter(|e| e.status == Some(416)).collect();
    assert_eq!(refused.len(), 1, "one refusal, then 4 MiB chunks: {all:#?}");
    // The refusal is reported as one fallback event naming the new chunk size.
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let shrunk = crate::e2e_options::fallbacks(&events, "chunk_shrunk");
    assert_eq!(shrunk.len(), 1, "{err}");
    let detail = shrunk[0]["detail"].as_str().unwrap();
    assert!(
        detail.ends_with("sending chunks of 4194304 bytes"),
        "{detail}"
    );
    assert!(
        shrunk[0]["step"]
            .as_str()
            .unwrap()
            .starts_with("uploading blob "),
        "{err}"
    );
    assert_eq!(refused[0].method, "PATCH", "{all:#?}");
    // The refused chunk's session went on: no new session, 4 MiB chunks, closed by one PUT.
    let session = refused[0].path().to_string();
    let sent: Vec<_> = session_of(&log, &session)
        .into_iter()
        .filter(|e| e.fault.is_none())
        .collect();
    assert!(sent.len() >= 3, "{all:#?}");
    assert!(sent.iter().all(|e| e.content_length <= 4 * MIB), "{all:#?}");
    assert_eq!(
        sent[0].content_range.as_deref(),
        Some("0-4194303"),
        "{all:#?}"
    );
    assert!(
        sent.iter().map(|e| e.content_length).sum::<u64>() >= BIG as u64,
        "the layer went up in the refused chunk's session: {all:#?}"
    );
    let at = log
        .iter()
        .position(|e| std::ptr::eq(e, refused[0]))
        .unwrap();
    let closed = log[at..]
        .iter()
        .position(|e| e.method == "PUT" && e.path() == session && e.target.contains("digest="))
        .unwrap_or_else(|| panic!("the refused chunk's session was not closed: {all:#?}"));
    assert!(
        !log[at..at + closed]
            .iter()
            .any(|e| e.method == "POST" && e.path().ends_with(UPLOADS)),
        "a fresh session was opened: {all:#?}"
    );
    assert_read_back(&b, &digest, &data);
}

#[test]
fn a_4_mib_chunk_size_streams_the_layer_without_a_refusal() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new("", "/v2/", usize::MAX, Fault::ghcr_too_large()).larger_than(4 * MIB));
    let (dockerfile, data) = big_context(&sb);
    let (_, digest) = push(&sb, &proxy, &dockerfile, &["--chunk-size", "4MiB"]);
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    assert_eq!(proxy.faults_applied(), 0, "{all:#?}");
    let session = layer_session(&log);
    let sent = session_of(&log, &session);
    assert!(sent.len() >= 3, "{all:#?}");
    assert!(sent.iter().all(|e| e.content_length <= 4 * MIB), "{all:#?}");
    assert!(
        sent[..sent.len() - 1]
            .iter()
            .all(|e| e.content_length == 4 * MIB),
        "{all:#?}"
    );
    assert_read_back(&b, &digest, &data);
}

#[test]
fn oci_chunk_min_length_raises_every_chunk_but_the_last() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    let min = 6 * MIB;
    proxy.add(Rule::new(
        "POST",
        UPLOADS,
        usize::MAX,
        Fault::chunk_min_length(min),
    ));
    let (dockerfile, data) = big_context(&sb);
    // 1 MiB asked for; the registry's minimum wins.
    let (_, digest) = push(&sb, &proxy, &dockerfile, &["--chunk-size", "1MiB"]);
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    let session = layer_session(&log);
    let sent = session_of(&log, &session);
    assert!(sent.len() >= 2, "{all:#?}");
    let (last, rest) = sent.split_last().unwrap();
    assert!(
        rest.iter().all(|e| e.content_length >= min),
        "a chunk below OCI-Chunk-Min-Length: {all:#?}"
    );
    assert!(last.content_length <= min, "{all:#?}");
    assert!(
        sent.iter().map(|e| e.content_length).sum::<u64>() >= BIG as u64,
        "{all:#?}"
    );
    assert_read_back(&b, &digest, &data);
}

#[test]
fn a_patch_cut_before_its_first_byte_twice_resumes_from_0_not_1() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // The layer's first PATCH, and the resumed one after it, are cut before any body byte
    // reaches the registry: its upload status says `0-0` each time.
    proxy.add(Rule::new("PATCH", UPLOADS, 2, Fault::CutAfterHead));
    let (dockerfile, data) = big_context(&sb);
    let (_, digest) = push(&sb, &proxy, &dockerfile, &[]);
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    let cuts: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| e.fault.as_deref() == Some("cut after head"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(cuts.len(), 2, "{all:#?}");
    for &cut in &cuts {
        let after = &log[cut + 1..];
        let status = after
            .iter()
            .find(|e| e.method == "GET" && e.path().contains(UPLOADS))
            .unwrap_or_else(|| panic!("no upload status asked after a cut: {all:#?}"));
        assert_eq!(status.status, Some(204), "{all:#?}");
        let next = after
            .iter()
            .find(|e| e.method == "PATCH")
            .unwrap_or_else(|| panic!("no PATCH after a cut: {all:#?}"));
        assert!(
            next.content_range
                .as_deref()
                .is_some_and(|r| r.starts_with("0-")),
            "resumed from {:?}, not from 0: {all:#?}",
            next.content_range
        );
    }
    // No closing PUT was refused (DIGEST_INVALID): the session held the layer as sent.
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.status.is_some_and(|s| s >= 400)),
        "{all:#?}"
    );
    assert_read_back(&b, &digest, &data);
}

#[test]
fn a_blob_refused_whole_as_too_large_is_sent_again_in_chunks() {
    // The image is built into B directly, then copied through GHCR's cap to C: the copy
    // knows the 12 MiB layer, so it tries one PUT first.
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let (dockerfile, data) = big_context(&sb);
    let mut cmd = sb.command();
    cmd.arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(&dockerfile)
        .arg(format!("{}/sizing:v1", b.addr()));
    assert_pushed(&cmd.output().unwrap(), &format!("{}/sizing", b.addr()));
    let c = RegistryServer::start();
    let proxy = FaultProxy::start(c.port());
    proxy.add(Rule::new("", "/v2/", usize::MAX, Fault::ghcr_too_large()).larger_than(4 * MIB));
    let out = sb.ocipush([
        "-v",
        "--progress",
        "rawjson",
        "copy",
        &format!("{}/sizing:v1", b.addr()),
        &format!("{}/sizing:v1", proxy.addr()),
    ]);
    let digest = assert_pushed(&out, &format!("{}/sizing", proxy.addr()));
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    let refused: Vec<_> = log.iter().filter(|e| e.status == Some(416)).collect();
    assert_eq!(refused.len(), 1, "{all:#?}");
    assert_eq!(refused[0].method, "PUT", "{all:#?}");
    assert!(refused[0].content_length > 4 * MIB, "{all:#?}");
    // One fallback event for the refused PUT, naming the layer; no chunk was refused after.
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let whole = crate::e2e_options::fallbacks(&events, "monolithic_too_large");
    assert_eq!(whole.len(), 1, "{err}");
    let step = whole[0]["step"].as_str().unwrap();
    let uploading = events
        .iter()
        .filter(|e| e["event"] == "blob_uploading")
        .filter(|e| e["data"]["size"].as_u64().unwrap() > 4 * MIB)
        .map(|e| e["data"]["digest"].as_str().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(uploading.len(), 1, "{err}");
    assert_eq!(step, format!("uploading blob {}", uploading[0]), "{err}");
    assert!(
        crate::e2e_options::fallbacks(&events, "chunk_shrunk").is_empty(),
        "{err}"
    );
    let session = layer_session(&log);
    let sent = session_of(&log, &session);
    assert!(sent.len() >= 3, "{all:#?}");
    assert!(
        sent.iter()
            .all(|e| e.content_length <= 4 * MIB && e.status == Some(202)),
        "{all:#?}"
    );
    assert_read_back(&c, &digest, &data);
}

#[test]
fn chunk_sizes_out_of_range_are_usage_errors() {
    let sb = Sandbox::new();
    for (size, says) in [
        ("512KiB", "below the smallest chunk size"),
        ("8GiB", "above the largest chunk size"),
        ("big", "is not a size"),
    ] {
        let out = sb.ocipush(["--chunk-size", size, "Dockerfile", "127.0.0.1:1/x:v1"]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            describe(&out)
        );
    }
    let out = sb.ocipush(["copy", "--chunk-size", "3", "a", "b"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn a_registry_without_chunked_uploads_gets_each_blob_in_one_put() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // Google Artifact Registry: every PATCH is refused with 405.
    proxy.add(Rule::new(
        "PATCH",
        UPLOADS,
        usize::MAX,
        Fault::chunks_unsupported(),
    ));
    // Over the 32 MiB up to which a finished blob goes in one PUT anyway.
    let big = 40 * MIB as usize;
    let (dockerfile, data) = context_of(&sb, big);
    let mut cmd = sb.command();
    cmd.args(["--progress", "rawjson"])
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(&dockerfile)
        .arg(format!("{}/sizing:v1", proxy.addr()));
    let out = cmd.output().unwrap();
    let digest = assert_pushed(&out, &format!("{}/sizing", proxy.addr()));
    let log = proxy.log();
    let all = summary(&log);
    eprintln!("upload requests: {all:#?}");
    // The streamed upload's first PATCH was refused; nothing was PATCHed again, and the layer
    // went in one PUT once it was built.
    assert_eq!(patches(&log).len(), 1, "{all:#?}");
    assert_eq!(patches(&log)[0].status, Some(405), "{all:#?}");
    // Said once, as the fallback to one request, for the layer that was streaming.
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let whole = crate::e2e_options::fallbacks(&events, "no_chunked_uploads");
    assert_eq!(whole.len(), 1, "{err}");
    assert!(
        whole[0]["detail"]
            .as_str()
            .unwrap()
            .ends_with("sending the blob in one request"),
        "{err}"
    );
    let whole = log.iter().find(|e| {
        e.method == "PUT" && e.path().contains(UPLOADS) && e.content_length >= big as u64
    });
    assert!(
        whole.is_some_and(|e| e.status == Some(201)),
        "the layer was not sent in one PUT: {all:#?}"
    );
    assert_read_back(&b, &digest, &data);
}
