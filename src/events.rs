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
        /// The image.
        image: String,
        /// Its platform manifest's digest.
        digest: Digest,
    },
    /// A layer is being built for a Dockerfile line.
    LayerStarted {
        /// The Dockerfile line.
        line: usize,
        /// The instruction (`COPY app /app`).
        step: String,
    },
    /// An `ADD <url>` source was downloaded (or found already downloaded: `reused`).
    Downloaded {
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
        /// The RUN line.
        line: usize,
        /// The text, without its newline.
        text: String,
    },
    /// A layer was built.
    LayerBuilt {
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
    /// A layer was uploaded while it was being built (or found in the destination when it was
    /// finished).
    BlobStreamed {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A manifest was put under a tag or digest.
    ManifestPut {
        /// The tag or digest.
        reference: String,
        /// The manifest's digest.
        digest: Digest,
    },
}

/// A sink for events.
pub type EventSink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops everything.
pub fn ignore() -> EventSink {
    std::sync::Arc::new(|_| {})
}
