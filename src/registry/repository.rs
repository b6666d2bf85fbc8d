//! [`Repository`]: one repository on one registry endpoint, and the request loop every
//! operation goes through: attach cached auth (only to the registry's own origin, see
//! [`origin`](super::origin)), answer a 401 challenge (fresh credentials or token, then once
//! more after invalidating the provider), refresh a credential a 403 says has expired, and
//! turn failures into [`RegistryError`]s that name the registry, repository and operation.
//! An insecure endpoint is reached over TLS (unverified) first, then plain HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};
use tokio::sync::watch;
use url::Url;

use super::auth::AuthzFailure;
use super::challenge::parse_challenges;
use super::chunked::UploadSession;
use super::client::RegistryClient;
use super::error::RequestKind;
use super::error::{ErrorDetail, RegistryError};
use super::http::{BodyError, cause_chain, read_limited, redact_url, stalled, watch_stall};
use super::origin::{Target, classify, origin_label, same_origin};
use super::retry::parse_retry_after;
use crate::auth::RegistryHost;
use crate::digest::Digest;
use crate::registries_conf::{Endpoint, Scheme};

/// The most of an error body that is read.
pub(crate) const MAX_ERROR_BODY: u64 = 64 * 1024;

/// One repository on one registry. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Repository {
    pub(crate) client: RegistryClient,
    pub(crate) endpoint: Arc<Endpoint>,
    base: Result<Url, String>,
    /// Upload sessions opened by a mount the registry answered with 202, by blob.
    pub(crate) sessions: Arc<Mutex<HashMap<Digest, UploadSession>>>,
    /// Every upload session opened and not finished: its latest location, by session path.
    /// A cancelled or failed push closes them ([`Repository::close_open_uploads`]).
    pub(crate) open: Arc<Mutex<HashMap<String, Url>>>,
}

/// What a request is about, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    Blob(&'a Digest),
    Manifest(&'a str),
    /// An upload whose digest is not known yet (a layer being built).
    Upload,
}

/// What [`Repository::call`]'s `accept` makes of a response.
pub(crate) enum Reply<T> {
    /// The call's result.
    Done(Result<T, RegistryError>),
    /// A status that is the registry's error.
    Refused(Response),
}

/// One operation: its description, the token scopes it needs, and its subject.
#[derive(Debug)]
pub(crate) struct Op<'a> {
    pub what: String,
    pub scopes: Vec<String>,
    pub subject: Subject<'a>,
}

impl Repository {
    pub(crate) fn new(client: RegistryClient, endpoint: Endpoint) -> Repository {
        let base = Url::parse(&format!(
            "{}://{}/v2/{}/",
            endpoint.scheme.as_str(),
            endpoint.host,
            endpoint.repository
        ))
        .map_err(|e| e.to_string())
        .and_then(|u| match u.host_str() {
            Some(_) if !endpoint.repository.is_empty() => Ok(u),
            _ => Err("no host or no repository".to_string()),
        });
        Repository {
            client,
            endpoint: Arc::new(endpoint),
            base,
            sessions: Arc::default(),
            open: Arc::default(),
        }
    }

    /// Note that the upload session at `location` is open (its latest location).
    pub(crate) fn track_open(&self, location: &Url) {
        if let Ok(mut open) = self.open.lock() {
            open.insert(location.path().to_string(), location.clone());
        }
    }

    /// Note that the upload session at `location` is finished.
    pub(crate) fn track_closed(&self, location: &Url) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(location.path());
        }
    }

    /// Cancel every upload session still open (`DELETE <location>`, as the distribution spec's
    /// "Canceling an Upload" defines), so the registry can drop what it received. Best effort:
    /// a registry that refuses or does not answer within 10 s keeps the session until it
    /// expires on its own.
    pub(crate) async fn close_open_uploads(&self) {
        let open: Vec<Url> = match self.open.lock() {
            Ok(mut open) => open.drain().map(|(_, u)| u).collect(),
            Err(_) => return,
        };
        let http = &self.client.inner.http;
        for url in open {
            let op = Op {
                what: "cancelling an upload".to_string(),
                scopes: self.push_scopes(),
                subject: Subject::Upload,
            };
            let sent = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.send(&op, || async { Ok(http.delete(url.clone())) }),
            )
            .await;
            match sent {
                Ok(Ok(resp)) => {
                    tracing::debug!(
                        status = resp.status().as_u16(),
                        path = url.path(),
                        "upload session cancelled"
                    );
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "cancelling an upload session failed"),
                Err(_) => tracing::debug!("cancelling an upload session timed out"),
            }
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether plain HTTP and unverified TLS are allowed (registries.conf or `--insecure`).
    pub(crate) fn insecure(&self) -> bool {
        self.endpoint.insecure || self.client.inner.opts.insecure
    }

    /// The HTTP client for this endpoint: the one accepting any certificate when insecure.
    fn http(&self) -> &reqwest::Client {
        if self.insecure() {
            &self.client.inner.unverified
        } else {
            &self.client.inner.http
        }
    }

    /// The base URL with the scheme the registry answers on: an insecure `https` endpoint is
    /// asked once per host (`GET /v2/` over TLS, then over plain HTTP when TLS fails), as
    /// containers/image's `detectPropertiesHelper` does.
    async fn effective_base(&self) -> Result<Url, RegistryError> {
        let base = self.url("")?;
        if !self.insecure() || base.scheme() != "https" {
            return Ok(base);
        }
        let cell = self.client.scheme_cell(&self.endpoint.host);
        let scheme = cell.get_or_try_init(|| self.probe(&base)).await?;
        let mut out = base;
        if *scheme == Scheme::Http {
            // https → http of a special scheme always succeeds.
            let _ = out.set_scheme("http");
        }
        Ok(out)
    }

    async fn probe(&self, base: &Url) -> Result<Scheme, RegistryError> {
        let stall = self.client.stall();
        let ping = |scheme: &'static str| {
            let mut u = base.clone();
            let _ = u.set_scheme(scheme);
            u.set_path("/v2/");
            async move {
                let sent = watch_stall(self.http().get(u.clone()).send(), stall, None).await;
                match sent {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err((u, cause_chain(&e))),
                    Err(()) => Err((u, stalled(stall))),
                }
            }
        };
        let tls = match ping("https").await {
            Ok(()) => return Ok(Scheme::Https),
            Err(e) => e,
        };
        tracing::info!(host = %self.endpoint.host, cause = %tls.1, "TLS failed; the registry is insecure, trying plain HTTP");
        crate::events::fallback(
            format!("connecting to {}", self.endpoint.host),
            crate::events::FallbackKind::PlainHttp,
            &format!(
                "TLS failed ({}); the registry is marked insecure, trying plain HTTP",
                tls.1
            ),
        );
        match ping("http").await {
            Ok(()) => Ok(Scheme::Http),
            Err((url, cause)) => Err(RegistryError::Unreachable {
                host: self.endpoint.host.clone(),
                url: redact_url(&url),
                cause: format!("over TLS: {}; over plain HTTP: {cause}", tls.1),
            }),
        }
    }

    /// The registry for messages: the logical name, with the host contacted when different.
    pub fn registry_label(&self) -> String {
        if self.endpoint.logical_registry == self.endpoint.host {
            self.endpoint.host.clone()
        } else {
            format!(
                "{} (via {})",
                self.endpoint.logical_registry, self.endpoint.host
            )
        }
    }

    /// `host/repository`.
    pub fn describe(&self) -> String {
        self.endpoint.describe()
    }

    pub(crate) fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let base = self
            .base
            .as_ref()
            .map_err(|reason| RegistryError::InvalidEndpoint {
                host: self.endpoint.host.clone(),
                repository: self.endpoint.repository.clone(),
                reason: reason.clone(),
            })?;
        base.join(path).map_err(|e| RegistryError::InvalidEndpoint {
            host: self.endpoint.host.clone(),
            repository: self.endpoint.repository.clone(),
            reason: e.to_string(),
        })
    }

    /// Check that `reference` is a tag or a digest before it goes into a URL.
    pub(crate) fn check_reference(&self, reference: &str) -> Result<(), RegistryError> {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let b = reference.as_bytes();
        let tag = !b.is_empty()
            && b.len() <= 128
            && word(b[0])
            && b.iter().all(|&x| word(x) || x == b'.' || x == b'-');
        if tag || reference.parse::<Digest>().is_ok() {
            Ok(())
        } else {
            Err(RegistryError::InvalidReference {
                registry: self.registry_label(),
                repository: self.endpoint.repository.clone(),
                reference: reference.to_string(),
            })
        }
    }

    pub(crate) fn pull_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.endpoint.repository)]
    }

    pub(crate) fn push_scopes(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.endpoint.repository)]
    }

    fn registry_host(&self) -> RegistryHost<'_> {
        RegistryHost {
            logical: &self.endpoint.logical_registry,
            endpoint: &self.endpoint.host,
        }
    }

    /// Send the request `make` builds (called again for each retry after a 401), authenticated.
    /// One request under the retry policy: `make` builds it (again for each attempt and after
    /// a 401); `accept` turns a response into the result ([`Reply::Done`]), or gives it back
    /// ([`Reply::Refused`]) when its status is the registry's error, which is then read and
    /// typed.
    pub(crate) async fn call<T, F, Fut, A>(
        &self,
        op: &Op<'_>,
        make: F,
        accept: A,
    ) -> Result<T, RegistryError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<RequestBuilder, RegistryError>>,
        A: Fn(Response) -> Reply<T>,
    {
        self.client
            .inner
            .opts
            .retry
            .run(&op.what, || async {
                let resp = self.send(op, &make).await?;
                match accept(resp) {
                    Reply::Done(result) => result,
                    Reply::Refused(resp) => Err(self.error_from(op, resp).await),
                }
            })
            .await
    }

    /// `accept` for [`Repository::call`]: any 2xx response.
    pub(crate) fn success(resp: Response) -> Reply<Response> {
        if resp.status().is_success() {
            Reply::Done(Ok(resp))
        } else {
            Reply::Refused(resp)
        }
    }

    pub(crate) async fn send<F, Fut>(&self, op: &Op<'_>, make: F) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<RequestBuilder, RegistryError>>,
    {
        self.send_watched(op, None, make).await
    }

    /// [`Repository::send`] for a request with a body: `activity` (bytes of the body sent so
    /// far) keeps the stall watchdog from firing while the body flows.
    pub(crate) async fn send_watched<F, Fut>(
        &self,
        op: &Op<'_>,
        activity: Option<&watch::Receiver<u64>>,
        mut make: F,
    ) -> Result<Response, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<RequestBuilder, RegistryError>>,
    {
        let stall = self.client.stall();
        let inner = &self.client.inner;
        let provider = inner.opts.credentials.as_ref();
        let rh = self.registry_host();
        let base = self.effective_base().await?;
        let declared = self.url("")?;
        let http = self.http();
        let http_realm_ok = base.scheme() == "http" || self.insecure();
        // 0: cached auth; 1: fresh token/credentials after a 401; 2: after invalidating the provider.
        let mut round = 0u8;
        // The Authorization header the last 401 refused (a stale token is then not reused).
        let mut rejected: Option<reqwest::header::HeaderValue> = None;
        loop {
            let authz = match inner
                .auth
                .authorize(
                    http,
                    provider,
                    &rh,
                    &op.scopes,
                    rejected.as_ref(),
                    stall,
                    http_realm_ok,
                )
                .await
            {
                Ok(a) => a,
                Err(AuthzFailure::Provider(e)) => return Err(e.into()),
                Err(AuthzFailure::Failed { reason, retryable }) => {
                    return Err(if retryable {
                        RegistryError::Unreachable {
                            host: self.endpoint.host.clone(),
                            url: "token server".into(),
                            cause: reason,
                        }
                    } else {
                        self.bad_response(op, reason)
                    });
                }
                Err(AuthzFailure::Rejected {
                    detail,
                    who,
                    has_credential,
                }) => {
                    if !has_credential {
                        return Err(self.auth_required(op, detail));
                    }
                    if round >= 2 {
                        return Err(self.auth_failed(op, who, detail));
                    }
                    if round == 1 {
                        inner.auth.invalidate(provider, &rh);
                    }
                    round += 1;
                    continue;
                }
            };
            let mut req = make()
                .await?
                .build()
                .map_err(|e| RegistryError::Client(cause_chain(&e)))?;
            // URLs made from the endpoint follow the scheme the registry answered on.
            if base.scheme() != declared.scheme() && same_origin(req.url(), &declared) {
                let _ = req.url_mut().set_scheme(base.scheme());
            }
            let url = req.url().clone();
            let target = classify(&base, &url);
            match target {
                Target::Downgrade => {
                    return Err(RegistryError::Downgrade {
                        registry: self.registry_label(),
                        repository: self.endpoint.repository.clone(),
                        what: op.what.clone(),
                        target: origin_label(&url),
                    });
                }
                Target::Registry => {
                    if let Some(h) = &authz.header {
                        req.headers_mut().insert(AUTHORIZATION, h.clone());
                    }
                }
                Target::Foreign => {
                    tracing::debug!(to = %origin_label(&url), "another origin: sent without credentials");
                }
            }
            let attached = target == Target::Registry && authz.header.is_some();
            tracing::debug!(method = %req.method(), url = %redact_url(&url), who = %authz.who, "registry request");
            let sent = watch_stall(http.execute(req), stall, activity.cloned()).await;
            let resp = match sent {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(self.transport_error(op, &url, &e)),
                Err(()) => return Err(self.stalled(op)),
            };
            tracing::debug!(status = resp.status().as_u16(), url = %redact_url(&url), "registry response");
            if resp.status() == StatusCode::FORBIDDEN && attached && authz.expired && round >= 2 {
                let mut resp = resp;
                resp.extensions_mut().insert(super::expiry::KnownExpired);
                return Ok(resp);
            }
            if resp.status() == StatusCode::FORBIDDEN && attached && round < 2 {
                match self.refresh_on_denial(resp, &authz).await {
                    Ok(mut resp) => {
                        if authz.expired {
                            resp.extensions_mut().insert(super::expiry::KnownExpired);
                        }
                        return Ok(resp);
                    }
                    Err(()) => {
                        rejected = authz.header.clone();
                        round = 2;
                        continue;
                    }
                }
            }
            if resp.status() == StatusCode::UNAUTHORIZED && target == Target::Foreign {
                return Err(RegistryError::ForeignAuthRequired {
                    registry: self.registry_label(),
                    repository: self.endpoint.repository.clone(),
                    what: op.what.clone(),
                    target: origin_label(&url),
                });
            }
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<_> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_challenges)
                .collect();
            let chosen = challenges
                .iter()
                .find(|c| c.is_bearer())
                .or_else(|| challenges.iter().find(|c| c.is_basic()))
                .cloned();
            let (body, _) = read_limited(resp, MAX_ERROR_BODY, stall)
                .await
                .unwrap_or_default();
            let full_detail = ErrorDetail::new(401, &body);
            let detail = full_detail.to_string();
            // Authenticated, but the token does not grant the scope: a permission problem.
            let insufficient_scope = chosen
                .as_ref()
                .is_some_and(|c| c.param("error") == Some("insufficient_scope"));
            if insufficient_scope && authz.has_credential && round >= 1 {
                return Err(RegistryError::Denied {
                    registry: self.registry_label(),
                    repository: self.endpoint.repository.clone(),
                    what: op.what.clone(),
                    request: RequestKind::classify(&op.what, &url),
                    detail: Box::new(full_detail),
                });
            }
            match chosen {
                Some(ch) => inner.auth.set_challenge(&self.endpoint.host, ch),
                None if !inner.auth.has_challenge(&self.endpoint.host) => {
                    let detail =
                        format!("{detail} without a Basic or Bearer WWW-Authenticate challenge");
                    return Err(if authz.has_credential {
                        self.auth_failed(op, authz.who, detail)
                    } else {
                        self.auth_required(op, detail)
                    });
                }
                None => {}
            }
            if round > 0 && !authz.has_credential {
                return Err(self.auth_required(op, detail));
            }
            if round >= 2 {
                return Err(self.auth_failed(op, authz.who, detail));
            }
            if round == 1 {
                inner
                    .auth
                    .invalidate_used(provider, &rh, authz.credential.as_ref());
            }
            rejected = authz.header.clone();
            round += 1;
        }
    }

    /// A 403 answered to a credential: `Err(())` when the credential was refreshed and the
    /// request is to be retried once — the registry says the token expired (Amazon ECR
    /// answers an expired token, or one of another region, with 403 DENIED "Your authorization
    /// token has expired. Reauthenticate and try again.",
    /// <https://docs.aws.amazon.com/AmazonECR/latest/userguide/common-errors-docker.html>), or
    /// it cannot say why (a HEAD has no body) or the credential was cached earlier and the
    /// refusal names no missing permission (then once per host; see [`AuthState::on_denial`](super::auth::AuthState::on_denial)); otherwise
    /// the response, whole.
    async fn refresh_on_denial(
        &self,
        resp: Response,
        authz: &super::auth::Authz,
    ) -> Result<Response, ()> {
        let status = resp.status();
        let url = resp.url().clone();
        let headers = resp.headers().clone();
        let version = resp.version();
        let (body, _) = read_limited(resp, MAX_ERROR_BODY, self.client.stall())
            .await
            .unwrap_or_default();
        let detail = ErrorDetail::new(status.as_u16(), &body);
        let expired = super::expiry::says_expired(&detail);
        let mute = detail.errors.is_empty() && detail.body.is_none();
        let inner = &self.client.inner;
        let retry = inner.auth.on_denial(
            inner.opts.credentials.as_ref(),
            &self.registry_host(),
            authz.credential.as_ref(),
            expired,
            mute || (authz.cached && !super::expiry::names_a_permission(&detail)),
        );
        if retry {
            tracing::info!(
                registry = %self.registry_label(),
                expired,
                "the registry refused the credential ({detail}); retrying once with a fresh one"
            );
            crate::events::fallback(
                format!("authenticating to {}", self.registry_label()),
                crate::events::FallbackKind::CredentialRefreshed,
                &format!(
                    "the registry refused the credential ({detail}); retrying once with a fresh one"
                ),
            );
            return Err(());
        }
        Ok(super::expiry::rebuild(status, version, headers, url, body))
    }

    fn auth_required(&self, op: &Op<'_>, detail: String) -> RegistryError {
        RegistryError::AuthRequired {
            registry: self.endpoint.logical_registry.clone(),
            repository: self.endpoint.repository.clone(),
            what: op.what.clone(),
            detail,
        }
    }

    fn auth_failed(&self, op: &Op<'_>, user: String, detail: String) -> RegistryError {
        RegistryError::AuthFailed {
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            user,
            what: op.what.clone(),
            detail,
        }
    }

    pub(crate) fn bad_response(&self, op: &Op<'_>, reason: String) -> RegistryError {
        RegistryError::BadResponse {
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            what: op.what.clone(),
            reason,
        }
    }

    /// The stall watchdog fired.
    pub(crate) fn stalled(&self, op: &Op<'_>) -> RegistryError {
        RegistryError::Timeout {
            what: op.what.clone(),
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            cause: stalled(self.client.stall()),
        }
    }

    /// A body read that failed or stalled.
    pub(crate) fn body_error(&self, op: &Op<'_>, url: &Url, e: &BodyError) -> RegistryError {
        match e {
            BodyError::Http(e) => self.transport_error(op, url, e),
            BodyError::Stalled(_) => self.stalled(op),
        }
    }

    /// A reqwest failure: unreachable, timed out, or dropped mid-request.
    pub(crate) fn transport_error(
        &self,
        op: &Op<'_>,
        url: &Url,
        e: &reqwest::Error,
    ) -> RegistryError {
        let cause = cause_chain(e);
        if e.is_connect() {
            RegistryError::Unreachable {
                host: self.endpoint.host.clone(),
                url: redact_url(url),
                cause,
            }
        } else if e.is_timeout() {
            RegistryError::Timeout {
                what: op.what.clone(),
                registry: self.registry_label(),
                repository: self.endpoint.repository.clone(),
                cause,
            }
        } else {
            RegistryError::ConnectionDropped {
                what: op.what.clone(),
                registry: self.registry_label(),
                repository: self.endpoint.repository.clone(),
                cause,
            }
        }
    }

    /// Turn an unexpected response into the error its status and OCI codes say.
    pub(crate) async fn error_from(&self, op: &Op<'_>, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let known_expired = resp
            .extensions()
            .get::<super::expiry::KnownExpired>()
            .is_some();
        let resp_url = &resp.url().clone();
        let retry_after = parse_retry_after(resp.headers().get(RETRY_AFTER));
        let (body, _) = read_limited(resp, MAX_ERROR_BODY, self.client.stall())
            .await
            .unwrap_or_default();
        let detail = Box::new(ErrorDetail::new(status, &body));
        let registry = self.registry_label();
        let repository = self.endpoint.repository.clone();
        let what = op.what.clone();
        let reference = match op.subject {
            Subject::Manifest(r) => r.to_string(),
            Subject::Blob(d) => d.to_string(),
            Subject::Upload => "(the layer being built)".to_string(),
        };
        if status == 429 || detail.has_code("TOOMANYREQUESTS") {
            return RegistryError::TooManyRequests {
                registry,
                repository,
                what,
                retry_after,
                detail,
            };
        }
        if status == 403 && (known_expired || super::expiry::says_expired(&detail)) {
            let why = if super::expiry::says_expired(&detail) {
                "it says the token has expired"
            } else {
                "the expiry inside the saved token is past"
            };
            return RegistryError::CredentialExpired {
                registry,
                repository,
                what,
                why,
                detail,
            };
        }
        if status == 403 || detail.has_code("DENIED") || detail.has_code("UNAUTHORIZED") {
            let request = RequestKind::classify(&what, resp_url);
            return RegistryError::Denied {
                registry,
                repository,
                what,
                request,
                detail,
            };
        }
        if detail.has_code("NAME_UNKNOWN") {
            return RegistryError::NameUnknown {
                registry,
                repository,
                what,
                detail,
            };
        }
        if detail.has_code("TAG_INVALID") {
            return RegistryError::TagInvalid {
                registry,
                repository,
                reference,
                detail,
            };
        }
        let manifest_codes = [
            "MANIFEST_INVALID",
            "MANIFEST_BLOB_UNKNOWN",
            "MANIFEST_UNVERIFIED",
            "BLOB_UNKNOWN",
        ];
        if let Subject::Manifest(_) = op.subject {
            if detail.has_code("MANIFEST_UNKNOWN") || status == 404 {
                return RegistryError::ManifestUnknown {
                    registry,
                    repository,
                    reference,
                    detail,
                };
            }
            // Amazon ECR refuses a manifest it cannot store with 405 UNSUPPORTED and its reason
            // ("Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON
            // syntax'": opcr-io/policy#149, chainguard-dev/apko#450; an image with no layers:
            // werf/werf#2558): a rejected manifest, not a read-only registry.
            if detail.has_code("UNSUPPORTED") || status == 405 {
                return RegistryError::ManifestInvalid {
                    hint: "the registry does not accept this manifest (Amazon ECR answers 405 UNSUPPORTED for an \
                           image without layers, a media type or OCI 1.1 field it does not support, or a manifest \
                           it cannot parse); its reason is given above",
                    registry,
                    repository,
                    reference,
                    detail,
                };
            }
            if manifest_codes.iter().any(|c| detail.has_code(c))
                || detail.has_code("DIGEST_INVALID")
                || status == 400
            {
                let hint = if detail.has_code("MANIFEST_BLOB_UNKNOWN")
                    || detail.has_code("BLOB_UNKNOWN")
                {
                    "a blob it references is not in the repository: push the blobs first"
                } else if detail.has_code("DIGEST_INVALID") {
                    "the digest in the reference does not match the manifest's bytes"
                } else {
                    "the registry may not support this media type or manifest format"
                };
                return RegistryError::ManifestInvalid {
                    hint,
                    registry,
                    repository,
                    reference,
                    detail,
                };
            }
        }
        if let Subject::Blob(_) = op.subject
            && (detail.has_code("BLOB_UNKNOWN") || status == 404)
        {
            return RegistryError::BlobUnknown {
                registry,
                repository,
                digest: reference,
                what,
                detail,
            };
        }
        RegistryError::Status {
            registry,
            repository,
            what,
            detail,
            retry_after,
        }
    }
}
