//! Runs a build: parse the Dockerfile, plan its stages, resolve base images, build the new
//! layers (on blocking threads, streamed to the spool), and assemble config and manifest.
//! [`inputs`] adds named contexts (`--build-context`) and `ADD <url>` downloads.

mod inputs;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::blob::{Blob, BlobSource, FileBlob};
use crate::build::{self, Compression, Context, CopySpec, LayerBlob, LayerOptions, Spool};
use crate::events::{Event, EventSink};
use crate::growing::LayerTap;
use crate::image::{Encoded, Format, ImageConfig, Manifest, Platform};
use crate::layerfs;
use crate::layerfs::LayerStore;
use crate::plan::{
    self, BaseSpec, BuildArgs, CopyFrom, LayerStep, PlanError, StageContext, Stages,
};
use crate::registries_conf::RegistriesConf;
use crate::registry::RegistryClient;
use crate::rootfs::RootFs;
use crate::source::{self, SourceError};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile.
    pub dockerfile: PathBuf,
    /// The build context directory.
    pub context: PathBuf,
    /// `--build-arg`s.
    pub build_args: BuildArgs,
    /// The target platform (the CLI's default is [`host_platform`]; several platforms are built
    /// by [`crate::job::build_and_push_platforms`], one at a time).
    pub platform: Platform,
    /// OCI or Docker media types.
    pub format: Format,
    /// `SOURCE_DATE_EPOCH`: mtimes and `created`.
    pub epoch: u64,
    /// Layer compression.
    pub compression: Compression,
    /// Where built layers are spooled.
    pub spool_dir: PathBuf,
    /// `--target` stage.
    pub target: Option<String>,
    /// The layer cache directory (`None`: no cache, layers go to the spool).
    pub cache_dir: Option<PathBuf>,
    /// `--build-context NAME=VALUE`s: what FROM, stage names and `COPY --from` resolve to
    /// instead ([`crate::contexts`]).
    pub build_contexts: crate::contexts::NamedContexts,
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
        source: build::BuildError,
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
    Context(build::BuildError),
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
    /// A blocking task failed.
    #[error("internal error: a build task stopped: {0}")]
    Join(String),
}

struct StageResult {
    config: ImageConfig,
    layers: Vec<Blob>,
    fs: StageFs,
}

/// A stage's filesystem ([`RootFs`]), read from its layers' headers only once an instruction
/// needs it: a Dockerfile with no COPY, ADD or WORKDIR never reads its base.
#[derive(Clone)]
enum StageFs {
    /// Not read yet: these layers (bottom first) of this image.
    Pending { layers: Vec<Blob>, image: String },
    /// Read and up to date.
    Ready(RootFs),
}

impl StageFs {
    /// The filesystem, reading the pending layers (on a blocking thread) first.
    fn materialize(
        self,
        rt: &tokio::runtime::Handle,
        store: &LayerStore,
        cache_dir: Option<&std::path::Path>,
    ) -> Result<RootFs, layerfs::LayerFsError> {
        match self {
            StageFs::Ready(fs) => Ok(fs),
            StageFs::Pending { layers, image } => {
                let mut fs = RootFs::empty();
                let index_dir = cache_dir.map(|d| d.join("rootfs"));
                crate::rootfs::index::apply_layers(
                    &mut fs,
                    rt,
                    store,
                    &layers,
                    &image,
                    index_dir.as_deref(),
                )?;
                tracing::debug!("{image}: {} paths in the base's filesystem", fs.len());
                Ok(fs)
            }
        }
    }
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
                    },
                );
                return Ok(());
            }
            let (base_config, mut layers, mut fs) = match &stage.base {
                BaseSpec::Scratch => (None, vec![], StageFs::Ready(RootFs::empty())),
                BaseSpec::Stage(i) if *i < index => {
                    self.stage(*i).await?;
                    let r = &self.done[i];
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
            let planned = plan::plan_stage(stage, base_config, &sctx)?;
            self.used_args.extend(planned.used_args.iter().cloned());
            for w in &planned.warnings {
                (self.events)(Event::Warning(w.clone()));
            }
            let mut config = planned.config;
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
            self.done.insert(index, StageResult { config, layers, fs });
            Ok(())
        })
    }

    async fn resolve(
        &mut self,
        image: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<source::BaseImage, BuildImageError> {
        if let Some(nc) = self.named_context(image) {
            return self.resolve_context(&nc, platform, line).await;
        }
        let base = source::resolve(self.client, self.registries, image, platform)
            .await
            .map_err(|source| BuildImageError::Base {
                line,
                source: Box::new(source),
            })?;
        (self.events)(Event::BaseResolved {
            image: base.reference.clone(),
            digest: base.digest.clone(),
        });
        Ok(base)
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

fn base_blobs(base: &source::BaseImage) -> Vec<Blob> {
    base.layers
        .iter()
        .map(|l| Blob {
            descriptor: l.descriptor.clone(),
            source: l.source.clone(),
        })
        .collect()
}

/// Where `COPY --from` writes its layer, and the build's source layers.
struct FromAt<'a> {
    spool: &'a Arc<Spool>,
    sources: &'a Arc<layerfs::LayerStore>,
}

/// `COPY --from`: read the sources out of `layers` on a blocking thread.
async fn build_from_layer(
    step: &LayerStep,
    image: String,
    layers: Vec<Blob>,
    fs: StageFs,
    at: FromAt<'_>,
    opts: &BuildOptions,
    events: &EventSink,
) -> Result<(LayerBlob, RootFs), BuildImageError> {
    let LayerStep::Copy {
        line,
        srcs,
        dest,
        chown,
        chmod,
        link,
        exclude,
        parents,
        ..
    } = step.clone()
    else {
        return Err(BuildImageError::Join("COPY --from without sources".into()));
    };
    // --parents is carried in the plan for COPY --from, but reading it out of image layers is
    // not implemented yet: refuse rather than copy the wrong paths.
    if parents {
        return Err(PlanError::Unsupported {
            line,
            what: "COPY --from with --parents".into(),
            why: "keeping source parents when reading from another stage or image is not implemented yet".into(),
            fix: "Copy each directory to its full destination path, or COPY --parents from the build context".into(),
        }
        .into());
    }
    events(Event::LayerStarted {
        line,
        step: format!("COPY --from={image} {} {dest}", srcs.join(" ")),
    });
    let layer_opts = LayerOptions {
        compression: opts.compression,
        epoch: opts.epoch,
    };
    let rt = tokio::runtime::Handle::current();
    let (spool, sources) = (at.spool.clone(), at.sources.clone());
    let cache_dir = opts.cache_dir.clone();
    let (blob, fs) = tokio::task::spawn_blocking(move || {
        let mut fs = fs
            .materialize(&rt, &sources, cache_dir.as_deref())
            .map_err(|source| BuildImageError::BaseFs { line, source })?;
        let chown = match &chown {
            Some(c) => Some(
                crate::rootfs::users::resolve_owner(&fs, c)
                    .map_err(|source| BuildImageError::Owner { line, source })?,
            ),
            None => None,
        };
        let spec = layerfs::FromSpec {
            srcs,
            dest,
            chown,
            chmod,
            exclude,
        };
        // `--link` (without --chmod): placed on scratch, merged over the stage.
        let link = link && spec.chmod.is_none();
        let mut scratch = RootFs::empty();
        let target: &mut RootFs = if link { &mut scratch } else { &mut fs };
        let onto = layerfs::Onto {
            fs: target,
            spool: &spool,
            opts: &layer_opts,
        };
        let blob = layerfs::copy_from_layers(&rt, &sources, &layers, &image, &spec, onto)
            .map_err(|source| BuildImageError::CopyFrom { line, source })?;
        if link {
            fs.overlay(&scratch);
        }
        Ok::<_, BuildImageError>((blob, fs))
    })
    .await
    .map_err(|e| BuildImageError::Join(e.to_string()))??;
    events(Event::LayerBuilt {
        line,
        digest: blob.digest.clone(),
        size: blob.size,
    });
    Ok((blob, fs))
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
    let text = read_dockerfile(&opts.dockerfile).await?;
    let df = crate::dockerfile::parse(&text).map_err(PlanError::from)?;
    for w in &df.warnings {
        events(Event::Warning(format!(
            "Dockerfile:{}: {}",
            w.line, w.message
        )));
    }
    let build_platform = host_platform();
    let auto = plan::platform_args(&opts.platform, &build_platform);
    let stages = plan::plan_stages(&df, &opts.build_args, &auto)?;
    let target = stages.target(opts.target.as_deref())?;

    let ctx_root = opts.context.clone();
    let context = tokio::task::spawn_blocking(move || Context::open(&ctx_root))
        .await
        .map_err(|e| BuildImageError::Join(e.to_string()))?
        .map_err(BuildImageError::Context)?;
    let context = Arc::new(context);
    let spool = Arc::new(Spool::new(&opts.spool_dir).map_err(BuildImageError::Context)?);
    // Source layers are kept with the layer cache when there is one, so later builds reuse them.
    let sources_dir = opts.cache_dir.as_deref().unwrap_or(&opts.spool_dir);
    let sources =
        Arc::new(layerfs::LayerStore::new(sources_dir).map_err(BuildImageError::Context)?);

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
    let manifest = Manifest::new(
        opts.format,
        config.descriptor(),
        result.layers.iter().map(|b| b.descriptor.clone()).collect(),
    );
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

/// Where a layer is written: the spool (tapped or not), and the tap for the layer cache.
struct LayerAt<'a> {
    spool: &'a Arc<Spool>,
    tap: Option<&'a LayerTap>,
    /// Where the base's layers are read from (for the stage's filesystem).
    sources: &'a Arc<layerfs::LayerStore>,
    /// `ADD <url>` downloads of the step.
    fetched: Vec<build::FetchedFile>,
}

async fn build_layer(
    step: &LayerStep,
    context: &Arc<Context>,
    at: LayerAt<'_>,
    fs: StageFs,
    opts: &BuildOptions,
    events: &EventSink,
) -> Result<(LayerBlob, RootFs), BuildImageError> {
    let layer_opts = LayerOptions {
        compression: opts.compression,
        epoch: opts.epoch,
    };
    let (line, what) = match step {
        LayerStep::Copy {
            line,
            srcs,
            dest,
            extract,
            ..
        } => (
            *line,
            format!(
                "{} {} {}",
                if *extract { "ADD" } else { "COPY" },
                srcs.join(" "),
                dest
            ),
        ),
        LayerStep::Mkdir { line, dirs, .. } => (
            *line,
            format!("WORKDIR {}", dirs.last().cloned().unwrap_or_default()),
        ),
    };
    events(Event::LayerStarted { line, step: what });
    let (context, spool, step2) = (context.clone(), at.spool.clone(), step.clone());
    let cache_dir = opts.cache_dir.clone();
    let tap = at.tap.cloned();
    let sources = at.sources.clone();
    let fetched = at.fetched;
    let rt = tokio::runtime::Handle::current();
    let (blob, fs) = tokio::task::spawn_blocking(move || {
        let mut fs = fs
            .materialize(&rt, &sources, cache_dir.as_deref())
            .map_err(|source| BuildImageError::BaseFs { line, source })?;
        let blob = build_on(
            step2,
            &context,
            &mut fs,
            &spool,
            tap,
            cache_dir,
            &layer_opts,
            fetched,
        )?;
        Ok::<_, BuildImageError>((blob, fs))
    })
    .await
    .map_err(|e| BuildImageError::Join(e.to_string()))??;
    events(Event::LayerBuilt {
        line,
        digest: blob.digest.clone(),
        size: blob.size,
    });
    Ok((blob, fs))
}

/// Build one COPY/ADD/WORKDIR layer on the stage's filesystem `fs` (updated), on a blocking
/// thread.
#[allow(clippy::too_many_arguments)]
fn build_on(
    step: LayerStep,
    context: &Context,
    fs: &mut RootFs,
    spool: &Spool,
    tap: Option<LayerTap>,
    cache_dir: Option<PathBuf>,
    layer_opts: &LayerOptions,
    fetched: Vec<build::FetchedFile>,
) -> Result<LayerBlob, BuildImageError> {
    let line = step.line();
    let owner = |fs: &RootFs, spec: &str| {
        crate::rootfs::users::resolve_owner(fs, spec)
            .map_err(|source| BuildImageError::Owner { line, source })
    };
    let layer_err = |source| BuildImageError::Layer { line, source };
    match step {
        LayerStep::Copy {
            srcs,
            dest,
            chown,
            chmod,
            extract,
            link,
            inline,
            exclude,
            parents,
            ..
        } => {
            let chown = match &chown {
                Some(c) => Some(owner(fs, c)?),
                None => None,
            };
            let spec = CopySpec {
                srcs,
                dest,
                chown,
                chmod,
                extract_archives: extract,
                inline,
                exclude,
                parents,
                fetched,
            };
            // BuildKit's `COPY --link` (without --chmod) copies onto scratch and merges the
            // result over the stage (dockerfile2llb `convert_copy.go`): the layer does not
            // depend on what is below it.
            let link = link && spec.chmod.is_none();
            let mut scratch = RootFs::empty();
            let target: &mut RootFs = if link { &mut scratch } else { fs };
            let blob = match cache_dir {
                Some(dir) => crate::cache::LayerCache::open(dir)
                    .map_err(layer_err)?
                    .with_tap(tap)
                    .copy_layer_on(context, &spec, layer_opts, target)
                    .map(|(blob, _)| blob),
                None => build::build_copy_layer_on(context, &spec, target, spool, layer_opts),
            }
            .map_err(layer_err)?;
            if link {
                fs.overlay(&scratch);
            }
            Ok(blob)
        }
        LayerStep::Mkdir { dirs, user, .. } => {
            let owner = match &user {
                Some(u) => owner(fs, u)?,
                None => (0, 0),
            };
            let dir = dirs.last().cloned().unwrap_or_else(|| "/".into());
            build::build_mkdir_layer(&dir, owner, fs, spool, layer_opts).map_err(layer_err)
        }
    }
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
