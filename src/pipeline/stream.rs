//! Building while uploading: each new layer of the image is published by the build as its
//! writing starts ([`LayerTap`]) and uploaded by the destination while it grows
//! ([`Destination::put_growing_blob`]), so a layer's upload overlaps its own compression and
//! the building of the next layers. What was uploaded this way is skipped by the push that
//! follows; a layer whose streamed upload failed (or a destination that does not stream) is
//! pushed after the build the usual way, with that path's own retries and error messages.

use std::collections::BTreeSet;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::build::{BuildOptions, BuiltImage, build_image_in_job};
use crate::dest::Destination;
use crate::digest::Digest;
use crate::events::{Event, EventSink};
use crate::image::Platform;
use crate::pipeline::{PipelineError, Prepare, Session};
use crate::streaming::{GrowingBlob, LayerTap};

/// The images built, one per platform, and the blobs uploaded while they were built.
pub(crate) type Streamed = (Vec<(Platform, BuiltImage)>, BTreeSet<Digest>);

/// Build `build` once per platform, uploading each new layer to `dest` (if any) as it is
/// written. `prepare` runs (once; it is shared with the push) before the first upload.
pub(crate) async fn build_streaming(
    session: &Session,
    build: &BuildOptions,
    platforms: &[Platform],
    dest: Option<&dyn Destination>,
    prepare: &Prepare<'_>,
    events: &EventSink,
) -> Result<Streamed, PipelineError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<GrowingBlob>();
    let tap = dest.map(|_| {
        LayerTap::new(move |blob| {
            // The receiver outlives the build; a send can only fail once it has been closed.
            let _ = tx.send(blob);
        })
    });
    let building = async move {
        let mut images = Vec::with_capacity(platforms.len());
        for p in platforms {
            let opts = BuildOptions {
                platform: p.clone(),
                ..build.clone()
            };
            // The job's sink and cancellation on drop are set by build_and_push_platforms.
            let image = build_image_in_job(
                &opts,
                &session.client,
                &session.registries,
                events,
                tap.clone(),
            )
            .await?;
            images.push((p.clone(), image));
        }
        Ok::<_, PipelineError>(images)
    };
    tokio::pin!(building);
    let mut uploads = FuturesUnordered::new();
    let mut uploaded = BTreeSet::new();
    let mut streamed = 0u64;
    let mut images = None;
    loop {
        tokio::select! {
            built = &mut building, if images.is_none() => {
                images = Some(built?);
                // No layer starts after the build; take those already published, then stop.
                rx.close();
            }
            // Without a destination there is no tap: the channel is closed from the start.
            Some(blob) = rx.recv() => {
                if let Some(dest) = dest {
                    streamed += 1;
                    uploads.push(upload(dest, blob, streamed, prepare, events));
                }
            }
            Some(done) = uploads.next(), if !uploads.is_empty() => uploaded.extend(done),
            else => break,
        }
    }
    let images = images.ok_or_else(|| PipelineError::Destination("no image was built".into()))?;
    Ok((images, uploaded))
}

/// Upload one growing layer; its digest when it is in the destination. Failures are not
/// errors here: the push after the build sends the layer again and reports what fails then.
async fn upload(
    dest: &dyn Destination,
    blob: GrowingBlob,
    layer: u64,
    prepare: &Prepare<'_>,
    events: &EventSink,
) -> Option<Digest> {
    if let Err(e) = prepare.run().await {
        tracing::debug!(error = %e, "destination not ready; the layer is pushed after the build");
        return None;
    }
    let progress = |sent: u64| events(Event::LayerStreaming { layer, sent });
    match dest.put_growing_blob(&blob, &progress).await {
        Ok(Some((digest, size))) => {
            events(Event::BlobStreamed {
                layer,
                digest: digest.clone(),
                size,
            });
            Some(digest)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::info!(
                error = %e,
                "uploading a layer while it was built failed; it is pushed after the build"
            );
            events(Event::LayerStreamFailed {
                layer,
                error: crate::auth::redact::scrub(&e.to_string()).into_owned(),
            });
            None
        }
    }
}
