//! The client's authentication state: the challenge each host answered with, credentials from
//! the provider (cached until invalidated or past their lease), and bearer tokens per (host,
//! scope); and turning them into an `Authorization` header (marked sensitive, so never logged).
//! Credentials are asked for the host actually contacted ([`RegistryHost::for_lookup`]).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use reqwest::header::HeaderValue;

use super::challenge::Challenge;
use super::token::{TokenCache, TokenFailure, fetch_token};
use crate::auth::{AuthError, Credential, CredentialProvider, Lease, RegistryHost};

/// Serialises token fetches for one (host, scope).
type FetchLock = std::sync::Arc<tokio::sync::Mutex<()>>;

/// Challenges, credentials and tokens, shared by a client's repositories.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    challenges: Mutex<HashMap<String, Challenge>>,
    creds: Mutex<HashMap<(String, String), Option<Lease>>>,
    tokens: TokenCache,
    fetch_locks: Mutex<HashMap<(String, String), FetchLock>>,
    /// Hosts where a denial already triggered a credential refresh.
    denial_refreshed: Mutex<HashSet<String>>,
}

/// What to send.
#[derive(Debug, Default)]
pub(crate) struct Authz {
    /// The `Authorization` header, if any.
    pub header: Option<HeaderValue>,
    /// Who we are, for messages: a user name, `identity token`, `bearer token` or `anonymous`.
    pub who: String,
    /// Whether a credential was used.
    pub has_credential: bool,
    /// Whether that credential came from this client's cache (got before this request).
    pub cached: bool,
    /// The credential itself (redacted in `Debug`), to invalidate exactly it.
    pub credential: Option<Credential>,
    /// Whether the credential was already past its known end when used (nothing fresher).
    pub expired: bool,
}

/// Why no header could be made.
#[derive(Debug)]
pub(crate) enum AuthzFailure {
    /// The token server rejected the credentials.
    Rejected {
        detail: String,
        who: String,
        has_credential: bool,
    },
    /// The token server could not be used.
    Failed { reason: String, retryable: bool },
    /// The provider failed.
    Provider(AuthError),
}

fn who(c: Option<&Credential>) -> String {
    match c {
        Some(Credential::Basic { username, .. }) => username.clone(),
        Some(Credential::IdentityToken(_)) => "<identity token>".into(),
        Some(Credential::BearerToken(_)) => "<bearer token>".into(),
        None => "anonymous".into(),
    }
}

fn sensitive(v: String) -> Option<HeaderValue> {
    let mut h = HeaderValue::from_str(&v).ok()?;
    h.set_sensitive(true);
    Some(h)
}

impl AuthState {
    fn fetch_lock(&self, host: &str, scope: &str) -> FetchLock {
        match self.fetch_locks.lock() {
            Ok(mut m) => m
                .entry((host.to_string(), scope.to_string()))
                .or_default()
                .clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }

    pub fn has_challenge(&self, host: &str) -> bool {
        self.challenges
            .lock()
            .map(|c| c.contains_key(host))
            .unwrap_or(false)
    }

    pub fn set_challenge(&self, host: &str, ch: Challenge) {
        if let Ok(mut c) = self.challenges.lock() {
            c.insert(host.to_string(), ch);
        }
    }

    /// The credential for `rh` (asked for the host contacted), and whether it came from the
    /// cache. A cached lease past its end is asked for again.
    async fn credential(
        &self,
        provider: &dyn CredentialProvider,
        rh: &RegistryHost<'_>,
    ) -> Result<(Option<Credential>, bool, bool), AuthError> {
        let lookup = rh.for_lookup();
        let key = (lookup.logical.to_string(), lookup.endpoint.to_string());
        let now = SystemTime::now();
        let cached = self.creds.lock().ok().and_then(|m| m.get(&key).cloned());
        match cached {
            Some(Some(l)) if !l.expired_at(now) => return Ok((Some(l.credential), true, false)),
            Some(None) => return Ok((None, true, false)),
            Some(Some(_)) => {
                tracing::debug!(
                    registry = lookup.logical,
                    "the credential reached its end; refreshing"
                );
                self.tokens.clear_host(rh.endpoint);
            }
            None => {}
        }
        let lease = provider.lease(&lookup).await?;
        if let Ok(mut m) = self.creds.lock() {
            m.insert(key, lease.clone());
        }
        let expired = lease.as_ref().is_some_and(|l| l.expired_at(now));
        Ok((lease.map(|l| l.credential), false, expired))
    }

    /// Forget everything about `rh` and tell the provider its credentials were rejected.
    pub fn invalidate(&self, provider: &dyn CredentialProvider, rh: &RegistryHost<'_>) {
        let lookup = rh.for_lookup();
        provider.invalidate(&lookup);
        if let Ok(mut m) = self.creds.lock() {
            m.remove(&(lookup.logical.to_string(), lookup.endpoint.to_string()));
        }
        self.tokens.clear_host(rh.endpoint);
    }

    /// [`invalidate`](Self::invalidate), unless the cached credential is no longer `used` (a
    /// concurrent request refreshed it already: the provider must not be told the new one
    /// was rejected).
    pub fn invalidate_used(
        &self,
        provider: &dyn CredentialProvider,
        rh: &RegistryHost<'_>,
        used: Option<&Credential>,
    ) {
        let lookup = rh.for_lookup();
        let key = (lookup.logical.to_string(), lookup.endpoint.to_string());
        let current = self.creds.lock().ok().and_then(|m| m.get(&key).cloned());
        let refreshed = match current {
            Some(Some(l)) => Some(&l.credential) != used,
            Some(None) => used.is_some(),
            None => true,
        };
        if refreshed {
            self.tokens.clear_host(rh.endpoint);
            return;
        }
        self.invalidate(provider, rh);
    }

    /// What to do about a 403 answered to `used`: retry with the credential cached now when a
    /// concurrent request already refreshed it; refresh (invalidate) and retry when the registry
    /// said the credential `expired`; when it `may_be_stale` (a denial that cannot say why, a
    /// HEAD's empty body, or a credential cached earlier), refresh once per host — a denial a
    /// fresh credential does not cure is a real one; otherwise give the 403 back. Decided
    /// under one lock, so concurrent denials refresh once.
    pub fn on_denial(
        &self,
        provider: &dyn CredentialProvider,
        rh: &RegistryHost<'_>,
        used: Option<&Credential>,
        expired: bool,
        may_be_stale: bool,
    ) -> bool {
        let lookup = rh.for_lookup();
        let key = (lookup.logical.to_string(), lookup.endpoint.to_string());
        let Ok(mut creds) = self.creds.lock() else {
            return false;
        };
        let current = creds.get(&key).map(|l| l.as_ref().map(|l| &l.credential));
        if current.flatten() != used {
            // Refreshed (or being refreshed) by another request meanwhile.
            return true;
        }
        let refresh = expired
            || (may_be_stale
                && self
                    .denial_refreshed
                    .lock()
                    .map(|mut s| s.insert(rh.endpoint.to_string()))
                    .unwrap_or(false));
        if refresh {
            creds.remove(&key);
            drop(creds);
            provider.invalidate(&lookup);
            self.tokens.clear_host(rh.endpoint);
        }
        refresh
    }

    /// The header for a request to `rh.endpoint` needing `scopes`; a cached token equal to
    /// `rejected` (the header a 401 just refused) is dropped and a new one fetched. A token
    /// realm may be plain `http` only when `http_realm_ok` (the registry is HTTP or insecure).
    #[allow(clippy::too_many_arguments)]
    pub async fn authorize(
        &self,
        http: &reqwest::Client,
        provider: &dyn CredentialProvider,
        rh: &RegistryHost<'_>,
        scopes: &[String],
        rejected: Option<&HeaderValue>,
        stall: std::time::Duration,
        http_realm_ok: bool,
    ) -> Result<Authz, AuthzFailure> {
        let Some(ch) = self
            .challenges
            .lock()
            .ok()
            .and_then(|c| c.get(rh.endpoint).cloned())
        else {
            return Ok(Authz {
                who: "anonymous".into(),
                ..Authz::default()
            });
        };
        let (cred, cached, expired) = self
            .credential(provider, rh)
            .await
            .map_err(AuthzFailure::Provider)?;
        let who = who(cred.as_ref());
        let has_credential = cred.is_some();
        if let Some(Credential::BearerToken(t)) = &cred {
            return Ok(Authz {
                header: sensitive(format!("Bearer {}", t.expose())),
                who,
                has_credential,
                cached,
                credential: cred.clone(),
                expired,
            });
        }
        if ch.is_basic() {
            let header = match &cred {
                Some(Credential::Basic { username, password }) => {
                    let raw = format!("{username}:{}", password.expose());
                    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                    crate::auth::redact::register(&encoded);
                    sensitive(format!("Basic {encoded}"))
                }
                _ => None,
            };
            return Ok(Authz {
                header,
                who,
                has_credential,
                cached,
                credential: cred.clone(),
                expired,
            });
        }
        if !ch.is_bearer() {
            return Ok(Authz {
                header: None,
                who,
                has_credential,
                cached,
                credential: cred.clone(),
                expired,
            });
        }
        let scope_key = scopes.join(" ");
        // One fetch at a time per (host, scope): concurrent requests share the token.
        let lock = self.fetch_lock(rh.endpoint, &scope_key);
        let _guard = lock.lock().await;
        if let Some(t) = self.tokens.get(rh.endpoint, &scope_key) {
            let header = sensitive(format!("Bearer {}", t.value.expose()));
            if header.is_some() && header.as_ref() != rejected {
                return Ok(Authz {
                    header,
                    who,
                    has_credential,
                    cached,
                    credential: cred.clone(),
                    expired,
                });
            }
            self.tokens.remove(rh.endpoint, &scope_key);
        }
        let token = fetch_token(http, &ch, scopes, cred.as_ref(), stall, http_realm_ok)
            .await
            .map_err(|f| match f {
                TokenFailure::Rejected(detail) => AuthzFailure::Rejected {
                    detail,
                    who: who.clone(),
                    has_credential,
                },
                TokenFailure::Failed { reason, retryable } => {
                    AuthzFailure::Failed { reason, retryable }
                }
            })?;
        let header = sensitive(format!("Bearer {}", token.value.expose()));
        self.tokens.put(rh.endpoint, &scope_key, token);
        Ok(Authz {
            header,
            who,
            has_credential,
            cached,
            credential: cred,
            expired,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Leases ending `ttl` from now (negative: already ended), counting the calls.
    #[derive(Debug)]
    struct Leasing {
        ended: bool,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl CredentialProvider for Leasing {
        async fn credentials(
            &self,
            _rh: &RegistryHost<'_>,
        ) -> Result<Option<Credential>, AuthError> {
            unreachable!("the client asks for leases")
        }
        async fn lease(&self, _rh: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let now = SystemTime::now();
            Ok(Some(Lease {
                credential: Credential::Basic {
                    username: format!("AWS{n}"),
                    password: Secret::new("lease-test-password"),
                },
                expires: Some(if self.ended {
                    now - Duration::from_secs(1)
                } else {
                    now + Duration::from_secs(12 * 3600)
                }),
            }))
        }
    }

    #[tokio::test]
    async fn credentials_are_asked_again_past_their_lease() {
        let rh = RegistryHost {
            logical: "1.dkr.ecr.us-east-1.amazonaws.com",
            endpoint: "1.dkr.ecr.us-east-1.amazonaws.com",
        };
        for (ended, expect_calls) in [(false, 1), (true, 3)] {
            let p = Leasing {
                ended,
                calls: AtomicUsize::new(0),
            };
            let st = AuthState::default();
            let (_, cached, _) = st.credential(&p, &rh).await.unwrap();
            assert!(!cached);
            st.credential(&p, &rh).await.unwrap();
            st.credential(&p, &rh).await.unwrap();
            assert_eq!(
                p.calls.load(Ordering::SeqCst),
                expect_calls,
                "ended={ended}"
            );
        }
    }

    #[test]
    fn one_refresh_for_concurrent_denials() {
        let rh = RegistryHost {
            logical: "r.example",
            endpoint: "r.example",
        };
        let p = Leasing {
            ended: false,
            calls: AtomicUsize::new(0),
        };
        let st = AuthState::default();
        let old = Credential::Basic {
            username: "AWS".into(),
            password: Secret::new("old-lease-password"),
        };
        st.creds.lock().unwrap().insert(
            ("r.example".into(), "r.example".into()),
            Some(Lease::forever(old.clone())),
        );
        // A denial that cannot say why: refreshed once per host.
        assert!(st.on_denial(&p, &rh, Some(&old), false, true));
        // A second request denied with the same old credential: already refreshed, retry.
        assert!(st.on_denial(&p, &rh, Some(&old), false, true));
        // The fresh one denied too: a real denial, given back.
        let fresh = Credential::Basic {
            username: "AWS".into(),
            password: Secret::new("fresh-lease-password"),
        };
        st.creds.lock().unwrap().insert(
            ("r.example".into(), "r.example".into()),
            Some(Lease::forever(fresh.clone())),
        );
        assert!(!st.on_denial(&p, &rh, Some(&fresh), false, true));
        // Unless the registry says it expired.
        assert!(st.on_denial(&p, &rh, Some(&fresh), true, false));
    }

    #[test]
    fn headers_and_tokens_are_redacted_in_debug() {
        let a = Authz {
            header: sensitive("Bearer tok-very-secret-123".into()),
            who: "bob".into(),
            has_credential: true,
            cached: false,
            credential: None,
            expired: false,
        };
        let t = super::super::token::Token {
            value: crate::auth::Secret::new("tok-very-secret-456"),
            valid_until: std::time::Instant::now(),
        };
        let shown = format!("{a:?} {t:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("bob"), "{shown}");
    }
}
