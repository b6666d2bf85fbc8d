//! Repository administration for `--create-repository` (CreateRepository with tag mutability and
//! scan-on-push; an existing repository is fine) and `--scan` (StartImageScan after the push).

use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};

use super::errors::{CallContext, EcrError, from_sdk};
use crate::ecr_host::EcrRepository;

/// How to create a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateRepositoryOptions {
    /// `Some(true)`: tags are immutable; `None`: ECR's default (mutable).
    pub immutable_tags: Option<bool>,
    /// `Some(true)`: scan on push; `None`: ECR's default (off).
    pub scan_on_push: Option<bool>,
}

fn ctx<'a>(
    operation: &'static str,
    repository: &'a EcrRepository,
    item: Option<String>,
) -> CallContext<'a> {
    CallContext {
        operation,
        repository: Some(repository),
        registry: "",
        item,
        identity: None,
    }
}

/// Create `repository`. Returns `false` when it already existed (left unchanged).
pub async fn create_repository(
    client: &aws_sdk_ecr::Client,
    repository: &EcrRepository,
    options: &CreateRepositoryOptions,
) -> Result<bool, EcrError> {
    let mut req = client
        .create_repository()
        .registry_id(&repository.host.account)
        .repository_name(&repository.name);
    if let Some(immutable) = options.immutable_tags {
        req = req.image_tag_mutability(if immutable {
            ImageTagMutability::Immutable
        } else {
            ImageTagMutability::Mutable
        });
    }
    if let Some(scan) = options.scan_on_push {
        req = req.image_scanning_configuration(
            ImageScanningConfiguration::builder()
                .scan_on_push(scan)
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_repository_already_exists_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(from_sdk(e, &ctx("CreateRepository", repository, None))),
    }
}

/// Start a scan of the image `reference` (a tag or a digest) in `repository`.
pub async fn start_image_scan(
    client: &aws_sdk_ecr::Client,
    repository: &EcrRepository,
    reference: &str,
) -> Result<(), EcrError> {
    let id = if reference.parse::<crate::digest::Digest>().is_ok() {
        ImageIdentifier::builder().image_digest(reference).build()
    } else {
        ImageIdentifier::builder().image_tag(reference).build()
    };
    client
        .start_image_scan()
        .registry_id(&repository.host.account)
        .repository_name(&repository.name)
        .image_id(id)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            from_sdk(
                e,
                &ctx("StartImageScan", repository, Some(reference.to_string())),
            )
        })
}
