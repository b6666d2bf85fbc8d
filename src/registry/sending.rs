//! Chunked uploads of a [`Sending`] blob: a finished blob of known digest and size, or a layer
//! still being built ([`GrowingBlob`]), whose chunks are sent as they are written so the upload
//! overlaps the build. [`Repository::upload_growing`] is the growing upload's entry point.

use std::io;

use super::error::RegistryError;
use super::upload::ResumeSlot;
use super::{Repository, Subject};
use crate::dest::Progress;
use crate::digest::Digest;
use crate::events::{FallbackKind, fallback};
use crate::streaming::{GrowingBlob, Sending};

/// When a growing blob is finished with at least this much of it still unsent, the registry is
/// asked whether it has the blob already (`HEAD`) before the rest is sent.
pub(super) const EXISTS_CHECK_MIN: u64 = 1 << 20;

/// What only the registry's chunked upload needs to know of the blob it sends.
impl<'a> Sending<'a> {
    pub(super) fn subject(&self) -> Subject<'a> {
        match *self {
            Sending::Known(d, _) => Subject::Blob(&d.digest),
            Sending::Growing(_) => Subject::Upload,
        }
    }

    /// The length of the next chunk at `offset` — `chunk` bytes, or what remains of a finished
    /// blob — or `None` when everything is sent. Waits for a growing blob to get that far.
    pub(super) async fn next_chunk(&self, offset: u64, chunk: u64) -> io::Result<Option<u64>> {
        let size = match self {
            Sending::Known(d, _) => d.size,
            Sending::Growing(g) => match g.wait_for(offset.saturating_add(chunk)).await?.finished {
                Some((_, size)) => size,
                None => return Ok(Some(chunk)),
            },
        };
        Ok((offset < size).then(|| chunk.min(size - offset)))
    }
}

impl Repository {
    /// Upload a layer while it is being built: chunks are sent (`PATCH`) as soon as they are
    /// written, and the upload is closed with the digest once the layer is finished. When the
    /// layer is finished with more than [`EXISTS_CHECK_MIN`] unsent and the registry turns out
    /// to have it already, the session is abandoned and nothing more is sent. Retried and
    /// resumed like [`Repository::upload`]. Returns the blob's digest and size.
    pub async fn upload_growing(
        &self,
        blob: &GrowingBlob,
        progress: Progress<'_>,
    ) -> Result<(Digest, u64), RegistryError> {
        let resume: ResumeSlot = std::sync::Mutex::new(None);
        let sending = Sending::Growing(blob);
        self.client
            .inner
            .opts
            .retry
            .run("uploading the layer being built", || {
                self.upload_once(sending, progress, &resume)
            })
            .await?;
        blob.finished()
            .await
            .map_err(|e| self.source_error(&sending, e))
    }

    /// Whether to stop sending a growing blob because the registry has it already (asked once,
    /// when it is finished with enough left to send).
    pub(super) async fn already_there(
        &self,
        sending: &Sending<'_>,
        offset: u64,
        checked: &mut bool,
    ) -> Result<bool, RegistryError> {
        let Sending::Growing(g) = sending else {
            return Ok(false);
        };
        let Some((digest, size)) = g.finished_now().filter(|_| !*checked) else {
            return Ok(false);
        };
        *checked = true;
        if size.saturating_sub(offset) < EXISTS_CHECK_MIN {
            return Ok(false);
        }
        let there = self.blob_exists(&digest).await?;
        if there {
            tracing::info!(%digest, sent = offset, size, "the registry has the layer already; the rest is not sent");
            fallback(
                format!("uploading blob {}", sending.label()),
                FallbackKind::BlobAlreadyThere,
                &format!(
                    "the registry has {digest} already; the rest ({} of {size} bytes) is not sent",
                    size - offset
                ),
            );
        }
        Ok(there)
    }

    pub(super) fn source_error(&self, sending: &Sending<'_>, source: io::Error) -> RegistryError {
        RegistryError::Source {
            blob: sending.label(),
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            source,
        }
    }
}
