//! Cache keys of a COPY/ADD layer. All three hash one canonical description of the layer's
//! options and entries (layer paths, modes, ownership, sizes, symlink and hard link targets,
//! heredoc contents, archive formats):
//! the shape key hashes only that; the stat key adds each source file's identity and times (the
//! fast path); the content key adds the layer's diff_id — the sha256 of its whole uncompressed
//! tar, so of every byte the layer holds (what a hit really means). A first build gets the
//! diff_id for free; files are read for it again only when a layer of the same shape was built
//! before and the stats differ.
//!
//! Descriptions and stats are hashed as they are read, never held: a 100k-file layer's keys
//! cost no memory beyond the hash states.

use std::fmt::Write as _;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, Hasher};
use crate::layers::{BuildError, CopyPlan, CopySpec, LayerOptions, Planned};

/// Bumped whenever the layer format or the key description changes.
const VERSION: &str = "ocipush layer cache v4";

/// What identifies a file's state without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct FileStat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStat {
    pub(crate) fn of(m: &Metadata) -> FileStat {
        FileStat {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// The stats of every source file of a layer, summed up: their hash, and the newest change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    digest: [u8; 32],
    newest_ns: i128,
}

impl Stats {
    /// Whether every file was last modified (content or inode) before `t`.
    pub(crate) fn changed_before(&self, t: SystemTime) -> bool {
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            return false;
        };
        self.newest_ns < since.as_nanos() as i128
    }
}

/// The canonical description of a layer, without file contents, hashed.
pub(crate) struct Keys {
    base: Sha256,
}

/// Feeds formatted text to a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.update(s.as_bytes());
        Ok(())
    }
}

impl Keys {
    pub(crate) fn new(spec: &CopySpec, opts: &LayerOptions, plan: &CopyPlan<'_>) -> Keys {
        let mut h = Sha256::new();
        let mut base = HashWriter(&mut h);
        let _ = writeln!(base, "{VERSION}");
        let _ = writeln!(base, "compression {}", opts.compression.name());
        let _ = writeln!(base, "epoch {}", opts.epoch);
        let _ = writeln!(
            base,
            "spec {:?} {:?} {:?} {:?} {} {:?} {}",
            spec.srcs,
            spec.dest,
            spec.chown,
            spec.chmod,
            spec.extract_archives,
            spec.exclude,
            spec.parents
        );
        let _ = plan.entries.for_each(|path, entry, meta| {
            let _ = write!(
                base,
                "E {:?} {:o} {} {} ",
                path, meta.mode, meta.uid, meta.gid
            );
            match entry {
                Planned::Dir => writeln!(base, "dir"),
                Planned::File { size, .. } => writeln!(base, "file {size}"),
                Planned::Symlink { target } => writeln!(base, "symlink {target:?}"),
                Planned::Hardlink { target } => writeln!(base, "hardlink {target:?}"),
                Planned::Inline { data } => {
                    let digest = Digest::of(data.as_bytes());
                    writeln!(base, "inline {} {digest}", data.len())
                }
            }
        });
        for (_, format) in &plan.archives {
            let _ = writeln!(base, "A {format:?}");
        }
        Keys { base: h }
    }

    fn key(&self, kind: &str, extra: impl FnOnce(&mut Sha256)) -> String {
        let mut h = self.base.clone();
        h.update(b"key ");
        h.update(kind.as_bytes());
        h.update(b"\n");
        extra(&mut h);
        hex::encode(h.finalize())
    }

    /// Paths, modes, sizes and options only.
    pub(crate) fn shape_key(&self) -> String {
        self.key("shape", |_| {})
    }

    /// Plus every source file's device, inode, size, mtime and ctime.
    pub(crate) fn stat_key(&self, stats: &Stats) -> String {
        self.key("stat", |h| h.update(stats.digest))
    }

    /// Plus the layer's diff_id.
    pub(crate) fn content_key(&self, diff_id: &Digest) -> String {
        self.key("content", |h| {
            h.update(diff_id.as_str().as_bytes());
            h.update(b"\n");
        })
    }
}

/// The stats of every source file and archive, in plan order.
pub(crate) fn file_stats(plan: &CopyPlan<'_>) -> Result<Stats, BuildError> {
    let mut h = Sha256::new();
    let mut newest_ns = i128::MIN;
    let mut stat = |p: &Path| {
        let s = std::fs::metadata(p)
            .map(|m| FileStat::of(&m))
            .map_err(BuildError::io("read", p))?;
        let _ = writeln!(
            HashWriter(&mut h),
            "{} {} {} {} {}",
            s.dev,
            s.ino,
            s.size,
            s.mtime_ns,
            s.ctime_ns
        );
        newest_ns = newest_ns.max(s.mtime_ns).max(s.ctime_ns);
        Ok::<(), BuildError>(())
    };
    plan.entries.for_each(|_, e, _| match e {
        Planned::File { path, .. } => stat(path),
        _ => Ok(()),
    })?;
    for (p, _) in &plan.archives {
        stat(p)?;
    }
    Ok(Stats {
        digest: h.finalize().into(),
        newest_ns,
    })
}

/// The sha256 of a file's content.
pub(crate) fn hash_file(path: &Path) -> Result<(Digest, u64), BuildError> {
    Hasher::file(path).map_err(BuildError::io("read", path))
}
