//! A local layer file as a blocking `Read` of its uncompressed tar, behind the shared
//! [`TarGuard`](crate::layers::tar_guard::TarGuard). The compression is chosen by the layer's
//! media type (`+gzip`, `+zstd`, plain `tar`, OCI and Docker spellings) and confirmed by the
//! file's magic bytes — a layer whose bytes contradict its media type is refused, naming both.
//! A media type ocipush does not know is read by its magic bytes alone, as containerd's
//! `compression.DecompressStream` does. Every decoder streams: gzip members (`MultiGzDecoder`)
//! and zstd frames (libzstd's streaming decoder, its default 128 MiB window limit kept so a
//! hostile frame cannot make it allocate more) are decoded as the tar is read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use super::LayerFsError;
use crate::digest::Digest;
use crate::layers::tar_guard::TarGuard;

/// How a layer's tar is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Tar,
    Gzip,
    Zstd,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Tar => "an uncompressed tar",
            Codec::Gzip => "gzip-compressed",
            Codec::Zstd => "zstd-compressed",
        }
    }
}

/// What a media type says about compression: `Ok(None)` when it does not say (an unknown type),
/// `Err(what)` for a compression ocipush cannot read.
pub(crate) fn declared(media_type: &str) -> Result<Option<Codec>, String> {
    // OCI: `…layer.v1.tar[+gzip|+zstd]` (and the non-distributable variants); Docker:
    // `…rootfs.diff.tar[.gzip|.zstd]` and `…rootfs.foreign.diff.tar.gzip`.
    let mt = media_type.trim();
    if mt.ends_with("+gzip") || mt.ends_with(".tar.gzip") {
        Ok(Some(Codec::Gzip))
    } else if mt.ends_with("+zstd") || mt.ends_with(".tar.zstd") {
        Ok(Some(Codec::Zstd))
    } else if mt.ends_with(".tar") {
        Ok(Some(Codec::Tar))
    } else if let Some((_, suffix)) = mt.rsplit_once('+').filter(|_| mt.contains(".tar+")) {
        Err(format!("{suffix}-compressed ({mt})"))
    } else {
        Ok(None)
    }
}

/// What the first bytes of a layer say.
pub(crate) fn sniff(head: &[u8]) -> Codec {
    if head.starts_with(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else {
        Codec::Tar
    }
}

/// The uncompressed, guarded tar of a layer.
pub(crate) type LayerTar = TarGuard<Box<dyn Read + Send>>;

/// Open the local layer file `path` (digest `layer` of `image`, declared `media_type`).
pub(crate) fn open(
    path: &Path,
    media_type: &str,
    image: &str,
    layer: &Digest,
) -> Result<LayerTar, LayerFsError> {
    let read_err = |source: io::Error| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.clone(),
        source,
    };
    let file = File::open(path).map_err(|e| {
        read_err(io::Error::new(
            e.kind(),
            format!("cannot open {}: {e}", path.display()),
        ))
    })?;
    let mut raw = BufReader::with_capacity(256 * 1024, file);
    let head = raw.fill_buf().map_err(read_err)?;
    let found = sniff(head);
    let declared = declared(media_type).map_err(|what| LayerFsError::Unsupported {
        image: image.to_string(),
        layer: layer.clone(),
        what,
    })?;
    if let Some(declared) = declared
        && declared != found
        // An empty blob is an empty tar whatever it declares.
        && !head.is_empty()
    {
        return Err(LayerFsError::CompressionMismatch {
            image: image.to_string(),
            layer: layer.clone(),
            media_type: media_type.to_string(),
            found: found.name(),
        });
    }
    let inner: Box<dyn Read + Send> = match found {
        Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Codec::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(raw).map_err(read_err)?),
        Codec::Tar => Box::new(raw),
    };
    Ok(TarGuard::new(inner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::media_types::*;

    #[test]
    fn media_types_and_magic() {
        for (mt, codec) in [
            (OCI_LAYER_TAR, Codec::Tar),
            (OCI_LAYER_GZIP, Codec::Gzip),
            (OCI_LAYER_ZSTD, Codec::Zstd),
            (DOCKER_LAYER_TAR, Codec::Tar),
            (DOCKER_LAYER_GZIP, Codec::Gzip),
            (DOCKER_LAYER_ZSTD, Codec::Zstd),
            (DOCKER_FOREIGN_LAYER, Codec::Gzip),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Codec::Gzip,
            ),
        ] {
            assert_eq!(declared(mt), Ok(Some(codec)), "{mt}");
        }
        assert_eq!(declared("application/octet-stream"), Ok(None));
        assert!(
            declared("application/vnd.oci.image.layer.v1.tar+bzip2")
                .unwrap_err()
                .contains("bzip2")
        );
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Codec::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Codec::Zstd);
        assert_eq!(sniff(b"etc/\0\0\0"), Codec::Tar);
    }
}
