//! The Amazon ECR parts of a job (feature `ecr`): which AWS identity to use, whether to push
//! through the ECR API instead of the registry endpoint, and the optional repository steps
//! around a push (create the repository before, start a scan after). Amazon ECR Public
//! (`public.ecr.aws`) is pushed to over its registry endpoint with a token from the ECR Public
//! API; the ECR-only options are refused for it ([`EcrSettings::check_target`]).

use crate::dest::Destination;
use crate::ecr::repo_admin::{CreateRepositoryOptions, create_repository, start_image_scan};
use crate::ecr::{
    AwsOptions, EcrApiDestination, EcrCredentialProvider, EcrError, EcrHost, EcrPublicRepository,
    EcrRepository, PublicTokens, SdkConfigCache, ecr_client,
};
use crate::ecr::{RegistryStep, public_registry_denied, registry_denied};
use crate::push::PushError;
use crate::reference::Reference;
use crate::registry::{RegistryError, RequestKind};

/// ECR settings of a job. Clones share [`sdk_configs`](Self::sdk_configs).
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
    /// The AWS SDK configurations of this job, loaded on first use (per region) and reused by
    /// every step: credentials are resolved, and `--role-arn` assumed, once per job, not once
    /// per step. [`credential_provider`](Self::credential_provider) shares them too.
    pub sdk_configs: SdkConfigCache,
    /// Whether ECR Public tokens are fetched (default: yes), and why the last one could not be
    /// had, shared with [`credential_provider`](Self::credential_provider) to explain a refused
    /// push. The CLI fetches them only when it pushes to ECR Public.
    pub public_tokens: PublicTokens,
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

    async fn sdk_config(&self, repo: &EcrRepository) -> aws_config::SdkConfig {
        self.sdk_configs
            .get(&self.aws, Some(&repo.host.region))
            .await
    }

    async fn client(&self, repo: &EcrRepository) -> aws_sdk_ecr::Client {
        ecr_client(&self.sdk_config(repo).await, &repo.host)
    }

    /// Registry credentials (ECR tokens) for this job's AWS identity, from the same SDK
    /// configurations as the other ECR steps.
    pub fn credential_provider(&self) -> EcrCredentialProvider {
        EcrCredentialProvider::with_config_cache(self.aws.clone(), self.sdk_configs.clone())
            .with_public_tokens(self.public_tokens.clone())
    }

    /// The [`PublicTokens`] for a job pushing to `target`: ECR Public tokens are fetched only
    /// when it pushes to ECR Public (a base image from it needs none).
    pub fn public_tokens_for(target: &crate::pipeline::Target) -> PublicTokens {
        PublicTokens::new(matches!(
            target,
            crate::pipeline::Target::Registry(r) if EcrPublicRepository::is_public_host(&r.registry)
        ))
    }

    /// Refuse, before anything is built, what ocipush does not do for an Amazon ECR Public
    /// target (`public.ecr.aws/<alias>/<repository>`): `--ecr-api` (the push goes over the
    /// registry endpoint, see the README), `--create-repository` (ECR Public repositories carry
    /// catalog data ocipush has no options for) and `--scan` (ECR Public has no image scanning).
    /// A reference without an alias and a repository is refused too. Other targets: `Ok`.
    pub fn check_target(&self, r: &Reference) -> Result<(), Box<EcrError>> {
        if !EcrPublicRepository::is_public_host(&r.registry) {
            return Ok(());
        }
        let repo = EcrPublicRepository::parse(&format!("{}/{}", r.registry, r.repository))
            .map_err(|e| Box::new(EcrError::from(e)))?;
        let refuse = |option: &str, why: String| {
            Err(Box::new(EcrError::PublicUnsupported {
                option: option.to_string(),
                repository: repo.to_string(),
                why,
            }))
        };
        if self.api {
            return refuse(
                "--ecr-api",
                "ocipush pushes to Amazon ECR Public over its registry endpoint only, not through the ECR \
                 Public API (see the README, \"Amazon ECR Public\"); push without --ecr-api"
                    .into(),
            );
        }
        if self.create_repository.is_some() {
            return refuse(
                "--create-repository",
                format!(
                    "ocipush does not create Amazon ECR Public repositories; create it with `aws ecr-public \
                     create-repository --repository-name {} --region us-east-1`, then push without \
                     --create-repository",
                    repo.name
                ),
            );
        }
        if self.scan {
            return refuse(
                "--scan",
                "Amazon ECR Public has no image scanning; push without --scan".into(),
            );
        }
        Ok(())
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
        let config = self.sdk_config(&repo).await;
        let dest = EcrApiDestination::with_identity(&config, repo, &self.aws);
        Ok(Some(Box::new(dest)))
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

    /// Refuse, before any upload, an image ECR cannot store: one without layers (a `FROM scratch`
    /// stage with only metadata). `images` are `(platform, layer count)`; the platform is named
    /// when there is more than one.
    ///
    /// Refused rather than made acceptable with an added empty layer: that layer would change
    /// the image (its digest, `rootfs.diff_ids`) from what the same Dockerfile gives for any other
    /// registry, and builds here are reproducible across destinations.
    pub fn check_image(r: &Reference, images: &[(String, usize)]) -> Result<(), Box<EcrError>> {
        let Some((platform, _)) = images.iter().find(|(_, layers)| *layers == 0) else {
            return Ok(());
        };
        let repo = Self::repository(r)?;
        Err(Box::new(EcrError::NoLayers {
            repository: repo.to_string(),
            platform: if images.len() > 1 {
                format!(" (platform {platform})")
            } else {
                String::new()
            },
        }))
    }

    /// A failed push to ECR (or ECR Public) explained in ECR's terms: a refusal as the IAM action
    /// it needed ([`explain_denied`](Self::explain_denied)), an immutable tag with the
    /// identical-image case ([`explain_tag`](Self::explain_tag)), ECR Public without a login
    /// ([`explain_public`](Self::explain_public)). `None` when there is nothing to add.
    pub fn explain(&self, r: &Reference, err: &PushError) -> Option<Box<EcrError>> {
        Self::explain_denied(r, err)
            .or_else(|| Self::explain_tag(r, err))
            .or_else(|| Self::explain_public(r, err, self.public_tokens.last_failure()))
    }

    /// An ECR `TAG_INVALID` on a manifest put: the repository's tags are immutable, and ECR
    /// refuses even a re-push of the very image the tag already names ("The image tag 'v1'
    /// already exists in the 'app' repository and cannot be overwritten because the tag is
    /// immutable.", osscontainertools/kaniko#204, moby/buildkit#3776).
    pub fn explain_tag(r: &Reference, err: &PushError) -> Option<Box<EcrError>> {
        let PushError::Manifest {
            source,
            reference,
            digest,
            ..
        } = err
        else {
            return None;
        };
        let RegistryError::TagInvalid { detail, .. } = source.downcast_ref::<RegistryError>()?
        else {
            return None;
        };
        let repo = Self::repository(r).ok()?;
        Some(Box::new(EcrError::ImmutableTag {
            repository: repo.to_string(),
            name: repo.name.clone(),
            region: repo.host.region.clone(),
            tag: reference.clone(),
            ours: Some(digest.to_string()),
            message: detail.to_string(),
        }))
    }

    /// A push to Amazon ECR Public (`public.ecr.aws`) that sent no credentials, explained: why
    /// no ECR Public token could be had (`token_failure`, e.g. the identity lacks
    /// `sts:GetServiceBearerToken`), or that there was neither a login nor an AWS identity.
    /// `None` otherwise.
    pub fn explain_public(
        r: &Reference,
        err: &PushError,
        token_failure: Option<String>,
    ) -> Option<Box<EcrError>> {
        if !EcrPublicRepository::is_public_host(&r.registry) {
            return None;
        }
        let source = match err {
            PushError::Blob { source, .. }
            | PushError::Manifest { source, .. }
            | PushError::Check { source, .. } => source,
            _ => return None,
        };
        let RegistryError::AuthRequired { what, detail, .. } =
            source.downcast_ref::<RegistryError>()?.last_attempt()
        else {
            return None;
        };
        Some(Box::new(EcrError::PublicNeedsLogin {
            what: what.clone(),
            repository: format!("{}/{}", crate::ecr::PUBLIC_HOST, r.repository),
            detail: detail.clone(),
            token: token_failure,
        }))
    }

    /// A registry-endpoint refusal during a push to ECR, explained in IAM terms: the action
    /// the refused request needed and the resource it is needed on. `None` for other errors.
    pub fn explain_denied(r: &Reference, err: &PushError) -> Option<Box<EcrError>> {
        let (source, item) = match err {
            PushError::Blob { source, digest, .. } => (source, Some(digest.to_string())),
            PushError::Manifest {
                source, reference, ..
            } => (source, Some(reference.clone())),
            PushError::Check { source, .. } => (source, None),
            _ => return None,
        };
        let RegistryError::Denied {
            request, detail, ..
        } = source.downcast_ref::<RegistryError>()?
        else {
            return None;
        };
        let step = match request {
            RequestKind::HeadBlob => RegistryStep::HeadBlob,
            RequestKind::GetBlob => RegistryStep::GetBlob,
            RequestKind::StartUpload => RegistryStep::StartUpload,
            RequestKind::PatchUpload => RegistryStep::PatchUpload,
            RequestKind::CompleteUpload => RegistryStep::PutBlob,
            RequestKind::GetManifest => RegistryStep::GetManifest,
            RequestKind::PutManifest => RegistryStep::PutManifest,
            _ => return None,
        };
        if EcrPublicRepository::is_public_host(&r.registry) {
            let repo =
                EcrPublicRepository::parse(&format!("{}/{}", r.registry, r.repository)).ok()?;
            return public_registry_denied(step, &repo, item.as_deref(), &detail.to_string())
                .map(Box::new);
        }
        let repo = Self::repository(r).ok()?;
        Some(Box::new(registry_denied(
            step,
            &repo,
            item.as_deref(),
            &detail.to_string(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::DestError;
    use crate::digest::Digest;
    use crate::registry::ErrorDetail;

    fn denied(request: RequestKind) -> PushError {
        let e = RegistryError::Denied {
            registry: "123456789012.dkr.ecr.us-east-1.amazonaws.com".into(),
            repository: "ec2-ecr-test".into(),
            what: "uploading blob".into(),
            request,
            detail: Box::new(ErrorDetail::new(
                403,
                br#"{"errors":[{"code":"DENIED","message":"not authorized"}]}"#,
            )),
        };
        PushError::Blob {
            dest: "x".into(),
            digest: Digest::of(b"layer"),
            size: 5,
            source: DestError::new(e),
        }
    }

    #[test]
    fn registry_refusals_name_the_iam_action() {
        let r = Reference::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test:v1")
            .unwrap();
        for (kind, action) in [
            (RequestKind::HeadBlob, "ecr:BatchCheckLayerAvailability"),
            (RequestKind::StartUpload, "ecr:InitiateLayerUpload"),
            (RequestKind::PatchUpload, "ecr:UploadLayerPart"),
            (RequestKind::CompleteUpload, "ecr:CompleteLayerUpload"),
            (RequestKind::PutManifest, "ecr:PutImage"),
        ] {
            let msg = EcrSettings::explain_denied(&r, &denied(kind))
                .unwrap()
                .to_string();
            assert!(msg.contains(action), "{kind:?}: {msg}");
            assert!(
                msg.contains("arn:aws:ecr:us-east-1:123456789012:repository/ec2-ecr-test"),
                "{msg}"
            );
            assert!(msg.contains("iam-policy"), "{msg}");
        }
        let other = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert!(EcrSettings::explain_denied(&other, &denied(RequestKind::PatchUpload)).is_none());
    }

    #[test]
    fn an_immutable_tag_says_it_may_be_this_image() {
        let r = Reference::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1").unwrap();
        let e = RegistryError::TagInvalid {
            registry: "r".into(),
            repository: "app".into(),
            reference: "v1".into(),
            detail: Box::new(ErrorDetail::new(
                400,
                br#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists in the 'app' repository and cannot be overwritten because the tag is immutable."}]}"#,
            )),
        };
        let err = PushError::Manifest {
            dest: "x".into(),
            reference: "v1".into(),
            digest: Digest::of(b"m"),
            source: DestError::new(e),
        };
        let s = EcrSettings::default()
            .explain(&r, &err)
            .unwrap()
            .to_string();
        assert!(s.contains("may already be this very image"), "{s}");
        assert!(s.contains("cannot be overwritten"), "{s}");
        let other = Reference::parse("127.0.0.1:5000/app:v1").unwrap();
        assert!(EcrSettings::default().explain(&other, &err).is_none());
    }

    #[test]
    fn an_image_without_layers_is_refused_for_ecr() {
        let r = Reference::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1").unwrap();
        let e = EcrSettings::check_image(&r, &[("linux/amd64".into(), 0)]).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("has no layers") && s.contains("nothing was uploaded"),
            "{s}"
        );
        assert!(!s.contains("platform"), "{s}");
        let e =
            EcrSettings::check_image(&r, &[("linux/amd64".into(), 1), ("linux/arm64".into(), 0)])
                .unwrap_err();
        assert!(e.to_string().contains("(platform linux/arm64)"), "{e}");
        assert!(EcrSettings::check_image(&r, &[("linux/amd64".into(), 2)]).is_ok());
    }

    #[test]
    fn requests_are_classified_by_url() {
        let u = |s: &str| url::Url::parse(s).unwrap();
        let c = RequestKind::classify;
        assert_eq!(
            c("uploading blob", &u("https://r/v2/a/blobs/uploads/")),
            RequestKind::StartUpload
        );
        assert_eq!(
            c(
                "uploading blob",
                &u("https://r/v2/a/blobs/uploads/x?_state=s")
            ),
            RequestKind::PatchUpload
        );
        assert_eq!(
            c(
                "uploading blob",
                &u("https://r/v2/a/blobs/uploads/x?_state=s&digest=sha256:0")
            ),
            RequestKind::CompleteUpload
        );
        assert_eq!(
            c("checking blob", &u("https://r/v2/a/blobs/sha256:0")),
            RequestKind::HeadBlob
        );
        assert_eq!(
            c("putting manifest v1", &u("https://r/v2/a/manifests/v1")),
            RequestKind::PutManifest
        );
    }

    #[test]
    fn ecr_public_targets_refuse_the_ecr_only_options() {
        let r = Reference::parse("public.ecr.aws/a1b2c3d4/app:v1").unwrap();
        assert!(EcrSettings::default().check_target(&r).is_ok());
        let with = |f: fn(&mut EcrSettings)| {
            let mut s = EcrSettings::default();
            f(&mut s);
            s.check_target(&r).unwrap_err().to_string()
        };
        assert!(
            with(|s| s.api = true)
                .starts_with("--ecr-api cannot be used for public.ecr.aws/a1b2c3d4/app")
        );
        assert!(with(|s| s.scan = true).contains("no image scanning"));
        assert!(
            with(|s| s.create_repository = Some(CreateRepositoryOptions::default()))
                .contains("aws ecr-public create-repository --repository-name app")
        );
        let no_alias = Reference::parse("public.ecr.aws/app:v1").unwrap();
        assert!(EcrSettings::default().check_target(&no_alias).is_err());
        // Private ECR and other registries: nothing to refuse here.
        let s = EcrSettings {
            scan: true,
            ..EcrSettings::default()
        };
        let private =
            Reference::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1").unwrap();
        assert!(s.check_target(&private).is_ok());
    }

    #[test]
    fn ecr_public_tokens_are_fetched_only_for_a_push_to_ecr_public() {
        use crate::pipeline::Target;
        let t = |s: &str| Target::parse(s).unwrap();
        assert!(EcrSettings::public_tokens_for(&t("public.ecr.aws/a1b2c3d4/app:v1")).fetches());
        for other in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1",
            "127.0.0.1:5000/app:v1",
        ] {
            assert!(
                !EcrSettings::public_tokens_for(&t(other)).fetches(),
                "{other}"
            );
        }
        assert!(EcrSettings::default().public_tokens.fetches());
    }

    #[test]
    fn an_unauthenticated_ecr_public_push_says_why_there_was_no_token() {
        let r = Reference::parse("public.ecr.aws/a1b2c3d4/app:v1").unwrap();
        let e = RegistryError::AuthRequired {
            registry: "public.ecr.aws".into(),
            repository: "a1b2c3d4/app".into(),
            what: "checking blob".into(),
            detail: "HTTP 401".into(),
        };
        let err = PushError::Check {
            dest: "x".into(),
            source: DestError::new(e),
        };
        let settings = EcrSettings::default();
        let s = settings.explain(&r, &err).unwrap().to_string();
        assert!(
            s.contains("there is no docker login for public.ecr.aws"),
            "{s}"
        );
        settings.public_tokens.clone().record(Some(
            "GetAuthorizationToken … sts:GetServiceBearerToken".into(),
        ));
        let s = settings.explain(&r, &err).unwrap().to_string();
        assert!(
            s.contains("no ECR Public token could be had from the AWS credential chain: GetAuthorizationToken"),
            "{s}"
        );
        let private = Reference::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/app").unwrap();
        assert!(settings.explain(&private, &err).is_none());
    }
}
