//! BuildKit's per-instruction argument parsers (`line_parsers.go`): the instruction name
//! and `--flags` split off a logical line, then `parseMaybeJSON`, `parseMaybeJSONToList`,
//! `parseNameVal`, `parseNameOrNameVal`, `parseStringsWhitespaceDelimited`, `parseString`,
//! `parseHealthConfig` and `parseIgnore`.

use super::json::{JsonArray, parse_json_array};

/// The arguments a line parser produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub args: Vec<String>,
    pub json: bool,
    /// Set when the text looked like a JSON array but was not valid JSON (shell form used).
    pub invalid_json: Option<String>,
}

/// Why a line parser rejected its input (the caller adds the line number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError(pub String);

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]`.
pub(crate) fn is_token_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Split on runs of [`is_token_space`], like Go's `regexp.Split(s, -1)` on a trimmed string.
fn split_token_space(s: &str) -> Vec<String> {
    s.split(is_token_space)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// `splitCommand`: the instruction name (as written), its flags, and the rest (trimmed).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    let (cmd, flags, args) = match line.find(is_token_space) {
        Some(i) => {
            let rest = line
                .get(i..)
                .unwrap_or("")
                .trim_start_matches(is_token_space);
            let (args, flags) = extract_builder_flags(rest);
            (line.get(..i).unwrap_or(""), flags, args)
        }
        None => (line, Vec::new(), String::new()),
    };
    (cmd.to_string(), flags, args.trim().to_string())
}

/// `extractBuilderFlags`: leading words starting with `--` are flags (quotes removed,
/// `\` escapes the next character); a bare `--` ends them.
fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut chars = line.char_indices().peekable();
    loop {
        let Some((pos, ch)) = chars.next() else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return (String::new(), words);
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            let next_is_dash = chars.peek().is_some_and(|&(_, c)| c == '-');
            if ch != '-' || !next_is_dash {
                return (line.get(pos..).unwrap_or("").to_string(), words);
            }
            phase = Phase::Word;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line.get(pos..).unwrap_or("").to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = ch;
                    blank_ok = true;
                    phase = Phase::Quote;
                    continue;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, c)) => word.push(c),
                        None => continue,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote => {
                if ch == quote {
                    phase = Phase::Word;
                    continue;
                }
                if ch == '\\' {
                    match chars.next() {
                        Some((_, c)) => word.push(c),
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
    }
}

/// `parseWords`: split on whitespace, keeping quotes and escapes in the words.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut word = String::new();
    let mut chars = rest.chars().peekable();
    loop {
        let Some(ch) = chars.next() else {
            if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return words;
        };
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                let Some(next) = chars.next() else { continue };
                word.push(ch);
                word.push(next);
                continue;
            }
            word.push(ch);
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            let Some(next) = chars.next() else {
                phase = Phase::Word;
                continue;
            };
            word.push(ch);
            word.push(next);
            continue;
        }
        word.push(ch);
    }
}

/// `parseNameVal` (ENV, LABEL): `key=value …` pairs, or the legacy `key value`. Each pair
/// gives `key, value, sep`.
pub(crate) fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Parsed, LineError> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Parsed::default());
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_token_space) else {
            return Err(LineError(format!(
                "{key} must have two arguments: write `{key} name=value` (or the legacy `{key} name value`)"
            )));
        };
        let name = rest.get(..i).unwrap_or("");
        let value = rest
            .get(i..)
            .unwrap_or("")
            .trim_start_matches(is_token_space);
        return Ok(Parsed {
            args: vec![name.into(), value.into(), String::new()],
            ..Parsed::default()
        });
    }
    let mut args = Vec::new();
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(LineError(format!(
                "Syntax error - can't find = in {word:?}. Must be of the form: name=value"
            )));
        };
        args.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(Parsed {
        args,
        ..Parsed::default()
    })
}

/// `parseNameOrNameVal` (ARG): the words, quotes kept.
pub(crate) fn parse_name_or_name_val(rest: &str, escape: char) -> Parsed {
    Parsed {
        args: parse_words(rest, escape),
        ..Parsed::default()
    }
}

/// `parseStringsWhitespaceDelimited` (FROM, EXPOSE).
pub(crate) fn parse_whitespace_delimited(rest: &str) -> Parsed {
    Parsed {
        args: split_token_space(rest),
        ..Parsed::default()
    }
}

/// `parseString` (MAINTAINER, USER, WORKDIR, STOPSIGNAL): the whole rest as one argument.
pub(crate) fn parse_string(rest: &str) -> Parsed {
    if rest.is_empty() {
        return Parsed::default();
    }
    Parsed {
        args: vec![rest.to_string()],
        ..Parsed::default()
    }
}

/// Outcome of `parseJSON`.
enum Json {
    Array(Vec<String>),
    NotArray,
    Invalid(String),
}

/// `parseJSON`: a JSON array of strings. An array with a non-string element is an error.
fn parse_json(rest: &str) -> Result<Json, LineError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(Json::NotArray);
    }
    match parse_json_array(rest) {
        JsonArray::Strings(v) => Ok(Json::Array(v)),
        JsonArray::Invalid(e) => Ok(Json::Invalid(e)),
        JsonArray::NonString => Err(LineError(
            "when using JSON array syntax, arrays must be comprised of strings only".into(),
        )),
    }
}

/// `parseMaybeJSON` (CMD, ENTRYPOINT, RUN, SHELL): a JSON array, else the rest as one
/// shell-form argument.
pub(crate) fn parse_maybe_json(rest: &str) -> Result<Parsed, LineError> {
    if rest.is_empty() {
        return Ok(Parsed::default());
    }
    json_or(rest, parse_string)
}

/// `parseMaybeJSONToList` (ADD, COPY, VOLUME): a JSON array, else whitespace-split words.
pub(crate) fn parse_maybe_json_to_list(rest: &str) -> Result<Parsed, LineError> {
    json_or(rest, parse_whitespace_delimited)
}

/// A JSON array, else `fallback` of the text (remembering why JSON failed, if it looked like
/// JSON).
fn json_or(rest: &str, fallback: fn(&str) -> Parsed) -> Result<Parsed, LineError> {
    match parse_json(rest)? {
        Json::Array(args) => Ok(Parsed {
            args,
            json: true,
            invalid_json: None,
        }),
        Json::NotArray => Ok(fallback(rest)),
        Json::Invalid(e) => Ok(Parsed {
            invalid_json: Some(e),
            ..fallback(rest)
        }),
    }
}

/// `parseHealthConfig`: the type word (`CMD`, `NONE`, …) then `parseMaybeJSON` of the rest.
pub(crate) fn parse_health_config(rest: &str) -> Result<Parsed, LineError> {
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok(Parsed::default());
    }
    let typ = rest.get(..sep).unwrap_or("");
    let cmd = rest.get(sep..).unwrap_or("").trim_start();
    let mut parsed = parse_maybe_json(cmd)?;
    parsed.args.insert(0, typ.to_string());
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_are_split_off() {
        assert_eq!(
            split_command("COPY --from=a --chown=\"x y\" s d"),
            ("COPY".into(), s(&["--from=a", "--chown=x y"]), "s d".into())
        );
        assert_eq!(
            split_command("COPY -- --x d"),
            ("COPY".into(), vec![], "--x d".into())
        );
        assert_eq!(
            split_command("CMD --doit -- [ ]"),
            ("CMD".into(), s(&["--doit"]), "[ ]".into())
        );
        assert_eq!(
            split_command("  FROM\t  a  "),
            ("FROM".into(), vec![], "a".into())
        );
        assert_eq!(
            split_command("HEALTHCHECK"),
            ("HEALTHCHECK".into(), vec![], "".into())
        );
        assert_eq!(split_command("X --a"), ("X".into(), s(&["--a"]), "".into()));
        assert_eq!(split_command("X -a"), ("X".into(), vec![], "-a".into()));
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"abc="123 456" def"#, '\\'),
            s(&[r#"abc="123 456""#, "def"])
        );
        assert_eq!(parse_words(r"a\ b c\", '\\'), s(&[r"a\ b", "c"]));
        assert_eq!(parse_words(r#"x="" y=''"#, '\\'), s(&[r#"x="""#, "y=''"]));
        assert_eq!(parse_words("'a\\'b''", '\\'), s(&["'a\\'b''"]));
        assert_eq!(
            parse_words("foo bar 'abc xyz'", '\\'),
            s(&["foo", "bar", "'abc xyz'"])
        );
        assert_eq!(
            parse_words("föo bàr \"âbc xÿz\"", '\\'),
            s(&["föo", "bàr", "\"âbc xÿz\""])
        );
    }

    #[test]
    fn name_val_forms() {
        assert_eq!(
            parse_name_val("a b c", "ENV", '\\').unwrap().args,
            s(&["a", "b c", ""])
        );
        assert_eq!(
            parse_name_val("a=1 b=\"2 3\"", "ENV", '\\').unwrap().args,
            s(&["a", "1", "=", "b", "\"2 3\"", "="])
        );
        assert!(
            parse_name_val("PATH", "ENV", '\\')
                .unwrap_err()
                .0
                .contains("ENV must have two arguments")
        );
        assert!(
            parse_name_val("a=1 b", "LABEL", '\\')
                .unwrap_err()
                .0
                .contains("can't find = in \"b\"")
        );
        assert_eq!(
            parse_name_val("", "ENV", '\\').unwrap().args,
            Vec::<String>::new()
        );
    }

    #[test]
    fn json_detection() {
        let p = parse_maybe_json(r#"["a", "b"]"#).unwrap();
        assert!(p.json);
        assert_eq!(p.args, s(&["a", "b"]));
        let p = parse_maybe_json(r#"["a", "b""#).unwrap();
        assert!(!p.json && p.invalid_json.is_some());
        assert_eq!(p.args, s(&[r#"["a", "b""#]));
        assert!(parse_maybe_json(r#"["a", 1]"#).is_err());
        assert!(parse_maybe_json_to_list(r#"["a", ["b"]]"#).is_err());
        let p = parse_maybe_json_to_list("a  b").unwrap();
        assert_eq!(p.args, s(&["a", "b"]));
    }

    #[test]
    fn health_config() {
        assert_eq!(
            parse_health_config("CMD   a b").unwrap().args,
            s(&["CMD", "a b"])
        );
        assert_eq!(parse_health_config("CMD").unwrap().args, s(&["CMD"]));
        assert_eq!(parse_health_config("").unwrap().args, Vec::<String>::new());
        let p = parse_health_config(r#"CMD ["x"]"#).unwrap();
        assert!(p.json);
    }
}
