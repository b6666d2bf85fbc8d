//! [`EcrCredentialProvider`]: registry credentials for ECR hosts from `GetAuthorizationToken`
//! (user `AWS`, password from the base64 `AWS:<password>` token), cached per registry until the
//! token's `expiresAt`. A token whose `expiresAt` is already past when fetched (moto answers 2015)
//! is kept until [`CredentialProvider::invalidate`], so it is fetched at most once per invalidation.
//!
//! Amazon ECR Public (`public.ecr.aws`) gets its token the same way from the ECR Public API's
//! `GetAuthorizationToken`, in us-east-1 (the only region it has): the same base64 `AWS:<password>`
//! with an `expiresAt`, which the registry's Bearer token realm takes as Basic credentials
//! (<https://docs.aws.amazon.com/AmazonECR/latest/public/public-registry-auth.html>). Pulls from
//! ECR Public need no credentials, so when that token cannot be had (no AWS credentials, an
//! identity without `ecr-public:GetAuthorizationToken` / `sts:GetServiceBearerToken`) the registry
//! is used anonymously and the reason is kept ([`PublicTokens`]) to explain a refused push; a job
//! that does not push to ECR Public may skip the token altogether.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::credentials::{AwsOptions, SdkConfigCache, ecr_client, ecr_public_client};
use super::errors::{CallContext, EcrError, action_in_message, from_sdk};
use crate::auth::{AuthError, Credential, CredentialProvider, Lease, RegistryHost, Secret};
use crate::ecr_host::{EcrHost, EcrPublicRepository, PUBLIC_HOST, PUBLIC_REGION};

/// The provider name in [`AuthError`]s.
pub const PROVIDER_NAME: &str = "Amazon ECR";

/// Refresh this long before a token's `expiresAt`.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Registry credentials for ECR hosts and ECR Public, from the AWS credential chain. Other
/// hosts get `None`.
pub struct EcrCredentialProvider {
    options: AwsOptions,
    config: ConfigSource,
    cache: Mutex<HashMap<String, CachedToken>>,
    /// One fetch at a time: parallel blob pushes asking at once share one GetAuthorizationToken.
    fetching: tokio::sync::Mutex<()>,
    /// Whether ECR Public tokens are fetched, and why the last one could not be had.
    public_failures: PublicTokens,
}

/// Whether Amazon ECR Public tokens are fetched at all, and why the last one could not be had
/// (the error's text, never a secret); shared between a provider and whoever explains a refused
/// push (see [`EcrSettings`](crate::pipeline::ecr::EcrSettings)). Clones share the record. By default
/// tokens are fetched; a job that does not push to ECR Public may turn that off
/// ([`PublicTokens::new`]`(false)`), so a base image `FROM public.ecr.aws/…` is pulled
/// anonymously without asking the AWS credential chain anything (which, on a machine without
/// AWS credentials, goes as far as probing for EC2 instance metadata).
#[derive(Debug, Clone)]
pub struct PublicTokens(std::sync::Arc<PublicTokensInner>);

#[derive(Debug)]
struct PublicTokensInner {
    fetch: bool,
    last_failure: Mutex<Option<String>>,
}

impl Default for PublicTokens {
    fn default() -> Self {
        PublicTokens::new(true)
    }
}

impl PublicTokens {
    /// A new record; `fetch`: whether ECR Public tokens are fetched.
    pub fn new(fetch: bool) -> Self {
        PublicTokens(std::sync::Arc::new(PublicTokensInner {
            fetch,
            last_failure: Mutex::new(None),
        }))
    }

    /// Whether ECR Public tokens are fetched.
    pub fn fetches(&self) -> bool {
        self.0.fetch
    }

    /// The last failure, if the last attempt failed.
    pub fn last_failure(&self) -> Option<String> {
        self.0
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keep `failure` as the outcome of the last attempt (`None`: it succeeded).
    pub(crate) fn record(&self, failure: Option<String>) {
        *self
            .0
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = failure;
    }
}

/// Which registry a token is for.
#[derive(Debug, Clone, Copy)]
enum TokenFor<'a> {
    /// A private ECR registry.
    Private(&'a EcrHost),
    /// Amazon ECR Public.
    Public,
}

impl TokenFor<'_> {
    /// The registry for `host`, if ECR or ECR Public.
    fn of(host: &str) -> Option<TokenFor<'static>> {
        if EcrPublicRepository::is_public_host(host) {
            return Some(TokenFor::Public);
        }
        None
    }

    /// The cache key: the registry's canonical host name.
    fn key(&self) -> String {
        match self {
            TokenFor::Private(h) => h.hostname(),
            TokenFor::Public => PUBLIC_HOST.to_string(),
        }
    }
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
    /// share (e.g. with [`EcrSettings`](crate::pipeline::ecr::EcrSettings)): one job then resolves
    /// its AWS credentials, and assumes `--role-arn`, once.
    pub fn with_config_cache(options: AwsOptions, configs: SdkConfigCache) -> Self {
        EcrCredentialProvider {
            options,
            config: ConfigSource::Cached(configs),
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            public_failures: PublicTokens::default(),
        }
    }

    /// Fetch ECR Public tokens or not as `log` says, and record there why one could not be
    /// had (`log` is shared with the caller).
    pub fn with_public_tokens(mut self, log: PublicTokens) -> Self {
        self.public_failures = log;
        self
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
        self.token_for(TokenFor::Private(host)).await
    }

    /// The Amazon ECR Public token, from the cache or the ECR Public API (us-east-1).
    pub async fn public_token(&self) -> Result<Credential, EcrError> {
        self.token_for(TokenFor::Public).await
    }

    async fn token_for(&self, registry: TokenFor<'_>) -> Result<Credential, EcrError> {
        let key = registry.key();
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let _guard = self.fetching.lock().await;
        if let Some(c) = self.cached(&key) {
            return Ok(c);
        }
        let fetched = match registry {
            TokenFor::Private(host) => self.fetch(host).await?,
            TokenFor::Public => self.fetch_public().await?,
        };
        let cred = Credential::Basic {
            username: fetched.username.clone(),
            password: fetched.password.clone(),
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, fetched);
        }
        Ok(cred)
    }

    /// When the cached token for `registry` is due for refresh (`None`: kept until invalidated).
    fn refresh_after_of(&self, registry: TokenFor<'_>) -> Option<SystemTime> {
        let cache = self.cache.lock().ok()?;
        cache.get(&registry.key())?.refresh_after
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

    /// ECR Public's `GetAuthorizationToken` (no registry id: one token opens every public
    /// registry the identity may push to). AccessDenied names both actions the token needs.
    async fn fetch_public(&self) -> Result<CachedToken, EcrError> {
        let config = match &self.config {
            ConfigSource::Fixed(c) => c.as_ref().clone(),
            ConfigSource::Cached(configs) => configs.get(&self.options, Some(PUBLIC_REGION)).await,
        };
        let ctx = CallContext {
            operation: "GetAuthorizationToken",
            repository: None,
            registry: PUBLIC_HOST,
            item: None,
            identity: self.options.identity(),
        };
        let invalid = |message: &str| EcrError::InvalidResponse {
            operation: "GetAuthorizationToken".into(),
            target: PUBLIC_HOST.into(),
            message: message.into(),
        };
        let out = ecr_public_client(&config)
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| match from_sdk(e, &ctx) {
                EcrError::AccessDenied { message, .. } => EcrError::PublicTokenDenied {
                    missing: action_in_message(&message),
                    identity: self.options.identity(),
                    message,
                },
                other => other,
            })?;
        let data = out
            .authorization_data()
            .ok_or_else(|| invalid("no authorizationData"))?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let token = decode_token(data.authorization_token(), expires_at).map_err(invalid)?;
        tracing::debug!(
            registry = PUBLIC_HOST,
            "got an ECR Public authorization token"
        );
        Ok(token)
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
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let token = decode_token(data.authorization_token(), expires_at).map_err(invalid)?;
        tracing::debug!(registry = %registry, "got an ECR authorization token");
        Ok(token)
    }
}

/// The credential inside an `authorizationToken` (base64 `AWS:<password>`), due for refresh
/// a little before `expires_at`; else what is wrong with it.
fn decode_token(
    encoded: Option<&str>,
    expires_at: Option<SystemTime>,
) -> Result<CachedToken, &'static str> {
    let encoded = encoded.ok_or("no authorizationToken")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "authorizationToken is not base64")?;
    let decoded = String::from_utf8(decoded).map_err(|_| "authorizationToken is not UTF-8")?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or("authorizationToken is not <user>:<password>")?;
    Ok(CachedToken {
        username: username.to_string(),
        password: Secret::new(password),
        refresh_after: refresh_after(expires_at, SystemTime::now()),
    })
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
        if EcrPublicRepository::is_public_host(registry.logical) {
            return Ok(self.public_credentials().await);
        }
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
        let expires = if EcrPublicRepository::is_public_host(registry.logical) {
            self.refresh_after_of(TokenFor::Public)
        } else {
            EcrHost::parse(registry.logical)
                .ok()
                .and_then(|h| self.refresh_after_of(TokenFor::Private(&h)))
        };
        Ok(Some(Lease {
            credential,
            expires,
        }))
    }

    fn invalidate(&self, registry: &RegistryHost<'_>) {
        let key = match (
            TokenFor::of(registry.logical),
            EcrHost::parse(registry.logical),
        ) {
            (Some(public), _) => public.key(),
            (None, Ok(host)) => host.hostname(),
            (None, Err(_)) => return,
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&key);
        }
    }
}

impl EcrCredentialProvider {
    /// The ECR Public token as registry credentials, or `None` (anonymous) when it cannot be
    /// had: ECR Public serves pulls without credentials, so a base image from it must not fail
    /// for want of a token. Why is kept in the [`PublicTokens`] (and logged), to explain a
    /// push the registry then refuses.
    async fn public_credentials(&self) -> Option<Credential> {
        if !self.public_failures.fetches() {
            return None;
        }
        match self.public_token().await {
            Ok(c) => {
                self.public_failures.record(None);
                Some(c)
            }
            Err(e) => {
                tracing::info!(
                    registry = PUBLIC_HOST,
                    error = %e,
                    "no Amazon ECR Public token; going on without credentials (pulls need none)"
                );
                crate::events::fallback(
                    format!("authenticating to {PUBLIC_HOST}"),
                    crate::events::FallbackKind::AnonymousPull,
                    &format!(
                        "no Amazon ECR Public token ({e}); going on without credentials (pulls need none)"
                    ),
                );
                self.public_failures.record(Some(e.to_string()));
                None
            }
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

    #[test]
    fn tokens_decode_to_basic_credentials() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("AWS:pass:word");
        let t = decode_token(Some(&encoded), None).unwrap();
        assert_eq!(
            (t.username.as_str(), t.password.expose()),
            ("AWS", "pass:word")
        );
        assert_eq!(t.refresh_after, None);
        assert!(decode_token(None, None).is_err());
        assert!(decode_token(Some("%%%"), None).is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("AWS");
        assert!(decode_token(Some(&no_colon), None).is_err());
    }

    #[tokio::test]
    async fn ecr_public_without_a_token_is_anonymous_and_says_why() {
        // No credentials provider at all: the ECR Public call fails before anything is sent.
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let log = PublicTokens::default();
        let p = EcrCredentialProvider::with_sdk_config(config).with_public_tokens(log.clone());
        let public = RegistryHost {
            logical: "public.ecr.aws",
            endpoint: "127.0.0.1:5000",
        };
        assert_eq!(p.credentials(&public).await.unwrap(), None);
        let why = log.last_failure().expect("the failure is kept");
        assert!(why.contains("GetAuthorizationToken"), "{why}");
        assert!(p.lease(&public).await.unwrap().is_none());

        // Not fetched at all when turned off: nothing to record.
        let off = PublicTokens::new(false);
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let p = EcrCredentialProvider::with_sdk_config(config).with_public_tokens(off.clone());
        assert_eq!(p.credentials(&public).await.unwrap(), None);
        assert_eq!(off.last_failure(), None);
    }
}
