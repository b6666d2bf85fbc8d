//! The process-wide set of secrets seen so far, and [`scrub`], which blanks them out of text
//! about to be written (log lines): a second line of defence behind redacted `Debug`, for what
//! libraries log on their own at trace level (request headers, signed AWS requests).
//!
//! Every [`Secret`](super::Secret) registers itself when created; callers register derived
//! forms (the base64 of `user:password` in a Basic header) and secrets that never become a
//! `Secret` (AWS keys from the environment) with [`register`].

use std::borrow::Cow;
use std::sync::RwLock;

/// Shorter strings are not registered (they would blank out ordinary words).
const MIN_LEN: usize = 6;
/// At most this many secrets are kept (a bound on memory and on scrubbing time).
const MAX_SECRETS: usize = 256;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Remember `secret`, so [`scrub`] removes it from text.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    if let Ok(mut s) = SECRETS.write()
        && !s.iter().any(|x| x == secret)
        && s.len() < MAX_SECRETS
    {
        s.push(secret.to_string());
        // Longest first, so a secret containing another is replaced whole.
        s.sort_by_key(|x| std::cmp::Reverse(x.len()));
    }
}

/// `text` with every registered secret replaced by [`REDACTED`].
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(secrets) = SECRETS.read() else {
        return Cow::Borrowed(text);
    };
    let mut out = Cow::Borrowed(text);
    for s in secrets.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), REDACTED));
        }
    }
    out
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
}
