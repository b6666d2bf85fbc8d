//! The build module's error type: every failure names what failed, which path or entry, why,
//! and what to do about it.

use std::io;
use std::path::PathBuf;

/// Why a build step (context reading, source resolution, layer writing) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`read directory`, `write layer`, ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `.dockerignore` line is not a valid pattern.
    #[error("invalid pattern {pattern:?} in {}: {reason}; fix or remove that line", path.display())]
    BadIgnorePattern {
        /// The `.dockerignore` file.
        path: PathBuf,
        /// The offending pattern.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A COPY/ADD source does not exist (or is excluded by `.dockerignore`).
    #[error(
        "COPY source '{src}' not found in build context {}: check the path, and that .dockerignore does not exclude it",
        context.display()
    )]
    SourceNotFound {
        /// The source as written.
        src: String,
        /// The context root.
        context: PathBuf,
    },
    /// A wildcard COPY/ADD source matched nothing. No longer returned by COPY/ADD itself: as in
    /// BuildKit, such a source just gives no files.
    #[error(
        "COPY source '{src}' matched no files in build context {}: check the pattern, and that .dockerignore does not exclude the files",
        context.display()
    )]
    NoMatch {
        /// The pattern as written.
        src: String,
        /// The context root.
        context: PathBuf,
    },
    /// An `--exclude` pattern of COPY/ADD is not a valid pattern.
    #[error(
        "invalid --exclude pattern {pattern:?}: {reason}; fix the pattern (e.g. *.log, dir/**, !keep.txt)"
    )]
    BadExcludePattern {
        /// The pattern as written.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A COPY/ADD source is not a valid pattern.
    #[error("invalid COPY source pattern '{src}': {reason}")]
    BadSourcePattern {
        /// The source as written.
        src: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A COPY/ADD source leaves the build context.
    #[error(
        "COPY source '{src}' is outside the build context {}: {reason}; only files inside the context can be copied",
        context.display()
    )]
    OutsideContext {
        /// The source as written.
        src: String,
        /// The context root.
        context: PathBuf,
        /// How it escapes.
        reason: String,
    },
    /// Several sources (or a wildcard matching several) to a destination that is not a directory.
    #[error(
        "COPY to '{dest}' has more than one source file: the destination must be a directory and end with a '/'"
    )]
    DestNotDir {
        /// The destination as given.
        dest: String,
    },
    /// The destination does not fit the stage's filesystem.
    #[error("COPY to '{dest}': {source}")]
    Dest {
        /// The destination as given.
        dest: String,
        /// Why.
        #[source]
        source: crate::rootfs::RootFsError,
    },
    /// A destination or entry path that is not a usable path in the image.
    #[error("invalid path '{path}' in the image: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A file of a kind a layer cannot hold from a build context.
    #[error("cannot copy {}: {kind} files are not supported in a build context; remove it or add it to .dockerignore", path.display())]
    UnsupportedFileType {
        /// The file.
        path: PathBuf,
        /// Its kind (`device`, `fifo`, ...).
        kind: &'static str,
    },
    /// A file name that is not UTF-8.
    #[error("cannot copy {}: its name is not valid UTF-8; rename it or add it to .dockerignore", path.display())]
    NonUtf8Name {
        /// The file.
        path: PathBuf,
    },
    /// A symlink chain that does not end.
    #[error("COPY source '{src}': too many levels of symbolic links (a symlink loop?) in build context {}", context.display())]
    SymlinkLoop {
        /// The source as written.
        src: String,
        /// The context root.
        context: PathBuf,
    },
    /// A file changed size while it was copied into a layer.
    #[error("{} changed while it was being copied (expected {expected} bytes, read {actual}); retry when it no longer changes", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The size recorded when the entry was planned.
        expected: u64,
        /// The bytes actually read.
        actual: u64,
    },
    /// An archive (ADD) entry that is refused.
    #[error("archive {}: entry '{entry}' {reason}; the archive is refused", archive.display())]
    ArchiveEntry {
        /// The archive.
        archive: PathBuf,
        /// The entry's path in the archive.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// An archive (ADD) that cannot be read.
    #[error("archive {} cannot be read: {source}; check that the file is a complete, uncorrupted archive", archive.display())]
    Archive {
        /// The archive.
        archive: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl BuildError {
    /// An [`BuildError::Io`] for `action` on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}
