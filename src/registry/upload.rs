//! Pushing: blob existence (`HEAD`), cross-repository mounts, uploads (one streamed `PUT`, or
//! `PATCH` chunks then a closing `PUT`), manifests; and `impl Destination for Repository`.
//! Nothing here reads the target repository's manifests or blobs.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Response, StatusCode};
use tokio::sync::watch;
use url::Url;

use super::body::{Shared, counted, take, take_error, with_progress};
use super::error::RegistryError;
use super::repository::{Op, Reply, Repository, Subject};
use crate::blob::BlobSource;
use crate::dest::{DestError, Destination, Progress};
use crate::digest::Digest;
use crate::growing::{GrowingBlob, Sending};
use crate::image::Descriptor;

const OCTET: &str = "application/octet-stream";

/// The session of a chunked upload that was cut, kept between attempts.
pub(super) type ResumeSlot = std::sync::Mutex<Option<Url>>;
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
                        if let Ok(mut s) = self.sessions.lock() {
                            s.insert(digest.clone(), location);
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

    /// One attempt at an upload (a finished blob, or a growing one: always chunked).
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
        let chunked = known.is_none_or(|d| d.size > self.client.inner.opts.monolithic_threshold);
        let interrupted = resume.lock().ok().and_then(|mut r| r.take());
        if chunked && let Some(location) = interrupted {
            match self.upload_status(&op, &location).await {
                Some((location, offset)) if known.is_none_or(|d| offset <= d.size) => {
                    tracing::info!(
                        blob = %label,
                        offset,
                        "resuming the interrupted upload where the registry has it"
                    );
                    match self
                        .put_chunked(&op, sending, location, offset, progress, resume)
                        .await
                    {
                        // The registry will not continue this session (ECR answers 416):
                        // start afresh below.
                        Err(e) if matches!(e.status(), Some(416) | Some(404)) => {
                            tracing::info!(blob = %label, error = %e, "resume refused; starting a fresh upload");
                            if let Ok(mut r) = resume.lock() {
                                *r = None;
                            }
                        }
                        other => return other,
                    }
                }
                _ => {
                    tracing::info!(blob = %label, "the interrupted upload cannot be resumed; starting a fresh upload");
                }
            }
        }
        // A session a mount attempt opened for this blob.
        let session = known.and_then(|d| {
            self.sessions
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&d.digest))
        });
        let location = match session {
            Some(l) => l,
            None => self.start_upload(&op).await?,
        };
        match (known, chunked) {
            (Some(blob), false) => {
                self.put_monolithic(&op, blob, sending.source(), location, progress)
                    .await
            }
            _ => {
                self.put_chunked(&op, sending, location, 0, progress, resume)
                    .await
            }
        }
    }

    /// Ask the registry how much of the upload session at `location` it has
    /// (`GET <location>` → 204 with `Range: 0-<last byte>`). `None` when it cannot say.
    async fn upload_status(&self, op: &Op<'_>, location: &Url) -> Option<(Url, u64)> {
        let http = &self.client.inner.http;
        let resp = self
            .send(op, || async { Ok(http.get(location.clone())) })
            .await
            .ok()?;
        if !resp.status().is_success() {
            tracing::debug!(status = resp.status().as_u16(), "upload status refused");
            return None;
        }
        let range = resp.headers().get(RANGE)?.to_str().ok()?.trim().to_string();
        let (start, end) = range.split_once('-')?;
        if start != "0" {
            return None;
        }
        // `0-<last byte>`; distribution reports an empty session as `0--1` (or `0-0`).
        let offset = if end == "-1" {
            0
        } else {
            end.parse::<u64>().ok()?.checked_add(1)?
        };
        let next = if resp.headers().contains_key(LOCATION) {
            self.location(op, &resp, location).ok()?
        } else {
            location.clone()
        };
        Some((next, offset))
    }

    async fn start_upload(&self, op: &Op<'_>) -> Result<Url, RegistryError> {
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
        self.location(op, &resp, &url)
    }

    /// The `Location` of `resp`, resolved against the request URL.
    fn location(&self, op: &Op<'_>, resp: &Response, request: &Url) -> Result<Url, RegistryError> {
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

    fn with_digest(location: &Url, digest: &Digest) -> Url {
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
        self.finish_upload(op, &blob.digest, resp?).await
    }

    /// PATCH the blob from `start` in chunks to the session at `location` (a growing blob as
    /// its chunks are written), then close it with a PUT. After each confirmed chunk the
    /// session is left in `resume`, so a later attempt can continue it.
    async fn put_chunked(
        &self,
        op: &Op<'_>,
        sending: Sending<'_>,
        mut location: Url,
        start: u64,
        progress: Progress<'_>,
        resume: &ResumeSlot,
    ) -> Result<(), RegistryError> {
        let chunk = self.client.chunk_size() as u64;
        let http = &self.client.inner.http;
        let remember = |l: &Url| {
            if let Ok(mut r) = resume.lock() {
                *r = Some(l.clone());
            }
        };
        remember(&location);
        let source = sending.source();
        let stream = source
            .open_at(start)
            .await
            .map_err(|e| self.source_error(&sending, e))?;
        let shared = Arc::new(tokio::sync::Mutex::new(Shared {
            stream,
            leftover: None,
        }));
        let slot = super::body::ErrorSlot::default();
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let mut offset = start;
        let mut checked = false;
        while let Some(len) = sending
            .next_chunk(offset, chunk)
            .await
            .map_err(|e| self.source_error(&sending, e))?
        {
            if self.already_there(&sending, offset, &mut checked).await? {
                if let Ok(mut r) = resume.lock() {
                    *r = None;
                }
                return Ok(());
            }
            let end = offset + len - 1;
            let mut first = true;
            let request_url = location.clone();
            let watched = rx.clone();
            let sent = self.send_watched(op, Some(&watched), || {
                let (tx, slot, url, shared) = (
                    tx.clone(),
                    slot.clone(),
                    request_url.clone(),
                    shared.clone(),
                );
                let reopen = !std::mem::replace(&mut first, false);
                async move {
                    if reopen {
                        // A resend (after a 401): the shared stream is somewhere in this chunk.
                        let stream = source
                            .open_at(offset)
                            .await
                            .map_err(|e| self.source_error(&sending, e))?;
                        *shared.lock().await = Shared {
                            stream,
                            leftover: None,
                        };
                    }
                    let body = reqwest::Body::wrap_stream(counted(
                        take(shared, len),
                        len,
                        offset,
                        tx,
                        slot,
                    ));
                    Ok(http
                        .patch(url)
                        .header(CONTENT_LENGTH, len.to_string())
                        .header(CONTENT_RANGE, format!("{offset}-{end}"))
                        .header(CONTENT_TYPE, OCTET)
                        .body(body))
                }
            });
            let resp = with_progress(sent, rx.clone(), progress).await;
            if let Some(e) = take_error(&slot) {
                return Err(self.source_error(&sending, e));
            }
            let resp = resp?;
            if !matches!(
                resp.status(),
                StatusCode::ACCEPTED | StatusCode::CREATED | StatusCode::NO_CONTENT
            ) {
                return Err(self.error_from(op, resp).await);
            }
            if resp.headers().contains_key(LOCATION) {
                location = self.location(op, &resp, &request_url)?;
            }
            offset += len;
            remember(&location);
        }
        let (digest, _) = sending
            .finished()
            .await
            .map_err(|e| self.source_error(&sending, e))?;
        let url = Self::with_digest(&location, &digest);
        let resp = self
            .send(op, || async {
                Ok(http
                    .put(url.clone())
                    .header(CONTENT_LENGTH, "0")
                    .header(CONTENT_TYPE, OCTET))
            })
            .await?;
        let done = self.finish_upload(op, &digest, resp).await;
        if done.is_ok()
            && let Ok(mut r) = resume.lock()
        {
            *r = None;
        }
        done
    }

    async fn finish_upload(
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
        self.upload_growing(blob, progress)
            .await
            .map(Some)
            .map_err(DestError::new)
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
