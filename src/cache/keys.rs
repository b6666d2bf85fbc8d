//! Cache keys of a COPY/ADD layer. All three hash one canonical description of the layer's
//! options and entries (layer paths, modes, ownership, sizes, symlink and hard link targets,
//! heredoc contents, archive formats):
//! the shape key hashes only that; the stat key adds each source file's identity and times (the
//! fast path); the content key adds the layer's diff_id — the sha256 of its whole uncompressed
//! tar, so of every byte the layer holds (what a hit really means). A first build gets the
//! diff_id for free; files are read for it again only when a layer of the same shape was built
//! before and the stats differ.

use std::fmt::Write as _;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::build::{BuildError, CopyPlan, CopySpec, LayerOptions, Planned};
use crate::digest::{Digest, Hasher};

/// Bumped whenever the layer format or the key description changes.
const VERSION: &str = "ocipush layer cache v3";

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

    /// Whether the file was last modified (content or inode) before `t`.
    pub(crate) fn changed_before(&self, t: SystemTime) -> bool {
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let t = since.as_nanos() as i128;
        self.mtime_ns < t && self.ctime_ns < t
    }
}

/// The canonical description of a layer, without file contents.
pub(crate) struct Keys {
    base: String,
}

impl Keys {
    pub(crate) fn new(spec: &CopySpec, opts: &LayerOptions, plan: &CopyPlan) -> Keys {
        let mut base = String::with_capacity(64 * (plan.entries.len() + 4));
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
        for (key, (entry, meta)) in &plan.entries {
            let _ = write!(
                base,
                "E {:?} {:o} {} {} ",
                key.join("/"),
                meta.mode,
                meta.uid,
                meta.gid
            );
            let _ = match entry {
                Planned::Dir => writeln!(base, "dir"),
                Planned::File { size, .. } => writeln!(base, "file {size}"),
                Planned::Symlink { target } => writeln!(base, "symlink {target:?}"),
                Planned::Hardlink { target } => writeln!(base, "hardlink {target:?}"),
                Planned::Inline { data } => {
                    let digest = Digest::of(data.as_bytes());
                    writeln!(base, "inline {} {digest}", data.len())
                }
            };
        }
        for (_, format) in &plan.archives {
            let _ = writeln!(base, "A {format:?}");
        }
        Keys { base }
    }

    fn key(&self, kind: &str, extra: impl FnOnce(&mut Sha256)) -> String {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update(b"\n");
        h.update(self.base.as_bytes());
        extra(&mut h);
        hex::encode(h.finalize())
    }

    /// Paths, modes, sizes and options only.
    pub(crate) fn shape_key(&self) -> String {
        self.key("shape", |_| {})
    }

    /// Plus every source file's device, inode, size, mtime and ctime.
    pub(crate) fn stat_key(&self, stats: &[FileStat]) -> String {
        self.key("stat", |h| {
            for s in stats {
                h.update(
                    format!(
                        "{} {} {} {} {}\n",
                        s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
                    )
                    .as_bytes(),
                );
            }
        })
    }

    /// Plus the layer's diff_id.
    pub(crate) fn content_key(&self, diff_id: &Digest) -> String {
        self.key("content", |h| {
            h.update(diff_id.as_str().as_bytes());
            h.update(b"\n");
        })
    }
}

fn sources(plan: &CopyPlan) -> impl Iterator<Item = &Path> {
    let files = plan.entries.values().filter_map(|(e, _)| match e {
        Planned::File { path, .. } => Some(path.as_path()),
        _ => None,
    });
    files.chain(plan.archives.iter().map(|(p, _)| p.as_path()))
}

/// The stat of every source file and archive, in plan order.
pub(crate) fn file_stats(plan: &CopyPlan) -> Result<Vec<FileStat>, BuildError> {
    sources(plan)
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| FileStat::of(&m))
                .map_err(BuildError::io("read", p))
        })
        .collect()
}

/// The sha256 of a file's content.
pub(crate) fn hash_file(path: &Path) -> Result<(Digest, u64), BuildError> {
    let mut f = File::open(path).map_err(BuildError::io("open", path))?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(BuildError::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
