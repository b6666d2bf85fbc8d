//! [`Chain`]: several credential providers tried in order, and [`StaticCredentials`]: fixed
//! credentials (`--username`/`--password`, library use, tests).

use std::sync::Arc;

use super::{AuthError, Credential, CredentialProvider, RegistryHost};

/// Providers tried in order; the first that has credentials wins.
#[derive(Debug, Clone, Default)]
pub struct Chain(pub Vec<Arc<dyn CredentialProvider>>);

#[async_trait::async_trait]
impl CredentialProvider for Chain {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        for p in &self.0 {
            if let Some(c) = p.credentials(registry).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn invalidate(&self, registry: &RegistryHost<'_>) {
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
