//! Snapshots and upper directories in overlay format, both ways, on real files (as root:
//! whiteouts are device nodes and opaque markers `trusted.` attributes).

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use super::snapshot::{self, is_opaque, whiteout};
use super::upper::write_upper;
use crate::layers::{Compression, LayerOptions, LayerWriter, Spool};
use crate::rootfs::{Kind, Meta, RootFs};

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, t, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*t);
        h.set_mode(if *t == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_uid(7);
        h.set_gid(8);
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        // The name written raw: the builder would refuse `..`, which the test needs.
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn layers_unpack_into_overlay_format() {
    let d = tempfile::tempdir().unwrap();
    use tar::EntryType as T;
    let t = tar_of(&[
        ("a/", T::Directory, b"", ""),
        ("a/.wh..wh..opq", T::Regular, b"", ""),
        ("a/x", T::Regular, b"x", ""),
        ("a/y", T::Link, b"", "a/x"),
        (".wh.gone", T::Regular, b"", ""),
        ("s", T::Symlink, b"", "a/x"),
    ]);
    snapshot::unpack(&mut &t[..], d.path(), None).unwrap();
    assert!(is_opaque(&d.path().join("a")).unwrap());
    let gone = std::fs::symlink_metadata(d.path().join("gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(std::fs::read(d.path().join("a/y")).unwrap(), b"x");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(d.path().join("a/x")).unwrap().uid(), 7);
    assert_eq!(
        std::fs::read_link(d.path().join("s")).unwrap(),
        Path::new("a/x")
    );
    // A path leaving the root is refused.
    let bad = tar_of(&[("../evil", T::Regular, b"x", "")]);
    let e = tempfile::tempdir().unwrap();
    assert!(snapshot::unpack(&mut &bad[..], e.path(), None).is_err());
}

fn list(path: &Path) -> Vec<(String, u8, String)> {
    let mut raw = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    tar::Archive::new(&raw[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap())
                .unwrap_or_default();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                e.header().entry_type().as_byte(),
                link,
            )
        })
        .collect()
}

#[test]
fn upper_directory_becomes_a_sorted_layer_with_whiteouts() {
    let up = tempfile::tempdir().unwrap();
    let u = up.path();
    std::fs::create_dir_all(u.join("etc/apk")).unwrap();
    std::fs::write(u.join("etc/apk/b"), "b").unwrap();
    std::fs::hard_link(u.join("etc/apk/b"), u.join("etc/apk/a")).unwrap();
    std::os::unix::fs::symlink("b", u.join("etc/apk/c")).unwrap();
    std::fs::write(u.join("etc/passwd"), "app:x:1000:1000::/home/app:/bin/sh\n").unwrap();
    whiteout(&u.join("etc/motd")).unwrap();
    let c = std::ffi::CString::new(u.join("etc/apk").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            snapshot::OPAQUE_XATTR.as_ptr().cast(),
            b"y".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());

    let mut fs = RootFs::empty();
    fs.begin_layer();
    for (p, kind) in [
        ("etc", Kind::Dir),
        ("etc/motd", Kind::File),
        ("etc/apk", Kind::Dir),
    ] {
        let comps: Vec<&str> = p.split('/').collect();
        fs.set(
            &comps,
            Meta {
                kind: kind.clone(),
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            None,
        );
    }
    fs.set(
        &["etc", "apk", "old"],
        Meta {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
        None,
    );

    let sp = tempfile::tempdir().unwrap();
    let spool = Spool::new(sp.path()).unwrap();
    let opts = LayerOptions {
        compression: Compression::None,
        epoch: 5,
        threads: 0,
    };
    let mut w = LayerWriter::new(&spool, &opts).unwrap();
    write_upper(u, &mut w, &mut fs).unwrap();
    let blob = w.finish().unwrap();
    let got = list(&blob.path);
    let want: Vec<(String, u8, String)> = [
        ("etc/", b'5', ""),
        ("etc/apk/", b'5', ""),
        ("etc/apk/.wh..wh..opq", b'0', ""),
        ("etc/apk/a", b'0', ""),
        ("etc/apk/b", b'1', "etc/apk/a"),
        ("etc/apk/c", b'2', "b"),
        ("etc/.wh.motd", b'0', ""),
        ("etc/passwd", b'0', ""),
    ]
    .iter()
    .map(|(p, t, l)| (p.to_string(), *t, l.to_string()))
    .collect();
    assert_eq!(got, want);
    // The stage's filesystem saw the same: deletions, the opaque directory, the user file.
    assert!(fs.get(&["etc", "motd"]).is_none());
    assert!(fs.get(&["etc", "apk", "old"]).is_none());
    assert!(fs.get(&["etc", "apk", "a"]).is_some());
    assert_eq!(
        crate::rootfs::users::resolve_owner(&fs, "app").unwrap(),
        (1000, 1000)
    );
    // Deterministic: the same directory gives the same layer.
    let mut w = LayerWriter::new(&spool, &opts).unwrap();
    write_upper(u, &mut w, &mut RootFs::empty()).unwrap();
    assert_eq!(w.finish().unwrap().diff_id, blob.diff_id);
}

#[test]
fn snapshots_are_made_once_per_boot() {
    let d = tempfile::tempdir().unwrap();
    let s = snapshot::Snapshots::open(d.path()).unwrap();
    let chain = crate::digest::Digest::of(b"layer");
    let fill = |text: &'static str| {
        move |dir: &Path| {
            std::fs::write(dir.join("f"), text).unwrap();
            Ok(())
        }
    };
    s.ensure(&chain, fill("1")).unwrap();
    // There already: not made again.
    s.ensure(&chain, fill("2")).unwrap();
    let snap = d.path().join(chain.hex());
    assert_eq!(std::fs::read_to_string(snap.join("diff/f")).unwrap(), "1");
    // Written in another boot: maybe incomplete after a crash, so made again.
    std::fs::write(snap.join("boot-id"), "an-earlier-boot").unwrap();
    s.ensure(&chain, fill("3")).unwrap();
    assert_eq!(std::fs::read_to_string(snap.join("diff/f")).unwrap(), "3");
    // Nothing temporary left behind.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from(chain.hex())]);
}
