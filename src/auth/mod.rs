//! Registry credentials: the [`CredentialProvider`] trait and the [`Credential`] / [`Secret`]
//! types (whose `Debug` and `Display` never show the secret). Providers: docker `config.json`
//! (auths, credHelpers, credsStore), ECR via the AWS credential chain (feature `ecr`), and chains.

use std::fmt;
use std::time::SystemTime;

/// A secret string: never shown by `Debug` or `Display`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret (and register it with [`redact::register`], in the current job's set or
    /// the process-level one, so logs never show it).
    pub fn new(s: impl Into<String>) -> Secret {
        let s = s.into();
        redact::register(&s);
        Secret(s)
    }
    /// The secret itself; only for putting it on the wire. It is registered again (see
    /// [`redact`]), in the set of the job that exposes it: a secret made elsewhere (outside any
    /// job, or in another session's) is scrubbed from this job's output too.
    pub fn expose(&self) -> &str {
        redact::register(&self.0);
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

/// A credential and the time after which it should not be used any more (an ECR token's
/// `expiresAt` less a margin); `None`: no known end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The credential.
    pub credential: Credential,
    /// Refresh after this.
    pub expires: Option<SystemTime>,
}

impl Lease {
    /// A credential with no known end.
    pub fn forever(credential: Credential) -> Lease {
        Lease {
            credential,
            expires: None,
        }
    }

    /// Whether it is past its end at `now`.
    pub fn expired_at(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
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

impl<'a> RegistryHost<'a> {
    /// The registry whose credentials may be sent to the host contacted: credentials are
    /// looked up by the host actually contacted (containers/image: `newDockerClientFromRef`
    /// looks them up for the rewritten reference, `docker/docker_client.go`), so a registries.conf
    /// `location` pointing Docker Hub or ECR at a mirror never hands the mirror their
    /// credentials. The one exception is a loopback endpoint (`localhost`, 127.0.0.0/8, `::1`):
    /// a tunnel or local stand-in on this machine, which gets the named registry's credentials.
    pub fn for_lookup(&self) -> RegistryHost<'a> {
        let same = docker_config::canonical_host(self.endpoint)
            == docker_config::canonical_host(self.logical);
        if same || crate::registries_conf::is_loopback(self.endpoint) {
            self.clone()
        } else {
            RegistryHost {
                logical: self.endpoint,
                endpoint: self.endpoint,
            }
        }
    }
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

    /// Like [`credentials`](Self::credentials), with the time the credential should be
    /// refreshed after, when the provider knows it. Default: no known end.
    async fn lease(&self, registry: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
        Ok(self.credentials(registry).await?.map(Lease::forever))
    }

    /// The registry rejected what `credentials` returned (a 401 mid-push, an ECR 403 "token
    /// has expired"): drop any cache, so the next call fetches afresh. Default: nothing cached.
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
    fn lookup_follows_the_host_contacted() {
        let h = |logical, endpoint| RegistryHost { logical, endpoint };
        // Same registry (Docker Hub's API host counts as docker.io): unchanged.
        assert_eq!(
            h("docker.io", "registry-1.docker.io").for_lookup(),
            h("docker.io", "registry-1.docker.io")
        );
        // A mirror elsewhere: only its own credentials.
        assert_eq!(
            h("docker.io", "mirror.example").for_lookup(),
            h("mirror.example", "mirror.example")
        );
        assert_eq!(
            h("1.dkr.ecr.us-east-1.amazonaws.com", "cache.example:5000").for_lookup(),
            h("cache.example:5000", "cache.example:5000")
        );
        // A loopback tunnel or stand-in: the named registry's.
        assert_eq!(
            h("1.dkr.ecr.us-east-1.amazonaws.com", "127.0.0.1:5000").for_lookup(),
            h("1.dkr.ecr.us-east-1.amazonaws.com", "127.0.0.1:5000")
        );
    }

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

pub mod aws_profile;
mod chain;
mod cred_helper;
mod docker_config;
pub mod redact;

pub use chain::{Chain, StaticCredentials};
pub use cred_helper::CredentialHelper;
pub use docker_config::ecr_password_expiry;
pub use docker_config::{DockerConfigProvider, canonical_host};
