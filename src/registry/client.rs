//! [`ClientOptions`] and [`RegistryClient`]: one HTTP connection pool (reqwest, rustls) and one
//! authentication cache (challenges, tokens, credentials) shared by every [`Repository`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::AuthState;
use super::chunking::Learned;
use super::error::RegistryError;
use super::repository::Repository;
use super::retry::RetryPolicy;
use crate::auth::{Anonymous, CredentialProvider};
use crate::registries_conf::{Endpoint, Scheme};

/// How a [`RegistryClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where credentials come from.
    pub credentials: Arc<dyn CredentialProvider>,
    /// Treat every host as insecure (`--insecure`): TLS is tried first without verifying the
    /// certificate, then plain HTTP (as registries.conf `insecure = true` does for one).
    pub insecure: bool,
    /// The User-Agent header.
    pub user_agent: String,
    /// The PATCH chunk size for chunked uploads (`--chunk-size`); `None`: per registry host
    /// (ghcr.io 4 MiB, others 16 MiB). Either way raised to [`MIN_CHUNK_SIZE`](super::MIN_CHUNK_SIZE), to 5 MiB on
    /// Amazon ECR and to the session's `OCI-Chunk-Min-Length`, and lowered for a host that
    /// answered a chunk with "too large" (see `registry/chunking.rs`).
    pub chunk_size: Option<u64>,
    /// Blobs of at most this many bytes are uploaded with one PUT; larger ones in PATCH chunks.
    pub monolithic_threshold: u64,
    /// How many blob existence checks run at once.
    pub max_concurrency: usize,
    /// How idempotent steps are retried.
    pub retry: RetryPolicy,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// The longest a request may wait without progress (no response yet and no body byte
    /// sent, or no body byte received): a dead or stalled registry ends in
    /// [`RegistryError::Timeout`] after this, never in a hang.
    pub stall_timeout: Duration,
    /// Extra trusted CA certificates (PEM), added to the system roots (`--ca-cert`).
    pub ca_certs: Vec<CaCert>,
}

/// A CA certificate file's PEM contents, and where it came from (for messages).
#[derive(Clone)]
pub struct CaCert {
    /// Where it was read from.
    pub origin: String,
    /// PEM text (one or more certificates).
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for CaCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCert")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: Arc::new(Anonymous),
            insecure: false,
            user_agent: crate::USER_AGENT.to_string(),
            chunk_size: None,
            monolithic_threshold: 32 * 1024 * 1024,
            max_concurrency: 4,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(60),
            ca_certs: Vec::new(),
        }
    }
}

/// An OCI distribution client. Cheap to clone; clones share connections and auth caches.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub http: reqwest::Client,
    /// The same, accepting any TLS certificate: only for insecure endpoints.
    pub unverified: reqwest::Client,
    pub opts: ClientOptions,
    pub auth: AuthState,
    /// The scheme each insecure host answered on (TLS first, then plain HTTP), by host.
    pub schemes: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Scheme>>>>,
    /// The largest chunk each host was seen to accept.
    pub chunks: Learned,
}

impl RegistryClient {
    /// Build a client.
    pub fn new(opts: ClientOptions) -> Result<RegistryClient, RegistryError> {
        let build = |unverified: bool| {
            http_client_builder(&opts)?
                .redirect(super::origin::redirect_policy())
                .tls_danger_accept_invalid_certs(unverified)
                .build()
                .map_err(|e| RegistryError::Client(super::http::cause_chain(&e)))
        };
        let http = build(false)?;
        let unverified = build(true)?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                http,
                unverified,
                opts,
                auth: AuthState::default(),
                schemes: Mutex::default(),
                chunks: Learned::default(),
            }),
        })
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// A handle on one repository.
    pub fn repository(&self, endpoint: &Endpoint) -> Repository {
        Repository::new(self.clone(), endpoint.clone())
    }

    pub(crate) fn stall(&self) -> Duration {
        self.inner
            .opts
            .stall_timeout
            .max(Duration::from_millis(100))
    }

    /// The per-host cell holding the scheme an insecure host answered on.
    pub(crate) fn scheme_cell(&self, host: &str) -> Arc<tokio::sync::OnceCell<Scheme>> {
        let mut m = self.inner.schemes.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(host.to_string()).or_default().clone()
    }
}

/// A reqwest client builder with `opts`' User-Agent, connect timeout and extra CA roots (added
/// to the system's): the registry client's, and the one `ADD <url>` downloads use
/// ([`crate::fetch`]).
pub(crate) fn http_client_builder(
    opts: &ClientOptions,
) -> Result<reqwest::ClientBuilder, RegistryError> {
    let mut roots = Vec::new();
    for ca in &opts.ca_certs {
        let certs = reqwest::Certificate::from_pem_bundle(&ca.pem).map_err(|e| {
            RegistryError::Client(format!(
                "cannot read CA certificate {}: {}; expected PEM",
                ca.origin,
                super::http::cause_chain(&e)
            ))
        })?;
        if certs.is_empty() {
            return Err(RegistryError::Client(format!(
                "CA certificate file {} holds no PEM certificate",
                ca.origin
            )));
        }
        roots.extend(certs);
    }
    Ok(reqwest::Client::builder()
        .user_agent(opts.user_agent.clone())
        .connect_timeout(opts.connect_timeout.min(opts.stall_timeout))
        .tls_certs_merge(roots))
}
