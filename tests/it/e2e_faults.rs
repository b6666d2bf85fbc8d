//! Faults between ocipush and a real registry, injected by the fault proxy
//! (`common::fault_proxy`): 503 bursts, 429 with Retry-After, dropped
//! connections, a 401 mid-push, an upload cut half-way (monolithic and
//! chunked), a base layer's download from its own registry cut mid-copy (the streaming
//! source is re-opened), a stall. Each time the push completes and the image reads back
//! with skopeo and runs in a chroot; when the faults never stop, the push fails
//! with a clear message (what was tried) and no tag. The registry killed
//! mid-push: exit 1, no tag; restarted on the same storage: the re-run
//! completes and skips the blobs already uploaded.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use crate::common::fault_proxy::{Fault, FaultProxy, ProxyLogEntry, Rule};
use crate::common::fixtures::{alpine_base_registry, copy_and_unpack};
use crate::common::ocipush::{Sandbox, Spawned, assert_failed, assert_pushed, run_watched};
use crate::common::registry::{RegistryServer, free_port, summarize};
use crate::common::testdata;
use crate::common::tools::{run_image, skopeo_inspect_output};

const UPLOAD_POST: &str = "/blobs/uploads/";

/// `ocipush [extra…] --registries-conf … hello/Dockerfile PROXY/faults:v1`.
fn push_via(sb: &Sandbox, proxy: &FaultProxy, extra: &[&str]) -> Output {
    run_watched(push_command(
        sb,
        proxy,
        extra,
        &testdata("hello/Dockerfile"),
    ))
}

fn push_command(sb: &Sandbox, proxy: &FaultProxy, extra: &[&str], dockerfile: &Path) -> Command {
    let mut cmd = sb.command();
    cmd.args(extra)
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(dockerfile)
        .arg(format!("{}/faults:v1", proxy.addr()));
    cmd
}

/// The pushed image, read back from the registry itself (not through the proxy) by skopeo,
/// unpacked by umoci and run: it prints `hello`.
fn assert_runs_hello(reg: &RegistryServer, digest: &str) {
    let img = copy_and_unpack(&format!("docker://{}/faults@{digest}", reg.addr()), None);
    let run = run_image(&img.rootfs, &img.config);
    assert_eq!(run.stdout, "hello\n", "{}", run.stderr);
}

/// No `faults:v1` on the registry and no manifest stored.
fn assert_no_tag(reg: &RegistryServer) {
    let log = reg.access_log();
    let stored: Vec<_> = log
        .iter()
        .filter(|e| e.method == "PUT" && e.path().contains("/manifests/") && e.status < 300)
        .collect();
    assert!(
        stored.is_empty(),
        "a manifest was stored: {stored:#?}\n{:#?}",
        summarize(&log)
    );
    let out = skopeo_inspect_output(&format!("docker://{}/faults:v1", reg.addr()), false, None);
    assert!(
        !out.status.success(),
        "faults:v1 exists after a failed push"
    );
}

fn faulted<'a>(log: &'a [ProxyLogEntry], label: &str) -> Vec<&'a ProxyLogEntry> {
    log.iter()
        .filter(|e| e.fault.as_deref() == Some(label))
        .collect()
}

#[test]
fn transient_faults_are_retried_and_the_image_runs() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy
        .add(Rule::new("HEAD", "/blobs/sha256:", 3, Fault::unavailable()))
        .add(Rule::new("POST", UPLOAD_POST, 1, Fault::Drop))
        .add(Rule::new("PUT", "/manifests/", 2, Fault::too_many(1)))
        .add(Rule::new("PUT", "/manifests/", 1, Fault::unavailable()));

    let out = push_via(&sb, &proxy, &["--progress", "rawjson"]);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    let log = proxy.log();
    assert_eq!(faulted(&log, "status 503").len(), 4, "{log:#?}");
    assert_eq!(faulted(&log, "status 429").len(), 2, "{log:#?}");
    assert_eq!(faulted(&log, "drop").len(), 1, "{log:#?}");
    // Each retry is an event saying what is retried, after which failure; stderr stays one
    // JSON object per line.
    let err = String::from_utf8_lossy(&out.stderr);
    crate::e2e_options::validate_against_schema(&err);
    let retries: Vec<serde_json::Value> = err
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|e| e["event"] == "retrying")
        .collect();
    assert_eq!(retries.len(), 7, "one per injected fault: {err}");
    assert!(
        retries
            .iter()
            .any(|r| r["data"]["error"].as_str().unwrap().contains("429")
                || r["data"]["error"].as_str().unwrap().contains("rate")),
        "{err}"
    );
    assert_runs_hello(&b, &digest);
}

#[test]
fn a_401_mid_push_reauthenticates_and_continues() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start_with_auth("pusher", "s3cret-Horse");
    let proxy = FaultProxy::start(b.port());
    sb.login(&[(&proxy.addr(), "pusher", "s3cret-Horse")]);
    // The second blob upload (credentials already in use) is refused once, as if they had
    // expired.
    proxy.add(
        Rule::new(
            "PUT",
            "/blobs/uploads/",
            1,
            Fault::unauthorized_basic("ocipush-test"),
        )
        .after(1),
    );
    let out = push_via(&sb, &proxy, &[]);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    let log = proxy.log();
    let i = log
        .iter()
        .position(|e| e.fault.as_deref() == Some("status 401"))
        .expect("the 401 was injected");
    assert!(log[i].authorized, "{:#?}", log[i]);
    let again = log[i + 1..]
        .iter()
        .find(|e| e.method == "PUT" && e.path() == log[i].path())
        .unwrap_or_else(|| panic!("the refused upload was not sent again: {log:#?}"));
    assert!(again.authorized && again.status == Some(201), "{again:#?}");
    let creds = Some(("pusher", "s3cret-Horse"));
    let img = copy_and_unpack(&format!("docker://{}/faults@{digest}", b.addr()), creds);
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

#[test]
fn a_base_layer_download_cut_mid_copy_is_reopened() {
    // The base registry is behind a proxy that cuts the first download of the Alpine layer
    // after 1 MiB: the layer streams from there into the upload, so the upload's source broke;
    // the upload is retried and re-opens the source (nothing was buffered).
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    crate::common::fixtures::seed_alpine(&a, "library/alpine:latest");
    let pa = FaultProxy::start(a.port());
    sb.set_registries(&[(
        "docker.io/library/alpine",
        &format!("{}/library/alpine", pa.addr()),
    )]);
    pa.add(Rule::new("GET", "/blobs/sha256:", 1, Fault::CutResponse(1 << 20)).after(1));
    let b = RegistryServer::start();
    let pb = FaultProxy::start(b.port());
    let out = push_via(&sb, &pb, &[]);
    let digest = assert_pushed(&out, &format!("{}/faults", pb.addr()));
    let log = pa.log();
    let cut = log
        .iter()
        .position(|e| e.fault.as_deref() == Some("cut response"))
        .unwrap_or_else(|| panic!("no download was cut: {log:#?}"));
    assert!(
        log[cut + 1..]
            .iter()
            .any(|e| e.method == "GET" && e.path() == log[cut].path() && e.status == Some(200)),
        "the layer was not fetched again: {log:#?}"
    );
    assert_runs_hello(&b, &digest);
}

#[test]
fn a_monolithic_upload_cut_half_way_is_sent_again() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new("PUT", "/blobs/uploads/", 1, Fault::CutBody));
    let out = push_via(&sb, &proxy, &[]);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    assert_eq!(faulted(&proxy.log(), "cut body").len(), 1);
    assert_runs_hello(&b, &digest);
}

/// A context whose only layer is a 40 MiB uncompressed file: uploaded in 16 MiB PATCH chunks.
fn big_context(sb: &Sandbox) -> std::path::PathBuf {
    let ctx = sb.path().join("big");
    std::fs::create_dir(&ctx).unwrap();
    let mut data = vec![0u8; 40 * 1024 * 1024];
    let mut x: u32 = 0x1234_5678;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(ctx.join("big.bin"), data).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\nCMD [\"sh\", \"-c\", \"echo hello\"]\n",
    )
    .unwrap();
    ctx.join("Dockerfile")
}

#[test]
fn a_chunked_upload_cut_half_way_resumes_or_restarts() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // The second PATCH chunk is cut half-way.
    proxy.add(Rule::new("PATCH", "/blobs/uploads/", 1, Fault::CutBody).after(1));
    let dockerfile = big_context(&sb);
    let mut cmd = push_command(
        &sb,
        &proxy,
        &["--compression", "none", "-v", "--progress", "rawjson"],
        &dockerfile,
    );
    let out = cmd.output().unwrap();
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let kinds: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "fallback")
        .map(|e| e["data"]["kind"].as_str().unwrap())
        .collect();
    let log = proxy.log();
    let cut = log
        .iter()
        .position(|e| e.fault.as_deref() == Some("cut body"))
        .expect("a PATCH was cut");
    // After the cut ocipush asked the registry what it has (upload status GET), then went on
    // either from there (resume) or with a fresh session.
    let status = log[cut + 1..]
        .iter()
        .find(|e| e.method == "GET" && e.path().contains("/blobs/uploads/"));
    assert!(
        status.is_some(),
        "no upload status request after the cut: {log:#?}"
    );
    let next_patch = log[cut + 1..]
        .iter()
        .find(|e| e.method == "PATCH")
        .expect("a PATCH after the cut");
    eprintln!(
        "after the cut: status {:?}, next PATCH Content-Range {:?}",
        status.and_then(|s| s.status),
        next_patch.content_range
    );
    // The cut was retried (an event), then the upload resumed — and, when the registry's
    // offset was wrong, redone from a fresh session — or started afresh: each way an event.
    assert!(events.iter().any(|e| e["event"] == "retrying"), "{err}");
    if status.and_then(|s| s.status) == Some(204) {
        // The registry confirmed what it has: the upload went on from there, not from 0.
        assert!(
            !next_patch
                .content_range
                .as_deref()
                .is_some_and(|r| r.starts_with("0-")),
            "resumed from 0: {log:#?}"
        );
        assert_eq!(kinds.first(), Some(&"upload_resumed"), "{err}");
        let restarted = log
            .iter()
            .any(|e| e.method == "PUT" && e.status == Some(400));
        assert_eq!(
            kinds.contains(&"resume_restarted"),
            restarted,
            "a resume_restarted event exactly when the resumed upload's PUT was refused: {err}"
        );
    } else {
        // The registry lost the session: a fresh upload.
        assert_eq!(kinds, ["resume_refused"], "{err}");
    }
    let img = copy_and_unpack(&format!("docker://{}/faults@{digest}", b.addr()), None);
    assert_eq!(
        std::fs::metadata(img.rootfs.join("big.bin")).unwrap().len(),
        40 * 1024 * 1024
    );
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

#[test]
fn a_chunked_upload_cut_between_chunks_resumes_from_the_registry_offset() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // The second PATCH is cut before its body: the registry holds exactly the first chunk.
    proxy.add(Rule::new("PATCH", "/blobs/uploads/", 1, Fault::CutAfterHead).after(1));
    let dockerfile = big_context(&sb);
    let mut cmd = push_command(
        &sb,
        &proxy,
        &["--compression", "none", "--progress", "rawjson"],
        &dockerfile,
    );
    let out = cmd.output().unwrap();
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    // One fallback event: the upload went on from the registry's offset, after one retry.
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let fell_back: Vec<_> = events.iter().filter(|e| e["event"] == "fallback").collect();
    assert_eq!(fell_back.len(), 1, "{err}");
    assert_eq!(fell_back[0]["data"]["kind"], "upload_resumed", "{err}");
    let detail = fell_back[0]["data"]["detail"].as_str().unwrap();
    assert!(detail.contains("from byte 16777216 "), "{detail}");
    let retried = events.iter().position(|e| e["event"] == "retrying");
    let resumed = events.iter().position(|e| e["event"] == "fallback");
    assert!(retried.is_some() && retried < resumed, "{err}");
    let log = proxy.log();
    let cut = log
        .iter()
        .position(|e| e.fault.as_deref() == Some("cut after head"))
        .expect("a PATCH was cut");
    let after = &log[cut + 1..];
    let status = after
        .iter()
        .find(|e| e.method == "GET" && e.path().contains("/blobs/uploads/"))
        .unwrap_or_else(|| panic!("no upload status request after the cut: {log:#?}"));
    assert_eq!(status.status, Some(204), "{log:#?}");
    // Resumed where the registry was, in the same session: no new POST before that session
    // is closed (the config's upload comes after), and the next PATCH starts at 16 MiB.
    let closed = after
        .iter()
        .position(|e| e.method == "PUT" && e.target.contains("digest="))
        .unwrap_or_else(|| panic!("the layer's upload was not closed: {log:#?}"));
    assert!(
        !after[..closed].iter().any(|e| e.method == "POST"),
        "a fresh session was opened: {log:#?}"
    );
    let next_patch = after.iter().find(|e| e.method == "PATCH").unwrap();
    assert_eq!(
        next_patch.content_range.as_deref(),
        Some("16777216-33554431"),
        "{log:#?}"
    );
    let img = copy_and_unpack(&format!("docker://{}/faults@{digest}", b.addr()), None);
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

#[test]
fn a_stalled_request_times_out_and_is_retried() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy
        .add(Rule::new("HEAD", "/blobs/sha256:", 1, Fault::Stall))
        .add(Rule::new("PUT", "/manifests/", 1, Fault::Stall));
    let out = push_via(&sb, &proxy, &["--timeout", "2"]);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    assert_eq!(faulted(&proxy.log(), "stall").len(), 2);
    assert_runs_hello(&b, &digest);
}

#[test]
fn faults_that_never_stop_fail_with_what_was_tried_and_no_tag() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new(
        "PUT",
        "/manifests/",
        usize::MAX,
        Fault::unavailable(),
    ));
    let out = push_via(&sb, &proxy, &["--retries", "2"]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("after 3 attempts over"), "{err}");
    assert!(err.contains("503"), "{err}");
    assert!(
        err.contains("faults"),
        "the message names the repository: {err}"
    );
    assert_eq!(faulted(&proxy.log(), "status 503").len(), 3);
    assert_no_tag(&b);

    // A blob upload that never gets through: no manifest is even attempted.
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new(
        "POST",
        UPLOAD_POST,
        usize::MAX,
        Fault::too_many(0),
    ));
    let out = push_via(&sb, &proxy, &["--retries", "1"]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("after 2 attempts over"), "{err}");
    assert!(err.contains("rate-limiting"), "{err}");
    assert!(
        !proxy
            .log()
            .iter()
            .any(|e| e.method == "PUT" && e.path().contains("/manifests/") && e.fault.is_none()),
        "a manifest PUT was sent although a blob failed"
    );
    assert_no_tag(&b);

    // A registry that stalls forever: a timeout error in bounded time, never a hang.
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new("", "/v2/", usize::MAX, Fault::Stall));
    let started = Instant::now();
    let out = push_via(&sb, &proxy, &["--retries", "1", "--timeout", "2"]);
    let took = started.elapsed();
    let err = assert_failed(&out, 1);
    assert!(err.contains("no data moved for 2 s"), "{err}");
    // Two attempts, or one when the time budget ((1+1) x 2 s) ran out first on a slow machine.
    assert!(
        err.contains("after 2 attempts") || err.contains("after 1 attempt "),
        "{err}"
    );
    eprintln!("a stalled registry failed the push after {took:?} (--retries 1 --timeout 2)");
    assert_no_tag(&b);
}

/// `docker-registry serve` on `storage` (another registry's, to restart it), on a free port.
struct Restarted {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Restarted {
    fn start(storage: &Path) -> Restarted {
        let dir = crate::common::tempdir("registry-restart");
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(crate::common::require_tool(
            "docker-registry",
            "docker-registry",
        ))
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let needle = format!("listening on 127.0.0.1:{port}");
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains(&needle) => break,
                Some(Ok(_)) => {}
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the restarted registry exited before listening");
                }
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Restarted {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_registry_killed_mid_push_fails_cleanly_and_the_rerun_skips_what_is_there() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    // One upload at a time: the base layer goes first; the config's upload is held.
    proxy.add(Rule::new("POST", UPLOAD_POST, 1, Fault::Hold).after(1));
    let child = push_command(
        &sb,
        &proxy,
        &["--jobs", "1", "--retries", "2", "--timeout", "5"],
        &testdata("hello/Dockerfile"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    proxy.wait_held();
    // Kill the registry (the process this test started, by its id) while the push is on.
    let killed = Command::new("kill")
        .args(["-9", &b.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = Instant::now();
    proxy.release();
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let err = assert_failed(&out, 1);
    eprintln!("the push failed {took:?} after the registry was killed:\n{err}");
    assert!(err.contains("after 3 attempts"), "{err}");
    let first_run = proxy.log();
    let uploaded: Vec<String> = first_run
        .iter()
        .filter(|e| e.method == "PUT" && e.status == Some(201) && e.target.contains("digest="))
        .filter_map(|e| {
            e.target
                .split("digest=")
                .nth(1)
                .map(|d| d.split('&').next().unwrap_or(d).replace("%3A", ":"))
        })
        .collect();
    assert_eq!(
        uploaded.len(),
        1,
        "the base layer was uploaded: {first_run:#?}"
    );
    assert!(
        !first_run
            .iter()
            .any(|e| e.path().contains("/manifests/") && e.method == "PUT"),
        "no manifest may be put: {first_run:#?}"
    );

    // Restart the registry on the same storage; the proxy keeps its address.
    let restarted = Restarted::start(&b.storage_dir());
    proxy.clear();
    proxy.set_upstream(restarted.port);
    let mark = proxy.log().len();
    let out = push_via(&sb, &proxy, &["--jobs", "1"]);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    let rerun = &proxy.log()[mark..];
    let layer = &uploaded[0];
    assert!(
        rerun.iter().any(|e| e.method == "HEAD"
            && e.path().ends_with(layer.as_str())
            && e.status == Some(200)),
        "the re-run must find {layer} already there: {rerun:#?}"
    );
    assert!(
        !rerun
            .iter()
            .any(|e| e.method == "PUT" && e.target.replace("%3A", ":").contains(layer.as_str())),
        "the re-run uploaded {layer} again: {rerun:#?}"
    );
    let img = copy_and_unpack(
        &format!("docker://127.0.0.1:{}/faults@{digest}", restarted.port),
        None,
    );
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

#[test]
fn reliability_flags_are_checked() {
    let sb = Sandbox::new();
    let df = testdata("hello/Dockerfile");
    let out = sb.ocipush([
        "--ca-cert".as_ref(),
        sb.path().join("missing.pem").as_os_str(),
        df.as_os_str(),
        "127.0.0.1:1/x:v1".as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("cannot read --ca-cert"), "{err}");
    std::fs::write(sb.path().join("junk.pem"), "not a certificate").unwrap();
    let out = sb.ocipush([
        "--ca-cert".as_ref(),
        sb.path().join("junk.pem").as_os_str(),
        df.as_os_str(),
        "127.0.0.1:1/x:v1".as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("junk.pem"), "{err}");
    for bad in [["--retries", "many"], ["--timeout", "0"]] {
        let out = sb.ocipush([
            bad[0].as_ref(),
            bad[1].as_ref(),
            df.as_os_str(),
            "x".as_ref(),
        ]);
        assert_failed(&out, 2);
    }
}

/// Ctrl-C while the base image's layer is being read (a COPY judges its paths against the
/// base, so the build reads it on a blocking thread; the proxy holds the download): ocipush
/// stops the read at once, exits 130 with the cancellation message, never panics (a read left
/// running while the runtime shut down used to hit tokio's "being shutdown" panic on its retry
/// timer), and leaves no temporary file.
#[test]
fn an_interrupt_while_the_base_is_read_stops_the_read_and_leaves_no_file() {
    let sb = Sandbox::new();
    let a = alpine_base_registry(&sb);
    let base_proxy = FaultProxy::start(a.port());
    let layer = crate::common::flatten::read_oci_layout(
        crate::common::fixtures::alpine_oci_layout(),
        "latest",
    )
    .layers[0]
        .clone();
    base_proxy.add(Rule::new("GET", &layer, usize::MAX, Fault::Hold));
    crate::common::fixtures::map_docker_alpine_to_addr(&sb, &base_proxy.addr());
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("x"), "x\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY x /etc/x\n",
    )
    .unwrap();
    let mut cmd = push_command(&sb, &proxy, &[], &ctx.join("Dockerfile"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::new(cmd);
    base_proxy.wait_for("the base layer's download held", |log| {
        log.iter()
            .any(|e| e.method == "GET" && e.target.contains(&layer))
    });
    base_proxy.wait_held();
    // To `timeout`, which passes it on to ocipush and then to its process group: ocipush gets
    // the interruption twice and takes it as one (not as "quit at once").
    // SAFETY: kill(2) on our own child's pid.
    let sent = unsafe { libc::kill(child.child().id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    let out = child.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("cancelled") && err.contains("nothing was tagged"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_no_tag(&b);
    let left: Vec<_> = std::fs::read_dir(sb.path().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// Ctrl-C while a blob upload is in flight (held by the proxy, so the interrupt lands
/// mid-upload every time): ocipush stops, closes the upload sessions it opened (`DELETE`, the
/// distribution spec's "Canceling an Upload", answered 204 by the registry), tags nothing,
/// leaves no temporary file and exits 130.
#[test]
fn an_interrupt_mid_upload_closes_the_sessions_tags_nothing_and_leaves_no_file() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new("PUT", "digest=", usize::MAX, Fault::Hold));
    let mut cmd = push_command(&sb, &proxy, &[], &testdata("hello/Dockerfile"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Spawned::new(cmd);
    // Both uploads (Alpine's layer and the config) are at their closing PUT, so ocipush knows
    // every session it opened: a POST still in flight when the signal lands opens a session
    // whose location the client never learns (the registry expires it).
    proxy.wait_for_closing_puts(2);
    proxy.wait_held();
    child.signal_ocipush(libc::SIGINT);
    let out = child.wait_with_output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("cancelled") && err.contains("nothing was tagged"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing printed as pushed");

    let log = b.access_log();
    let posts = log
        .iter()
        .filter(|e| e.method == "POST" && e.path().contains(UPLOAD_POST))
        .count();
    let deletes: Vec<_> = log
        .iter()
        .filter(|e| e.method == "DELETE" && e.path().contains(UPLOAD_POST))
        .collect();
    assert!(
        posts >= 1 && deletes.len() == posts && deletes.iter().all(|e| e.status == 204),
        "every session opened was closed: {:#?}",
        summarize(&log)
    );
    assert_no_tag(&b);
    let left: Vec<_> = std::fs::read_dir(sb.path().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

/// An interrupt while a layer is being written: its writer fails at its next write, and
/// ocipush exits 130 leaving nothing behind. (The spool's cancellation error was once the kind
/// `write_all` retries, `Interrupted`: the writer spun at full CPU for ever and ocipush never
/// exited — `timeout` then ends it with another code than 130.)
#[test]
fn an_interrupt_while_a_layer_is_written_stops_the_writer_and_exits() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("big.bin"),
        crate::common::fixtures::noise(256 << 20, 31),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY big.bin /big.bin\n",
    )
    .unwrap();
    let out_dir = sb.path().join("out");
    let mut cmd = sb.command();
    cmd.args(["--progress", "plain", "--no-cache"])
        .arg(ctx.join("Dockerfile"))
        .arg(format!("oci:{}:v1", out_dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Spawned::new(cmd);
    let lines = child.stderr_until("building layer for Dockerfile:2");
    child.signal_ocipush(libc::SIGINT);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.child().wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("nothing was tagged"), "{err}");
    assert!(!out_dir.join("index.json").exists());
    let left: Vec<_> = std::fs::read_dir(sb.path().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
