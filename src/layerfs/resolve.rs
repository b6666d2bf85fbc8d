//! Resolving `COPY --from` sources inside the source's root, as BuildKit does: its Dockerfile
//! frontend copies with `FollowSymlinks: true` (dockerfile2llb/convert_copy.go), so fsutil's
//! `copy.Copy` resolves each source with continuity's `fs.RootPath` — every symlink on the
//! way is followed, the last component's too; `..` stops at the root; an absolute target is
//! relative to the source root; a relative one to the directory holding the link; at most 255
//! links are followed. A component that does not exist is taken as it is (the path then does
//! not exist). Wildcards (fsutil `ResolveWildcards`): the components before the first one with
//! a wildcard are resolved as above, then the rest is matched, as Go's `filepath.Match`,
//! against the paths below that directory at the same depth, without following symlinks
//! there; each match is then resolved in turn.

use super::merged::{Kind, View};
use crate::layers::glob;

/// continuity's `maxSymlinkLimit`-like bound (`linksWalked > 255` fails).
pub(crate) const MAX_LINKS: usize = 255;

/// Why a path could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// More than [`MAX_LINKS`] symlinks on the way (a loop).
    TooManyLinks,
}

/// The components of `p`, cleaned lexically with `..` stopping at the root (Go's
/// `filepath.Join("/", p)`).
pub(crate) fn components(p: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// `path` resolved in `view`: the root-relative path with no symlink on it (`""` is the root).
pub(crate) fn root_path(view: &View, path: &str) -> Result<String, ResolveError> {
    let mut path = components(path).join("/");
    let mut links = 0;
    'walk: loop {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut resolved = String::new();
        for (i, c) in comps.iter().enumerate() {
            let here = if resolved.is_empty() {
                (*c).to_string()
            } else {
                format!("{resolved}/{c}")
            };
            if let Some(node) = view.get(&here)
                && let Kind::Symlink(target) = &node.kind
            {
                links += 1;
                if links > MAX_LINKS {
                    return Err(ResolveError::TooManyLinks);
                }
                // Restart from the root with the target in place of the link, cleaned
                // lexically as continuity's `filepath.Join(newdir, link)` does.
                let base = if target.starts_with('/') {
                    ""
                } else {
                    resolved.as_str()
                };
                let rest = comps[i + 1..].join("/");
                let next = components(&format!("{base}/{target}/{rest}")).join("/");
                path = next;
                continue 'walk;
            }
            resolved = here;
        }
        return Ok(resolved);
    }
}

/// Whether `p` has a wildcard, as fsutil's `containsWildcards`: `*`, `?` or `[` not escaped
/// by `\`.
pub(crate) fn has_wildcards(p: &str) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Expand the wildcard source `src`: the matching root-relative paths, sorted (each still to be
/// resolved with [`root_path`]). `Err` for a bad pattern or a symlink loop in its fixed part.
pub(crate) fn expand(view: &View, src: &str) -> Result<Vec<String>, String> {
    let comps = components(src);
    let split = comps
        .iter()
        .position(|c| has_wildcards(c))
        .unwrap_or(comps.len());
    let fixed = comps[..split].join("/");
    let pattern = comps[split..].join("/");
    if pattern.is_empty() {
        return Ok(vec![fixed]);
    }
    let toks = glob::compile(&pattern, false)?;
    let depth = comps.len() - split;
    let base = root_path(view, &fixed)
        .map_err(|_| format!("too many levels of symbolic links in /{fixed}"))?;
    if !view.is_dir(&base) {
        return Ok(vec![]);
    }
    // Every path `depth` components below `base` — listed or implied by deeper entries.
    let mut candidates: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for (rel, _, _) in view.below(&base) {
        let cut = rel
            .match_indices('/')
            .nth(depth - 1)
            .map_or(rel, |(at, _)| &rel[..at]);
        if cut.split('/').count() == depth {
            candidates.insert(cut);
        }
    }
    Ok(candidates
        .into_iter()
        .filter(|rel| glob::matches(&toks, rel))
        .map(|rel| {
            if base.is_empty() {
                rel.to_string()
            } else {
                format!("{base}/{rel}")
            }
        })
        .collect())
}
