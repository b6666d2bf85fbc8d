//! The AWS SDK configuration ocipush uses for ECR: aws-config's default chain (environment,
//! profile incl. SSO / `credential_process` / `role_arn`, web identity, ECS, EC2 IMDSv2), with the
//! region taken from the ECR host when none is configured, and an optional AssumeRole on top
//! (a vendor assuming a customer's role, with an external id).
//!
//! Endpoint overrides come from the environment and are read by aws-config itself:
//! `AWS_ENDPOINT_URL` (every service), `AWS_ENDPOINT_URL_ECR`, `AWS_ENDPOINT_URL_ECR_PUBLIC`,
//! `AWS_ENDPOINT_URL_STS` (or `endpoint_url` in the profile); the IMDS endpoint from
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::ecr_host::EcrHost;

/// The session name used for AssumeRole when none is given.
pub const DEFAULT_SESSION_NAME: &str = "ocipush";

/// How to get AWS credentials (`--profile`, `--role-arn`, `--external-id`, ...). All optional:
/// the default is aws-config's default chain, unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AwsOptions {
    /// A named profile of `~/.aws/config` / `~/.aws/credentials` (`--profile`).
    pub profile: Option<String>,
    /// A role to assume with the credentials the chain found (`--role-arn`).
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires (`--external-id`). Not a secret.
    pub external_id: Option<String>,
    /// The AssumeRole session name (default [`DEFAULT_SESSION_NAME`]).
    pub role_session_name: Option<String>,
    /// The assumed-role session length (default: STS's, one hour).
    pub role_duration: Option<Duration>,
    /// Attempts per AWS call, first included (`--retries` + 1): throttling, 5xx and connection
    /// errors are retried with exponential backoff and jitter. Default: the SDK's (3).
    pub max_attempts: Option<u32>,
    /// Connect and read timeout of each AWS call (`--timeout`). Default: the SDK's.
    pub timeout: Option<Duration>,
}

impl AwsOptions {
    /// The identity these options ask for, for messages: `profile x`, `role arn:… (with an
    /// external id)`, or `None` for the default chain as it is. Never a secret.
    pub fn identity(&self) -> Option<String> {
        let mut parts = vec![];
        if let Some(p) = &self.profile {
            parts.push(format!("profile {p}"));
        }
        if let Some(role) = &self.role_arn {
            let ext = if self.external_id.is_some() {
                " with an external id"
            } else {
                ""
            };
            parts.push(format!("assuming role {role}{ext}"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Load the SDK configuration: the default chain (with `options.profile`), the region from the
/// environment/profile or else `fallback_region` (the ECR host's), and AssumeRole on top when
/// `options.role_arn` is set. Nothing is fetched yet: credentials are resolved on first use.
pub async fn load_sdk_config(options: &AwsOptions, fallback_region: Option<&str>) -> SdkConfig {
    let mut configured = aws_config::default_provider::region::Builder::default();
    if let Some(profile) = &options.profile {
        configured = configured.profile_name(profile);
    }
    let mut region = RegionProviderChain::first_try(configured.build());
    if let Some(r) = fallback_region {
        region = region.or_else(Region::new(r.to_string()));
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region);
    if let Some(attempts) = options.max_attempts {
        // The same shape as the registry client's policy: 0.5 s base, exponential, jittered.
        loader = loader.retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(attempts.max(1))
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(30)),
        );
    }
    if let Some(t) = options.timeout {
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(t.min(Duration::from_secs(30)))
                .read_timeout(t)
                .build(),
        );
    }
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    let config = loader.load().await;
    match &options.role_arn {
        None => config,
        Some(role) => with_assumed_role(config, role, options).await,
    }
}

/// SDK configurations loaded once per (options, fallback region) and shared by every clone:
/// the steps of one job (ECR API destination, repository creation, scan, tokens) use one
/// configuration, so its credentials are resolved (and a `--role-arn` assumed) once, and the
/// SDK's credential cache refreshes them for all.
#[derive(Clone, Default)]
pub struct SdkConfigCache {
    loaded: Arc<Mutex<HashMap<ConfigKey, Arc<tokio::sync::OnceCell<SdkConfig>>>>>,
}

type ConfigKey = (AwsOptions, Option<String>);

impl SdkConfigCache {
    /// The configuration [`load_sdk_config`] gives for `options` and `fallback_region`, loaded
    /// on the first call for them (concurrent first calls wait for one load).
    pub async fn get(&self, options: &AwsOptions, fallback_region: Option<&str>) -> SdkConfig {
        let cell = {
            // A poisoned lock only means another thread panicked while inserting: the map
            // itself is still consistent.
            let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            loaded
                .entry((options.clone(), fallback_region.map(str::to_string)))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| load_sdk_config(options, fallback_region))
            .await
            .clone()
    }
}

impl std::fmt::Debug for SdkConfigCache {
    // Not derived: an SdkConfig's Debug may show credentials. The regions are enough.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let regions: Vec<_> = loaded.keys().map(|(_, region)| region.clone()).collect();
        f.debug_struct("SdkConfigCache")
            .field("fallback_regions", &regions)
            .finish()
    }
}

/// Replace `config`'s credentials with those of `role`, assumed with `config`'s credentials.
async fn with_assumed_role(config: SdkConfig, role: &str, options: &AwsOptions) -> SdkConfig {
    let mut builder = AssumeRoleProvider::builder(role)
        .configure(&config)
        .session_name(
            options
                .role_session_name
                .as_deref()
                .unwrap_or(DEFAULT_SESSION_NAME),
        );
    if let Some(id) = &options.external_id {
        builder = builder.external_id(id);
    }
    if let Some(d) = options.role_duration {
        builder = builder.session_length(d);
    }
    let provider = builder.build().await;
    config
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// An ECR client for `host`'s registry: always in the host's region (a token from another region
/// does not open this registry), FIPS and/or dual-stack as the host is (see [`endpoint_flags`]).
pub fn ecr_client(config: &SdkConfig, host: &EcrHost) -> aws_sdk_ecr::Client {
    let custom_endpoint = config.endpoint_url().is_some()
        || ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let (fips, dual_stack) = endpoint_flags(host, custom_endpoint);
    let mut conf =
        aws_sdk_ecr::config::Builder::from(config).region(Region::new(host.region.clone()));
    // Only ever turned on: an AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT the user set
    // for every service still applies to an IPv4 host.
    if fips {
        conf = conf.use_fips(true);
    }
    if dual_stack {
        conf = conf.use_dual_stack(true);
    }
    aws_sdk_ecr::Client::from_conf(conf.build())
}

/// An ECR Public API client: always in `us-east-1`, the only region the ECR Public API has
/// (<https://docs.aws.amazon.com/general/latest/gr/ecr-public.html>), whatever region the
/// configuration has. Its endpoint follows the SDK's configuration (`AWS_ENDPOINT_URL_ECR_PUBLIC`,
/// `AWS_ENDPOINT_URL`, a profile's `endpoint_url`).
pub fn ecr_public_client(config: &SdkConfig) -> aws_sdk_ecrpublic::Client {
    let conf = aws_sdk_ecrpublic::config::Builder::from(config)
        .region(Region::new(crate::ecr_host::PUBLIC_REGION))
        .build();
    aws_sdk_ecrpublic::Client::from_conf(conf)
}

/// `(use_fips, use_dual_stack)` for the ECR API client of `host`: a FIPS registry host
/// (`dkr.ecr-fips.`, `dkr-ecr-fips.`) gets the FIPS API endpoint, a dual-stack one
/// (`dkr-ecr[-fips].<region>.on.aws`) the dual-stack API endpoint (`ecr[-fips].<region>.api.aws`,
/// <https://docs.aws.amazon.com/general/latest/gr/ecr.html>), so a host with only IPv6 reaches
/// both. With a configured endpoint URL neither: the SDK refuses FIPS/dual-stack with a custom
/// endpoint, and the custom endpoint wins.
pub fn endpoint_flags(host: &EcrHost, custom_endpoint: bool) -> (bool, bool) {
    if custom_endpoint {
        return (false, false);
    }
    (host.fips, host.dual_stack)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::config::endpoint::{DefaultResolver, Params, ResolveEndpoint};

    /// The ECR API endpoint the SDK resolves for a registry host.
    fn api_endpoint(host: &str) -> String {
        let host = EcrHost::parse(host).unwrap();
        let (fips, dual_stack) = endpoint_flags(&host, false);
        let params = Params::builder()
            .region(host.region.clone())
            .use_fips(fips)
            .use_dual_stack(dual_stack)
            .build()
            .unwrap();
        let endpoint =
            futures_util::FutureExt::now_or_never(DefaultResolver::new().resolve_endpoint(&params))
                .expect("the default resolver is synchronous")
                .unwrap();
        endpoint.url().to_string()
    }

    #[test]
    fn api_endpoint_follows_the_registry_host() {
        for (registry, api) in [
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                "https://api.ecr.us-east-1.amazonaws.com",
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                "https://ecr-fips.us-east-1.amazonaws.com",
            ),
            (
                "123456789012.dkr-ecr.us-east-2.on.aws",
                "https://ecr.us-east-2.api.aws",
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-2.on.aws",
                "https://ecr-fips.us-east-2.api.aws",
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "https://api.ecr.cn-north-1.amazonaws.com.cn",
            ),
            (
                "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
                "https://api.ecr.eusc-de-east-1.amazonaws.eu",
            ),
        ] {
            assert_eq!(api_endpoint(registry), api, "{registry}");
        }
        let dual = EcrHost::parse("123456789012.dkr-ecr-fips.us-east-2.on.aws").unwrap();
        assert_eq!(endpoint_flags(&dual, true), (false, false));
    }
}
