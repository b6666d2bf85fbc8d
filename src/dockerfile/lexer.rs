//! Physical lines → logical lines, as BuildKit's `parser.Parse` reads them: BOM and CRLF
//! handling, parser directives at the top, comments, blank lines, and line continuations
//! with the escape character (comment and blank lines inside a continuation are skipped),
//! and here-document bodies, read raw when the parser asks for them.

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

/// Reads a Dockerfile's physical lines into logical lines, one instruction at a time, and the
/// here-documents that follow an instruction when the parser asks for them (BuildKit reads
/// both from one scanner: a heredoc body is never taken for instructions).
pub(crate) struct Lexer<'a> {
    /// Physical lines, each with its line ending (the last one may have none).
    physical: std::str::SplitInclusive<'a, char>,
    state: DirectiveState,
    /// Lines read so far.
    current: usize,
    warnings: Vec<Warning>,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Lexer<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Lexer {
            physical: text.split_inclusive('\n'),
            state: DirectiveState {
                directives: Directives::default(),
                done: false,
                seen: Vec::new(),
            },
            current: 0,
            warnings: Vec::new(),
        }
    }

    /// The next instruction's logical line, `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<LogicalLine>, ParseError> {
        while let Some(raw) = self.physical.next() {
            let raw = raw.trim_end_matches(['\r', '\n']);
            let first = raw.trim_start();
            self.state.check(first, self.current + 1)?;
            self.current += 1;
            let start = self.current;
            let escape = self.state.directives.escape;
            let (joined, mut end_of_instruction) = trim_continuation(trim_comment(first), escape);
            if end_of_instruction && joined.is_empty() {
                continue;
            }
            let mut joined = joined.to_string();
            let mut empty_continuation = false;
            while !end_of_instruction {
                let Some(raw) = self.physical.next() else {
                    break;
                };
                let raw = raw.trim_end_matches(['\r', '\n']);
                self.state.check(raw, self.current + 1)?;
                self.current += 1;
                if is_comment(raw) {
                    continue;
                }
                let stripped = trim_comment(raw);
                if stripped.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, end) = trim_continuation(stripped, self.state.directives.escape);
                joined.push_str(part);
                end_of_instruction = end;
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    line: start,
                    message: format!(
                        "empty continuation line found in: {joined}: empty continuation lines will become errors in a future release; remove them"
                    ),
                });
            }
            return Ok(Some(LogicalLine {
                text: joined,
                start,
                end: self.current,
            }));
        }
        Ok(None)
    }

    /// Read a here-document body up to its terminator line (`name`, after the line ending
    /// is trimmed and, with `chomp`, leading tabs too), as BuildKit's `Parse` does: the body
    /// lines are kept raw, line endings included. `None` when the file ends first.
    pub(crate) fn heredoc_body(&mut self, name: &str, chomp: bool) -> Option<String> {
        let mut content = String::new();
        for raw in self.physical.by_ref() {
            self.current += 1;
            let mut candidate = raw.trim_end_matches(['\r', '\n']);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Some(content);
            }
            content.push_str(raw);
        }
        None
    }

    /// The escape character in effect (`# escape=`).
    pub(crate) fn escape(&self) -> char {
        self.state.directives.escape
    }

    /// The number of physical lines read so far (the last line of what was read).
    pub(crate) fn line(&self) -> usize {
        self.current
    }

    /// The directives found, and the warnings, once every line has been read.
    pub(crate) fn finish(self) -> (Directives, Vec<Warning>) {
        (self.state.directives, self.warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Lexed {
        directives: Directives,
        lines: Vec<LogicalLine>,
        warnings: Vec<Warning>,
    }

    fn lex(text: &str) -> Result<Lexed, ParseError> {
        let mut lexer = Lexer::new(text);
        let mut lines = Vec::new();
        while let Some(line) = lexer.next_line()? {
            lines.push(line);
        }
        let (directives, warnings) = lexer.finish();
        Ok(Lexed {
            directives,
            lines,
            warnings,
        })
    }

    #[test]
    fn heredoc_bodies_are_raw_lines() {
        let mut l = Lexer::new("COPY <<A <<-B /x\n# not a comment\r\n\\\nA\n\tb\n\tB\nFROM c\n");
        let first = l.next_line().unwrap().unwrap();
        assert_eq!((first.start, first.end), (1, 1));
        assert_eq!(
            l.heredoc_body("A", false).as_deref(),
            Some("# not a comment\r\n\\\n")
        );
        assert_eq!(l.heredoc_body("B", true).as_deref(), Some("\tb\n"));
        assert_eq!(l.line(), 6);
        let next = l.next_line().unwrap().unwrap();
        assert_eq!((next.text.as_str(), next.start), ("FROM c", 7));
        let mut l = Lexer::new("RUN <<EOF\nx\n");
        l.next_line().unwrap();
        assert_eq!(l.heredoc_body("EOF", false), None);
        assert_eq!(l.line(), 2);
    }

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
