//! Runs a build: parse the Dockerfile, plan its stages, resolve base images, build the new
//! layers (on blocking threads, streamed to the spool), and assemble config and manifest.
//! [`inputs`] adds named contexts (`--build-context`) and `ADD <url>` downloads.

mod inputs;
mod layer_steps;
mod run_step;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use crate::base_image::SourceError;
pub use crate::fetch::FetchError;
pub use crate::layerfs::LayerFsError;
pub use crate::plan::{BuildArgs, PlanError};
pub use crate::run::RunError;

use crate::base_image;
use crate::blob::{Blob, BlobSource, FileBlob};
use crate::events::{Event, EventSink};
use crate::image::{Encoded, Format, ImageConfig, Manifest, Platform};
use crate::layerfs;
use crate::layers::{self, Compression, Context, Spool};
use crate::plan::{self, BaseSpec, CopyFrom, LayerStep, StageContext, Stages};
use crate::registries_conf::RegistriesConf;
use crate::registry::RegistryClient;
use crate::rootfs::RootFs;
use crate::streaming::LayerTap;
use layer_steps::{FromAt, LayerAt, StageFs, build_from_layer, build_layer};

/// What to build: [`BuildOptions::new`] (a Dockerfile on disk) or [`BuildOptions::from_text`],
/// then set the fields that differ from the defaults (the CLI's: host platform, OCI media types,
/// epoch 0, gzip level 2, the layer cache in [`crate::cache::LayerCache::default_dir`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The Dockerfile (read when [`BuildOptions::dockerfile_text`] is `None`).
    pub dockerfile: PathBuf,
    /// The Dockerfile's text, used instead of reading [`BuildOptions::dockerfile`].
    pub dockerfile_text: Option<String>,
    /// The build context directory.
    pub context: PathBuf,
    /// `--build-arg`s.
    pub build_args: BuildArgs,
    /// The target platform (the CLI's default is [`host_platform`]; several platforms are built
    /// by [`crate::pipeline::build_and_push_platforms`], one at a time).
    pub platform: Platform,
    /// OCI or Docker media types.
    pub format: Format,
    /// `SOURCE_DATE_EPOCH`: mtimes and `created`.
    pub epoch: u64,
    /// Layer compression.
    pub compression: Compression,
    /// Threads compressing one layer, 0 (the default) for one per available core (a cargo
    /// plugin honouring cargo's jobserver sets it). The bytes are the same for any number.
    pub compress_threads: usize,
    /// Where built layers are spooled (the caller owns it: the layers of the returned image
    /// are files in it).
    pub spool_dir: PathBuf,
    /// `--target` stage.
    pub target: Option<String>,
    /// The layer cache directory (`None`: no cache, layers go to the spool).
    pub cache_dir: Option<PathBuf>,
    /// `--build-context NAME=VALUE`s: what FROM, stage names and `COPY --from` resolve to
    /// instead ([`crate::contexts`]).
    pub build_contexts: crate::contexts::NamedContexts,
    /// Cancels the build and its push ([`crate::pipeline::build_and_push_platforms`] then returns
    /// [`crate::pipeline::PipelineError::Cancelled`]): layer writers stop at their next write, open
    /// upload sessions are closed, nothing is tagged. Dropping the job's future (aborting its
    /// task) does the same: its threads stop, and its sessions are closed by a task of their
    /// own.
    pub cancel: CancellationToken,
    /// `--secret`s: where each build secret `RUN --mount=type=secret` reads comes from.
    pub secrets: crate::secrets::BuildSecrets,
    /// `--annotation`s: put in each image manifest's `annotations` (buildx's default
    /// `manifest` level), e.g. `org.opencontainers.image.source`.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Stages planned in code ([`crate::builder::ImageBuilder`]): used instead of a Dockerfile.
    pub(crate) stages: Option<Arc<Stages>>,
}

impl BuildOptions {
    /// A copy whose token is a child of this one's, and the guard that cancels it when
    /// dropped: a build future dropped mid-way (how embedders often cancel) stops the threads
    /// it started — layer writers, a `RUN`, base reads — as cancelling the token does, rather
    /// than leave them running for nobody. Disarm the guard once the build has returned.
    pub(crate) fn cancelled_on_drop(&self) -> (BuildOptions, tokio_util::sync::DropGuard) {
        let mut scoped = self.clone();
        scoped.cancel = self.cancel.child_token();
        let guard = scoped.cancel.clone().drop_guard();
        (scoped, guard)
    }

    /// Build the Dockerfile at `dockerfile` with `context` as the build context, spooling new
    /// layers in `spool_dir`; every other option has the CLI's default.
    pub fn new(
        dockerfile: impl Into<PathBuf>,
        context: impl Into<PathBuf>,
        spool_dir: impl Into<PathBuf>,
    ) -> BuildOptions {
        BuildOptions {
            dockerfile: dockerfile.into(),
            dockerfile_text: None,
            context: context.into(),
            build_args: BuildArgs::default(),
            platform: host_platform(),
            format: Format::Oci,
            epoch: 0,
            compression: Compression::default(),
            compress_threads: 0,
            spool_dir: spool_dir.into(),
            target: None,
            cache_dir: crate::cache::LayerCache::default_dir(),
            build_contexts: Default::default(),
            cancel: CancellationToken::new(),
            secrets: Default::default(),
            annotations: Default::default(),
            stages: None,
        }
    }

    /// Build a Dockerfile given as text (its messages name it `Dockerfile`).
    pub fn from_text(
        text: impl Into<String>,
        context: impl Into<PathBuf>,
        spool_dir: impl Into<PathBuf>,
    ) -> BuildOptions {
        let mut o = BuildOptions::new("Dockerfile", context, spool_dir);
        o.dockerfile_text = Some(text.into());
        o
    }
}

/// A built image, ready to push: its blobs (base layers stay remote) and its documents.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Layers, bottom first.
    pub layers: Vec<Blob>,
    /// The config document.
    pub config: Encoded,
    /// The manifest document.
    pub manifest: Encoded,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildImageError {
    /// The Dockerfile could not be read.
    #[error("cannot read Dockerfile {path}: {source}")]
    ReadDockerfile {
        /// Path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The Dockerfile is larger than any real one.
    #[error(
        "Dockerfile {path} is {size} bytes, more than the {limit} bytes ocipush reads; is it really a Dockerfile?"
    )]
    DockerfileTooLarge {
        /// Path.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Parsing or planning failed.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A base image could not be resolved.
    #[error("Dockerfile:{line}: {source}")]
    Base {
        /// The FROM line.
        line: usize,
        /// Why.
        #[source]
        source: Box<SourceError>,
    },
    /// A layer could not be built.
    #[error("Dockerfile:{line}: {source}")]
    Layer {
        /// The instruction's line.
        line: usize,
        /// Why.
        #[source]
        source: layers::BuildError,
    },
    /// The base's filesystem could not be read (for placing a layer on it).
    #[error("Dockerfile:{line}: reading the base image's filesystem: {source}")]
    BaseFs {
        /// The instruction's line.
        line: usize,
        /// Why.
        #[source]
        source: layerfs::LayerFsError,
    },
    /// A `--chown` or `USER` name is not in the stage's files.
    #[error("Dockerfile:{line}: {source}")]
    Owner {
        /// The instruction's line.
        line: usize,
        /// Why.
        #[source]
        source: crate::rootfs::users::UserError,
    },
    /// `COPY --from` could not read its sources.
    #[error("Dockerfile:{line}: {source}")]
    CopyFrom {
        /// The COPY line.
        line: usize,
        /// Why.
        #[source]
        source: layerfs::LayerFsError,
    },
    /// The build context could not be opened.
    #[error(transparent)]
    Context(layers::BuildError),
    /// An `ADD <url>` source could not be downloaded.
    #[error("Dockerfile:{line}: ADD: {source}")]
    Fetch {
        /// The ADD line.
        line: usize,
        /// Why.
        #[source]
        source: crate::fetch::FetchError,
    },
    /// A named context (`--build-context`) could not be used.
    #[error("Dockerfile:{line}: {source}")]
    NamedContext {
        /// The line that used it.
        line: usize,
        /// Why.
        #[source]
        source: Box<crate::contexts::ContextError>,
    },
    /// A `RUN` failed (or cannot run here).
    #[error("Dockerfile:{line}: {source}")]
    Run {
        /// The RUN line.
        line: usize,
        /// Why.
        #[source]
        source: Box<crate::run::RunError>,
    },
    /// A blocking task failed.
    #[error("internal error: a build task stopped: {0}")]
    Join(String),
}

struct StageResult {
    config: ImageConfig,
    layers: Vec<Blob>,
    fs: StageFs,
    /// What a stage `FROM` this one inherits for its RUNs.
    run_state: plan::RunState,
}

/// Builds stages on demand: a stage first builds the stages its `FROM` and `COPY --from` name,
/// so stages nothing needs are never resolved.
struct Builder<'a> {
    opts: &'a BuildOptions,
    client: &'a RegistryClient,
    registries: &'a RegistriesConf,
    events: &'a EventSink,
    stages: &'a Stages,
    auto: &'a BTreeMap<String, String>,
    context: Arc<Context>,
    spool: Arc<Spool>,
    /// The layers `COPY --from` reads, each fetched once per build.
    sources: Arc<layerfs::LayerStore>,
    /// The stage whose layers are published to `tap`: the target (only its own new layers end
    /// up in the image; a stage read by `COPY --from` never does).
    target: usize,
    tap: Option<LayerTap>,
    done: BTreeMap<usize, StageResult>,
    used_args: BTreeSet<String>,
    /// Named contexts looked up so far.
    used_contexts: BTreeSet<String>,
    downloads: inputs::Downloads,
}

type StageFuture<'b> = Pin<Box<dyn Future<Output = Result<(), BuildImageError>> + Send + 'b>>;

impl Builder<'_> {
    /// Build stage `index` (and what it needs) unless built already.
    fn stage(&mut self, index: usize) -> StageFuture<'_> {
        Box::pin(async move {
            if self.done.contains_key(&index) {
                return Ok(());
            }
            let stages = self.stages;
            let stage = &stages.stages[index];
            // A named context named like the stage replaces it (dockerfile2llb convert.go).
            if let Some(nc) = stage.name.as_deref().and_then(|n| self.named_context(n)) {
                let platform = stage
                    .platform
                    .clone()
                    .unwrap_or_else(|| self.opts.platform.clone());
                let base = self.resolve_context(&nc, &platform, stage.line).await?;
                let layers = base_blobs(&base);
                let fs = StageFs::Pending {
                    layers: layers.clone(),
                    image: base.reference.clone(),
                };
                self.done.insert(
                    index,
                    StageResult {
                        config: base.config,
                        layers,
                        fs,
                        run_state: Default::default(),
                    },
                );
                return Ok(());
            }
            let mut base_run = None;
            let (base_config, mut layers, mut fs) = match &stage.base {
                BaseSpec::Scratch => (None, vec![], StageFs::Ready(RootFs::empty())),
                BaseSpec::Stage(i) if *i < index => {
                    self.stage(*i).await?;
                    let r = &self.done[i];
                    base_run = Some(r.run_state.clone());
                    (Some(r.config.clone()), r.layers.clone(), r.fs.clone())
                }
                BaseSpec::Stage(i) => {
                    return Err(PlanError::UnknownStage {
                        line: stage.line,
                        name: i.to_string(),
                    }
                    .into());
                }
                BaseSpec::Image(image) => {
                    let platform = stage
                        .platform
                        .clone()
                        .unwrap_or_else(|| self.opts.platform.clone());
                    let base = self.resolve(image, &platform, stage.line).await?;
                    let blobs = base_blobs(&base);
                    let fs = StageFs::Pending {
                        layers: blobs.clone(),
                        image: base.reference.clone(),
                    };
                    (Some(base.config), blobs, fs)
                }
            };
            let sctx = StageContext {
                stages,
                build_args: &self.opts.build_args.0,
                auto_args: self.auto,
                platform: &self.opts.platform,
                epoch: self.opts.epoch,
            };
            let planned = plan::plan_stage_on(stage, base_config, base_run.as_ref(), &sctx)?;
            self.used_args.extend(planned.used_args.iter().cloned());
            for w in &planned.warnings {
                (self.events)(Event::Warning(w.clone()));
            }
            let mut config = planned.config;
            let planned_run_state = planned.run_state;
            let tap = self.tap.clone().filter(|_| index == self.target);
            let spool = match &tap {
                Some(_) => Arc::new((*self.spool).clone().with_tap(tap.clone())),
                None => self.spool.clone(),
            };
            for step in planned.layers {
                // `COPY --from=<directory context>` copies out of that directory.
                let dir_ctx = self.copy_dir_context(&step)?;
                let step = match &dir_ctx {
                    Some(_) => inputs::without_from(&step),
                    None => step,
                };
                let layer = match &step {
                    LayerStep::Run(run) => {
                        let name = match &stage.name {
                            Some(n) => format!("stage {n:?}"),
                            None => format!("stage {index}"),
                        };
                        let mounts = self.run_mount_sources(run).await?;
                        let on = run_step::RunOn {
                            layers: layers.clone(),
                            diff_ids: config.rootfs.diff_ids.clone(),
                            fs,
                            name,
                            arch: config.architecture.clone(),
                            mounts,
                        };
                        let (layer, next) = run_step::build_run_layer(
                            run,
                            on,
                            &spool,
                            &self.sources,
                            self.opts,
                            self.events,
                        )
                        .await?;
                        fs = StageFs::Ready(next);
                        layer
                    }
                    LayerStep::Copy {
                        from: Some(from), ..
                    } => {
                        let (name, src_layers) = self.source_layers(from, step.line()).await?;
                        let at = FromAt {
                            spool: &spool,
                            sources: &self.sources,
                        };
                        let (layer, next) = build_from_layer(
                            &step,
                            name,
                            src_layers,
                            fs,
                            at,
                            self.opts,
                            self.events,
                        )
                        .await?;
                        fs = StageFs::Ready(next);
                        layer
                    }
                    _ => {
                        let fetched = self.fetch_remote(&step).await?;
                        let at = LayerAt {
                            spool: &spool,
                            tap: tap.as_ref(),
                            sources: &self.sources,
                            fetched,
                        };
                        let context = dir_ctx.unwrap_or_else(|| self.context.clone());
                        let (layer, next) =
                            build_layer(&step, &context, at, fs, self.opts, self.events).await?;
                        fs = StageFs::Ready(next);
                        layer
                    }
                };
                config.rootfs.diff_ids.push(layer.diff_id.clone());
                let media_type = layer
                    .media_type(self.opts.format == Format::Oci)
                    .to_string();
                layers.push(Blob {
                    descriptor: crate::image::Descriptor::new(
                        media_type,
                        layer.digest.clone(),
                        layer.size,
                    ),
                    source: Arc::new(FileBlob {
                        path: layer.path.clone(),
                    }) as Arc<dyn BlobSource>,
                });
            }
            let run_state = planned_run_state;
            self.done.insert(
                index,
                StageResult {
                    config,
                    layers,
                    fs,
                    run_state,
                },
            );
            Ok(())
        })
    }

    async fn resolve(
        &mut self,
        image: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<base_image::BaseImage, BuildImageError> {
        if let Some(nc) = self.named_context(image) {
            return self.resolve_context(&nc, platform, line).await;
        }
        let base = base_image::resolve(self.client, self.registries, image, platform)
            .await
            .map_err(|source| BuildImageError::Base {
                line,
                source: Box::new(source),
            })?;
        (self.events)(Event::BaseResolved {
            platform: self.opts.platform.to_string(),
            image: base.reference.clone(),
            digest: base.digest.clone(),
        });
        Ok(base)
    }

    /// Where each `--mount` of `run` reads from (a bind's files, a new cache's seed): the build
    /// context, a directory named context, an earlier stage (built first) or an image.
    async fn run_mount_sources(
        &mut self,
        run: &plan::RunStep,
    ) -> Result<Vec<run_step::MountFrom>, BuildImageError> {
        use run_step::MountFrom;
        let mut out = Vec::with_capacity(run.mounts.len());
        for m in &run.mounts {
            let from = match m {
                plan::RunMount::Bind { from, .. } => from,
                plan::RunMount::Cache {
                    from: from @ Some(_),
                    ..
                } => from,
                _ => {
                    out.push(MountFrom::None);
                    continue;
                }
            };
            out.push(match from {
                None => MountFrom::Dir(self.context.clone()),
                Some(CopyFrom::Stage(i)) => {
                    self.stage(*i).await?;
                    let name = match &self.stages.stages[*i].name {
                        Some(n) => format!("stage {n:?}"),
                        None => format!("stage {i}"),
                    };
                    let r = &self.done[i];
                    MountFrom::Layers {
                        layers: r.layers.clone(),
                        diff_ids: r.config.rootfs.diff_ids.clone(),
                        fs: r.fs.clone(),
                        name,
                    }
                }
                Some(CopyFrom::Image(image)) => {
                    let copy = LayerStep::Copy {
                        line: run.line,
                        srcs: vec![],
                        dest: String::new(),
                        chown: None,
                        chmod: None,
                        extract: false,
                        from: Some(CopyFrom::Image(image.clone())),
                        inline: vec![],
                        exclude: vec![],
                        parents: false,
                        link: false,
                        remote: vec![],
                        merge_dirs: false,
                    };
                    match self.copy_dir_context(&copy)? {
                        Some(ctx) => MountFrom::Dir(ctx),
                        None => {
                            let platform = self.opts.platform.clone();
                            let base = self.resolve(image, &platform, run.line).await?;
                            let layers = base_blobs(&base);
                            MountFrom::Layers {
                                diff_ids: base.config.rootfs.diff_ids.clone(),
                                fs: StageFs::Pending {
                                    layers: layers.clone(),
                                    image: base.reference.clone(),
                                },
                                layers,
                                name: base.reference.clone(),
                            }
                        }
                    }
                }
            });
        }
        Ok(out)
    }

    /// The layers `COPY --from` reads: an earlier stage's (built first) or an image's.
    async fn source_layers(
        &mut self,
        from: &CopyFrom,
        line: usize,
    ) -> Result<(String, Vec<Blob>), BuildImageError> {
        match from {
            CopyFrom::Stage(i) => {
                self.stage(*i).await?;
                let name = match &self.stages.stages[*i].name {
                    Some(n) => format!("stage {n:?}"),
                    None => format!("stage {i}"),
                };
                Ok((name, self.done[i].layers.clone()))
            }
            CopyFrom::Image(image) => {
                let platform = self.opts.platform.clone();
                let base = self.resolve(image, &platform, line).await?;
                Ok((base.reference.clone(), base_blobs(&base)))
            }
        }
    }
}

fn base_blobs(base: &base_image::BaseImage) -> Vec<Blob> {
    base.layers
        .iter()
        .map(|l| Blob {
            descriptor: l.descriptor.clone(),
            source: l.source.clone(),
        })
        .collect()
}

/// The largest Dockerfile read (real ones are kilobytes).
pub const MAX_DOCKERFILE: u64 = 4 * 1024 * 1024;

/// Read the Dockerfile, refusing one larger than [`MAX_DOCKERFILE`] before reading it.
async fn read_dockerfile(path: &std::path::Path) -> Result<String, BuildImageError> {
    use tokio::io::AsyncReadExt;
    let err = |source| BuildImageError::ReadDockerfile {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(err)?;
    let mut text = String::new();
    // Read one byte past the limit to tell "exactly at" from "over".
    let n = file
        .take(MAX_DOCKERFILE + 1)
        .read_to_string(&mut text)
        .await
        .map_err(err)?;
    if n as u64 > MAX_DOCKERFILE {
        let size = tokio::fs::metadata(path)
            .await
            .map(|m| m.len())
            .unwrap_or(n as u64);
        return Err(BuildImageError::DockerfileTooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_DOCKERFILE,
        });
    }
    Ok(text)
}

/// Build the image `opts` describes. `registries`/`client` reach base images.
pub async fn build_image(
    opts: &BuildOptions,
    client: &RegistryClient,
    registries: &RegistriesConf,
    events: &EventSink,
) -> Result<BuiltImage, BuildImageError> {
    build_image_tapped(opts, client, registries, events, None).await
}

/// Like [`build_image`], publishing each new layer of the target stage to `tap` as its
/// writing starts, so it can be uploaded while it is built. Layers served from the layer
/// cache are not published: they are finished blobs already.
pub async fn build_image_tapped(
    opts: &BuildOptions,
    client: &RegistryClient,
    registries: &RegistriesConf,
    events: &EventSink,
    tap: Option<LayerTap>,
) -> Result<BuiltImage, BuildImageError> {
    let (opts, on_drop) = opts.cancelled_on_drop();
    // Retries and fallbacks deep in the registry client and the fetcher reach `events` too.
    let built = crate::job_context::with_events(
        events,
        build_image_in_job(&opts, client, registries, events, tap),
    )
    .await;
    on_drop.disarm();
    built
}

/// [`build_image_tapped`] inside a job that already set its context and its cancellation on
/// drop (the pipeline's).
pub(crate) async fn build_image_in_job(
    opts: &BuildOptions,
    client: &RegistryClient,
    registries: &RegistriesConf,
    events: &EventSink,
    tap: Option<LayerTap>,
) -> Result<BuiltImage, BuildImageError> {
    let build_platform = host_platform();
    let auto = plan::platform_args(&opts.platform, &build_platform);
    let stages = match &opts.stages {
        Some(stages) => stages.as_ref().clone(),
        None => {
            let text = match &opts.dockerfile_text {
                Some(t) => t.clone(),
                None => read_dockerfile(&opts.dockerfile).await?,
            };
            let df = crate::dockerfile::parse(&text).map_err(PlanError::from)?;
            for w in &df.warnings {
                events(Event::Warning(format!(
                    "Dockerfile:{}: {}",
                    w.line, w.message
                )));
            }
            plan::plan_stages(&df, &opts.build_args, &auto)?
        }
    };
    let target = stages.target(opts.target.as_deref())?;

    let ctx_root = opts.context.clone();
    let context = crate::job_context::spawn_blocking(move || Context::open(&ctx_root))
        .await
        .map_err(|e| BuildImageError::Join(e.to_string()))?
        .map_err(BuildImageError::Context)?;
    let context = Arc::new(context);
    let spool = Arc::new(
        Spool::new(&opts.spool_dir)
            .map_err(BuildImageError::Context)?
            .with_cancel(Some(opts.cancel.clone())),
    );
    // RUN's snapshots in the spool (no cache) are cleared when the build ends (rootless, they
    // hold files the user can only remove inside its user namespace).
    let _run_state = crate::run::SpoolGuard(opts.spool_dir.clone());
    // Source layers are kept with the layer cache when there is one, so later builds reuse them.
    let sources_dir = opts.cache_dir.as_deref().unwrap_or(&opts.spool_dir);
    let sources = Arc::new(
        layerfs::LayerStore::new(sources_dir)
            .map_err(BuildImageError::Context)?
            .with_cancel(opts.cancel.clone()),
    );

    let mut b = Builder {
        opts,
        client,
        registries,
        events,
        stages: &stages,
        auto: &auto,
        context,
        spool,
        sources,
        target,
        tap,
        done: BTreeMap::new(),
        used_args: BTreeSet::new(),
        used_contexts: BTreeSet::new(),
        downloads: inputs::Downloads::new(&opts.spool_dir, opts.cache_dir.as_deref()),
    };
    b.stage(target).await?;
    let Builder {
        mut done,
        used_args,
        used_contexts,
        ..
    } = b;
    for w in inputs::unused_contexts(&opts.build_contexts, &stages, &used_contexts) {
        events(Event::Warning(w));
    }
    for k in opts.build_args.0.keys() {
        if !used_args.contains(k) && !stages.global_args.contains_key(k) {
            events(Event::Warning(format!(
                "build argument {k} was given but no ARG in the Dockerfile consumes it"
            )));
        }
    }
    let result = done
        .remove(&target)
        .ok_or_else(|| BuildImageError::Join("target stage was not built".into()))?;
    let config = Encoded::new(&result.config, opts.format.config_type());
    let mut manifest = Manifest::new(
        opts.format,
        config.descriptor(),
        result.layers.iter().map(|b| b.descriptor.clone()).collect(),
    );
    manifest.annotations.extend(opts.annotations.clone());
    // The manifest's layer descriptors carry the media types converted to the format.
    let layers = result
        .layers
        .into_iter()
        .zip(manifest.layers.iter().cloned())
        .map(|(b, descriptor)| Blob {
            descriptor,
            source: b.source,
        })
        .collect();
    let manifest = manifest.encode();
    Ok(BuiltImage {
        layers,
        config,
        manifest,
    })
}

/// The platform of the machine running ocipush.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    Platform {
        architecture: arch.into(),
        os: "linux".into(),
        os_version: None,
        os_features: vec![],
        variant: None,
    }
}
