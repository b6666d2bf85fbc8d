//! Where images go: the [`Destination`] trait, implemented by the OCI distribution registry
//! client, the ECR API transport and the OCI image layout writer. The push orchestration
//! (`push`) drives it: blobs first (each once), then the config, then the manifest, then tags.

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;

use crate::blob::BlobSource;
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::streaming::GrowingBlob;

/// An error from a destination. Each destination has its own typed error; this carries it
/// (downcast with [`DestError::downcast_ref`]) and displays it unchanged.
pub struct DestError(Box<dyn StdError + Send + Sync + 'static>);

impl DestError {
    /// Wrap a destination's own error.
    pub fn new(e: impl StdError + Send + Sync + 'static) -> Self {
        DestError(Box::new(e))
    }
    /// The destination's own error, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }
    /// The inner error.
    pub fn into_inner(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.0
    }
}

impl fmt::Display for DestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
impl fmt::Debug for DestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl StdError for DestError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

/// Callback for bytes sent, called with the running total for one blob.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// A place an image is pushed to (one repository of one registry, or one layout).
///
/// Implementations never read the target repository's manifests or blobs: a push-only
/// identity may not read.
#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// A short human name for messages, e.g. `127.0.0.1:5000/app` or `oci:./out`.
    fn describe(&self) -> String;

    /// Which of `blobs` the destination already has (`HEAD` per blob, or one batched call).
    async fn blobs_exist(&self, blobs: &[Descriptor]) -> Result<Vec<bool>, DestError>;

    /// Try to mount `blob` from `from_repository` of the same registry. `Ok(false)` when the
    /// destination does not mount (the caller then uploads).
    async fn mount_blob(
        &self,
        _blob: &Descriptor,
        _from_repository: &str,
    ) -> Result<bool, DestError> {
        Ok(false)
    }

    /// Upload one blob, streaming it from `source`; the digest is verified by the destination.
    async fn put_blob(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), DestError>;

    /// Upload a blob that is still being written (a layer being built), sending its bytes as
    /// they appear so the upload overlaps the build. When the blob is finished and the
    /// destination turns out to have it already, the rest need not be sent. Returns the blob's
    /// digest and size once it is in; `Ok(None)` from a destination that does not stream (the
    /// default): the caller then pushes the finished blob with [`Destination::put_blob`].
    async fn put_growing_blob(
        &self,
        _blob: &GrowingBlob,
        _progress: Progress<'_>,
    ) -> Result<Option<(Digest, u64)>, DestError> {
        Ok(None)
    }

    /// Close every upload session this destination opened and did not finish (a push that
    /// was cancelled, failed, or abandoned a session to retry in a fresh one). Best effort,
    /// never an error. Default: nothing to close.
    async fn close_uploads(&self) {}

    /// Put a manifest (or index) under `reference` (a tag, or its digest). The bytes are put exactly
    /// as given. Returns the digest the destination reports, when it reports one.
    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, DestError>;
}

/// Closes a destination's open upload sessions ([`Destination::close_uploads`]) from a task
/// of its own if dropped armed: a job whose future is dropped mid-push cannot await the
/// closing itself. Disarmed once the job has closed them.
pub(crate) struct CloseOnDrop(Option<std::sync::Arc<dyn Destination>>);

impl CloseOnDrop {
    pub(crate) fn new(dest: Option<std::sync::Arc<dyn Destination>>) -> CloseOnDrop {
        CloseOnDrop(dest)
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(dest) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { dest.close_uploads().await });
        }
    }
}
