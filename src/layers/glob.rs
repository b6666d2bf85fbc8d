//! Glob patterns as Go's `filepath.Match` and moby's patternmatcher read them: `*`, `?`,
//! `[...]` classes (`^` negates, ranges, `\` escapes), `\` escapes, and (patternmatcher only)
//! `**`. Matching is a dynamic program over (token, character): linear in the pattern times
//! the path, whatever the input, so hostile patterns cannot make it blow up.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// A literal character.
    Lit(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `?`: one character except `/`.
    Quest,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` followed by more pattern: zero or more whole leading path segments, `(.*/)?`.
    AnyDirs,
    /// `**` at the end: anything at all, `.*`.
    AnyTail,
}

/// Parse a `[` class starting after the `[`; returns the token and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Tok, usize), String> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(i) {
            None => return Err("unterminated character class '['".into()),
            Some(']') if !ranges.is_empty() => return Ok((Tok::Class { negated, ranges }, i + 1)),
            _ => {}
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("unterminated character class '['".into()),
        Some('-') | Some(']') => {
            Err("'-' or ']' in a character class must be escaped with '\\'".into())
        }
        Some('\\') => match chars.get(i + 1) {
            Some(c) => Ok((*c, i + 2)),
            None => Err("pattern ends with an unfinished '\\' escape".into()),
        },
        Some(c) => Ok((*c, i + 1)),
    }
}

/// Compile a pattern. With `double_star`, `**` is recognised (patternmatcher); otherwise it is
/// two `*` (filepath.Match).
pub(crate) fn compile(pattern: &str, double_star: bool) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if double_star && chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                toks.push(if i == chars.len() {
                    Tok::AnyTail
                } else {
                    Tok::AnyDirs
                });
            }
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Quest),
            '[' => {
                let (t, next) = parse_class(&chars, i)?;
                toks.push(t);
                i = next;
            }
            '\\' => match chars.get(i) {
                Some(n) => {
                    toks.push(Tok::Lit(*n));
                    i += 1;
                }
                None => return Err("pattern ends with an unfinished '\\' escape".into()),
            },
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Whether a pattern has glob meta characters (`*`, `?`, `[`, `\`).
pub(crate) fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// Whether the compiled `toks` match all of `text`.
pub(crate) fn matches(toks: &[Tok], text: &str) -> bool {
    let s: Vec<char> = text.chars().collect();
    let n = s.len();
    // next[j]: whether toks[t+1..] matches s[j..]; computed from the last token backwards.
    let mut next = vec![false; n + 1];
    next[n] = true;
    let mut cur = vec![false; n + 1];
    for tok in toks.iter().rev() {
        match tok {
            Tok::AnyTail => cur.iter_mut().for_each(|c| *c = true),
            Tok::Star => {
                cur[n] = next[n];
                for j in (0..n).rev() {
                    cur[j] = next[j] || (s[j] != '/' && cur[j + 1]);
                }
            }
            Tok::AnyDirs => {
                // (.*/)? : either nothing, or up to and including some '/' at k >= j.
                let mut slash_ok = false;
                cur[n] = next[n];
                for j in (0..n).rev() {
                    if s[j] == '/' && next[j + 1] {
                        slash_ok = true;
                    }
                    cur[j] = next[j] || slash_ok;
                }
            }
            one => {
                cur[n] = false;
                for j in 0..n {
                    let ok = match one {
                        Tok::Lit(c) => s[j] == *c,
                        Tok::Quest => s[j] != '/',
                        Tok::Class { negated, ranges } => {
                            ranges.iter().any(|(lo, hi)| *lo <= s[j] && s[j] <= *hi) != *negated
                        }
                        _ => false,
                    };
                    cur[j] = ok && next[j + 1];
                }
            }
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

/// Go's `path.Clean` on a slash-separated path.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        matches(&compile(p, false).unwrap(), t)
    }

    #[test]
    fn filepath_match_semantics() {
        assert!(m("abc", "abc"));
        assert!(m("*", "abc"));
        assert!(m("*", ".hidden"));
        assert!(m("*c", "abc"));
        assert!(!m("a*", "ab/c"));
        assert!(m("a*/b", "abc/b"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("[\\]]", "]"));
        assert!(m("[\\-]", "-"));
        assert!(m("*.go", "x.go"));
        assert!(!m("*.go", "x.gox"));
        assert!(m("a*b*c*d*e*/f", "axbxcxdxe/f"));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn bad_patterns() {
        for p in ["[", "[a", "[]a]", "[-]", "[a-", "a\\", "[x-]", "[\\"] {
            assert!(compile(p, false).is_err(), "{p}");
        }
    }

    #[test]
    fn pathological_is_fast() {
        let p = "*a".repeat(200);
        let t = "a".repeat(5000) + "b";
        assert!(!m(&p, &t));
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("a/../b"), "b");
        assert_eq!(clean("./a//b/"), "a/b");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("a/.."), ".");
        assert_eq!(clean("/"), "/");
    }
}
