//! Pushing to a registry that requires HTTP basic auth (htpasswd), with the
//! credentials read from `$DOCKER_CONFIG/config.json` (`auths` → `auth`).

use crate::common::fixtures::alpine_base_registry;
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed};
use crate::common::registry::{AccessLogEntry, RegistryServer, summarize};
use crate::common::testdata;
use crate::common::tools::{skopeo_inspect, skopeo_inspect_output};

fn push_hello(sb: &Sandbox, b: &RegistryServer) -> std::process::Output {
    let reference = testdata("hello/Dockerfile");
    sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        reference.as_os_str(),
        format!("{}/ec2-ecr-test:v1", b.addr()).as_ref(),
    ])
}

fn manifest_puts(log: &[AccessLogEntry]) -> Vec<&AccessLogEntry> {
    log.iter()
        .filter(|e| e.method == "PUT" && e.path().contains("/manifests/"))
        .collect()
}

/// Asserts that `ec2-ecr-test:v1` does not exist on `b` (checked with the
/// right credentials) and that no manifest PUT succeeded.
fn assert_nothing_tagged(b: &RegistryServer) {
    let log = b.access_log();
    let ok_puts: Vec<_> = manifest_puts(&log)
        .into_iter()
        .filter(|e| e.status < 300)
        .collect();
    assert!(ok_puts.is_empty(), "a manifest was stored: {ok_puts:#?}");
    let out = skopeo_inspect_output(
        &format!("docker://{}/ec2-ecr-test:v1", b.addr()),
        false,
        b.credentials(),
    );
    assert!(
        !out.status.success(),
        "ec2-ecr-test:v1 exists after a failed push: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = summarize(&log);
}

#[test]
fn push_with_docker_config_credentials() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start_with_auth("pusher", "correct horse");
    sb.login(&[(&b.addr(), "pusher", "correct horse")]);

    let out = push_hello(&sb, &b);
    let digest = assert_pushed(&out, &format!("{}/ec2-ecr-test", b.addr()));
    let summary = skopeo_inspect(
        &format!("docker://{}/ec2-ecr-test:v1", b.addr()),
        false,
        b.credentials(),
    );
    assert_eq!(summary["Digest"], digest.as_str(), "{summary:#}");
    // Every request after the first challenge carried credentials: the
    // registry saw successful (authorised) manifest PUTs.
    let log = b.access_log();
    assert!(
        manifest_puts(&log).iter().any(|e| e.status == 201),
        "{:#?}",
        summarize(&log)
    );
}

#[test]
fn wrong_credentials_fail_with_an_authentication_message() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start_with_auth("pusher", "correct horse");
    sb.login(&[(&b.addr(), "pusher", "wrong horse")]);

    let out = push_hello(&sb, &b);
    let err = assert_failed(&out, 1);
    assert!(
        err.to_lowercase().contains("authenticat"),
        "the message must mention authentication:\n{err}"
    );
    assert!(
        err.contains(&b.addr()),
        "the message must name the registry:\n{err}"
    );
    assert!(
        !err.contains("wrong horse"),
        "the password leaked into stderr:\n{err}"
    );
    assert_nothing_tagged(&b);
}

#[test]
fn missing_credentials_fail_with_an_authentication_message() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start_with_auth("pusher", "correct horse");

    let out = push_hello(&sb, &b);
    let err = assert_failed(&out, 1);
    assert!(
        err.to_lowercase().contains("authenticat"),
        "the message must mention authentication:\n{err}"
    );
    assert_nothing_tagged(&b);
}
