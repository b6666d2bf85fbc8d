//! Images built in code: [`ImageBuilder`] starts from a [`Base`] (a registry image, an OCI
//! layout, or nothing), adds [`Layer`]s and sets the config with Dockerfile semantics, then
//! [`ImageBuilder::containerize`]s to a registry, Amazon ECR or an OCI layout.
//!
//! ```no_run
//! use ocipush::builder::{ImageBuilder, Layer};
//! use ocipush::pipeline::{Session, Target};
//! # async fn example(session: Session) -> Result<(), Box<dyn std::error::Error>> {
//! let pushed = ImageBuilder::from("alpine:3.20")
//!     .layer(Layer::new().file_with_mode("target/release/app", "/app/app", 0o755))
//!     .entrypoint(["/app/app"])
//!     .containerize(&session, &Target::parse("registry.example/app:v1")?, &ocipush::events::ignore())
//!     .await?;
//! println!("{}", pushed.reference);
//! # Ok(()) }
//! ```
//!
//! It shares the Dockerfile route's engine rather than redoing it: the builder's steps become
//! the typed instructions of a one-stage plan (values escaped so that `$`, quotes and
//! backslashes stay literal), its layers are staged in a temporary build context and copied
//! by the COPY engine — so a layer lands on its base as `COPY` would (existing directories keep
//! their mode and owner, names resolve from the image's own `/etc/passwd`), `ENTRYPOINT` resets
//! an inherited `CMD`, history is written, layers are cached, compressed while written and
//! uploaded while built, and the digest depends only on the inputs and the epoch.

mod compile;
mod layer;
mod literal;

use std::path::PathBuf;
use std::sync::Arc;

pub use layer::Layer;

use crate::build::BuildOptions;
use crate::events::EventSink;
use crate::image::{Format, Platform};
use crate::layers::Compression;
use crate::pipeline::{PipelineError, Pushed, Session, Target, build_and_push_platforms};

/// What an image starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Base {
    /// An image in a registry (`alpine:3.20`, `registry.example/base@sha256:…`), resolved for
    /// each platform built.
    Registry(String),
    /// An image in an OCI layout directory: the one tagged `tag`, else `latest` or the only one.
    Layout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// Nothing (`FROM scratch`).
    Scratch,
}

impl From<&str> for Base {
    /// `scratch` is [`Base::Scratch`]; anything else an image reference.
    fn from(s: &str) -> Base {
        if s == "scratch" {
            Base::Scratch
        } else {
            Base::Registry(s.to_string())
        }
    }
}

impl From<String> for Base {
    fn from(s: String) -> Base {
        Base::from(s.as_str())
    }
}

/// Why an [`ImageBuilder`]'s description cannot be built (inside [`PipelineError::Builder`]). When
/// the build or the push fails, messages name the builder's steps as Dockerfile lines: the
/// base is line 1, each later call (layer, entrypoint, …) the next line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuilderError {
    /// The image described cannot be built (a path given twice, a bad layer name, …).
    #[error("image builder: {0}")]
    Invalid(String),
    /// A layer's files could not be staged.
    #[error("image builder: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One call on the builder, in order.
#[derive(Debug, Clone)]
enum Step {
    Layer(Layer),
    Entrypoint(Vec<String>),
    Cmd(Vec<String>),
    Env(String, String),
    Label(String, String),
    Workdir(String),
    User(String),
    Expose(String),
    Volume(String),
    StopSignal(String),
}

/// An image described in code; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    base: Base,
    steps: Vec<Step>,
    platforms: Vec<Platform>,
    format: Format,
    epoch: u64,
    compression: Compression,
    cache_dir: Option<PathBuf>,
    tags: Vec<String>,
    jobs: usize,
    cancel: crate::CancellationToken,
    annotations: std::collections::BTreeMap<String, String>,
}

impl ImageBuilder {
    /// Start from `base` (`"alpine:3.20"`, `"scratch"`, or a [`Base`]). Defaults as the CLI's:
    /// the host's platform, OCI media types, epoch 0, gzip level 2, the layer cache in
    /// [`crate::cache::LayerCache::default_dir`], 4 uploads at a time.
    pub fn from(base: impl Into<Base>) -> ImageBuilder {
        ImageBuilder {
            base: base.into(),
            steps: Vec::new(),
            platforms: vec![crate::build::host_platform()],
            format: Format::Oci,
            epoch: 0,
            compression: Compression::default(),
            cache_dir: crate::cache::LayerCache::default_dir(),
            tags: Vec::new(),
            jobs: 4,
            cancel: crate::CancellationToken::new(),
            annotations: Default::default(),
        }
    }

    /// Add a layer on top of what is there (as `COPY`).
    pub fn layer(mut self, layer: Layer) -> ImageBuilder {
        self.steps.push(Step::Layer(layer));
        self
    }

    /// `ENTRYPOINT [..]` (exec form): also clears a `CMD` inherited from the base, as
    /// `ENTRYPOINT` does in a Dockerfile.
    pub fn entrypoint<I, S>(mut self, argv: I) -> ImageBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.steps
            .push(Step::Entrypoint(argv.into_iter().map(Into::into).collect()));
        self
    }

    /// `CMD [..]` (exec form).
    pub fn cmd<I, S>(mut self, argv: I) -> ImageBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.steps
            .push(Step::Cmd(argv.into_iter().map(Into::into).collect()));
        self
    }

    /// `ENV key=value` (the value taken literally: no `$` expansion).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::Env(key.into(), value.into()));
        self
    }

    /// `LABEL key=value`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::Label(key.into(), value.into()));
        self
    }

    /// `WORKDIR path`: relative paths resolve against the current one; the directory is
    /// created (owned by the current user) in a layer, as BuildKit does.
    pub fn workdir(mut self, path: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::Workdir(path.into()));
        self
    }

    /// `USER user[:group]`.
    pub fn user(mut self, user: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::User(user.into()));
        self
    }

    /// `EXPOSE port[/proto]` (`8080`, `53/udp`).
    pub fn expose(mut self, port: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::Expose(port.into()));
        self
    }

    /// `VOLUME path`.
    pub fn volume(mut self, path: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::Volume(path.into()));
        self
    }

    /// `STOPSIGNAL signal`.
    pub fn stop_signal(mut self, signal: impl Into<String>) -> ImageBuilder {
        self.steps.push(Step::StopSignal(signal.into()));
        self
    }

    /// An annotation of the image manifest (`org.opencontainers.image.source`, …).
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> ImageBuilder {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Build for these platforms (an index is pushed for more than one).
    pub fn platforms(mut self, platforms: impl IntoIterator<Item = Platform>) -> ImageBuilder {
        self.platforms = platforms.into_iter().collect();
        self
    }

    /// OCI (default) or Docker media types.
    pub fn format(mut self, format: Format) -> ImageBuilder {
        self.format = format;
        self
    }

    /// `SOURCE_DATE_EPOCH`: the `created` time and every layer mtime.
    pub fn epoch(mut self, epoch: u64) -> ImageBuilder {
        self.epoch = epoch;
        self
    }

    /// Layer compression.
    pub fn compression(mut self, compression: Compression) -> ImageBuilder {
        self.compression = compression;
        self
    }

    /// The layer cache directory; `None` turns the cache off.
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> ImageBuilder {
        self.cache_dir = dir;
        self
    }

    /// More tags to put the image under, besides the target's.
    pub fn tags<I, S>(mut self, tags: I) -> ImageBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// How many blobs are uploaded at a time.
    pub fn jobs(mut self, jobs: usize) -> ImageBuilder {
        self.jobs = jobs.max(1);
        self
    }

    /// Stop when `token` is cancelled: [`ImageBuilder::containerize`] then returns
    /// [`PipelineError::Cancelled`] having closed its open upload
    /// sessions and removed its temporary files; nothing is tagged.
    pub fn cancel_on(mut self, token: crate::CancellationToken) -> ImageBuilder {
        self.cancel = token;
        self
    }

    /// Build the image and push it to `target` (a registry repository, Amazon ECR, or an
    /// `oci:` layout). Layers are staged and spooled in a temporary directory removed before
    /// this returns: the result's documents and digests are complete, its layer blobs' files
    /// are gone (push again with [`crate::copy`] from the target, not from the result).
    pub async fn containerize(
        &self,
        session: &Session,
        target: &Target,
        events: &EventSink,
    ) -> Result<Pushed, PipelineError> {
        if self.platforms.is_empty() {
            return Err(BuilderError::Invalid("no platform to build for".into()).into());
        }
        if let Some(t) = self.tags.iter().find(|t| !crate::reference::valid_tag(t)) {
            return Err(BuilderError::Invalid(format!(
                "invalid tag {t:?}: a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with . or -"
            ))
            .into());
        }
        let work = tempfile::Builder::new()
            .prefix("ocipush-build-")
            .tempdir()
            .map_err(|source| BuilderError::Io {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let context = work.path().join("context");
        let spool = work.path().join("spool");
        let mut plan = compile::compile(self)?;
        // The layers move to the blocking thread that stages them (compile cloned them once).
        let staged = std::mem::take(&mut plan.layers);
        let at = context.clone();
        crate::job_context::spawn_blocking(move || {
            std::fs::create_dir(&at).map_err(|source| BuilderError::Io {
                action: "create directory",
                path: at.clone(),
                source,
            })?;
            for (name, layer) in &staged {
                layer::stage(layer, &at.join(name))?;
            }
            Ok::<_, BuilderError>(())
        })
        .await
        .map_err(|e| BuilderError::Invalid(format!("staging stopped: {e}")))??;
        let mut opts = BuildOptions::new("Dockerfile", &context, &spool);
        opts.format = self.format;
        opts.epoch = self.epoch;
        opts.compression = self.compression;
        opts.cache_dir = self.cache_dir.clone();
        opts.platform = self.platforms[0].clone();
        opts.build_contexts = plan.contexts;
        opts.stages = Some(Arc::new(plan.stages));
        opts.cancel = self.cancel.clone();
        opts.annotations = self.annotations.clone();
        let pushed = build_and_push_platforms(
            session,
            &opts,
            &self.platforms,
            target,
            &self.tags,
            self.jobs,
            events,
        )
        .await?;
        drop(work);
        Ok(pushed)
    }
}
