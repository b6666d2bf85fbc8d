//! Where credentials go (issue 11), end to end with the real `ocipush` binary and the real
//! CNCF registry behind the fault proxy, which reproduces what other registries answer:
//!
//! * an upload `Location` on another host (registries that hand uploads to a storage host;
//!   distribution's `storage.redirect`) gets no `Authorization`: the second listener asserts it;
//! * Amazon ECR's 403 for an expired token ("Your authorization token has expired.
//!   Reauthenticate and try again.", also for a token of another region;
//!   <https://docs.aws.amazon.com/AmazonECR/latest/userguide/common-errors-docker.html>) to an
//!   old `docker login`: one refresh, the token from the AWS chain (moto), the push completes;
//!   an old login whose own expiry is past gives way before it is ever sent;
//! * a docker credential helper that never answers is stopped after `--timeout`;
//! * a registries.conf mirror of Docker Hub (not on loopback, `insecure = true`) is tried over
//!   TLS first, then plain HTTP, and gets its own credentials, never Docker Hub's.

use std::path::Path;
use std::process::Output;

use crate::common::fault_proxy::FaultProxy;
use crate::common::fixtures::{alpine_base_registry, copy_and_unpack};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, run_watched};
use crate::common::registry::RegistryServer;
use crate::common::testdata;
use crate::common::tools::run_image;

/// `ocipush [extra…] --registries-conf … hello/Dockerfile DESTINATION`.
fn push(sb: &Sandbox, destination: &str, extra: &[&str]) -> Output {
    let mut cmd = sb.command();
    cmd.args(extra)
        .arg("--registries-conf")
        .arg(sb.registries_conf())
        .arg(testdata("hello/Dockerfile"))
        .arg(destination);
    run_watched(cmd)
}

fn assert_runs_hello(image: &str, creds: Option<(&str, &str)>) {
    let img = copy_and_unpack(image, creds);
    let ran = run_image(&img.rootfs, &img.config);
    assert_eq!(ran.stdout, "hello\n", "{ran:?}");
}

#[test]
fn an_upload_location_on_another_host_gets_no_authorization() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    // The registry: Bearer tokens for every /v2/ request.
    let registry = FaultProxy::start(b.port());
    registry.require_bearer("pusher", "s3cret-Horse");
    // Its storage host: another address and port, in front of the same storage.
    let storage = FaultProxy::start_on("127.0.0.2", b.port());
    registry.send_uploads_to(&format!("http://{}", storage.addr()));
    sb.login(&[(&registry.addr(), "pusher", "s3cret-Horse")]);

    let out = push(&sb, &format!("{}/creds:v1", registry.addr()), &[]);
    let digest = assert_pushed(&out, &format!("{}/creds", registry.addr()));

    let stored = storage.log();
    let uploads: Vec<_> = stored
        .iter()
        .filter(|e| e.method == "PUT" || e.method == "PATCH")
        .collect();
    assert!(
        uploads.len() >= 2 && uploads.iter().all(|e| e.status.is_some_and(|s| s < 300)),
        "the blob uploads did not go to the storage host: {stored:#?}"
    );
    let leaked: Vec<_> = stored.iter().filter(|e| e.authorized).collect();
    assert!(
        leaked.is_empty(),
        "Authorization was sent to another host: {leaked:#?}"
    );
    // The registry itself got the token for every request past the challenge.
    let on_registry = registry.log();
    assert!(
        on_registry.iter().any(|e| e.method == "POST"
            && e.path().ends_with("/blobs/uploads/")
            && e.authorized
            && e.status == Some(202)),
        "{on_registry:#?}"
    );
    assert!(
        on_registry.iter().any(|e| e.method == "PUT"
            && e.path().contains("/manifests/")
            && e.authorized
            && e.status == Some(201)),
        "{on_registry:#?}"
    );
    assert_runs_hello(&format!("docker://{}/creds@{digest}", b.addr()), None);
}

#[test]
fn another_host_asking_for_credentials_is_refused_them() {
    // The upload moves to a host that wants credentials of its own (a misconfigured external
    // URL): it is not given the registry's, and the push stops saying why.
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let registry = FaultProxy::start(b.port());
    registry.require_bearer("pusher", "s3cret-Horse");
    let other = FaultProxy::start_on("127.0.0.2", b.port());
    other.require_bearer("pusher", "s3cret-Horse");
    registry.send_uploads_to(&format!("http://{}", other.addr()));
    sb.login(&[(&registry.addr(), "pusher", "s3cret-Horse")]);
    let out = push(&sb, &format!("{}/creds:v1", registry.addr()), &[]);
    let err = assert_failed(&out, 1);
    assert!(
        err.contains(&format!("http://{}", other.addr()))
            && err.contains("only to the registry that challenged"),
        "{err}"
    );
    let asked = other.log();
    assert!(
        !asked.is_empty() && asked.iter().all(|e| !e.authorized),
        "{asked:#?}"
    );
    assert!(other.tokens_issued().is_empty(), "{asked:#?}");
}

#[test]
fn a_credential_helper_that_never_answers_is_stopped_after_the_timeout() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start_with_auth("pusher", "s3cret-Horse");
    let helpers = sb.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    write_script(&helpers.join("docker-credential-hang"), "exec sleep 3600\n");
    std::fs::write(
        sb.docker_config_dir().join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"hang"}}}}"#, b.addr()),
    )
    .unwrap();
    let path = std::env::join_paths(
        std::iter::once(helpers.clone()).chain(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        )),
    )
    .unwrap();
    let mut cmd = sb.command();
    cmd.env("PATH", path)
        .args(["--timeout", "2", "--retries", "0", "--registries-conf"])
        .arg(sb.registries_conf())
        .arg(testdata("hello/Dockerfile"))
        .arg(format!("{}/creds:v1", b.addr()));
    let out = run_watched(cmd);
    let err = assert_failed(&out, 1);
    assert!(
        err.contains("docker-credential-hang") && err.contains("did not answer within 2 s"),
        "{err}"
    );
}

/// This machine's non-loopback IPv4 address (the one a UDP socket would send from): a host
/// that is not loopback, so not plain HTTP by default.
fn non_loopback_ipv4() -> String {
    for probe in [
        "192.0.2.1:9",
        "10.255.255.1:9",
        "203.0.113.1:9",
        "8.8.8.8:53",
    ] {
        if let Ok(sock) = std::net::UdpSocket::bind("0.0.0.0:0")
            && sock.connect(probe).is_ok()
            && let Ok(local) = sock.local_addr()
            && !local.ip().is_loopback()
            && !local.ip().is_unspecified()
        {
            return local.ip().to_string();
        }
    }
    panic!(
        "this test needs a non-loopback IPv4 address on this machine (for a registry mirror \
         that is not on loopback); none was found"
    );
}

#[test]
fn an_insecure_mirror_is_tried_over_tls_first_and_gets_only_its_own_credentials() {
    let sb = Sandbox::new();
    let alpine = RegistryServer::start();
    crate::common::fixtures::seed_alpine(&alpine, "library/alpine:latest");
    // The mirror of Docker Hub's alpine: plain HTTP on a non-loopback address, with its own
    // users (a Bearer token gate).
    let mirror = FaultProxy::start_on(&non_loopback_ipv4(), alpine.port());
    mirror.require_bearer("mirror-user", "mirror-Pass-1");
    let location = format!("{}/library/alpine", mirror.addr());
    // registries.conf: `insecure = true` for the mirror.
    sb.set_registries(&[("docker.io/library/alpine", location.as_str())]);
    // A Docker Hub login, and the mirror's own.
    sb.login(&[
        ("docker.io", "hub-user", "hub-Pass-1"),
        (&mirror.addr(), "mirror-user", "mirror-Pass-1"),
    ]);
    let b = RegistryServer::start();
    let out = push(
        &sb,
        &format!("{}/creds:v1", b.addr()),
        &["--progress", "rawjson"],
    );
    let digest = assert_pushed(&out, &format!("{}/creds", b.addr()));
    let log = mirror.log();
    // TLS first (the proxy speaks plain HTTP only), then plain HTTP.
    assert_eq!(
        log.first().map(|e| e.method.as_str()),
        Some("TLS"),
        "{log:#?}"
    );
    // The change to plain HTTP is one fallback event, for the mirror only; no password in
    // any event.
    let err = String::from_utf8_lossy(&out.stderr);
    let events = crate::e2e_options::rawjson_events(&err);
    let plain = crate::e2e_options::fallbacks(&events, "plain_http");
    assert_eq!(plain.len(), 1, "{err}");
    assert_eq!(
        plain[0]["step"],
        format!("connecting to {}", mirror.addr()),
        "{err}"
    );
    assert!(
        !err.contains("mirror-Pass-1") && !err.contains("hub-Pass-1"),
        "{err}"
    );
    assert!(
        log.iter()
            .any(|e| e.path().starts_with("/v2/library/alpine/blobs/")
                && e.authorized
                && e.status == Some(200)),
        "{log:#?}"
    );
    // The token server saw only the mirror's own login: Docker Hub's would have been refused.
    let tokens: Vec<_> = log.iter().filter(|e| e.path() == "/token").collect();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|e| e.authorized && e.status == Some(200)),
        "{tokens:#?}"
    );
    assert_runs_hello(&format!("docker://{}/creds@{digest}", b.addr()), None);
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(feature = "ecr")]
mod ecr {
    //! The ECR cases: moto (IAM enforced) issues the tokens, an htpasswd registry whose user is
    //! `AWS` with moto's token password stands in for the ECR registry endpoint, behind the
    //! fault proxy answering an expired login as ECR does.

    use base64::Engine as _;

    use super::*;
    use crate::common::ocipush::stderr;
    use crate::e2e_ecr::ecr_support::{ECR_CONTAINERISE, Moto};

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test";

    /// The password inside moto's token (`AWS:<password>`).
    fn moto_password(moto: &Moto) -> String {
        let out = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                moto.admin_ecr()
                    .get_authorization_token()
                    .send()
                    .await
                    .unwrap()
            });
        let token = out.authorization_data()[0].authorization_token().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .unwrap();
        String::from_utf8(decoded)
            .unwrap()
            .strip_prefix("AWS:")
            .expect("moto's token is AWS:<password>")
            .to_string()
    }

    /// moto, the stand-in ECR registry behind a proxy, and a sandbox mapping the ECR host to
    /// the proxy and holding a `docker login` of `HOST` with `stale_password`.
    struct Setup {
        moto: Moto,
        password: String,
        ecr: RegistryServer,
        proxy: FaultProxy,
        sb: Sandbox,
        _alpine: RegistryServer,
    }

    fn setup(stale_password: &str) -> Setup {
        let moto = Moto::start(ECR_CONTAINERISE);
        let password = moto_password(&moto);
        let ecr = RegistryServer::start_with_auth("AWS", &password);
        let proxy = FaultProxy::start(ecr.port());
        let sb = Sandbox::new();
        let alpine = alpine_base_registry(&sb);
        let alpine_location = format!("{}/library/alpine", alpine.addr());
        sb.set_registries(&[
            ("docker.io/library/alpine", alpine_location.as_str()),
            (HOST, proxy.addr().as_str()),
        ]);
        sb.login(&[(HOST, "AWS", stale_password)]);
        proxy.expire_credential(&format!("Basic {}", b64(&format!("AWS:{stale_password}"))));
        Setup {
            moto,
            password,
            ecr,
            proxy,
            sb,
            _alpine: alpine,
        }
    }

    /// Push as the build instance: credentials from its role through the IMDSv2 stand-in.
    fn instance_push(s: &Setup) -> Output {
        let mut cmd = s.sb.command();
        // Debug logging on: the old login must not show even there.
        cmd.env_remove("AWS_EC2_METADATA_DISABLED")
            .env("RUST_LOG", "ocipush=debug")
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &s.moto.info.imds)
            .env("AWS_ENDPOINT_URL", &s.moto.info.moto)
            .arg("--registries-conf")
            .arg(s.sb.registries_conf())
            .arg(testdata("hello/Dockerfile"))
            .arg(format!("{REPO}:v1"));
        run_watched(cmd)
    }

    fn token_calls(moto: &Moto) -> usize {
        let calls = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(moto.calls_with_status());
        calls
            .iter()
            .filter(|c| {
                c.action == "ecr:GetAuthorizationToken"
                    && c.caller == "assumed-role"
                    && c.status == Some(200)
            })
            .count()
    }

    #[test]
    fn an_expired_docker_login_is_refreshed_from_the_aws_chain() {
        let stale = "eyJwYXlsb2FkIjoieWVzdGVyZGF5In0-stale-login";
        let s = setup(stale);
        let out = instance_push(&s);
        let digest = assert_pushed(&out, REPO);
        let log = s.proxy.log();
        let expired: Vec<_> = log
            .iter()
            .filter(|e| e.fault.as_deref() == Some("status 403"))
            .collect();
        assert!(
            !expired.is_empty(),
            "the old login was never sent (and refused): {log:#?}"
        );
        let first = log
            .iter()
            .position(|e| e.fault.as_deref() == Some("status 403"))
            .unwrap();
        assert!(
            log[first + 1..]
                .iter()
                .any(|e| e.authorized && e.fault.is_none() && e.status.is_some_and(|s| s < 300)),
            "no request succeeded after the refresh: {log:#?}"
        );
        assert!(
            token_calls(&s.moto) >= 1,
            "no token came from the AWS chain"
        );
        assert!(
            !stderr(&out).contains(stale),
            "{}",
            crate::common::ocipush::describe(&out)
        );
        assert_runs_hello(
            &format!("docker://{}/ec2-ecr-test@{digest}", s.ecr.addr()),
            Some(("AWS", s.password.as_str())),
        );
    }

    #[test]
    fn an_expired_login_with_no_aws_credentials_says_expired_not_iam() {
        // No AWS identity at all (the sandbox's empty environment, IMDS disabled): nothing
        // fresher than the old login, which ECR keeps refusing as expired. The message says
        // so and how to fix it, and does not blame an IAM action.
        // As `aws ecr get-login-password` prints it (its `expiration` is inside): over since 2020.
        let stale = b64(
            r#"{"payload":"b2xkLXBheWxvYWQtYnl0ZXM=","datakey":"AQIDAHhxb2xk","version":"2","type":"DATA_KEY","expiration":1600000000}"#,
        );
        let stale = stale.as_str();
        let ecr = RegistryServer::start_with_auth("AWS", "never-the-stale-one");
        let proxy = FaultProxy::start(ecr.port());
        let sb = Sandbox::new();
        let _alpine = alpine_base_registry(&sb);
        let mut map = std::fs::read_to_string(sb.registries_conf()).unwrap();
        map.push_str(&format!(
            "\n[[registry]]\nprefix = \"{HOST}\"\nlocation = \"{}\"\ninsecure = true\n",
            proxy.addr()
        ));
        std::fs::write(sb.registries_conf(), map).unwrap();
        sb.login(&[(HOST, "AWS", stale)]);
        proxy.expire_credential(&format!("Basic {}", b64(&format!("AWS:{stale}"))));
        let out = push(&sb, &format!("{REPO}:v1"), &["--progress", "rawjson"]);
        let err = assert_failed(&out, 1);
        // The old login was sent only because nothing fresher was found, which is said.
        let events = crate::e2e_options::rawjson_events(&err);
        let stale_sent = crate::e2e_options::fallbacks(&events, "stale_credential");
        assert!(!stale_sent.is_empty(), "{err}");
        assert_eq!(stale_sent[0]["step"], format!("authenticating to {HOST}"));
        assert!(
            stale_sent[0]["detail"]
                .as_str()
                .unwrap()
                .ends_with("sending the stale one for the registry to judge"),
            "{err}"
        );
        assert!(
            err.contains("refused the credential as expired")
                && err.contains("the expiry inside the saved token is past")
                && err.contains("aws ecr get-login-password"),
            "{err}"
        );
        assert!(!err.contains("the identity needs"), "{err}");
        assert!(!err.contains(stale), "{err}");
        let refused = proxy
            .log()
            .iter()
            .filter(|e| e.fault.as_deref() == Some("status 403"))
            .count();
        assert!(refused >= 1, "{:#?}", proxy.log());
    }

    #[test]
    fn a_docker_login_past_its_own_expiry_gives_way_before_it_is_sent() {
        // What `aws ecr get-login-password` prints: base64 of JSON carrying `expiration`;
        // this one ended in 2020.
        let stale = b64(
            r#"{"payload":"c3RhbGUtcGF5bG9hZC1ieXRlcw==","datakey":"AQIDAHhxc3RhbGU=","version":"2","type":"DATA_KEY","expiration":1600000000}"#,
        );
        let s = setup(&stale);
        let out = instance_push(&s);
        let digest = assert_pushed(&out, REPO);
        let log = s.proxy.log();
        assert!(
            log.iter().all(|e| e.fault.is_none()),
            "the expired login was sent: {log:#?}"
        );
        assert!(
            token_calls(&s.moto) >= 1,
            "no token came from the AWS chain"
        );
        assert_runs_hello(
            &format!("docker://{}/ec2-ecr-test@{digest}", s.ecr.addr()),
            Some(("AWS", s.password.as_str())),
        );
    }
}
