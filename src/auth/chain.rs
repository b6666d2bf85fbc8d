//! [`Chain`]: several credential providers tried in order, and [`StaticCredentials`]: fixed
//! credentials (`--username`/`--password`, library use, tests).
//!
//! A chain falls back past a stale credential: one already past its known end (an ECR token
//! in docker's config.json, whose expiry is inside the token), or the very credential the
//! registry rejected ([`CredentialProvider::invalidate`]; a provider that then gives a new
//! one is not passed over), is passed over for the next provider that has one
//! for that registry — so an old `docker login` to ECR gives way to a fresh token from the AWS
//! credential chain (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html>:
//! "an authorization token is valid for 12 hours"). When no later provider has one, the stale
//! one is still used (the registry then says what is wrong).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{AuthError, Credential, CredentialProvider, Lease, RegistryHost};

/// Providers tried in order; the first that has a live credential wins.
#[derive(Debug, Clone, Default)]
pub struct Chain(pub Vec<Arc<dyn CredentialProvider>>, ChainState);

/// Which provider answered last for a registry and with what, and the credentials rejected,
/// by registry.
#[derive(Debug, Clone, Default)]
struct ChainState(Arc<Mutex<HashMap<String, Sources>>>);

#[derive(Debug, Default)]
struct Sources {
    last: Option<(usize, Credential)>,
    rejected: Vec<(usize, Credential)>,
}

impl Chain {
    /// A chain of `providers`.
    pub fn new(providers: Vec<Arc<dyn CredentialProvider>>) -> Chain {
        Chain(providers, ChainState::default())
    }

    fn key(registry: &RegistryHost<'_>) -> String {
        format!("{} {}", registry.logical, registry.endpoint)
    }
}

#[async_trait::async_trait]
impl CredentialProvider for Chain {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        Ok(self.lease(registry).await?.map(|l| l.credential))
    }

    async fn lease(&self, registry: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
        let key = Chain::key(registry);
        let rejected = {
            let m = self.1.0.lock().unwrap_or_else(|e| e.into_inner());
            m.get(&key).map(|s| s.rejected.clone()).unwrap_or_default()
        };
        let now = SystemTime::now();
        let mut stale: Option<(usize, Lease)> = None;
        let mut found: Option<(usize, Lease)> = None;
        for (i, p) in self.0.iter().enumerate() {
            let lease = match p.lease(registry).await {
                Ok(Some(lease)) => lease,
                Ok(None) => continue,
                // Looking past a stale credential: a failing later provider (no AWS
                // credentials here) leaves the stale one to the registry to judge.
                Err(e) if stale.is_some() => {
                    tracing::info!(registry = registry.logical, error = %e, "no fresher credential");
                    crate::events::fallback(
                        format!("authenticating to {}", registry.logical),
                        crate::events::FallbackKind::StaleCredential,
                        &format!(
                            "no fresher credential ({e}); sending the stale one for the registry to judge"
                        ),
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            let was_rejected = rejected
                .iter()
                .any(|(j, c)| *j == i && *c == lease.credential);
            if was_rejected || lease.expired_at(now) {
                tracing::debug!(
                    registry = registry.logical,
                    provider = i,
                    "passing over a stale or rejected credential"
                );
                stale.get_or_insert((i, lease));
                continue;
            }
            found = Some((i, lease));
            break;
        }
        let Some((i, lease)) = found.or(stale) else {
            return Ok(None);
        };
        let mut m = self.1.0.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key).or_default().last = Some((i, lease.credential.clone()));
        Ok(Some(lease))
    }

    fn invalidate(&self, registry: &RegistryHost<'_>) {
        {
            let mut m = self.1.0.lock().unwrap_or_else(|e| e.into_inner());
            let s = m.entry(Chain::key(registry)).or_default();
            if let Some(last) = s.last.take()
                && !s.rejected.contains(&last)
            {
                s.rejected.push(last);
            }
        }
        for p in &self.0 {
            p.invalidate(registry);
        }
    }
}

/// Fixed credentials, for every registry or for named ones.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    entries: Vec<(Option<String>, Credential)>,
}

impl StaticCredentials {
    /// `credential` for every registry.
    pub fn new(credential: Credential) -> StaticCredentials {
        StaticCredentials {
            entries: vec![(None, credential)],
        }
    }

    /// `credential` for `registry` only (matched against the logical registry and the endpoint
    /// host); earlier entries win.
    pub fn with(
        mut self,
        registry: impl Into<String>,
        credential: Credential,
    ) -> StaticCredentials {
        self.entries.push((Some(registry.into()), credential));
        self
    }
}

#[async_trait::async_trait]
impl CredentialProvider for StaticCredentials {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        Ok(self
            .entries
            .iter()
            .find(|(r, _)| match r {
                None => true,
                Some(r) => r == registry.logical || r == registry.endpoint,
            })
            .map(|(_, c)| c.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use std::time::Duration;

    #[derive(Debug)]
    struct Fixed(&'static str, Option<SystemTime>);

    #[async_trait::async_trait]
    impl CredentialProvider for Fixed {
        async fn credentials(
            &self,
            _registry: &RegistryHost<'_>,
        ) -> Result<Option<Credential>, AuthError> {
            unreachable!("the chain asks for leases")
        }
        async fn lease(&self, _registry: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
            Ok(Some(Lease {
                credential: Credential::Basic {
                    username: self.0.into(),
                    password: Secret::new("chain-test-password"),
                },
                expires: self.1,
            }))
        }
    }

    /// A new credential each time (`aws-0`, `aws-1`, …), as a token provider after
    /// invalidation.
    #[derive(Debug)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl CredentialProvider for Counting {
        async fn credentials(
            &self,
            _registry: &RegistryHost<'_>,
        ) -> Result<Option<Credential>, AuthError> {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Some(Credential::Basic {
                username: format!("aws-{n}"),
                password: Secret::new("counting-password"),
            }))
        }
    }

    #[derive(Debug)]
    struct Failing;

    #[async_trait::async_trait]
    impl CredentialProvider for Failing {
        async fn credentials(
            &self,
            registry: &RegistryHost<'_>,
        ) -> Result<Option<Credential>, AuthError> {
            Err(AuthError::Provider {
                registry: registry.logical.into(),
                provider: "failing".into(),
                message: "no AWS credentials".into(),
                source: None,
            })
        }
    }

    fn user(l: Option<Lease>) -> String {
        match l.map(|l| l.credential) {
            Some(Credential::Basic { username, .. }) => username,
            other => format!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn stale_and_rejected_credentials_give_way() {
        let rh = RegistryHost {
            logical: "1.dkr.ecr.us-east-1.amazonaws.com",
            endpoint: "1.dkr.ecr.us-east-1.amazonaws.com",
        };
        let past = SystemTime::now() - Duration::from_secs(60);
        // An expired config.json entry gives way to the next provider.
        let c = Chain::new(vec![
            Arc::new(Fixed("config", Some(past))),
            Arc::new(Fixed("aws", None)),
        ]);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "aws");
        // A rejected one too, for that registry only.
        let c = Chain::new(vec![
            Arc::new(Fixed("config", None)),
            Arc::new(Fixed("aws", None)),
        ]);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "config");
        c.invalidate(&rh);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "aws");
        let other = RegistryHost {
            logical: "other.example",
            endpoint: "other.example",
        };
        assert_eq!(user(c.lease(&other).await.unwrap()), "config");
        // A later provider that fails leaves the stale one.
        let c = Chain::new(vec![
            Arc::new(Fixed("config", Some(past))),
            Arc::new(Failing),
        ]);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "config");
        // Without a stale one, its error is the answer.
        let c = Chain::new(vec![Arc::new(Failing)]);
        assert!(c.lease(&rh).await.is_err());
        // A provider that gives a new credential after a rejection is used again.
        let c = Chain::new(vec![
            Arc::new(Fixed("config", None)),
            Arc::new(Counting(std::sync::atomic::AtomicUsize::new(0))),
        ]);
        let first = RegistryHost {
            logical: "x.example",
            endpoint: "x.example",
        };
        // `config` rejected, then `aws-0`; `aws-1` is new.
        assert_eq!(user(c.lease(&first).await.unwrap()), "config");
        c.invalidate(&first);
        assert_eq!(user(c.lease(&first).await.unwrap()), "aws-0");
        c.invalidate(&first);
        assert_eq!(user(c.lease(&first).await.unwrap()), "aws-1");
        // With nothing after it, the stale one is still used.
        let c = Chain::new(vec![Arc::new(Fixed("only", Some(past)))]);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "only");
        c.invalidate(&rh);
        assert_eq!(user(c.lease(&rh).await.unwrap()), "only");
    }
}
