//! `.dockerignore` as Docker reads it (moby/patternmatcher and its `ignorefile` reader):
//! `#` comments (only at the very start of a line), blank lines, surrounding space trimmed,
//! `!` exceptions, paths cleaned like Go's `filepath.Clean` with a leading `/` removed; `*`, `?`,
//! `[...]`, `\` escapes and `**` (any number of directories). The last matching pattern wins, and
//! a path is excluded when it or one of its parent directories matches.

use std::path::Path;

use super::error::BuildError;
use super::glob::{self, Tok};

/// How one pattern is matched (patternmatcher's `matchType`).
#[derive(Debug, Clone)]
enum Kind {
    /// The path equals the pattern.
    Exact,
    /// The pattern is `<prefix>**`: the path starts with the prefix.
    Prefix(String),
    /// The pattern starts with `**` and has no other meta character: the path ends with the rest.
    Suffix(String),
    /// A general glob.
    Glob(Vec<Tok>),
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn new(cleaned: String, exclusion: bool) -> Result<Pattern, String> {
        // Validate as filepath.Match would, then classify as patternmatcher does.
        glob::compile(&cleaned, false)?;
        let toks = glob::compile(&cleaned, true)?;
        let is_glob = |t: &Tok| !matches!(t, Tok::Lit(_));
        let kind = if cleaned.contains('\\') {
            // An escape makes patternmatcher fall back to a regexp.
            Kind::Glob(toks)
        } else if toks.len() == 1 && toks[0] == Tok::AnyTail {
            Kind::Prefix(String::new())
        } else if matches!(toks.first(), Some(Tok::AnyDirs | Tok::AnyTail))
            && !toks[1..].iter().any(is_glob)
        {
            Kind::Suffix(cleaned[2..].to_string())
        } else if toks.last() == Some(&Tok::AnyTail) && !toks[..toks.len() - 1].iter().any(is_glob)
        {
            Kind::Prefix(cleaned[..cleaned.len() - 2].to_string())
        } else if toks.iter().any(is_glob) {
            Kind::Glob(toks)
        } else {
            Kind::Exact
        };
        Ok(Pattern {
            cleaned,
            exclusion,
            kind,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Glob(toks) => glob::matches(toks, path),
        }
    }

    /// The literal start of the pattern, up to its first meta character.
    fn literal_prefix(&self) -> &str {
        let end = self
            .cleaned
            .find(['*', '?', '[', '\\'])
            .unwrap_or(self.cleaned.len());
        &self.cleaned[..end]
    }
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

impl DockerIgnore {
    /// No patterns: nothing is excluded.
    pub fn empty() -> DockerIgnore {
        DockerIgnore::default()
    }

    /// Parse the text of a `.dockerignore`; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<DockerIgnore, BuildError> {
        let mut out = DockerIgnore::default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| BuildError::BadIgnorePattern {
                path: origin.to_path_buf(),
                pattern: line.to_string(),
                reason,
            };
            let (exclusion, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if rest.is_empty() {
                if exclusion {
                    return Err(bad("an exception '!' must be followed by a pattern".into()));
                }
                continue;
            }
            let mut cleaned = glob::clean(rest);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            out.has_exceptions |= exclusion;
            out.patterns
                .push(Pattern::new(cleaned, exclusion).map_err(bad)?);
        }
        Ok(out)
    }

    /// A matcher for patterns given one by one, as moby/patternmatcher's `New` reads them
    /// (BuildKit passes `COPY --exclude` patterns and the `--parents` pattern to fsutil this
    /// way): surrounding space trimmed, empty ones skipped, each cleaned like Go's
    /// `filepath.Clean` *before* a leading `!` makes it an exception, and no leading `/`
    /// removed. On an invalid pattern: the pattern and why.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<DockerIgnore, (String, String)> {
        let mut out = DockerIgnore::default();
        for raw in patterns {
            let raw = raw.as_ref();
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = glob::clean(trimmed);
            let (exclusion, rest) = match cleaned.strip_prefix('!') {
                Some("") => {
                    return Err((
                        raw.to_string(),
                        "an exception '!' must be followed by a pattern".into(),
                    ));
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, cleaned),
            };
            out.has_exceptions |= exclusion;
            out.patterns
                .push(Pattern::new(rest, exclusion).map_err(|e| (raw.to_string(), e))?);
        }
        Ok(out)
    }

    /// Whether some pattern is an exception (`!pattern`): patternmatcher's `Exclusions`.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether a (non-exception) pattern could match `dir` or something below it: when false,
    /// nothing below `dir` can match and a walk need not enter it. Conservative (may say yes
    /// needlessly).
    pub fn may_match_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns.iter().filter(|p| !p.exclusion).any(|p| {
            let prefix = p.literal_prefix();
            dir_slash.starts_with(prefix) || prefix.starts_with(&dir_slash)
        })
    }

    /// Read `<root>/.dockerignore` (nothing excluded when there is none).
    pub fn load(root: &Path) -> Result<DockerIgnore, BuildError> {
        let path = root.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => DockerIgnore::parse(&String::from_utf8_lossy(&bytes), &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerIgnore::empty()),
            Err(e) => Err(BuildError::Io {
                action: "read",
                path,
                source: e,
            }),
        }
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (slash-separated, relative to the context root, cleaned) is excluded:
    /// the last pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion != excluded {
                continue;
            }
            if p.matches(path) || parents.iter().any(|parent| p.matches(parent)) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether an exception could re-include something below the excluded directory `dir`:
    /// when true, a walk must still descend into `dir`. Conservative (may say yes needlessly).
    pub fn may_include_below(&self, dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        let dir_slash = format!("{dir}/");
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let prefix = p.literal_prefix();
            dir_slash.starts_with(prefix) || prefix.starts_with(&dir_slash)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn di(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn docker_documented_examples() {
        // From the Dockerfile reference's .dockerignore section.
        let d = di("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(d.is_excluded("somedir/temporary.txt"));
        assert!(d.is_excluded("somedir/temp"));
        assert!(d.is_excluded("somedir/subdir/temporary.txt"));
        assert!(d.is_excluded("tempa"));
        assert!(d.is_excluded("tempb"));
        assert!(!d.is_excluded("temp"));
        assert!(!d.is_excluded("temporary.txt"));
        assert!(!d.is_excluded("# comment"));

        let d = di("**/*.go\n");
        assert!(d.is_excluded("main.go"));
        assert!(d.is_excluded("a/b/c.go"));
        assert!(!d.is_excluded("a/b/c.gox"));

        let d = di("*.md\n!README.md\n");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));

        let d = di("*.md\n!README*.md\nREADME-secret.md\n");
        assert!(d.is_excluded("README-secret.md"));
        assert!(!d.is_excluded("README-public.md"));
        assert!(d.is_excluded("x.md"));

        let d = di("*.md\nREADME-secret.md\n!README*.md\n");
        assert!(!d.is_excluded("README-secret.md"));
    }

    #[test]
    fn comments_blank_and_whitespace() {
        let d = di("\u{feff}# c\n\n   \n  foo  \n  # not a comment\n");
        assert!(d.is_excluded("foo"));
        assert!(d.is_excluded("# not a comment"));
        assert!(!d.is_excluded("# c"));
    }

    #[test]
    fn leading_slash_dot_and_clean() {
        let d = di("/abs\n./dot\na/../b\nc/\n");
        assert!(d.is_excluded("abs"));
        assert!(d.is_excluded("dot"));
        assert!(d.is_excluded("b"));
        assert!(!d.is_excluded("a"));
        assert!(d.is_excluded("c"));
        assert!(d.is_excluded("c/d"));
    }

    #[test]
    fn parent_directory_excludes_contents() {
        let d = di("node_modules\n");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("node_modules/x/y.js"));
        assert!(!d.is_excluded("src/node_modules"));
        let d = di("**/node_modules\n");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("src/node_modules/a"));
    }

    #[test]
    fn double_star_forms() {
        let d = di("foo/**\n");
        assert!(d.is_excluded("foo/a"));
        assert!(d.is_excluded("foo/a/b"));
        assert!(!d.is_excluded("foobar"));
        let d = di("**\n!keep\n");
        assert!(d.is_excluded("anything/at/all"));
        assert!(!d.is_excluded("keep"));
        let d = di("a/**/b\n");
        assert!(d.is_excluded("a/b"));
        assert!(d.is_excluded("a/x/y/b"));
        assert!(!d.is_excluded("a/xb"));
        let d = di("**foo\n");
        assert!(d.is_excluded("barfoo"));
        let d = di("a/**/*.txt\n");
        assert!(d.is_excluded("a/x.txt"));
        assert!(d.is_excluded("a/b/c/x.txt"));
        assert!(!d.is_excluded("b/x.txt"));
    }

    #[test]
    fn classes_and_escapes() {
        let d = di("file[0-9]\n\\*star\nq\\?\n[^a]x\n");
        assert!(d.is_excluded("file7"));
        assert!(!d.is_excluded("filex"));
        assert!(d.is_excluded("*star"));
        assert!(!d.is_excluded("xstar"));
        assert!(d.is_excluded("q?"));
        assert!(!d.is_excluded("qa"));
        assert!(d.is_excluded("bx"));
        assert!(!d.is_excluded("ax"));
    }

    #[test]
    fn exceptions_last_match_wins_and_descend() {
        let d = di("dir\n!dir/keep\n");
        assert!(d.is_excluded("dir"));
        assert!(d.is_excluded("dir/other"));
        assert!(!d.is_excluded("dir/keep"));
        assert!(!d.is_excluded("dir/keep/inner"));
        assert!(d.may_include_below("dir"));
        assert!(!d.may_include_below("elsewhere"));
        let d = di("dir\n");
        assert!(!d.may_include_below("dir"));
        let d = di("*\n!*/keep\n");
        assert!(d.may_include_below("x"));
        assert!(!d.is_excluded("x/keep"));
    }

    #[test]
    fn patterns_given_one_by_one() {
        let m = DockerIgnore::from_patterns(&["*.png", " dir/**/x ", "", "!keep.png"]).unwrap();
        assert!(m.is_excluded("a.png"));
        assert!(!m.is_excluded("keep.png"));
        assert!(!m.is_excluded("sub/a.png"));
        assert!(m.is_excluded("dir/x"));
        assert!(m.is_excluded("dir/a/b/x/inner"));
        assert!(m.has_exceptions());
        // No leading '/' is removed: such a pattern never matches a relative path.
        let m = DockerIgnore::from_patterns(&["/a"]).unwrap();
        assert!(!m.is_excluded("a"));
        let m = DockerIgnore::from_patterns(&["*/*.txt"]).unwrap();
        assert!(m.is_excluded("d/a.txt"));
        assert!(!m.is_excluded("a.txt"));
        assert!(!m.has_exceptions());
        assert!(DockerIgnore::from_patterns(&["!"]).is_err());
        assert_eq!(DockerIgnore::from_patterns(&["[z-"]).unwrap_err().0, "[z-");
        // An empty pattern list (or only blanks) matches nothing.
        let m = DockerIgnore::from_patterns(&[""]).unwrap();
        assert!(!m.is_excluded("a") && !m.may_match_below("a"));
        let m = DockerIgnore::from_patterns(&["a/b/c.txt"]).unwrap();
        assert!(m.may_match_below("a") && m.may_match_below("a/b"));
        assert!(!m.may_match_below("x") && !m.may_match_below("a/c"));
        assert!(
            DockerIgnore::from_patterns(&["**/*.json"])
                .unwrap()
                .may_match_below("x/y")
        );
    }

    #[test]
    fn invalid_patterns_are_errors() {
        for bad in ["[", "!", "a\\", "[z-"] {
            let e = DockerIgnore::parse(bad, Path::new("ctx/.dockerignore")).unwrap_err();
            assert!(e.to_string().contains("ctx/.dockerignore"), "{e}");
        }
    }
}
