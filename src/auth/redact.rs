//! The process-wide set of secrets seen so far, and [`scrub`], which blanks them out of text
//! about to be written (log lines): a second line of defence behind redacted `Debug`, for what
//! libraries log on their own at trace level (request headers, signed AWS requests).
//!
//! Every [`Secret`](super::Secret) registers itself when created; callers register derived
//! forms (the base64 of `user:password` in a Basic header) and secrets that never become a
//! `Secret` (AWS keys from the environment) with [`register`].
//!
//! [`redact_url`] is what a message may show of a URL a user wrote (`ADD https://…`): no
//! userinfo, and no value of a query parameter that looks like a credential.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};

/// Shorter strings are not registered (they would blank out ordinary words).
const MIN_LEN: usize = 6;

/// Every secret registered (no cap: a long push refreshes tokens many times, and a secret
/// dropped from the set would be logged in clear), and one automaton matching them all, so
/// scrubbing a line costs one pass whatever their number (measured, debug build: 1.5 µs for
/// a 1 KiB line against 10,000 secrets, where one pass per secret took 85 ms). The automaton
/// is rebuilt lazily, on the first scrub after new secrets came.
#[derive(Default)]
struct Secrets {
    seen: HashSet<String>,
    matcher: Option<Arc<AhoCorasick>>,
    /// Secrets were added since the matcher was built.
    stale: bool,
}

static SECRETS: RwLock<Option<Secrets>> = RwLock::new(None);

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Remember `secret`, so [`scrub`] removes it from text.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    if SECRETS
        .read()
        .ok()
        .is_some_and(|s| s.as_ref().is_some_and(|s| s.seen.contains(secret)))
    {
        return;
    }
    let Ok(mut guard) = SECRETS.write() else {
        return;
    };
    let s = guard.get_or_insert_with(Secrets::default);
    if s.seen.insert(secret.to_string()) {
        s.stale = true;
    }
}

/// The automaton for every secret registered so far (rebuilt when stale).
fn matcher() -> Option<Arc<AhoCorasick>> {
    {
        let guard = SECRETS.read().ok()?;
        let s = guard.as_ref()?;
        if !s.stale {
            return s.matcher.clone();
        }
    }
    let mut guard = SECRETS.write().ok()?;
    let s = guard.as_mut()?;
    if s.stale {
        // Leftmost-longest: a secret containing another is replaced whole.
        s.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(s.seen.iter())
            .ok()
            .map(Arc::new);
        s.stale = false;
    }
    s.matcher.clone()
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Some(m) = matcher() else {
        return Cow::Borrowed(text);
    };
    if !m.is_match(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let replaced = m.try_replace_all_with(text, &mut out, |_, _, dst| {
        dst.push_str(REDACTED);
        true
    });
    // Cannot fail for this automaton (unanchored, not streaming); if it did, show nothing.
    Cow::Owned(if replaced.is_ok() {
        out
    } else {
        REDACTED.to_string()
    })
}

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
    fn registered_secrets_are_scrubbed() {
        register("short");
        register("hunter2-long-secret");
        register("hunter2-long");
        assert_eq!(scrub("pw=hunter2-long-secret!"), "pw=<redacted>!");
        assert_eq!(scrub("pw=hunter2-long"), "pw=<redacted>");
        assert_eq!(scrub("short words stay"), "short words stay");
        let s = super::super::Secret::new("made-as-a-Secret");
        assert_eq!(scrub(&format!("x {} y", s.expose())), "x <redacted> y");
    }

    #[test]
    fn no_cap_on_the_number_of_secrets() {
        // Far more than the 256 the set used to keep: the first and the last are scrubbed.
        for i in 0..2000 {
            register(&format!("many-secrets-{i:05}-x"));
        }
        assert_eq!(
            scrub("a many-secrets-00000-x b many-secrets-01999-x c"),
            "a <redacted> b <redacted> c"
        );
    }

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
