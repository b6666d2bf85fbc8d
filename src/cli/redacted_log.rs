//! Logging that never shows a secret, at any verbosity: every line goes through
//! [`ocipush::auth::redact::scrub`] (the process-wide scrub: the AWS keys from the environment
//! and from the shared config/credentials files, registered here in the process-level set, and
//! the credentials and tokens of every live session — the CLI's sessions share
//! [`session_redactor`], kept for the whole run), and the libraries that dump whole requests at debug/trace level (the AWS
//! SDK: signed headers, session tokens, access key ids) are capped at `info` whatever
//! `RUST_LOG` says.

use std::io::{self, Write};

use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Targets whose debug/trace output carries credentials (request dumps, signing inputs).
const CAPPED: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sigv4",
    "aws_config",
    "aws_credential_types",
    "aws_runtime",
    "aws_sdk_ecr",
    "aws_sdk_ecrpublic",
    "aws_sdk_sts",
    "aws_sdk_sso",
    "aws_sdk_ssooidc",
];

/// Environment variables holding secrets, registered for scrubbing.
const SECRET_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

fn capped(target: &str, level: &Level) -> bool {
    *level > Level::INFO
        && CAPPED
            .iter()
            .any(|c| target == *c || (target.starts_with(c) && target[c.len()..].starts_with("::")))
}

/// The set of secrets of the CLI's sessions: one per process, kept until it ends, so the last
/// error line (printed after the session is gone) is still scrubbed of the session's secrets.
pub(crate) fn session_redactor() -> ocipush::auth::redact::Redactor {
    static SESSIONS: std::sync::LazyLock<ocipush::auth::redact::Redactor> =
        std::sync::LazyLock::new(ocipush::auth::redact::Redactor::new);
    SESSIONS.clone()
}

/// Set up logging to stderr with `default` as the filter unless `RUST_LOG` is set. With
/// `rawjson`, each log line is a rawjson `log` event (`--progress rawjson` keeps every stderr
/// line one JSON object).
pub(crate) fn init(default: &str, rawjson: bool) {
    for var in SECRET_VARS {
        if let Ok(v) = std::env::var(var) {
            ocipush::auth::redact::register(&v);
        }
    }
    ocipush::auth::aws_profile::register_secrets();
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let caps = filter_fn(|meta| !capped(meta.target(), meta.level()));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(Scrubbing { rawjson })
        .with_ansi(!rawjson)
        .with_target(false)
        .with_filter(env.and(caps));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Stderr, with secrets blanked out of each formatted event.
struct Scrubbing {
    rawjson: bool,
}

impl<'a> MakeWriter<'a> for Scrubbing {
    type Writer = ScrubbingWriter;
    fn make_writer(&'a self) -> ScrubbingWriter {
        ScrubbingWriter(Vec::new(), self.rawjson)
    }
}

/// Buffers one event and writes it scrubbed when dropped (as rawjson `log` events when set).
struct ScrubbingWriter(Vec<u8>, bool);

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for ScrubbingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let clean = ocipush::auth::redact::scrub(&text);
        if !self.1 {
            let _ = io::stderr().lock().write_all(clean.as_bytes());
            return;
        }
        let mut out = String::new();
        for line in clean.lines().filter(|l| !l.trim().is_empty()) {
            let event = serde_json::json!({
                "v": super::progress::RAWJSON_VERSION,
                "time": super::progress::rawjson_time(),
                "event": "log",
                "data": line.trim_end(),
            });
            out.push_str(&event.to_string());
            out.push('\n');
        }
        let _ = io::stderr().lock().write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_sdk_debug_is_capped() {
        assert!(capped(
            "aws_smithy_runtime::client::orchestrator",
            &Level::DEBUG
        ));
        assert!(capped("aws_sigv4", &Level::TRACE));
        assert!(!capped("aws_sigv4", &Level::INFO));
        assert!(!capped("aws_sigv4x", &Level::TRACE));
        assert!(!capped("ocipush::registry", &Level::TRACE));
    }
}
