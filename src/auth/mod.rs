//! Registry credentials: the [`CredentialProvider`] trait and the [`Credential`] / [`Secret`]
//! types (whose `Debug` and `Display` never show the secret). Providers: docker `config.json`
//! (auths, credHelpers, credsStore), ECR via the AWS credential chain (feature `ecr`), and chains.

use std::fmt;

/// A secret string: never shown by `Debug` or `Display`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret (and register it with [`redact`], so logs never show it).
    pub fn new(s: impl Into<String>) -> Secret {
        let s = s.into();
        redact::register(&s);
        Secret(s)
    }
    /// The secret itself; only for putting it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Credentials for one registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credential {
    /// Username and password (also ECR's `AWS` + token): sent as Basic, or to a Bearer token realm.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password or token.
        password: Secret,
    },
    /// An OAuth2 refresh token (docker config `identitytoken`), exchanged at the token realm.
    IdentityToken(Secret),
    /// A registry bearer token used as is.
    BearerToken(Secret),
}

/// Which registry credentials are wanted for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryHost<'a> {
    /// The registry as the user named it (after normalisation: `docker.io`,
    /// `123456789012.dkr.ecr.us-east-1.amazonaws.com`, `localhost:5000`).
    pub logical: &'a str,
    /// The host actually contacted, after registries.conf remapping (often the same).
    pub endpoint: &'a str,
}

/// Why credentials could not be had. Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A provider failed (helper crashed, AWS call failed, config unreadable).
    #[error("could not get credentials for {registry} from {provider}: {message}")]
    Provider {
        /// The registry.
        registry: String,
        /// Which provider (`docker config.json`, `docker-credential-pass`, `Amazon ECR`).
        provider: String,
        /// What went wrong and what to do.
        message: String,
        /// The cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

/// A source of registry credentials.
#[async_trait::async_trait]
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    /// Credentials for `registry`, or `None` when this provider has none for it (anonymous).
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError>;

    /// The registry rejected what `credentials` returned (a 401 mid-push): drop any cache, so
    /// the next call fetches afresh (an expired ECR token). Default: nothing cached.
    fn invalidate(&self, _registry: &RegistryHost<'_>) {}
}

/// No credentials for anything: every registry is accessed anonymously.
#[derive(Debug, Default, Clone)]
pub struct Anonymous;

#[async_trait::async_trait]
impl CredentialProvider for Anonymous {
    async fn credentials(
        &self,
        _registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let c = Credential::Basic {
            username: "AWS".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{c:?} {}", Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

mod chain;
mod cred_helper;
mod docker_config;
pub mod redact;

pub use chain::{Chain, StaticCredentials};
pub use cred_helper::CredentialHelper;
pub use docker_config::{DockerConfigProvider, canonical_host};
