//! `COPY --from` over hand-made layers: whiteouts, opaque directories, overrides, symlinked
//! sources and hard links.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use super::{FromSpec, LayerFsError, copy_from_layers};
use crate::blob::{Blob, FileBlob};
use crate::build::{Compression, LayerOptions, Spool};
use crate::digest::Digest;
use crate::image::{Descriptor, media_types};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

fn layer(dir: &std::path::Path, name: &str, entries: &[E<'_>]) -> Blob {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_uid(7);
        h.set_gid(8);
        let (path, data): (&str, &[u8]) = match e {
            E::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o750);
                (p, b"")
            }
            E::File(p, d) => (p, d.as_bytes()),
            E::Link(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name(t).unwrap();
                (p, b"")
            }
            E::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_link_name(t).unwrap();
                (p, b"")
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }
    let bytes = b.into_inner().unwrap().finish().unwrap();
    let path = dir.join(name);
    std::fs::write(&path, &bytes).unwrap();
    Blob {
        descriptor: Descriptor::new(
            media_types::OCI_LAYER_GZIP,
            Digest::of(&bytes),
            bytes.len() as u64,
        ),
        source: Arc::new(FileBlob { path }),
    }
}

/// path → (type byte, mode, uid, content or link target).
fn list(path: &std::path::Path) -> BTreeMap<String, (u8, u32, u64, String)> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(path).unwrap(),
    ));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let h = e.header().clone();
            let mut data = String::new();
            e.read_to_string(&mut data).unwrap();
            if let Some(l) = e.link_name_bytes() {
                data = String::from_utf8(l.into_owned()).unwrap();
            }
            (
                name.trim_end_matches('/').to_string(),
                (
                    h.entry_type().as_byte(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    data,
                ),
            )
        })
        .collect()
}

fn layers(dir: &std::path::Path) -> Vec<Blob> {
    vec![
        layer(
            dir,
            "l0",
            &[
                E::Dir("etc"),
                E::File("etc/a", "a0"),
                E::File("etc/b", "b0"),
                E::Dir("opt/d"),
                E::File("opt/d/x", "x"),
                E::File("opt/d/y", "y"),
                E::File("bin/real", "REAL"),
                E::Link("bin/link", "real"),
                E::File("usr/hard", "H"),
                E::Hard("usr/hl", "usr/hard"),
                E::Link("lib", "/usr/lib"),
                E::File("usr/lib/libz.so", "Z"),
            ],
        ),
        layer(
            dir,
            "l1",
            &[
                E::File("etc/.wh.a", ""),
                E::File("opt/d/.wh..wh..opq", ""),
                E::File("opt/d/z", "z"),
                E::File("etc/b", "b1"),
            ],
        ),
    ]
}

fn run(
    dir: &std::path::Path,
    srcs: &[&str],
    dest: &str,
) -> Result<std::path::PathBuf, LayerFsError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spool = Spool::new(dir.join("spool")).unwrap();
    let spec = FromSpec {
        srcs: srcs.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        chown: None,
        chmod: None,
    };
    let opts = LayerOptions {
        compression: Compression::Gzip { level: 6 },
        epoch: 0,
    };
    copy_from_layers(rt.handle(), &layers(dir), "test", &spec, &spool, &opts).map(|b| b.path)
}

#[test]
fn whiteouts_opaque_dirs_and_overrides_are_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["/etc", "/opt", "/bin/link", "/usr/hl"],
        "/out/",
    )
    .unwrap();
    let got = list(&out);
    let names: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["out", "out/b", "out/d", "out/d/z", "out/hl", "out/link"]
    );
    assert_eq!(got["out/b"].3, "b1", "the upper layer wins");
    assert_eq!(got["out/d/z"].3, "z");
    assert_eq!(
        got["out/link"],
        (b'0', 0o644, 7, "REAL".into()),
        "a source symlink is followed"
    );
    assert_eq!(
        got["out/hl"].3, "H",
        "a hard link gets its target's content"
    );
    assert_eq!(got["out/d"].1, 0o750, "modes and owners are kept");
}

#[test]
fn whited_out_paths_are_not_found_and_symlinked_dirs_are_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let e = run(tmp.path(), &["/etc/a"], "/a").unwrap_err();
    assert!(matches!(e, LayerFsError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("/etc/a not found"), "{e}");
    let e = run(tmp.path(), &["/opt/d/x"], "/x").unwrap_err();
    assert!(matches!(e, LayerFsError::NotFound { .. }), "{e}");
    let out = run(tmp.path(), &["/lib"], "/l/").unwrap();
    let got = list(&out);
    assert_eq!(got["l/libz.so"].3, "Z", "{got:?}");
    let e = run(tmp.path(), &["/etc/b", "/bin/real"], "/file").unwrap_err();
    assert!(matches!(e, LayerFsError::DestNotDir { .. }), "{e}");
}

#[test]
fn a_file_to_a_file_and_the_digest_is_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run(tmp.path(), &["/etc/b"], "/renamed").unwrap();
    let got = list(&a);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["renamed"]);
    let first = std::fs::read(&a).unwrap();
    let b = run(tmp.path(), &["etc/b"], "/renamed").unwrap();
    assert_eq!(std::fs::read(&b).unwrap(), first);
}

#[test]
fn wildcards_match_in_the_merged_view() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), &["/etc/*"], "/w/").unwrap();
    let got = list(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["w", "w/b"],
        "etc/a is whited out"
    );
    assert_eq!(got["w/b"].3, "b1");
    let out = run(tmp.path(), &["/opt/d/?"], "/o/").unwrap();
    assert_eq!(list(&out).keys().collect::<Vec<_>>(), ["o", "o/z"]);
    let e = run(tmp.path(), &["/etc/*.conf"], "/w/").unwrap_err();
    assert!(matches!(e, LayerFsError::NotFound { .. }), "{e}");
}
