//! How big the `PATCH` chunks of a chunked upload are, and what a registry's answers teach
//! about it. Registries disagree:
//!
//! - **GHCR** refuses any request body over 4 MiB with `416 REQUESTED_RANGE_NOT_SATISFIABLE`,
//!   "the request body is too large and exceeds the maximum permissible limit of 4.00MiB"
//!   (<https://github.com/oras-project/rust-oci-client/issues/35>, fixed in
//!   <https://github.com/oras-project/rust-oci-client/pull/37> by 4 MiB chunks).
//! - **Amazon ECR** needs every chunk but the last to be at least 5 MiB (the `UploadLayerPart`
//!   rule behind its registry API: <https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_UploadLayerPart.html>).
//!   **Amazon ECR Public** (`public.ecr.aws`) has the same rule: its API's `UploadLayerPart`
//!   refuses a smaller part with `LayerPartTooSmallException`, "Layer parts must be at least 5 MiB
//!   in size" (<https://docs.aws.amazon.com/botocore/latest/reference/services/ecr-public/client/exceptions/LayerPartTooSmallException.html>),
//!   and its registry endpoint answers chunked uploads as ECR's does: a `Range` that stops
//!   advancing after the first `PATCH`, and a `404` to the upload-status `GET`
//!   (<https://github.com/dotnet/sdk/pull/33019>, <https://github.com/dotnet/sdk-container-builds/issues/472>).
//! - **Any registry** may announce a minimum with `OCI-Chunk-Min-Length` on the answer that opens
//!   the session (distribution-spec v1.1, "Pushing a blob in chunks":
//!   <https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks>).
//! - A proxy in front of a registry may refuse a large body with `413 Payload Too Large`.
//! - **Google Artifact Registry** (`<location>-docker.pkg.dev`) takes no chunked uploads at all:
//!   "You must use monolithic uploads" (<https://cloud.google.com/artifact-registry/docs/reference/docker-api>;
//!   a `PATCH` answers `405 Method Not Allowed`: <https://github.com/brainhivenl/steiger/pull/28>,
//!   also <https://github.com/dotnet/sdk-container-builds/pull/287>). Such a host gets one `PUT`
//!   per blob, and a layer is uploaded once it is built; any host answering a `PATCH` with 405
//!   is treated the same from then on.
//!
//! The size of one session's chunks ([`chunk_size`]): the configured size (`--chunk-size`,
//! [`ClientOptions::chunk_size`](super::ClientOptions::chunk_size)) or the host's default,
//! lowered to what the registry was seen to accept ([`Learned`]), raised to the host's and the
//! session's minimum. A "too large" answer ([`too_large`]) shrinks it ([`shrink`]) and the
//! upload resumes where the registry has it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use reqwest::Response;
use reqwest::header::HeaderName;

use super::error::RegistryError;

const MIB: u64 = 1024 * 1024;

/// The smallest chunk ocipush sends (a smaller `--chunk-size` is raised to it).
pub const MIN_CHUNK_SIZE: usize = MIB as usize;
/// The chunk size for a registry with no known limit.
pub(crate) const DEFAULT_CHUNK_SIZE: u64 = 16 * MIB;
/// GHCR's largest request body (see the module documentation).
pub(crate) const GHCR_MAX_CHUNK: u64 = 4 * MIB;
/// ECR's smallest chunk but the last (see the module documentation).
pub(crate) const ECR_MIN_CHUNK: u64 = 5 * MIB;
/// The header a registry announces its minimum chunk with (distribution-spec v1.1).
pub(crate) const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");

/// What is known of a registry host's chunk limits before it is asked anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct HostLimits {
    /// Every chunk but the last at least this.
    pub min: Option<u64>,
    /// No chunk (no request body) larger than this.
    pub max: Option<u64>,
    /// No chunked upload at all: one `PUT` per blob.
    pub monolithic: bool,
}

/// The known limits of `host` (the host actually contacted, port excluded or not).
pub(crate) fn host_limits(host: &str) -> HostLimits {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if name == "ghcr.io" {
        return HostLimits {
            max: Some(GHCR_MAX_CHUNK),
            ..HostLimits::default()
        };
    }
    if crate::ecr_host::EcrHost::is_ecr(&name) || name == crate::ecr_host::PUBLIC_HOST {
        return HostLimits {
            min: Some(ECR_MIN_CHUNK),
            ..HostLimits::default()
        };
    }
    HostLimits {
        monolithic: name.ends_with("-docker.pkg.dev"),
        ..HostLimits::default()
    }
}

/// The chunk size of one upload session: `configured` (else the host's default: its maximum, or
/// [`DEFAULT_CHUNK_SIZE`]), capped by the learned maximum, raised to the host's and the session's minimum, and
/// never below [`MIN_CHUNK_SIZE`]. A registry's minimum wins over any maximum: every chunk but
/// the last must reach it.
pub(crate) fn chunk_size(
    configured: Option<u64>,
    host: HostLimits,
    learned_max: Option<u64>,
    session_min: Option<u64>,
) -> u64 {
    let mut size = configured.unwrap_or_else(|| host.max.unwrap_or(DEFAULT_CHUNK_SIZE));
    if let Some(max) = learned_max {
        size = size.min(max);
    }
    size.max(floor(host, session_min))
}

/// The smallest chunk the session accepts from the host's and the session's minimum.
pub(crate) fn floor(host: HostLimits, session_min: Option<u64>) -> u64 {
    host.min
        .into_iter()
        .chain(session_min)
        .max()
        .unwrap_or(0)
        .max(MIN_CHUNK_SIZE as u64)
}

/// The `OCI-Chunk-Min-Length` of the answer that opened an upload session, if it has a usable
/// one (a number of bytes; anything else is ignored).
pub(crate) fn session_min(resp: &Response) -> Option<u64> {
    let v = resp.headers().get(OCI_CHUNK_MIN_LENGTH)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().filter(|n| *n > 0)
}

/// Whether `err` is the registry saying that a request body was too large: a `413`, or a `416`
/// whose message says so (GHCR's "the request body is too large and exceeds the maximum
/// permissible limit of 4.00MiB"). A `416` about the range itself (an out-of-order chunk,
/// distribution-spec's answer) is not.
pub(crate) fn too_large(err: &RegistryError) -> bool {
    let RegistryError::Status { detail, .. } = err.last_attempt() else {
        return false;
    };
    match detail.status {
        413 => true,
        416 => message(err).is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("too large") || m.contains("exceeds") || m.contains("maximum permissible")
        }),
        _ => false,
    }
}

/// The registry's own words in an error answer (OCI error messages, or the body's start).
fn message(err: &RegistryError) -> Option<String> {
    let RegistryError::Status { detail, .. } = err.last_attempt() else {
        return None;
    };
    let mut text: Vec<String> = detail.errors.iter().map(|e| e.message.clone()).collect();
    text.extend(detail.body.clone());
    (!text.is_empty()).then(|| text.join(" "))
}

/// The chunk to try after a "too large" answer to a `current`-byte body: the limit the answer
/// states ("… limit of 4.00MiB"), else half of `current`; never below `floor`. `None` when it
/// cannot get smaller.
pub(crate) fn shrink(current: u64, err: &RegistryError, floor: u64) -> Option<u64> {
    let stated = message(err)
        .and_then(|m| stated_limit(&m))
        .filter(|n| *n < current);
    let next = stated.unwrap_or(current / 2).max(floor);
    (next < current).then_some(next)
}

/// The last size with a unit in `text` ("4.00MiB", "4 MB", "4194304 bytes"), in bytes.
pub(crate) fn stated_limit(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut found = None;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && is_word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number = &text[start..i];
        let rest = text[i..].trim_start();
        let unit: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if let Some(n) = size_with_unit(number, &unit) {
            found = Some(n);
        }
    }
    found
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.'
}

/// `number` (decimal, maybe with a fraction) times `unit` (B, bytes, K/KB/KiB, M/MB/MiB,
/// G/GB/GiB; binary multiples, as registries mean them).
fn size_with_unit(number: &str, unit: &str) -> Option<u64> {
    let mult = match unit.to_ascii_lowercase().as_str() {
        "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => 1024 * MIB,
        _ => return None,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut total = whole.checked_mul(mult)?;
    // The fraction, to the byte (at most 9 digits are looked at).
    let frac = &frac[..frac.len().min(9)];
    if !frac.is_empty() {
        let digits: u64 = frac.parse().ok()?;
        let scale = 10u64.pow(frac.len() as u32);
        total = total.checked_add(digits.checked_mul(mult)? / scale)?;
    }
    Some(total)
}

/// What an upload status `Range` header (`0-<last byte>`) says the registry has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegistryOffset {
    /// The next byte to send.
    pub offset: u64,
    /// The answer was `0-0`, which CNCF distribution gives both for an empty session and for
    /// one holding 1 byte (`registry/handlers/blobupload.go`, `blobUploadResponse`: the end is
    /// `size - 1`, but 0 when the size is 0): `offset` is 0, and a `416` to a chunk from 0
    /// means the registry had the byte.
    pub ambiguous: bool,
}

/// Read an upload status `Range` header (`0-<last byte>`, optionally `bytes=`-prefixed;
/// distribution also says `0--1` for an empty session). `None` when it does not start at 0 or
/// is not a range.
pub(crate) fn registry_offset(range: &str) -> Option<RegistryOffset> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let (offset, ambiguous) = match end.trim() {
        "-1" => (0, false),
        "0" => (0, true),
        n => (n.parse::<u64>().ok()?.checked_add(1)?, false),
    };
    Some(RegistryOffset { offset, ambiguous })
}

/// A chunk size given by a user (`--chunk-size`): bytes, or a number with a unit (`4MiB`,
/// `16M`, `512KiB`), at least [`MIN_CHUNK_SIZE`] and at most 4 GiB.
pub fn parse_chunk_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let n = size_with_unit(number, if unit.is_empty() { "b" } else { unit }).ok_or_else(|| {
        format!(
            "{text:?} is not a size: expected bytes or a number with KiB, MiB or GiB (e.g. 4MiB)"
        )
    })?;
    if n < MIN_CHUNK_SIZE as u64 {
        return Err(format!("{text:?} is below the smallest chunk size, 1MiB"));
    }
    if n > 4 * 1024 * MIB {
        return Err(format!("{text:?} is above the largest chunk size, 4GiB"));
    }
    Ok(n)
}

/// What each registry host's answers taught: the largest chunk it was seen to accept (from
/// "too large" answers), and whether it refuses chunked uploads (405 to a `PATCH`); used by
/// every later upload to that host.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    max: Mutex<HashMap<String, u64>>,
    monolithic: Mutex<HashSet<String>>,
}

impl Learned {
    /// What `host` was seen to accept, if it ever refused a chunk as too large.
    pub fn max(&self, host: &str) -> Option<u64> {
        self.max.lock().ok()?.get(host).copied()
    }

    /// `host` refused a larger chunk: at most `max` from now on.
    pub fn lower(&self, host: &str, max: u64) {
        if let Ok(mut m) = self.max.lock() {
            let e = m.entry(host.to_string()).or_insert(max);
            *e = (*e).min(max);
        }
    }

    /// Whether `host` refused a chunked upload.
    pub fn monolithic(&self, host: &str) -> bool {
        self.monolithic.lock().is_ok_and(|m| m.contains(host))
    }

    /// `host` refused a chunked upload: one `PUT` per blob from now on.
    pub fn set_monolithic(&self, host: &str) {
        if let Ok(mut m) = self.monolithic.lock() {
            m.insert(host.to_string());
        }
    }
}

#[cfg(test)]
#[path = "chunking_tests.rs"]
mod tests;
