//! Push orchestration: blobs first — each digest once, the ones the destination lacks mounted
//! (same registry) or uploaded, concurrently with a bound — then the manifest under the first
//! tag (or digest), then each further tag. Nothing is tagged unless every blob is confirmed.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};

use crate::blob::{Blob, BytesBlob};
use crate::dest::{DestError, Destination};
use crate::digest::Digest;
use crate::events::{Event, EventSink, FallbackKind};
use crate::image::{Descriptor, Encoded};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Uploads in flight at once.
    pub jobs: usize,
    /// The destination registry host as contacted (to decide whether a source blob can be mounted).
    pub registry: Option<String>,
    /// Blobs known to be in the destination already (uploaded while they were built): neither
    /// checked nor uploaded again.
    pub uploaded: BTreeSet<Digest>,
    /// The destination registry as the user named it (before registries.conf), to explain
    /// registry-specific behaviour in messages (e.g. what an Amazon ECR mount needs).
    pub logical_registry: Option<String>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            jobs: 4,
            registry: None,
            uploaded: BTreeSet::new(),
            logical_registry: None,
        }
    }
}

/// Why a push failed. Nothing was tagged when this is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// Checking which blobs exist failed.
    #[error("cannot check which blobs {dest} already has: {source}")]
    Check {
        /// The destination.
        dest: String,
        /// Why.
        #[source]
        source: DestError,
    },
    /// A blob upload failed.
    #[error("cannot upload blob {digest} ({size} bytes) to {dest}: {source}")]
    Blob {
        /// The destination.
        dest: String,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Why.
        #[source]
        source: DestError,
    },
    /// The manifest put failed.
    #[error("cannot put the manifest {digest} as {reference} in {dest}: {source}")]
    Manifest {
        /// The destination.
        dest: String,
        /// Tag or digest.
        reference: String,
        /// The manifest digest.
        digest: Digest,
        /// Why.
        #[source]
        source: DestError,
    },
    /// The destination computed another digest for our manifest.
    #[error(
        "{dest} reports digest {reported} for the manifest put as {reference}, but its bytes hash to {ours}"
    )]
    DigestMismatch {
        /// The destination.
        dest: String,
        /// Tag.
        reference: String,
        /// Ours.
        ours: Digest,
        /// Theirs.
        reported: Digest,
    },
    /// A digest reference does not match the manifest.
    #[error("the destination names digest {wanted} but the built manifest is {ours}")]
    WrongDigest {
        /// Asked for.
        wanted: Digest,
        /// Built.
        ours: Digest,
    },
}

/// Push the blobs of an image (layers and config), then `manifest` under each reference in
/// `references` (tags, or the manifest's own digest). Returns the manifest digest.
pub async fn push(
    dest: &dyn Destination,
    layers: &[Blob],
    config: &Encoded,
    manifest: &Encoded,
    references: &[String],
    opts: &PushOptions,
    events: &EventSink,
) -> Result<Digest, PushError> {
    let blobs = image_blobs(layers, config);
    push_blobs(dest, &blobs, opts, events).await?;
    put_manifest(dest, manifest, references, events).await
}

/// An image's blobs as pushed: its layers, then its config.
pub fn image_blobs(layers: &[Blob], config: &Encoded) -> Vec<Blob> {
    let config = Blob {
        descriptor: config.descriptor(),
        source: Arc::new(BytesBlob(config.bytes.clone())),
    };
    layers
        .iter()
        .cloned()
        .chain(std::iter::once(config))
        .collect()
}

/// Push blobs the destination lacks, each once (a digest listed twice is pushed once),
/// `opts.jobs` at a time.
pub async fn push_blobs(
    dest: &dyn Destination,
    blobs: &[Blob],
    opts: &PushOptions,
    events: &EventSink,
) -> Result<(), PushError> {
    // Retries and fallbacks deep in the registry client reach `events` too.
    crate::job_context::with_events(events, push_blobs_in_job(dest, blobs, opts, events)).await
}

async fn push_blobs_in_job(
    dest: &dyn Destination,
    blobs: &[Blob],
    opts: &PushOptions,
    events: &EventSink,
) -> Result<(), PushError> {
    let mut seen = BTreeSet::new();
    let blobs: Vec<&Blob> = blobs
        .iter()
        .filter(|b| {
            !opts.uploaded.contains(&b.descriptor.digest)
                && seen.insert(b.descriptor.digest.clone())
        })
        .collect();
    let descs: Vec<_> = blobs.iter().map(|b| b.descriptor.clone()).collect();
    let exists = dest
        .blobs_exist(&descs)
        .await
        .map_err(|source| PushError::Check {
            dest: dest.describe(),
            source,
        })?;
    let missing: Vec<&Blob> = blobs
        .into_iter()
        .zip(exists)
        .filter_map(|(b, e)| {
            if e {
                events(Event::BlobExists {
                    digest: b.descriptor.digest.clone(),
                });
                None
            } else {
                Some(b)
            }
        })
        .collect();
    // The futures are made before the stream: a `map` closure kept in the future being
    // awaited would make it not provably `Send` for every lifetime (unspawnable).
    let uploads: Vec<_> = missing
        .into_iter()
        .map(|b| push_one(dest, b, opts, events))
        .collect();
    stream::iter(uploads)
        .buffer_unordered(opts.jobs.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn push_one(
    dest: &dyn Destination,
    blob: &Blob,
    opts: &PushOptions,
    events: &EventSink,
) -> Result<(), PushError> {
    let d = &blob.descriptor;
    let fail = |source| PushError::Blob {
        dest: dest.describe(),
        digest: d.digest.clone(),
        size: d.size,
        source,
    };
    if let (Some((host, repo)), Some(ours)) = (blob.source.mount_from(), opts.registry.as_deref())
        && host == ours
    {
        // A mount is an optimisation: any refusal (403, 404, 405, …) means "upload it".
        match dest.mount_blob(d, &repo).await {
            Ok(true) => {
                events(Event::BlobMounted {
                    digest: d.digest.clone(),
                    from: repo,
                });
                return Ok(());
            }
            Ok(false) => mount_refused(events, d, &repo, "it opened an upload session", opts),
            Err(e) => mount_refused(events, d, &repo, &e.to_string(), opts),
        }
    }
    events(Event::BlobUploading {
        digest: d.digest.clone(),
        size: d.size,
    });
    let digest = d.digest.clone();
    let ev = events.clone();
    let progress = move |sent: u64| {
        ev(Event::BlobProgress {
            digest: digest.clone(),
            sent,
        })
    };
    // A blob streamed from a source registry is verified by that stream before its last byte
    // is released (`registry::RemoteBlob`).
    dest.put_blob(d, blob.source.as_ref(), &progress)
        .await
        .map_err(fail)?;
    events(Event::BlobUploaded {
        digest: d.digest.clone(),
    });
    Ok(())
}

/// Report a mount the registry did not make ([`FallbackKind::MountRefused`]), in the debug log
/// and as an event; `why` has its secrets removed.
fn mount_refused(events: &EventSink, d: &Descriptor, from: &str, why: &str, opts: &PushOptions) {
    let why = crate::auth::redact::scrub(why);
    let detail = format!(
        "the registry did not mount the blob ({why}); uploading it instead{}",
        mount_note(opts.logical_registry.as_deref())
    );
    tracing::debug!(digest = %d.digest, from, "{detail}");
    events(Event::Fallback {
        step: format!("mounting blob {} from {from}", d.digest),
        kind: FallbackKind::MountRefused,
        detail,
    });
}

/// What a refused mount may mean on this registry, for the debug note and the event: on Amazon ECR a
/// cross-repository mount needs `ecr:GetDownloadUrlForLayer` on the source repository, blob
/// mounting turned on for the registry (`BLOB_MOUNTING` account setting) and the same encryption
/// on both repositories, and a pull-through-cache repository can never be a source
/// (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html>).
fn mount_note(registry: Option<&str>) -> &'static str {
    #[cfg(feature = "ecr")]
    if registry.is_some_and(crate::ecr::EcrHost::is_ecr) {
        return " (on Amazon ECR a mount needs ecr:GetDownloadUrlForLayer on the source repository, the \
                 BLOB_MOUNTING account setting enabled, and the same encryption on both repositories; a \
                 pull-through-cache repository cannot be a mount source)";
    }
    let _ = registry;
    ""
}

/// Put `manifest` under each reference, in order. A digest reference must equal the manifest's.
pub async fn put_manifest(
    dest: &dyn Destination,
    manifest: &Encoded,
    references: &[String],
    events: &EventSink,
) -> Result<Digest, PushError> {
    // Retries deep in the registry client reach `events` too.
    crate::job_context::with_events(
        events,
        put_manifest_in_job(dest, manifest, references, events),
    )
    .await
}

async fn put_manifest_in_job(
    dest: &dyn Destination,
    manifest: &Encoded,
    references: &[String],
    events: &EventSink,
) -> Result<Digest, PushError> {
    let refs: Vec<String> = if references.is_empty() {
        vec![manifest.digest.to_string()]
    } else {
        references.to_vec()
    };
    for r in &refs {
        if let Ok(wanted) = r.parse::<Digest>()
            && wanted != manifest.digest
        {
            return Err(PushError::WrongDigest {
                wanted,
                ours: manifest.digest.clone(),
            });
        }
    }
    for r in &refs {
        let reported = dest
            .put_manifest(r, &manifest.media_type, manifest.bytes.clone())
            .await
            .map_err(|source| PushError::Manifest {
                dest: dest.describe(),
                reference: r.clone(),
                digest: manifest.digest.clone(),
                source,
            })?;
        if let Some(rep) = reported
            && rep != manifest.digest
        {
            return Err(PushError::DigestMismatch {
                dest: dest.describe(),
                reference: r.clone(),
                ours: manifest.digest.clone(),
                reported: rep,
            });
        }
        events(Event::ManifestPut {
            reference: r.clone(),
            digest: manifest.digest.clone(),
        });
    }
    Ok(manifest.digest.clone())
}
