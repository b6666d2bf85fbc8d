//! `ocipush copy`: move an image, or a whole index, between registries and OCI image layouts.
//! Blobs the destination has are skipped, blobs in another repository of the same registry
//! are mounted, the rest are streamed from the source (verified against their digests, never
//! held whole in memory), concurrently; then each manifest by digest, then the tag. With a
//! platform filter only those platforms' images are copied (one image, or a new index).

use std::sync::Arc;

use bytes::Bytes;

use crate::blob::{Blob, BlobSource, FileBlob};
use crate::digest::Digest;
use crate::events::EventSink;
use crate::image::{Descriptor, Encoded, Index, Manifest, Platform, media_types};
use crate::layout::{LayoutError, OciLayout};
use crate::pipeline::{PipelineError, Session, Target};
use crate::push::{PushError, PushOptions, push_blobs, put_manifest};
use crate::registry::{MAX_MANIFEST_SIZE, RegistryError, RemoteBlob, Repository};

/// How to copy. The default is the CLI's: every platform, 4 transfers at once.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Only these platforms of an index (all when empty).
    pub platforms: Vec<Platform>,
    /// Blob transfers in flight at once (0 counts as 1).
    pub jobs: usize,
    /// Cancelling stops the copy: transfers stop, upload sessions opened at the destination
    /// are closed, a layout's partly written blobs are removed, nothing is tagged, and
    /// [`copy_image`] returns [`CopyError::Cancelled`]. (Dropping its future does the same,
    /// the sessions closed by a task of their own.)
    pub cancel: crate::CancellationToken,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            platforms: Vec::new(),
            jobs: 4,
            cancel: crate::CancellationToken::new(),
        }
    }
}

/// Why a copy failed. Nothing was tagged at the destination when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// The source registry failed.
    #[error("cannot read {image}: {source}")]
    Registry {
        /// The source.
        image: String,
        /// Why.
        #[source]
        source: RegistryError,
    },
    /// The source layout failed.
    #[error("cannot read {image}: {source}")]
    Layout {
        /// The source.
        image: String,
        /// Why.
        #[source]
        source: LayoutError,
    },
    /// A manifest or index of the source is not what the spec says.
    #[error("{image}: {message}")]
    Invalid {
        /// The source.
        image: String,
        /// What is wrong.
        message: String,
    },
    /// The platform filter matched nothing.
    #[error(
        "{image} has no {platform} image; it has: {available}. Choose one of those with --platform"
    )]
    PlatformMissing {
        /// The source.
        image: String,
        /// What was asked for.
        platform: String,
        /// What the index lists.
        available: String,
    },
    /// The destination could not be set up.
    #[error(transparent)]
    Destination(#[from] PipelineError),
    /// Pushing failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// [`CopyOptions::cancel`] was cancelled.
    #[error("the copy was cancelled; nothing was tagged, open uploads were closed")]
    Cancelled,
}

/// Where the source's manifests and blobs are read.
enum Source {
    Registry(Repository),
    Layout(OciLayout),
}

impl Source {
    async fn manifest(&self, image: &str, reference: &Desc) -> Result<Encoded, CopyError> {
        match (self, reference) {
            (Source::Registry(repo), r) => {
                let key = match r {
                    Desc::Ref(s) => s.clone(),
                    Desc::Blob(d) => d.digest.to_string(),
                };
                let m = repo
                    .get_manifest(&key)
                    .await
                    .map_err(|source| CopyError::Registry {
                        image: image.to_string(),
                        source,
                    })?;
                Ok(Encoded {
                    bytes: m.bytes,
                    media_type: m.media_type,
                    digest: m.digest,
                })
            }
            (Source::Layout(layout), r) => {
                let lerr = |source| CopyError::Layout {
                    image: image.to_string(),
                    source,
                };
                let desc = match r {
                    Desc::Blob(d) => (**d).clone(),
                    Desc::Ref(_) => layout.root().map_err(lerr)?,
                };
                let bytes = layout.read_blob(&desc, MAX_MANIFEST_SIZE).map_err(lerr)?;
                let media_type = media_type_of(&bytes).unwrap_or(desc.media_type);
                Ok(Encoded {
                    digest: desc.digest,
                    bytes,
                    media_type,
                })
            }
        }
    }

    fn blob(&self, d: &Descriptor) -> Blob {
        let source: Arc<dyn BlobSource> = match self {
            Source::Registry(repo) => Arc::new(RemoteBlob::new(repo.clone(), d.clone())),
            Source::Layout(l) => Arc::new(FileBlob {
                path: l.blob_path(&d.digest),
            }),
        };
        Blob {
            descriptor: d.clone(),
            source,
        }
    }
}

/// A manifest to read: the source's own reference, or a child by descriptor.
enum Desc {
    Ref(String),
    Blob(Box<Descriptor>),
}

fn media_type_of(bytes: &Bytes) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("mediaType")?
        .as_str()
        .map(str::to_string)
}

/// Copy `src` to `dest` (tagged as `dest` says); returns the digest the tag points to. The
/// job's secrets go to the session's [`Redactor`](crate::auth::redact::Redactor).
pub async fn copy_image(
    session: &Session,
    src: &Target,
    dest: &Target,
    opts: &CopyOptions,
    events: &EventSink,
) -> Result<Digest, CopyError> {
    // Retries and fallbacks deep in the registry client reach `events`; the job's secrets go
    // to the session's redactor.
    let job =
        crate::job_context::with_events(events, copy_in_job(session, src, dest, opts, events));
    crate::job_context::with_redactor(&session.redactor, job).await
}

/// [`copy_image`], in the job's event and redaction scopes.
async fn copy_in_job(
    session: &Session,
    src: &Target,
    dest: &Target,
    opts: &CopyOptions,
    events: &EventSink,
) -> Result<Digest, CopyError> {
    let (source, image, top_ref) = match src {
        Target::Registry(r) => {
            let endpoint = session
                .registries
                .resolve(r)
                .map_err(|e| CopyError::Invalid {
                    image: r.to_string(),
                    message: e.to_string(),
                })?;
            (
                Source::Registry(session.client.repository(&endpoint)),
                r.to_string(),
                r.reference_str(),
            )
        }
        Target::Layout { dir, tag } => {
            let image = format!("oci:{}", dir.display());
            let layout =
                OciLayout::open_existing(dir, tag.clone()).map_err(|source| CopyError::Layout {
                    image: image.clone(),
                    source,
                })?;
            (Source::Layout(layout), image, String::new())
        }
    };
    let (images, tagged, blobs) =
        cancellable(&opts.cancel, read_images(&source, &image, top_ref, opts)).await?;
    let (destination, registry) =
        cancellable(&opts.cancel, async { Ok(session.destination(dest).await?) }).await?;
    let destination: std::sync::Arc<dyn crate::dest::Destination> = destination.into();
    // This future dropped mid-copy: its open sessions are closed by a task of their own.
    let close_on_drop = crate::dest::CloseOnDrop::new(Some(destination.clone()));
    let push_opts = PushOptions {
        jobs: opts.jobs.max(1),
        registry,
        logical_registry: match dest {
            Target::Registry(r) => Some(r.registry.clone()),
            Target::Layout { .. } => None,
        },
        ..PushOptions::default()
    };
    let pushed = cancellable(&opts.cancel, async {
        push_blobs(destination.as_ref(), &blobs, &push_opts, events).await?;
        for m in &images {
            if m.digest != tagged.digest {
                put_manifest(destination.as_ref(), m, &[m.digest.to_string()], events).await?;
            }
        }
        let refs = dest.references(&[]);
        Ok(put_manifest(destination.as_ref(), &tagged, &refs, events).await?)
    })
    .await;
    if pushed.is_err() {
        // Sessions a cancelled or failed copy left open, or a retry abandoned, are closed.
        destination.close_uploads().await;
    }
    close_on_drop.disarm();
    // A refusal by Amazon ECR, in ECR's terms (as for a build's push).
    #[cfg(feature = "ecr")]
    if let (Err(CopyError::Push(e)), Target::Registry(r)) = (&pushed, dest)
        && let Some(explained) = session.ecr.explain(r, e)
    {
        return Err(CopyError::Destination(PipelineError::Destination(
            explained,
        )));
    }
    pushed
}

/// `job`, or [`CopyError::Cancelled`] (the job dropped: its transfers stop, a layout's
/// temporary files go) as soon as `cancel` is.
async fn cancellable<T>(
    cancel: &crate::CancellationToken,
    job: impl std::future::Future<Output = Result<T, CopyError>>,
) -> Result<T, CopyError> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(CopyError::Cancelled),
        r = job => r,
    }
}

/// The manifests to copy, the one to tag, and the blobs they name (each once per manifest).
async fn read_images(
    source: &Source,
    image: &str,
    top_ref: String,
    opts: &CopyOptions,
) -> Result<(Vec<Encoded>, Encoded, Vec<Blob>), CopyError> {
    let invalid = |message: String| CopyError::Invalid {
        image: image.to_string(),
        message,
    };
    let top = source.manifest(image, &Desc::Ref(top_ref)).await?;
    let mut images: Vec<Encoded> = Vec::new();
    let mut tagged = top.clone();
    if media_types::is_index(&top.media_type) {
        let index: Index = serde_json::from_slice(&top.bytes)
            .map_err(|e| invalid(format!("index does not parse: {e}")))?;
        // No platform asked for: the whole index, whatever its entries are.
        let chosen: Vec<&Descriptor> = if opts.platforms.is_empty() {
            index.manifests.iter().collect()
        } else {
            index.manifests_for(&opts.platforms)
        };
        if chosen.is_empty() {
            return Err(CopyError::PlatformMissing {
                image: image.to_string(),
                platform: opts
                    .platforms
                    .iter()
                    .map(Platform::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for d in &chosen {
            if !media_types::is_manifest(&d.media_type) {
                return Err(invalid(format!(
                    "index entry {} is a {}, not an image manifest; nested indexes are not copied",
                    d.digest, d.media_type
                )));
            }
            images.push(
                source
                    .manifest(image, &Desc::Blob(Box::new((*d).clone())))
                    .await?,
            );
        }
        if !opts.platforms.is_empty() {
            tagged = match images.as_slice() {
                [only] => only.clone(),
                _ => Index {
                    manifests: chosen.into_iter().cloned().collect(),
                    ..index
                }
                .encode(),
            };
        }
    } else if media_types::is_manifest(&top.media_type) {
        images.push(top.clone());
    } else {
        return Err(invalid(format!(
            "unsupported manifest media type {:?}",
            top.media_type
        )));
    }

    let mut blobs = Vec::new();
    for m in &images {
        let manifest: Manifest = serde_json::from_slice(&m.bytes)
            .map_err(|e| invalid(format!("manifest {} does not parse: {e}", m.digest)))?;
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !d.urls.is_empty() {
                continue; // foreign layers stay where their URLs say
            }
            // A blob shared by several manifests is pushed once (push_blobs).
            blobs.push(source.blob(d));
        }
    }
    Ok((images, tagged, blobs))
}
