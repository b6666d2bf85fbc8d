//! The stage filesystem and BuildKit's placement rules, case by case (each case names the
//! fsutil / continuity behaviour it follows).

use std::sync::Arc;

use super::place::{self, Placed, Placement};
use super::users::{UserError, resolve_owner};
use super::*;
use crate::layers::{EntryMeta, Planned};

fn dir(mode: u32, uid: u32) -> Meta {
    Meta::dir(mode, uid, uid)
}

fn link(target: &str) -> Meta {
    Meta {
        kind: Kind::Symlink(target.into()),
        mode: 0o777,
        uid: 0,
        gid: 0,
    }
}

fn file() -> Meta {
    Meta {
        kind: Kind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
    }
}

/// An Alpine-like base, usrmerged: `/bin → usr/bin`, `/lib → /usr/lib`, `/tmp` 1777,
/// `/home/app` 0750 owned by 1000, `/opt` 0711.
fn base() -> RootFs {
    let mut fs = RootFs::empty();
    fs.begin_layer();
    for (p, m) in [
        ("usr", dir(0o755, 0)),
        ("usr/bin", dir(0o755, 0)),
        ("usr/bin/sh", file()),
        ("usr/lib", dir(0o755, 0)),
        ("bin", link("usr/bin")),
        ("lib", link("/usr/lib")),
        ("tmp", dir(0o1777, 0)),
        ("home", dir(0o755, 0)),
        ("home/app", dir(0o750, 1000)),
        ("opt", dir(0o711, 0)),
        ("etc", dir(0o755, 0)),
        ("loop", link("loop2")),
        ("loop2", link("loop")),
    ] {
        let comps: Vec<&str> = p.split('/').collect();
        fs.set(&comps, m, None);
    }
    let passwd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:app:/home/app:/bin/sh\n";
    let group = "root:x:0:\napp:x:1001:\nstaff:x:50:app\n";
    fs.set(
        &["etc", "passwd"],
        file(),
        Some(UserFile::Bytes(Arc::from(passwd.as_bytes()))),
    );
    fs.set(
        &["etc", "group"],
        file(),
        Some(UserFile::Bytes(Arc::from(group.as_bytes()))),
    );
    fs
}

fn f(size: u64) -> Planned {
    Planned::File {
        path: "/nonexistent".into(),
        size,
    }
}

fn meta(mode: u32, uid: u32) -> EntryMeta {
    EntryMeta {
        mode,
        uid,
        gid: uid,
    }
}

/// `path kind mode uid` lines of a layer.
fn show(entries: &Placed<'_, Planned>) -> Vec<String> {
    let mut out = Vec::new();
    let _ = entries.for_each(|path, p, m| {
        let kind = match p {
            Planned::Dir => "d",
            Planned::File { .. } | Planned::Inline { .. } => "f",
            Planned::Hardlink { .. } => "h",
            Planned::Symlink { .. } => "l",
        };
        out.push(format!("{path} {kind} {:o} {}", m.mode, m.uid));
        Ok::<(), ()>(())
    });
    out
}

#[test]
fn resolve_follows_symlinks_inside_the_root() {
    let fs = base();
    let r = fs.resolve("/bin/x", true).unwrap();
    assert_eq!(r.comps, ["usr", "bin", "x"]);
    assert_eq!(r.node, None);
    let r = fs.resolve("/lib/../bin/sh", true).unwrap();
    assert_eq!(r.comps, ["usr", "bin", "sh"]);
    assert!(r.node.is_some());
    // `..` stops at the root; the last symlink is kept unless followed.
    assert_eq!(fs.resolve("/../../bin", false).unwrap().comps, ["bin"]);
    assert_eq!(
        fs.resolve("/../../bin", true).unwrap().comps,
        ["usr", "bin"]
    );
    assert!(matches!(
        fs.resolve("/loop/x", true),
        Err(RootFsError::SymlinkLoop { .. })
    ));
    assert!(matches!(
        fs.resolve("/etc/passwd/x", true),
        Err(RootFsError::NotADirectory { path }) if path == "etc/passwd"
    ));
}

#[test]
fn copy_into_tmp_keeps_its_mode() {
    let mut fs = base();
    let mut p = Placement::new(&mut fs, "/tmp/", meta(0o755, 0));
    p.add_file("f", f(1), meta(0o644, 0)).unwrap();
    assert_eq!(show(&p.finish()), ["tmp d 1777 0", "tmp/f f 644 0"]);
}

#[test]
fn copy_into_usrmerged_bin_writes_usr_bin() {
    let mut fs = base();
    let mut p = Placement::new(&mut fs, "/bin/", meta(0o755, 0));
    p.add_file("tool", f(1), meta(0o755, 0)).unwrap();
    assert_eq!(
        show(&p.finish()),
        ["usr d 755 0", "usr/bin d 755 0", "usr/bin/tool f 755 0"]
    );
    // /bin is still the symlink.
    assert_eq!(fs.get(&["bin"]), Some(&link("usr/bin")));
    assert!(fs.get(&["usr", "bin", "tool"]).is_some());
}

#[test]
fn file_to_an_existing_directory_goes_into_it() {
    let mut fs = base();
    let mut p = Placement::new(&mut fs, "/opt", meta(0o755, 0));
    p.add_file("x", f(1), meta(0o600, 0)).unwrap();
    assert_eq!(show(&p.finish()), ["opt d 711 0", "opt/x f 600 0"]);
    // A missing destination without a slash is the file's new name.
    let mut p = Placement::new(&mut fs, "/srv/app.conf", meta(0o755, 0));
    p.add_file("x", f(1), meta(0o644, 0)).unwrap();
    assert_eq!(show(&p.finish()), ["srv d 755 0", "srv/app.conf f 644 0"]);
}

#[test]
fn directory_contents_into_new_and_existing_destinations() {
    let mut fs = base();
    // New destination: created by MkdirAll (0755, --chown owner), not with the source's mode.
    let mut p = Placement::new(&mut fs, "/home/app/site", meta(0o755, 1000));
    p.add_dir(vec![
        (vec!["a".to_string()], Planned::Dir, meta(0o700, 1000)),
        (vec!["a".into(), "b".into()], f(3), meta(0o640, 1000)),
    ])
    .unwrap();
    assert_eq!(
        show(&p.finish()),
        [
            "home d 755 0",
            "home/app d 750 1000",
            "home/app/site d 755 1000",
            "home/app/site/a d 700 1000",
            "home/app/site/a/b f 640 1000",
        ]
    );
    // Existing destination: keeps its metadata; below it the source's metadata wins.
    let mut p = Placement::new(&mut fs, "/home/app/site/", meta(0o755, 0));
    p.add_dir(vec![(vec!["a".to_string()], Planned::Dir, meta(0o755, 0))])
        .unwrap();
    assert_eq!(
        show(&p.finish()),
        [
            "home d 755 0",
            "home/app d 750 1000",
            "home/app/site d 755 1000",
            "home/app/site/a d 755 0",
        ]
    );
}

#[test]
fn chown_owns_created_parents_and_chmod_sets_their_mode() {
    let mut fs = base();
    let mut p = Placement::new(&mut fs, "/a/b/c", meta(0o755, 7));
    p.add_file("x", f(1), meta(0o644, 7)).unwrap();
    assert_eq!(
        show(&p.finish()),
        ["a d 755 7", "a/b d 755 7", "a/b/c f 644 7"]
    );
    let mut p = Placement::new(&mut fs, "/n/", meta(0o700, 0));
    p.add_file("x", f(1), meta(0o700, 0)).unwrap();
    assert_eq!(show(&p.finish()), ["n d 700 0", "n/x f 700 0"]);
}

#[test]
fn type_conflicts_fail_as_in_buildkit() {
    let mut fs = base();
    let mut p = Placement::new(&mut fs, "/", meta(0o755, 0));
    assert!(matches!(
        p.add_dir(vec![(vec!["bin".to_string()], Planned::Dir, meta(0o755, 0))]),
        Err(RootFsError::NotDirTarget { path }) if path == "bin"
    ));
    let mut p = Placement::new(&mut fs, "/", meta(0o755, 0));
    assert!(matches!(
        p.add_dir(vec![(vec!["tmp".to_string()], f(1), meta(0o644, 0))]),
        Err(RootFsError::DirWithFile { path }) if path == "tmp"
    ));
    let mut p = Placement::new(&mut fs, "/etc/passwd/x", meta(0o755, 0));
    assert!(matches!(
        p.add_file("x", f(1), meta(0o644, 0)),
        Err(RootFsError::NotADirectory { .. })
    ));
}

#[test]
fn a_copy_matching_nothing_writes_nothing() {
    let mut fs = base();
    let p = Placement::<Planned>::new(&mut fs, "/new/", meta(0o755, 0));
    assert!(show(&p.finish()).is_empty());
    assert!(fs.get(&["new"]).is_none());
}

#[test]
fn workdir_creates_only_what_is_missing() {
    let mut fs = base();
    let e = place::mkdir::<Planned>(&mut fs, "/home/app", (1000, 1001)).unwrap();
    assert!(show(&e).is_empty(), "{:?}", show(&e));
    let e = place::mkdir::<Planned>(&mut fs, "/home/app/w/x", (1000, 1001)).unwrap();
    assert_eq!(
        show(&e),
        [
            "home d 755 0",
            "home/app d 750 1000",
            "home/app/w d 755 1000",
            "home/app/w/x d 755 1000"
        ]
    );
    let e = place::mkdir::<Planned>(&mut fs, "/bin/sub", (0, 0)).unwrap();
    assert_eq!(
        show(&e),
        ["usr d 755 0", "usr/bin d 755 0", "usr/bin/sub d 755 0"]
    );
}

#[test]
fn owners_resolve_from_the_stage_files() {
    let fs = base();
    assert_eq!(resolve_owner(&fs, "app").unwrap(), (1000, 1001));
    assert_eq!(resolve_owner(&fs, "app:staff").unwrap(), (1000, 50));
    assert_eq!(resolve_owner(&fs, "1000").unwrap(), (1000, 1000));
    assert_eq!(resolve_owner(&fs, "5:app").unwrap(), (5, 1001));
    assert_eq!(resolve_owner(&fs, ":99").unwrap(), (0, 99));
    assert_eq!(resolve_owner(&fs, "root:0").unwrap(), (0, 0));
    let e = resolve_owner(&fs, "nobody").unwrap_err();
    assert!(matches!(e, UserError::Unknown { what: "user", .. }));
    assert!(e.to_string().contains("/etc/passwd"), "{e}");
    assert!(resolve_owner(&fs, "app:nogroup").is_err());
    // Without an /etc/passwd every name is unknown; ids still work.
    let empty = RootFs::empty();
    assert!(resolve_owner(&empty, "app").is_err());
    assert_eq!(resolve_owner(&empty, "1:2").unwrap(), (1, 2));
}

#[test]
fn user_files_follow_the_layers() {
    let mut fs = base();
    fs.begin_layer();
    fs.whiteout(&["etc", "passwd"]);
    assert!(fs.user_file("etc/passwd").is_none());
    assert!(fs.user_file("etc/group").is_some());
    fs.begin_layer();
    fs.opaque(&["etc"]);
    assert!(fs.user_file("etc/group").is_none());
}

#[test]
fn link_layers_merge_over_the_stage() {
    let mut fs = base();
    let mut scratch = RootFs::empty();
    let mut p = Placement::new(&mut scratch, "/tmp/", meta(0o755, 0));
    p.add_file("f", f(1), meta(0o644, 0)).unwrap();
    assert_eq!(show(&p.finish()), ["tmp d 755 0", "tmp/f f 644 0"]);
    fs.overlay(&scratch);
    // What BuildKit's merge gives: the link layer's directory metadata wins.
    assert_eq!(fs.get(&["tmp"]).unwrap().mode, 0o755);
    assert!(fs.get(&["usr", "bin", "sh"]).is_some());
}
