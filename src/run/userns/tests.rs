//! Unit tests of the rootless parts that need no user namespace.

use super::inside::Owners;
use super::*;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

#[test]
fn subordinate_ranges_are_found_by_name_or_uid() {
    let text = "other:200000:65536\n# x\nbob:100000:65536\n1001:300000:10\n";
    let total = |name, id| SubIds::parse(text, Some(name), id, id).map(|s| s.total());
    assert_eq!(total("bob", 1000), Some(65536));
    assert_eq!(total("eve", 1001), Some(10));
    assert_eq!(total("eve", 1002), None);
    assert_eq!(SubIds::parse("bob:1:0\n", Some("bob"), 5, 5), None);
}

fn subids(text: &str) -> SubIds {
    SubIds::parse(text, Some("bob"), 1000, 1000).unwrap()
}

#[test]
fn host_ids_map_back_to_image_ids() {
    let r = Rootless {
        user: "bob".into(),
        uid: 1000,
        gid: 1001,
        ranges: Some(Ranges {
            uids: subids("bob:100000:65536"),
            gids: subids("bob:200000:65536"),
            newuidmap: "newuidmap".into(),
            newgidmap: "newgidmap".into(),
        }),
    };
    assert_eq!(r.to_image(1000, 1001), (0, 0));
    assert_eq!(r.to_image(100999, 200999), (1000, 1000));
    assert_eq!(r.to_image(100000, 200000), (1, 1));
    assert_eq!(r.to_image(5, 165536 + 100000), (OVERFLOW_ID, OVERFLOW_ID));
    assert!(r.maps(65536, 0) && !r.maps(65537, 0));
    let single = Rootless { ranges: None, ..r };
    assert_eq!(single.to_image(100999, 1001), (OVERFLOW_ID, 0));
    assert!(single.maps(0, 0) && !single.maps(1000, 1000));
    assert_ne!(single.snapshot_dir(), "snapshots");
}

#[test]
fn a_second_range_continues_the_container_ids() {
    let r = Rootless {
        user: "bob".into(),
        uid: 1000,
        gid: 1000,
        ranges: Some(Ranges {
            uids: subids("bob:100000:1000\nbob:300000:65536"),
            gids: subids("bob:100000:1000\nbob:300000:65536"),
            newuidmap: "newuidmap".into(),
            newgidmap: "newgidmap".into(),
        }),
    };
    assert_eq!(r.to_image(300000 + 3999, 100000), (5000, 1));
    assert!(r.maps(66536, 66536) && !r.maps(66537, 0));
    // One range keeps the directory name it had; two name both.
    assert_eq!(
        r.snapshot_dir(),
        "snapshots-rootless-1000-1000-100000-1000-300000-65536-100000-1000-300000-65536"
    );
    let one = Rootless {
        ranges: Some(Ranges {
            uids: subids("bob:100000:65536"),
            gids: subids("bob:100000:65536"),
            newuidmap: "newuidmap".into(),
            newgidmap: "newgidmap".into(),
        }),
        ..r
    };
    assert_eq!(
        one.snapshot_dir(),
        "snapshots-rootless-1000-1000-100000-65536-100000-65536"
    );
}

#[test]
fn disabled_user_namespaces_are_named_with_the_sysctl_to_change() {
    let d = tempfile::tempdir().unwrap();
    assert!(namespaces_unavailable_in(d.path()).is_none());
    std::fs::create_dir_all(d.path().join("kernel")).unwrap();
    std::fs::write(d.path().join("kernel/unprivileged_userns_clone"), "0\n").unwrap();
    let e = namespaces_unavailable_in(d.path()).unwrap().to_string();
    assert!(e.contains("unprivileged_userns_clone is 0"), "{e}");
    assert!(
        e.contains("sysctl -w kernel.unprivileged_userns_clone=1"),
        "{e}"
    );
    std::fs::create_dir_all(d.path().join("user")).unwrap();
    std::fs::write(d.path().join("user/max_user_namespaces"), "0\n").unwrap();
    let e = namespaces_unavailable_in(d.path()).unwrap().to_string();
    assert!(e.contains("max_user_namespaces is 0"), "{e}");
    assert!(e.contains("or run ocipush as root"), "{e}");
}

#[test]
fn a_mount_refused_under_apparmor_names_the_restriction() {
    let d = tempfile::tempdir().unwrap();
    let setup = || RunError::Setup {
        step: "mount the overlay filesystem",
        source: io::Error::from_raw_os_error(libc::EPERM),
    };
    let plain = explain_setup_in(setup(), d.path()).to_string();
    assert!(!plain.contains("apparmor_restrict"), "{plain}");
    std::fs::create_dir_all(d.path().join("kernel")).unwrap();
    std::fs::write(
        d.path()
            .join("kernel/apparmor_restrict_unprivileged_userns"),
        "1\n",
    )
    .unwrap();
    let e = explain_setup_in(setup(), d.path()).to_string();
    assert!(e.contains("mount the overlay filesystem"), "{e}");
    assert!(e.contains("apparmor_restrict_unprivileged_userns=0"), "{e}");
}

#[test]
fn a_rootless_unpack_keeps_files_the_users_and_notes_the_images_owners() {
    use std::os::unix::fs::PermissionsExt;
    let mut b = tar::Builder::new(Vec::new());
    for (path, t, mode, uid) in [
        ("ro/", tar::EntryType::Directory, 0o555, 0),
        ("ro/f", tar::EntryType::Regular, 0o4755, 7),
        ("dev/", tar::EntryType::Directory, 0o755, 0),
        ("dev/null", tar::EntryType::Char, 0o666, 0),
        ("plain", tar::EntryType::Regular, 0o644, 0),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(t);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(if uid == 0 { 0 } else { uid + 1 });
        h.set_size(0);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }
    let t = b.into_inner().unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut owners = Owners::default();
    crate::run::snapshot::unpack(&mut &t[..], d.path(), Some(&mut owners)).unwrap();
    // No device node; the closed directory stays writable until the owners are set.
    assert!(std::fs::symlink_metadata(d.path().join("dev/null")).is_err());
    let ro = std::fs::metadata(d.path().join("ro")).unwrap();
    assert_eq!(ro.permissions().mode() & 0o7777, 0o755);
    let f = std::fs::metadata(d.path().join("ro/f")).unwrap();
    assert_ne!(f.uid(), 7, "not chowned outside the namespace");
    let noted: Vec<(PathBuf, u32, u32, u32)> = owners
        .paths
        .iter()
        .cloned()
        .zip(owners.list.iter())
        .map(|(p, (_, u, g, m, _))| (p.strip_prefix(d.path()).unwrap().into(), *u, *g, *m))
        .collect();
    // Ids the process's mapping lacks (as root: none is rootless) stay root's.
    let id = |v: u32| {
        if ids().rootless().is_some_and(|r| !r.maps(v, v)) {
            0
        } else {
            v
        }
    };
    assert_eq!(
        noted,
        [
            (PathBuf::from("ro"), 0, 0, 0o555),
            (PathBuf::from("ro/f"), id(7), id(8), 0o4755),
        ]
    );
}

#[test]
fn a_chown_failure_under_a_single_id_mapping_is_explained() {
    let r = Rootless {
        user: "bob".into(),
        uid: 1000,
        gid: 1000,
        ranges: None,
    };
    let failed = |tail: &str| RunError::Failed {
        command: "chown app /f".into(),
        status: "exited with code 1".into(),
        tail: tail.into(),
    };
    let e = explain_failure(&r, failed("chown: /f: Invalid argument\n")).to_string();
    assert!(e.contains("single-id user namespace"), "{e}");
    assert!(
        e.contains("--add-subuids 100000-165535 --add-subgids 100000-165535 bob"),
        "{e}"
    );
    let e = explain_failure(&r, failed("make: *** Error 2\n")).to_string();
    assert!(!e.contains("single-id"), "{e}");
}

#[test]
fn ranges_are_read_from_the_etc_files() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("passwd"),
        "bob:x:1000:1000::/home/bob:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(d.path().join("subuid"), "bob:100000:65536\n").unwrap();
    std::fs::write(d.path().join("subgid"), "bob:100000:65536\n").unwrap();
    let r = Rootless::for_user(1000, 1000, d.path());
    assert_eq!(r.user, "bob");
    if find_tool("newuidmap").is_some() && find_tool("newgidmap").is_some() {
        assert_eq!(r.ranges.unwrap().uids, subids("bob:100000:65536"));
    } else {
        assert!(r.ranges.is_none());
    }
    std::fs::write(d.path().join("subgid"), "").unwrap();
    assert!(Rootless::for_user(1000, 1000, d.path()).ranges.is_none());
}
