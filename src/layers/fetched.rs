//! Downloaded `ADD <url>` sources in a COPY/ADD layer ([`super::sources`] places them after
//! the other sources), as BuildKit places them
//! (frontend/dockerfile/dockerfile2llb/convert_copy.go, source/http/source.go):
//! - one regular file named after the URL's last path segment (`__unnamed__` when it has
//!   none), mode 0600 unless `--chmod`, owned by `--chown` (root otherwise);
//! - a destination ending in `/` (or an existing directory) receives it inside, any other
//!   destination is the file's own path;
//! - with `--unpack=true` a tar archive (plain, gzip, bzip2, xz, zstd) is extracted into the
//!   destination instead, as a local archive is by ADD.
//!
//! Its mtime is the build's epoch like every other entry, not the server's `Last-Modified`
//! (which BuildKit keeps): a layer's bytes depend only on the file's bytes and the
//! instruction, so a download pinned by `--checksum` always gives the same layer.

use std::path::PathBuf;

/// BuildKit's mode for a downloaded file (source/http/source.go `save`).
pub const DOWNLOAD_MODE: u32 = 0o600;

/// One downloaded file, complete and verified, ready to be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedFile {
    /// Its name in the image (the URL's last path segment, or `__unnamed__`).
    pub name: String,
    /// The downloaded bytes on disk (a content-addressed spool or cache file).
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// `--unpack=true`: extract it when it is an archive.
    pub unpack: bool,
}
