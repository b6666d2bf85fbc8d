//! Building one layer of a stage on a blocking thread: the stage's filesystem ([`StageFs`],
//! read from the base's layer headers only when an instruction needs it), COPY/ADD/WORKDIR
//! placed on it ([`build_layer`]) and `COPY --from` ([`build_from_layer`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::{BuildImageError, BuildOptions};
use crate::blob::Blob;
use crate::events::{Event, EventSink};
use crate::layerfs::{self, LayerStore};
use crate::layers::{self, Context, CopySpec, LayerBlob, LayerOptions, Spool};
use crate::plan::LayerStep;
use crate::rootfs::RootFs;
use crate::streaming::LayerTap;

/// A stage's filesystem ([`RootFs`]), read from its layers' headers only once an instruction
/// needs it: a Dockerfile with no COPY, ADD or WORKDIR never reads its base.
#[derive(Clone)]
pub(super) enum StageFs {
    /// Not read yet: these layers (bottom first) of this image.
    Pending { layers: Vec<Blob>, image: String },
    /// Read and up to date.
    Ready(RootFs),
}

impl StageFs {
    /// The filesystem, reading the pending layers (on a blocking thread) first.
    pub(super) fn materialize(
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

/// Where `COPY --from` writes its layer, and the build's source layers.
pub(super) struct FromAt<'a> {
    pub(super) spool: &'a Arc<Spool>,
    pub(super) sources: &'a Arc<layerfs::LayerStore>,
}

/// `COPY --from`: read the sources out of `layers` on a blocking thread.
pub(super) async fn build_from_layer(
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
    events(Event::LayerStarted {
        platform: opts.platform.to_string(),
        line,
        step: format!("COPY --from={image} {} {dest}", srcs.join(" ")),
    });
    let layer_opts = LayerOptions {
        compression: opts.compression,
        epoch: opts.epoch,
        threads: opts.compress_threads,
    };
    let spool = at.spool.clone();
    let on = OnFs {
        platform: opts.platform.to_string(),
        fs,
        sources: at.sources.clone(),
        cache_dir: opts.cache_dir.clone(),
        line,
    };
    on.run(events, move |rt, sources, fs| {
        let chown = match &chown {
            Some(c) => Some(owner(fs, c, line)?),
            None => None,
        };
        let spec = layerfs::FromSpec {
            srcs,
            dest,
            chown,
            chmod,
            exclude,
            parents,
        };
        linked(fs, link && spec.chmod.is_none(), |target| {
            let onto = layerfs::Onto {
                fs: target,
                spool: &spool,
                opts: &layer_opts,
            };
            layerfs::copy_from_layers(rt, sources, &layers, &image, &spec, onto)
                .map_err(|source| BuildImageError::CopyFrom { line, source })
        })
    })
    .await
}

/// The stage's filesystem a layer is built on, on a blocking thread.
pub(super) struct OnFs {
    /// The platform being built (for events).
    pub(super) platform: String,
    pub(super) fs: StageFs,
    pub(super) sources: Arc<LayerStore>,
    pub(super) cache_dir: Option<PathBuf>,
    pub(super) line: usize,
}

impl OnFs {
    /// Run `work` on the filesystem (its base read first when pending) on a blocking thread,
    /// then report the layer it built.
    pub(super) async fn run<F>(
        self,
        events: &EventSink,
        work: F,
    ) -> Result<(LayerBlob, RootFs), BuildImageError>
    where
        F: FnOnce(
                &tokio::runtime::Handle,
                &LayerStore,
                &mut RootFs,
            ) -> Result<LayerBlob, BuildImageError>
            + Send
            + 'static,
    {
        let OnFs {
            platform,
            fs,
            sources,
            cache_dir,
            line,
        } = self;
        let rt = tokio::runtime::Handle::current();
        // The job's sink, secrets and count of blocking threads follow the work onto its
        // thread (crate::job_context).
        let (blob, fs) = crate::job_context::spawn_blocking(move || {
            let mut fs = fs
                .materialize(&rt, &sources, cache_dir.as_deref())
                .map_err(|source| BuildImageError::BaseFs { line, source })?;
            let blob = work(&rt, &sources, &mut fs)?;
            Ok::<_, BuildImageError>((blob, fs))
        })
        .await
        .map_err(|e| BuildImageError::Join(e.to_string()))??;
        events(Event::LayerBuilt {
            platform,
            line,
            digest: blob.digest.clone(),
            size: blob.size,
        });
        Ok((blob, fs))
    }
}

/// `--link` (without `--chmod`): BuildKit copies onto scratch and merges the result over the
/// stage (dockerfile2llb `convert_copy.go`), so the layer does not depend on what is below
/// it. `work` places the layer on the filesystem it is given.
fn linked<R>(fs: &mut RootFs, link: bool, work: impl FnOnce(&mut RootFs) -> R) -> R {
    if !link {
        return work(fs);
    }
    let mut scratch = RootFs::empty();
    let out = work(&mut scratch);
    fs.overlay(&scratch);
    out
}

/// `--chown`/`USER` resolved against the stage's own files.
fn owner(fs: &RootFs, spec: &str, line: usize) -> Result<(u32, u32), BuildImageError> {
    crate::rootfs::users::resolve_owner(fs, spec)
        .map_err(|source| BuildImageError::Owner { line, source })
}

/// Where a layer is written: the spool (tapped or not), and the tap for the layer cache.
pub(super) struct LayerAt<'a> {
    pub(super) spool: &'a Arc<Spool>,
    pub(super) tap: Option<&'a LayerTap>,
    /// Where the base's layers are read from (for the stage's filesystem).
    pub(super) sources: &'a Arc<layerfs::LayerStore>,
    /// `ADD <url>` downloads of the step.
    pub(super) fetched: Vec<layers::FetchedFile>,
}

pub(super) async fn build_layer(
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
        threads: opts.compress_threads,
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
        LayerStep::Run(r) => (r.line, r.shown.clone()),
    };
    events(Event::LayerStarted {
        platform: opts.platform.to_string(),
        line,
        step: what,
    });
    let (context, spool, step2) = (context.clone(), at.spool.clone(), step.clone());
    let cache_dir = opts.cache_dir.clone();
    let tap = at.tap.cloned();
    let fetched = at.fetched;
    let on = OnFs {
        platform: opts.platform.to_string(),
        fs,
        sources: at.sources.clone(),
        cache_dir: cache_dir.clone(),
        line,
    };
    on.run(events, move |_, _, fs| {
        build_on(
            step2,
            &context,
            fs,
            &spool,
            tap,
            cache_dir,
            &layer_opts,
            fetched,
        )
    })
    .await
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
    fetched: Vec<layers::FetchedFile>,
) -> Result<LayerBlob, BuildImageError> {
    let line = step.line();
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
            merge_dirs,
            ..
        } => {
            let chown = match &chown {
                Some(c) => Some(owner(fs, c, line)?),
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
                merge_dirs,
            };
            linked(fs, link && spec.chmod.is_none(), |target| match cache_dir {
                Some(dir) => crate::cache::LayerCache::open(dir)?
                    .with_tap(tap)
                    .with_cancel(spool.cancel_token())
                    .copy_layer_on(context, &spec, layer_opts, target)
                    .map(|(blob, _)| blob),
                None => layers::build_copy_layer_on(context, &spec, target, spool, layer_opts),
            })
            .map_err(layer_err)
        }
        LayerStep::Mkdir { dirs, user, .. } => {
            let owner = match &user {
                Some(u) => owner(fs, u, line)?,
                None => (0, 0),
            };
            let dir = dirs.last().cloned().unwrap_or_else(|| "/".into());
            layers::build_mkdir_layer(&dir, owner, fs, spool, layer_opts).map_err(layer_err)
        }
        // RUN has its own path (`super::run_step`).
        LayerStep::Run(_) => Err(BuildImageError::Join("RUN reached the COPY builder".into())),
    }
}
