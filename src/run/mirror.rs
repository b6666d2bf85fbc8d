//! The build context's files for a `RUN --mount` bind (or a cache's seed): the source
//! mirrored into a private directory by hard links (copies across filesystems) with
//! `.dockerignore` applied, so ignored files stay invisible, and a digest of that tree (paths,
//! modes, contents, link targets) for the RUN cache key. A cache seeded from it gets copies
//! ([`copy_tree`]): a writable cache must not share inodes with the context.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::RunError;
use super::{invalid, io_err};
use crate::digest::Hasher;
use crate::layers::{Context, WalkKind};

/// Copy the tree `from` into the directory `to` (modes kept, symlinks as links): a cache's
/// seed must not share inodes with the build context, as the mirror's hard links do.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> Result<(), RunError> {
    for e in std::fs::read_dir(from).map_err(io_err("read", from))? {
        let e = e.map_err(io_err("read", from))?;
        let (src, dest) = (e.path(), to.join(e.file_name()));
        let md = std::fs::symlink_metadata(&src).map_err(io_err("read", &src))?;
        if md.is_dir() {
            std::fs::create_dir(&dest).map_err(io_err("seed the cache mount", &dest))?;
            std::fs::set_permissions(&dest, md.permissions())
                .map_err(io_err("seed the cache mount", &dest))?;
            copy_tree(&src, &dest)?;
        } else if md.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(io_err("read", &src))?;
            std::os::unix::fs::symlink(target, &dest)
                .map_err(io_err("seed the cache mount", &dest))?;
        } else {
            std::fs::copy(&src, &dest).map_err(io_err("seed the cache mount", &dest))?;
        }
    }
    Ok(())
}

/// `mkdir -p base/below`, never through a symlink (it could lead out of the mirror).
pub(crate) fn make_inside(base: &Path, below: &str) {
    let mut p = base.to_path_buf();
    for c in below.split('/') {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return,
            Err(_) => {
                if std::fs::create_dir(&p).is_err() {
                    return;
                }
            }
        }
    }
}

/// Mirror the context path `source` into `root`: returns the mirror's path relative to
/// `root`, whether it is a directory, and (when `hash`) the digest of the tree. `root` and
/// the directories `ours` are left out when they are inside what is mirrored.
pub(crate) fn mirror(
    ctx: &Context,
    source: &str,
    root: &Path,
    hash: bool,
    ours: &[&Path],
) -> Result<(String, bool, Option<String>), RunError> {
    let not_found = |e: crate::layers::BuildError| {
        invalid(format!(
            "RUN --mount source {source} is not in the build context: {e}"
        ))
    };
    let rel_src = source.trim_start_matches('/');
    let src = if rel_src.is_empty() {
        None
    } else {
        if rel_src.contains(['*', '?', '[']) {
            return Err(invalid(format!(
                "RUN --mount source {source}: wildcards are not allowed in a mount source"
            )));
        }
        let (found, _) = ctx.resolve(rel_src).map_err(not_found)?;
        Some(found.into_iter().next().ok_or_else(|| {
            invalid(format!(
                "RUN --mount source {source} does not exist in the build context"
            ))
        })?)
    };
    std::fs::create_dir(root).map_err(io_err("create a bind mount mirror", root))?;
    let mut h = Hasher::new();
    let (is_dir, rel, path) = match &src {
        None => (true, String::new(), ctx.root().to_path_buf()),
        Some(s) => (s.is_dir, s.rel.clone(), s.path.clone()),
    };
    if !is_dir {
        let dest = root.join("file");
        link_or_copy(&path, &dest)?;
        if hash {
            let (d, size) = Hasher::file(&path).map_err(io_err("read", &path))?;
            let mode = std::fs::metadata(&path)
                .map_err(io_err("read", &path))?
                .permissions()
                .mode();
            h.update(format!("F {mode:o} {size} {d}\n").as_bytes());
        }
        return Ok(("file".into(), false, hash.then(|| h.finish().0.to_string())));
    }
    let top = root.join("dir");
    std::fs::create_dir(&top).map_err(io_err("create a bind mount mirror", &top))?;
    let mode = std::fs::metadata(&path)
        .map_err(io_err("read", &path))?
        .permissions()
        .mode()
        & 0o7777;
    std::fs::set_permissions(&top, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("create a bind mount mirror", &top))?;
    h.update(format!("D . {mode:o}\n").as_bytes());
    // ocipush's state inside the context (a cache dir in the project): the mirror being made
    // is left out of what it mirrors, or it would copy itself without end, and so are the
    // snapshots, cache mounts and spool, which are not the user's files.
    let patterns: Vec<String> = match std::fs::canonicalize(&path) {
        Ok(p) => std::iter::once(root)
            .chain(ours.iter().copied())
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .filter_map(|d| {
                d.strip_prefix(&p)
                    .ok()
                    .filter(|below| !below.as_os_str().is_empty())
                    .map(|below| below.to_string_lossy().into_owned())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let own = (!patterns.is_empty())
        .then(|| crate::layers::DockerIgnore::from_patterns(&patterns))
        .transpose()
        .map_err(|(p, why)| invalid(format!("cannot leave ocipush's directory {p} out: {why}")))?;
    let filter = crate::layers::WalkFilter {
        include: None,
        exclude: own.as_ref(),
    };
    ctx.walk_each(&rel, filter, &mut |e| {
        let dest = top.join(&e.rel);
        match &e.kind {
            WalkKind::Dir { mode } => {
                std::fs::create_dir(&dest)
                    .and_then(|_| {
                        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(*mode))
                    })
                    .map_err(crate::layers::BuildError::io("mirror", &dest))?;
                h.update(format!("D {} {mode:o}\n", e.rel).as_bytes());
            }
            WalkKind::File { mode, size } => {
                link_or_copy(&e.path, &dest).map_err(|e| match e {
                    RunError::Io { source, path, .. } => crate::layers::BuildError::Io {
                        action: "mirror",
                        path,
                        source,
                    },
                    other => crate::layers::BuildError::Io {
                        action: "mirror",
                        path: dest.clone(),
                        source: std::io::Error::other(other.to_string()),
                    },
                })?;
                if hash {
                    let (d, _) = Hasher::file(&e.path)
                        .map_err(crate::layers::BuildError::io("read", &e.path))?;
                    h.update(format!("F {} {mode:o} {size} {d}\n", e.rel).as_bytes());
                }
            }
            WalkKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(crate::layers::BuildError::io("mirror", &dest))?;
                h.update(format!("L {} {target}\n", e.rel).as_bytes());
            }
        }
        Ok(())
    })
    .map_err(not_found)?;
    Ok(("dir".into(), true, hash.then(|| h.finish().0.to_string())))
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), RunError> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(io_err("copy a build context file for a bind mount", from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_mirror_hides_ignored_files_and_its_digest_follows_content() {
        let ctx_dir = tempfile::tempdir().unwrap();
        let c = ctx_dir.path();
        std::fs::create_dir_all(c.join("src/sub")).unwrap();
        std::fs::write(c.join("src/a.txt"), "a").unwrap();
        std::fs::write(c.join("src/sub/secret.env"), "x").unwrap();
        std::fs::write(c.join(".dockerignore"), "**/*.env\n").unwrap();
        let out = tempfile::tempdir().unwrap();
        let mirror_of = |n: &str| {
            let ctx = Context::open(c).unwrap();
            let root = out.path().join(n);
            let (rel, dir, digest) = mirror(&ctx, "/src", &root, true, &[]).unwrap();
            assert!(dir);
            (root.join(rel), digest.unwrap())
        };
        let (m1, d1) = mirror_of("one");
        assert_eq!(std::fs::read_to_string(m1.join("a.txt")).unwrap(), "a");
        assert!(m1.join("sub").is_dir());
        assert!(!m1.join("sub/secret.env").exists());
        let (_, same) = mirror_of("two");
        assert_eq!(d1, same);
        std::fs::write(c.join("src/a.txt"), "b").unwrap();
        let (_, changed) = mirror_of("three");
        assert_ne!(d1, changed);
        // An ignored file changing does not change the digest.
        std::fs::write(c.join("src/sub/secret.env"), "y").unwrap();
        let (_, again) = mirror_of("four");
        assert_eq!(changed, again);
        // Wildcards are not globbed in a mount source.
        let ctx = Context::open(c).unwrap();
        assert!(mirror(&ctx, "/src/*", &out.path().join("five"), true, &[]).is_err());
    }

    #[test]
    fn ocipush_s_own_directories_inside_the_context_are_not_mirrored() {
        let ctx_dir = tempfile::tempdir().unwrap();
        let c = ctx_dir.path();
        std::fs::write(c.join("app.txt"), "app").unwrap();
        // The cache dir in the project, holding snapshots and this mirror; a spool too.
        let state = c.join(".cache/ocipush");
        let spool = c.join("spool");
        std::fs::create_dir_all(state.join("run/snapshots/abc")).unwrap();
        std::fs::write(state.join("run/snapshots/abc/big"), "layer").unwrap();
        std::fs::create_dir_all(&spool).unwrap();
        std::fs::write(spool.join("blob"), "blob").unwrap();
        let ctx = Context::open(c).unwrap();
        let root = state.join("run/snapshots/.tmp-x/ctx-0");
        std::fs::create_dir_all(root.parent().unwrap()).unwrap();
        let (rel, dir, _) = mirror(&ctx, "/", &root, true, &[&state, &spool]).unwrap();
        assert!(dir);
        let m = root.join(rel);
        assert_eq!(std::fs::read_to_string(m.join("app.txt")).unwrap(), "app");
        assert!(
            m.join(".cache").is_dir(),
            "only ocipush's own directory is left out"
        );
        assert!(!m.join(".cache/ocipush").exists());
        assert!(!m.join("spool").exists());
    }
}
