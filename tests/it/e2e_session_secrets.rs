//! Secrets are kept per session (issue 12: no process globals): two library builds in one
//! process, each with its own `Session` and a registry that requires its own login, pushed
//! concurrently. Each session's redactor holds its own password and Basic header and not the
//! other's; the process-wide scrub (what a log layer uses) covers both while both live, and
//! forgets a session's secrets once that session is dropped.

use std::sync::Arc;

use base64::Engine as _;
use ocipush::auth::DockerConfigProvider;
use ocipush::auth::redact::{REDACTED, scrub};
use ocipush::builder::{ImageBuilder, Layer};
use ocipush::pipeline::{Session, Target};
use ocipush::registries_conf::RegistriesConf;

use crate::common::ocipush::Sandbox;
use crate::common::registry::RegistryServer;

/// A session whose only credentials are `user`/`password` for `registry`.
fn session_for(sb: &Sandbox, registry: &str, user: &str, password: &str) -> Session {
    let json = serde_json::json!({
        "auths": { registry: { "username": user, "password": password } }
    });
    let creds = DockerConfigProvider::from_json(&json.to_string()).unwrap();
    let conf = RegistriesConf::load(Some(&sb.registries_conf())).unwrap();
    Session::new(conf, Arc::new(creds), false).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn two_sessions_in_one_process_keep_their_secrets_apart() {
    let sb = Sandbox::new();
    let (pass_a, pass_b) = ("password-of-session-a", "password-of-session-b");
    let reg_a = RegistryServer::start_with_auth("user-a", pass_a);
    let reg_b = RegistryServer::start_with_auth("user-b", pass_b);
    let session_a = session_for(&sb, &reg_a.addr(), "user-a", pass_a);
    let session_b = session_for(&sb, &reg_b.addr(), "user-b", pass_b);
    let image = |name: &str| {
        ImageBuilder::from("scratch")
            .cache_dir(None)
            .layer(Layer::new().bytes(name.as_bytes().to_vec(), "/name.txt", 0o644))
            .cmd(["/name.txt"])
    };
    let (a, b) = (image("a"), image("b"));
    let target_a = Target::parse(&format!("{}/sessions/a:v1", reg_a.addr())).unwrap();
    let target_b = Target::parse(&format!("{}/sessions/b:v1", reg_b.addr())).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = ocipush::events::ignore();
    // Both jobs at once, on one runtime: their scopes interleave on its threads.
    let (pushed_a, pushed_b) = rt.block_on(async {
        tokio::join!(
            a.containerize(&session_a, &target_a, &events),
            b.containerize(&session_b, &target_b, &events),
        )
    });
    pushed_a.unwrap_or_else(|e| panic!("push with session A: {e}"));
    pushed_b.unwrap_or_else(|e| panic!("push with session B: {e}"));

    let (header_a, header_b) = (basic("user-a", pass_a), basic("user-b", pass_b));
    let text = format!("a={pass_a} b={pass_b} ha={header_a} hb={header_b}");
    let r = REDACTED;
    // Each session's set: its own password and Basic header, not the other's.
    assert_eq!(
        session_a.redactor().scrub(&text),
        format!("a={r} b={pass_b} ha={r} hb={header_b}")
    );
    assert_eq!(
        session_b.redactor().scrub(&text),
        format!("a={pass_a} b={r} ha={header_a} hb={r}")
    );
    // Process-wide: both, while both live.
    assert_eq!(scrub(&text), format!("a={r} b={r} ha={r} hb={r}"));

    // Session A (and every clone of it) gone: its secrets are forgotten process-wide, B's stay.
    let kept = session_b.clone();
    drop(session_a);
    drop(session_b);
    assert_eq!(
        scrub(&text),
        format!("a={pass_a} b={r} ha={header_a} hb={r}")
    );
    assert!(!kept.redactor().is_empty());
}
