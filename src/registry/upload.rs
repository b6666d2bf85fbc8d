//! Pushing: blob existence (`HEAD`), cross-repository mounts, uploads (one streamed `PUT`, or
//! `PATCH` chunks then a closing `PUT` — the loop is in `chunked.rs`, the sizes per registry in
//! `chunking.rs`), manifests; and `impl Destination for Repository`.
//! Nothing here reads the target repository's manifests or blobs.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};
use tokio::sync::watch;
use url::Url;

use super::body::{counted, take_error, with_progress};
pub(super) use super::chunked::ResumeSlot;
use super::chunked::{Resumed, UploadSession};
use super::chunking::{RegistryOffset, floor, host_limits, session_min, shrink, too_large};
use super::error::RegistryError;
use super::repository::{Op, Reply, Repository, Subject};
use crate::blob::BlobSource;
use crate::dest::{DestError, Destination, Progress};
use crate::digest::Digest;
use crate::events::{FallbackKind, fallback};
use crate::image::Descriptor;
use crate::streaming::{GrowingBlob, Sending};

const OCTET: &str = "application/octet-stream";
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

impl Repository {
    /// Whether the repository has `digest` (`HEAD /v2/<repo>/blobs/<digest>`: 200 yes, 404 no).
    pub async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let op = Op {
            what: format!("checking blob {digest}"),
            scopes: self.push_scopes(),
            subject: Subject::Blob(digest),
        };
        let url = self.url(&format!("blobs/{digest}"))?;
        let http = &self.client.inner.http;
        self.call(
            &op,
            || async { Ok(http.head(url.clone())) },
            |resp| match resp.status() {
                s if s.is_success() => Reply::Done(Ok(true)),
                StatusCode::NOT_FOUND => Reply::Done(Ok(false)),
                _ => Reply::Refused(resp),
            },
        )
        .await
    }

    /// Mount `blob` from `from_repository` of the same registry. `true` when mounted; `false`
    /// when the registry opened an ordinary upload session instead (kept for the upload).
    pub async fn mount(
        &self,
        blob: &Descriptor,
        from_repository: &str,
    ) -> Result<bool, RegistryError> {
        let digest = &blob.digest;
        let mut scopes = self.push_scopes();
        if from_repository != self.endpoint.repository {
            scopes.push(format!("repository:{from_repository}:pull"));
        }
        let op = Op {
            what: format!("mounting blob {digest} from {from_repository}"),
            scopes,
            subject: Subject::Blob(digest),
        };
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from_repository);
        let http = &self.client.inner.http;
        self.call(
            &op,
            || async { Ok(http.post(url.clone()).header(CONTENT_LENGTH, "0")) },
            |resp| match resp.status() {
                StatusCode::CREATED => Reply::Done(Ok(true)),
                // The registry opened an upload session instead: kept for the upload.
                StatusCode::ACCEPTED => {
                    Reply::Done(self.location(&op, &resp, &url).map(|location| {
                        self.track_open(&location);
                        let session = UploadSession {
                            location,
                            min_chunk: session_min(&resp),
                        };
                        if let Ok(mut s) = self.sessions.lock() {
                            s.insert(digest.clone(), session);
                        }
                        false
                    }))
                }
                _ => Reply::Refused(resp),
            },
        )
        .await
    }

    /// Upload `blob` from `source`, retrying on transient errors. A chunked upload cut part-way
    /// continues from what the registry confirms it has (upload status `GET` → `Range`) when it
    /// supports that; otherwise (or when it refuses the resumed range, as ECR does with 416) a
    /// fresh upload session starts. Each attempt re-opens the source, so a streaming source (a
    /// base layer copied from another registry) is read again rather than buffered.
    pub async fn upload(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let what = format!("uploading blob {}", blob.digest);
        let resume: ResumeSlot = std::sync::Mutex::new(None);
        self.client
            .inner
            .opts
            .retry
            .run(&what, || {
                self.upload_once(Sending::Known(blob, source), progress, &resume)
            })
            .await
    }

    /// One attempt at an upload (a finished blob, or a growing one: always chunked). A cut
    /// chunked upload is resumed where the registry has it; a resumed upload whose closing PUT
    /// answers `DIGEST_INVALID` (the registry's offset was wrong) is redone once from a fresh
    /// session; a monolithic PUT refused as too large is sent again in chunks.
    pub(super) async fn upload_once(
        &self,
        sending: Sending<'_>,
        progress: Progress<'_>,
        resume: &ResumeSlot,
    ) -> Result<(), RegistryError> {
        let label = sending.label();
        let op = Op {
            what: format!("uploading blob {label}"),
            scopes: self.push_scopes(),
            subject: sending.subject(),
        };
        let known = match sending {
            Sending::Known(d, _) => Some(d),
            Sending::Growing(_) => None,
        };
        // A body never larger than the host is known to accept.
        let threshold = self
            .max_body()
            .map_or(self.client.inner.opts.monolithic_threshold, |max| {
                max.min(self.client.inner.opts.monolithic_threshold)
            });
        let monolithic_only = self.monolithic_only();
        let chunked = known.is_none_or(|d| !monolithic_only && d.size > threshold);
        let interrupted = resume.lock().ok().and_then(|mut r| r.take());
        if chunked && let Some(session) = interrupted {
            match self.upload_status(&op, &session.location).await {
                Some((location, there)) if known.is_none_or(|d| there.offset <= d.size) => {
                    tracing::info!(
                        blob = %label,
                        offset = there.offset,
                        ambiguous = there.ambiguous,
                        "resuming the interrupted upload where the registry has it"
                    );
                    fallback(
                        &op.what,
                        FallbackKind::UploadResumed,
                        &format!(
                            "the upload was cut; going on from byte {} where the registry has it",
                            there.offset
                        ),
                    );
                    let session = UploadSession {
                        location,
                        ..session
                    };
                    let mut resumed = Resumed(true);
                    match self
                        .put_chunked(&op, sending, session, there, progress, resume, &mut resumed)
                        .await
                    {
                        // The registry will not continue this session (ECR answers 416):
                        // start afresh below.
                        Err(e) if refused_resume(&e) => {
                            tracing::info!(blob = %label, error = %e, "resume refused; starting a fresh upload");
                            fallback(
                                &op.what,
                                FallbackKind::ResumeRefused,
                                &format!(
                                    "the registry refused to resume the upload ({e}); starting a fresh upload"
                                ),
                            );
                            clear(resume);
                        }
                        Err(e) if digest_invalid(&e) => {
                            tracing::info!(blob = %label, error = %e, "the resumed upload does not have the blob's digest; redoing it from a fresh session");
                            fallback(&op.what, FallbackKind::ResumeRestarted, &restarted(&e));
                            clear(resume);
                        }
                        other => return other,
                    }
                }
                _ => {
                    tracing::info!(blob = %label, "the interrupted upload cannot be resumed; starting a fresh upload");
                    fallback(
                        &op.what,
                        FallbackKind::ResumeRefused,
                        "the registry does not say how much of the cut upload it has; starting a fresh upload",
                    );
                }
            }
        }
        // A session a mount attempt opened for this blob.
        let opened = known.and_then(|d| {
            self.sessions
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&d.digest))
        });
        let mut session = match opened {
            Some(s) => s,
            None => self.start_upload(&op).await?,
        };
        if let (Some(blob), false) = (known, chunked) {
            match self
                .put_monolithic(&op, blob, sending.source(), session.location, progress)
                .await
            {
                Err(e) if too_large(&e) && !monolithic_only => {
                    let floor = floor(host_limits(&self.endpoint.host), None);
                    let max = shrink(blob.size, &e, floor).unwrap_or(floor);
                    self.client.inner.chunks.lower(&self.endpoint.host, max);
                    tracing::info!(blob = %label, error = %e, chunk = max, "the registry refused the blob in one request as too large; sending it in chunks");
                    fallback(
                        &op.what,
                        FallbackKind::MonolithicTooLarge,
                        &format!(
                            "the registry refused the blob in one request as too large ({e}); sending it in chunks of at most {max} bytes"
                        ),
                    );
                    session = self.start_upload(&op).await?;
                }
                other => return other,
            }
        }
        let fresh = RegistryOffset {
            offset: 0,
            ambiguous: false,
        };
        let mut resumed = Resumed::default();
        let mut done = self
            .put_chunked(&op, sending, session, fresh, progress, resume, &mut resumed)
            .await;
        if let Err(e) = &done
            && resumed.0
            && digest_invalid(e)
        {
            tracing::info!(blob = %label, error = %e, "the resumed upload does not have the blob's digest; redoing it from a fresh session");
            fallback(&op.what, FallbackKind::ResumeRestarted, &restarted(e));
            clear(resume);
            let session = self.start_upload(&op).await?;
            done = self
                .put_chunked(&op, sending, session, fresh, progress, resume, &mut resumed)
                .await;
        }
        match (done, known) {
            // No chunked uploads here (a PATCH answered 405): the known blob in one PUT.
            (Err(e), Some(blob)) if e.status() == Some(405) && self.monolithic_only() => {
                // (Reported as a fallback where the 405 was met, `put_chunked`.)
                tracing::info!(blob = %label, error = %e, "the registry takes no chunked uploads; sending the blob in one request");
                clear(resume);
                let session = self.start_upload(&op).await?;
                self.put_monolithic(&op, blob, sending.source(), session.location, progress)
                    .await
            }
            (done, _) => done,
        }
    }

    /// Open an upload session (`POST /blobs/uploads/`), with the minimum chunk its answer
    /// announces (`OCI-Chunk-Min-Length`).
    async fn start_upload(&self, op: &Op<'_>) -> Result<UploadSession, RegistryError> {
        let url = self.url("blobs/uploads/")?;
        let http = &self.client.inner.http;
        let resp = self
            .send(op, || async {
                Ok(http.post(url.clone()).header(CONTENT_LENGTH, "0"))
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED && !resp.status().is_success() {
            return Err(self.error_from(op, resp).await);
        }
        let location = self.location(op, &resp, &url)?;
        self.track_open(&location);
        Ok(UploadSession {
            location,
            min_chunk: session_min(&resp),
        })
    }

    /// The `Location` of `resp`, resolved against the request URL.
    pub(super) fn location(
        &self,
        op: &Op<'_>,
        resp: &Response,
        request: &Url,
    ) -> Result<Url, RegistryError> {
        let raw = resp.headers().get(LOCATION).ok_or_else(|| {
            self.bad_response(
                op,
                format!("HTTP {} without a Location header", resp.status().as_u16()),
            )
        })?;
        let raw = raw
            .to_str()
            .map_err(|_| self.bad_response(op, "a Location header that is not ASCII".into()))?;
        request.join(raw).map_err(|e| {
            self.bad_response(op, format!("a Location header that is not a URL ({e})"))
        })
    }

    pub(super) fn with_digest(location: &Url, digest: &Digest) -> Url {
        let mut u = location.clone();
        u.query_pairs_mut().append_pair("digest", digest.as_str());
        u
    }

    async fn put_monolithic(
        &self,
        op: &Op<'_>,
        blob: &Descriptor,
        source: &dyn BlobSource,
        location: Url,
        progress: Progress<'_>,
    ) -> Result<(), RegistryError> {
        let url = Self::with_digest(&location, &blob.digest);
        let sending = Sending::Known(blob, source);
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let slot = super::body::ErrorSlot::default();
        let http = &self.client.inner.http;
        let watched = rx.clone();
        let sent = self.send_watched(op, Some(&watched), || {
            let (tx, slot, url) = (tx.clone(), slot.clone(), url.clone());
            async move {
                let stream = source
                    .open()
                    .await
                    .map_err(|e| self.source_error(&sending, e))?;
                let body = reqwest::Body::wrap_stream(counted(stream, blob.size, 0, tx, slot));
                Ok(http
                    .put(url)
                    .header(CONTENT_LENGTH, blob.size.to_string())
                    .header(CONTENT_TYPE, OCTET)
                    .body(body))
            }
        });
        let resp = with_progress(sent, rx, progress).await;
        if let Some(e) = take_error(&slot) {
            return Err(self.source_error(&sending, e));
        }
        let done = self.finish_upload(op, &blob.digest, resp?).await;
        if done.is_ok() {
            self.track_closed(&location);
        }
        done
    }

    pub(super) async fn finish_upload(
        &self,
        op: &Op<'_>,
        digest: &Digest,
        resp: Response,
    ) -> Result<(), RegistryError> {
        if !resp.status().is_success() {
            return Err(self.error_from(op, resp).await);
        }
        self.check_digest_header(op, &resp, digest, &format!("uploaded blob {digest}"))
    }

    fn check_digest_header(
        &self,
        _op: &Op<'_>,
        resp: &Response,
        ours: &Digest,
        what: &str,
    ) -> Result<(), RegistryError> {
        if let Some(theirs) = resp
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            && theirs.trim() != ours.as_str()
        {
            return Err(RegistryError::Mismatch {
                what: what.to_string(),
                registry: self.registry_label(),
                repository: self.endpoint.repository.clone(),
                expected: ours.to_string(),
                actual: format!("Docker-Content-Digest {}", theirs.trim()),
            });
        }
        Ok(())
    }

    /// Put a manifest under `reference` with exactly these bytes; returns the digest the
    /// registry reports (checked against ours).
    pub async fn put_manifest_bytes(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, RegistryError> {
        let op = Op {
            what: format!("putting manifest {reference}"),
            scopes: self.push_scopes(),
            subject: Subject::Manifest(reference),
        };
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let ours = Digest::of(&bytes);
        let http = &self.client.inner.http;
        let resp = self
            .call(
                &op,
                || async {
                    Ok(http
                        .put(url.clone())
                        .header(CONTENT_TYPE, media_type)
                        .body(bytes.clone()))
                },
                Self::success,
            )
            .await?;
        self.check_digest_header(&op, &resp, &ours, &format!("manifest {reference} ({ours})"))?;
        Ok(resp
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok()))
    }
}

/// The registry will not continue a resumed session (ECR answers 416; distribution 404 when
/// the session's state no longer matches): a fresh one is opened.
fn refused_resume(e: &RegistryError) -> bool {
    matches!(e.status(), Some(416) | Some(404)) && !too_large(e)
}

/// The registry refused the closing PUT because what it holds does not have the digest.
fn digest_invalid(e: &RegistryError) -> bool {
    match e.last_attempt() {
        RegistryError::Status { detail, .. } => detail.has_code("DIGEST_INVALID"),
        _ => false,
    }
}

fn clear(resume: &ResumeSlot) {
    if let Ok(mut r) = resume.lock() {
        *r = None;
    }
}

#[async_trait::async_trait]
impl Destination for Repository {
    fn describe(&self) -> String {
        Repository::describe(self)
    }

    async fn blobs_exist(&self, blobs: &[Descriptor]) -> Result<Vec<bool>, DestError> {
        let n = self.client.inner.opts.max_concurrency.max(1);
        type Check<'a> = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<bool, RegistryError>> + Send + 'a>,
        >;
        let checks: Vec<Check<'_>> = blobs
            .iter()
            .map(|b| Box::pin(self.blob_exists(&b.digest)) as Check<'_>)
            .collect();
        let results: Vec<Result<bool, RegistryError>> = futures_util::stream::iter(checks)
            .buffered(n)
            .collect()
            .await;
        results
            .into_iter()
            .map(|r| r.map_err(DestError::new))
            .collect()
    }

    async fn mount_blob(
        &self,
        blob: &Descriptor,
        from_repository: &str,
    ) -> Result<bool, DestError> {
        self.mount(blob, from_repository)
            .await
            .map_err(DestError::new)
    }

    async fn put_blob(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), DestError> {
        self.upload(blob, source, progress)
            .await
            .map_err(DestError::new)
    }

    async fn put_growing_blob(
        &self,
        blob: &GrowingBlob,
        progress: Progress<'_>,
    ) -> Result<Option<(Digest, u64)>, DestError> {
        if self.monolithic_only() {
            // One PUT per blob: the layer is pushed once it is finished.
            tracing::debug!(registry = %self.registry_label(), "the registry takes no chunked uploads; the layer is uploaded once built");
            return Ok(None);
        }
        self.upload_growing(blob, progress)
            .await
            .map(Some)
            .map_err(DestError::new)
    }

    async fn close_uploads(&self) {
        self.close_open_uploads().await
    }

    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, DestError> {
        self.put_manifest_bytes(reference, media_type, bytes)
            .await
            .map_err(DestError::new)
    }
}

/// The detail of a [`FallbackKind::ResumeRestarted`].
fn restarted(e: &RegistryError) -> String {
    format!(
        "the resumed upload does not have the blob's digest ({e}); redoing it from a fresh session"
    )
}
