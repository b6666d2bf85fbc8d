//! `--retries`, `--timeout`, `--ca-cert` and `--chunk-size`: the registry client's retry policy,
//! stall timeout, extra TLS roots and upload chunk size, the bound on docker credential helpers,
//! and (with ECR) the same retry and timeout for the AWS calls. Shared by
//! the build and `ocipush copy`.

use std::sync::Arc;
use std::time::Duration;

use ocipush::auth::CredentialProvider;
use ocipush::registry::{CaCert, ClientOptions, RegistryClient, RetryPolicy};

use super::Failure;
use super::args::ReliabilityArgs;

/// The registry client these flags ask for.
pub(crate) fn client(
    args: &ReliabilityArgs,
    credentials: Arc<dyn CredentialProvider>,
    insecure: bool,
) -> Result<RegistryClient, Failure> {
    let stall = Duration::from_secs(args.timeout);
    let mut ca_certs = Vec::new();
    for path in &args.ca_certs {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::failed(format!("cannot read --ca-cert {}: {e}", path.display()))
        })?;
        ca_certs.push(CaCert {
            origin: path.display().to_string(),
            pem,
        });
    }
    let attempts = args.retries.saturating_add(1);
    RegistryClient::new(ClientOptions {
        credentials,
        insecure,
        retry: RetryPolicy::with_retries(args.retries, stall.saturating_mul(attempts)),
        connect_timeout: stall.min(Duration::from_secs(30)),
        stall_timeout: stall,
        ca_certs,
        chunk_size: args.chunk_size,
        ..ClientOptions::default()
    })
    .map_err(|e| Failure::failed(e.to_string()))
}

/// How long a docker credential helper may run: the registry timeout (`--timeout`).
pub(crate) fn helper_timeout(args: &ReliabilityArgs) -> Duration {
    Duration::from_secs(args.timeout)
}

/// The AWS options these flags ask for (the ECR API transport and ECR tokens): attempts per
/// call and the per-call timeout; the identity fields are left at their defaults.
#[cfg(feature = "ecr")]
pub(crate) fn aws_options(args: &ReliabilityArgs) -> ocipush::ecr::AwsOptions {
    ocipush::ecr::AwsOptions {
        max_attempts: Some(args.retries.saturating_add(1)),
        timeout: Some(Duration::from_secs(args.timeout)),
        ..Default::default()
    }
}

/// The session of a command without identity flags (`ocipush copy` to `dest`) over
/// `registries`: credentials from docker `config.json`, then (with ECR) tokens from the default
/// AWS chain, fetched with these flags' retries and timeout, from the session's own ECR settings
/// (so a refused push to Amazon ECR Public can say why there was no token).
pub(crate) fn session(
    args: &ReliabilityArgs,
    registries: ocipush::registries_conf::RegistriesConf,
    insecure: bool,
    #[allow(unused_variables)] dest: &ocipush::pipeline::Target,
) -> Result<ocipush::pipeline::Session, Failure> {
    #[cfg(feature = "ecr")]
    let ecr = ocipush::pipeline::ecr::EcrSettings {
        aws: aws_options(args),
        public_tokens: ocipush::pipeline::ecr::EcrSettings::public_tokens_for(dest),
        ..Default::default()
    };
    #[cfg(feature = "ecr")]
    let credentials = ocipush::pipeline::credentials_for(&ecr, helper_timeout(args));
    #[cfg(not(feature = "ecr"))]
    let credentials = ocipush::pipeline::default_credentials(helper_timeout(args));
    let credentials = credentials.map_err(|e| Failure::failed(e.to_string()))?;
    let session =
        ocipush::pipeline::Session::with_client(registries, client(args, credentials, insecure)?)
            .with_redactor(super::redacted_log::session_redactor());
    #[cfg(feature = "ecr")]
    let session = session.with_ecr(ecr);
    Ok(session)
}
