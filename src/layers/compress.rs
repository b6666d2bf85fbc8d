//! Layer compression: the [`Compression`] choice, its media types, and the streaming encoder
//! that sits between the tar writer and the spool file.
//!
//! gzip is block-parallel ([`super::pgzip`]) and zstd uses libzstd's multithreaded mode; both
//! give the same bytes for any thread count, so the thread count (per build:
//! [`super::LayerOptions::threads`]) is a speed knob only and never part of a digest or a cache key.

use std::io::{self, Write};

use super::pgzip::ParGzEncoder;
use crate::image::media_types;

/// How many threads compress a layer when `asked` (0: one per available core).
pub(crate) fn threads(asked: usize) -> usize {
    match asked {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// How a layer is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Uncompressed tar.
    None,
    /// gzip at `level` (0–9); the header carries no name and mtime 0, so output is deterministic.
    Gzip {
        /// zlib compression level, 0–9 (clamped).
        level: u32,
    },
    /// zstd at `level` (1–22, clamped); frames written by libzstd's multithreaded mode.
    Zstd {
        /// zstd compression level.
        level: i32,
    },
}

/// The gzip level of `--compression gzip` without a level (see the README's Performance
/// section for the measurements behind it).
pub const DEFAULT_GZIP_LEVEL: u32 = 2;
/// Bytes of input per libzstd worker job (fixed, so the output never depends on the machine).
const ZSTD_JOB_SIZE: u32 = 4 << 20;

/// The zstd level of `--compression zstd` without a level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// gzip at [`DEFAULT_GZIP_LEVEL`], as the CLI's `--compression` default.
impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip {
            level: DEFAULT_GZIP_LEVEL,
        }
    }
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(&self) -> &'static str {
        match self {
            Compression::None => media_types::OCI_LAYER_TAR,
            Compression::Gzip { .. } => media_types::OCI_LAYER_GZIP,
            Compression::Zstd { .. } => media_types::OCI_LAYER_ZSTD,
        }
    }

    /// The Docker (manifest v2 schema 2) layer media type for this compression.
    pub fn docker_media_type(&self) -> &'static str {
        match self {
            Compression::None => media_types::DOCKER_LAYER_TAR,
            Compression::Gzip { .. } => media_types::DOCKER_LAYER_GZIP,
            Compression::Zstd { .. } => media_types::DOCKER_LAYER_ZSTD,
        }
    }

    /// The layer media type, OCI or Docker.
    pub fn media_type(&self, oci: bool) -> &'static str {
        if oci {
            self.oci_media_type()
        } else {
            self.docker_media_type()
        }
    }

    /// A stable name for this choice (`none`, `gzip:6`, `zstd:3`), e.g. for cache keys.
    pub fn name(&self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip { level } => format!("gzip:{}", level.min(&9)),
            Compression::Zstd { level } => format!("zstd:{}", level.clamp(&1, &22)),
        }
    }
}

/// A streaming encoder for one [`Compression`].
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(Box<ParGzEncoder<W>>),
    Zstd(Box<zstd::stream::write::Encoder<'static, W>>),
}

impl<W: Write> Encoder<W> {
    /// An encoder using `threads` threads; the output is the same for any count.
    pub(crate) fn with_threads(
        compression: Compression,
        out: W,
        threads: usize,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip { level } => {
                Encoder::Gzip(Box::new(ParGzEncoder::new(out, level, threads)?))
            }
            Compression::Zstd { level } => {
                let mut z = zstd::stream::write::Encoder::new(out, level.clamp(1, 22))?;
                // Always in multithreaded mode (≥ 1 worker): libzstd then writes the same
                // frames for any worker count; 0 workers would be a different format path.
                z.multithread(threads.clamp(1, 256) as u32)?;
                // Fixed 4 MiB jobs: part of the output format (never derived from the machine),
                // and small enough to keep peak memory flat (libzstd's default is 4 × window).
                z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                z.include_checksum(true)?;
                z.include_contentsize(false)?;
                Encoder::Zstd(Box::new(z))
            }
        })
    }

    /// Finish the stream (trailer included) and return the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => (*g).finish(),
            Encoder::Zstd(z) => (*z).finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}
