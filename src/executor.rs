//! Runs a build: parse the Dockerfile, plan its stages, resolve base images, build the new
//! layers (on blocking threads, streamed to the spool), and assemble config and manifest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::blob::{Blob, BlobSource, FileBlob};
use crate::build::{self, Compression, Context, CopySpec, LayerBlob, LayerOptions, Spool};
use crate::events::{Event, EventSink};
use crate::image::{Encoded, Format, ImageConfig, Manifest, Platform};
use crate::plan::{self, BaseSpec, BuildArgs, LayerStep, PlanError, StageContext, Stages};
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
    /// The target platform.
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

/// Build the image `opts` describes. `registries`/`client` reach base images.
pub async fn build_image(
    opts: &BuildOptions,
    client: &RegistryClient,
    registries: &RegistriesConf,
    events: &EventSink,
) -> Result<BuiltImage, BuildImageError> {
    let text = tokio::fs::read_to_string(&opts.dockerfile)
        .await
        .map_err(|source| BuildImageError::ReadDockerfile {
            path: opts.dockerfile.clone(),
            source,
        })?;
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

    let mut done: BTreeMap<usize, StageResult> = BTreeMap::new();
    let mut used_args = std::collections::BTreeSet::new();
    for index in needed_stages(&stages, target) {
        let stage = &stages.stages[index];
        let (base_config, mut layers) = match &stage.base {
            BaseSpec::Scratch => (None, vec![]),
            BaseSpec::Stage(i) => {
                let r = done.get(i).ok_or_else(|| PlanError::UnknownStage {
                    line: stage.line,
                    name: i.to_string(),
                })?;
                (Some(r.config.clone()), r.layers.clone())
            }
            BaseSpec::Image(image) => {
                let platform = stage
                    .platform
                    .clone()
                    .unwrap_or_else(|| opts.platform.clone());
                let base = source::resolve(client, registries, image, &platform)
                    .await
                    .map_err(|source| BuildImageError::Base {
                        line: stage.line,
                        source,
                    })?;
                events(Event::BaseResolved {
                    image: base.reference.clone(),
                    digest: base.digest.clone(),
                });
                let layers = base
                    .layers
                    .iter()
                    .map(|l| Blob {
                        descriptor: l.descriptor.clone(),
                        source: l.source.clone(),
                    })
                    .collect();
                (Some(base.config), layers)
            }
        };
        let sctx = StageContext {
            stages: &stages,
            build_args: &opts.build_args.0,
            auto_args: &auto,
            platform: &opts.platform,
            epoch: opts.epoch,
        };
        let planned = plan::plan_stage(stage, base_config, &sctx)?;
        used_args.extend(planned.used_args.iter().cloned());
        for w in &planned.warnings {
            events(Event::Warning(w.clone()));
        }
        let mut config = planned.config;
        for step in planned.layers {
            let layer = build_layer(&step, &context, &spool, opts, events).await?;
            config.rootfs.diff_ids.push(layer.diff_id.clone());
            let media_type = layer.media_type(opts.format == Format::Oci).to_string();
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
        done.insert(index, StageResult { config, layers });
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
    )
    .encode();
    let layers = result
        .layers
        .into_iter()
        .zip(
            serde_json::from_slice::<Manifest>(&manifest.bytes)
                .map(|m| m.layers)
                .unwrap_or_default(),
        )
        .map(|(b, d)| Blob {
            descriptor: d,
            source: b.source,
        })
        .collect();
    Ok(BuiltImage {
        layers,
        config,
        manifest,
    })
}

async fn build_layer(
    step: &LayerStep,
    context: &Arc<Context>,
    spool: &Arc<Spool>,
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
    let (context, spool, step2) = (context.clone(), spool.clone(), step.clone());
    let cache_dir = opts.cache_dir.clone();
    let blob = tokio::task::spawn_blocking(move || match step2 {
        LayerStep::Copy {
            srcs,
            dest,
            chown,
            chmod,
            extract,
            ..
        } => {
            let spec = CopySpec {
                srcs,
                dest,
                chown,
                chmod,
                extract_archives: extract,
            };
            match cache_dir {
                Some(dir) => crate::cache::LayerCache::open(dir)?
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

/// The stages `target` depends on, dependencies first.
fn needed_stages(stages: &Stages, target: usize) -> Vec<usize> {
    let mut chain = vec![target];
    let mut cur = target;
    while let BaseSpec::Stage(i) = stages.stages[cur].base {
        if i >= cur {
            break;
        }
        chain.push(i);
        cur = i;
    }
    chain.reverse();
    chain
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
