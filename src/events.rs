//! Progress events: what a build and a push report as they go, so the CLI can draw progress
//! and a library user can log or forward them. Events never carry secrets.

use crate::digest::Digest;

/// Something that happened during a build or a push. Serialised (the CLI's `--progress
/// rawjson`) as `{"event": "<variant in snake_case>", "data": <its fields>}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A warning (e.g. a JSON form that did not parse and was taken as shell form).
    Warning(String),
    /// A stage's base image was resolved.
    BaseResolved {
        /// The platform being built (tells the jobs of a multi-platform build apart).
        platform: String,
        /// The image.
        image: String,
        /// Its platform manifest's digest.
        digest: Digest,
    },
    /// A layer is being built for a Dockerfile line.
    LayerStarted {
        /// The platform being built.
        platform: String,
        /// The Dockerfile line.
        line: usize,
        /// The instruction (`COPY app /app`).
        step: String,
    },
    /// An `ADD <url>` source was downloaded (or found already downloaded: `reused`).
    Downloaded {
        /// The platform being built.
        platform: String,
        /// The ADD line.
        line: usize,
        /// The URL, without credentials.
        url: String,
        /// The sha256 of the file.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Whether a pinned download was taken from the store without fetching it.
        reused: bool,
    },
    /// A line a `RUN` command printed (stdout and stderr interleaved).
    RunOutput {
        /// The platform being built.
        platform: String,
        /// The RUN line.
        line: usize,
        /// The text, without its newline.
        text: String,
    },
    /// A layer was built.
    LayerBuilt {
        /// The platform being built.
        platform: String,
        /// The Dockerfile line.
        line: usize,
        /// The compressed digest.
        digest: Digest,
        /// Compressed size.
        size: u64,
    },
    /// The destination already has this blob.
    BlobExists {
        /// The blob.
        digest: Digest,
    },
    /// The blob was mounted from another repository of the same registry.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// The repository it came from.
        from: String,
    },
    /// An upload started.
    BlobUploading {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of an upload sent so far.
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes sent.
        sent: u64,
    },
    /// An upload finished.
    BlobUploaded {
        /// The blob.
        digest: Digest,
    },
    /// Bytes of a layer uploaded while it is being built, sent so far (its digest is not known
    /// until it is finished: `layer` numbers the streamed layers of a job from 1).
    LayerStreaming {
        /// Which streamed layer.
        layer: u64,
        /// Bytes sent.
        sent: u64,
    },
    /// An upload while building failed; the layer is pushed again after the build (where a
    /// failure is the push's error).
    LayerStreamFailed {
        /// Which streamed layer.
        layer: u64,
        /// Why.
        error: String,
    },
    /// A layer was uploaded while it was being built (or found in the destination when it was
    /// finished).
    BlobStreamed {
        /// Which streamed layer ([`Event::LayerStreaming`]).
        layer: u64,
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A registry request failed in a way that may pass (a 5xx, 429, a dropped connection, a
    /// timeout) and is tried again after `delay_ms`.
    Retrying {
        /// The step (`uploading blob sha256:…`).
        step: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// The wait before the next attempt, in milliseconds.
        delay_ms: u64,
        /// Why it failed.
        error: String,
    },
    /// A step did not go the first way it was tried and went on another way that still gets
    /// the job done (a refused mount uploaded instead, chunks made smaller, an upload resumed
    /// or restarted, plain HTTP on an insecure registry, …). Nothing failed: this says why a
    /// push took longer or sent more than it might have.
    Fallback {
        /// What was being done (`uploading blob sha256:…`, `connecting to localhost:5000`).
        step: String,
        /// Which fallback.
        kind: FallbackKind,
        /// What happened, in words (an error in it has its secrets removed).
        detail: String,
    },
    /// A manifest was put under a tag or digest.
    ManifestPut {
        /// The tag or digest.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
    },
}

/// Which way a step fell back ([`Event::Fallback`]). Serialised in snake_case
/// (`mount_refused`); new kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FallbackKind {
    /// The registry did not mount the blob from another repository; it is uploaded.
    MountRefused,
    /// The registry refused the blob in one request as too large; it is sent in chunks.
    MonolithicTooLarge,
    /// The registry refused a chunk as too large; smaller chunks are sent.
    ChunkShrunk,
    /// The registry takes no chunked uploads (a `PATCH` answered 405); the blob goes in one
    /// request.
    NoChunkedUploads,
    /// An interrupted upload goes on where the registry has it.
    UploadResumed,
    /// The registry would not continue an interrupted upload; it starts afresh.
    ResumeRefused,
    /// A resumed upload did not end with the blob's digest (`DIGEST_INVALID`); it is redone
    /// from a fresh session.
    ResumeRestarted,
    /// An upload failed and the whole blob is sent again in a new upload session (Amazon
    /// ECR's API).
    UploadRestarted,
    /// The registry had the blob before the upload finished; the rest is not sent.
    BlobAlreadyThere,
    /// TLS failed on a registry marked insecure; plain HTTP is used.
    PlainHttp,
    /// The registry refused the credential; it is tried once more with a fresh one.
    CredentialRefreshed,
    /// No fresher credential could be had; the stale one is sent and the registry judges.
    StaleCredential,
    /// No Amazon ECR Public token could be had; pulls go on without credentials.
    AnonymousPull,
    /// A layer in the cache no longer hashes to its digest; it is built again.
    CacheEntryRebuilt,
    /// A stored download no longer hashes to its name; it is downloaded again.
    DownloadRefetched,
}

impl FallbackKind {
    /// The kind as serialised (`mount_refused`).
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackKind::MountRefused => "mount_refused",
            FallbackKind::MonolithicTooLarge => "monolithic_too_large",
            FallbackKind::ChunkShrunk => "chunk_shrunk",
            FallbackKind::NoChunkedUploads => "no_chunked_uploads",
            FallbackKind::UploadResumed => "upload_resumed",
            FallbackKind::ResumeRefused => "resume_refused",
            FallbackKind::ResumeRestarted => "resume_restarted",
            FallbackKind::UploadRestarted => "upload_restarted",
            FallbackKind::BlobAlreadyThere => "blob_already_there",
            FallbackKind::PlainHttp => "plain_http",
            FallbackKind::CredentialRefreshed => "credential_refreshed",
            FallbackKind::StaleCredential => "stale_credential",
            FallbackKind::AnonymousPull => "anonymous_pull",
            FallbackKind::CacheEntryRebuilt => "cache_entry_rebuilt",
            FallbackKind::DownloadRefetched => "download_refetched",
        }
    }
}

impl std::fmt::Display for FallbackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sink for events. It is called synchronously, from the task or thread where the event
/// happens (build threads included), at the moment it happens — its time is the time of the
/// call — so it must return quickly and never block: a slow sink slows the build. To render
/// events elsewhere, forward them with [`channel`], which never waits.
///
/// Order: for one platform, `BaseResolved` before the layers built on it; per layer
/// `LayerStarted`, then its `RunOutput`/`Downloaded`, then `LayerBuilt`. A layer uploaded while
/// built reports `LayerStreaming` (growing `sent`) then `BlobStreamed` or `LayerStreamFailed`;
/// other uploads `BlobUploading`, `BlobProgress` (growing `sent`), `BlobUploaded` — or
/// `BlobExists`/`BlobMounted` instead; `ManifestPut` comes last, the tag after every digest.
/// `Retrying` and `Fallback` come while the step they name runs, before its outcome: a
/// `MountRefused` fallback before that blob's `BlobUploading`; the chunk, resume and restart
/// fallbacks of an upload between its `BlobUploading` and `BlobUploaded` (or among a streamed
/// layer's `LayerStreaming`). Uploads run concurrently, so their events interleave with each
/// other and with building.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// Report `e` to the sink of the job running on this task, if any.
pub(crate) fn emit(e: Event) {
    if let Some(sink) = crate::job_context::events() {
        sink(e);
    }
}

/// Report a fallback ([`Event::Fallback`]) to the job's sink, if any; `detail` has its
/// secrets removed ([`crate::auth::redact::scrub`]).
pub(crate) fn fallback(step: impl Into<String>, kind: FallbackKind, detail: &str) {
    emit(Event::Fallback {
        step: step.into(),
        kind,
        detail: crate::auth::redact::scrub(detail).into_owned(),
    });
}

/// An event with the time it happened, as [`channel`] delivers it: the receiver may see it
/// much later, so the time is taken when the sink is called.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stamped {
    /// When it happened.
    pub at: std::time::SystemTime,
    /// What happened.
    pub event: Event,
}

/// A sink that queues events, each [`Stamped`] with the time it happened, on an unbounded
/// channel, and the receiving end: delivery never blocks the build, however slowly the
/// receiver drains it.
pub fn channel() -> (EventSink, tokio::sync::mpsc::UnboundedReceiver<Stamped>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: EventSink = std::sync::Arc::new(move |event| {
        // A receiver that was dropped wants no more events.
        let _ = tx.send(Stamped {
            at: std::time::SystemTime::now(),
            event,
        });
    });
    (sink, rx)
}

/// A sink that drops everything.
pub fn ignore() -> EventSink {
    std::sync::Arc::new(|_| {})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, listed through a match without a wildcard so a new kind cannot be missed.
    fn all_kinds() -> Vec<FallbackKind> {
        use FallbackKind::*;
        let all = [
            MountRefused,
            MonolithicTooLarge,
            ChunkShrunk,
            NoChunkedUploads,
            UploadResumed,
            ResumeRefused,
            ResumeRestarted,
            UploadRestarted,
            BlobAlreadyThere,
            PlainHttp,
            CredentialRefreshed,
            StaleCredential,
            AnonymousPull,
            CacheEntryRebuilt,
            DownloadRefetched,
        ];
        for (i, k) in all.iter().enumerate() {
            let at = match k {
                MountRefused => 0,
                MonolithicTooLarge => 1,
                ChunkShrunk => 2,
                NoChunkedUploads => 3,
                UploadResumed => 4,
                ResumeRefused => 5,
                ResumeRestarted => 6,
                UploadRestarted => 7,
                BlobAlreadyThere => 8,
                PlainHttp => 9,
                CredentialRefreshed => 10,
                StaleCredential => 11,
                AnonymousPull => 12,
                CacheEntryRebuilt => 13,
                DownloadRefetched => 14,
            };
            assert_eq!(at, i);
        }
        all.to_vec()
    }

    #[test]
    fn a_fallback_serialises_with_its_kind_in_snake_case() {
        let e = Event::Fallback {
            step: "mounting blob sha256:ab from lib/base".into(),
            kind: FallbackKind::MountRefused,
            detail: "the registry did not mount the blob".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "event": "fallback",
                "data": {
                    "step": "mounting blob sha256:ab from lib/base",
                    "kind": "mount_refused",
                    "detail": "the registry did not mount the blob",
                }
            })
        );
    }

    /// `as_str` (the CLI's plain lines) is the serialised name, and the published rawjson
    /// schema lists every kind.
    #[test]
    fn every_fallback_kind_is_named_as_serialised_and_in_the_rawjson_schema() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("cli/rawjson.schema.json")).unwrap();
        let listed =
            &schema["$defs"]["fallback"]["properties"]["data"]["properties"]["kind"]["enum"];
        let listed: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let kinds = all_kinds();
        assert_eq!(listed.len(), kinds.len(), "{listed:?}");
        for k in kinds {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(k.to_string(), k.as_str());
            assert!(listed.contains(&k.as_str()), "{k} not in the schema");
        }
    }

    /// A fallback reaches the sink of the job it happens in — on the job's task and on a
    /// blocking thread it hands the sink to — has its secrets removed, and goes nowhere
    /// outside a job.
    #[tokio::test]
    async fn a_fallback_reaches_its_jobs_sink_scrubbed() {
        fallback("outside", FallbackKind::PlainHttp, "no job here");
        let secret = "fallback-test-token-Zq81xv";
        crate::auth::redact::register(secret);
        let (sink, mut rx) = channel();
        crate::job_context::with_events(&sink, async {
            fallback(
                "authenticating to example.com",
                FallbackKind::CredentialRefreshed,
                &format!("refused Authorization: Bearer {secret}"),
            );
            crate::job_context::spawn_blocking(|| {
                fallback("layer cache", FallbackKind::CacheEntryRebuilt, "bad")
            })
            .await
            .unwrap();
        })
        .await;
        drop(sink);
        let mut got = Vec::new();
        while let Some(Stamped { event: e, .. }) = rx.recv().await {
            got.push(e);
        }
        assert_eq!(got.len(), 2, "{got:?}");
        let Event::Fallback { step, kind, detail } = &got[0] else {
            panic!("{got:?}")
        };
        assert_eq!(step, "authenticating to example.com");
        assert_eq!(*kind, FallbackKind::CredentialRefreshed);
        assert_eq!(detail, "refused Authorization: Bearer <redacted>");
        assert!(matches!(
            &got[1],
            Event::Fallback {
                kind: FallbackKind::CacheEntryRebuilt,
                ..
            }
        ));
    }
}
