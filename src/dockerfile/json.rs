//! The JSON-array reading behind BuildKit's `parseJSON`, with Go's `encoding/json`
//! semantics: the whole text must be valid JSON (else the instruction falls back to shell
//! form), numbers must fit a float64, lone UTF-16 surrogates decode to U+FFFD, and only
//! then must every top-level element be a string. Iterative, so deep nesting cannot
//! overflow the stack.

/// What a text starting with `[` turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// A valid array of strings.
    Strings(Vec<String>),
    /// A valid array with a non-string element (an error in BuildKit).
    NonString,
    /// Not valid JSON (BuildKit uses the shell form); the reason.
    Invalid(String),
}

/// Go's `encoding/json` nesting limit.
const MAX_DEPTH: usize = 10_000;

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    /// A number did not fit a float64 (Go's `UnmarshalTypeError`).
    overflow: bool,
}

type Res<T> = Result<T, String>;

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Res<T> {
        match self.peek() {
            Some(c) => Err(format!("invalid character {:?} {what}", c as char)),
            None => Err("unexpected end of JSON input".into()),
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Res<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn hex4(&self, at: usize) -> Option<u16> {
        let digits = self.b.get(at..at + 4)?;
        let s = std::str::from_utf8(digits).ok()?;
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u16::from_str_radix(s, 16).ok()
    }

    /// A string, at its opening quote.
    fn string(&mut self) -> Res<String> {
        self.expect(b'"', "looking for beginning of string")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("in string literal");
            };
            self.i += 1;
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&out).into_owned()),
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return self.err("in string escape code");
                    };
                    self.i += 1;
                    let simple = match e {
                        b'"' => Some(b'"'),
                        b'\\' => Some(b'\\'),
                        b'/' => Some(b'/'),
                        b'b' => Some(8),
                        b'f' => Some(12),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        _ => None,
                    };
                    if let Some(s) = simple {
                        out.push(s);
                        continue;
                    }
                    if e != b'u' {
                        self.i -= 1;
                        return self.err("in string escape code");
                    }
                    let Some(u) = self.hex4(self.i) else {
                        return Err("invalid \\u escape in string literal".into());
                    };
                    self.i += 4;
                    let mut ch = char::from_u32(u32::from(u));
                    let low = if (0xD800..0xDC00).contains(&u)
                        && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                    {
                        self.hex4(self.i + 2)
                            .filter(|lo| (0xDC00..0xE000).contains(lo))
                    } else {
                        None
                    };
                    if let Some(lo) = low {
                        let cp =
                            0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                        ch = char::from_u32(cp);
                        self.i += 6;
                    }
                    let ch = ch.unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => {
                    self.i -= 1;
                    return self.err("in string literal");
                }
                c => out.push(c),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Res<()> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return self.err("in numeric literal"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return self.err("after decimal point in numeric literal");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return self.err("in exponent of numeric literal");
            }
        }
        let text = self
            .b
            .get(start..self.i)
            .and_then(|t| std::str::from_utf8(t).ok());
        if text
            .and_then(|t| t.parse::<f64>().ok())
            .is_none_or(|f| f.is_infinite())
        {
            self.overflow = true;
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Res<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            self.err("in literal")
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Res<()> {
        self.ws();
        self.string()?;
        self.ws();
        self.expect(b':', "after object key")
    }

    /// Skip one value of any kind, nested containers included.
    fn skip_value(&mut self) -> Res<()> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    self.i += 1;
                    self.ws();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                    } else {
                        stack.push(open);
                        if stack.len() > MAX_DEPTH {
                            return Err("exceeded max depth".into());
                        }
                        if open == b'{' {
                            self.key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                _ => return self.err("looking for beginning of value"),
            }
            // A value is complete: close what it completes.
            loop {
                let Some(&top) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if top == b'{' {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b']') if top == b'[' => {
                        self.i += 1;
                        stack.pop();
                    }
                    Some(b'}') if top == b'{' => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => return self.err("after array element or object key:value pair"),
                }
            }
        }
    }

    fn array(&mut self) -> Res<Vec<Option<String>>> {
        self.ws();
        self.expect(b'[', "looking for beginning of value")?;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() == Some(b'"') {
                    out.push(Some(self.string()?));
                } else {
                    self.skip_value()?;
                    out.push(None);
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b']') => {
                        self.i += 1;
                        break;
                    }
                    _ => return self.err("after array element"),
                }
            }
        }
        self.ws();
        if self.i < self.b.len() {
            return self.err("after top-level value");
        }
        Ok(out)
    }
}

/// Read `text` (which starts with `[`, after leading whitespace) as Go's `json.Unmarshal`
/// into `[]any` followed by BuildKit's string check would.
pub(crate) fn parse_json_array(text: &str) -> JsonArray {
    let mut r = Reader {
        b: text.as_bytes(),
        i: 0,
        overflow: false,
    };
    match r.array() {
        Err(e) => JsonArray::Invalid(e),
        Ok(_) if r.overflow => JsonArray::Invalid("number out of range of a float64".into()),
        Ok(items) => match items.into_iter().collect::<Option<Vec<String>>>() {
            Some(strings) => JsonArray::Strings(strings),
            None => JsonArray::NonString,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArray {
        JsonArray::Strings(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn valid_arrays() {
        assert_eq!(parse_json_array("[]"), strings(&[]));
        assert_eq!(
            parse_json_array(" [ \"a\" ,\t\"b\" ] \n"),
            strings(&["a", "b"])
        );
        assert_eq!(
            parse_json_array(r#"["\" \\ \/ \b \f \n \r \t \u0000 \u00e9 \ud83d\ude00"]"#),
            strings(&["\" \\ / \u{8} \u{c} \n \r \t \u{0} é 😀"])
        );
        assert_eq!(
            parse_json_array(r#"["\ud800", "\udc00x"]"#),
            strings(&["\u{fffd}", "\u{fffd}x"])
        );
        assert_eq!(parse_json_array("[\"♥\"]"), strings(&["♥"]));
    }

    #[test]
    fn non_strings() {
        for t in [
            r#"["a", 1]"#,
            "[null]",
            r#"[{"a": [1, {"b": []}]}]"#,
            r#"["a", ["b"]]"#,
            "[true, -0.5e+3]",
        ] {
            assert_eq!(parse_json_array(t), JsonArray::NonString, "{t}");
        }
    }

    #[test]
    fn invalid() {
        for t in [
            "[",
            "[\"a\"",
            "[\"a\",]",
            "['a']",
            "[\"a\"] x",
            "[01]",
            "[1.]",
            "[1e]",
            "[-]",
            "[tru]",
            "[\"\\x\"]",
            "[\"\\u12\"]",
            "[\"a\tb\"]",
            "[{\"a\" 1}]",
            "[{1: 2}]",
            "[1e400]",
            "[[1e999]]",
            "[\"a\" \"b\"]",
            "[}",
        ] {
            assert!(matches!(parse_json_array(t), JsonArray::Invalid(_)), "{t}");
        }
        let deep = "[".repeat(20_000) + &"]".repeat(20_000);
        assert!(matches!(parse_json_array(&deep), JsonArray::Invalid(_)));
        let ok_deep = "[".repeat(500) + &"]".repeat(500);
        assert_eq!(parse_json_array(&ok_deep), JsonArray::NonString);
    }
}
