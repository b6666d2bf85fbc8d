//! Here-documents as BuildKit's parser finds them (frontend/dockerfile/parser/parser.go:
//! `heredocsFromLine`, `ParseHeredoc`, `canContainHeredoc`): which instructions read them, which
//! words of the line are `[n]<<[-]NAME`, the delimiter's name and whether the body is expanded
//! (no part of the delimiter quoted).

use super::ast::Node;
use super::expand::{LexOptions, process_with};

/// A `<<NAME` word, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocWord {
    pub name: String,
    pub file_descriptor: u32,
    pub expand: bool,
    pub chomp: bool,
}

/// `canContainHeredoc`: a shell-form `ADD`, `COPY` or `RUN`, possibly under `ONBUILD`.
pub(crate) fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&node.next, node.instruction.as_str()) {
        (Some(inner), "onbuild") => inner.as_ref(),
        _ => node,
    };
    matches!(node.instruction.as_str(), "add" | "copy" | "run") && !node.json
}

/// No variable is set while the parser looks for heredocs.
fn no_vars(_: &str) -> Option<String> {
    None
}

/// `heredocsFromLine`: the heredoc words of a logical line, in order. The line is split as
/// BuildKit's shell lexer splits it (quotes and escapes kept, unset variables left as written,
/// `<<` joined with the blanks after it); a line that does not lex has none.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<HeredocWord>, String> {
    let opts = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset_env: true,
        skip_process_quotes: false,
    };
    let Ok((_, words)) = process_with(line, &no_vars, '\\', opts) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    for word in &words {
        if let Some(doc) = parse_heredoc(word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// `ParseHeredoc`: `Ok(None)` when `word` is not a heredoc (`^(\d*)<<(-?)\s*([^<]*)$` with a
/// non-empty name that lexes as one word), an error when its quotes do not lex.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<HeredocWord>, String> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(rest) = word.get(digits..).and_then(|r| r.strip_prefix("<<")) else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\u{c}', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let file_descriptor = word.get(..digits).unwrap_or("").parse().unwrap_or(0);
    let lex = |raw_quotes: bool| {
        let opts = LexOptions {
            raw_quotes,
            skip_unset_env: true,
            ..LexOptions::default()
        };
        process_with(rest, &no_vars, '\\', opts)
            .map(|(_, words)| words)
            .map_err(|e| format!("invalid heredoc delimiter {word:?}: {e}"))
    };
    let words = lex(false)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = lex(true)?;
    let [raw_name] = raw.as_slice() else {
        return Err(format!(
            "invalid heredoc delimiter {word:?}: its quotes split it into several words"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    Ok(Some(HeredocWord {
        name: name.clone(),
        file_descriptor,
        expand: quotes(name) == quotes(raw_name),
        chomp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(word: &str) -> Option<(String, bool, bool)> {
        parse_heredoc(word)
            .unwrap()
            .map(|h| (h.name, h.expand, h.chomp))
    }

    /// BuildKit's `TestParseHeredocHelpers`.
    #[test]
    fn heredoc_words() {
        for word in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(name(word).map(|n| n.0).as_deref(), Some("EOF"), "{word}");
        }
        for bad in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(bad).is_err(), "{bad}");
        }
        for not in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc(not).unwrap(), None, "{not}");
        }
        assert_eq!(name("<<EOF"), Some(("EOF".into(), true, false)));
        assert_eq!(name("<<-'EOF'"), Some(("EOF".into(), false, true)));
        assert_eq!(name("<<eo'f'"), Some(("eof".into(), false, false)));
        assert_eq!(name("<<eo\\'f"), Some(("eo'f".into(), true, false)));
        assert_eq!(name("<<'e'o\\'f"), Some(("eo'f".into(), false, false)));
        assert_eq!(name("<<'one two'"), Some(("one two".into(), false, false)));
        assert_eq!(name("<<$EOF"), Some(("$EOF".into(), true, false)));
        assert_eq!(name("<< -EOF"), Some(("-EOF".into(), true, false)));
        assert_eq!(parse_heredoc("3<<X").unwrap().unwrap().file_descriptor, 3);
    }

    /// BuildKit's `TestHeredocsFromLine`.
    #[test]
    fn heredocs_of_a_line() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|h| h.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<-EOF"), ["EOF"]);
        // BuildKit's lexer keeps blanks after `<<` only, so `<<- EOF` splits into two words and
        // is no heredoc (its test checks only the heredocs found, none here).
        assert!(names("RUN <<- EOF").is_empty());
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN <<'EOF'"), ["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN <<'EOF").is_empty());
        assert_eq!(names("COPY <<file.txt /dest"), ["file.txt"]);
    }
}
