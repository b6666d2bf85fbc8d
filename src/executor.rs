//! Runs a build: parse the Dockerfile, plan its stages, resolve base images, build the new
//! layers (on blocking threads, streamed to the spool), and assemble config and manifest.

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
use crate::plan::{
    self, BaseSpec, BuildArgs, CopyFrom, LayerStep, PlanError, StageContext, Stages,
};
use crate::registries_conf::RegistriesConf;
use crate::registry::RegistryClient;
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
        source: SourceError,
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
    /// A blocking task failed.
    #[error("internal error: a build task stopped: {0}")]
    Join(String),
}

struct StageResult {
    config: ImageConfig,
    layers: Vec<Blob>,
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
    /// The stage whose layers are published to `tap`: the target (only its own new layers end
    /// up in the image; a stage read by `COPY --from` never does).
    target: usize,
    tap: Option<LayerTap>,
    done: BTreeMap<usize, StageResult>,
    used_args: BTreeSet<String>,
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
            let (base_config, mut layers) = match &stage.base {
                BaseSpec::Scratch => (None, vec![]),
                BaseSpec::Stage(i) if *i < index => {
                    self.stage(*i).await?;
                    let r = &self.done[i];
                    (Some(r.config.clone()), r.layers.clone())
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
                    (Some(base.config), blobs)
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
                let layer = match &step {
                    LayerStep::Copy {
                        from: Some(from), ..
                    } => {
                        let (name, src_layers) = self.source_layers(from, step.line()).await?;
                        build_from_layer(&step, name, src_layers, &spool, self.opts, self.events)
                            .await?
                    }
                    _ => {
                        let at = LayerAt {
                            spool: &spool,
                            tap: tap.as_ref(),
                        };
                        build_layer(&step, &self.context, at, self.opts, self.events).await?
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
            self.done.insert(index, StageResult { config, layers });
            Ok(())
        })
    }

    async fn resolve(
        &self,
        image: &str,
        platform: &Platform,
        line: usize,
    ) -> Result<source::BaseImage, BuildImageError> {
        let base = source::resolve(self.client, self.registries, image, platform)
            .await
            .map_err(|source| BuildImageError::Base { line, source })?;
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

/// `COPY --from`: read the sources out of `layers` on a blocking thread.
async fn build_from_layer(
    step: &LayerStep,
    image: String,
    layers: Vec<Blob>,
    spool: &Arc<Spool>,
    opts: &BuildOptions,
    events: &EventSink,
) -> Result<LayerBlob, BuildImageError> {
    let LayerStep::Copy {
        line,
        srcs,
        dest,
        chown,
        chmod,
        exclude,
        parents,
        ..
    } = step.clone()
    else {
        return Err(BuildImageError::Join("COPY --from without sources".into()));
    };
    // --exclude and --parents are carried in the plan for COPY --from, but reading them out
    // of image layers is not implemented yet: refuse rather than copy too much.
    if !exclude.is_empty() || parents {
        let flag = if parents { "--parents" } else { "--exclude" };
        return Err(PlanError::Unsupported {
            line,
            what: format!("COPY --from with {flag}"),
            why: "reading these from another stage or image is not implemented yet".into(),
            fix: format!("Copy without {flag}, or COPY the selected files from the build context"),
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
    let spec = layerfs::FromSpec {
        srcs,
        dest,
        chown,
        chmod,
    };
    let rt = tokio::runtime::Handle::current();
    let spool = spool.clone();
    let blob = tokio::task::spawn_blocking(move || {
        layerfs::copy_from_layers(&rt, &layers, &image, &spec, &spool, &layer_opts)
    })
    .await
    .map_err(|e| BuildImageError::Join(e.to_string()))?
    .map_err(|source| BuildImageError::CopyFrom { line, source })?;
    events(Event::LayerBuilt {
        line,
        digest: blob.digest.clone(),
        size: blob.size,
    });
    Ok(blob)
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

    let mut b = Builder {
        opts,
        client,
        registries,
        events,
        stages: &stages,
        auto: &auto,
        context,
        spool,
        target,
        tap,
        done: BTreeMap::new(),
        used_args: BTreeSet::new(),
    };
    b.stage(target).await?;
    let Builder {
        mut done,
        used_args,
        ..
    } = b;
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
}

async fn build_layer(
    step: &LayerStep,
    context: &Arc<Context>,
    at: LayerAt<'_>,
    opts: &BuildOptions,
    events: &EventSink,
) -> Result<LayerBlob, BuildImageError> {
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
        LayerStep::Mkdir { line, dirs } => (
            *line,
            format!("WORKDIR {}", dirs.last().cloned().unwrap_or_default()),
        ),
    };
    events(Event::LayerStarted { line, step: what });
    let (context, spool, step2) = (context.clone(), at.spool.clone(), step.clone());
    let cache_dir = opts.cache_dir.clone();
    let tap = at.tap.cloned();
    let blob = tokio::task::spawn_blocking(move || match step2 {
        LayerStep::Copy {
            srcs,
            dest,
            chown,
            chmod,
            extract,
            inline,
            exclude,
            parents,
            ..
        } => {
            let spec = CopySpec {
                srcs,
                dest,
                chown,
                chmod,
                extract_archives: extract,
                inline,
                exclude,
                parents,
            };
            match cache_dir {
                Some(dir) => crate::cache::LayerCache::open(dir)?
                    .with_tap(tap)
                    .copy_layer(&context, &spec, &layer_opts)
                    .map(|(blob, _)| blob),
                None => build::build_copy_layer(&context, &spec, &spool, &layer_opts),
            }
        }
        LayerStep::Mkdir { dirs, .. } => build::build_dirs_layer(&dirs, &spool, &layer_opts),
    })
    .await
    .map_err(|e| BuildImageError::Join(e.to_string()))?
    .map_err(|source| BuildImageError::Layer { line, source })?;
    events(Event::LayerBuilt {
        line,
        digest: blob.digest.clone(),
        size: blob.size,
    });
    Ok(blob)
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
