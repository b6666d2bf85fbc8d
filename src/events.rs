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
    /// A manifest was put under a tag or digest.
    ManifestPut {
        /// The tag or digest.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
    },
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
/// Uploads run concurrently, so their events interleave with each other and with building.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

tokio::task_local! {
    /// The sink of the job running on this task ([`in_job`]), for the layers that have no
    /// sink of their own (the registry client's retries).
    static JOB_EVENTS: EventSink;
}

/// Run `job` with `events` as the sink that [`emit`] reaches: scoped to the job's task, so
/// two jobs in one process (two builds an IDE runs) each get their own events.
pub(crate) async fn in_job<F: std::future::Future>(events: &EventSink, job: F) -> F::Output {
    JOB_EVENTS.scope(events.clone(), job).await
}

/// Report `e` to the sink of the job running on this task, if any.
pub(crate) fn emit(e: Event) {
    let _ = JOB_EVENTS.try_with(|sink| sink(e));
}

/// A sink that queues events on an unbounded channel, and the receiving end: delivery never
/// blocks the build, however slowly the receiver drains it.
pub fn channel() -> (EventSink, tokio::sync::mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let sink: EventSink = std::sync::Arc::new(move |e| {
        // A receiver that was dropped wants no more events.
        let _ = tx.send(e);
    });
    (sink, rx)
}

/// A sink that drops everything.
pub fn ignore() -> EventSink {
    std::sync::Arc::new(|_| {})
}
