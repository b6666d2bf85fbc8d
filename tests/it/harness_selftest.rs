//! Proves the harness works with tools we did not write, independent of
//! ocipush: an Alpine image built by umoci from the shared minirootfs is
//! copied by skopeo into a harness registry (anonymous and with htpasswd
//! auth), copied back, unpacked by umoci and run in a chroot.

use std::io::{Read, Write};

use crate::common::fault_proxy::FaultProxy;
use crate::common::fixtures::{alpine_oci_layout, build_alpine_layout_with_umoci, seed_alpine};
use crate::common::ocipush::{write_docker_config, write_registries_conf};
use crate::common::registry::{RegistryServer, count, summarize};
use crate::common::tempdir;
use crate::common::tools::{
    image_arg, image_argv, run_image, run_in_chroot, run_in_chroot_at, skopeo_copy_with,
    skopeo_inspect, skopeo_inspect_config, skopeo_inspect_output, umoci_unpack,
};

fn http_get(addr: &str, path: &str, basic: Option<&str>) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = basic
        .map(|b| format!("Authorization: Basic {b}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: selftest\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn registry_starts_and_logs_requests() {
    let reg = RegistryServer::start();
    let mark = reg.log_mark();
    let body = http_get(&reg.addr(), "/v2/", None);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let log = reg.access_log_since(mark);
    assert_eq!(count(&log, "GET", "/v2/"), 1, "{log:#?}");
    assert_eq!(log[0].user_agent, "selftest");
    assert_eq!(log[0].status, 200);
}

#[test]
fn registry_with_auth_rejects_anonymous() {
    let reg = RegistryServer::start_with_auth("alice", "s3cret");
    let anon = http_get(&reg.addr(), "/v2/", None);
    assert!(anon.starts_with("HTTP/1.1 401"), "{anon}");
    // base64("alice:s3cret")
    let ok = http_get(&reg.addr(), "/v2/", Some("YWxpY2U6czNjcmV0"));
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let log = reg.access_log();
    let statuses: Vec<u16> = log.iter().map(|e| e.status).collect();
    assert_eq!(statuses, [401, 200], "{log:#?}");
}

#[test]
fn two_registries_get_distinct_ports_and_storage() {
    let a = RegistryServer::start();
    let b = RegistryServer::start();
    assert_ne!(a.addr(), b.addr());
    assert_ne!(a.storage_dir(), b.storage_dir());
}

#[test]
fn registry_process_is_killed_on_drop() {
    let reg = RegistryServer::start();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", reg.pid()));
    assert!(proc_dir.exists());
    drop(reg);
    // Killed and reaped: the pid is gone (not even a zombie).
    assert!(
        !proc_dir.exists(),
        "registry process {} survived drop",
        proc_dir.display()
    );
}

/// Round trip: umoci layout → skopeo → registry → skopeo → layout → umoci
/// unpack → chroot, run the image's own argv and an explicit `sh -c`.
fn round_trip(reg: &RegistryServer) {
    let creds = reg.credentials();
    let pushed = seed_alpine(reg, "selftest/alpine:3.20");
    let remote = format!("docker://{pushed}");

    let summary = skopeo_inspect(&remote, false, creds);
    assert_eq!(summary["Architecture"], "amd64", "{summary:#}");
    assert_eq!(summary["Os"], "linux", "{summary:#}");
    let config = skopeo_inspect_config(&remote, false, creds);
    assert_eq!(image_argv(&config), ["/bin/sh"], "{config:#}");

    let work = tempdir("selftest");
    let layout = work.path().join("layout");
    let dst = format!("oci:{}", image_arg(&layout, "v1").to_string_lossy());
    skopeo_copy_with(&remote, creds, &dst, None);
    let bundle = work.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle);
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("etc/alpine-release").is_file());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/alpine-release")).unwrap(),
        "3.20.3\n"
    );

    let env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()];
    let argv: Vec<String> = ["sh", "-c", "echo hello"].map(String::from).into();
    let out = run_in_chroot(&rootfs, &argv, &env);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, "hello\n", "{out:?}");

    // The image's own Cmd (/bin/sh) with stdin closed exits 0 and prints nothing.
    let own = run_image(&rootfs, &config);
    assert!(own.status.success(), "{own:?}");
    assert_eq!(own.stdout, "");

    // And a failing command is reported as such (the wrapper can fail).
    let argv: Vec<String> = ["sh", "-c", "echo oops >&2; exit 3"]
        .map(String::from)
        .into();
    let bad = run_in_chroot(&rootfs, &argv, &env);
    assert_eq!(bad.status.code(), Some(3), "{bad:?}");
    assert_eq!(bad.stderr, "oops\n");

    // Working directory and environment reach the process.
    let argv: Vec<String> = ["sh", "-c", "pwd; echo $FOO"].map(String::from).into();
    let mut env2 = env.clone();
    env2.push("FOO=bar baz".to_owned());
    let wd = run_in_chroot_at(&rootfs, "/etc", &argv, &env2);
    assert_eq!(wd.stdout, "/etc\nbar baz\n", "{wd:?}");

    let log = reg.access_log();
    assert!(
        count(&log, "PUT", "/v2/selftest/alpine/manifests/3.20") >= 1,
        "{:#?}",
        summarize(&log)
    );
}

#[test]
fn umoci_alpine_round_trip_anonymous_registry() {
    round_trip(&RegistryServer::start());
}

#[test]
fn umoci_alpine_round_trip_htpasswd_registry() {
    let reg = RegistryServer::start_with_auth("bob", "hunter2");
    round_trip(&reg);
    // Anonymous and wrong-password reads are refused by this registry.
    let remote = format!("docker://{}/selftest/alpine:3.20", reg.addr());
    assert!(!skopeo_inspect_output(&remote, false, None).status.success());
    assert!(
        !skopeo_inspect_output(&remote, false, Some(("bob", "wrong")))
            .status
            .success()
    );
    let log = reg.access_log();
    assert!(
        log.iter().any(|e| e.status == 401),
        "{:#?}",
        summarize(&log)
    );
}

#[test]
fn umoci_builds_a_fresh_layout_that_skopeo_reads() {
    let work = tempdir("selftest-layout");
    let layout = work.path().join("layout");
    build_alpine_layout_with_umoci(&layout, "edge", "x86_64");
    let image = format!("oci:{}", image_arg(&layout, "edge").to_string_lossy());
    let config = skopeo_inspect_config(&image, false, None);
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(image_argv(&config), ["/bin/sh"]);
    // The shared cached layout is the same kind of image.
    let cached = format!(
        "oci:{}",
        image_arg(alpine_oci_layout(), "latest").to_string_lossy()
    );
    let layers = |r: &str| {
        skopeo_inspect(r, false, None)["Layers"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(layers(&cached), layers(&image));
}

#[test]
fn docker_config_is_written_in_docker_format() {
    let dir = tempdir("selftest-dockercfg");
    let p = write_docker_config(dir.path(), &[("127.0.0.1:5000", "alice", "s3cret")]);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    assert_eq!(v["auths"]["127.0.0.1:5000"]["auth"], "YWxpY2U6czNjcmV0");
}

#[test]
fn access_log_shows_reads_so_no_read_assertions_can_fail() {
    let reg = RegistryServer::start();
    let pushed = seed_alpine(&reg, "selftest/reads:v1");
    let mark = reg.log_mark();
    // Nothing happened since the mark.
    assert!(reg.access_log_since(mark).is_empty());
    skopeo_inspect(&format!("docker://{pushed}"), false, None);
    let log = reg.access_log_since(mark);
    let manifest_reads = count(&log, "GET", "/v2/selftest/reads/manifests/")
        + count(&log, "HEAD", "/v2/selftest/reads/manifests/");
    assert!(manifest_reads >= 1, "{:#?}", summarize(&log));
    assert!(
        count(&log, "GET", "/v2/selftest/reads/blobs/") >= 1,
        "skopeo inspect reads the config blob: {:#?}",
        summarize(&log)
    );
    assert!(
        log.iter()
            .all(|e| e.user_agent.contains("skopeo") || e.user_agent.contains("containers")),
        "{log:#?}"
    );
}

/// The registries.conf the harness writes is a containers-registries.conf(5)
/// v2 file with the entries the tests rely on.
#[test]
fn registries_conf_is_v2_toml_with_prefix_and_location() {
    let dir = tempdir("selftest-regconf");
    let conf = write_registries_conf(
        dir.path(),
        &[("docker.io/library/alpine", "127.0.0.1:5000/library/alpine")],
    );
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(conf).unwrap()).unwrap();
    let regs = v["registry"].as_array().unwrap();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0]["prefix"].as_str(), Some("docker.io/library/alpine"));
    assert_eq!(
        regs[0]["location"].as_str(),
        Some("127.0.0.1:5000/library/alpine")
    );
    assert_eq!(regs[0]["insecure"].as_bool(), Some(true));
}

#[test]
fn fault_proxy_hands_uploads_to_a_second_listener_and_answers_an_expired_credential() {
    // skopeo (containers/image) pushes through proxy A, whose upload `Location`s point at
    // proxy B on another loopback address: the uploads land through B, and the image the
    // registry holds is whole.
    let reg = RegistryServer::start();
    let a = FaultProxy::start(reg.port());
    let b = FaultProxy::start_on("127.0.0.2", reg.port());
    assert!(b.addr().starts_with("127.0.0.2:"), "{}", b.addr());
    a.send_uploads_to(&format!("http://{}", b.addr()));
    let src = format!(
        "oci:{}",
        image_arg(alpine_oci_layout(), "latest").to_string_lossy()
    );
    skopeo_copy_with(
        &src,
        None,
        &format!("docker://{}/selftest:v1", a.addr()),
        None,
    );
    let on_b = b.log();
    assert!(
        on_b.iter().any(|e| e.method == "PUT"
            && e.path().contains("/blobs/uploads/")
            && e.status == Some(201)),
        "no upload went through the second listener: {on_b:#?}"
    );
    assert!(
        a.log()
            .iter()
            .all(|e| e.method != "PUT" || e.path().contains("/manifests/")),
        "{:#?}",
        a.log()
    );
    let pushed = skopeo_inspect(&format!("docker://{}/selftest:v1", reg.addr()), false, None);
    assert!(pushed["Digest"].as_str().is_some(), "{pushed:#}");

    // A request carrying a credential marked expired gets ECR's 403; others pass.
    a.expire_credential("Basic c3RhbGU6dG9rZW4=");
    let refused = http_get(&a.addr(), "/v2/", Some("c3RhbGU6dG9rZW4="));
    assert!(
        refused.starts_with("HTTP/1.1 403")
            && refused.contains(r#""code":"DENIED""#)
            && refused
                .contains("Your authorization token has expired. Reauthenticate and try again."),
        "{refused}"
    );
    let passed = http_get(&a.addr(), "/v2/", Some("b3RoZXI6dG9rZW4="));
    assert!(passed.starts_with("HTTP/1.1 200"), "{passed}");
}
