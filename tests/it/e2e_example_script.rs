//! `scripts/run-example.sh` as a user without the shared Alpine minirootfs runs it: Alpine
//! then comes from Docker Hub — here through the user's `$CONTAINERS_REGISTRIES_CONF`, which
//! maps `docker.io/library/alpine` to a local registry (behind the fault proxy, to see what
//! was asked of it). The script pushes the hello image to its own throwaway registry, runs it
//! (`hello`), stops that registry and removes its temporary directory.

use std::path::Path;

use crate::common::fault_proxy::FaultProxy;
use crate::common::fixtures::seed_alpine;
use crate::common::ocipush::{Sandbox, describe, ocipush_bin, run_watched};
use crate::common::registry::RegistryServer;

#[test]
fn run_example_without_the_minirootfs_takes_alpine_through_the_users_registries_conf() {
    let sb = Sandbox::new();
    let hub = RegistryServer::start();
    seed_alpine(&hub, "library/alpine:latest");
    let proxy = FaultProxy::start(hub.port());
    sb.set_registries(&[(
        "docker.io/library/alpine",
        &format!("{}/library/alpine", proxy.addr()),
    )]);
    // A shared directory without testdata/alpine: the Docker Hub branch.
    let shared = sb.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/run-example.sh");
    // The sandbox's environment: its registries.conf as CONTAINERS_REGISTRIES_CONF, its tmp
    // as TMPDIR.
    let mut cmd = sb.command_for(&script);
    cmd.env("OCIPUSH_SHARED", &shared)
        .env("OCIPUSH_BIN", ocipush_bin());
    let out = run_watched(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Alpine comes through the registries.conf in CONTAINERS_REGISTRIES_CONF"),
        "{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    // `127.0.0.1:P/ec2-ecr-test@sha256:<hex>`, then what the image printed.
    let (registry, digest) = lines[0]
        .split_once("/ec2-ecr-test@sha256:")
        .unwrap_or_else(|| panic!("no pushed name: {}", describe(&out)));
    assert!(registry.starts_with("127.0.0.1:"), "{}", lines[0]);
    assert!(
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "hello", "{}", describe(&out));
    // Alpine was taken from the mapped registry (not from Docker Hub, not from a tarball).
    let log = proxy.log();
    assert!(
        log.iter().any(|e| e.method == "GET"
            && e.path() == "/v2/library/alpine/manifests/latest"
            && e.status == Some(200)),
        "{log:#?}"
    );
    // The script's registry is stopped and its temporary directory gone.
    assert!(
        std::net::TcpStream::connect(registry).is_err(),
        "{registry} still listens"
    );
    let left: Vec<_> = std::fs::read_dir(sb.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}
