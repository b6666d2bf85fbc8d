//! Physical lines → logical lines, as BuildKit's `parser.Parse` reads them: BOM and CRLF
//! handling, parser directives at the top, comments, blank lines, and line continuations
//! with the escape character (comment and blank lines inside a continuation are skipped).

use super::ast::{Directives, Warning};
use super::error::ParseError;

/// One instruction's text, continuation lines joined, with the lines it spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    /// The joined text (escape + newline removed, comments inside dropped).
    pub text: String,
    /// 1-based first line.
    pub start: usize,
    /// 1-based last line.
    pub end: usize,
}

/// The result of splitting a Dockerfile into logical lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lexed {
    pub directives: Directives,
    pub lines: Vec<LogicalLine>,
    pub warnings: Vec<Warning>,
    /// Number of physical lines.
    pub line_count: usize,
}

/// Go's regexp `\s`: `[\t\n\f\r ]`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Tracks the parser directives while they may still appear.
struct DirectiveState {
    directives: Directives,
    done: bool,
    seen: Vec<String>,
}

impl DirectiveState {
    /// BuildKit's `possibleParserDirective`: `line` is the physical line after newline
    /// trimming (and leading-whitespace trimming for the first line of an instruction).
    fn check(&mut self, line: &str, line_no: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(());
        };
        let key = name.to_ascii_lowercase();
        if !matches!(key.as_str(), "escape" | "syntax" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.seen.contains(&key) {
            return Err(ParseError::Directive {
                line: line_no,
                message: format!(
                    "only one {key} parser directive can be used: remove the repeated one"
                ),
            });
        }
        self.seen.push(key.clone());
        match key.as_str() {
            "escape" => match value {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                other => {
                    return Err(ParseError::Directive {
                        line: line_no,
                        message: format!(
                            "invalid escape token '{other}' does not match ` or \\: use `# escape=\\` or `# escape=``"
                        ),
                    });
                }
            },
            "syntax" => self.directives.syntax = Some(value.to_string()),
            _ => self.directives.check = Some(value.to_string()),
        }
        Ok(())
    }
}

/// Match `#\s*name\s*=\s*(value)\s*$` (BuildKit's directive regexp); `name` is
/// `[a-zA-Z][a-zA-Z0-9]*`.
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.trim_start();
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = rest.get(..name_len)?;
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let after = rest.get(name_len..)?.trim_start_matches(is_re_space);
    let after = after.strip_prefix('=')?;
    let value = after.trim_matches(is_re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // Only spaces after `=`: the lazy `(.+?)` still takes the last of them.
    let last = after.char_indices().last()?;
    Some((name, after.get(last.0..)?))
}

/// Whether the line, ignoring leading whitespace, is a comment.
fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's `trimComments`: a line that starts with `#` becomes empty.
fn trim_comment(line: &str) -> &str {
    if line.starts_with('#') { "" } else { line }
}

/// BuildKit's `trimContinuationCharacter`: if the line ends with the escape character
/// (optionally followed by spaces/tabs) not itself escaped, drop it and report a
/// continuation (`false`); otherwise return the line and `true` (end of instruction).
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let t = line.trim_end_matches([' ', '\t']);
    let Some(before) = t.strip_suffix(escape) else {
        return (line, true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before, false)
    } else {
        (line, true)
    }
}

/// Split `text` into logical lines.
pub(crate) fn lex(text: &str) -> Result<Lexed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut physical = text
        .split_inclusive('\n')
        .map(|l| l.trim_end_matches(['\r', '\n']));
    let mut state = DirectiveState {
        directives: Directives::default(),
        done: false,
        seen: Vec::new(),
    };
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = physical.next() {
        let first = raw.trim_start();
        state.check(first, current + 1)?;
        current += 1;
        let start = current;
        let escape = state.directives.escape;
        let (joined, mut end_of_instruction) = trim_continuation(trim_comment(first), escape);
        if end_of_instruction && joined.is_empty() {
            continue;
        }
        let mut joined = joined.to_string();
        let mut empty_continuation = false;
        while !end_of_instruction {
            let Some(raw) = physical.next() else { break };
            state.check(raw, current + 1)?;
            current += 1;
            if is_comment(raw) {
                continue;
            }
            let stripped = trim_comment(raw);
            if stripped.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(stripped, state.directives.escape);
            joined.push_str(part);
            end_of_instruction = end;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                message: format!(
                    "empty continuation line found in: {joined}: empty continuation lines will become errors in a future release; remove them"
                ),
            });
        }
        lines.push(LogicalLine {
            text: joined,
            start,
            end: current,
        });
    }
    Ok(Lexed {
        directives: state.directives,
        lines,
        warnings,
        line_count: current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_regexp() {
        assert_eq!(match_directive("# escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("#syntax=docker/dockerfile:1  "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(match_directive("# escape= "), Some(("escape", " ")));
        assert_eq!(match_directive("# There is no = here"), None);
        assert_eq!(match_directive("# 1abc=x"), None);
        assert_eq!(match_directive("escape=x"), None);
    }

    #[test]
    fn continuation() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a \\ \t", '\\'), ("a ", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", true));
    }

    #[test]
    fn lines_and_numbers() {
        let l = lex("\u{feff}# escape=`\r\nFROM a\r\n\r\nRUN x `\r\n# c\r\n\r\n  y\r\n").unwrap();
        assert_eq!(l.directives.escape, '`');
        assert_eq!(l.lines.len(), 2);
        assert_eq!(
            l.lines[1],
            LogicalLine {
                text: "RUN x   y".into(),
                start: 4,
                end: 7
            }
        );
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].line, 4);
    }

    #[test]
    fn directive_errors() {
        let e = lex("# escape=x\nFROM a").unwrap_err();
        assert_eq!(e.line(), Some(1));
        assert!(e.to_string().contains("invalid escape token 'x'"), "{e}");
        let e = lex("# syntax=a\n# syntax=b\nFROM a").unwrap_err();
        assert_eq!(
            e.to_string(),
            "only one syntax parser directive can be used: remove the repeated one (Dockerfile:2)"
        );
    }

    #[test]
    fn directives_only_at_top() {
        let l = lex("# hello\n# escape=`\nFROM a").unwrap();
        assert_eq!(l.directives.escape, '\\');
        let l = lex("FROM a\n# check=skip=all").unwrap();
        assert_eq!(l.directives.check, None);
        let l = lex("# check=skip=all\nFROM a").unwrap();
        assert_eq!(l.directives.check.as_deref(), Some("skip=all"));
    }
}
