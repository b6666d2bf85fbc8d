//! No secret in any output, at any verbosity: every authenticating push runs once at the
//! highest verbosity (`-vvv` and `RUST_LOG=trace`, which also turns on the HTTP, TLS and AWS
//! libraries' own logs) and neither stdout nor stderr may hold the password, the Basic
//! credentials (base64 of `user:pass`), a Bearer token or an AWS key / session token.
//! Covered: htpasswd Basic (right and wrong password), Bearer tokens from a token server
//! (the fault proxy's gate in front of the real registry) including a token that expires
//! mid-push, and the AWS credential chain on the way to an ECR registry.

use std::process::Output;

use base64::Engine as _;

use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
use crate::common::fixtures::{alpine_base_registry, copy_and_unpack};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, describe};
use crate::common::registry::{RegistryServer, closed_port_addr};
use crate::common::testdata;
use crate::common::tools::run_image;

const TRACE: &[(&str, &str)] = &[("RUST_LOG", "trace")];

fn push(sb: &Sandbox, dest: &str, envs: &[(&str, &str)]) -> Output {
    push_with(sb, &[], dest, envs)
}

fn push_with(sb: &Sandbox, extra: &[&str], dest: &str, envs: &[(&str, &str)]) -> Output {
    let dockerfile = testdata("hello/Dockerfile");
    let mut args: Vec<std::ffi::OsString> = vec!["-vvv".into()];
    args.extend(extra.iter().map(|a| a.into()));
    args.extend([
        "--registries-conf".into(),
        sb.registries_conf().into_os_string(),
        dockerfile.into_os_string(),
        dest.into(),
    ]);
    sb.ocipush_env(args, envs)
}

/// Neither stream holds any of `secrets` (nor, for `user:pass` pairs, their base64).
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.len() > 2000,
        "expected verbose output at trace level:\n{}",
        describe(out)
    );
    for s in secrets {
        assert!(!s.is_empty());
        assert!(
            !all.contains(s),
            "secret {s:?} appears in the output:\n{}",
            describe(out)
        );
    }
}

fn basic(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[test]
fn basic_credentials_never_appear_at_trace_level() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let pass = "Pa55-word-basic-7d1f";
    let b = RegistryServer::start_with_auth("pusher", pass);
    sb.login(&[(&b.addr(), "pusher", pass)]);
    let out = push(&sb, &format!("{}/secret:v1", b.addr()), TRACE);
    assert_pushed(&out, &format!("{}/secret", b.addr()));
    let b64 = basic("pusher", pass);
    assert_no_secret(&out, &[pass, &b64]);

    // A rejected password is not shown either.
    let wrong = "Wr0ng-password-9c2e";
    sb.login(&[(&b.addr(), "pusher", wrong)]);
    let out = push(&sb, &format!("{}/secret:v2", b.addr()), TRACE);
    assert_failed(&out, 1);
    let b64 = basic("pusher", wrong);
    assert_no_secret(&out, &[wrong, &b64]);
}

#[test]
fn bearer_tokens_never_appear_and_an_expired_token_is_renewed_mid_push() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    let pass = "Pa55-word-bearer-51aa";
    proxy.require_bearer("tokuser", pass);
    sb.login(&[(&proxy.addr(), "tokuser", pass)]);
    // The second blob upload finds its token expired.
    proxy.add(Rule::new("PUT", "/blobs/uploads/", 1, Fault::ExpireTokens).after(1));
    let dest = format!("{}/faults:v1", proxy.addr());
    let out = push(&sb, &dest, TRACE);
    let digest = assert_pushed(&out, &format!("{}/faults", proxy.addr()));
    let tokens = proxy.tokens_issued();
    assert!(
        tokens.len() >= 2,
        "a new token was fetched after the expiry: {tokens:?}"
    );
    let log = proxy.log();
    let expired = log
        .iter()
        .position(|e| e.fault.as_deref() == Some("expire tokens"))
        .expect("the token was expired");
    assert!(
        log[expired + 1..]
            .iter()
            .any(|e| e.method == "PUT" && e.path() == log[expired].path() && e.status == Some(201)),
        "the refused upload went on with the new token: {log:#?}"
    );
    let b64 = basic("tokuser", pass);
    let mut secrets: Vec<&str> = vec![pass, &b64];
    secrets.extend(tokens.iter().map(String::as_str));
    assert_no_secret(&out, &secrets);
    let img = copy_and_unpack(&format!("docker://{}/faults@{digest}", b.addr()), None);
    assert_eq!(run_image(&img.rootfs, &img.config).stdout, "hello\n");
}

#[test]
fn aws_keys_never_appear_on_the_way_to_ecr() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let key = "AKIAOCIPUSHSECRET0001";
    let secret = "aws-secret-key-ocipush-0b9f4e2a";
    let session = "aws-session-token-ocipush-77c1";
    let endpoint = format!("http://{}", closed_port_addr());
    // Through the ECR API: the AWS SDK signs each request with the keys (and would log the
    // signed headers, session token included, at trace level).
    let out = push_with(
        &sb,
        &["--ecr-api"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/secret:v1",
        &[
            ("RUST_LOG", "trace"),
            ("AWS_ACCESS_KEY_ID", key),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_SESSION_TOKEN", session),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
    );
    assert_failed(&out, 1);
    assert_no_secret(&out, &[secret, session]);
    // The access key id is an identifier, not a secret, but it is not printed either.
    assert_no_secret(&out, &[key]);
}

/// A stand-in AWS endpoint that answers every request with 503 and counts the requests (the
/// SDK retries 5xx): `--retries` must bound the AWS calls as it bounds the registry's.
#[test]
fn retries_bound_the_ecr_api_calls_too() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            // Read the request head and body (Content-Length) before answering.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body_len = loop {
                let Ok(n) = s.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break Some((end + 4, len));
                }
            };
            if let Some((start, len)) = body_len {
                while buf.len() < start + len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = s.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
        }
    });
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let endpoint = format!("http://{addr}");
    let out = push_with(
        &sb,
        &["--ecr-api", "--retries", "1"],
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/retry:v1",
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAOCIPUSHRETRY0001"),
            ("AWS_SECRET_ACCESS_KEY", "retry-secret"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
    );
    assert_failed(&out, 1);
    // The process has exited, so every request it made has been counted.
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "--retries 1 means 2 attempts of the first ECR API call (the SDK's default is 3):\n{}",
        describe(&out)
    );
}
