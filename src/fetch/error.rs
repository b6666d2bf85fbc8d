//! [`FetchError`]: every way downloading an `ADD <url>` source can fail, each naming the URL
//! (without credentials: userinfo and credential-like query values are redacted), why, and
//! what to do. The build adds the Dockerfile line.

use std::path::PathBuf;
use std::time::Duration;

use crate::digest::Digest;

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The HTTP client could not be built (a bad `--ca-cert`).
    #[error("cannot set up the HTTP client for downloads: {0}")]
    Client(String),
    /// The URL does not parse or is not HTTP(S).
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL (redacted).
        url: String,
        /// Why.
        reason: String,
    },
    /// Connection refused, DNS or TLS failure.
    #[error(
        "cannot download {url}: {cause}; check the URL and the network (for a private CA, pass --ca-cert)"
    )]
    Unreachable {
        /// The URL (redacted).
        url: String,
        /// Why.
        cause: String,
    },
    /// Nothing moved for the stall timeout.
    #[error("downloading {url} timed out: {cause}; check the network, or raise --timeout")]
    Timeout {
        /// The URL (redacted).
        url: String,
        /// Why.
        cause: String,
    },
    /// The connection broke, or ended before `Content-Length` bytes arrived.
    #[error("downloading {url} was cut off: {cause}")]
    Interrupted {
        /// The URL (redacted).
        url: String,
        /// Why.
        cause: String,
    },
    /// The server answered with an error status.
    #[error("downloading {url} failed: the server answered HTTP {status}{}; {hint}", reason_of(*status))]
    Status {
        /// The URL (redacted) that answered.
        url: String,
        /// The HTTP status.
        status: u16,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
        /// What to do.
        hint: &'static str,
    },
    /// A redirect that cannot be followed.
    #[error("downloading {url}: {reason}")]
    BadRedirect {
        /// The URL (redacted) that redirected.
        url: String,
        /// Why it is not followed.
        reason: String,
    },
    /// Too many redirects in a row.
    #[error("downloading {url}: more than {limit} redirects; the server redirects in a loop")]
    TooManyRedirects {
        /// The URL (redacted) as written.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// The download does not have the `--checksum` digest.
    #[error(
        "{url} does not match --checksum: expected {expected}, got {actual} ({size} bytes); the file at the URL changed, or the checksum is wrong"
    )]
    ChecksumMismatch {
        /// The URL (redacted).
        url: String,
        /// `--checksum`.
        expected: Digest,
        /// What was downloaded.
        actual: Digest,
        /// Its size.
        size: u64,
    },
    /// A retryable failure kept happening until attempts or time ran out.
    #[error(
        "downloading {url} failed after {attempts} attempt{} over {} s: {last}; raise --retries or --timeout, or try again later",
        if *attempts == 1 { "" } else { "s" },
        elapsed.as_secs()
    )]
    Exhausted {
        /// The URL (redacted).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// From the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<FetchError>,
    },
    /// The download could not be stored.
    #[error("cannot {action} {} while downloading {url}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The URL (redacted).
        url: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn reason_of(status: u16) -> String {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

impl FetchError {
    /// Whether trying again may help: connection failures, stalls, cut-off bodies, 408, 429
    /// and 5xx answers.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Unreachable { .. }
            | FetchError::Timeout { .. }
            | FetchError::Interrupted { .. } => true,
            FetchError::Status { status, .. } => {
                matches!(status, 408 | 429) || (500..=599).contains(status)
            }
            _ => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The hint for an error status.
    pub(crate) fn hint_for(status: u16) -> &'static str {
        match status {
            401 | 403 => {
                "the server refused access: put the credentials in the URL (https://user:password@host/…) or use a URL that needs none"
            }
            404 | 410 => "check the URL",
            408 | 429 | 500..=599 => "the server failed or is overloaded",
            _ => "check the URL and the server",
        }
    }
}
