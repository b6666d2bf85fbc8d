//! [`redact_url`]: what a message may show of a URL a user wrote (`ADD https://…`): no
//! userinfo, and no value of a query parameter that looks like a credential.

use super::REDACTED;

/// Query parameter names (lower case) whose values are credentials: a part of the name is
/// enough (`X-Amz-Signature`, `access_token`, `sig`).
const SECRET_PARAMS: [&str; 10] = [
    "token",
    "sig",
    "secret",
    "password",
    "passwd",
    "key",
    "auth",
    "credential",
    "session",
    "signature",
];

/// `url` as a message may show it: the userinfo (`user:password@`) replaced by
/// `<redacted>@`, and the value of every query parameter whose name looks like a credential
/// (see `SECRET_PARAMS`) replaced by `<redacted>`. Text that does not parse as a URL loses
/// everything between `://` and an `@` before the first `/` after it.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return redact_unparsed(url);
    };
    let mut out = format!("{}://", parsed.scheme());
    if !parsed.username().is_empty() || parsed.password().is_some() {
        out.push_str(REDACTED);
        out.push('@');
    }
    if let Some(host) = parsed.host_str() {
        out.push_str(host);
    }
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(parsed.path());
    if let Some(query) = parsed.query() {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = parsed.fragment() {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|p| lower.contains(p))
}

fn redact_unparsed(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_and_secret_query_values() {
        assert_eq!(
            redact_url(
                "https://user:hunter2@example.com:8443/a/b.tgz?X-Amz-Signature=abc&v=1#frag"
            ),
            "https://<redacted>@example.com:8443/a/b.tgz?X-Amz-Signature=<redacted>&v=1#frag"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:80/x?access_token=t0k&sig=s&name=ok"),
            "http://127.0.0.1/x?access_token=<redacted>&sig=<redacted>&name=ok"
        );
        assert_eq!(
            redact_url("https://example.com/file"),
            "https://example.com/file"
        );
        assert_eq!(
            redact_url("https://u:p@bad host/x"),
            "https://<redacted>@bad host/x"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
