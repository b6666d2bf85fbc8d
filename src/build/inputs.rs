//! Where a build's inputs come from besides the build context and registries: named
//! contexts (`--build-context`, [`crate::contexts`]) standing in for FROM images, stages and
//! `COPY --from` sources, and `ADD <url>` downloads ([`crate::fetch`]). The [`Builder`] calls
//! these; they keep which contexts were used, for the warning about unused ones.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{BuildImageError, Builder};
use crate::base_image::BaseImage;
use crate::contexts::{ContextSource, NamedContext, NamedContexts, ResolveEnv, resolve_base};
use crate::events::Event;
use crate::fetch::{DownloadStore, Fetcher, Stores, fetch_sources};
use crate::image::Platform;
use crate::layers::{Context, FetchedFile, LayerOptions};
use crate::plan::{CopyFrom, LayerStep, Stages};

/// Downloads of a build: the fetcher (made on first use) and where files go.
pub(super) struct Downloads {
    fetcher: Option<Fetcher>,
    stores: Stores,
}

impl Downloads {
    /// Downloads into `spool_dir`, and (pinned ones) into `cache_dir` when there is one.
    pub(super) fn new(spool_dir: &std::path::Path, cache_dir: Option<&std::path::Path>) -> Self {
        Downloads {
            fetcher: None,
            stores: Stores {
                spool: DownloadStore::new(spool_dir),
                cache: cache_dir.map(DownloadStore::new),
            },
        }
    }
}

impl Builder<'_> {
    /// The named context `name` (a FROM image, a stage name, a `--from` value) refers to,
    /// noted as used.
    pub(super) fn named_context(&mut self, name: &str) -> Option<NamedContext> {
        let nc = self.opts.build_contexts.get(name)?.clone();
        self.used_contexts.insert(nc.name.clone());
        Some(nc)
    }

    /// The image named context `nc` stands for, for `platform` (a `BaseResolved` event names
    /// it).
    pub(super) async fn resolve_context(
        &self,
        nc: &NamedContext,
        platform: &Platform,
        line: usize,
    ) -> Result<BaseImage, BuildImageError> {
        let env = ResolveEnv {
            client: self.client,
            registries: self.registries,
            spool: &self.spool,
            layer: LayerOptions {
                compression: self.opts.compression,
                epoch: self.opts.epoch,
                threads: self.opts.compress_threads,
            },
        };
        let base = resolve_base(nc, platform, &env).await.map_err(|source| {
            BuildImageError::NamedContext {
                line,
                source: Box::new(source),
            }
        })?;
        (self.events)(Event::BaseResolved {
            platform: self.opts.platform.to_string(),
            image: format!("{} (build context {})", base.reference, nc.given),
            digest: base.digest.clone(),
        });
        Ok(base)
    }

    /// For `COPY --from=NAME` where NAME is a directory context: that directory as a build
    /// context of its own (`None` for any other step).
    pub(super) fn copy_dir_context(
        &mut self,
        step: &LayerStep,
    ) -> Result<Option<Arc<Context>>, BuildImageError> {
        let LayerStep::Copy {
            line,
            from: Some(CopyFrom::Image(name)),
            ..
        } = step
        else {
            return Ok(None);
        };
        let line = *line;
        let Some(nc) = self.opts.build_contexts.get(name) else {
            return Ok(None);
        };
        let ContextSource::Dir(dir) = &nc.source else {
            return Ok(None);
        };
        self.used_contexts.insert(nc.name.clone());
        let ctx = Context::open(dir).map_err(|source| BuildImageError::NamedContext {
            line,
            source: Box::new(crate::contexts::ContextError::Dir {
                name: nc.given.clone(),
                dir: dir.clone(),
                source: Box::new(source),
            }),
        })?;
        Ok(Some(Arc::new(ctx)))
    }

    /// Download the `ADD <url>` sources of `step` (none for other steps).
    pub(super) async fn fetch_remote(
        &mut self,
        step: &LayerStep,
    ) -> Result<Vec<FetchedFile>, BuildImageError> {
        let LayerStep::Copy { line, remote, .. } = step else {
            return Ok(Vec::new());
        };
        if remote.is_empty() {
            return Ok(Vec::new());
        }
        let line = *line;
        let fetch_err = |source| BuildImageError::Fetch { line, source };
        let fetcher = match &self.downloads.fetcher {
            Some(f) => f.clone(),
            None => {
                let f = Fetcher::new(self.client.options()).map_err(fetch_err)?;
                self.downloads.fetcher = Some(f.clone());
                f
            }
        };
        let events = self.events;
        let platform = self.opts.platform.to_string();
        fetch_sources(&fetcher, remote, &self.downloads.stores, |src, f| {
            events(Event::Downloaded {
                platform: platform.clone(),
                line,
                url: crate::auth::redact::redact_url(&src.url),
                digest: f.digest.clone(),
                size: f.size,
                reused: f.reused,
            });
        })
        .await
        .map_err(fetch_err)
    }
}

/// A `COPY --from` step as a plain COPY (its sources, already rooted, resolve in another
/// context).
pub(super) fn without_from(step: &LayerStep) -> LayerStep {
    let mut s = step.clone();
    if let LayerStep::Copy { from, .. } = &mut s {
        *from = None;
    }
    s
}

/// Warn about `--build-context`s nothing in the Dockerfile names: not a stage name, a FROM
/// image or a `COPY --from` value of any stage, and not looked up during the build.
pub(super) fn unused_contexts(
    contexts: &NamedContexts,
    stages: &Stages,
    used: &BTreeSet<String>,
) -> Vec<String> {
    let mut named: BTreeSet<String> = used.clone();
    let mut note = |n: &str| {
        if let Some(nc) = contexts.get(n) {
            named.insert(nc.name.clone());
        }
    };
    for s in &stages.stages {
        if let Some(n) = &s.name {
            note(n);
        }
        if let crate::plan::BaseSpec::Image(i) = &s.base {
            note(i);
        }
        for l in &s.instructions {
            if let crate::dockerfile::Instruction::Copy(a) = &l.instruction
                && let Some(f) = &a.from
            {
                note(f);
            }
        }
    }
    contexts
        .iter()
        .filter(|c| !named.contains(&c.name))
        .map(|c| {
            format!(
                "build context {} was given but the Dockerfile does not use it (no FROM, stage or COPY --from names it)",
                c.given
            )
        })
        .collect()
}
