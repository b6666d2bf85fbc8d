//! `ocipush copy` and OCI layouts as source and destination: registry → layout
//! (whole index, and one platform unpacked by umoci), layout → registry, and
//! registry → registry (streamed) and within one registry (mounted), checked
//! with skopeo; a multi-platform build into a layout read by skopeo; a source
//! registry serving a blob that does not match its digest (a stand-in server
//! speaking the registry protocol) fails the copy and the build, tagging nothing;
//! `--retries`, `--timeout` and `--ca-cert` shape a copy as they do a build (through the
//! fault proxy).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use serde_json::{Value, json};

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::fixtures::seed_alpine;
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed};
use crate::common::registry::{RegistryServer, summarize};
use crate::common::tools::{image_arg, skopeo_inspect_raw, skopeo_inspect_raw_bytes, umoci_unpack};
use crate::common::{tempdir, testdata};
use crate::e2e_platforms::{elf_machine, push_two_arch_alpine};

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn copy_between_registries_and_layouts() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let b = RegistryServer::start();
    let index_digest = push_two_arch_alpine(&sb, &a);
    let src = format!("{}/library/alpine:latest", a.addr());
    let work = tempdir("copy");

    // Registry → layout: the whole index, same digest.
    let layout = work.path().join("layout");
    let dest = format!("oci:{}:v1", layout.display());
    let out = sb.ocipush(["copy", &src, &dest]);
    let d = assert_pushed(&out, &format!("oci:{}", layout.display()));
    assert_eq!(d, index_digest);
    let raw = skopeo_inspect_raw_bytes(&dest, false, None);
    assert_eq!(sha256(&raw), index_digest);

    // Layout → layout, arm64 only: a plain manifest umoci unpacks.
    let arm = work.path().join("arm");
    let out = sb.ocipush([
        "copy",
        "--platform",
        "linux/arm64/v8",
        &dest,
        &format!("oci:{}:arm", arm.display()),
    ]);
    assert_pushed(&out, &format!("oci:{}", arm.display()));
    let bundle = work.path().join("bundle");
    umoci_unpack(&arm, "arm", &bundle);
    assert_eq!(elf_machine(&bundle.join("rootfs/bin/busybox")), 0xb7);

    // Layout → registry B: the same index.
    let out = sb.ocipush(["copy", &dest, &format!("{}/from-layout:v1", b.addr())]);
    assert_eq!(
        assert_pushed(&out, &format!("{}/from-layout", b.addr())),
        index_digest
    );
    let got = skopeo_inspect_raw_bytes(
        &format!("docker://{}/from-layout:v1", b.addr()),
        false,
        None,
    );
    assert_eq!(sha256(&got), index_digest);

    // Registry A → registry B: streamed, verified by skopeo.
    let mark = a.log_mark();
    let out = sb.ocipush(["copy", &src, &format!("{}/mirror:v2", b.addr())]);
    assert_eq!(
        assert_pushed(&out, &format!("{}/mirror", b.addr())),
        index_digest
    );
    let index = skopeo_inspect_raw(&format!("docker://{}/mirror:v2", b.addr()), false, None);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    let reads = a
        .access_log_since(mark)
        .iter()
        .filter(|e| e.method == "GET" && e.path().starts_with("/v2/library/alpine/blobs/"))
        .count();
    assert_eq!(reads, 4, "two layers and two configs streamed from A");

    // Within registry A: mounted, nothing uploaded.
    let mark = a.log_mark();
    let out = sb.ocipush(["copy", &src, &format!("{}/team/alpine:v1", a.addr())]);
    assert_eq!(
        assert_pushed(&out, &format!("{}/team/alpine", a.addr())),
        index_digest
    );
    let log = a.access_log_since(mark);
    let mounted = log
        .iter()
        .filter(|e| e.method == "POST" && e.uri.contains("mount=") && e.status == 201)
        .count();
    assert_eq!(mounted, 4, "{:#?}", summarize(&log));
    assert!(
        !log.iter()
            .any(|e| e.method == "PATCH"
                || (e.method == "PUT" && e.path().contains("/blobs/uploads/"))),
        "nothing uploaded: {:#?}",
        summarize(&log)
    );

    // A multi-platform build straight into a layout, read by skopeo.
    let built = work.path().join("built");
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
        testdata("hello/Dockerfile").as_os_str(),
        format!("oci:{}:v1", built.display()).as_ref(),
    ]);
    let d = assert_pushed(&out, &format!("oci:{}", built.display()));
    let raw = skopeo_inspect_raw_bytes(
        &format!("oci:{}", image_arg(&built, "v1").to_string_lossy()),
        false,
        None,
    );
    assert_eq!(sha256(&raw), d);
    let idx: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
}

/// A stand-in registry serving `evil:v1`: a valid manifest and config, and a
/// layer whose bytes do not match the digest the manifest names.
fn start_lying_registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let good = b"the layer the manifest names".to_vec();
    let evil = b"something else entirely, sent".to_vec();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&good)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": sha256(&good),
            "size": evil.len().min(good.len()),
        }],
    }))
    .unwrap();
    // The layer is served with the declared size, so only the digest is wrong.
    let evil = evil[..good.len().min(evil.len())].to_vec();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or("").to_string();
            let path = parts.next().unwrap_or("").to_string();
            let (status, ctype, body): (&str, &str, Vec<u8>) = if path == "/v2/" {
                ("200 OK", "application/json", b"{}".to_vec())
            } else if path == "/v2/evil/manifests/v1" || path.ends_with(&sha256(&manifest)) {
                (
                    "200 OK",
                    "application/vnd.oci.image.manifest.v1+json",
                    manifest.clone(),
                )
            } else if path == format!("/v2/evil/blobs/{}", sha256(&config)) {
                ("200 OK", "application/octet-stream", config.clone())
            } else if path == format!("/v2/evil/blobs/{}", sha256(&good)) {
                ("200 OK", "application/octet-stream", evil.clone())
            } else {
                (
                    "404 Not Found",
                    "application/json",
                    b"{\"errors\":[{\"code\":\"NOT_FOUND\",\"message\":\"not here\"}]}".to_vec(),
                )
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = conn.write_all(&body);
            }
        }
    });
    addr
}

#[test]
fn a_source_blob_that_does_not_match_its_digest_fails_and_tags_nothing() {
    let sb = Sandbox::new();
    let b = RegistryServer::start();
    let liar = start_lying_registry();

    let out = sb.ocipush([
        "copy",
        &format!("{liar}/evil:v1"),
        &format!("{}/victim:v1", b.addr()),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(
        err.contains(&format!("{liar}/evil")),
        "names the source: {err}"
    );

    let ctx = tempdir("liar");
    let df = ctx.path().join("Dockerfile");
    std::fs::write(&df, format!("FROM {liar}/evil:v1\nCMD [\"x\"]\n")).unwrap();
    let out = sb.ocipush([df.as_os_str(), format!("{}/victim:v2", b.addr()).as_ref()]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("does not match its digest"), "{err}");
    assert_eq!(
        b.count("PUT", "/v2/victim/manifests/"),
        0,
        "nothing tagged: {:#?}",
        summarize(&b.access_log())
    );
}

/// `ocipush copy [extra…] SRC DEST`.
fn copy_with(sb: &Sandbox, extra: &[&str], src: &str, dest: &str) -> std::process::Output {
    sb.ocipush(
        std::iter::once("copy")
            .chain(extra.iter().copied())
            .chain([src, dest]),
    )
}

#[test]
fn copy_honours_retries_timeout_and_ca_cert() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let src = seed_alpine(&a, "library/alpine:latest");
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    let dest = format!("{}/copied:v1", proxy.addr());
    // 503s injected since log entry `mark`.
    let injected = |mark: usize| {
        proxy.log()[mark..]
            .iter()
            .filter(|e| e.fault.as_deref() == Some("status 503"))
            .count()
    };

    // --retries 2: the manifest PUT is tried exactly three times, then the copy fails saying so.
    proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        usize::MAX,
        Fault::unavailable(),
    ));
    let out = copy_with(&sb, &["--retries", "2"], &src, &dest);
    let err = assert_failed(&out, 1);
    assert!(err.contains("after 3 attempts"), "{err}");
    assert_eq!(injected(0), 3, "{:#?}", proxy.log());

    // --retries 0: one 503 fails the copy; the default (4 retries) gets through two.
    proxy.clear();
    proxy.add(Rule::new("PUT", "/manifests/", 1, Fault::unavailable()));
    let mark = proxy.log().len();
    let err = assert_failed(&copy_with(&sb, &["--retries", "0"], &src, &dest), 1);
    assert!(err.contains("503"), "{err}");
    assert_eq!(injected(mark), 1, "{:#?}", proxy.log());
    proxy.clear();
    proxy.add(Rule::new("PUT", "/manifests/", 2, Fault::unavailable()));
    let mark = proxy.log().len();
    let out = copy_with(&sb, &[], &src, &dest);
    assert_pushed(&out, &format!("{}/copied", proxy.addr()));
    assert_eq!(injected(mark), 2, "{:#?}", proxy.log());

    // --timeout 1: a registry that never answers fails the copy with that stall limit.
    proxy.clear();
    proxy.add(Rule::new("", "/v2/", usize::MAX, Fault::Stall));
    let out = copy_with(&sb, &["--retries", "0", "--timeout", "1"], &src, &dest);
    let err = assert_failed(&out, 1);
    assert!(err.contains("no data moved for 1 s"), "{err}");

    // --ca-cert is read (and refused when missing or not PEM), before anything is copied.
    std::fs::write(sb.path().join("junk.pem"), "not a certificate").unwrap();
    for (file, expected) in [
        ("missing.pem", "cannot read --ca-cert"),
        ("junk.pem", "junk.pem"),
    ] {
        let ca = sb.path().join(file);
        let ca = ca.to_str().unwrap();
        let err = assert_failed(&copy_with(&sb, &["--ca-cert", ca], &src, &dest), 1);
        assert!(err.contains(expected), "{err}");
    }
    // Bad values are usage errors, as for a build.
    for bad in [["--retries", "many"], ["--timeout", "0"]] {
        assert_failed(&copy_with(&sb, &bad, &src, &dest), 2);
    }
}

/// Ctrl-C during a copy stops it cleanly, as during a build: exit 130, nothing tagged, every
/// upload session opened at a registry closed (`DELETE`), and a layout's partly written blobs
/// removed.
#[test]
fn an_interrupted_copy_closes_its_uploads_tags_nothing_and_leaves_no_file() {
    use std::process::Stdio;

    use crate::common::ocipush::Spawned;

    let sb = Sandbox::new();
    let a = RegistryServer::start();
    push_two_arch_alpine(&sb, &a);
    // `cmd` spawned, once `transfers` requests are held by `held`.
    let spawn_held = |mut cmd: std::process::Command, held: &FaultProxy, transfers: usize| {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = Spawned::new(cmd);
        held.wait_for("every transfer held", |log| {
            log.iter()
                .filter(|e| {
                    (e.method == "PUT" && e.target.contains("digest="))
                        || (e.method == "GET" && e.path().contains("/blobs/sha256:"))
                })
                .count()
                >= transfers
        });
        held.wait_held();
        child
    };

    // Registry → registry: the four blobs (two layers, two configs) held at their closing PUT.
    let b = RegistryServer::start();
    let to_b = FaultProxy::start(b.port());
    to_b.add(Rule::new("PUT", "digest=", usize::MAX, Fault::Hold));
    let mut cmd = sb.command();
    cmd.args([
        "--progress",
        "rawjson",
        "copy",
        &format!("{}/library/alpine:latest", a.addr()),
        &format!("{}/copied:v1", to_b.addr()),
    ]);
    let mut child = spawn_held(cmd, &to_b, 4);
    child.signal_ocipush(libc::SIGINT);
    let out = child.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    // In rawjson too, every line an event: the interruption, then the error with its code.
    let events = crate::e2e_options::rawjson_events(&err);
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"interrupted"), "{names:?}");
    let last = events.last().unwrap();
    assert_eq!(
        (&last["event"], &last["data"]["exit_code"]),
        (&json!("error"), &json!(130))
    );
    assert!(
        last["data"]["message"]
            .as_str()
            .unwrap()
            .starts_with("the copy was cancelled; nothing was tagged"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing printed as copied");
    let log = b.access_log();
    let sessions = |method: &str| {
        log.iter()
            .filter(|e| e.method == method && e.path().contains("/blobs/uploads/"))
            .count()
    };
    assert_eq!(sessions("POST"), 4, "{:#?}", summarize(&log));
    assert_eq!(
        sessions("DELETE"),
        4,
        "every session closed: {:#?}",
        summarize(&log)
    );
    assert!(
        !log.iter()
            .any(|e| e.path().contains("/manifests/") && e.method == "PUT"),
        "{:#?}",
        summarize(&log)
    );

    // Registry → layout: the blobs' reads held, each already writing to its temporary file.
    let from_a = FaultProxy::start(a.port());
    from_a.add(Rule::new("GET", "/blobs/sha256:", usize::MAX, Fault::Hold));
    let work = tempdir("copy-interrupted");
    let layout = work.path().join("layout");
    let mut cmd = sb.command();
    cmd.args([
        "copy".to_string(),
        format!("{}/library/alpine:latest", from_a.addr()),
        format!("oci:{}:v1", layout.display()),
    ]);
    let mut child = spawn_held(cmd, &from_a, 1);
    let temporaries = || {
        std::fs::read_dir(layout.join("blobs/sha256"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".tmp-"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert!(!temporaries().is_empty(), "a blob is being written");
    child.signal_ocipush(libc::SIGINT);
    let out = child.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(temporaries(), Vec::<String>::new(), "temporary files left");
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap_or_default();
    assert!(!index.contains("\"v1\""), "tagged: {index}");
}
