//! Variable expansion with BuildKit's shell-lexer semantics (`shell.Lex.ProcessWord` and
//! `ProcessWords`): `$V`, `${V}`, `${V:-x}`, `${V-x}`, `${V:+x}`, `${V+x}`, `${V:?msg}`,
//! `${V?msg}`, `${V#pat}`, `${V##pat}`, `${V%pat}`, `${V%%pat}`, `${V/pat/repl}`,
//! `${V//pat/repl}`, nested words in the modifiers, quote removal (single quotes literal,
//! double quotes expand), and the escape character (`\$` is a literal `$`). Unset variables
//! expand to the empty string.

use super::dump::go_quote;
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
///
/// `vars` looks a variable up (`None`: unset). Errors carry no line: attach it with
/// [`ParseError::at_line`].
pub fn expand_word(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, ParseError> {
    process(word, vars, escape).map(|(s, _)| s)
}

/// Expand a word and split the result on unquoted whitespace (including whitespace that
/// comes from an unquoted variable), as for a shell-form list. Empty words are dropped.
pub fn expand_words(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, ParseError> {
    process(word, vars, escape).map(|(_, w)| w)
}

/// Expand a heredoc body as BuildKit expands `COPY <<EOF` / `ADD <<EOF` contents when the
/// delimiter is unquoted (`SourcesAndDest.ExpandRaw` in dockerfile2llb's `dispatch`): a lexer
/// with `\` as the escape character whatever the Dockerfile's escape directive, and quotes
/// kept as ordinary characters (`SkipProcessQuotes`). Variables (`$V`, `${V:-x}`, …) are
/// substituted and `\` escapes the next character.
pub fn expand_heredoc(
    body: &str,
    vars: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ParseError> {
    let opts = LexOptions {
        skip_process_quotes: true,
        ..LexOptions::default()
    };
    process_with(body, vars, '\\', opts).map(|(s, _)| s)
}

/// Switches of BuildKit's `shell.Lex` beyond the defaults [`expand_word`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LexOptions {
    /// `RawQuotes`: quotes stay in the result.
    pub raw_quotes: bool,
    /// `RawEscapes`: escape characters stay in the result.
    pub raw_escapes: bool,
    /// `SkipUnsetEnv`: an unset variable is left as written (`$V`, `${V:-x}`).
    pub skip_unset_env: bool,
    /// `SkipProcessQuotes`: quotes are ordinary characters.
    pub skip_process_quotes: bool,
}

fn process(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<(String, Vec<String>), ParseError> {
    process_with(word, vars, escape, LexOptions::default())
}

/// `Lex.process` with the given options: the expanded word and its whitespace-split words.
pub(crate) fn process_with(
    word: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    escape: char,
    opts: LexOptions,
) -> Result<(String, Vec<String>), ParseError> {
    let mut lex = Lexer {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        raw_escapes: opts.raw_escapes,
        opts,
        vars,
    };
    let mut words = Words::default();
    match lex.process_until(None, opts.raw_escapes, &mut words, 0) {
        Ok((s, _)) => Ok((s, words.finish())),
        Err(Failure(message)) => Err(ParseError::expand(format!(
            "failed to process {}: {message}",
            go_quote(word)
        ))),
    }
}

/// An expansion failure, before it is wrapped with the word.
struct Failure(String);

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure(message.into()))
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
        self.word.push_str(s);
        self.in_word = true;
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
    /// Keep escape characters in the output (inside `${V#pattern}` and `${V/p/r}`).
    raw_escapes: bool,
    opts: LexOptions,
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

    /// `processStopOn`: process until `stop` (consumed) or the end. Returns the text and
    /// whether the stop character was found.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        words: &mut Words,
        depth: usize,
    ) -> Result<(String, bool), Failure> {
        if depth > MAX_DEPTH {
            return fail("variable substitutions are nested too deeply");
        }
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_inner(stop, words, depth);
        self.raw_escapes = saved;
        result
    }

    fn process_inner(
        &mut self,
        stop: Option<char>,
        words: &mut Words,
        depth: usize,
    ) -> Result<(String, bool), Failure> {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok((out, true));
            }
            match c {
                '\'' if !self.opts.skip_process_quotes => {
                    let s = self.single_quote()?;
                    words.add_raw_string(&s);
                    out.push_str(&s);
                }
                '"' if !self.opts.skip_process_quotes => {
                    let s = self.double_quote(depth)?;
                    words.add_raw_string(&s);
                    out.push_str(&s);
                }
                '<' => {
                    let s = self.possible_heredoc();
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
                        if self.raw_escapes {
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
        match stop {
            Some(s) => fail(format!(
                "unexpected end of statement while looking for matching {s}"
            )),
            None => Ok((out, false)),
        }
    }

    /// `processPossibleHeredoc`: `<<` and the blanks after it stay together in one word.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn single_quote(&mut self) -> Result<String, Failure> {
        self.pos += 1;
        let mut out = String::new();
        if self.opts.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.next() {
                None => {
                    return fail(
                        "unexpected end of statement while looking for matching single-quote",
                    );
                }
                Some('\'') => {
                    if self.opts.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self, depth: usize) -> Result<String, Failure> {
        self.pos += 1;
        let mut out = String::new();
        if self.opts.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return fail(
                        "unexpected end of statement while looking for matching double-quote",
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.opts.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar(depth)?),
                Some(c) => {
                    self.pos += 1;
                    if c != self.escape {
                        out.push(c);
                        continue;
                    }
                    if self.raw_escapes {
                        out.push(c);
                    }
                    match self.peek() {
                        None => {}
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.pos += 1;
                            out.push(n);
                        }
                        // Any other escape stays (twice when escapes are raw, as in BuildKit).
                        Some(_) => out.push(c),
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

    /// Process a modifier's word up to `stop`, with `raw` escapes.
    fn sub_word(&mut self, stop: char, raw: bool, depth: usize) -> Result<String, Failure> {
        let mut scratch = Words::default();
        match self.process_until(Some(stop), raw, &mut scratch, depth + 1) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => fail(if stop == '/' {
                "syntax error: missing '/' in ${}"
            } else {
                "syntax error: missing '}'"
            }),
            Err(e) => Err(e),
        }
    }

    fn dollar(&mut self, depth: usize) -> Result<String, Failure> {
        self.pos += 1; // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match (self.vars)(&name) {
                Some(v) => v,
                None if self.opts.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // '{'
        match self.peek() {
            None => return fail("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return fail("syntax error: bad substitution"),
            _ => {}
        }
        let name = self.name();
        let Some(mut op) = self.next() else {
            return fail("syntax error: missing '}'");
        };
        let mut modifier = op.to_string();
        let mut null_is_unset = false;
        match op {
            '}' => {
                return Ok(match (self.vars)(&name) {
                    Some(v) => v,
                    None if self.opts.skip_unset_env => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.substitute(&name, depth),
            ':' => {
                null_is_unset = true;
                let Some(o) = self.next() else {
                    return fail("syntax error: missing '}'");
                };
                op = o;
                modifier.push(o);
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return fail(format!("unsupported modifier ({modifier}) in substitution")),
        }
        let pattern_op = op == '#' || op == '%';
        if null_is_unset && pattern_op {
            return fail(format!("unsupported modifier ({modifier}) in substitution"));
        }
        let mut word = self.sub_word('}', pattern_op, depth)?;
        let value = (self.vars)(&name);
        let set = value.is_some();
        if !set && self.opts.skip_unset_env {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let value = value.unwrap_or_default();
        let unset = !set || (null_is_unset && value.is_empty());
        match op {
            '-' => Ok(if unset { word } else { value }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if !set {
                    let msg = if word.is_empty() {
                        "is not allowed to be unset".into()
                    } else {
                        word
                    };
                    return fail(format!("{name}: {msg}"));
                }
                if null_is_unset && value.is_empty() {
                    let msg = if word.is_empty() {
                        "is not allowed to be empty".into()
                    } else {
                        word
                    };
                    return fail(format!("{name}: {msg}"));
                }
                Ok(value)
            }
            '#' | '%' => {
                let greedy = word.starts_with(op);
                if greedy {
                    word.remove(0);
                }
                let pattern = compile_pattern(&word)?;
                let v: Vec<char> = value.chars().collect();
                Ok(if op == '#' {
                    trim_prefix(&pattern, &v, greedy)
                } else {
                    trim_suffix(&pattern, &v, greedy)
                })
            }
            _ => fail(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    /// `${V/pattern/replacement}` (first match) and `${V//pattern/replacement}` (all).
    fn substitute(&mut self, name: &str, depth: usize) -> Result<String, Failure> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = self.sub_word('/', true, depth)?;
        let replacement = self.sub_word('}', true, depth)?;
        let value = match (self.vars)(name) {
            Some(v) => v,
            None if self.opts.skip_unset_env => {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            None => String::new(),
        };
        let tokens = compile_pattern(&pattern)?;
        let v: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut pos = 0usize;
        let mut last_end: Option<usize> = None;
        while pos <= v.len() {
            let Some((start, end)) = find_match(&tokens, &v, pos) else {
                break;
            };
            out.extend(v.get(last_end.unwrap_or(0)..start).unwrap_or_default());
            // No replacement for an empty match right after a previous match.
            if last_end.is_none_or(|l| end > l) || start == 0 {
                out.push_str(&replacement);
            }
            last_end = Some(end);
            pos = if end > pos { end } else { pos + 1 };
            if !all {
                break;
            }
        }
        out.extend(v.get(last_end.unwrap_or(0)..).unwrap_or_default());
        Ok(out)
    }
}

/// One element of a `${V#pattern}` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    Any,
    /// A literal character.
    Lit(char),
}

/// BuildKit's `convertShellPatternToRegex`, as tokens: `*`, `?`, and `\` escaping `*`, `?`
/// or `\` (a `\` before `}` or `/` is dropped; any other escape is an error).
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, Failure> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => {
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(e @ ('*' | '?' | '\\')) => out.push(Tok::Lit(e)),
                    other => {
                        let shown = other.map(String::from).unwrap_or_default();
                        return fail(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'"
                        ));
                    }
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    Ok(out)
}

/// For each `end` in `start..=v.len()`, whether `tokens` match `v[start..end]`: one pass of
/// a position-set automaton, so hostile patterns and long values stay linear per start.
fn match_ends(tokens: &[Tok], v: &[char], start: usize) -> Vec<bool> {
    let m = tokens.len();
    let close = |set: &mut Vec<bool>| {
        for p in 0..m {
            if set.get(p) == Some(&true) && tokens.get(p) == Some(&Tok::Star) {
                if let Some(next) = set.get_mut(p + 1) {
                    *next = true;
                }
            }
        }
    };
    let mut set = vec![false; m + 1];
    if let Some(first) = set.first_mut() {
        *first = true;
    }
    close(&mut set);
    let mut ends = vec![set.get(m) == Some(&true)];
    for &c in v.get(start..).unwrap_or_default() {
        let mut next = vec![false; m + 1];
        for (p, tok) in tokens.iter().enumerate() {
            if set.get(p) != Some(&true) {
                continue;
            }
            let target = match tok {
                Tok::Star => p,
                Tok::Any => p + 1,
                Tok::Lit(x) if *x == c => p + 1,
                Tok::Lit(_) => continue,
            };
            if let Some(t) = next.get_mut(target) {
                *t = true;
            }
        }
        close(&mut next);
        set = next;
        ends.push(set.get(m) == Some(&true));
        if !set.iter().any(|&b| b) {
            break;
        }
    }
    ends
}

/// `${V#p}` (shortest matching prefix removed) and `${V##p}` (longest).
fn trim_prefix(tokens: &[Tok], v: &[char], greedy: bool) -> String {
    let ends = match_ends(tokens, v, 0);
    let hit = if greedy {
        ends.iter().rposition(|&b| b)
    } else {
        ends.iter().position(|&b| b)
    };
    match hit {
        Some(n) => v.get(n..).unwrap_or_default().iter().collect(),
        None => v.iter().collect(),
    }
}

/// `${V%p}` (shortest matching suffix removed) and `${V%%p}` (longest): a prefix match on
/// the reversed pattern and value, as BuildKit does.
fn trim_suffix(tokens: &[Tok], v: &[char], greedy: bool) -> String {
    let rev_tokens: Vec<Tok> = tokens.iter().rev().copied().collect();
    let rev_v: Vec<char> = v.iter().rev().copied().collect();
    let trimmed: Vec<char> = trim_prefix(&rev_tokens, &rev_v, greedy).chars().collect();
    trimmed.iter().rev().collect()
}

/// The leftmost match at or after `from`, longest at that start: one pass of the automaton
/// with every start position injected, each state keeping its smallest start.
fn find_match(tokens: &[Tok], v: &[char], from: usize) -> Option<(usize, usize)> {
    let m = tokens.len();
    let close = |set: &mut Vec<Option<usize>>| {
        for p in 0..m {
            if tokens.get(p) != Some(&Tok::Star) {
                continue;
            }
            let Some(&Some(s)) = set.get(p) else { continue };
            if let Some(next) = set.get_mut(p + 1) {
                *next = Some(next.map_or(s, |n| n.min(s)));
            }
        }
    };
    let mut best: Option<(usize, usize)> = None;
    let mut set: Vec<Option<usize>> = vec![None; m + 1];
    let mut i = from;
    loop {
        // Inject a thread starting here (unless a match has already started earlier).
        if best.is_none() {
            if let Some(first @ None) = set.first_mut() {
                *first = Some(i);
            }
        }
        close(&mut set);
        if let Some(&Some(s)) = set.get(m) {
            match best {
                Some((bs, _)) if bs < s => {}
                _ => best = Some((s, i)),
            }
        }
        let Some(&c) = v.get(i) else { break };
        let mut next: Vec<Option<usize>> = vec![None; m + 1];
        for (p, tok) in tokens.iter().enumerate() {
            let Some(&Some(s)) = set.get(p) else { continue };
            if best.is_some_and(|(bs, _)| s > bs) {
                continue;
            }
            let target = match tok {
                Tok::Star => p,
                Tok::Any => p + 1,
                Tok::Lit(x) if *x == c => p + 1,
                Tok::Lit(_) => continue,
            };
            if let Some(t) = next.get_mut(target) {
                *t = Some(t.map_or(s, |n| n.min(s)));
            }
        }
        set = next;
        i += 1;
        if best.is_some() && set.iter().all(Option::is_none) {
            break;
        }
    }
    best
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

    /// The error message without the `failed to process "<word>": ` prefix.
    fn err(s: &str) -> String {
        let e = expand_word(s, &env, '\\').unwrap_err().to_string();
        let prefix = format!("failed to process {}: ", go_quote(s));
        e.strip_prefix(&prefix).map(str::to_string).unwrap_or(e)
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
        assert_eq!(
            e.to_string(),
            "failed to process \"${U:?x}\": U: x (Dockerfile:9)"
        );
    }

    #[test]
    fn pattern_removal() {
        assert_eq!(w("${P#*/}"), "usr/local/bin");
        assert_eq!(w("${P##*/}"), "bin");
        assert_eq!(w("${P%/*}"), "/usr/local");
        assert_eq!(w("${P%%/*}"), "");
        assert_eq!(w("${P#nomatch}"), "/usr/local/bin");
        // BuildKit refuses `:` before a pattern operator (shell/lex.go `processDollar`).
        assert_eq!(err("${P:#*/}"), "unsupported modifier (:#) in substitution");
        assert_eq!(err("${P:%x}"), "unsupported modifier (:%) in substitution");
        assert_eq!(w("${P#/usr\\/}"), "local/bin");
        assert_eq!(w("${P#\\*}"), "/usr/local/bin");
        assert_eq!(
            err("${P#\\a}"),
            "invalid pattern (\\a) in substitution: invalid escape '\\a'"
        );
        assert_eq!(err("${P:=x}"), "unsupported modifier (:=) in substitution");
        assert_eq!(err("${P=x}"), "unsupported modifier (=) in substitution");
    }

    #[test]
    fn substitution() {
        assert_eq!(w("${P/local/opt}"), "/usr/opt/bin");
        assert_eq!(w("${P//\\//:}"), ":usr:local:bin");
        assert_eq!(w("${P/\\//}"), "usr/local/bin");
        assert_eq!(w("${P/*/x}"), "x");
        assert_eq!(w("${P/nomatch/x}"), "/usr/local/bin");
        assert_eq!(w("${P/l*l/X}"), "/usr/X/bin");
        assert_eq!(w("${P//[ls]/_}"), "/usr/local/bin");
        assert_eq!(w("${P//?s/_}"), "/_r/local/bin");
        assert_eq!(w("${U/a/b}"), "");
        assert_eq!(w("${A//?/[$A]}"), "[a]");
        assert_eq!(err("${P/x"), "syntax error: missing '/' in ${}");
        assert_eq!(err("${P/x/y"), "syntax error: missing '}'");
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
        let long = "a".repeat(20_000);
        let big = |n: &str| if n == "L" { Some(long.clone()) } else { None };
        assert_eq!(expand_word("${L%%*b}", &big, '\\').unwrap().len(), 20_000);
        assert_eq!(expand_word("${L/a*b/x}", &big, '\\').unwrap().len(), 20_000);
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
