//! A layer blob as a blocking `Read` of its uncompressed tar: the async byte stream is pulled
//! chunk by chunk on the runtime (so this runs on a blocking thread), and decompressed by
//! content (gzip by its magic bytes, else plain tar; zstd is refused).

use std::io::{self, BufRead, BufReader, Read};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::LayerFsError;
use crate::blob::{Blob, ByteStream};

/// Pulls an async byte stream synchronously.
struct StreamRead {
    rt: Handle,
    stream: ByteStream,
    cur: Bytes,
}

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rt.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// The uncompressed tar of `layer`, and the raw stream under it (to drain it to its end, so
/// the source verifies the digest).
pub(crate) struct LayerReader {
    inner: Box<dyn Read + Send>,
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl LayerReader {
    /// Read whatever is left, so a verifying source checks size and digest.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        io::copy(&mut self.inner, &mut io::sink()).map(|_| ())
    }
}

/// Open `layer` for reading its tar.
pub(crate) fn open(rt: &Handle, layer: &Blob, image: &str) -> Result<LayerReader, LayerFsError> {
    let read_err = |source| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.descriptor.digest.clone(),
        source,
    };
    let stream = rt.block_on(layer.source.open()).map_err(read_err)?;
    let mut raw = BufReader::with_capacity(
        256 * 1024,
        StreamRead {
            rt: rt.clone(),
            stream,
            cur: Bytes::new(),
        },
    );
    let head = raw.fill_buf().map_err(read_err)?;
    let inner: Box<dyn Read + Send> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(raw))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(LayerFsError::Unsupported {
            image: image.to_string(),
            layer: layer.descriptor.digest.clone(),
            what: "zstd-compressed".into(),
        });
    } else {
        Box::new(raw)
    };
    Ok(LayerReader { inner })
}
