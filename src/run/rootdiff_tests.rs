//! The copy snapshotter on real files (as root: whiteouts are device nodes, opaque markers
//! `trusted.` attributes): snapshots merged into a root, and the root's changes turned into
//! the upper directory overlay would have left.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::super::copyroot::{Baseline, materialise};
use super::super::snapshot::{is_opaque, whiteout};
use super::{Op, build_upper, changes};
use crate::rootfs::{Kind, Meta, RootFs};

fn write(p: &Path, data: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Two snapshots: `lower` (etc/{a,b,gone}, keep/{x,y}, old/{z}, plain/f) and `upper`
/// (etc/a rewritten, a whiteout for etc/gone, an opaque old/ holding only n).
fn snapshots(dir: &Path) -> (PathBuf, PathBuf) {
    let (lower, upper) = (dir.join("lower"), dir.join("upper"));
    for f in [
        "etc/a", "etc/b", "etc/gone", "keep/x", "keep/y", "old/z", "plain/f",
    ] {
        write(&lower.join(f), &format!("lower {f}\n"));
    }
    write(&upper.join("etc/a"), "upper a\n");
    whiteout(&upper.join("etc/gone")).unwrap();
    write(&upper.join("old/n"), "new n\n");
    super::super::snapshot::set_opaque(&upper.join("old")).unwrap();
    (lower, upper)
}

/// The stage's filesystem as the merged `root` shows it.
fn fs_of(root: &Path) -> RootFs {
    let mut fs = RootFs::empty();
    fn walk(fs: &mut RootFs, dir: &Path, comps: &mut Vec<String>) {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        for n in names {
            let p = dir.join(&n);
            let m = std::fs::symlink_metadata(&p).unwrap();
            comps.push(n);
            let kind = if m.is_dir() { Kind::Dir } else { Kind::File };
            let meta = Meta {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            };
            fs.set(comps, meta, None);
            if m.is_dir() {
                walk(fs, &p, comps);
            }
            comps.pop();
        }
    }
    walk(&mut fs, root, &mut Vec::new());
    fs
}

/// The two snapshots of [`snapshots`] merged into `dir/root`, and its [`RootFs`].
fn merged(dir: &Path) -> (PathBuf, RootFs) {
    let (lower, upper) = snapshots(dir);
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    materialise(&[upper, lower], &root).unwrap();
    let fs = fs_of(&root);
    (root, fs)
}

fn rel(ops: &[Op]) -> Vec<String> {
    ops.iter()
        .map(|op| match op {
            Op::Dir { rel, opaque } => format!("dir {}{}", rel.display(), opaque_mark(*opaque)),
            Op::Move { rel, opaque } => {
                format!("move {}{}", rel.display(), opaque_mark(*opaque))
            }
            Op::Whiteout { rel } => format!("whiteout {}", rel.display()),
        })
        .collect()
}

fn opaque_mark(o: bool) -> &'static str {
    if o { " (opaque)" } else { "" }
}

#[test]
fn snapshots_merge_top_down_with_whiteouts_and_opaque_directories() {
    let t = tempfile::tempdir().unwrap();
    let (lower, upper) = snapshots(t.path());
    let root = t.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::lchown(lower.join("keep/y"), Some(7), Some(8)).unwrap();
    std::fs::set_permissions(lower.join("keep/y"), PermissionsExt::from_mode(0o4750)).unwrap();
    materialise(&[upper, lower], &root).unwrap();
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
    assert_eq!(read("etc/a"), "upper a\n");
    assert_eq!(read("etc/b"), "lower etc/b\n");
    assert!(!root.join("etc/gone").exists());
    // The opaque directory hides the lower one's entries.
    assert_eq!(read("old/n"), "new n\n");
    assert!(!root.join("old/z").exists());
    assert!(!is_opaque(&root.join("old")).unwrap());
    // Owner and set-id mode kept (set after the owner).
    let y = std::fs::metadata(root.join("keep/y")).unwrap();
    assert_eq!((y.mode() & 0o7777, y.uid(), y.gid()), (0o4750, 7, 8));
    // Copies, not links to the snapshot.
    assert_eq!(y.nlink(), 1);
}

#[test]
fn changes_become_overlays_upper_directory() {
    let t = tempfile::tempdir().unwrap();
    let (root, fs) = merged(t.path());
    // A mount point stub (not in the image) the command leaves alone.
    write(&root.join("stub/hosts"), "");
    let before = Baseline::take(&root).unwrap();
    before.wait_past();

    // Deleted; replaced directory; chmod only; chown only; same size rewritten in place;
    // a new directory; a temporary file made and removed; a new file in a new directory.
    std::fs::remove_file(root.join("etc/b")).unwrap();
    std::fs::remove_dir_all(root.join("keep")).unwrap();
    write(&root.join("keep/fresh"), "fresh\n");
    std::fs::set_permissions(root.join("plain/f"), PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::lchown(root.join("old/n"), Some(1000), Some(1000)).unwrap();
    {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("etc/a"))
            .unwrap();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.write_all(b"UPPER").unwrap();
    }
    write(&root.join("tmpdir-made/deep/file"), "x\n");
    write(&root.join("plain/tmp"), "t\n");
    std::fs::remove_file(root.join("plain/tmp")).unwrap();
    let untouched = vec![root.join("stub/hosts"), root.join("stub")];

    let ops = changes(&root, &before, &fs, &untouched).unwrap();
    assert_eq!(
        rel(&ops),
        [
            "dir etc",
            "move etc/a",
            "whiteout etc/b",
            "move keep (opaque)",
            "dir old",
            "move old/n",
            "dir plain",
            "move plain/f",
            "move tmpdir-made",
        ]
    );

    let up = t.path().join("up");
    std::fs::create_dir(&up).unwrap();
    build_upper(&root, &up, &ops).unwrap();
    assert_eq!(
        std::fs::read_to_string(up.join("etc/a")).unwrap(),
        "UPPER a\n"
    );
    let wh = std::fs::symlink_metadata(up.join("etc/b")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(is_opaque(&up.join("keep")).unwrap());
    assert_eq!(
        std::fs::read_to_string(up.join("keep/fresh")).unwrap(),
        "fresh\n"
    );
    assert!(!up.join("etc/gone").exists() && !up.join("stub").exists());
    assert_eq!(std::fs::metadata(up.join("old/n")).unwrap().uid(), 1000);
    assert!(up.join("tmpdir-made/deep/file").is_file());
    // Unchanged entries stay behind.
    assert!(!up.join("plain/tmp").exists() && !up.join("old/z").exists());
}

#[test]
fn nothing_changed_is_an_empty_layer_and_new_stub_parents_keep_their_changes() {
    let t = tempfile::tempdir().unwrap();
    let (root, fs) = merged(t.path());
    write(&root.join("run/secrets/token"), "");
    let before = Baseline::take(&root).unwrap();
    before.wait_past();
    let untouched = vec![
        root.join("run/secrets/token"),
        root.join("run/secrets"),
        root.join("run"),
    ];
    assert!(changes(&root, &before, &fs, &untouched).unwrap().is_empty());

    // The command writes next to a stub: the stub's parents (new) go in, the stub does not.
    write(&root.join("run/secrets/other"), "o\n");
    let untouched = vec![root.join("run/secrets/token")];
    let ops = changes(&root, &before, &fs, &untouched).unwrap();
    assert_eq!(
        rel(&ops),
        ["dir run", "dir run/secrets", "move run/secrets/other"]
    );
}
