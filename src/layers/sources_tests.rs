//! Tests of the source side of COPY/ADD layers: heredocs, `--exclude`, `--parents`, hard links,
//! symbolic `--chmod`, and the layer cache keys of all of them.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::cache::{CacheOutcome, LayerCache};
use crate::layers::test_entries::{E, entries, paths, write};
use crate::layers::{
    BuildError, Chmod, Compression, Context, CopySpec, InlineFile, LayerBlob, LayerOptions, Spool,
    build_copy_layer,
};

struct Fixture {
    tmp: tempfile::TempDir,
    ctx: std::path::PathBuf,
    spool: Spool,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::set_permissions(&ctx, fs::Permissions::from_mode(0o755)).unwrap();
    let spool = Spool::new(tmp.path().join("spool")).unwrap();
    Fixture { tmp, ctx, spool }
}

fn opts() -> LayerOptions {
    LayerOptions {
        compression: Compression::Gzip { level: 1 },
        epoch: 0,
        threads: 0,
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
    let ctx = Context::open(&f.ctx)?;
    build_copy_layer(&ctx, s, &f.spool, &opts())
}

fn inline(name: &str, data: &str) -> InlineFile {
    InlineFile {
        name: name.into(),
        data: data.into(),
    }
}

#[test]
fn heredocs_become_files() {
    let f = fixture();
    write(&f.ctx, "a.txt", "A", 0o600);
    let mut s = spec(&[], "/file");
    s.inline = vec![inline("EOF", "hello\n")];
    let es = entries(&build(&f, &s).unwrap());
    assert_eq!(
        es,
        [E {
            path: "file".into(),
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            link: String::new(),
            data: b"hello\n".to_vec()
        }]
    );

    // Several heredocs and a path source into a directory, --chmod and --chown applied (the
    // directory the copy creates is owned by --chown: fsutil's MkdirAll chowns it).
    let mut s = spec(&["a.txt"], "/dir/");
    s.inline = vec![inline("a", "1"), inline("b", "")];
    s.chmod = Some(Chmod::parse("g+w,o-r").unwrap());
    s.chown = Some((7, 7));
    let es = entries(&build(&f, &s).unwrap());
    let got: Vec<(&str, u32, u64, &str)> = es
        .iter()
        .map(|e| (e.path.as_str(), e.mode, e.uid, e.text()))
        .collect();
    assert_eq!(
        got,
        [
            ("dir/", 0o755, 7, ""),
            ("dir/a", 0o660, 7, "1"),
            ("dir/a.txt", 0o620, 7, "A"),
            ("dir/b", 0o660, 7, ""),
        ]
    );

    // A heredoc named like a copied file replaces it (it is copied last, as in BuildKit).
    let mut s = spec(&["a.txt"], "/d/");
    s.inline = vec![inline("a.txt", "inline")];
    let es = entries(&build(&f, &s).unwrap());
    assert_eq!(es[1].text(), "inline");

    // Two sources need a directory destination.
    let mut s = spec(&[], "/x");
    s.inline = vec![inline("a", ""), inline("b", "")];
    assert!(matches!(build(&f, &s), Err(BuildError::DestNotDir { .. })));
    let mut s = spec(&["a.txt"], "/x");
    s.inline = vec![inline("a", "")];
    assert!(matches!(build(&f, &s), Err(BuildError::DestNotDir { .. })));
    let mut s = spec(&[], "/x/");
    s.inline = vec![inline("a/b", "")];
    assert!(matches!(build(&f, &s), Err(BuildError::InvalidPath { .. })));
}

/// The tree of BuildKit's `testExcludedFilesOnCopy` (frontend/dockerfile/exclude_patterns_test.go).
fn exclude_tree(root: &Path) {
    for (p, d) in [
        ("dir1/file-101.png", "2"),
        ("dir1/file-102.txt", "3"),
        ("dir1/file-103.jpeg", "4"),
        ("dir2/file-201.pdf", "6"),
        ("dir2/file-202.jpeg", "7"),
        ("dir2/file-203.png", "8"),
        ("dir3/file-301.mp3", "9"),
        ("dir3/file-302.mpeg", "10"),
        ("dir4/file-401.txt", "11"),
    ] {
        write(root, p, d, 0o600);
    }
    symlink("file-401.txt", root.join("dir4/file-402.txt")).unwrap();
    symlink("file-404.txt", root.join("dir4/file-403.txt")).unwrap();
}

#[test]
fn exclude_like_buildkit() {
    let f = fixture();
    exclude_tree(&f.ctx);
    let with = |srcs: &[&str], dest: &str, ex: &[&str]| {
        let mut s = spec(srcs, dest);
        s.exclude = ex.iter().map(|e| e.to_string()).collect();
        paths(&build(&f, &s).unwrap())
    };
    // builder1: COPY --exclude=*/*.png --exclude=*/*.jpeg . /1
    assert_eq!(
        with(&["."], "/1", &["*/*.png", "*/*.jpeg"]),
        [
            "1/",
            "1/dir1/",
            "1/dir1/file-102.txt",
            "1/dir2/",
            "1/dir2/file-201.pdf",
            "1/dir3/",
            "1/dir3/file-301.mp3",
            "1/dir3/file-302.mpeg",
            "1/dir4/",
            "1/dir4/file-401.txt",
            "1/dir4/file-402.txt",
            "1/dir4/file-403.txt",
        ]
    );
    // builder3: ADD --exclude=*.mp3 dir3/ /3/
    assert_eq!(
        with(&["dir3/"], "/3/", &["*.mp3"]),
        ["3/", "3/file-302.mpeg"]
    );
    // builder4: every source of a wildcard is matched relative to itself.
    assert_eq!(
        with(
            &["dir*"],
            "/4/",
            &["*.mp3", "*.jpeg", "*.png", "*.pdf", "*.txt"]
        ),
        ["4/", "4/file-302.mpeg"]
    );
    // builder6: everything excluded leaves the destination only.
    assert_eq!(with(&["dir*"], "/6/", &["*"]), ["6/"]);
    // A whole directory, and an exception below an excluded one (its directory comes back).
    assert_eq!(
        with(
            &["."],
            "/e/",
            &["dir1", "dir2", "!dir2/*.pdf", "dir3/**", "dir4"]
        ),
        ["e/", "e/dir2/", "e/dir2/file-201.pdf", "e/dir3/"]
    );
    // `**` patterns.
    assert_eq!(
        with(&["."], "/s/", &["**/*.png", "**/*.jpeg", "dir[34]"]),
        [
            "s/",
            "s/dir1/",
            "s/dir1/file-102.txt",
            "s/dir2/",
            "s/dir2/file-201.pdf"
        ]
    );
    // A file source is never matched itself (fsutil matches below the source only).
    assert_eq!(
        with(&["dir1/file-101.png"], "/f/", &["*.png"]),
        ["f/", "f/file-101.png"]
    );
    let mut s = spec(&["."], "/x/");
    s.exclude = vec!["[".into()];
    let e = build(&f, &s).unwrap_err();
    assert!(matches!(e, BuildError::BadExcludePattern { .. }), "{e}");
}

#[test]
fn parents_keep_paths() {
    let f = fixture();
    write(&f.ctx, "a/b/c.txt", "C", 0o644);
    write(&f.ctx, "a/b/d.json", "D", 0o644);
    write(&f.ctx, "a/e.json", "E", 0o644);
    write(&f.ctx, "x/y/z.json", "Z", 0o644);
    write(&f.ctx, "top.txt", "T", 0o644);
    fs::set_permissions(f.ctx.join("a"), fs::Permissions::from_mode(0o700)).unwrap();
    let parents = |srcs: &[&str], dest: &str| {
        let mut s = spec(srcs, dest);
        s.parents = true;
        build(&f, &s).map(|b| paths(&b))
    };
    assert_eq!(
        parents(&["a/b/c.txt", "top.txt"], "/d/").unwrap(),
        ["d/", "d/a/", "d/a/b/", "d/a/b/c.txt", "d/top.txt"]
    );
    let es = {
        let mut s = spec(&["a/b/c.txt"], "/d/");
        s.parents = true;
        entries(&build(&f, &s).unwrap())
    };
    // Parent directories keep their own modes.
    assert_eq!((es[1].path.as_str(), es[1].mode), ("d/a/", 0o700));
    // The /./ pivot: the path below it is kept.
    assert_eq!(
        parents(&["./a/./b/c.txt"], "/p/").unwrap(),
        ["p/", "p/b/", "p/b/c.txt"]
    );
    // A directory, and wildcards (which may match nothing).
    assert_eq!(
        parents(&["a/b"], "/d/").unwrap(),
        ["d/", "d/a/", "d/a/b/", "d/a/b/c.txt", "d/a/b/d.json"]
    );
    assert_eq!(
        parents(&["**/*.json"], "/j/").unwrap(),
        [
            "j/",
            "j/a/",
            "j/a/b/",
            "j/a/b/d.json",
            "j/a/e.json",
            "j/x/",
            "j/x/y/",
            "j/x/y/z.json"
        ]
    );
    assert_eq!(parents(&["*.none"], "/n/").unwrap(), ["n/"]);
    // A literal path must exist.
    assert!(matches!(
        parents(&["a/nope.txt"], "/d/"),
        Err(BuildError::SourceNotFound { .. })
    ));
    // --exclude applies relative to the pivot.
    let mut s = spec(&["**/*.json"], "/j/");
    s.parents = true;
    s.exclude = vec!["x".into()];
    assert_eq!(
        paths(&build(&f, &s).unwrap()),
        ["j/", "j/a/", "j/a/b/", "j/a/b/d.json", "j/a/e.json"]
    );
}

#[test]
fn hard_links_stored_once() {
    let f = fixture();
    write(&f.ctx, "d/b.bin", "shared content", 0o644);
    fs::create_dir(f.ctx.join("d/sub")).unwrap();
    fs::hard_link(f.ctx.join("d/b.bin"), f.ctx.join("d/a.bin")).unwrap();
    fs::hard_link(f.ctx.join("d/b.bin"), f.ctx.join("d/sub/c.bin")).unwrap();
    write(&f.ctx, "d/other", "x", 0o644);
    let es = entries(&build(&f, &spec(&["d"], "/o/")).unwrap());
    let got: Vec<(&str, u8, &str, &str)> = es
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.link.as_str(), e.text()))
        .collect();
    assert_eq!(
        got,
        [
            ("o/", b'5', "", ""),
            ("o/a.bin", b'0', "", "shared content"),
            ("o/b.bin", b'1', "o/a.bin", ""),
            ("o/other", b'0', "", "x"),
            ("o/sub/", b'5', "", ""),
            ("o/sub/c.bin", b'1', "o/a.bin", ""),
        ]
    );
    // Two sources are copied separately (fsutil tracks links per copy): no link between them.
    let es = entries(&build(&f, &spec(&["d/a.bin", "d/b.bin"], "/t/")).unwrap());
    assert!(es.iter().all(|e| e.kind != b'1'), "{es:?}");
    // An excluded first link: the next one holds the content.
    let mut s = spec(&["d"], "/o/");
    s.exclude = vec!["a.bin".into()];
    let es = entries(&build(&f, &s).unwrap());
    assert_eq!((es[1].path.as_str(), es[1].kind), ("o/b.bin", b'0'));
    assert_eq!(es[4].link, "o/b.bin");
    // A later source replacing the first link's path: links point to the content that remains.
    write(&f.ctx, "e/a.bin", "replacement", 0o644);
    let es = entries(&build(&f, &spec(&["d", "e"], "/o/")).unwrap());
    let by = |p: &str| es.iter().find(|e| e.path == p).unwrap().clone();
    assert_eq!(by("o/a.bin").text(), "replacement");
    assert_eq!(
        (by("o/b.bin").kind, by("o/b.bin").text()),
        (b'0', "shared content")
    );
    assert_eq!(by("o/sub/c.bin").link, "o/b.bin");
}

#[test]
fn symbolic_chmod_per_entry() {
    let f = fixture();
    write(&f.ctx, "t/run.sh", "#!", 0o700);
    write(&f.ctx, "t/data", "d", 0o600);
    fs::set_permissions(f.ctx.join("t"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("data", f.ctx.join("t/l")).unwrap();
    let mut s = spec(&["t"], "/t/");
    s.chmod = Some(Chmod::parse("go+rX").unwrap());
    let got: Vec<(String, u32)> = entries(&build(&f, &s).unwrap())
        .into_iter()
        .map(|e| (e.path, e.mode))
        .collect();
    assert_eq!(
        got,
        [
            ("t/".to_string(), 0o755),
            ("t/data".to_string(), 0o644),
            ("t/l".to_string(), 0o777),
            ("t/run.sh".to_string(), 0o755),
        ]
    );
}

#[test]
fn cache_keys_cover_heredocs_links_and_filters() {
    let f = fixture();
    write(&f.ctx, "d/a", "same", 0o644);
    write(&f.ctx, "d/b", "same", 0o644);
    write(&f.ctx, "d/c.log", "log", 0o644);
    let ctx = Context::open(&f.ctx).unwrap();
    let cache = LayerCache::open(f.tmp.path().join("cache")).unwrap();
    let run = |s: &CopySpec| cache.copy_layer(&ctx, s, &opts()).unwrap();

    let mut s = spec(&["d"], "/d/");
    s.inline = vec![inline("EOF", "one")];
    let (first, o) = run(&s);
    assert_eq!(o, CacheOutcome::Built);
    assert_eq!(run(&s).1, CacheOutcome::Hit);
    // Other heredoc content of the same size: another layer.
    s.inline = vec![inline("EOF", "two")];
    let (second, o) = run(&s);
    assert_eq!(o, CacheOutcome::Built);
    assert_ne!(first.diff_id, second.diff_id);
    // An exclude pattern changes the layer.
    s.exclude = vec!["*.log".into()];
    let (third, o) = run(&s);
    assert_eq!(o, CacheOutcome::Built);
    assert_ne!(third.diff_id, second.diff_id);
    assert_eq!(run(&s).1, CacheOutcome::Hit);
    // Same contents, now hard-linked: the layer differs and is rebuilt.
    fs::remove_file(f.ctx.join("d/b")).unwrap();
    fs::hard_link(f.ctx.join("d/a"), f.ctx.join("d/b")).unwrap();
    let (linked, o) = run(&s);
    assert_eq!(o, CacheOutcome::Built);
    assert_ne!(linked.diff_id, third.diff_id);
    assert_eq!(run(&s).1, CacheOutcome::Hit);
}
