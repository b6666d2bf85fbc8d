//! Bearer tokens (the distribution token protocol): `GET realm?service=&scope=` with Basic
//! credentials (anonymous without), or an OAuth2 `POST` with a `refresh_token` for identity
//! tokens; and the per-(host, scope) cache, valid until `expires_in`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::challenge::Challenge;
use super::http::read_limited;
use crate::auth::{Credential, Secret};

/// The most a token response may be.
pub const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;
/// Assumed lifetime of a token whose response gives none (the spec's default).
const DEFAULT_EXPIRES_IN: u64 = 60;

/// A bearer token and when to stop using it.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub value: Secret,
    pub valid_until: Instant,
}

/// Why a token could not be had.
#[derive(Debug)]
pub(crate) enum TokenFailure {
    /// The token server refused the credentials (401/403): what it said.
    Rejected(String),
    /// Anything else: unreachable, bad response; a message, and whether a retry may help.
    Failed { reason: String, retryable: bool },
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Tokens per (host, scopes).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), Token>>,
}

impl TokenCache {
    pub fn get(&self, host: &str, scope: &str) -> Option<Token> {
        let map = self.tokens.lock().ok()?;
        map.get(&(host.to_string(), scope.to_string()))
            .filter(|t| t.valid_until > Instant::now())
            .cloned()
    }
    pub fn put(&self, host: &str, scope: &str, token: Token) {
        if let Ok(mut map) = self.tokens.lock() {
            map.insert((host.to_string(), scope.to_string()), token);
        }
    }
    pub fn remove(&self, host: &str, scope: &str) {
        if let Ok(mut map) = self.tokens.lock() {
            map.remove(&(host.to_string(), scope.to_string()));
        }
    }
    pub fn clear_host(&self, host: &str) {
        if let Ok(mut map) = self.tokens.lock() {
            map.retain(|(h, _), _| h != host);
        }
    }
}

/// Fetch a token from the challenge's realm for `scopes`.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    scopes: &[String],
    credential: Option<&Credential>,
    stall: Duration,
    http_realm_ok: bool,
) -> Result<Token, TokenFailure> {
    let failed = |reason: String, retryable: bool| TokenFailure::Failed { reason, retryable };
    let realm = challenge
        .param("realm")
        .ok_or_else(|| failed("its Bearer challenge has no realm".into(), false))?;
    let mut url = url::Url::parse(realm).map_err(|e| {
        failed(
            format!("its token realm {realm:?} is not a URL ({e})"),
            false,
        )
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(failed(
            format!("its token realm {realm:?} is not http(s)"),
            false,
        ));
    }
    if !super::origin::realm_allowed(&url, if http_realm_ok { "http" } else { "https" }, false) {
        return Err(failed(
            format!(
                "its token realm {} is plain http while the registry is https: credentials are \
                 not sent in clear; fix the registry's token service URL, or mark the registry \
                 insecure (--insecure or registries.conf `insecure = true`) if it is trusted",
                super::origin::origin_label(&url)
            ),
            false,
        ));
    }
    let service = challenge.param("service");
    let started = Instant::now();
    let request = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", refresh.expose());
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            form.append_pair("scope", &scopes.join(" "));
            form.append_pair("client_id", "ocipush");
            http.post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(form.finish())
        }
        other => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes {
                    q.append_pair("scope", s);
                }
            }
            let rb = http.get(url.clone());
            match other {
                Some(Credential::Basic { username, password }) => {
                    use base64::Engine as _;
                    crate::auth::redact::register(
                        &base64::engine::general_purpose::STANDARD
                            .encode(format!("{username}:{}", password.expose())),
                    );
                    rb.basic_auth(username, Some(password.expose()))
                }
                _ => rb,
            }
        }
    };
    let mut shown = url.clone();
    shown.set_query(None);
    tracing::debug!(realm = %shown, scopes = ?scopes, "fetching registry token");
    let resp = tokio::time::timeout(stall, request.send())
        .await
        .map_err(|_| {
            failed(
                format!(
                    "its token server {shown} did not answer: {}",
                    super::http::stalled(stall)
                ),
                true,
            )
        })?
        .map_err(|e| {
            let retryable = e.is_connect() || e.is_timeout() || e.is_request();
            failed(
                format!(
                    "cannot reach its token server {shown}: {}",
                    super::http::cause_chain(&e)
                ),
                retryable,
            )
        })?;
    let status = resp.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        let (body, _) = read_limited(resp, 64 * 1024, stall)
            .await
            .unwrap_or_default();
        let detail = super::error::ErrorDetail::new(status.as_u16(), &body);
        return Err(TokenFailure::Rejected(format!(
            "token server {shown} answered {detail}"
        )));
    }
    if !status.is_success() {
        let (body, _) = read_limited(resp, 64 * 1024, stall)
            .await
            .unwrap_or_default();
        let detail = super::error::ErrorDetail::new(status.as_u16(), &body);
        return Err(failed(
            format!("its token server {shown} answered {detail}"),
            status.is_server_error() || status.as_u16() == 429,
        ));
    }
    let (body, truncated) = read_limited(resp, MAX_TOKEN_RESPONSE, stall)
        .await
        .map_err(|e| {
            failed(
                format!("reading the token from {shown} failed: {}", e.describe()),
                true,
            )
        })?;
    if truncated {
        return Err(failed(
            format!("the token response from {shown} is larger than {MAX_TOKEN_RESPONSE} bytes"),
            false,
        ));
    }
    // The error of a failed parse could quote the body (the token): do not show it.
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
        failed(
            format!("the token response from {shown} is not the expected JSON"),
            false,
        )
    })?;
    let value = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| {
            failed(
                format!("the token response from {shown} has no token"),
                false,
            )
        })?;
    let lifetime = parsed
        .expires_in
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_EXPIRES_IN);
    // Stop using it a little early (a tenth of its life, at most 30 s).
    let margin = (lifetime / 10).min(30);
    Ok(Token {
        value: Secret::new(value),
        valid_until: started + Duration::from_secs(lifetime - margin),
    })
}
