//! Test helpers shared by the layer tests (`layer.rs`, `copy_layer_tests.rs`,
//! `sources_tests.rs`): a layer's tar entries read back, and context files written.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{Compression, LayerBlob};

/// One tar entry: path, type byte, mode, owner, link target, content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct E {
    pub(super) path: String,
    pub(super) kind: u8,
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) link: String,
    pub(super) data: Vec<u8>,
}

impl E {
    /// The content as text.
    pub(super) fn text(&self) -> &str {
        std::str::from_utf8(&self.data).unwrap()
    }
}

/// The tar archive of `blob` (gzip or plain), to read its entries.
pub(super) fn archive(blob: &LayerBlob) -> tar::Archive<Box<dyn Read>> {
    let f = fs::File::open(&blob.path).unwrap();
    let r: Box<dyn Read> = match blob.compression {
        Compression::Gzip { .. } => Box::new(flate2::read::GzDecoder::new(f)),
        _ => Box::new(f),
    };
    tar::Archive::new(r)
}

/// The entries of `blob`, each checked to carry mtime 0 (the tests' epoch) and no user or
/// group name.
pub(super) fn entries(blob: &LayerBlob) -> Vec<E> {
    archive(blob)
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert_eq!(h.mtime().unwrap(), 0);
            assert!(h.username_bytes().unwrap_or_default().is_empty());
            E {
                path: String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type().as_byte(),
                mode: h.mode().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link: e
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap())
                    .unwrap_or_default(),
                data,
            }
        })
        .collect()
}

/// The paths of `blob`'s entries, in order.
pub(super) fn paths(blob: &LayerBlob) -> Vec<String> {
    entries(blob).into_iter().map(|e| e.path).collect()
}

/// Write `data` to `root/rel` (parents made) with `mode`.
pub(super) fn write(root: &Path, rel: &str, data: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}
