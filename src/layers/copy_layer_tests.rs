//! Tests of COPY/ADD layers: source resolution, destinations, .dockerignore, ownership and
//! modes, symlinks, escapes, determinism, archive extraction.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::layers::compress::Compression;
use crate::layers::tar_writer::{EntryType, TarHeader, TarWriter};
use crate::layers::test_entries::{entries, paths, write};
use crate::rootfs::RootFs;

struct Fixture {
    _tmp: tempfile::TempDir,
    ctx_dir: std::path::PathBuf,
    spool: Spool,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ctx_dir = tmp.path().join("ctx");
    fs::create_dir(&ctx_dir).unwrap();
    let spool = Spool::new(tmp.path().join("spool")).unwrap();
    Fixture {
        _tmp: tmp,
        ctx_dir,
        spool,
    }
}

fn spec(srcs: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        srcs: srcs.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        ..Default::default()
    }
}

fn build(f: &Fixture, s: &CopySpec) -> Result<LayerBlob, BuildError> {
    let ctx = Context::open(&f.ctx_dir)?;
    build_copy_layer(
        &ctx,
        s,
        &f.spool,
        &LayerOptions {
            compression: Compression::Gzip { level: 6 },
            epoch: 0,
            threads: 0,
        },
    )
}

fn sample(root: &Path) {
    write(root, "a.txt", "A", 0o644);
    write(root, "b.txt", "B", 0o600);
    write(root, "c.md", "C", 0o644);
    write(root, "dir/x.txt", "X", 0o755);
    write(root, "dir/sub/y.txt", "Y", 0o644);
    fs::set_permissions(root.join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
}

#[test]
fn file_into_directory_and_renamed() {
    let f = fixture();
    sample(&f.ctx_dir);
    let blob = build(&f, &spec(&["a.txt"], "/app/")).unwrap();
    let es = entries(&blob);
    assert_eq!(paths(&blob), ["app/", "app/a.txt"]);
    assert_eq!((es[0].mode, es[0].uid), (0o755, 0));
    assert_eq!((es[1].mode, es[1].data.as_slice()), (0o644, &b"A"[..]));

    let blob = build(&f, &spec(&["a.txt"], "/app/renamed")).unwrap();
    assert_eq!(paths(&blob), ["app/", "app/renamed"]);
    let blob = build(&f, &spec(&["/b.txt"], "/")).unwrap();
    assert_eq!(paths(&blob), ["b.txt"]);
    let blob = build(&f, &spec(&["./a.txt"], "/app/.")).unwrap();
    assert_eq!(paths(&blob), ["app/", "app/a.txt"]);
}

#[test]
fn directory_copies_its_contents() {
    let f = fixture();
    sample(&f.ctx_dir);
    let blob = build(&f, &spec(&["dir"], "/app")).unwrap();
    let es = entries(&blob);
    assert_eq!(
        paths(&blob),
        ["app/", "app/sub/", "app/sub/y.txt", "app/x.txt"]
    );
    // A missing destination is created by fsutil's MkdirAll (`prepareTargetDir`), 0755,
    // not with the source directory's 0750; what is below it keeps the source's modes.
    assert_eq!(es[0].mode, 0o755);
    assert_eq!(es[3].mode, 0o755);
    let blob = build(&f, &spec(&["."], "/")).unwrap();
    assert_eq!(
        paths(&blob),
        [
            "a.txt",
            "b.txt",
            "c.md",
            "dir/",
            "dir/sub/",
            "dir/sub/y.txt",
            "dir/x.txt"
        ]
    );
}

#[test]
fn wildcards_and_multiple_sources() {
    let f = fixture();
    sample(&f.ctx_dir);
    let blob = build(&f, &spec(&["*.txt"], "/app/")).unwrap();
    assert_eq!(paths(&blob), ["app/", "app/a.txt", "app/b.txt"]);
    let blob = build(&f, &spec(&["d*/s?b/*.txt", "[c]*"], "/o/")).unwrap();
    assert_eq!(paths(&blob), ["o/", "o/c.md", "o/y.txt"]);
    let blob = build(&f, &spec(&["a.*"], "/single")).unwrap();
    assert_eq!(paths(&blob), ["single"]);
    assert!(matches!(
        build(&f, &spec(&["*.txt"], "/app")),
        Err(BuildError::DestNotDir { .. })
    ));
    assert!(matches!(
        build(&f, &spec(&["a.txt", "b.txt"], "/app")),
        Err(BuildError::DestNotDir { .. })
    ));
    // A wildcard matching nothing is no error (BuildKit's AllowEmptyWildcard); when every
    // source matches nothing, the layer is empty (not even the destination is created).
    let blob = build(&f, &spec(&["a.txt", "*.none"], "/app/")).unwrap();
    assert_eq!(paths(&blob), ["app/", "app/a.txt"]);
    let blob = build(&f, &spec(&["*.none", "n?ne"], "/app/")).unwrap();
    assert!(paths(&blob).is_empty());
    // A literal missing source still is an error.
    assert!(matches!(
        build(&f, &spec(&["*.txt", "none.json"], "/app/")),
        Err(BuildError::SourceNotFound { .. })
    ));
    assert!(matches!(
        build(&f, &spec(&["[a"], "/app/")),
        Err(BuildError::BadSourcePattern { .. })
    ));
}

#[test]
fn missing_source_is_named() {
    let f = fixture();
    sample(&f.ctx_dir);
    let e = build(&f, &spec(&["nope"], "/app/")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("COPY source 'nope' not found in build context "),
        "{msg}"
    );
    assert!(msg.contains(&fs::canonicalize(&f.ctx_dir).unwrap().display().to_string()));
    let e = build(&f, &spec(&["a.txt/x"], "/app/")).unwrap_err();
    assert!(matches!(e, BuildError::SourceNotFound { .. }));
}

#[test]
fn dockerignore_hides_files() {
    let f = fixture();
    sample(&f.ctx_dir);
    write(&f.ctx_dir, "secret/keep", "K", 0o644);
    write(&f.ctx_dir, "secret/drop", "D", 0o644);
    write(
        &f.ctx_dir,
        ".dockerignore",
        "*.md\nsecret\n!secret/keep\ndir/sub\n",
        0o644,
    );
    let blob = build(&f, &spec(&["."], "/app/")).unwrap();
    assert_eq!(
        paths(&blob),
        [
            "app/",
            "app/.dockerignore",
            "app/a.txt",
            "app/b.txt",
            "app/dir/",
            "app/dir/x.txt",
            "app/secret/",
            "app/secret/keep"
        ]
    );
    assert!(matches!(
        build(&f, &spec(&["c.md"], "/")),
        Err(BuildError::SourceNotFound { .. })
    ));
    assert!(matches!(
        build(&f, &spec(&["dir/sub/y.txt"], "/")),
        Err(BuildError::SourceNotFound { .. })
    ));
    assert!(paths(&build(&f, &spec(&["*.md"], "/x/")).unwrap()).is_empty());
    let blob = build(&f, &spec(&["secret"], "/s/")).unwrap();
    assert_eq!(paths(&blob), ["s/", "s/keep"]);
}

#[test]
fn chown_and_chmod_apply_to_copied_entries() {
    let f = fixture();
    sample(&f.ctx_dir);
    symlink("x.txt", f.ctx_dir.join("dir/l")).unwrap();
    let mut s = spec(&["dir"], "/srv/app");
    s.chown = Some((1000, 2000));
    s.chmod = Some(Chmod::Octal(0o640));
    let es = entries(&build(&f, &s).unwrap());
    let by = |p: &str| es.iter().find(|e| e.path == p).unwrap().clone();
    // Directories the copy creates take the numeric --chmod and the --chown owner (fsutil
    // `Copy`: `MkdirAll(ensureDstPath, *ci.Mode, ci.Chown, …)`).
    assert_eq!((by("srv/").mode, by("srv/").uid), (0o640, 1000));
    for p in [
        "srv/app/",
        "srv/app/x.txt",
        "srv/app/sub/",
        "srv/app/sub/y.txt",
    ] {
        let e = by(p);
        assert_eq!((e.mode, e.uid, e.gid), (0o640, 1000, 2000), "{p}");
    }
    let l = by("srv/app/l");
    assert_eq!((l.kind, l.link.as_str(), l.uid), (b'2', "x.txt", 1000));
}

#[test]
fn symlinks_kept_inside_dirs_followed_at_top_level() {
    let f = fixture();
    sample(&f.ctx_dir);
    symlink("../a.txt", f.ctx_dir.join("dir/up")).unwrap();
    symlink("/etc/passwd", f.ctx_dir.join("dir/abs")).unwrap();
    symlink("a.txt", f.ctx_dir.join("link")).unwrap();
    symlink("dir", f.ctx_dir.join("dirlink")).unwrap();
    let es = entries(&build(&f, &spec(&["dir"], "/d/")).unwrap());
    let abs = es.iter().find(|e| e.path == "d/abs").unwrap();
    assert_eq!((abs.kind, abs.link.as_str()), (b'2', "/etc/passwd"));
    assert!(es.iter().any(|e| e.path == "d/up" && e.link == "../a.txt"));

    let es = entries(&build(&f, &spec(&["link"], "/out/")).unwrap());
    assert_eq!(es[1].path, "out/link");
    assert_eq!((es[1].kind, es[1].data.as_slice()), (b'0', &b"A"[..]));
    let blob = build(&f, &spec(&["dirlink"], "/dl")).unwrap();
    assert!(paths(&blob).contains(&"dl/x.txt".to_string()));
    let blob = build(&f, &spec(&["dir/up"], "/u")).unwrap();
    assert_eq!(entries(&blob)[0].data, b"A");
}

#[test]
fn escapes_are_refused() {
    let f = fixture();
    sample(&f.ctx_dir);
    fs::write(f.ctx_dir.parent().unwrap().join("outside"), "O").unwrap();
    symlink("../outside", f.ctx_dir.join("evil")).unwrap();
    symlink("/etc/passwd", f.ctx_dir.join("abs")).unwrap();
    symlink("sub/../../..", f.ctx_dir.join("dir/deep")).unwrap();
    for src in [
        "../outside",
        "dir/../../outside",
        "evil",
        "abs",
        "dir/deep/etc",
        "e*",
    ] {
        let e = build(&f, &spec(&[src], "/x/")).unwrap_err();
        assert!(matches!(e, BuildError::OutsideContext { .. }), "{src}: {e}");
        assert!(e.to_string().contains(&format!("'{src}'")), "{e}");
    }
    symlink("loop2", f.ctx_dir.join("loop1")).unwrap();
    symlink("loop1", f.ctx_dir.join("loop2")).unwrap();
    assert!(matches!(
        build(&f, &spec(&["loop1"], "/x/")),
        Err(BuildError::SymlinkLoop { .. })
    ));
    // An absolute symlink into the context itself is followed.
    let canon = fs::canonicalize(&f.ctx_dir).unwrap();
    symlink(canon.join("a.txt"), f.ctx_dir.join("selfabs")).unwrap();
    assert_eq!(
        entries(&build(&f, &spec(&["selfabs"], "/s")).unwrap())[0].data,
        b"A"
    );
}

#[test]
fn special_files() {
    let f = fixture();
    sample(&f.ctx_dir);
    let _sock = std::os::unix::net::UnixListener::bind(f.ctx_dir.join("dir/sock")).unwrap();
    let blob = build(&f, &spec(&["dir"], "/d/")).unwrap();
    assert!(!paths(&blob).iter().any(|p| p.contains("sock")));
    let status = std::process::Command::new("mkfifo")
        .arg(f.ctx_dir.join("dir/fifo"))
        .status();
    if status.is_ok_and(|s| s.success()) {
        let e = build(&f, &spec(&["dir"], "/d/")).unwrap_err();
        assert!(
            matches!(
                e,
                BuildError::UnsupportedFileType {
                    kind: "named pipe",
                    ..
                }
            ),
            "{e}"
        );
        write(&f.ctx_dir, ".dockerignore", "dir/fifo\n", 0o644);
        build(&f, &spec(&["dir"], "/d/")).unwrap();
    }
}

#[test]
fn sorted_by_components() {
    let f = fixture();
    for p in ["a.b", "a-b", "a/b", "a/a", "B", "a0"] {
        write(&f.ctx_dir, p, p, 0o644);
    }
    let blob = build(&f, &spec(&["."], "/")).unwrap();
    assert_eq!(paths(&blob), ["B", "a/", "a/a", "a/b", "a-b", "a.b", "a0"]);
}

fn digest_of_tree(f: &Fixture, order: &[&str]) -> LayerBlob {
    for p in order {
        write(&f.ctx_dir, p, &format!("content of {p}"), 0o644);
    }
    build(f, &spec(&["."], "/app/")).unwrap()
}

#[test]
fn deterministic_across_order_mtime_and_location() {
    let names = ["z/1", "a/2", "m", "a/b/c", "q/r/s/t"];
    let f1 = fixture();
    let first = digest_of_tree(&f1, &names);
    let again = build(&f1, &spec(&["."], "/app/")).unwrap();
    assert_eq!(first, again);

    // New mtimes change nothing.
    let later = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    for p in names {
        fs::File::options()
            .write(true)
            .open(f1.ctx_dir.join(p))
            .unwrap()
            .set_modified(later)
            .unwrap();
    }
    let touched = build(&f1, &spec(&["."], "/app/")).unwrap();
    assert_eq!(
        (touched.digest, touched.diff_id),
        (first.digest.clone(), first.diff_id.clone())
    );

    // Created in another order, somewhere else.
    let f2 = fixture();
    let mut reversed = names;
    reversed.reverse();
    let second = digest_of_tree(&f2, &reversed);
    assert_eq!(
        (second.digest, second.diff_id, second.size),
        (first.digest.clone(), first.diff_id.clone(), first.size)
    );

    // The epoch is part of the content.
    let ctx = Context::open(&f2.ctx_dir).unwrap();
    let other = build_copy_layer(
        &ctx,
        &spec(&["."], "/app/"),
        &f2.spool,
        &LayerOptions {
            epoch: 1,
            threads: 0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(other.diff_id, first.diff_id);
}

fn tar_bytes(entries: &[(TarHeader, &[u8])]) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    for (h, data) in entries {
        let mut d = *data;
        w.append(h, Some(&mut d)).unwrap();
    }
    w.finish().unwrap()
}

fn th(path: &str, t: EntryType, size: u64, link: &str) -> TarHeader {
    TarHeader {
        path: path.into(),
        entry_type: t,
        mode: 0o640,
        uid: 7,
        gid: 8,
        mtime: 12345,
        size,
        link: link.into(),
        device: (0, 0),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut e, bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn add_extracts_archives_in_every_format() {
    let f = fixture();
    let tar = tar_bytes(&[
        (th("./top/", EntryType::Dir, 0, ""), b""),
        (th("top/f", EntryType::File, 2, ""), b"hi"),
        (th("top/hard", EntryType::Hardlink, 0, "top/f"), b""),
        (th("top/l", EntryType::Symlink, 0, "f"), b""),
        (th("/abs/g", EntryType::File, 1, ""), b"g"),
    ]);
    fs::write(f.ctx_dir.join("plain.tar"), &tar).unwrap();
    fs::write(f.ctx_dir.join("a.tgz"), gzip(&tar)).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    std::io::Write::write_all(&mut bz, &tar).unwrap();
    fs::write(f.ctx_dir.join("a.tbz"), bz.finish().unwrap()).unwrap();
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
    std::io::Write::write_all(&mut xz, &tar).unwrap();
    fs::write(f.ctx_dir.join("a.txz"), xz.finish().unwrap()).unwrap();

    let mut first = None;
    for name in ["plain.tar", "a.tgz", "a.tbz", "a.txz"] {
        let mut s = spec(&[name], "/opt/x");
        s.extract_archives = true;
        let blob = build(&f, &s).unwrap();
        let es = entries(&blob);
        let got: Vec<_> = es.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            got,
            [
                "opt/",
                "opt/x/",
                "opt/x/top/",
                "opt/x/top/f",
                "opt/x/top/hard",
                "opt/x/top/l",
                "opt/x/abs/",
                "opt/x/abs/g"
            ],
            "{name}"
        );
        assert_eq!(
            (es[3].mode, es[3].uid, es[3].gid, es[3].data.as_slice()),
            (0o640, 7, 8, &b"hi"[..])
        );
        assert_eq!((es[4].kind, es[4].link.as_str()), (b'1', "opt/x/top/f"));
        assert_eq!((es[5].kind, es[5].link.as_str()), (b'2', "f"));
        match &first {
            None => first = Some(blob.diff_id),
            Some(d) => assert_eq!(d, &blob.diff_id, "{name}"),
        }
    }
    // --chown overrides the archive's owners.
    let mut s = spec(&["a.tgz"], "/");
    s.extract_archives = true;
    s.chown = Some((1, 1));
    assert!(
        entries(&build(&f, &s).unwrap())
            .iter()
            .all(|e| e.uid == 1 || e.path == "abs/")
    );
    // COPY does not extract.
    assert_eq!(
        paths(&build(&f, &spec(&["a.tgz"], "/")).unwrap()),
        ["a.tgz"]
    );
}

#[test]
fn add_copies_non_archives_as_files() {
    let f = fixture();
    fs::write(f.ctx_dir.join("fake.tar.gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
    fs::write(
        f.ctx_dir.join("gz-not-tar.gz"),
        gzip(b"just text, not a tar"),
    )
    .unwrap();
    fs::write(f.ctx_dir.join("text.tar"), "hello").unwrap();
    let mut s = spec(&["fake.tar.gz", "gz-not-tar.gz", "text.tar"], "/d/");
    s.extract_archives = true;
    assert_eq!(
        paths(&build(&f, &s).unwrap()),
        ["d/", "d/fake.tar.gz", "d/gz-not-tar.gz", "d/text.tar"]
    );
}

#[test]
fn hostile_archives_are_refused() {
    let f = fixture();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot.tar",
            tar_bytes(&[(th("a/../../evil", EntryType::File, 1, ""), b"x")]),
            "a/../../evil",
        ),
        (
            "linkout.tar",
            tar_bytes(&[(th("l", EntryType::Symlink, 0, "../../etc"), b"")]),
            "l",
        ),
        (
            "through.tar",
            tar_bytes(&[
                (th("l", EntryType::Symlink, 0, "/etc"), b""),
                (th("l/passwd", EntryType::File, 1, ""), b"x"),
            ]),
            "l/passwd",
        ),
        (
            "hard.tar",
            tar_bytes(&[(th("h", EntryType::Hardlink, 0, "/etc/shadow"), b"")]),
            "h",
        ),
        (
            "hardup.tar",
            tar_bytes(&[(th("h", EntryType::Hardlink, 0, "../x"), b"")]),
            "h",
        ),
    ];
    for (name, bytes, entry) in cases {
        fs::write(f.ctx_dir.join(name), bytes).unwrap();
        let mut s = spec(&[name], "/opt/d/");
        s.extract_archives = true;
        let e = build(&f, &s).map(|b| paths(&b)).expect_err(name);
        assert!(matches!(e, BuildError::ArchiveEntry { .. }), "{name}: {e}");
        assert!(
            e.to_string().contains(&format!("entry '{entry}'")),
            "{name}: {e}"
        );
    }
    // A truncated compressed archive is an error, not a silently short layer.
    let tar = tar_bytes(&[(th("big", EntryType::File, 100_000, ""), &[7u8; 100_000][..])]);
    let gz = gzip(&tar);
    fs::write(f.ctx_dir.join("trunc.tgz"), &gz[..gz.len() / 2]).unwrap();
    let mut s = spec(&["trunc.tgz"], "/");
    s.extract_archives = true;
    let e = build(&f, &s).unwrap_err();
    assert!(
        matches!(
            e,
            BuildError::Archive { .. } | BuildError::ArchiveEntry { .. }
        ),
        "{e}"
    );
    // A symlink pointing inside the destination may be written through.
    let ok = tar_bytes(&[
        (th("real/", EntryType::Dir, 0, ""), b""),
        (th("l", EntryType::Symlink, 0, "real"), b""),
        (th("l/f", EntryType::File, 1, ""), b"x"),
    ]);
    fs::write(f.ctx_dir.join("ok.tar"), ok).unwrap();
    let mut s = spec(&["ok.tar"], "/d/");
    s.extract_archives = true;
    build(&f, &s).unwrap();
}

/// The shared Alpine minirootfs: `$OCIPUSH_SHARED`, else `../shared` beside the repository
/// (`../../shared` from a worktree one level deeper).
fn alpine() -> std::path::PathBuf {
    let name = "testdata/alpine/alpine-minirootfs-3.20.3-x86_64.tar.gz";
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("OCIPUSH_SHARED").map(std::path::PathBuf::from),
        Some(repo.join("../shared")),
        Some(repo.join("../../shared")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found in $OCIPUSH_SHARED, ../shared or ../../shared"))
}

#[test]
fn alpine_minirootfs_extracts_deterministically() {
    let f = fixture();
    fs::copy(alpine(), f.ctx_dir.join("rootfs.tar.gz")).unwrap();
    let mut s = spec(&["rootfs.tar.gz"], "/");
    s.extract_archives = true;
    let blob = build(&f, &s).unwrap();
    let es = entries(&blob);
    let busybox = es
        .iter()
        .find(|e| e.path == "bin/busybox")
        .expect("bin/busybox");
    assert_eq!((busybox.kind, busybox.mode), (b'0', 0o755));
    assert!(busybox.data.len() > 100_000);
    let sh = es.iter().find(|e| e.path == "bin/sh").expect("bin/sh");
    assert_eq!((sh.kind, sh.link.as_str()), (b'2', "/bin/busybox"));
    assert!(
        es.iter()
            .any(|e| e.path == "etc/os-release" || e.path == "etc/alpine-release")
    );
    let again = build(&f, &s).unwrap();
    assert_eq!((again.digest, again.diff_id), (blob.digest, blob.diff_id));
}

#[test]
fn long_paths_round_trip() {
    let f = fixture();
    let deep = format!(
        "{}/{}/{}/{}",
        "a".repeat(90),
        "b".repeat(90),
        "c".repeat(90),
        "f".repeat(120)
    );
    write(&f.ctx_dir, &deep, "deep", 0o644);
    symlink(&deep, f.ctx_dir.join("longlink")).unwrap();
    let es = entries(&build(&f, &spec(&["."], "/")).unwrap());
    let file = es.iter().find(|e| e.path == deep).expect("long path entry");
    assert_eq!(file.data, b"deep");
    assert!(es.iter().any(|e| e.path == "longlink" && e.link == deep));
}

#[test]
fn later_copies_see_what_earlier_ones_and_add_archives_wrote() {
    let f = fixture();
    sample(&f.ctx_dir);
    let tar = tar_bytes(&[
        (th("top/", EntryType::Dir, 0, ""), b""),
        (th("top/f", EntryType::File, 2, ""), b"hi"),
    ]);
    fs::write(f.ctx_dir.join("a.tar"), &tar).unwrap();
    let ctx = Context::open(&f.ctx_dir).unwrap();
    let opts = LayerOptions::default();
    let mut root = RootFs::empty();
    let mut add = spec(&["a.tar"], "/x/");
    add.extract_archives = true;
    build_copy_layer_on(&ctx, &add, &mut root, &f.spool, &opts).unwrap();
    // The extracted directory (0640, 7:8) is an existing parent for the next copy, which keeps
    // it as it is; the directory the first copy created (/x, 0755) too.
    let mut chowned = spec(&["a.txt"], "/x/top/");
    chowned.chown = Some((1, 1));
    let blob = build_copy_layer_on(&ctx, &chowned, &mut root, &f.spool, &opts).unwrap();
    let es = entries(&blob);
    let got: Vec<_> = es
        .iter()
        .map(|e| (e.path.as_str(), e.mode, e.uid))
        .collect();
    assert_eq!(
        got,
        [
            ("x/", 0o755, 0),
            ("x/top/", 0o640, 7),
            ("x/top/a.txt", 0o644, 1)
        ]
    );
}
