//! The `PATCH` loop of a chunked upload: chunks sized per registry ([`super::chunking`]), each
//! confirmed before the next, the session kept for a later attempt to resume; a chunk refused
//! as too large is sent again smaller from where the registry has the upload, in the same
//! session; and the registry's upload status (`GET <location>` → `Range`) read without
//! trusting the ambiguous `0-0`.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use tokio::sync::watch;
use url::Url;

use super::body::{Shared, counted, take, take_error, with_progress};
use super::chunking::{
    RegistryOffset, chunk_size, floor, host_limits, registry_offset, shrink, too_large,
};
use super::error::RegistryError;
use super::repository::{Op, Repository};
use crate::dest::Progress;
use crate::events::{FallbackKind, fallback};
use crate::streaming::Sending;

const OCTET: &str = "application/octet-stream";

/// An open upload session: where to send, and the minimum chunk its opening answer announced
/// (`OCI-Chunk-Min-Length`).
#[derive(Debug, Clone)]
pub(crate) struct UploadSession {
    /// The session's URL (the latest `Location`).
    pub location: Url,
    /// The registry's minimum chunk for this session.
    pub min_chunk: Option<u64>,
}

/// The session of a chunked upload that was cut, kept between attempts.
pub(super) type ResumeSlot = std::sync::Mutex<Option<UploadSession>>;

/// What [`Repository::put_chunked`] did besides sending: whether it went on from an offset the
/// registry reported (so a `DIGEST_INVALID` at the end may be ours to redo).
#[derive(Debug, Default)]
pub(super) struct Resumed(pub bool);

impl Repository {
    /// The chunk size of a session to this repository's host with this minimum.
    pub(super) fn chunk_size_for(&self, session_min: Option<u64>) -> u64 {
        let host = &self.endpoint.host;
        chunk_size(
            self.client.inner.opts.chunk_size,
            host_limits(host),
            self.client.inner.chunks.max(host),
            session_min,
        )
    }

    /// The largest body this repository's host is known to accept (its known maximum, or what it
    /// was seen to accept), if any.
    pub(super) fn max_body(&self) -> Option<u64> {
        let host = &self.endpoint.host;
        let learned = self.client.inner.chunks.max(host);
        learned.into_iter().chain(host_limits(host).max).min()
    }

    /// Whether this repository's host takes no chunked uploads (known, or it answered a `PATCH`
    /// with 405): every blob goes in one `PUT`.
    pub(crate) fn monolithic_only(&self) -> bool {
        let host = &self.endpoint.host;
        host_limits(host).monolithic || self.client.inner.chunks.monolithic(host)
    }

    /// PATCH the blob from `start` in chunks to `session` (a growing blob as its chunks are
    /// written), then close it with a PUT. After each confirmed chunk the session is left in
    /// `resume`, so a later attempt can continue it. A chunk refused as too large (413, or 416
    /// saying so) is sent again smaller, from where the registry says it has the upload; a 416
    /// to a chunk from 0 after an ambiguous `0-0` status goes on from byte 1.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn put_chunked(
        &self,
        op: &Op<'_>,
        sending: Sending<'_>,
        session: UploadSession,
        start: RegistryOffset,
        progress: Progress<'_>,
        resume: &ResumeSlot,
        resumed: &mut Resumed,
    ) -> Result<(), RegistryError> {
        let min_chunk = session.min_chunk;
        let floor = floor(host_limits(&self.endpoint.host), min_chunk);
        let mut chunk = self.chunk_size_for(min_chunk);
        let known_size = match sending {
            Sending::Known(d, _) => Some(d.size),
            Sending::Growing(_) => None,
        };
        let http = &self.client.inner.http;
        let remember = |l: &Url| {
            self.track_open(l);
            if let Ok(mut r) = resume.lock() {
                *r = Some(UploadSession {
                    location: l.clone(),
                    min_chunk,
                });
            }
        };
        let mut location = session.location;
        remember(&location);
        let source = sending.source();
        let open = |offset: u64| async move {
            let stream = source
                .open_at(offset)
                .await
                .map_err(|e| self.source_error(&sending, e))?;
            Ok::<_, RegistryError>(Shared {
                stream,
                leftover: None,
            })
        };
        let mut offset = start.offset;
        // The registry said `0-0`: it has byte 0 or nothing; sent from 0 until it says otherwise.
        let mut ambiguous = start.ambiguous && start.offset == 0;
        let shared = Arc::new(tokio::sync::Mutex::new(open(offset).await?));
        let slot = super::body::ErrorSlot::default();
        let (tx, rx) = watch::channel(0u64);
        let tx = Arc::new(tx);
        let mut checked = false;
        tracing::debug!(blob = %sending.label(), chunk, offset, "chunked upload");
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
                        *shared.lock().await = open(offset).await?;
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
            if matches!(
                resp.status(),
                StatusCode::ACCEPTED | StatusCode::CREATED | StatusCode::NO_CONTENT
            ) {
                if resp.headers().contains_key(LOCATION) {
                    location = self.location(op, &resp, &request_url)?;
                }
                offset += len;
                ambiguous = false;
                remember(&location);
                continue;
            }
            let err = self.error_from(op, resp).await;
            if err.status() == Some(405) {
                // No chunked uploads here (Google Artifact Registry): one PUT from now on —
                // at once for a finished blob, once built for a layer being streamed.
                self.client.inner.chunks.set_monolithic(&self.endpoint.host);
                fallback(
                    &op.what,
                    FallbackKind::NoChunkedUploads,
                    &format!(
                        "the registry takes no chunked uploads ({err}); sending the blob in one request"
                    ),
                );
                return Err(err);
            }
            if too_large(&err) {
                let Some(smaller) = shrink(len, &err, floor) else {
                    return Err(err);
                };
                self.client.inner.chunks.lower(&self.endpoint.host, smaller);
                tracing::info!(
                    blob = %sending.label(),
                    refused = len,
                    next = smaller,
                    error = %err,
                    "the registry refused a chunk as too large; sending smaller chunks"
                );
                fallback(
                    &op.what,
                    FallbackKind::ChunkShrunk,
                    &format!(
                        "the registry refused a chunk of {len} bytes as too large ({err}); sending chunks of {smaller} bytes"
                    ),
                );
                chunk = smaller;
                // Where the registry has the upload; else where it was (the chunk was refused).
                if let Some((at, there)) = self.upload_status(op, &location).await
                    && known_size.is_none_or(|size| there.offset <= size)
                {
                    location = at;
                    offset = there.offset;
                    ambiguous = there.ambiguous;
                }
            } else if ambiguous && offset == 0 && err.status() == Some(416) {
                tracing::info!(
                    blob = %sending.label(),
                    "the registry had the first byte (its status said 0-0); going on from byte 1"
                );
                offset = 1;
                ambiguous = false;
            } else {
                return Err(err);
            }
            resumed.0 = true;
            remember(&location);
            *shared.lock().await = open(offset).await?;
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
        if done.is_ok() {
            self.track_closed(&location);
            if let Ok(mut r) = resume.lock() {
                *r = None;
            }
        }
        done
    }

    /// Ask the registry how much of the upload session at `location` it has (`GET <location>`
    /// → 204 with `Range: 0-<last byte>`), and where to go on. `None` when it cannot say.
    pub(super) async fn upload_status(
        &self,
        op: &Op<'_>,
        location: &Url,
    ) -> Option<(Url, RegistryOffset)> {
        let http = &self.client.inner.http;
        let resp = self
            .send(op, || async { Ok(http.get(location.clone())) })
            .await
            .ok()?;
        if !resp.status().is_success() {
            tracing::debug!(status = resp.status().as_u16(), "upload status refused");
            return None;
        }
        let there = registry_offset(resp.headers().get(RANGE)?.to_str().ok()?)?;
        let next = if resp.headers().contains_key(LOCATION) {
            self.location(op, &resp, location).ok()?
        } else {
            location.clone()
        };
        Some((next, there))
    }
}
