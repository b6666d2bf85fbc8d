//! [`EcrCredentialProvider`]: registry credentials for ECR hosts from `GetAuthorizationToken`
//! (user `AWS`, password from the base64 `AWS:<password>` token), cached per registry until the
//! token's `expiresAt`. A token whose `expiresAt` is already past when fetched (moto answers 2015)
//! is kept until [`CredentialProvider::invalidate`], so it is fetched at most once per invalidation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::credentials::{AwsOptions, SdkConfigCache, ecr_client};
use super::errors::{CallContext, EcrError, from_sdk};
use crate::auth::{AuthError, Credential, CredentialProvider, Lease, RegistryHost, Secret};
use crate::ecr_host::EcrHost;

/// The provider name in [`AuthError`]s.
pub const PROVIDER_NAME: &str = "Amazon ECR";

/// Refresh this long before a token's `expiresAt`.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Registry credentials for ECR hosts, from the AWS credential chain. Non-ECR hosts get `None`.
pub struct EcrCredentialProvider {
    options: AwsOptions,
    config: ConfigSource,
    cache: Mutex<HashMap<String, CachedToken>>,
    /// One fetch at a time: parallel blob pushes asking at once share one GetAuthorizationToken.
    fetching: tokio::sync::Mutex<()>,
}

/// Where the provider's SDK configuration comes from.
enum ConfigSource {
    /// One the caller built.
    Fixed(Box<aws_config::SdkConfig>),
    /// Loaded with the provider's options on first use (per ECR host region), possibly shared
    /// with the other ECR steps of a job.
    Cached(SdkConfigCache),
}

#[derive(Clone)]
struct CachedToken {
    username: String,
    password: Secret,
    /// When to fetch again; `None`: keep until invalidated (the token came already expired).
    refresh_after: Option<SystemTime>,
}

impl fmt::Debug for EcrCredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cached: Vec<String> = self
            .cache
            .lock()
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("EcrCredentialProvider")
            .field("options", &self.options)
            .field("cached_registries", &cached)
            .finish_non_exhaustive()
    }
}

impl EcrCredentialProvider {
    /// A provider that loads the AWS configuration (with `options`) on first use, with the ECR
    /// host's region as the fallback region.
    pub fn new(options: AwsOptions) -> Self {
        EcrCredentialProvider::with_config_cache(options, SdkConfigCache::default())
    }

    /// Like [`new`](Self::new), taking the configuration from `configs`, which the caller may
    /// share (e.g. with [`EcrSettings`](crate::job_ecr::EcrSettings)): one job then resolves
    /// its AWS credentials, and assumes `--role-arn`, once.
    pub fn with_config_cache(options: AwsOptions, configs: SdkConfigCache) -> Self {
        EcrCredentialProvider {
            options,
            config: ConfigSource::Cached(configs),
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// A provider using an SDK configuration the caller built.
    pub fn with_sdk_config(config: aws_config::SdkConfig) -> Self {
        EcrCredentialProvider {
            config: ConfigSource::Fixed(Box::new(config)),
            ..EcrCredentialProvider::new(AwsOptions::default())
        }
    }

    /// The token for `host`, from the cache or ECR.
    pub async fn token(&self, host: &EcrHost) -> Result<Credential, EcrError> {
        let key = host.hostname();
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let _guard = self.fetching.lock().await;
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let fetched = self.fetch(host).await?;
        let cred = Credential::Basic {
            username: fetched.username.clone(),
            password: fetched.password.clone(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, fetched);
        }
        Ok(cred)
    }

    /// When the cached token for `host` is due for refresh (`None`: kept until invalidated).
    fn refresh_after_of(&self, host: &EcrHost) -> Option<SystemTime> {
        let cache = self.cache.lock().ok()?;
        cache.get(&host.hostname())?.refresh_after
    }

    fn cached(&self, key: &str) -> Option<Credential> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(key)?;
        match c.refresh_after {
            Some(t) if SystemTime::now() >= t => None,
            _ => Some(Credential::Basic {
                username: c.username.clone(),
                password: c.password.clone(),
            }),
        }
    }

    async fn fetch(&self, host: &EcrHost) -> Result<CachedToken, EcrError> {
        let config = match &self.config {
            ConfigSource::Fixed(c) => c.as_ref().clone(),
            ConfigSource::Cached(configs) => configs.get(&self.options, Some(&host.region)).await,
        };
        let registry = host.hostname();
        let ctx = CallContext {
            operation: "GetAuthorizationToken",
            repository: None,
            registry: &registry,
            item: None,
            identity: self.options.identity(),
        };
        let invalid = |message: &str| EcrError::InvalidResponse {
            operation: "GetAuthorizationToken".into(),
            target: registry.clone(),
            message: message.into(),
        };
        // registryIds is deprecated (a token opens every registry the identity may use) but
        // still honoured; it makes the token explicitly this registry's.
        #[allow(deprecated)]
        let out = ecr_client(&config, host)
            .get_authorization_token()
            .registry_ids(&host.account)
            .send()
            .await
            .map_err(|e| from_sdk(e, &ctx))?;
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| invalid("no authorizationData"))?;
        let encoded = data
            .authorization_token()
            .ok_or_else(|| invalid("no authorizationToken"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| invalid("authorizationToken is not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| invalid("authorizationToken is not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| invalid("authorizationToken is not <user>:<password>"))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let refresh_after = refresh_after(expires_at, SystemTime::now());
        tracing::debug!(registry = %registry, "got an ECR authorization token");
        Ok(CachedToken {
            username: username.to_string(),
            password: Secret::new(password),
            refresh_after,
        })
    }
}

/// When to fetch a token again: a little before it expires; never (until invalidated) when it
/// came already expired, or without an expiry: that avoids a fetch loop on a skewed clock or moto.
fn refresh_after(expires_at: Option<SystemTime>, now: SystemTime) -> Option<SystemTime> {
    let expires_at = expires_at.filter(|t| *t > now)?;
    Some(
        expires_at
            .checked_sub(EXPIRY_MARGIN)
            .filter(|t| *t > now)
            .unwrap_or(now),
    )
}

#[async_trait::async_trait]
impl CredentialProvider for EcrCredentialProvider {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        let Ok(host) = EcrHost::parse(registry.logical) else {
            return Ok(None);
        };
        match self.token(&host).await {
            Ok(c) => Ok(Some(c)),
            Err(e) => Err(AuthError::Provider {
                registry: registry.logical.to_string(),
                provider: PROVIDER_NAME.to_string(),
                message: e.to_string(),
                source: Some(Box::new(e)),
            }),
        }
    }

    /// The token, due for refresh a little before its `expiresAt` (12 hours after issue).
    async fn lease(&self, registry: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
        let Some(credential) = self.credentials(registry).await? else {
            return Ok(None);
        };
        let expires = EcrHost::parse(registry.logical)
            .ok()
            .and_then(|h| self.refresh_after_of(&h));
        Ok(Some(Lease {
            credential,
            expires,
        }))
    }

    fn invalidate(&self, registry: &RegistryHost<'_>) {
        if let Ok(host) = EcrHost::parse(registry.logical)
            && let Ok(mut cache) = self.cache.lock()
        {
            cache.remove(&host.hostname());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn non_ecr_hosts_get_none() {
        let p = EcrCredentialProvider::new(AwsOptions::default());
        for h in ["docker.io", "localhost:5000", "ghcr.io"] {
            let r = p
                .credentials(&RegistryHost {
                    logical: h,
                    endpoint: h,
                })
                .await
                .unwrap();
            assert!(r.is_none(), "{h}");
        }
    }

    #[test]
    fn refresh_policy() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h12 = now + Duration::from_secs(12 * 3600);
        assert_eq!(refresh_after(Some(h12), now), Some(h12 - EXPIRY_MARGIN));
        // Already expired (moto's 2015), or no expiry: keep until invalidated.
        assert_eq!(
            refresh_after(
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_420_070_400)),
                now
            ),
            None
        );
        assert_eq!(refresh_after(None, now), None);
        // Expiring within the margin: due now (used once, then fetched again).
        assert_eq!(
            refresh_after(Some(now + Duration::from_secs(60)), now),
            Some(now)
        );
    }

    #[test]
    fn debug_shows_no_token() {
        let p = EcrCredentialProvider::new(AwsOptions::default());
        p.cache.lock().unwrap().insert(
            "x".into(),
            CachedToken {
                username: "AWS".into(),
                password: Secret::new("s3cr3t-token"),
                refresh_after: None,
            },
        );
        let shown = format!("{p:?}");
        assert!(!shown.contains("s3cr3t-token"), "{shown}");
    }
}
