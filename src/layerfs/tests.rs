//! `COPY --from` over hand-made layers: whiteouts, opaque directories, overrides, symlinks
//! anywhere on a source path, wildcards, hard links, `--exclude`, gzip / zstd / plain layers,
//! each remote layer fetched once per build (and reused from the cache directory), and hostile
//! tars refused with the layer and path — never a panic.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{FromSpec, LayerFsError, LayerStore, copy_from_layers};
use crate::blob::{Blob, BlobSource, ByteStream, FileBlob};
use crate::digest::Digest;
use crate::image::{Descriptor, media_types};
use crate::layers::{Compression, LayerOptions, Spool};

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

#[derive(Clone, Copy)]
enum Z {
    Gzip,
    Zstd,
    Plain,
}

fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
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
    b.into_inner().unwrap()
}

fn compress(tar: &[u8], z: Z) -> (Vec<u8>, &'static str) {
    match z {
        Z::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(tar).unwrap();
            (e.finish().unwrap(), media_types::OCI_LAYER_GZIP)
        }
        Z::Zstd => (
            zstd::stream::encode_all(tar, 3).unwrap(),
            media_types::OCI_LAYER_ZSTD,
        ),
        Z::Plain => (tar.to_vec(), media_types::OCI_LAYER_TAR),
    }
}

/// A blob file with `media_type` (local: read in place).
fn blob_file(dir: &Path, name: &str, bytes: &[u8], media_type: &str) -> Blob {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    Blob {
        descriptor: Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64),
        source: Arc::new(FileBlob { path }),
    }
}

fn layer_z(dir: &Path, name: &str, z: Z, entries: &[E<'_>]) -> Blob {
    let (bytes, mt) = compress(&tar_of(entries), z);
    blob_file(dir, name, &bytes, mt)
}

/// A "remote" blob: streamed from a file on each open (no local path), opens counted.
#[derive(Debug)]
struct Remote {
    path: PathBuf,
    opens: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl BlobSource for Remote {
    async fn open(&self) -> std::io::Result<ByteStream> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        FileBlob {
            path: self.path.clone(),
        }
        .open()
        .await
    }
}

fn remote(b: &Blob, opens: &Arc<AtomicUsize>) -> Blob {
    Blob {
        descriptor: b.descriptor.clone(),
        source: Arc::new(Remote {
            path: b.source.local_path().unwrap().to_path_buf(),
            opens: opens.clone(),
        }),
    }
}

/// path → (type byte, mode, uid, content or link target).
fn list(path: &Path) -> BTreeMap<String, (u8, u32, u64, String)> {
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

fn layers_z(dir: &Path, z: Z) -> Vec<Blob> {
    vec![
        layer_z(
            dir,
            "l0",
            z,
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
                E::File("usr/lib/libz.so.1", "Z1"),
                E::Link("usr/lib/libc.so.6", "libc-2.36.so"),
                E::File("usr/lib/libc-2.36.so", "LIBC"),
                E::Link("up", "../../../../usr"),
                E::Link("loop1", "loop2/x"),
                E::Link("loop2", "/loop1"),
                E::Dir("var/log"),
                E::File("var/log/a.log", "A"),
                E::File("var/log/keep.log", "K"),
                E::File("var/log/sub/b.log", "B"),
                E::File("var/log/sub/c.txt", "C"),
            ],
        ),
        layer_z(
            dir,
            "l1",
            z,
            &[
                E::File("etc/.wh.a", ""),
                E::File("opt/d/.wh..wh..opq", ""),
                E::File("opt/d/z", "z"),
                E::File("etc/b", "b1"),
            ],
        ),
    ]
}

fn spec(srcs: &[&str], dest: &str) -> FromSpec {
    FromSpec {
        srcs: srcs.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        ..FromSpec::default()
    }
}

fn opts() -> LayerOptions {
    LayerOptions {
        compression: Compression::Gzip { level: 6 },
        epoch: 0,
        threads: 0,
    }
}

fn run_with(
    dir: &Path,
    layers: &[Blob],
    store: &LayerStore,
    spec: &FromSpec,
) -> Result<PathBuf, LayerFsError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spool = Spool::new(dir.join("spool")).unwrap();
    copy_from_layers(
        rt.handle(),
        store,
        layers,
        "test",
        spec,
        super::Onto {
            fs: &mut crate::rootfs::RootFs::empty(),
            spool: &spool,
            opts: &opts(),
        },
    )
    .map(|b| b.path)
}

fn run_spec(dir: &Path, spec: &FromSpec) -> Result<PathBuf, LayerFsError> {
    let store = LayerStore::new(&dir.join("store")).unwrap();
    run_with(dir, &layers_z(dir, Z::Gzip), &store, spec)
}

fn run(dir: &Path, srcs: &[&str], dest: &str) -> Result<PathBuf, LayerFsError> {
    run_spec(dir, &spec(srcs, dest))
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
fn symlinks_anywhere_on_a_source_path_resolve_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    // `/lib` → `/usr/lib` in the middle, then `libc.so.6` → `libc-2.36.so` at the end.
    let out = run(tmp.path(), &["/lib/libc.so.6"], "/x/").unwrap();
    let got = list(&out);
    assert_eq!(got["x/libc.so.6"], (b'0', 0o644, 7, "LIBC".into()));
    // `..` past the root stops at the root: `/up` → `/usr`.
    let out = run(tmp.path(), &["/up/lib/libz.so"], "/z").unwrap();
    assert_eq!(list(&out)["z"].3, "Z");
    // `..` in the source path itself stops at the root too.
    let out = run(tmp.path(), &["/../../lib/./libz.so"], "/z").unwrap();
    assert_eq!(list(&out)["z"].3, "Z");
    // A loop fails with a clear error, not a hang.
    let e = run(tmp.path(), &["/loop1/f"], "/z").unwrap_err();
    assert!(matches!(e, LayerFsError::Uncopyable { .. }), "{e}");
    assert!(e.to_string().contains("symbolic links"), "{e}");
    // A missing path behind a symlink is "not found".
    let e = run(tmp.path(), &["/lib/nope"], "/z").unwrap_err();
    assert!(matches!(e, LayerFsError::NotFound { .. }), "{e}");
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
fn wildcards_match_in_the_merged_view_and_through_symlinks() {
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
    // A wildcard matching nothing copies nothing, not even the destination (BuildKit's
    // `AllowEmptyWildcard`: `docopy` returns before fsutil creates anything).
    let out = run(tmp.path(), &["/etc/*.conf"], "/w/").unwrap();
    assert!(list(&out).is_empty());
    // `/lib` is a symlink: its wildcard matches are in `/usr/lib`, each followed.
    let out = run(tmp.path(), &["/lib/*.so*"], "/y/").unwrap();
    let got = list(&out);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        [
            "y",
            "y/libc-2.36.so",
            "y/libc.so.6",
            "y/libz.so",
            "y/libz.so.1"
        ]
    );
    assert_eq!(got["y/libc.so.6"].3, "LIBC");
    // Implied directories match too (`var/log/sub` has no entry of its own).
    let out = run(tmp.path(), &["/var/log/s*"], "/s/").unwrap();
    assert_eq!(
        list(&out).keys().collect::<Vec<_>>(),
        ["s", "s/b.log", "s/c.txt"]
    );
}

#[test]
fn exclude_patterns_apply_below_each_source_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(&["/var/log", "/etc/b"], "/o/");
    s.exclude = vec!["*.log".into(), "etc*".into()];
    let out = run_spec(tmp.path(), &s).unwrap();
    assert_eq!(
        list(&out).keys().collect::<Vec<_>>(),
        ["o", "o/b", "o/sub", "o/sub/b.log", "o/sub/c.txt"],
        "relative to /var/log; a file source is never excluded"
    );
    s.exclude = vec!["**/*.log".into(), "!keep.log".into()];
    let out = run_spec(tmp.path(), &s).unwrap();
    assert_eq!(
        list(&out).keys().collect::<Vec<_>>(),
        ["o", "o/b", "o/keep.log", "o/sub", "o/sub/c.txt"]
    );
    s.exclude = vec!["sub".into(), "!sub/c.txt".into()];
    let out = run_spec(tmp.path(), &s).unwrap();
    assert_eq!(
        list(&out).keys().collect::<Vec<_>>(),
        ["o", "o/a.log", "o/b", "o/keep.log", "o/sub", "o/sub/c.txt"],
        "an excluded directory comes back for a re-included file"
    );
    s.exclude = vec!["[".into()];
    let e = run_spec(tmp.path(), &s).unwrap_err();
    assert!(matches!(e, LayerFsError::BadExclude { .. }), "{e}");
}

#[test]
fn zstd_gzip_and_plain_layers_read_alike() {
    let mut outputs = Vec::new();
    for z in [Z::Gzip, Z::Zstd, Z::Plain] {
        let tmp = tempfile::tempdir().unwrap();
        let store = LayerStore::new(&tmp.path().join("store")).unwrap();
        let out = run_with(
            tmp.path(),
            &layers_z(tmp.path(), z),
            &store,
            &spec(&["/etc", "/lib/libc.so.6", "/usr/hl"], "/o/"),
        )
        .unwrap();
        outputs.push(std::fs::read(out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "zstd source, same layer");
    assert_eq!(outputs[0], outputs[2], "plain source, same layer");

    // Bytes that contradict the media type are refused, naming both.
    let tmp = tempfile::tempdir().unwrap();
    let (gz, _) = compress(&tar_of(&[E::File("f", "x")]), Z::Gzip);
    let lying = blob_file(tmp.path(), "lying", &gz, media_types::OCI_LAYER_ZSTD);
    let store = LayerStore::new(&tmp.path().join("store")).unwrap();
    let e = run_with(tmp.path(), &[lying], &store, &spec(&["/f"], "/f")).unwrap_err();
    assert!(matches!(e, LayerFsError::CompressionMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("tar+zstd") && e.to_string().contains("gzip"),
        "{e}"
    );
    // An unknown media type is read by its magic bytes.
    let odd = blob_file(tmp.path(), "odd", &gz, "application/octet-stream");
    run_with(tmp.path(), &[odd], &store, &spec(&["/f"], "/f")).unwrap();
}

#[test]
fn each_remote_layer_is_fetched_once_and_reused_from_the_store_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let opens = Arc::new(AtomicUsize::new(0));
    let layers: Vec<Blob> = layers_z(tmp.path(), Z::Gzip)
        .iter()
        .map(|b| remote(b, &opens))
        .collect();
    let store_dir = tmp.path().join("cache");
    let store = LayerStore::new(&store_dir).unwrap();
    for srcs in [
        &["/etc/b"][..],
        &["/lib/libc.so.6"],
        &["/lib/*.so*", "/up/lib/libz.so"],
        &["/opt"],
    ] {
        run_with(tmp.path(), &layers, &store, &spec(srcs, "/o/")).unwrap();
    }
    assert_eq!(store.fetches(), 2, "two layers, each fetched once");
    assert_eq!(opens.load(Ordering::SeqCst), 2);

    // A later build with the same store directory fetches nothing.
    let store = LayerStore::new(&store_dir).unwrap();
    run_with(tmp.path(), &layers, &store, &spec(&["/etc/b"], "/o/")).unwrap();
    assert_eq!(store.fetches(), 0);
    // A damaged file is noticed and fetched again.
    let l0 = Spool::new(&store_dir)
        .unwrap()
        .blob_path(&layers[0].descriptor.digest);
    std::fs::write(&l0, b"garbage").unwrap();
    let store = LayerStore::new(&store_dir).unwrap();
    run_with(tmp.path(), &layers, &store, &spec(&["/etc/b"], "/o/")).unwrap();
    assert_eq!(store.fetches(), 1);

    // Local layers (a stage's own) are read in place, never copied into the store.
    let local_dir = tmp.path().join("local-store");
    let store = LayerStore::new(&local_dir).unwrap();
    run_with(
        tmp.path(),
        &layers_z(tmp.path(), Z::Gzip),
        &store,
        &spec(&["/etc/b"], "/o/"),
    )
    .unwrap();
    assert_eq!(store.fetches(), 0);
    assert_eq!(
        std::fs::read_dir(local_dir.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

// ---- hostile layers -------------------------------------------------------------------------

/// A one-entry tar whose header is edited by `f` (checksum fixed afterwards).
fn raw_tar(name: &str, data: &[u8], f: impl FnOnce(&mut tar::Header)) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_entry_type(tar::EntryType::Regular);
    f(&mut h);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX `x` header with `records`, then `rest`.
fn with_pax(records: &[(&str, &str)], rest: &[u8]) -> Vec<u8> {
    let mut body = String::new();
    for (k, v) in records {
        // "<len> <key>=<value>\n", the length counting its own digits.
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        body.push_str(&format!("{len} {k}={v}\n"));
    }
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(body.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(body.as_bytes());
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(rest);
    out
}

fn copy_raw(tar: &[u8], src: &str) -> Result<PathBuf, LayerFsError> {
    let tmp = tempfile::tempdir().unwrap();
    let l = blob_file(tmp.path(), "l", tar, media_types::OCI_LAYER_TAR);
    let store = LayerStore::new(&tmp.path().join("store")).unwrap();
    let r = run_with(tmp.path(), &[l], &store, &spec(&[src], "/o/"));
    std::mem::forget(tmp); // the output lives in it
    r
}

#[test]
fn owners_that_do_not_parse_or_fit_are_refused_with_layer_and_path() {
    let bad_uid = raw_tar("etc/passwd", b"x", |h| {
        h.as_old_mut().uid = *b"zz\0\0\0\0\0\0";
    });
    let e = copy_raw(&bad_uid, "/etc/passwd").unwrap_err();
    assert!(matches!(e, LayerFsError::Entry { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("etc/passwd") && msg.contains("uid") && msg.contains("sha256:"),
        "{msg}"
    );
    // Refused even when another path is copied: the whole layer is untrustworthy.
    copy_raw(&bad_uid, "/nothing").unwrap_err();

    // Blank fields read as 0, as Go's archive/tar reads them.
    let blank = raw_tar("f", b"x", |h| {
        h.as_old_mut().uid = [0; 8];
        h.as_old_mut().gid = *b"       \0";
    });
    assert_eq!(list(&copy_raw(&blank, "/f").unwrap())["o/f"].2, 0);
    let big = raw_tar("f", b"x", |h| h.set_uid(1 << 40));
    let e = copy_raw(&big, "/f").unwrap_err();
    assert!(e.to_string().contains("32 bits"), "{e}");

    let pax_bad = with_pax(&[("uid", "-1")], &raw_tar("f", b"x", |_| {}));
    let e = copy_raw(&pax_bad, "/f").unwrap_err();
    assert!(e.to_string().contains("PAX uid"), "{e}");
    let pax_big = with_pax(&[("gid", "4294967296")], &raw_tar("f", b"x", |_| {}));
    copy_raw(&pax_big, "/f").unwrap_err();
    let pax_ok = with_pax(&[("uid", "4294967295")], &raw_tar("f", b"x", |_| {}));
    let out = copy_raw(&pax_ok, "/f").unwrap();
    assert_eq!(list(&out)["o/f"].2, 4294967295);
}

#[test]
fn hostile_names_and_headers_are_refused() {
    let up = raw_tar("x", b"x", |h| {
        let name = b"../../etc/evil";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
    });
    let e = copy_raw(&up, "/etc/evil").unwrap_err();
    assert!(e.to_string().contains("'..'"), "{e}");
    let long = "d/".repeat(2100) + "f";
    let long_tar = with_pax(&[("path", &long)], &raw_tar("f", b"x", |_| {}));
    let e = copy_raw(&long_tar, "/f").unwrap_err();
    assert!(e.to_string().contains("4096-byte limit"), "{e}");
    // An extension header over the limit fails before it is buffered.
    let mut huge = tar::Header::new_ustar();
    huge.set_path("x").unwrap();
    huge.set_entry_type(tar::EntryType::XHeader);
    huge.set_size(1 << 40);
    huge.set_cksum();
    let e = copy_raw(huge.as_bytes(), "/f").unwrap_err();
    assert!(e.to_string().contains("extended header"), "{e}");
    // A truncated file's content is refused when copied.
    let mut short = raw_tar("f", b"0123456789", |_| {});
    short.truncate(512 + 5);
    copy_raw(&short, "/f").unwrap_err();
    // A non-UTF-8 name is fine until it is copied.
    let odd = raw_tar("dir/\u{1}", b"x", |h| {
        h.as_old_mut().name[4] = 0xff;
    });
    copy_raw(&odd, "/elsewhere").unwrap_err(); // not found
    let e = copy_raw(&odd, "/dir").unwrap_err();
    assert!(matches!(e, LayerFsError::Uncopyable { .. }), "{e}");
    assert!(e.to_string().contains("UTF-8"), "{e}");
}

/// Deterministic pseudo-random mutations of valid layers (headers, sizes, names, compressed
/// bytes): every outcome is `Ok` or a typed error — never a panic, a hang or a huge allocation.
#[test]
fn mutated_layers_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tar_of(&[
        E::Dir("etc"),
        E::File("etc/a", "hello"),
        E::Link("lib", "usr/lib"),
        E::File("usr/lib/x.so", "X"),
        E::Hard("etc/h", "etc/a"),
        E::File("etc/.wh.gone", ""),
    ]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spool = Spool::new(tmp.path().join("spool")).unwrap();
    let store = LayerStore::new(&tmp.path().join("store")).unwrap();
    let (mut ok, mut err) = (0, 0);
    for round in 0..400 {
        let z = [Z::Plain, Z::Gzip, Z::Zstd][round % 3];
        let mut t = base.clone();
        for _ in 0..1 + next() % 6 {
            let at = (next() as usize) % t.len();
            // Mostly header bytes (the first 512 of each entry), sometimes anywhere.
            let at = if next() % 4 == 0 {
                at
            } else {
                at / 512 * 512 + at % 160
            };
            t[at] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                2 => b'7',
                _ => next() as u8,
            };
            if next() % 3 == 0 {
                // Keep the checksum valid so the mutation reaches the field parsers.
                let start = at / 512 * 512;
                if let Some(block) = t.get_mut(start..start + 512) {
                    let mut h = tar::Header::new_old();
                    h.as_mut_bytes().copy_from_slice(block);
                    h.set_cksum();
                    block.copy_from_slice(h.as_bytes());
                }
            }
        }
        let (mut bytes, mt) = compress(&t, z);
        if round % 7 == 0 {
            let at = (next() as usize) % bytes.len();
            bytes[at] ^= 0x5a; // damage the compressed stream itself
        }
        let l = blob_file(tmp.path(), &format!("m{round}"), &bytes, mt);
        let s = spec(&["/etc", "/lib/x.so", "/etc/*"], "/o/");
        match copy_from_layers(
            rt.handle(),
            &store,
            &[l],
            "fuzz",
            &s,
            super::Onto {
                fs: &mut crate::rootfs::RootFs::empty(),
                spool: &spool,
                opts: &opts(),
            },
        ) {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}

// ---- the stage's filesystem (rootfs) read from a base's layers -------------------------------

#[test]
fn a_base_is_indexed_once_and_its_index_reused_without_the_layers() {
    use crate::rootfs::{Kind, RootFs, index::apply_layers, users::resolve_owner};
    let tmp = tempfile::tempdir().unwrap();
    let opens = Arc::new(AtomicUsize::new(0));
    let bottom = layer_z(
        tmp.path(),
        "l0",
        Z::Zstd,
        &[
            E::Dir("etc/"),
            E::File(
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
            ),
            E::Dir("usr/"),
            E::Dir("usr/bin/"),
            E::Link("bin", "usr/bin"),
            E::Dir("gone/"),
            E::File("gone/x", "x"),
        ],
    );
    let top = layer_z(
        tmp.path(),
        "l1",
        Z::Gzip,
        &[
            E::File(".wh.gone", ""),
            E::Hard("usr/bin/sh2", "etc/passwd"),
        ],
    );
    let layers = [remote(&bottom, &opens), remote(&top, &opens)];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let index = tmp.path().join("cache/rootfs");
    let read = |store_dir: &str| {
        let store = LayerStore::new(&tmp.path().join(store_dir)).unwrap();
        let mut fs = RootFs::empty();
        apply_layers(&mut fs, rt.handle(), &store, &layers, "base", Some(&index)).unwrap();
        (fs, store.fetches())
    };
    let (first, fetched) = read("store-a");
    assert_eq!(fetched, 2);
    assert!(first.get(&["gone"]).is_none(), "whiteout applied");
    assert_eq!(
        first.get(&["bin"]).unwrap().kind,
        Kind::Symlink("usr/bin".into())
    );
    assert_eq!(
        first.resolve("/bin/sh2", true).unwrap().comps,
        ["usr", "bin", "sh2"]
    );
    assert_eq!(resolve_owner(&first, "app").unwrap(), (1000, 1001));
    // A later build (another store: nothing local) takes everything from the index.
    let (again, fetched) = read("store-b");
    assert_eq!(fetched, 0, "no layer read");
    assert_eq!(opens.load(Ordering::SeqCst), 2);
    assert_eq!(again.len(), first.len());
    assert_eq!(resolve_owner(&again, "app").unwrap(), (1000, 1001));
    // A damaged index is read again from the layers.
    for f in std::fs::read_dir(&index).unwrap() {
        let f = f.unwrap().path();
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, &text[..text.len() / 2]).unwrap();
    }
    let (fixed, fetched) = read("store-c");
    assert_eq!(fetched, 2);
    assert_eq!(fixed.len(), first.len());
}

#[test]
fn parents_keep_source_paths_below_the_pivot_and_empty_wildcards_copy_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(
        &[
            "/var/log/./sub/b.log",
            "/usr/lib/libz.so",
            "/var/./log/*.log",
        ],
        "/p/",
    );
    s.parents = true;
    let got = list(&run_spec(tmp.path(), &s).unwrap());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        [
            "p",
            "p/log",
            "p/log/a.log",
            "p/log/keep.log",
            "p/sub",
            "p/sub/b.log",
            "p/usr",
            "p/usr/lib",
            "p/usr/lib/libz.so"
        ]
    );
    // The directories above a match keep their own metadata (var/log is 0750 7:8).
    assert_eq!((got["p/log"].1, got["p/log"].2), (0o750, 7));
    // A literal path must exist (BuildKit's RequiredPaths).
    let mut s = spec(&["/var/./nope.log"], "/p/");
    s.parents = true;
    assert!(matches!(
        run_spec(tmp.path(), &s),
        Err(LayerFsError::NotFound { .. })
    ));
    // A wildcard matching nothing is no error when another source matches.
    let got = list(&run(tmp.path(), &["/etc/*.conf", "/etc/b"], "/w/").unwrap());
    assert_eq!(got.keys().collect::<Vec<_>>(), ["w", "w/b"]);
}
