//! `ADD <http(s) URL>`: downloading a source through the project's HTTP stack (reqwest,
//! rustls, the registry client's `--retries`, `--timeout` and `--ca-cert`), streamed to a
//! content-addressed file, verified against `--checksum` before any layer is built from it.
//!
//! BuildKit is the reference: frontend/dockerfile/dockerfile2llb/convert_copy.go (the file's
//! name, no unpacking unless `--unpack=true`, `--checksum`), source/http/source.go (mode 0600,
//! the download hashed as it is written, a digest mismatch refused). Where ocipush differs it
//! says so: the file's mtime is the build's epoch, not `Last-Modified` (see
//! [`crate::layers::FetchedFile`]), and redirects never carry the URL's credentials to another
//! origin nor downgrade https to http.
//!
//! - [`http`]: the client, redirects and credentials;
//! - [`download`]: streaming to the store, retries, checksum, reuse;
//! - [`name`]: the file's name in the image;
//! - `error`: [`FetchError`].

mod download;
mod error;
mod http;
mod name;

pub use download::{DownloadStore, Fetched, Stores};
pub use error::FetchError;
pub use http::Fetcher;
pub use name::file_name;

use crate::layers::FetchedFile;
use crate::plan::RemoteSource;

/// Download every source of one `ADD`, in order, calling `done` after each; the files to
/// place in its layer.
pub async fn fetch_sources(
    fetcher: &Fetcher,
    sources: &[RemoteSource],
    stores: &Stores,
    mut done: impl FnMut(&RemoteSource, &Fetched),
) -> Result<Vec<FetchedFile>, FetchError> {
    let mut out = Vec::with_capacity(sources.len());
    for src in sources {
        let fetched = fetcher
            .fetch(&src.url, src.checksum.as_ref(), stores)
            .await?;
        done(src, &fetched);
        out.push(FetchedFile {
            name: file_name(&src.url),
            path: fetched.path,
            size: fetched.size,
            unpack: src.unpack,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
