//! Layer compression: the [`Compression`] choice, its media types, and the streaming encoder
//! that sits between the tar writer and the spool file.

use std::io::{self, Write};

use crate::image::media_types;

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
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: 6 }
    }
}

impl Compression {
    /// The OCI layer media type for this compression.
    pub fn oci_media_type(&self) -> &'static str {
        match self {
            Compression::None => media_types::OCI_LAYER_TAR,
            Compression::Gzip { .. } => media_types::OCI_LAYER_GZIP,
        }
    }

    /// The Docker (manifest v2 schema 2) layer media type for this compression.
    pub fn docker_media_type(&self) -> &'static str {
        match self {
            Compression::None => media_types::DOCKER_LAYER_TAR,
            Compression::Gzip { .. } => media_types::DOCKER_LAYER_GZIP,
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
}

/// A streaming encoder for one [`Compression`].
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(Box<flate2::write::GzEncoder<W>>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(compression: Compression, out: W) -> Self {
        match compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip { level } => Encoder::Gzip(Box::new(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::new(level.min(9))),
            )),
        }
    }

    /// Finish the stream (trailer included) and return the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => (*g).finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
        }
    }
}
