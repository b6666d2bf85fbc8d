//! `RUN` in a stage: the stage's filesystem read (when pending) and the command run on a
//! blocking thread by [`crate::run`], its output streamed as [`Event::RunOutput`]. Without the
//! `run` feature (or off Linux) a RUN fails with what to do.

use std::sync::Arc;

#[cfg(all(feature = "run", target_os = "linux"))]
use super::layer_steps::OnFs;
use super::layer_steps::StageFs;
use super::{BuildImageError, BuildOptions};
use crate::blob::Blob;
use crate::digest::Digest;
#[cfg(all(feature = "run", target_os = "linux"))]
use crate::events::Event;
use crate::events::EventSink;
use crate::layerfs::LayerStore;
use crate::layers::{LayerBlob, Spool};
use crate::plan::RunStep;
use crate::rootfs::RootFs;

/// The stage a RUN runs on: its layers so far and their diff ids.
#[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(dead_code))]
pub(super) struct RunOn {
    pub(super) layers: Vec<Blob>,
    pub(super) diff_ids: Vec<Digest>,
    pub(super) fs: StageFs,
    /// The image or stage, for messages.
    pub(super) name: String,
    /// The stage's architecture.
    pub(super) arch: String,
    /// Where each `--mount` reads from (aligned with the step's mounts).
    pub(super) mounts: Vec<MountFrom>,
}

/// Where a `RUN --mount` reads from.
#[cfg_attr(not(all(feature = "run", target_os = "linux")), allow(dead_code))]
pub(super) enum MountFrom {
    /// Nothing (cache, tmpfs, secret).
    None,
    /// A build context directory.
    Dir(Arc<crate::layers::Context>),
    /// A stage or an image.
    Layers {
        layers: Vec<Blob>,
        diff_ids: Vec<Digest>,
        fs: StageFs,
        name: String,
    },
}

/// Run `step` and build its layer.
#[cfg(all(feature = "run", target_os = "linux"))]
pub(super) async fn build_run_layer(
    step: &RunStep,
    on: RunOn,
    spool: &Arc<Spool>,
    sources: &Arc<LayerStore>,
    opts: &BuildOptions,
    events: &EventSink,
) -> Result<(LayerBlob, RootFs), BuildImageError> {
    let line = step.line;
    events(Event::LayerStarted {
        platform: opts.platform.to_string(),
        line,
        step: step.shown.clone(),
    });
    let layer_opts = crate::layers::LayerOptions {
        compression: opts.compression,
        epoch: opts.epoch,
        threads: opts.compress_threads,
    };
    let state_dir = opts
        .cache_dir
        .clone()
        .unwrap_or_else(|| opts.spool_dir.clone());
    let (spool, step, ev) = (spool.clone(), step.clone(), events.clone());
    let warn_ev = events.clone();
    let cache_dir = opts.cache_dir.clone();
    let RunOn {
        layers,
        diff_ids,
        fs,
        name,
        arch,
        mounts,
    } = on;
    let platform = opts.platform.to_string();
    let secrets = opts.secrets.clone();
    let cancel = opts.cancel.clone();
    let fs_on = OnFs {
        platform: platform.clone(),
        fs,
        sources: sources.clone(),
        cache_dir: opts.cache_dir.clone(),
        line,
    };
    fs_on
        .run(events, move |rt, store, fs| {
            // What the command prints is scrubbed of the build's secrets (and credentials): the
            // job's set and the process-level one. This runs on the build's blocking thread,
            // which `job_context::spawn_blocking` put in the job's context.
            let on_output = move |text: &str| {
                ev(Event::RunOutput {
                    platform: platform.clone(),
                    line,
                    text: crate::auth::redact::scrub_here(text).into_owned(),
                })
            };
            let mut mount_sources = Vec::with_capacity(mounts.len());
            for m in mounts {
                mount_sources.push(match m {
                    MountFrom::None => crate::run::MountSource::None,
                    MountFrom::Dir(c) => crate::run::MountSource::Dir(c),
                    MountFrom::Layers {
                        layers,
                        diff_ids,
                        fs,
                        name,
                    } => crate::run::MountSource::Layers {
                        fs: fs
                            .materialize(rt, store, cache_dir.as_deref())
                            .map_err(|source| BuildImageError::BaseFs { line, source })?,
                        layers,
                        diff_ids,
                        name,
                    },
                });
            }
            let on_warning = move |text: &str| warn_ev(Event::Warning(text.to_string()));
            let cx = crate::run::RunContext {
                rt,
                store,
                layers: &layers,
                diff_ids: &diff_ids,
                image: &name,
                spool: &spool,
                layer_opts: &layer_opts,
                state_dir: &state_dir,
                on_output: &on_output,
                arch: &arch,
                cache_dir: cache_dir.as_deref(),
                mount_sources: &mount_sources,
                secrets: &secrets,
                on_warning: &on_warning,
                cancel: &cancel,
            };
            crate::run::run_layer(&step, fs, cx).map_err(|source| BuildImageError::Run {
                line,
                source: Box::new(source),
            })
        })
        .await
}

/// Without the `run` feature: a clear refusal.
#[cfg(not(all(feature = "run", target_os = "linux")))]
pub(super) async fn build_run_layer(
    step: &RunStep,
    _on: RunOn,
    _spool: &Arc<Spool>,
    _sources: &Arc<LayerStore>,
    _opts: &BuildOptions,
    _events: &EventSink,
) -> Result<(LayerBlob, RootFs), BuildImageError> {
    Err(BuildImageError::Run {
        line: step.line,
        source: Box::new(crate::run::RunError::Unavailable {
            what: if cfg!(target_os = "linux") {
                "this ocipush was built without the `run` feature".into()
            } else {
                "RUN is only supported on Linux".into()
            },
            fix: "Use an ocipush built with `--features run` on Linux, or do that work before the build and COPY its results".into(),
        }),
    })
}
