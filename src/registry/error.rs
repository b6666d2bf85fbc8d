//! [`RegistryError`]: every way talking to a registry can fail, each saying what failed, for
//! which registry, repository and blob, why (HTTP status and the registry's OCI error codes),
//! and what to do. No error ever carries a credential or a token.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::AuthError;

/// One entry of the OCI error envelope `{"errors":[{"code","message"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OciError {
    /// The code, e.g. `NAME_UNKNOWN`.
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<OciError>,
}

/// What a registry said when it refused a request: HTTP status and OCI error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// The OCI errors in the body, if it had the envelope.
    pub errors: Vec<OciError>,
    /// The start of a body that was not the envelope (control characters removed).
    pub body: Option<String>,
}

impl ErrorDetail {
    /// Build from a status and a (size-limited) body.
    pub fn new(status: u16, body: &[u8]) -> ErrorDetail {
        if let Ok(env) = serde_json::from_slice::<Envelope>(body)
            && !env.errors.is_empty()
        {
            return ErrorDetail {
                status,
                errors: env.errors,
                body: None,
            };
        }
        let text: String = String::from_utf8_lossy(body)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(200)
            .collect();
        let text = text.trim().to_string();
        ErrorDetail {
            status,
            errors: vec![],
            body: (!text.is_empty()).then_some(text),
        }
    }

    /// Whether one of the OCI errors has `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = reqwest::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        write!(f, "HTTP {} {reason}", self.status)?;
        for e in &self.errors {
            write!(f, ", {}: {}", e.code, e.message)?;
        }
        if let Some(b) = &self.body {
            write!(f, ", body: {b:?}")?;
        }
        Ok(())
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A tag or digest that cannot be put in a URL.
    #[error(
        "invalid manifest reference {reference:?} for {registry}/{repository}: expected a tag \
         ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}) or a sha256 digest"
    )]
    InvalidReference {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The reference.
        reference: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// The endpoint does not make a valid URL.
    #[error(
        "cannot make a registry URL for {host}/{repository}: {reason}; check the reference and registries.conf"
    )]
    InvalidEndpoint {
        /// The `host[:port]`.
        host: String,
        /// The repository.
        repository: String,
        /// Why.
        reason: String,
    },
    /// The registry sent an `https` client to a plain `http` URL (an upload `Location` or a
    /// redirect): refused, so nothing travels in clear.
    #[error(
        "refused to follow {registry} from https to plain http ({target}) during {what} for repository \
         {repository}: the data and the upload session would travel unencrypted; fix the registry's \
         (or its proxy's) external URL, or mark it insecure (--insecure) if plain HTTP is intended"
    )]
    Downgrade {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// `http://host[:port]` it pointed at (no path: it may be a capability).
        target: String,
    },
    /// Connection refused, DNS failure, TLS failure.
    #[error(
        "cannot reach registry {host} ({url}): {cause}; is it running, is the name right, \
         and is --insecure needed (plain HTTP, or a certificate no CA vouches for; or --ca-cert)?"
    )]
    Unreachable {
        /// The `host[:port]`.
        host: String,
        /// The URL (without query).
        url: String,
        /// Why.
        cause: String,
    },
    /// The connection closed in the middle of a request.
    #[error(
        "the connection to {registry} was dropped during {what} for repository {repository}: {cause}; \
         the repository may not exist (Amazon ECR closes the connection for unknown repositories), \
         or a proxy cut the request"
    )]
    ConnectionDropped {
        /// The operation.
        what: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Why.
        cause: String,
    },
    /// The request timed out.
    #[error(
        "timed out during {what} on {registry}/{repository}: {cause}; check the network or retry"
    )]
    Timeout {
        /// The operation.
        what: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Why.
        cause: String,
    },
    /// The registry wants credentials and none were found.
    #[error(
        "authentication required by {registry} for {what} on repository {repository} ({detail}), \
         and no credentials were found: run `docker login {registry}` or pass credentials"
    )]
    AuthRequired {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// The registry's answer.
        detail: String,
    },
    /// Credentials were sent and rejected.
    #[error(
        "authentication failed for {registry} (user {user}) during {what} on repository {repository}: {detail}; \
         check your credentials / docker login"
    )]
    AuthFailed {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The user name, or a description of the credential.
        user: String,
        /// The operation.
        what: String,
        /// The registry's (or token server's) answer.
        detail: String,
    },
    /// A request the registry sent to another host (an upload `Location`) was answered with
    /// 401: credentials go only to the registry that asked for them.
    #[error(
        "{registry} sent {what} for repository {repository} to another host, {target}, which asks for \
         credentials; ocipush sends credentials only to the registry that challenged for them \
         ({registry}), never to another host. The registry's upload URL (its external URL setting, \
         or a proxy in front of it) should name the registry itself"
    )]
    ForeignAuthRequired {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// `scheme://host[:port]` of the other host (no path: it may be a capability).
        target: String,
    },
    /// The registry refused the credential as expired (Amazon ECR: 403 DENIED "Your
    /// authorization token has expired", also for a token of another region) even after one
    /// refresh: not a permission problem.
    #[error(
        "{registry} refused the credential as expired during {what} for repository {repository} ({why}; {detail}); \
         no fresher credential was accepted. For Amazon ECR the token must be this registry's region's: remove \
         the stale `docker login` entry from config.json (ocipush then gets a token from the AWS credential \
         chain) or log in again with `aws ecr get-login-password --region <region>`"
    )]
    CredentialExpired {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// How it is known: the registry said so, or the credential's own expiry is past.
        why: &'static str,
        /// What the registry said.
        detail: Box<ErrorDetail>,
    },
    /// Authenticated, but not allowed.
    #[error(
        "access denied by {registry} for {what} on repository {repository} ({detail}); the credentials \
         lack permission for it (push needs pull+push), or the repository does not exist"
    )]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// Which request was refused (for mapping to e.g. an IAM action).
        request: RequestKind,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// The repository does not exist.
    #[error(
        "repository {repository} is not known to {registry} ({detail}) during {what}; check the name, or create it first"
    )]
    NameUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// A blob does not exist.
    #[error("blob {digest} is not known to {registry}/{repository} ({detail}) during {what}")]
    BlobUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: String,
        /// The operation.
        what: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// A manifest (tag or digest) does not exist.
    #[error(
        "manifest {reference} not found in {registry}/{repository} ({detail}); check the tag or digest"
    )]
    ManifestUnknown {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// The registry rejected a manifest.
    #[error("{registry}/{repository} rejected manifest {reference} ({detail}); {hint}")]
    ManifestInvalid {
        /// What to do.
        hint: &'static str,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// The registry rejected a tag.
    #[error(
        "{registry}/{repository} rejected tag {reference} ({detail}); the repository may have immutable tags"
    )]
    TagInvalid {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag.
        reference: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// Rate limited.
    #[error(
        "{registry} is rate-limiting requests ({detail}) during {what} on {repository}{}; wait and retry, \
         or log in for a higher limit",
        retry_after.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default()
    )]
    TooManyRequests {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
    },
    /// Any other refusal.
    #[error("{what} on {registry}/{repository} failed: {detail}{}", hint_for(detail.status))]
    Status {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// The registry's answer.
        detail: Box<ErrorDetail>,
        /// `Retry-After`, if given.
        retry_after: Option<Duration>,
    },
    /// Content did not match its digest or size.
    #[error(
        "{what} from {registry}/{repository} does not match: expected {expected}, got {actual}; the registry or a proxy altered it"
    )]
    Mismatch {
        /// What (e.g. `blob sha256:…`, `manifest v1`).
        what: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What we expected.
        expected: String,
        /// What we got.
        actual: String,
    },
    /// Content is larger than we accept.
    #[error(
        "{what} from {registry}/{repository} is larger than the {limit}-byte limit; refusing to read it"
    )]
    TooLarge {
        /// What.
        what: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The limit.
        limit: u64,
    },
    /// The registry answered something we cannot use (bad Location, bad token JSON, …).
    #[error("{registry} sent an invalid response to {what} on {repository}: {reason}")]
    BadResponse {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The operation.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The credential provider failed.
    #[error(transparent)]
    Credentials(#[from] AuthError),
    /// A retryable step kept failing until attempts or time ran out.
    #[error(
        "{what} failed after {attempts} attempt{} over {}: {last}; the registry kept failing \
         (raise --retries or --timeout, or try again later)",
        if *attempts == 1 { "" } else { "s" },
        fmt_elapsed(*elapsed)
    )]
    Exhausted {
        /// The step.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// The time from the first attempt to giving up.
        elapsed: Duration,
        /// The last attempt's error.
        #[source]
        last: Box<RegistryError>,
    },
    /// The blob's local source could not be read.
    #[error("cannot read blob {blob} to upload it to {registry}/{repository}: {source}")]
    Source {
        /// The blob (its digest, or what it is when its digest is not known yet).
        blob: String,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// `31 s`, `1.2 s`, `250 ms`.
fn fmt_elapsed(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{} s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{} ms", d.as_millis())
    }
}

fn hint_for(status: u16) -> &'static str {
    match status {
        500..=599 => "; the registry had an internal error, retry later",
        404 => "; check the repository name and the registry's API path",
        405 => "; the registry does not allow this operation (read-only mirror?)",
        413 => "; the registry refuses content this large (proxy body-size limit?)",
        _ => "",
    }
}

impl RegistryError {
    /// Whether retrying the same step may succeed: 408, 429, 5xx, connection and timeout
    /// errors, and a streaming source (a base layer read from another registry) that broke off.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Source { source, .. } => source_is_transient(source),
            RegistryError::Unreachable { .. }
            | RegistryError::ConnectionDropped { .. }
            | RegistryError::Timeout { .. }
            | RegistryError::TooManyRequests { .. } => true,
            RegistryError::Status { detail, .. } => {
                matches!(detail.status, 408 | 425 | 500 | 502..=599)
            }
            _ => false,
        }
    }

    /// The `Retry-After` the registry asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::TooManyRequests { retry_after, .. }
            | RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error of the last attempt (this one unless retries were exhausted).
    pub fn last_attempt(&self) -> &RegistryError {
        match self {
            RegistryError::Exhausted { last, .. } => last.last_attempt(),
            other => other,
        }
    }

    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Exhausted { last, .. } => last.status(),
            RegistryError::Denied { detail, .. }
            | RegistryError::CredentialExpired { detail, .. }
            | RegistryError::NameUnknown { detail, .. }
            | RegistryError::BlobUnknown { detail, .. }
            | RegistryError::ManifestUnknown { detail, .. }
            | RegistryError::ManifestInvalid { detail, .. }
            | RegistryError::TagInvalid { detail, .. }
            | RegistryError::TooManyRequests { detail, .. }
            | RegistryError::Status { detail, .. } => Some(detail.status),
            _ => None,
        }
    }
}

/// Whether a blob source's read error is a broken connection (a remote source that may be
/// re-opened), not bad content or a local file problem.
fn source_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<RegistryError>()) {
        return inner.is_retryable();
    }
    matches!(
        e.kind(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::TimedOut | K::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_envelope_and_plain_bodies() {
        let d = ErrorDetail::new(
            404,
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry","detail":{}}]}"#,
        );
        assert!(d.has_code("NAME_UNKNOWN"));
        assert_eq!(
            d.to_string(),
            "HTTP 404 Not Found, NAME_UNKNOWN: repository name not known to registry"
        );
        let d = ErrorDetail::new(502, b"<html>\n bad gateway\n</html>");
        assert!(d.errors.is_empty());
        assert_eq!(
            d.to_string(),
            "HTTP 502 Bad Gateway, body: \"<html>  bad gateway </html>\""
        );
        let d = ErrorDetail::new(500, &[0xff; 1000]);
        assert!(d.body.unwrap().chars().count() <= 200);
        assert_eq!(
            ErrorDetail::new(401, b"").to_string(),
            "HTTP 401 Unauthorized"
        );
    }
}

/// Which kind of registry request an error is about: the unit a registry (or ECR's IAM)
/// authorises separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestKind {
    /// `HEAD /v2/<repo>/blobs/<digest>`.
    HeadBlob,
    /// `GET /v2/<repo>/blobs/<digest>`.
    GetBlob,
    /// `POST /v2/<repo>/blobs/uploads/` (also with `mount`).
    StartUpload,
    /// `PATCH <upload>`.
    PatchUpload,
    /// `PUT <upload>?digest=`.
    CompleteUpload,
    /// `GET`/`HEAD /v2/<repo>/manifests/<ref>`.
    GetManifest,
    /// `PUT /v2/<repo>/manifests/<ref>`.
    PutManifest,
    /// The token endpoint or anything else.
    Other,
}

impl RequestKind {
    /// Classify a request by the operation's description and the URL it went to.
    pub fn classify(what: &str, url: &url::Url) -> RequestKind {
        let path = url.path();
        let has_digest = url.query_pairs().any(|(k, _)| k == "digest");
        if path.contains("/manifests/") {
            if what.starts_with("putting") {
                RequestKind::PutManifest
            } else {
                RequestKind::GetManifest
            }
        } else if path.ends_with("/blobs/uploads/") {
            RequestKind::StartUpload
        } else if path.contains("/blobs/uploads/") {
            if has_digest {
                RequestKind::CompleteUpload
            } else {
                RequestKind::PatchUpload
            }
        } else if path.contains("/blobs/") {
            if what.starts_with("fetching") {
                RequestKind::GetBlob
            } else {
                RequestKind::HeadBlob
            }
        } else {
            RequestKind::Other
        }
    }
}
