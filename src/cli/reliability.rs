//! `--retries`, `--timeout` and `--ca-cert`: the registry client's retry policy, stall timeout
//! and extra TLS roots.

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
        ..ClientOptions::default()
    })
    .map_err(|e| Failure::failed(e.to_string()))
}
