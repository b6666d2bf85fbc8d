//! `RUN --mount`s on the host side: each mount's source prepared, its part of the cache key,
//! and the [`MountOp`]s the sandbox performs, following BuildKit's `dispatchRunMounts`
//! (dockerfile2llb `convert_runmount.go`) and its executor:
//!
//! - **bind** from the build context: the source's files (`.dockerignore` applied) mirrored
//!   into a private directory by hard links (copies across filesystems), so ignored files stay
//!   invisible; keyed by a digest of that tree (paths, modes, contents, link targets). From a
//!   stage or image: an overlay of its layers' snapshots, keyed by their chain id. The source
//!   path is resolved inside its root (in the image's [`RootFs`], then again in the sandbox
//!   with `openat2(RESOLVE_IN_ROOT)`), so `..` and symlinks never leave it. Read-only (a
//!   `MS_RDONLY` remount) unless `rw`, whose writes go to a throw-away upper directory. With
//!   the copy snapshotter (no overlay, [`super::snapshotter`]), the layers (or the writable
//!   context mirror) are merged into a fresh directory that is bound instead.
//! - **cache**: `<state>/run/cache-mounts/<sha256(id)>` (the cache directory when there is one,
//!   else the build's spool directory), made with the mount's mode, uid and gid and, with
//!   `from`, filled with that source's files (copied; keyed like a bind); `shared`
//!   RUNs hold a shared `flock`, `locked` ones an exclusive one (so they wait), `private`
//!   ones take the first instance (`<hash>-<n>`) nobody holds. Keyed by its spec.
//! - **tmpfs**: a fresh tmpfs (`size=`); keyed by its spec.
//! - **secret**: the content read from the build's [`BuildSecrets`] now, written by the
//!   sandbox into a tmpfs of its own (never to disk) and bound read-only on the target,
//!   and/or given as an environment variable; keyed by its spec, never by its content. A
//!   missing secret skips the mount unless it is `required`.
//!
//! Targets the image lacks are made for the RUN and removed after ([`Stubs`]); a target inside
//! another mount is made by the sandbox in that mount (mounts go on outermost first).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RunError;
use super::cache_mount::{cache_dir, init_cache_dir};
use super::mirror::{copy_tree, make_inside, mirror};
use super::sandbox::{MountOp, MountWhat};
use super::snapshot::{self, Snapshots};
use super::stubs::Stubs;
use super::{invalid, io_err};
use crate::blob::Blob;
use crate::digest::Digest;
use crate::layers::Context;
use crate::plan::RunMount;
use crate::rootfs::{Kind, RootFs};
use crate::secrets::BuildSecrets;

/// Where a bind mount's files come from.
pub(crate) enum MountSource {
    /// Not a bind mount.
    None,
    /// The build context (or a directory named context).
    Dir(Arc<Context>),
    /// A stage or an image.
    Layers {
        /// Its layers (bottom first) and their diff ids.
        layers: Vec<Blob>,
        diff_ids: Vec<Digest>,
        /// Its filesystem (to resolve the source path).
        fs: RootFs,
        /// For messages.
        name: String,
    },
}

/// A bind source, prepared.
enum Bound {
    /// A mirror of context files: `root` holds `rel`.
    Mirror { root: PathBuf, rel: String },
    /// The resolved path `rel` in the overlay of `chains` (bottom first).
    Layers { chains: Vec<Digest>, rel: String },
}

/// One mount after [`prepare`].
struct Item {
    mount: RunMount,
    bound: Option<Bound>,
    /// The bind source is a directory (else a file).
    source_dir: bool,
}

/// The mounts of one RUN, prepared before the cache lookup.
pub(crate) struct Mounts {
    items: Vec<Item>,
    key: Vec<serde_json::Value>,
    /// Holds the mirrors, mount points and throw-away upper directories.
    dir: PathBuf,
}

impl Drop for Mounts {
    fn drop(&mut self) {
        snapshot::remove_all(&self.dir);
    }
}

/// Unpacks the snapshots of a stage's or image's layers (layers, diff ids, name).
pub(crate) type EnsureFn<'a> = dyn Fn(&[Blob], &[Digest], &str) -> Result<(), RunError> + 'a;
/// Fills a new cache directory with a path of a stage's or image's layers (layers, name, path,
/// directory).
pub(crate) type SeedFn<'a> = dyn Fn(&[Blob], &str, &str, &Path) -> Result<(), RunError> + 'a;

/// What [`Mounts::ready`] works with.
pub(crate) struct ReadyAt<'a> {
    /// The stage's filesystem (targets resolve in it).
    pub(crate) fs: &'a RootFs,
    /// The RUN's upper directory (targets are stubbed there).
    pub(crate) upper: &'a Path,
    pub(crate) stubs: &'a mut Stubs,
    /// Cache mounts live under `<state>/run/cache-mounts`.
    pub(crate) state: &'a Path,
    pub(crate) secrets: &'a BuildSecrets,
    pub(crate) ensure: &'a EnsureFn<'a>,
    pub(crate) seed: &'a SeedFn<'a>,
    /// The mounts' sources (aligned with them).
    pub(crate) sources: &'a [MountSource],
    /// The copy snapshotter ([`super::snapshotter`]): what would be an overlay (a stage, an
    /// image, a writable context) is a copy of its layers, bound.
    pub(crate) copy: bool,
    /// The build's cancellation: it ends a wait for a cache mount's lock.
    pub(crate) cancel: &'a tokio_util::sync::CancellationToken,
}

/// What the sandbox needs for the mounts, and what must live while it runs.
pub(crate) struct Ready {
    pub(crate) ops: Vec<MountOp>,
    /// `NAME=value` of `env=` secrets.
    pub(crate) env: Vec<String>,
    /// Cache locks, released when dropped.
    _locks: Vec<File>,
}

/// Prepare `mounts` (with their `sources`, aligned) in a fresh directory of `snaps`; `hash`:
/// whether the cache key is needed (context files are hashed only then). `ours`: ocipush's
/// own directories, never mirrored from a context they are inside of.
pub(crate) fn prepare(
    mounts: &[RunMount],
    sources: &[MountSource],
    snaps: &Snapshots,
    hash: bool,
    ours: &[&Path],
) -> Result<Mounts, RunError> {
    if sources
        .iter()
        .any(|s| matches!(s, MountSource::Layers { .. }))
    {
        // Stage and image overlays end with this lower directory (a lone lower directory
        // mounts read-only only on newer kernels).
        snaps.empty()?;
    }
    let mut out = Mounts {
        items: Vec::new(),
        key: Vec::new(),
        dir: snaps.temp()?,
    };
    for (i, m) in mounts.iter().enumerate() {
        let src = sources.get(i).unwrap_or(&MountSource::None);
        let (bound, source_dir, key) = match m {
            RunMount::Bind {
                target,
                source,
                readwrite,
                ..
            } => {
                let (bound, dir, content) = bind_source(src, source, i, &out.dir, hash, ours)
                    .map_err(|e| match e {
                        RunError::Invalid { what } if what.is_empty() => invalid(format!(
                            "internal error: no source prepared for the bind mount on {target}"
                        )),
                        e => e,
                    })?;
                let key = serde_json::json!({
                    "bind": target, "source": source, "rw": readwrite, "content": content,
                });
                (Some(bound), dir, key)
            }
            RunMount::Cache {
                target,
                from,
                source,
                id,
                sharing,
                mode,
                uid,
                gid,
                readonly,
            } => {
                let (seed, content) = match from {
                    None => (None, None),
                    Some(_) => {
                        let (bound, dir, content) =
                            bind_source(src, source, i, &out.dir, hash, ours)?;
                        if !dir {
                            return Err(invalid(format!(
                                "RUN --mount=type=cache on {target}: its source {source} is not a directory"
                            )));
                        }
                        (Some(bound), content)
                    }
                };
                (
                    seed,
                    true,
                    serde_json::json!({
                        "cache": target, "id": id, "sharing": sharing.name(), "mode": mode,
                        "uid": uid, "gid": gid, "ro": readonly, "source": source,
                        "content": content,
                    }),
                )
            }
            RunMount::Tmpfs { target, size } => (
                None,
                true,
                serde_json::json!({ "tmpfs": target, "size": size }),
            ),
            RunMount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => (
                None,
                false,
                serde_json::json!({
                    "secret": id, "target": target, "env": env, "required": required,
                    "mode": mode, "uid": uid, "gid": gid,
                }),
            ),
        };
        out.key.push(key);
        out.items.push(Item {
            mount: m.clone(),
            bound,
            source_dir,
        });
    }
    // Mount points of nested targets inside a read-only context mirror are made in the mirror.
    let targets: Vec<String> = out
        .items
        .iter()
        .filter_map(|it| it.mount.target().map(str::to_string))
        .collect();
    for it in &out.items {
        let (Some(Bound::Mirror { root, rel }), Some(t)) = (&it.bound, it.mount.target()) else {
            continue;
        };
        for inner in &targets {
            if let Some(below) = inner.strip_prefix(&format!("{t}/")) {
                make_inside(&root.join(rel), below);
            }
        }
    }
    Ok(out)
}

/// Prepare the files `source` of `src` for mount number `i` (a mirror under `dir` for the
/// context): what is mounted, whether it is a directory, and its part of the cache key. An
/// empty [`RunError::Invalid`] when `src` is [`MountSource::None`].
fn bind_source(
    src: &MountSource,
    source: &str,
    i: usize,
    dir: &Path,
    hash: bool,
    ours: &[&Path],
) -> Result<(Bound, bool, Option<String>), RunError> {
    match src {
        MountSource::Dir(ctx) => {
            let root = dir.join(format!("ctx-{i}"));
            let (rel, is_dir, digest) = mirror(ctx, source, &root, hash, ours)?;
            Ok((Bound::Mirror { root, rel }, is_dir, digest))
        }
        MountSource::Layers {
            diff_ids, fs, name, ..
        } => {
            let r = fs
                .resolve(source, true)
                .map_err(|e| invalid(format!("RUN --mount source {source} in {name}: {e}")))?;
            let meta = r.node.and_then(|_| fs.get(&r.comps)).ok_or_else(|| {
                invalid(format!(
                    "RUN --mount source {source} does not exist in {name}"
                ))
            })?;
            let is_dir = match meta.kind {
                Kind::Dir => true,
                Kind::File => false,
                _ => {
                    return Err(invalid(format!(
                        "RUN --mount source {source} in {name} is neither a file nor a directory"
                    )));
                }
            };
            let chains = snapshot::chain_ids(diff_ids);
            let top = chains.last().map(|d| d.to_string());
            Ok((
                Bound::Layers {
                    chains,
                    rel: r.comps.join("/"),
                },
                is_dir,
                top,
            ))
        }
        MountSource::None => Err(invalid(String::new())),
    }
}

impl Mounts {
    /// The mounts' part of the RUN cache key (`None` without mounts).
    pub(crate) fn key(&self) -> Option<serde_json::Value> {
        (!self.key.is_empty()).then(|| serde_json::Value::Array(self.key.clone()))
    }

    /// Everything the sandbox needs: snapshots of layer sources unpacked, cache directories
    /// made (seeded) and locked, secrets read, targets stubbed in the upper directory.
    pub(crate) fn ready(&self, at: ReadyAt<'_>) -> Result<Ready, RunError> {
        let ReadyAt {
            fs,
            upper,
            stubs,
            state,
            secrets,
            ensure,
            seed,
            sources,
            copy,
            cancel,
        } = at;
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        let depth = |i: &usize| {
            self.items[*i]
                .mount
                .target()
                .map_or(0, |t| t.split('/').count())
        };
        order.sort_by_key(depth);
        let targets: Vec<&str> = self.items.iter().filter_map(|i| i.mount.target()).collect();
        let nested = |t: &str| targets.iter().any(|o| t.starts_with(&format!("{o}/")));
        let mut ready = Ready {
            ops: Vec::new(),
            env: Vec::new(),
            _locks: Vec::new(),
        };
        for i in order {
            let it = &self.items[i];
            let n = ready.ops.len();
            let (what, readonly, dir) = match (&it.mount, &it.bound) {
                (RunMount::Bind { readwrite, .. }, Some(Bound::Mirror { root, rel })) => {
                    if *readwrite && copy {
                        (
                            MountWhat::Bind {
                                root: self.copied(n, std::slice::from_ref(root))?,
                                rel: rel.clone(),
                            },
                            false,
                            it.source_dir,
                        )
                    } else if *readwrite {
                        let (opts, at) = self.rw_overlay(n, std::slice::from_ref(root))?;
                        (
                            MountWhat::Overlay {
                                opts,
                                at,
                                rel: rel.clone(),
                            },
                            false,
                            it.source_dir,
                        )
                    } else {
                        (
                            MountWhat::Bind {
                                root: root.clone(),
                                rel: rel.clone(),
                            },
                            true,
                            it.source_dir,
                        )
                    }
                }
                (RunMount::Bind { readwrite, .. }, Some(Bound::Layers { chains, rel })) => {
                    if let Some(MountSource::Layers {
                        layers,
                        diff_ids,
                        name,
                        ..
                    }) = sources.get(i)
                    {
                        ensure(layers, diff_ids, name)?;
                    }
                    let mut lowers: Vec<PathBuf> = chains
                        .iter()
                        .rev()
                        .map(|c| PathBuf::from(Snapshots::rel(c)))
                        .collect();
                    lowers.push(PathBuf::from("empty"));
                    let what = if copy {
                        MountWhat::Bind {
                            root: self.copied(n, &lowers)?,
                            rel: rel.clone(),
                        }
                    } else {
                        let (opts, at) = if *readwrite {
                            self.rw_overlay(n, &lowers)?
                        } else {
                            let at = self.mount_point(n)?;
                            (format!("lowerdir={}", join_lowers(&lowers)), at)
                        };
                        MountWhat::Overlay {
                            opts,
                            at,
                            rel: rel.clone(),
                        }
                    };
                    (what, !*readwrite, it.source_dir)
                }
                (
                    RunMount::Cache {
                        id,
                        sharing,
                        mode,
                        uid,
                        gid,
                        readonly,
                        ..
                    },
                    bound,
                ) => {
                    let (dir, lock) = cache_dir(
                        &state.join("run").join("cache-mounts"),
                        id,
                        *sharing,
                        cancel,
                    )?;
                    let created = init_cache_dir(&dir, *mode, *uid, *gid)?;
                    if created && let Some(b) = bound {
                        // A new cache starts with its `from`'s files (BuildKit makes the cache
                        // from that state); a failed seed leaves no cache behind.
                        let seeded = match (b, sources.get(i)) {
                            (Bound::Mirror { root, rel }, _) => copy_tree(&root.join(rel), &dir),
                            (
                                Bound::Layers { rel, .. },
                                Some(MountSource::Layers { layers, name, .. }),
                            ) => seed(layers, name, &format!("/{rel}"), &dir),
                            _ => Ok(()),
                        };
                        if let Err(e) = seeded {
                            snapshot::remove_all(&dir);
                            return Err(e);
                        }
                    }
                    ready._locks.push(lock);
                    (
                        MountWhat::Bind {
                            root: dir,
                            rel: String::new(),
                        },
                        *readonly,
                        true,
                    )
                }
                (RunMount::Tmpfs { size, .. }, _) => {
                    let mut opts = "mode=1777".to_string();
                    if let Some(s) = size {
                        opts.push_str(&format!(",size={s}"));
                    }
                    (MountWhat::Tmpfs { opts }, false, true)
                }
                (
                    RunMount::Secret {
                        id,
                        target,
                        env,
                        required,
                        mode,
                        uid,
                        gid,
                    },
                    _,
                ) => {
                    let data = secrets
                        .read(id)
                        .map_err(|e| invalid(format!("RUN --mount=type=secret: {e}")))?;
                    let Some(data) = data else {
                        if *required {
                            return Err(invalid(format!(
                                "secret {id} is required by RUN --mount=type=secret,required but the build has no such secret; pass --secret id={id},src=FILE (or env=VARIABLE)"
                            )));
                        }
                        continue;
                    };
                    if let Some(var) = env {
                        if data.contains(&0) {
                            return Err(invalid(format!(
                                "secret {id} contains a NUL byte, so it cannot be the environment variable {var}"
                            )));
                        }
                        ready
                            .env
                            .push(format!("{var}={}", String::from_utf8_lossy(&data)));
                    }
                    if target.is_none() {
                        continue;
                    }
                    let at = self.mount_point(n)?;
                    (
                        MountWhat::Secret {
                            at,
                            data,
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        },
                        true,
                        false,
                    )
                }
                (RunMount::Bind { target, .. }, None) => {
                    return Err(invalid(format!(
                        "internal error: the bind mount on {target} was not prepared"
                    )));
                }
            };
            let Some(target) = it.mount.target() else {
                continue;
            };
            let (target, create) = if nested(target) {
                (target.trim_start_matches('/').to_string(), Some(dir))
            } else {
                (stubs.ensure(fs, upper, target, dir, (0, 0), false)?, None)
            };
            ready.ops.push(MountOp {
                what,
                target,
                create,
                readonly,
                shown: it.mount.target().unwrap_or_default().to_string(),
            });
        }
        Ok(ready)
    }

    /// A fresh empty directory to mount on (host side).
    fn mount_point(&self, n: usize) -> Result<PathBuf, RunError> {
        let at = self.dir.join(format!("mnt-{n}"));
        std::fs::create_dir(&at).map_err(io_err("create a mount point", &at))?;
        Ok(at)
    }

    /// The copy snapshotter's stand-in for an overlay of `lowers` (topmost first; relative to
    /// the snapshot root or absolute): a fresh directory they are merged into, to bind (what a
    /// command writes there is thrown away with it).
    fn copied(&self, n: usize, lowers: &[PathBuf]) -> Result<PathBuf, RunError> {
        let at = self.mount_point(n)?;
        let base = self.dir.parent().unwrap_or(&self.dir);
        let abs: Vec<PathBuf> = lowers.iter().map(|l| base.join(l)).collect();
        super::copyroot::materialise(&abs, &at)?;
        Ok(at)
    }

    /// Overlay options (relative to the snapshot root or absolute) with a throw-away upper
    /// directory, and where to mount it.
    fn rw_overlay(&self, n: usize, lowers: &[PathBuf]) -> Result<(String, PathBuf), RunError> {
        let at = self.mount_point(n)?;
        let upper = self.dir.join(format!("up-{n}"));
        let work = self.dir.join(format!("wk-{n}"));
        for d in [&upper, &work] {
            std::fs::create_dir(d).map_err(io_err("create a mount's upper directory", d))?;
        }
        Ok((
            format!(
                "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
                join_lowers(lowers),
                upper.display(),
                work.display()
            ),
            at,
        ))
    }
}

fn join_lowers(lowers: &[PathBuf]) -> String {
    lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}
