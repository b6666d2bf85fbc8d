//! The pipeline from a build to a pushed image, as one library call: where to push
//! (`Target`), how to reach registries (`Session`), [`build_and_push`] and
//! [`build_and_push_platforms`] (build every platform, streaming layers to the destination
//! while they are written, then config, manifests, index and tags), and what was pushed
//! (`Pushed`). The CLI is a thin layer over this module.
//!
//! [`ecr`] holds the Amazon ECR parts (feature `ecr`); `stream` the build that hands layers
//! to the upload while they are written.

#[cfg(feature = "ecr")]
pub mod ecr;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::redact::Redactor;
use crate::auth::{AuthError, Chain, CredentialProvider, DockerConfigProvider};
use crate::blob::Blob;
use crate::build::{BuildImageError, BuildOptions, BuiltImage};
use crate::dest::Destination;
use crate::digest::Digest;
use crate::events::EventSink;
use crate::image::{Encoded, Format, ImageConfig, Index, Platform};
use crate::layout::OciLayout;
use crate::push::{PushError, PushOptions, push, push_blobs, put_manifest};
use crate::reference::{Reference, ReferenceError};
use crate::registries_conf::RegistriesConf;
use crate::registry::{ClientOptions, RegistryClient, RegistryError};

/// Where an image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A registry repository (tag and/or digest).
    Registry(Reference),
    /// An OCI image layout directory, with an optional tag.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
}

impl Target {
    /// Parse `oci:<dir>[:<tag>]` or an image reference.
    pub fn parse(s: &str) -> Result<Target, ReferenceError> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((d, t)) if !t.is_empty() && !t.contains('/') && !d.is_empty() => {
                    (d, Some(t.to_string()))
                }
                _ => (rest, None),
            };
            return Ok(Target::Layout {
                dir: PathBuf::from(dir),
                tag,
            });
        }
        Ok(Target::Registry(Reference::parse(s)?))
    }

    /// The pushed image as printed on stdout: `registry/repo@sha256:…` (the registry as the user
    /// named it, also when registries.conf remaps it) or `oci:<dir>@sha256:…`.
    pub fn pushed_name(&self, digest: &Digest) -> String {
        match self {
            Target::Registry(r) => format!("{}/{}@{}", r.registry, r.repository, digest),
            Target::Layout { dir, .. } => format!("oci:{}@{}", dir.display(), digest),
        }
    }

    /// The references to put the manifest under: the target's tag (default `latest`) or digest,
    /// then each extra tag.
    pub fn references(&self, extra_tags: &[String]) -> Vec<String> {
        let mut refs = match self {
            Target::Registry(r) => match (&r.tag, &r.digest) {
                (Some(t), _) => vec![t.clone()],
                (None, Some(d)) => vec![d.to_string()],
                (None, None) => vec!["latest".to_string()],
            },
            Target::Layout { tag, .. } => vec![tag.clone().unwrap_or_else(|| "latest".into())],
        };
        for t in extra_tags {
            if !refs.contains(t) {
                refs.push(t.clone());
            }
        }
        refs
    }
}

/// How registries are reached: registries.conf, credentials, plain HTTP; and the secrets its
/// jobs saw ([`Session::redactor`]). Clones share everything.
#[derive(Debug, Clone)]
pub struct Session {
    /// registries.conf mapping.
    pub(crate) registries: RegistriesConf,
    /// The HTTP client.
    pub(crate) client: RegistryClient,
    /// The secrets of this session's jobs.
    pub(crate) redactor: Redactor,
    /// Amazon ECR settings ([`Session::with_ecr`]).
    #[cfg(feature = "ecr")]
    pub(crate) ecr: crate::pipeline::ecr::EcrSettings,
}

impl Session {
    /// A session with these registries and credentials.
    pub fn new(
        registries: RegistriesConf,
        credentials: Arc<dyn CredentialProvider>,
        insecure: bool,
    ) -> Result<Session, RegistryError> {
        let client = RegistryClient::new(ClientOptions {
            credentials,
            insecure,
            ..ClientOptions::default()
        })?;
        Ok(Session::with_client(registries, client))
    }

    /// A session over an already configured client (retry policy, timeouts, extra CA roots).
    pub fn with_client(registries: RegistriesConf, client: RegistryClient) -> Session {
        Session {
            registries,
            client,
            redactor: Redactor::new(),
            #[cfg(feature = "ecr")]
            ecr: Default::default(),
        }
    }

    /// This session with these Amazon ECR settings (`--create-repository`, `--ecr-api`, the
    /// AWS identity, …; feature `ecr`). The default settings push over the registry endpoint.
    #[cfg(feature = "ecr")]
    pub fn with_ecr(mut self, ecr: crate::pipeline::ecr::EcrSettings) -> Session {
        self.ecr = ecr;
        self
    }

    /// The registries.conf mapping.
    pub fn registries(&self) -> &RegistriesConf {
        &self.registries
    }

    /// The HTTP client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The secrets this session's jobs created, received or put on the wire (credentials,
    /// tokens, Basic headers, build secrets): scrub an embedder's own logs of this session
    /// with [`Redactor::scrub`]. Each session has its own set, forgotten when the session and
    /// all its clones are dropped; see [`crate::auth::redact`].
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// This session with `redactor` as its set of secrets: to share one set among sessions,
    /// or to keep a session's secrets scrubbed for longer than the session lives (the CLI's
    /// last error line).
    pub fn with_redactor(mut self, redactor: Redactor) -> Session {
        self.redactor = redactor;
        self
    }

    /// The destination for a target.
    pub async fn destination(
        &self,
        target: &Target,
    ) -> Result<(Box<dyn Destination>, Option<String>), PipelineError> {
        match target {
            Target::Registry(r) => {
                #[cfg(feature = "ecr")]
                self.ecr
                    .check_target(r)
                    .map_err(|e| PipelineError::Destination(e))?;
                #[cfg(feature = "ecr")]
                if let Some(d) = self
                    .ecr
                    .api_destination(r)
                    .await
                    .map_err(|e| PipelineError::Destination(Box::new(e)))?
                {
                    return Ok((d, None));
                }
                let endpoint = self
                    .registries
                    .resolve(r)
                    .map_err(|e| PipelineError::Destination(Box::new(e)))?;
                let host = endpoint.host.clone();
                Ok((Box::new(self.client.repository(&endpoint)), Some(host)))
            }
            Target::Layout { dir, tag } => {
                let layout = OciLayout::open_or_create(dir, tag.clone())
                    .map_err(|e| PipelineError::Destination(Box::new(e)))?;
                Ok((Box::new(layout), None))
            }
        }
    }
}

/// The default credentials: docker `config.json` (`auths`, `credHelpers`, `credsStore`) first,
/// so an explicit entry always wins (unless it is stale: an expired or rejected one gives way
/// to the next provider); then Amazon ECR tokens for ECR hosts (feature `ecr`), through the AWS
/// default credential chain. A credential helper is stopped after `helper_timeout`.
pub fn default_credentials(
    helper_timeout: Duration,
) -> Result<Arc<dyn CredentialProvider>, AuthError> {
    #[allow(unused_mut)]
    let mut providers: Vec<Arc<dyn CredentialProvider>> = vec![Arc::new(
        DockerConfigProvider::from_env()?.with_helper_timeout(helper_timeout),
    )];
    #[cfg(feature = "ecr")]
    providers.push(Arc::new(crate::ecr::EcrCredentialProvider::new(
        crate::ecr::AwsOptions::default(),
    )));
    Ok(Arc::new(Chain::new(providers)))
}

/// Like [`default_credentials`], with ECR tokens got through a chosen AWS identity
/// (`--profile`, `--role-arn`, ...).
#[cfg(feature = "ecr")]
pub fn credentials_with_aws(
    aws: &crate::ecr::AwsOptions,
    helper_timeout: Duration,
) -> Result<Arc<dyn CredentialProvider>, AuthError> {
    Ok(docker_then_ecr(
        DockerConfigProvider::from_env()?.with_helper_timeout(helper_timeout),
        crate::ecr::EcrCredentialProvider::new(aws.clone()),
    ))
}

/// Like [`credentials_with_aws`], with ECR tokens got from the same (cached) AWS
/// configuration as the job's other ECR steps, so a role is assumed once per job.
#[cfg(feature = "ecr")]
pub fn credentials_for(
    ecr: &crate::pipeline::ecr::EcrSettings,
    helper_timeout: Duration,
) -> Result<Arc<dyn CredentialProvider>, AuthError> {
    Ok(docker_then_ecr(
        DockerConfigProvider::from_env()?.with_helper_timeout(helper_timeout),
        ecr.credential_provider(),
    ))
}

/// docker `config.json` first (an explicit entry wins), then ECR tokens.
#[cfg(feature = "ecr")]
fn docker_then_ecr(
    docker: DockerConfigProvider,
    ecr: crate::ecr::EcrCredentialProvider,
) -> Arc<dyn CredentialProvider> {
    Arc::new(Chain::new(vec![Arc::new(docker), Arc::new(ecr)]))
}

/// Why the job failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The build failed.
    #[error(transparent)]
    Build(#[from] BuildImageError),
    /// The push failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// The destination could not be set up (an OCI layout that cannot be opened, a registry
    /// that registries.conf blocks).
    #[error("{0}")]
    Destination(Box<dyn std::error::Error + Send + Sync>),
    /// An [`ImageBuilder`](crate::builder::ImageBuilder)'s description cannot be built.
    #[error(transparent)]
    Builder(#[from] crate::builder::BuilderError),
    /// [`BuildOptions::cancel`] was cancelled: the build stopped, open upload sessions were
    /// closed, nothing was tagged.
    #[error("cancelled: the build and push stopped; nothing was tagged")]
    Cancelled,
}

impl PipelineError {
    /// Whether running the same job again may succeed without changing anything: the failure
    /// was a registry's or the network's passing state (408, 429, 5xx, a dropped connection, a
    /// timeout — after the client's own retries), not the input, a refusal or a cancellation.
    pub fn is_retryable(&self) -> bool {
        use crate::registry::RegistryError;
        if matches!(self, PipelineError::Cancelled | PipelineError::Builder(_)) {
            return false;
        }
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<RegistryError>() {
                return r.last_attempt().is_retryable();
            }
            if let Some(d) = e.downcast_ref::<crate::dest::DestError>()
                && let Some(r) = d.downcast_ref::<RegistryError>()
            {
                return r.last_attempt().is_retryable();
            }
            next = e.source();
        }
        false
    }
}

/// Build the image for `build.platform` and push it to `target` (its tag, `latest` without
/// one), 4 uploads at a time: the simple form of [`build_and_push_platforms`].
pub async fn build_and_push(
    session: &Session,
    build: &BuildOptions,
    target: &Target,
    events: &EventSink,
) -> Result<Pushed, PipelineError> {
    let platforms = std::slice::from_ref(&build.platform);
    build_and_push_platforms(session, build, platforms, target, &[], 4, events).await
}

/// What a (multi-platform) build and push produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Pushed {
    /// The pushed image as printed on stdout ([`Target::pushed_name`]): `registry/repo@sha256:…`
    /// or `oci:<dir>@sha256:…`.
    pub reference: String,
    /// One image per platform, in the order asked for.
    pub images: Vec<(Platform, BuiltImage)>,
    /// The index, when more than one platform was built.
    pub index: Option<Encoded>,
    /// What the tag points to: the index, or the only image's manifest.
    pub digest: Digest,
}

/// The longest a cancelled job waits for its blocking threads to stop (a RUN stops within
/// tens of milliseconds; a thread reading a large base layer may take longer).
const CANCEL_DRAIN: Duration = Duration::from_secs(30);

/// Build the Dockerfile once per platform in `platforms` (`build.platform` is replaced by each)
/// and push: every blob first, then each manifest by digest, then, for more than one platform,
/// an index (a Docker manifest list with `Format::Docker`) under the tag and `extra_tags`. With
/// one platform the manifest itself is tagged. Nothing is tagged unless everything else is in.
/// The job's secrets go to the session's [`Redactor`].
pub async fn build_and_push_platforms(
    session: &Session,
    build: &BuildOptions,
    platforms: &[Platform],
    target: &Target,
    extra_tags: &[String],
    jobs: usize,
    events: &EventSink,
) -> Result<Pushed, PipelineError> {
    // Dropped before it returns, the job is cancelled: its threads stop.
    let (build, on_drop) = build.cancelled_on_drop();
    // Its secrets go to the session's set; events from layers without a sink of their own
    // (the client's retries, fallbacks), from the destination's set-up on, reach `events`.
    let job =
        build_and_push_in_session(session, &build, platforms, target, extra_tags, jobs, events);
    let job = crate::job_context::with_events(events, job);
    let pushed = crate::job_context::with_redactor(&session.redactor, job).await;
    on_drop.disarm();
    pushed
}

/// [`build_and_push_platforms`], in the session's job context.
async fn build_and_push_in_session(
    session: &Session,
    build: &BuildOptions,
    platforms: &[Platform],
    target: &Target,
    extra_tags: &[String],
    jobs: usize,
    events: &EventSink,
) -> Result<Pushed, PipelineError> {
    let cancel = &build.cancel;
    if cancel.is_cancelled() {
        return Err(PipelineError::Cancelled);
    }
    // A registry is set up before the build (a blocked one fails at once) and gets each new
    // layer while it is built; a layout is written only once the build succeeded.
    let early: Option<(std::sync::Arc<dyn Destination>, Option<String>)> = match target {
        Target::Registry(_) => {
            let (d, r) = session.destination(target).await?;
            Some((d.into(), r))
        }
        Target::Layout { .. } => None,
    };
    // This future dropped before the sessions are closed below: they are closed by a task of
    // their own.
    let close_on_drop = crate::dest::CloseOnDrop::new(early.as_ref().map(|(d, _)| d.clone()));
    // The blocking threads the build starts are counted in `work`.
    let work = crate::job_context::Work::default();
    let job = crate::job_context::with_work(
        &work,
        run_job(
            session,
            build,
            platforms,
            target,
            extra_tags,
            jobs,
            events,
            early.as_ref().map(|(d, r)| (d.as_ref(), r.clone())),
        ),
    );
    // Cancelling drops the job: uploads in flight stop, layer writers fail at their next write
    // (the spool is cancelled too), a running RUN is killed, and no manifest is put after this
    // point. The job returns once its blocking threads have stopped (their temporary files
    // removed), waiting at most CANCEL_DRAIN for one busy in a system call.
    let mut job = Box::pin(job);
    let finished = tokio::select! {
        biased;
        _ = cancel.cancelled() => None,
        r = &mut job => Some(r),
    };
    drop(job);
    let result = match finished {
        Some(r) => r,
        None => {
            if tokio::time::timeout(CANCEL_DRAIN, work.idle())
                .await
                .is_err()
            {
                tracing::debug!("cancelled: a build thread is still busy; returning without it");
            }
            Err(PipelineError::Cancelled)
        }
    };
    // Sessions a cancelled or failed push left open, or a retry abandoned, are closed.
    if let Some((dest, _)) = &early {
        dest.close_uploads().await;
    }
    close_on_drop.disarm();
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_job(
    session: &Session,
    build: &BuildOptions,
    platforms: &[Platform],
    target: &Target,
    extra_tags: &[String],
    jobs: usize,
    events: &EventSink,
    early: Option<(&dyn Destination, Option<String>)>,
) -> Result<Pushed, PipelineError> {
    let refs = target.references(extra_tags);
    // The destination's one-time preparation (ECR: `--create-repository`), before the first
    // upload — which may come while the image is still being built.
    let prepare = Prepare {
        session,
        target,
        ready: tokio::sync::OnceCell::new(),
    };
    let (images, uploaded) = crate::pipeline::stream::build_streaming(
        session,
        build,
        platforms,
        early.as_ref().map(|(d, _)| *d),
        &prepare,
        events,
    )
    .await?;
    // ECR cannot store an image without layers: refuse it before the config and manifest go up
    // (no layer went up while it was built: it has none).
    #[cfg(feature = "ecr")]
    if let Target::Registry(r) = target
        && crate::pipeline::ecr::EcrSettings::applies_to(r)
    {
        let counts: Vec<(String, usize)> = images
            .iter()
            .map(|(p, i)| (p.to_string(), i.layers.len()))
            .collect();
        crate::pipeline::ecr::EcrSettings::check_image(r, &counts)
            .map_err(|e| PipelineError::Destination(e))?;
    }
    let layout;
    let (dest, registry): (&dyn Destination, Option<String>) = match early {
        Some((d, r)) => (d, r),
        None => {
            layout = session.destination(target).await?;
            (layout.0.as_ref(), layout.1.clone())
        }
    };
    prepare.run().await?;
    let opts = PushOptions {
        jobs,
        registry,
        uploaded,
        logical_registry: match target {
            Target::Registry(r) => Some(r.registry.clone()),
            Target::Layout { .. } => None,
        },
    };
    let index = (images.len() > 1).then(|| index_of(build.format, &images));
    let pushed = push_all(dest, &images, index.as_ref(), &refs, &opts, events).await;
    #[cfg(feature = "ecr")]
    if let (Err(e), Target::Registry(r)) = (&pushed, target)
        && let Some(explained) = session.ecr.explain(r, e)
    {
        return Err(PipelineError::Destination(explained));
    }
    let digest = pushed?;
    #[cfg(feature = "ecr")]
    if let Target::Registry(r) = target
        && crate::pipeline::ecr::EcrSettings::applies_to(r)
    {
        session
            .ecr
            .after_push(r, &refs[0])
            .await
            .map_err(|e| PipelineError::Destination(Box::new(e)))?;
    }
    Ok(Pushed {
        reference: target.pushed_name(&digest),
        images,
        index,
        digest,
    })
}

/// The destination's one-time preparation, shared by the uploads made while building and the
/// push after it. (A type rather than a closure returning a future: such a closure's future
/// cannot be shown `Send` for every lifetime, which made the whole job unspawnable.)
pub(crate) struct Prepare<'a> {
    session: &'a Session,
    target: &'a Target,
    ready: tokio::sync::OnceCell<()>,
}

impl Prepare<'_> {
    /// Prepare the destination, the first time only.
    pub(crate) async fn run(&self) -> Result<(), PipelineError> {
        self.ready
            .get_or_try_init(|| prepare_destination(self.session, self.target))
            .await
            .map(|_| ())
    }
}

/// Make the destination ready for uploads: for Amazon ECR, the optional repository steps.
async fn prepare_destination(
    #[allow(unused_variables)] session: &Session,
    #[allow(unused_variables)] target: &Target,
) -> Result<(), PipelineError> {
    #[cfg(feature = "ecr")]
    if let Target::Registry(r) = target
        && crate::pipeline::ecr::EcrSettings::applies_to(r)
    {
        session
            .ecr
            .before_push(r)
            .await
            .map_err(|e| PipelineError::Destination(Box::new(e)))?;
    }
    Ok(())
}

/// The index over per-platform images; each entry's platform is what its config says.
fn index_of(format: Format, images: &[(Platform, BuiltImage)]) -> Encoded {
    let manifests = images
        .iter()
        .map(|(p, image)| {
            let mut d = image.manifest.descriptor();
            let config: Option<ImageConfig> = serde_json::from_slice(&image.config.bytes).ok();
            d.platform = Some(match config {
                Some(c) if !c.architecture.is_empty() => Platform {
                    architecture: c.architecture,
                    os: c.os,
                    os_version: None,
                    os_features: vec![],
                    variant: c.variant,
                },
                _ => p.clone(),
            });
            d
        })
        .collect();
    Index::new(format, manifests).encode()
}

async fn push_all(
    dest: &dyn crate::dest::Destination,
    images: &[(Platform, BuiltImage)],
    index: Option<&Encoded>,
    refs: &[String],
    opts: &PushOptions,
    events: &EventSink,
) -> Result<Digest, PushError> {
    let Some(index) = index else {
        let (_, image) = &images[0];
        return push(
            dest,
            &image.layers,
            &image.config,
            &image.manifest,
            refs,
            opts,
            events,
        )
        .await;
    };
    // Blobs shared by the platforms' images are pushed once (push_blobs).
    let blobs: Vec<Blob> = images
        .iter()
        .flat_map(|(_, image)| crate::push::image_blobs(&image.layers, &image.config))
        .collect();
    push_blobs(dest, &blobs, opts, events).await?;
    for (_, image) in images {
        put_manifest(
            dest,
            &image.manifest,
            &[image.manifest.digest.to_string()],
            events,
        )
        .await?;
    }
    put_manifest(dest, index, refs, events).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "ecr")]
    #[tokio::test]
    async fn an_explicit_docker_config_entry_wins_for_an_ecr_host() {
        use crate::auth::{Credential, RegistryHost, Secret};
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        // base64("ci-user:from-docker-config")
        let json = format!(
            r#"{{"auths":{{"{host}":{{"auth":"Y2ktdXNlcjpmcm9tLWRvY2tlci1jb25maWc="}}}}}}"#
        );
        let docker = DockerConfigProvider::from_json(&json).unwrap();
        let chain = docker_then_ecr(
            docker,
            crate::ecr::EcrCredentialProvider::new(crate::ecr::AwsOptions::default()),
        );
        let got = chain
            .credentials(&RegistryHost {
                logical: host,
                endpoint: host,
            })
            .await
            .unwrap();
        assert_eq!(
            got,
            Some(Credential::Basic {
                username: "ci-user".into(),
                password: Secret::new("from-docker-config")
            })
        );
    }

    #[test]
    fn retryable_errors_are_the_registrys_passing_state() {
        use crate::dest::DestError;
        use crate::push::PushError;
        use crate::registry::RegistryError;
        let blob = |e: RegistryError| {
            PipelineError::Push(PushError::Blob {
                dest: "registry.example/app".into(),
                digest: crate::digest::Digest::of(b"x"),
                size: 1,
                source: DestError::new(e),
            })
        };
        let timeout = RegistryError::Timeout {
            what: "uploading".into(),
            registry: "registry.example".into(),
            repository: "app".into(),
            cause: "stalled".into(),
        };
        assert!(blob(timeout).is_retryable());
        let odd = RegistryError::BadResponse {
            registry: "registry.example".into(),
            repository: "app".into(),
            what: "uploading".into(),
            reason: "a Location header that is not a URL".into(),
        };
        assert!(!blob(odd).is_retryable());
        assert!(!PipelineError::Cancelled.is_retryable());
        assert!(!PipelineError::Destination("blocked by registries.conf".into()).is_retryable());
    }

    #[test]
    fn layout_targets() {
        assert_eq!(
            Target::parse("oci:out:v1").unwrap(),
            Target::Layout {
                dir: "out".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Target::parse("oci:/tmp/x").unwrap(),
            Target::Layout {
                dir: "/tmp/x".into(),
                tag: None
            }
        );
    }
}
