//! The docker credential helper protocol: run `docker-credential-<name> get`, write the server
//! URL on its stdin, read `{"ServerURL","Username","Secret"}` from its stdout. A helper gets
//! a bounded time (the registry timeout, `--timeout`): one that hangs (waiting for a keyring
//! unlock prompt nobody sees, a network call) is killed and reported, never waited on forever.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{AuthError, Credential, Secret};

/// The most a helper may print (a token is a few KiB).
const MAX_OUTPUT: u64 = 1024 * 1024;
/// How long a helper may run when no other bound is given (the default `--timeout`).
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(60);

/// A `docker-credential-<name>` helper.
#[derive(Debug, Clone)]
pub struct CredentialHelper {
    name: String,
    path_env: Option<OsString>,
    timeout: Duration,
}

/// Write `server_url` to the helper, read what it prints, wait for it to exit.
async fn run(
    child: &mut tokio::process::Child,
    server_url: &str,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its stdin is not an error here.
        let _ = stdin.write_all(server_url.as_bytes()).await;
        drop(stdin);
    }
    let out = child.stdout.take();
    let err = child.stderr.take();
    let read_out = async {
        if let Some(o) = out {
            o.take(MAX_OUTPUT).read_to_end(stdout).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read_err = async {
        if let Some(e) = err {
            e.take(64 * 1024).read_to_end(stderr).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (r1, r2) = tokio::join!(read_out, read_err);
    r1.and(r2)?;
    child.wait().await
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

impl CredentialHelper {
    /// The helper `docker-credential-<name>`, looked up on `$PATH`.
    pub fn new(name: impl Into<String>) -> CredentialHelper {
        CredentialHelper {
            name: name.into(),
            path_env: None,
            timeout: DEFAULT_HELPER_TIMEOUT,
        }
    }

    /// Kill the helper and fail when it has not answered within `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> CredentialHelper {
        self.timeout = timeout;
        self
    }

    /// Look the helper up (and run it) with this `PATH` instead of the process's.
    pub fn with_path(mut self, path: Option<OsString>) -> CredentialHelper {
        self.path_env = path;
        self
    }

    /// The helper binary's name, `docker-credential-<name>`.
    pub fn binary(&self) -> String {
        format!("docker-credential-{}", self.name)
    }

    /// Credentials for `server_url`, `None` when the helper has none.
    pub async fn get(
        &self,
        server_url: &str,
        registry: &str,
    ) -> Result<Option<Credential>, AuthError> {
        let binary = self.binary();
        let fail = |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            AuthError::Provider {
                registry: registry.to_string(),
                provider: binary.clone(),
                message,
                source,
            }
        };
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(p) = &self.path_env {
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let msg = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "credential helper {binary} is not installed or not on PATH (docker config.json names it in \
                     credsStore/credHelpers); install it, or edit ~/.docker/config.json"
                )
            } else {
                format!("cannot run credential helper {binary}: {e}")
            };
            fail(msg, Some(Box::new(e)))
        })?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let ran = tokio::time::timeout(
            self.timeout,
            run(&mut child, server_url, &mut stdout, &mut stderr),
        )
        .await;
        let status = match ran {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(fail(format!("cannot run {binary}: {e}"), Some(Box::new(e))));
            }
            Err(_) => {
                // kill_on_drop ends it; kill now so it does not linger until then.
                let _ = child.start_kill();
                return Err(fail(
                    format!(
                        "{binary} get did not answer within {} s and was stopped; check the helper \
                         (a locked keyring waiting for a password?) with `echo {server_url} | {binary} get`, \
                         or raise --timeout",
                        self.timeout.as_secs_f64().ceil() as u64
                    ),
                    None,
                ));
            }
        };
        let stdout_text = String::from_utf8_lossy(&stdout);
        if !status.success() {
            let said = format!(
                "{} {}",
                stdout_text.trim(),
                String::from_utf8_lossy(&stderr).trim()
            );
            if said.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            let said: String = said.trim().chars().take(300).collect();
            return Err(fail(
                format!(
                    "{binary} get exited with {status}: {said}; check the helper (try `echo {server_url} | {binary} get`)"
                ),
                None,
            ));
        }
        let parsed: HelperOutput = serde_json::from_slice(&stdout).map_err(|e| {
            fail(
                format!("{binary} printed something that is not credentials JSON ({e})"),
                None,
            )
        })?;
        if parsed.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if parsed.username == "<token>" {
            Credential::IdentityToken(Secret::new(parsed.secret))
        } else {
            Credential::Basic {
                username: parsed.username,
                password: Secret::new(parsed.secret),
            }
        }))
    }
}
