//! Unprivileged users for the rootless RUN tests, made once per machine with the real
//! shadow-utils tools (`useradd`, `usermod --add-subuids/--del-subuids`, Debian package
//! `passwd`): `ocipush-rootless` with subordinate id ranges in `/etc/subuid` and
//! `/etc/subgid`, `ocipush-tworanges` with two ranges in each, `ocipush-noranges` without
//! any. Needs root, as the RUN tests do.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use super::require_tool;

/// An unprivileged user the tests run ocipush as.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Its name.
    pub name: &'static str,
    /// Its uid and primary gid.
    pub uid: u32,
    pub gid: u32,
}

/// Serialises the edits of `/etc/passwd`, `/etc/subuid` and `/etc/subgid` (tests run as
/// threads of one process).
static EDITS: Mutex<()> = Mutex::new(());

/// The user with 65536 subordinate uids and gids (made, or given ranges, if needed).
pub fn with_ranges() -> TestUser {
    let _g = EDITS.lock().unwrap_or_else(|e| e.into_inner());
    let u = ensure_user("ocipush-rootless");
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        if ranges_of(file, u.name).is_empty() {
            ensure_file(file);
            let start = next_free(file);
            run(
                "usermod",
                &[flag, &format!("{start}-{}", start + 65535), u.name],
            );
        }
    }
    u
}

/// A fresh Debian has no /etc/subuid or /etc/subgid (no package ships them; useradd only fills
/// them when present) and usermod refuses -v/-w without them: "does not exist, you cannot use
/// the flags -v or -V". An empty file is what an admin starts from.
fn ensure_file(file: &str) {
    if !Path::new(file).exists() {
        std::fs::write(file, "").unwrap();
    }
}

/// The user with two ranges in each of `/etc/subuid` and `/etc/subgid`: 1000 ids and 65536
/// ids (apart, so they are not one range): container ids up to 66536, past either range.
pub fn with_two_ranges() -> TestUser {
    let _g = EDITS.lock().unwrap_or_else(|e| e.into_inner());
    let u = ensure_user("ocipush-tworanges");
    for (file, add, del) in [
        ("/etc/subuid", "--add-subuids", "--del-subuids"),
        ("/etc/subgid", "--add-subgids", "--del-subgids"),
    ] {
        let mut counts: Vec<u64> = ranges_of(file, u.name).iter().map(|r| r.1).collect();
        counts.sort_unstable();
        if counts == [1000, 65536] {
            continue;
        }
        ensure_file(file);
        for (start, count) in ranges_of(file, u.name) {
            run(
                "usermod",
                &[del, &format!("{start}-{}", start + count - 1), u.name],
            );
        }
        let a = next_free(file);
        run("usermod", &[add, &format!("{a}-{}", a + 999), u.name]);
        let b = next_free(file) + 1000;
        run("usermod", &[add, &format!("{b}-{}", b + 65535), u.name]);
        assert_eq!(ranges_of(file, u.name).len(), 2, "{file}");
    }
    u
}

/// The user without subordinate ids (ranges `useradd` gave it are removed).
pub fn without_ranges() -> TestUser {
    let _g = EDITS.lock().unwrap_or_else(|e| e.into_inner());
    let u = ensure_user("ocipush-noranges");
    for (file, flag) in [
        ("/etc/subuid", "--del-subuids"),
        ("/etc/subgid", "--del-subgids"),
    ] {
        for (start, count) in ranges_of(file, u.name) {
            run(
                "usermod",
                &[flag, &format!("{start}-{}", start + count - 1), u.name],
            );
        }
        assert!(
            ranges_of(file, u.name).is_empty(),
            "{file} still lists {}",
            u.name
        );
    }
    u
}

fn ensure_user(name: &'static str) -> TestUser {
    if id_of(name, "-u").is_none() {
        run(
            "useradd",
            &[
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ],
        );
    }
    TestUser {
        name,
        uid: id_of(name, "-u").expect("useradd made the user"),
        gid: id_of(name, "-g").expect("useradd made the user's group"),
    }
}

fn id_of(name: &str, flag: &str) -> Option<u32> {
    let out = Command::new("id").args([flag, name]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// `(start, count)` of every line of `file` for `name`.
fn ranges_of(file: &str, name: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == name)
                .then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?)))
                .flatten()
        })
        .collect()
}

/// The first id above every range of `file` (at least 100000).
fn next_free(file: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .fold(100_000, u64::max)
}

fn run(tool: &str, args: &[&str]) {
    let bin = require_tool(tool, "passwd");
    let out = Command::new(&bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Give `paths` (recursively) to `user`.
pub fn give(user: &TestUser, paths: &[&Path]) {
    let chown = require_tool("chown", "coreutils");
    for p in paths {
        let out = Command::new(&chown)
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(p)
            .output()
            .unwrap();
        assert!(out.status.success(), "chown {}: {:?}", p.display(), out);
    }
}
