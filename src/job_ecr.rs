//! The Amazon ECR parts of a job (feature `ecr`): which AWS identity to use, whether to push
//! through the ECR API instead of the registry endpoint, and the optional repository steps
//! around a push (create the repository before, start a scan after).

use crate::dest::Destination;
use crate::ecr::repo_admin::{CreateRepositoryOptions, create_repository, start_image_scan};
use crate::ecr::{
    AwsOptions, EcrApiDestination, EcrError, EcrHost, EcrRepository, ecr_client, load_sdk_config,
};
use crate::reference::Reference;

/// ECR settings of a job.
#[derive(Debug, Clone, Default)]
pub struct EcrSettings {
    /// The AWS identity (`--profile`, `--role-arn`, ...).
    pub aws: AwsOptions,
    /// `--ecr-api`: push through the ECR API rather than the registry endpoint.
    pub api: bool,
    /// `--create-repository`: create the target repository first (an existing one is fine).
    pub create_repository: Option<CreateRepositoryOptions>,
    /// `--scan`: start an image scan after the push.
    pub scan: bool,
}

impl EcrSettings {
    /// Whether any ECR-specific step applies to `r`.
    pub fn applies_to(r: &Reference) -> bool {
        EcrHost::is_ecr(&r.registry)
    }

    fn repository(r: &Reference) -> Result<EcrRepository, Box<EcrError>> {
        EcrRepository::parse(&format!("{}/{}", r.registry, r.repository))
            .map_err(|e| Box::new(EcrError::from(e)))
    }

    async fn client(&self, repo: &EcrRepository) -> aws_sdk_ecr::Client {
        let config = load_sdk_config(&self.aws, Some(&repo.host.region)).await;
        ecr_client(&config, &repo.host)
    }

    /// The ECR API destination for `r`, when `--ecr-api` was asked for.
    pub async fn api_destination(
        &self,
        r: &Reference,
    ) -> Result<Option<Box<dyn Destination>>, Box<EcrError>> {
        if !self.api {
            return Ok(None);
        }
        let repo = Self::repository(r)?;
        let config = load_sdk_config(&self.aws, Some(&repo.host.region)).await;
        Ok(Some(Box::new(EcrApiDestination::new(&config, repo))))
    }

    /// Steps before the push: create the repository when asked.
    pub async fn before_push(&self, r: &Reference) -> Result<(), Box<EcrError>> {
        if let Some(opts) = &self.create_repository {
            let repo = Self::repository(r)?;
            create_repository(&self.client(&repo).await, &repo, opts)
                .await
                .map_err(Box::new)?;
        }
        Ok(())
    }

    /// Steps after the push: start a scan of `reference` when asked.
    pub async fn after_push(&self, r: &Reference, reference: &str) -> Result<(), Box<EcrError>> {
        if self.scan {
            let repo = Self::repository(r)?;
            start_image_scan(&self.client(&repo).await, &repo, reference)
                .await
                .map_err(Box::new)?;
        }
        Ok(())
    }
}
