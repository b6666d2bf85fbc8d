//! Credentials from docker's `config.json` (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`): inline `auths` entries, per-registry `credHelpers` and the default
//! `credsStore`, as `docker login` writes them.
//!
//! Order for each of the logical registry, then the endpoint host: a `credHelpers` entry, an
//! `auths` entry carrying credentials, then `credsStore`. (The registry client asks with
//! [`RegistryHost::for_lookup`](super::RegistryHost::for_lookup): the host actually contacted.)
//!
//! An ECR token saved by `docker login` carries its own end (`expiration` inside the password,
//! 12 hours after it was issued); [`DockerConfigProvider`]'s lease says when, so a chain can
//! pass over a stale one.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde::Deserialize;

use super::cred_helper::{CredentialHelper, DEFAULT_HELPER_TIMEOUT};
use super::{AuthError, Credential, CredentialProvider, Lease, RegistryHost, Secret};

/// The key `docker login` uses for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
const PROVIDER: &str = "docker config.json";

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(rename = "credHelpers", default)]
    cred_helpers: HashMap<String, String>,
    #[serde(rename = "credsStore", default)]
    creds_store: Option<String>,
}

#[derive(Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

// Hand-written so that no secret can appear in Debug output.
impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A [`CredentialProvider`] reading docker's `config.json`.
#[derive(Debug)]
pub struct DockerConfigProvider {
    path: Option<PathBuf>,
    config: ConfigFile,
    helper_path: Option<OsString>,
    helper_timeout: Duration,
    cache: Mutex<HashMap<String, Option<Credential>>>,
}

impl DockerConfigProvider {
    /// Read `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`; a missing file means
    /// no credentials.
    pub fn from_env() -> Result<DockerConfigProvider, AuthError> {
        let dir = match std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(h) => PathBuf::from(h).join(".docker"),
                None => return Ok(Self::empty()),
            },
        };
        Self::from_path(&dir.join("config.json"))
    }

    /// Read `path`; a missing file means no credentials.
    pub fn from_path(path: &Path) -> Result<DockerConfigProvider, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(e) => {
                return Err(AuthError::Provider {
                    registry: "any registry".into(),
                    provider: PROVIDER.into(),
                    message: format!("cannot read {}: {e}", path.display()),
                    source: Some(Box::new(e)),
                });
            }
        };
        let mut p = Self::from_json(&text).map_err(|e| match e {
            AuthError::Provider {
                registry,
                provider,
                message,
                source,
            } => AuthError::Provider {
                registry,
                provider,
                message: format!("{}: {message}", path.display()),
                source,
            },
        })?;
        p.path = Some(path.to_path_buf());
        Ok(p)
    }

    /// Parse config.json text.
    pub fn from_json(text: &str) -> Result<DockerConfigProvider, AuthError> {
        let config: ConfigFile = serde_json::from_str(text).map_err(|e| AuthError::Provider {
            registry: "any registry".into(),
            provider: PROVIDER.into(),
            // serde_json's message has a line/column, never the file's content.
            message: format!("not a valid docker config.json ({e}); fix or remove it"),
            source: None,
        })?;
        Ok(DockerConfigProvider {
            path: None,
            config,
            helper_path: None,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// No credentials at all.
    pub fn empty() -> DockerConfigProvider {
        DockerConfigProvider {
            path: None,
            config: ConfigFile::default(),
            helper_path: None,
            helper_timeout: DEFAULT_HELPER_TIMEOUT,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Look credential helpers up on this `PATH` instead of the process's.
    pub fn with_helper_path(mut self, path: OsString) -> DockerConfigProvider {
        self.helper_path = Some(path);
        self
    }

    /// Stop a credential helper that has not answered within `timeout` (`--timeout`).
    pub fn with_helper_timeout(mut self, timeout: Duration) -> DockerConfigProvider {
        self.helper_timeout = timeout;
        self
    }

    fn helper(&self, name: &str) -> CredentialHelper {
        CredentialHelper::new(name)
            .with_path(self.helper_path.clone())
            .with_timeout(self.helper_timeout)
    }

    async fn lookup(&self, host: &str) -> Result<Option<Credential>, AuthError> {
        let want = canonical_host(host);
        let server_url = if want == "docker.io" {
            DOCKER_HUB_KEY.to_string()
        } else {
            want.clone()
        };
        if let Some((_, helper)) = self
            .config
            .cred_helpers
            .iter()
            .find(|(k, _)| canonical_host(k) == want)
        {
            return self.helper(helper).get(&server_url, host).await;
        }
        // An exact key first, then any key naming the same host.
        let entry = self.config.auths.get(host).or_else(|| {
            let mut keys: Vec<_> = self
                .config
                .auths
                .keys()
                .filter(|k| canonical_host(k) == want)
                .collect();
            keys.sort();
            keys.first().and_then(|k| self.config.auths.get(*k))
        });
        if let Some(e) = entry
            && let Some(c) = self.decode(e, host)?
        {
            return Ok(Some(c));
        }
        if let Some(store) = self.config.creds_store.as_deref().filter(|s| !s.is_empty()) {
            return self.helper(store).get(&server_url, host).await;
        }
        Ok(None)
    }

    fn decode(&self, e: &AuthEntry, host: &str) -> Result<Option<Credential>, AuthError> {
        if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(Secret::new(t))));
        }
        if let Some(t) = e.registrytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::BearerToken(Secret::new(t))));
        }
        if let Some(a) = e.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = |why: &str| AuthError::Provider {
                registry: host.to_string(),
                provider: PROVIDER.into(),
                message: format!(
                    "the `auth` value for {host} in {} is {why}; run `docker login {host}` again",
                    self.path
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "config.json".into())
                ),
                source: None,
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| bad("not valid base64"))?;
            let text = String::from_utf8(raw).map_err(|_| bad("not UTF-8 once decoded"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| bad("not `username:password` once decoded"))?;
            return Ok(Some(Credential::Basic {
                username: user.to_string(),
                password: Secret::new(pass),
            }));
        }
        match (&e.username, &e.password) {
            (Some(u), Some(p)) if !p.is_empty() => Ok(Some(Credential::Basic {
                username: u.clone(),
                password: Secret::new(p.clone()),
            })),
            _ => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl CredentialProvider for DockerConfigProvider {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        let mut hosts = vec![registry.logical];
        if canonical_host(registry.endpoint) != canonical_host(registry.logical) {
            hosts.push(registry.endpoint);
        }
        for host in hosts {
            let key = canonical_host(host);
            let cached = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
            let found = match cached {
                Some(c) => c,
                None => {
                    let c = self.lookup(host).await?;
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.insert(key, c.clone());
                    }
                    c
                }
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    async fn lease(&self, registry: &RegistryHost<'_>) -> Result<Option<Lease>, AuthError> {
        Ok(self.credentials(registry).await?.map(|credential| {
            let expires = match &credential {
                Credential::Basic { password, .. } => ecr_password_expiry(password.expose()),
                _ => None,
            };
            Lease {
                credential,
                expires,
            }
        }))
    }

    fn invalidate(&self, registry: &RegistryHost<'_>) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&canonical_host(registry.logical));
            cache.remove(&canonical_host(registry.endpoint));
        }
    }
}

/// When an Amazon ECR registry password (what `aws ecr get-login-password` prints and
/// `docker login` saves) stops working: it is base64 of a JSON object whose `expiration` is
/// the Unix time of its end (12 hours after issue, as `GetAuthorizationToken`'s `expiresAt`;
/// <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_AuthorizationData.html>).
/// `None` for any other password.
pub fn ecr_password_expiry(password: &str) -> Option<SystemTime> {
    #[derive(Deserialize)]
    struct EcrPassword {
        expiration: u64,
    }
    if password.len() < 64 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(password.trim())
        .ok()?;
    let parsed: EcrPassword = serde_json::from_slice(&raw).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(parsed.expiration))
}

/// A config key or registry name reduced to its lowercase `host[:port]`, with Docker Hub's
/// names (`https://index.docker.io/v1/`, `index.docker.io`, `registry-1.docker.io`) as `docker.io`.
pub fn canonical_host(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn host<'a>(logical: &'a str, endpoint: &'a str) -> RegistryHost<'a> {
        RegistryHost { logical, endpoint }
    }

    fn basic(u: &str, p: &str) -> Credential {
        Credential::Basic {
            username: u.into(),
            password: Secret::new(p),
        }
    }

    #[tokio::test]
    async fn auths_entries() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = format!(
            r#"{{"auths": {{
                "{DOCKER_HUB_KEY}": {{"auth": "{b64}"}},
                "http://reg.example.com:5000/v2/": {{"username": "bob", "password": "pw"}},
                "tok.example.com": {{"identitytoken": "refresh-me"}},
                "mirror.example": {{"auth": "{b64}"}},
                "empty.example": {{}}
            }}}}"#
        );
        let p = DockerConfigProvider::from_json(&json).unwrap();
        assert_eq!(
            p.credentials(&host("docker.io", "registry-1.docker.io"))
                .await
                .unwrap(),
            Some(basic("alice", "s3cret"))
        );
        assert_eq!(
            p.credentials(&host("reg.example.com:5000", "reg.example.com:5000"))
                .await
                .unwrap(),
            Some(basic("bob", "pw"))
        );
        assert_eq!(
            p.credentials(&host("tok.example.com", "tok.example.com"))
                .await
                .unwrap(),
            Some(Credential::IdentityToken(Secret::new("refresh-me")))
        );
        // The logical registry has none: the endpoint host is tried.
        assert_eq!(
            p.credentials(&host("logical.example", "mirror.example"))
                .await
                .unwrap(),
            Some(basic("alice", "s3cret"))
        );
        assert_eq!(
            p.credentials(&host("empty.example", "empty.example"))
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            p.credentials(&host("nope.example", "nope.example"))
                .await
                .unwrap(),
            None
        );
        assert!(!format!("{p:?}").contains("s3cret"));
        let bad =
            DockerConfigProvider::from_json(r#"{"auths":{"x.example":{"auth":"!!!"}}}"#).unwrap();
        let e = bad
            .credentials(&host("x.example", "x.example"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.example") && e.contains("base64"), "{e}");
    }

    #[tokio::test]
    async fn helpers_via_path() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-test");
        std::fs::write(
            &script,
            r#"#!/bin/sh
[ "$1" = get ] || exit 2
read host
case "$host" in
  helper.example) echo '{"ServerURL":"helper.example","Username":"carol","Secret":"hpw"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"idtok"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"#,
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(std::iter::once(dir.path().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let json = r#"{"credHelpers": {"helper.example": "test", "missing.example": "nosuch"}, "credsStore": "test",
                       "auths": {"inline.example": {"username": "dave", "password": "ipw"}}}"#;
        let p = DockerConfigProvider::from_json(json)
            .unwrap()
            .with_helper_path(path);
        assert_eq!(
            p.credentials(&host("helper.example", "helper.example"))
                .await
                .unwrap(),
            Some(basic("carol", "hpw"))
        );
        assert_eq!(
            p.credentials(&host("docker.io", "registry-1.docker.io"))
                .await
                .unwrap(),
            Some(Credential::IdentityToken(Secret::new("idtok")))
        );
        assert_eq!(
            p.credentials(&host("inline.example", "inline.example"))
                .await
                .unwrap(),
            Some(basic("dave", "ipw"))
        );
        assert_eq!(
            p.credentials(&host("other.example", "other.example"))
                .await
                .unwrap(),
            None
        );
        let e = p
            .credentials(&host("missing.example", "missing.example"))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("docker-credential-nosuch"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_helper_is_stopped_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("docker-credential-hang");
        // Never answers (a keyring waiting for an unlock nobody sees).
        std::fs::write(&script, "#!/bin/sh\nexec sleep 3600\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(std::iter::once(dir.path().to_path_buf()).chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
        ))
        .unwrap();
        let p = DockerConfigProvider::from_json(r#"{"credsStore": "hang"}"#)
            .unwrap()
            .with_helper_path(path)
            .with_helper_timeout(Duration::from_millis(300));
        let e = p
            .credentials(&host("slow.example", "slow.example"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("docker-credential-hang") && e.contains("did not answer within 1 s"),
            "{e}"
        );
    }

    #[test]
    fn ecr_passwords_carry_their_expiry() {
        let json = r#"{"payload":"abcdefghijklmnopqrstuvwxyz0123456789","datakey":"AQIDAHhx","version":"2","type":"DATA_KEY","expiration":1600000000}"#;
        let pw = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(
            ecr_password_expiry(&pw),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000))
        );
        assert_eq!(ecr_password_expiry("hunter2"), None);
        let other = base64::engine::general_purpose::STANDARD
            .encode(r#"{"something":"else entirely, and long enough to be decoded"}"#);
        assert_eq!(ecr_password_expiry(&other), None);
    }

    #[test]
    fn canonical_keys() {
        assert_eq!(canonical_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(canonical_host("registry-1.docker.io"), "docker.io");
        assert_eq!(canonical_host("http://Localhost:5000/v2"), "localhost:5000");
    }
}
