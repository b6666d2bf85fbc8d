//! A custom credential provider: registry credentials taken from a CI system's variables
//! (GitLab CI's `CI_REGISTRY`, `CI_REGISTRY_USER`, `CI_REGISTRY_PASSWORD`) and given to that
//! registry only — any other registry (a base image's) is asked anonymously.
//!
//! ```text
//! CI_REGISTRY=registry.example CI_REGISTRY_USER=ci CI_REGISTRY_PASSWORD=… \
//!   cargo run --example custom_credentials -- registry.example/group/app:v1
//! ```
//!
//! It pushes a one-file image (`/VERSION`, from `scratch`) and prints the pushed
//! `name@sha256:…` as the last line of stdout.

use std::process::ExitCode;
use std::sync::Arc;

use ocipush::auth::{AuthError, Credential, CredentialProvider, RegistryHost, Secret};
use ocipush::builder::{ImageBuilder, Layer};
use ocipush::pipeline::{Session, Target};
use ocipush::registries_conf::RegistriesConf;

/// Credentials for one registry, from the CI job's environment.
#[derive(Debug)]
struct CiRegistry {
    host: String,
    username: String,
    password: Secret,
}

impl CiRegistry {
    fn from_env() -> Result<CiRegistry, String> {
        let var = |k: &str| std::env::var(k).map_err(|_| format!("{k} is not set"));
        Ok(CiRegistry {
            host: var("CI_REGISTRY")?,
            username: var("CI_REGISTRY_USER")?,
            // Wrapped at once: ocipush never shows a Secret, at any verbosity.
            password: Secret::new(var("CI_REGISTRY_PASSWORD")?),
        })
    }
}

#[async_trait::async_trait]
impl CredentialProvider for CiRegistry {
    async fn credentials(
        &self,
        registry: &RegistryHost<'_>,
    ) -> Result<Option<Credential>, AuthError> {
        // `logical` is the registry as named in the image reference; credentials go to it
        // only (ocipush sends them only to the origin that asked for them).
        Ok((registry.logical == self.host).then(|| Credential::Basic {
            username: self.username.clone(),
            password: self.password.clone(),
        }))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dest] = args.as_slice() else {
        eprintln!("usage: custom_credentials <dest>");
        return ExitCode::from(2);
    };
    match run(dest).await {
        Ok(pushed) => {
            println!("{pushed}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("custom_credentials: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dest: &str) -> Result<String, Box<dyn std::error::Error>> {
    let credentials = Arc::new(CiRegistry::from_env()?);
    let session = Session::new(RegistriesConf::load(None)?, credentials, false)?;
    let pushed = ImageBuilder::from("scratch")
        .layer(Layer::new().bytes(b"1.0.0\n".to_vec(), "/VERSION", 0o644))
        .label("org.opencontainers.image.version", "1.0.0")
        .containerize(&session, &Target::parse(dest)?, &ocipush::events::ignore())
        .await?;
    Ok(pushed.reference)
}
