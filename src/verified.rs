//! A blob source checked against its descriptor while it streams, before its last byte is
//! released: a destination that stops reading at the declared `Content-Length` still never
//! receives the whole of a blob whose bytes do not match the digest its manifest names. Used
//! for blobs streamed from a source registry.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::blob::{BlobSource, ByteStream};
use crate::digest::Hasher;
use crate::image::Descriptor;

/// `inner`, verified against `descriptor`; `label` names where it comes from in errors.
#[derive(Debug)]
pub struct Verified<'a> {
    /// The source.
    pub inner: &'a dyn BlobSource,
    /// What its bytes must be.
    pub descriptor: &'a Descriptor,
    /// Where it comes from, e.g. `registry/repository`.
    pub label: String,
}

#[async_trait::async_trait]
impl BlobSource for Verified<'_> {
    async fn open(&self) -> io::Result<ByteStream> {
        let inner = self.inner.open().await?;
        Ok(Box::pin(Check {
            inner,
            hasher: Some(Hasher::new()),
            seen: 0,
            finished: false,
            descriptor: self.descriptor.clone(),
            label: self.label.clone(),
        }))
    }

    fn mount_from(&self) -> Option<(String, String)> {
        self.inner.mount_from()
    }
}

struct Check {
    inner: ByteStream,
    hasher: Option<Hasher>,
    seen: u64,
    finished: bool,
    descriptor: Descriptor,
    label: String,
}

impl Check {
    fn fail(&mut self, kind: io::ErrorKind, why: String) -> Poll<Option<io::Result<Bytes>>> {
        self.finished = true;
        Poll::Ready(Some(Err(io::Error::new(
            kind,
            format!(
                "blob {} from {} {why}; the source serves corrupt or tampered data",
                self.descriptor.digest, self.label
            ),
        ))))
    }
}

impl Stream for Check {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        let size = this.descriptor.size;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                this.finished = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(b))) => {
                this.seen += b.len() as u64;
                if this.seen > size {
                    return this.fail(
                        io::ErrorKind::InvalidData,
                        format!("is larger than its descriptor's {size} bytes"),
                    );
                }
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&b);
                }
                if this.seen == size
                    && let Some(h) = this.hasher.take()
                {
                    let (digest, _) = h.finish();
                    if digest != this.descriptor.digest {
                        return this.fail(
                            io::ErrorKind::InvalidData,
                            format!("does not match its digest: got {digest}"),
                        );
                    }
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => {
                if this.seen != size {
                    let seen = this.seen;
                    return this.fail(
                        io::ErrorKind::UnexpectedEof,
                        format!("ended after {seen} of {size} bytes"),
                    );
                }
                this.finished = true;
                Poll::Ready(None)
            }
        }
    }
}
