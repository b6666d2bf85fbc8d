//! Variable expansion with BuildKit's shell-lexer semantics (`shell.Lex.ProcessWord` and
//! `ProcessWords`): `$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}`,
//! `${V?msg}`, `${V#pat}`, `${V##pat}`, `${V%pat}`, `${V%%pat}`, nested words in the
//! modifiers, quote removal (single quotes literal, double quotes expand), and the escape
//! character (`\$` is a literal `$`). Unset variables expand to the empty string.

use super::error::ParseError;

/// Whether BuildKit expands variables in this instruction's words (name in any case):
/// `ADD`, `ARG`, `COPY`, `ENV`, `EXPOSE`, `FROM`, `LABEL`, `STOPSIGNAL`, `USER`, `VOLUME`,
/// `WORKDIR` (and the `--chown`, `--chmod`, `--from`, `--platform` flag values). `CMD`,
/// `ENTRYPOINT`, `RUN`, `SHELL`, `HEALTHCHECK`, `MAINTAINER` and `ONBUILD` are not expanded.
pub fn expands(instruction: &str) -> bool {
    matches!(
        instruction.to_ascii_lowercase().as_str(),
        "add"
            | "arg"
            | "copy"
            | "env"
            | "expose"
            | "from"
            | "label"
            | "stopsignal"
            | "user"
            | "volume"
            | "workdir"
    )
}

/// Expand one word: variables substituted, quotes removed, whitespace kept.
pub fn expand_word(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ParseError> {
    let mut lex = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        vars,
    };
    let mut words = Words::default();
    let (s, _) = lex.process_until(&[], false, &mut words)?;
    Ok(s)
}

/// Expand a word and split the result on unquoted whitespace (including whitespace that
/// comes from an unquoted variable), as for a shell-form list.
pub fn expand_words(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ParseError> {
    let mut lex = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        vars,
    };
    let mut words = Words::default();
    lex.process_until(&[], false, &mut words)?;
    Ok(words.finish())
}

/// Word splitting state (`wordsStruct`).
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_raw_char(c));
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    vars: &'a dyn Fn(&str) -> Option<String>,
}

/// A nesting limit so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 64;

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process until one of `stops` (consumed) or the end. Returns the text and whether a
    /// stop character was found. `raw_escapes` keeps escape characters (pattern words).
    fn process_until(
        &mut self,
        stops: &[char],
        raw_escapes: bool,
        words: &mut Words,
    ) -> Result<(String, bool), ParseError> {
        self.process_depth(stops, raw_escapes, words, 0)
    }

    fn process_depth(
        &mut self,
        stops: &[char],
        raw_escapes: bool,
        words: &mut Words,
        depth: usize,
    ) -> Result<(String, bool), ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::expand(
                "variable substitutions are nested too deeply",
            ));
        }
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                self.pos += 1;
                return Ok((out, true));
            }
            match c {
                '\'' => {
                    let s = self.single_quote()?;
                    words.add_raw_string(&s);
                    out.push_str(&s);
                }
                '"' => {
                    let s = self.double_quote(depth)?;
                    words.add_raw_string(&s);
                    out.push_str(&s);
                }
                '$' => {
                    let s = self.dollar(depth)?;
                    words.add_string(&s);
                    out.push_str(&s);
                }
                _ => {
                    self.pos += 1;
                    if c == self.escape {
                        if raw_escapes {
                            words.add_raw_char(c);
                            out.push(c);
                        }
                        let Some(n) = self.next() else { break };
                        words.add_raw_char(n);
                        out.push(n);
                    } else {
                        words.add_char(c);
                        out.push(c);
                    }
                }
            }
        }
        Ok((out, false))
    }

    fn single_quote(&mut self) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(ParseError::expand(
                        "unexpected end of statement while looking for matching single-quote",
                    ));
                }
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self, depth: usize) -> Result<String, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ParseError::expand(
                        "unexpected end of statement while looking for matching double-quote",
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar(depth)?),
                Some(c) => {
                    self.pos += 1;
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.pos += 1;
                                out.push(n);
                            }
                            Some(_) => out.push(c),
                        }
                    } else {
                        out.push(c);
                    }
                }
            }
        }
    }

    /// A variable name: letters, digits, `_`; or a run of digits; or one special parameter.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.pos += 1;
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                name.push(c);
                return name;
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    fn dollar(&mut self, depth: usize) -> Result<String, ParseError> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok((self.vars)(&name).unwrap_or_default());
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return Err(ParseError::expand("syntax error: missing '}'")),
            Some('{' | '}' | ':') => {
                return Err(ParseError::expand("syntax error: bad substitution"));
            }
            _ => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return Err(ParseError::expand("syntax error: missing '}'"));
        };
        if op == '}' {
            return Ok((self.vars)(&name).unwrap_or_default());
        }
        let mut null_is_unset = false;
        let mut modifier = op.to_string();
        if op == ':' {
            null_is_unset = true;
            let Some(o) = self.next() else {
                return Err(ParseError::expand("syntax error: missing '}'"));
            };
            op = o;
            modifier.push(o);
        }
        if !matches!(op, '-' | '+' | '?' | '#' | '%') {
            return Err(ParseError::expand(format!(
                "unsupported modifier ({modifier}) in substitution"
            )));
        }
        let pattern_op = op == '#' || op == '%';
        if null_is_unset && pattern_op {
            return Err(ParseError::expand(format!(
                "unsupported modifier ({modifier}) in substitution"
            )));
        }
        let mut greedy = false;
        if pattern_op && self.peek() == Some(op) {
            self.pos += 1;
            greedy = true;
        }
        let mut scratch = Words::default();
        let (word, found) = self.process_depth(&['}'], pattern_op, &mut scratch, depth + 1)?;
        if !found {
            return Err(ParseError::expand("syntax error: missing '}'"));
        }
        let value = (self.vars)(&name);
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let unset = !set || (null_is_unset && value.is_empty());
        Ok(match op {
            '-' => {
                if unset {
                    word
                } else {
                    value
                }
            }
            '+' => {
                if unset {
                    String::new()
                } else {
                    word
                }
            }
            '?' => {
                if !set {
                    let msg = if word.is_empty() {
                        "is not allowed to be unset".to_string()
                    } else {
                        word
                    };
                    return Err(ParseError::expand(format!("{name}: {msg}")));
                }
                if null_is_unset && value.is_empty() {
                    let msg = if word.is_empty() {
                        "is not allowed to be empty".to_string()
                    } else {
                        word
                    };
                    return Err(ParseError::expand(format!("{name}: {msg}")));
                }
                value
            }
            '#' => remove_prefix(&value, &word, greedy, self.escape),
            _ => remove_suffix(&value, &word, greedy, self.escape),
        })
    }
}

/// Glob matching of `pattern` (`*`, `?`, escape for a literal) against all of `text`.
fn glob_match(pattern: &[char], text: &[char], escape: char) -> bool {
    // Iterative matcher with backtracking on the last `*`.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let pc = pattern.get(p).copied();
        match pc {
            Some('*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some('?') => {
                p += 1;
                t += 1;
                continue;
            }
            Some(c) => {
                let (lit, width) = if c == escape {
                    (pattern.get(p + 1).copied(), 2)
                } else {
                    (Some(c), 1)
                };
                if lit.is_some() && lit == text.get(t).copied() {
                    p += width;
                    t += 1;
                    continue;
                }
            }
            None => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

fn remove_prefix(value: &str, pattern: &str, greedy: bool, escape: char) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let mut lens: Vec<usize> = (0..=v.len()).collect();
    if greedy {
        lens.reverse();
    }
    for n in lens {
        if v.get(..n)
            .is_some_and(|prefix| glob_match(&p, prefix, escape))
        {
            return v.get(n..).unwrap_or_default().iter().collect();
        }
    }
    value.to_string()
}

fn remove_suffix(value: &str, pattern: &str, greedy: bool, escape: char) -> String {
    let v: Vec<char> = value.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let mut starts: Vec<usize> = (0..=v.len()).collect();
    if !greedy {
        starts.reverse();
    }
    for s in starts {
        if v.get(s..)
            .is_some_and(|suffix| glob_match(&p, suffix, escape))
        {
            return v.get(..s).unwrap_or_default().iter().collect();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "E" => Some(String::new()),
            "SP" => Some("x  y".into()),
            "P" => Some("/usr/local/bin".into()),
            "1" => Some("one".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        expand_word(s, &env, '\\').unwrap()
    }

    fn ws(s: &str) -> Vec<String> {
        expand_words(s, &env, '\\').unwrap()
    }

    fn err(s: &str) -> String {
        expand_word(s, &env, '\\').unwrap_err().to_string()
    }

    #[test]
    fn plain_variables() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}b"), "ab");
        assert_eq!(w("$Ab"), "");
        assert_eq!(w("$U"), "");
        assert_eq!(w("x$"), "x$");
        assert_eq!(w("$ x"), "$ x");
        assert_eq!(w("$1x"), "onex");
        assert_eq!(w("a\\$A"), "a$A");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${U:-d}"), "d");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${U-d}"), "d");
        assert_eq!(w("${A:-d}"), "a");
        assert_eq!(w("${A:+s}"), "s");
        assert_eq!(w("${E:+s}"), "");
        assert_eq!(w("${E+s}"), "s");
        assert_eq!(w("${U+s}"), "");
        assert_eq!(w("${U:-${A}x}"), "ax");
        assert_eq!(w("${U:-'lit $A'}"), "lit $A");
        assert_eq!(w("${U:-\"q $A\"}"), "q a");
        assert_eq!(w("${A:?}"), "a");
    }

    #[test]
    fn required_variables_error() {
        assert_eq!(err("${U:?must be set}"), "U: must be set");
        assert_eq!(err("${U?}"), "U: is not allowed to be unset");
        assert_eq!(err("${E:?}"), "E: is not allowed to be empty");
        assert_eq!(expand_word("${E?}", &env, '\\').unwrap(), "");
        let e = expand_word("${U:?x}", &env, '\\').unwrap_err().at_line(9);
        assert_eq!(e.to_string(), "U: x (Dockerfile:9)");
    }

    #[test]
    fn pattern_removal() {
        assert_eq!(w("${P#*/}"), "usr/local/bin");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${P%/*}"), "/usr/local");
        assert_eq!(w("${P%%/*}"), "");
        assert_eq!(w("${P#nomatch}"), "/usr/local/bin");
        assert_eq!(err("${P:#x}"), "unsupported modifier (:#) in substitution");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(err("${"), "syntax error: missing '}'");
        assert_eq!(err("${A"), "syntax error: missing '}'");
        assert_eq!(err("${A:-x"), "syntax error: missing '}'");
        assert_eq!(err("${}"), "syntax error: bad substitution");
        assert_eq!(err("${A x}"), "unsupported modifier ( ) in substitution");
        assert_eq!(
            err("'abc"),
            "unexpected end of statement while looking for matching single-quote"
        );
        assert_eq!(
            err("\"abc"),
            "unexpected end of statement while looking for matching double-quote"
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "a b");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("ab\\"), "ab");
        assert_eq!(w("'a\\'"), "a\\");
        assert_eq!(expand_word("`$A", &env, '`').unwrap(), "$A");
        assert_eq!(expand_word("\\$A", &env, '`').unwrap(), "\\a");
    }

    #[test]
    fn word_splitting() {
        assert_eq!(ws("a b  c"), vec!["a", "b", "c"]);
        assert_eq!(ws("$SP z"), vec!["x", "y", "z"]);
        assert_eq!(ws("\"$SP\" z"), vec!["x  y", "z"]);
        assert_eq!(ws("a\\ b"), vec!["a b"]);
        assert_eq!(ws("'a b' c"), vec!["a b", "c"]);
        assert_eq!(ws("\"\""), Vec::<String>::new());
        assert_eq!(ws("${U:-p q}"), vec!["p", "q"]);
    }

    #[test]
    fn expanded_instructions() {
        for i in [
            "ADD",
            "copy",
            "ENV",
            "EXPOSE",
            "FROM",
            "LABEL",
            "STOPSIGNAL",
            "USER",
            "VOLUME",
            "WORKDIR",
            "ARG",
        ] {
            assert!(expands(i), "{i}");
        }
        for i in [
            "ONBUILD",
            "CMD",
            "ENTRYPOINT",
            "RUN",
            "SHELL",
            "HEALTHCHECK",
            "MAINTAINER",
        ] {
            assert!(!expands(i), "{i}");
        }
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let deep = "${A:-".repeat(200) + &"}".repeat(200);
        assert!(expand_word(&deep, &env, '\\').is_err());
        for s in [
            "$", "${", "${:", "${#", "${A:", "${A#", "\\", "\"\\", "${A%%[}", "${P#\\}",
        ] {
            let _ = expand_word(s, &env, '\\');
            let _ = expand_words(s, &env, '\\');
        }
    }
}
