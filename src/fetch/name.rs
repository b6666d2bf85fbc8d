//! The name a downloaded file gets in the image, as BuildKit's Dockerfile frontend names it:
//! the last segment of the URL's (percent-decoded) path, `__unnamed__` when the path has none
//! (frontend/dockerfile/dockerfile2llb/convert_copy.go, `path.Base(u.Path)`), made safe by
//! source/util/pathutil `SafeFileName` (`download` for `..`, or a name with control
//! characters). The frontend always passes this name, so the server's `Content-Disposition`
//! never names a Dockerfile `ADD`'s file.

/// The name for a file downloaded from `url` (as written).
pub fn file_name(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| percent_decode(u.path()))
        .unwrap_or_default();
    safe_file_name(&base(&path).unwrap_or_else(|| "__unnamed__".into()))
}

/// Go's `path.Base`, `None` where it gives `.` or `/`.
fn base(path: &str) -> Option<String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    (last != ".").then(|| last.to_string())
}

/// pathutil's `SafeFileName`.
fn safe_file_name(s: &str) -> String {
    let name = s.trim();
    let name = name.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() || name == "." || name == ".." || name.chars().any(char::is_control) {
        return "download".into();
    }
    name.to_string()
}

/// `%XX` sequences decoded (invalid UTF-8 replaced); malformed ones kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_buildkit() {
        for (url, name) in [
            ("https://example.com/dir/file.tar.gz", "file.tar.gz"),
            ("https://example.com/dir/file.tar.gz?x=1#y", "file.tar.gz"),
            ("https://example.com/dir/", "dir"),
            ("https://example.com/", "__unnamed__"),
            ("https://example.com", "__unnamed__"),
            ("https://example.com/a%20b.txt", "a b.txt"),
            ("https://example.com/a%2Fb", "b"),
            ("https://example.com/..", "__unnamed__"),
            ("https://example.com/x%0Ay", "download"),
            ("https://example.com/x%", "x%"),
        ] {
            assert_eq!(file_name(url), name, "{url}");
        }
    }
}
