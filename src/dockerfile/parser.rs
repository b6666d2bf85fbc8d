//! [`parse`]: Dockerfile text → [`Dockerfile`] (directives, one [`Node`] per instruction,
//! warnings), following BuildKit's `parser.Parse` and its dispatch table.

use super::ast::{Dockerfile, Heredoc, Node, Warning};
use super::error::ParseError;
use super::heredoc::{can_contain_heredoc, heredocs_from_line};
use super::lexer::Lexer;
use super::line_parsers::{
    LineError, Parsed, parse_health_config, parse_maybe_json, parse_maybe_json_to_list,
    parse_name_or_name_val, parse_name_val, parse_string, parse_whitespace_delimited,
    split_command,
};

/// Parse a Dockerfile into its syntax tree, exactly as BuildKit's parser does.
///
/// Fails on what BuildKit's parser rejects (no instruction at all, a bad or repeated
/// directive, `ENV`/`LABEL` without a value, a JSON array of non-strings, a heredoc without its
/// terminator). Heredocs are read into [`Node::heredocs`]. Instruction names are not checked here: see
/// [`instructions`](super::instructions).
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let mut lexer = Lexer::new(text);
    let mut warnings = Vec::new();
    let mut nodes = Vec::new();
    while let Some(line) = lexer.next_line()? {
        let escape = lexer.escape();
        let mut node = node_from_line(&line.text, escape, line.start, line.end, &mut warnings)?;
        node.start_line = line.start;
        node.end_line = line.end;
        if can_contain_heredoc(&node) && line.text.contains("<<") {
            read_heredocs(&mut lexer, &mut node, &line.text)?;
        }
        nodes.push(node);
    }
    let line_count = lexer.line();
    let (directives, mut all_warnings) = lexer.finish();
    all_warnings.append(&mut warnings);
    if nodes.is_empty() {
        return Err(ParseError::NoInstructions {
            line: line_count.max(1),
        });
    }
    Ok(Dockerfile {
        directives,
        nodes,
        warnings: all_warnings,
    })
}

/// Read the bodies of the heredocs `text` (the node's logical line) opens, in order, from
/// the lines after it; the node then ends at the last terminator.
fn read_heredocs(lexer: &mut Lexer<'_>, node: &mut Node, text: &str) -> Result<(), ParseError> {
    let line = node.start_line;
    let words = heredocs_from_line(text).map_err(|message| ParseError::Syntax { line, message })?;
    for word in words {
        let Some(content) = lexer.heredoc_body(&word.name, word.chomp) else {
            return Err(ParseError::Syntax {
                line,
                message: format!(
                    "unterminated heredoc: the file ends before a line '{}' closes the here-document; add that line after its content",
                    word.name
                ),
            });
        };
        node.heredocs.push(Heredoc {
            name: word.name,
            file_descriptor: word.file_descriptor,
            expand: word.expand,
            chomp: word.chomp,
            content,
        });
    }
    node.end_line = lexer.line();
    Ok(())
}

/// `newNodeFromLine`: split off name and flags, then dispatch on the name.
fn node_from_line(
    text: &str,
    escape: char,
    start: usize,
    end: usize,
    warnings: &mut Vec<Warning>,
) -> Result<Node, ParseError> {
    let (cmd, flags, rest) = split_command(text);
    let instruction = cmd.to_lowercase();
    let syntax = |e: LineError| ParseError::Syntax {
        line: start,
        message: e.0,
    };
    let mut next = None;
    let parsed: Parsed = match instruction.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&rest).map_err(syntax)?,
        "arg" => parse_name_or_name_val(&rest, escape),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&rest).map_err(syntax)?,
        "env" => parse_name_val(&rest, "ENV", escape).map_err(syntax)?,
        "label" => parse_name_val(&rest, "LABEL", escape).map_err(syntax)?,
        "expose" | "from" => parse_whitespace_delimited(&rest),
        "healthcheck" => parse_health_config(&rest).map_err(syntax)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(&rest),
        "onbuild" => {
            if !rest.is_empty() {
                let inner = node_from_line(&rest, escape, start, end, warnings)?;
                next = Some(Box::new(inner));
            }
            Parsed::default()
        }
        // BuildKit's parseIgnore: an unknown instruction gets one empty argument.
        _ => Parsed {
            args: vec![String::new()],
            ..Parsed::default()
        },
    };
    if let Some(err) = &parsed.invalid_json {
        warnings.push(Warning {
            line: start,
            message: format!(
                "{} arguments start with '[' but are not a valid JSON array ({err}): they are used in shell form; \
                 write a JSON array of double-quoted strings for exec form",
                cmd.to_uppercase()
            ),
        });
    }
    Ok(Node {
        instruction,
        flags,
        args: parsed.args,
        json: parsed.json,
        original: text.to_string(),
        start_line: start,
        end_line: end,
        next,
        heredocs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(text: &str) -> String {
        parse(text).unwrap().dump()
    }

    #[test]
    fn basic_dump() {
        assert_eq!(
            dump("FROM alpine:latest\nCMD [\"sh\", \"-c\", \"echo hello\"]\n"),
            "(from \"alpine:latest\")\n(cmd \"sh\" \"-c\" \"echo hello\")\n"
        );
    }

    #[test]
    fn onbuild_nests() {
        let df = parse("FROM a\nONBUILD COPY --from=b x y\n").unwrap();
        assert_eq!(
            df.nodes[1].dump(),
            "onbuild (copy [\"--from=b\"] \"x\" \"y\")"
        );
        let inner = df.nodes[1].next.as_ref().unwrap();
        assert_eq!((inner.start_line, inner.end_line), (2, 2));
        assert_eq!(dump("FROM a\nONBUILD\n"), "(from \"a\")\n(onbuild)\n");
    }

    #[test]
    fn unknown_instruction_kept() {
        assert_eq!(dump("FROM a\nFOO bar baz\n"), "(from \"a\")\n(foo \"\")\n");
    }

    #[test]
    fn errors_name_lines() {
        let e = parse("").unwrap_err();
        assert!(matches!(e, ParseError::NoInstructions { .. }));
        assert!(
            e.to_string().starts_with("file with no instructions"),
            "{e}"
        );
        let e = parse("# a\n# b\n\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        let e = parse("FROM busybox\n\nENV PATH\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("ENV must have two arguments"), "{e}");
        assert!(
            e.to_string().ends_with("(Dockerfile:3)") || e.to_string().contains("(Dockerfile:3)"),
            "{e}"
        );
        let e = parse("FROM a\nCMD [ \"echo\", [ \"nested json\" ] ]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "when using JSON array syntax, arrays must be comprised of strings only (Dockerfile:2)"
        );
    }

    #[test]
    fn invalid_json_warns() {
        let df = parse("FROM a\n\nCMD [\"echo\", \"x\"\n").unwrap();
        assert_eq!(df.nodes[1].args, vec!["[\"echo\", \"x\"".to_string()]);
        assert!(!df.nodes[1].json);
        assert_eq!(df.warnings.len(), 1);
        assert_eq!(df.warnings[0].line, 3);
        assert!(df.warnings[0].message.contains("not a valid JSON array"));
        assert!(df.warnings[0].to_string().ends_with("(Dockerfile:3)"));
    }

    #[test]
    fn run_heredocs_read_and_not_where_there_are_none() {
        let df = parse("FROM a\nRUN <<EOF\necho\nEOF\n").unwrap();
        assert_eq!(df.nodes[1].heredocs[0].content, "echo\n");
        let df = parse("FROM a\nRUN [\"a<<b\"]\nRUN echo a<<b\nENV A <<B\nRUN \"<<X\"\n").unwrap();
        assert!(df.nodes.iter().all(|n| n.heredocs.is_empty()));
    }

    #[test]
    fn heredocs_read_like_buildkit() {
        let text = "FROM a\nCOPY <<FILE1 <<-FILE2 /dest\ncontent 1\nFILE1\n\tcontent 2\n\tFILE2\nCOPY [\"<<J\", \"/j\"]\nJ\nONBUILD ADD <<'E' /e\n$x\nE\n";
        let df = parse(text).unwrap();
        let copy = &df.nodes[1];
        assert_eq!((copy.start_line, copy.end_line), (2, 6));
        assert_eq!(copy.dump(), "copy \"<<FILE1\" \"<<-FILE2\" \"/dest\"");
        let docs: Vec<(&str, &str, bool, bool)> = copy
            .heredocs
            .iter()
            .map(|h| (h.name.as_str(), h.content.as_str(), h.expand, h.chomp))
            .collect();
        assert_eq!(
            docs,
            [
                ("FILE1", "content 1\n", true, false),
                ("FILE2", "\tcontent 2\n", true, true)
            ]
        );
        assert_eq!(copy.heredocs[1].chomped(), "content 2\n");
        // JSON form reads no heredoc: `J` is the next instruction.
        assert!(df.nodes[2].heredocs.is_empty());
        assert_eq!(df.nodes[3].instruction, "j");
        let onbuild = &df.nodes[4];
        assert_eq!(onbuild.heredocs.len(), 1);
        assert!(!onbuild.heredocs[0].expand);
        assert_eq!(onbuild.end_line, 11);

        // BuildKit's TestParseExtractsHeredoc: X and Y terminate each other's bodies.
        let df = parse("FROM a\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n").unwrap();
        let h = &df.nodes[1].heredocs;
        assert_eq!(
            (h[0].content.as_str(), h[1].content.as_str()),
            ("Y\n", "X\n")
        );

        let e = parse("FROM scratch\nCOPY <<EOF /x\nhello\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("unterminated heredoc"), "{e}");
    }

    #[test]
    fn empty_continuation_lines_warn() {
        let text = "\nFROM alpine:3.6\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
        let df = parse(text).unwrap();
        assert_eq!(df.warnings.len(), 2, "{:?}", df.warnings);
        assert!(
            df.warnings[0]
                .message
                .contains("RUN something     following     more")
        );
        assert_eq!(df.warnings[0].line, 4);
        assert!(df.warnings[1].message.contains("RUN another     thing"));
        assert_eq!(
            df.nodes[3].args,
            vec!["non-indented    after-comment".to_string()]
        );
        assert_eq!(df.nodes[4].args, vec!["indented     comment".to_string()]);
    }

    #[test]
    fn crlf_bom_and_lines() {
        let df = parse("\u{feff}FROM a\r\nRUN b \\\r\n  c\r\n").unwrap();
        assert_eq!(df.dump(), "(from \"a\")\n(run \"b   c\")\n");
        assert_eq!((df.nodes[1].start_line, df.nodes[1].end_line), (2, 3));
        assert_eq!(df.nodes[1].original, "RUN b   c");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "\\",
            "`",
            "#",
            "# escape=`\n`",
            "FROM\u{a0}a",
            "A --\"",
            "A --'x",
            "A --\\",
            "ENV a\u{85}b",
            "HEALTHCHECK \u{a0}",
            "\u{feff}",
            "[",
            "ONBUILD ONBUILD",
            "ONBUILD --",
            "COPY --a=\"\\",
        ] {
            let _ = parse(text);
        }
    }
}
