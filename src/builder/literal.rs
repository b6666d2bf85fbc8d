//! Values set in code reach the planner as Dockerfile words, which it expands (`$VAR`,
//! quotes, escapes) as BuildKit does. [`literal`] escapes a value so that expanding it gives
//! the value back unchanged: `$HOME`, quotes and backslashes stay what the caller wrote.

/// `value` as a word that [`crate::dockerfile::expand_word`] (escape character `\`) turns back
/// into `value`: every character that is not an ASCII letter or digit gets a `\` before it.
pub(crate) fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for c in value.chars() {
        if !c.is_ascii_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::literal;
    use crate::dockerfile::expand_word;

    #[test]
    fn expansion_gives_the_value_back() {
        let env = |name: &str| (name == "HOME").then(|| "/root".to_string());
        for v in [
            "",
            "plain",
            "$HOME",
            "${HOME:-x}",
            "a b  c",
            "'single' \"double\"",
            "back\\slash\\",
            "tab\there",
            "new\nline",
            "ünïcødé → ✓",
            "`tick` ~ * ? [x] {a,b}",
            "$",
            "\\$HOME",
        ] {
            assert_eq!(expand_word(&literal(v), &env, '\\').unwrap(), v, "{v:?}");
        }
    }
}
