//! Pulling base images: manifests (size-limited, digest-checked), blobs as streams verified
//! against their descriptor while they stream, and [`RemoteBlob`], a base layer that can be
//! pushed elsewhere (or mounted from its repository).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use super::error::RegistryError;
use super::http::read_limited;
use super::repository::{Op, Repository, Subject};
use crate::blob::{BlobSource, ByteStream};
use crate::digest::{Digest, Hasher};
use crate::image::{Descriptor, media_types};

/// The largest manifest accepted.
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

/// A manifest or index as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The exact bytes.
    pub bytes: Bytes,
    /// Its media type (from `Content-Type`, else its `mediaType` field).
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

fn accept_header() -> String {
    [
        media_types::OCI_MANIFEST,
        media_types::OCI_INDEX,
        media_types::DOCKER_MANIFEST,
        media_types::DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

impl Repository {
    /// Fetch the manifest or index `reference` (a tag or a digest).
    pub async fn get_manifest(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let op = Op {
            what: format!("fetching manifest {reference}"),
            scopes: self.pull_scopes(),
            subject: Subject::Manifest(reference),
        };
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let http = &self.client.inner.http;
        let too_large = || RegistryError::TooLarge {
            what: format!("manifest {reference}"),
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            limit: MAX_MANIFEST_SIZE,
        };
        let (bytes, content_type) = self
            .client
            .inner
            .opts
            .retry
            .run(&op.what, || async {
                let resp = self
                    .send(&op, || async {
                        Ok(http.get(url.clone()).header(ACCEPT, accept_header()))
                    })
                    .await?;
                if !resp.status().is_success() {
                    return Err(self.error_from(&op, resp).await);
                }
                let ct = resp
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_string());
                let (bytes, truncated) = read_limited(resp, MAX_MANIFEST_SIZE, self.client.stall())
                    .await
                    .map_err(|e| self.body_error(&op, &url, &e))?;
                if truncated {
                    return Err(too_large());
                }
                Ok((bytes, ct))
            })
            .await?;
        let digest = Digest::of(&bytes);
        if let Ok(want) = reference.parse::<Digest>()
            && want != digest
        {
            return Err(RegistryError::Mismatch {
                what: format!("manifest {reference}"),
                registry: self.registry_label(),
                repository: self.endpoint.repository.clone(),
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
        let generic = |t: &str| {
            t.is_empty()
                || t == "application/json"
                || t == "text/plain"
                || t == "application/octet-stream"
        };
        let media_type = match content_type {
            Some(t) if !generic(&t) => t,
            _ => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| media_types::OCI_MANIFEST.to_string()),
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Stream the blob `desc`; the stream fails when the bytes do not match the descriptor's
    /// digest and size, before the last byte of a mismatching blob is released.
    pub async fn get_blob(&self, desc: &Descriptor) -> Result<ByteStream, RegistryError> {
        let digest = &desc.digest;
        let op = Op {
            what: format!("fetching blob {digest}"),
            scopes: self.pull_scopes(),
            subject: Subject::Blob(digest),
        };
        let url = self.url(&format!("blobs/{digest}"))?;
        let http = &self.client.inner.http;
        let resp = self
            .call(&op, || async { Ok(http.get(url.clone())) }, Self::success)
            .await?;
        let label = format!(
            "blob {digest} from {}/{}",
            self.registry_label(),
            self.endpoint.repository
        );
        let stall = self.client.stall();
        // Each read must deliver within the stall timeout; a broken or stalled connection is an
        // error of a kind the uploader treats as transient (it re-opens the source).
        let inner = futures_util::stream::unfold(
            (Box::pin(resp.bytes_stream()), false),
            move |(mut s, done)| async move {
                if done {
                    return None;
                }
                match tokio::time::timeout(stall, s.next()).await {
                    Err(_) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            super::http::stalled(stall),
                        )),
                        (s, true),
                    )),
                    Ok(None) => None,
                    Ok(Some(Ok(b))) => Some((Ok(b), (s, false))),
                    Ok(Some(Err(e))) => Some((
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionReset,
                            super::http::cause_chain(&e),
                        )),
                        (s, true),
                    )),
                }
            },
        );
        Ok(Box::pin(Verifying {
            inner: Box::pin(inner),
            hasher: Some(Hasher::new()),
            seen: 0,
            done: false,
            expected: desc.digest.clone(),
            size: desc.size,
            label,
        }))
    }

    /// A small blob (a config) read whole, verified; refused when larger than `limit`.
    pub async fn get_blob_bytes(
        &self,
        desc: &Descriptor,
        limit: u64,
    ) -> Result<Bytes, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            what: format!("blob {}", desc.digest),
            registry: self.registry_label(),
            repository: self.endpoint.repository.clone(),
            limit,
        };
        if desc.size > limit {
            return Err(too_large());
        }
        let mut stream = self.get_blob(desc).await?;
        let mut buf = BytesMut::with_capacity(desc.size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidData
                    || e.kind() == io::ErrorKind::UnexpectedEof
                {
                    RegistryError::Mismatch {
                        what: format!("blob {}", desc.digest),
                        registry: self.registry_label(),
                        repository: self.endpoint.repository.clone(),
                        expected: format!("{} bytes with digest {}", desc.size, desc.digest),
                        actual: e.to_string(),
                    }
                } else {
                    RegistryError::ConnectionDropped {
                        what: format!("fetching blob {}", desc.digest),
                        registry: self.registry_label(),
                        repository: self.endpoint.repository.clone(),
                        cause: e.to_string(),
                    }
                }
            })?;
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}

/// A stream checked against a digest and size while it flows. The digest is checked when the
/// declared size is reached, before the last chunk is released, so a consumer that stops
/// reading at the declared size (an upload with `Content-Length`) never passes on a blob whose
/// bytes do not match; bytes past the size, and a short stream, are errors too.
struct Verifying {
    inner: ByteStream,
    hasher: Option<Hasher>,
    seen: u64,
    done: bool,
    expected: Digest,
    size: u64,
    label: String,
}

impl Verifying {
    fn fail(&mut self, kind: io::ErrorKind, why: String) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(io::Error::new(
            kind,
            format!(
                "{} {why}; the source serves corrupt or tampered data",
                self.label
            ),
        ))))
    }

    /// Finish the hash and compare; `Some(error)` on a mismatch.
    fn check_digest(&mut self) -> Option<Poll<Option<io::Result<Bytes>>>> {
        let (digest, _) = self.hasher.take()?.finish();
        (digest != self.expected).then(|| {
            self.fail(
                io::ErrorKind::InvalidData,
                format!("does not match its digest: got {digest}"),
            )
        })
    }
}

impl Stream for Verifying {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(io::Error::new(
                    e.kind(),
                    format!("reading {}: {e}", this.label),
                ))))
            }
            Poll::Ready(Some(Ok(b))) => {
                this.seen += b.len() as u64;
                if this.seen > this.size {
                    let size = this.size;
                    return this.fail(
                        io::ErrorKind::InvalidData,
                        format!("is larger than its descriptor's {size} bytes"),
                    );
                }
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&b);
                }
                if this.seen == this.size
                    && let Some(err) = this.check_digest()
                {
                    return err;
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(None) => {
                if this.seen != this.size {
                    let (seen, size) = (this.seen, this.size);
                    return this.fail(
                        io::ErrorKind::UnexpectedEof,
                        format!("ended after {seen} of {size} bytes"),
                    );
                }
                // An empty blob reaches its size without a chunk: check it here.
                if let Some(err) = this.check_digest() {
                    return err;
                }
                this.done = true;
                Poll::Ready(None)
            }
        }
    }
}

/// A blob in a (source) registry repository: streamed from there on each `open`, and
/// mountable from there when pushing to the same registry.
#[derive(Debug, Clone)]
pub struct RemoteBlob {
    repository: Repository,
    descriptor: Descriptor,
}

impl RemoteBlob {
    /// The blob `descriptor` of `repository`.
    pub fn new(repository: Repository, descriptor: Descriptor) -> RemoteBlob {
        RemoteBlob {
            repository,
            descriptor,
        }
    }

    /// Its descriptor.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }
}

#[async_trait::async_trait]
impl BlobSource for RemoteBlob {
    async fn open(&self) -> io::Result<ByteStream> {
        self.repository
            .get_blob(&self.descriptor)
            .await
            .map_err(io::Error::other)
    }

    /// `(endpoint host, repository there)`: a mount only works within one physical registry.
    fn mount_from(&self) -> Option<(String, String)> {
        let e = self.repository.endpoint();
        Some((e.host.clone(), e.repository.clone()))
    }
}
