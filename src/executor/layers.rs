//! Building one layer of a stage on a blocking thread: the stage's filesystem ([`StageFs`],
//! read from the base's layer headers only when an instruction needs it), COPY/ADD/WORKDIR
//! placed on it ([`build_layer`]) and `COPY --from` ([`build_from_layer`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::{BuildImageError, BuildOptions};
use crate::blob::Blob;
use crate::build::{self, Context, CopySpec, LayerBlob, LayerOptions, Spool};
use crate::events::{Event, EventSink};
use crate::growing::LayerTap;
use crate::layerfs::{self, LayerStore};
use crate::plan::LayerStep;
use crate::rootfs::RootFs;

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
            parents,
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

/// Where a layer is written: the spool (tapped or not), and the tap for the layer cache.
pub(super) struct LayerAt<'a> {
    pub(super) spool: &'a Arc<Spool>,
    pub(super) tap: Option<&'a LayerTap>,
    /// Where the base's layers are read from (for the stage's filesystem).
    pub(super) sources: &'a Arc<layerfs::LayerStore>,
    /// `ADD <url>` downloads of the step.
    pub(super) fetched: Vec<build::FetchedFile>,
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
