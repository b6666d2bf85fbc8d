//! The download client: a reqwest client with the registry client's User-Agent, connect
//! timeout and extra CA roots (`--ca-cert`), that follows redirects itself so it can bound
//! them, refuse an `https` → `http` downgrade, and send the URL's credentials
//! (`https://user:password@host/…`, as Basic auth) only to the URL's own origin — never to
//! wherever a redirect points. Every wait is bounded by the stall timeout (`--timeout`).

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, RETRY_AFTER};
use url::Url;

use super::error::FetchError;
use super::name::percent_decode;
use crate::auth::Secret;
use crate::auth::redact::{redact_url, register};
use crate::registry::http::cause_chain;
use crate::registry::retry::parse_retry_after;
use crate::registry::{ClientOptions, RetryPolicy, http_client_builder};

/// Redirects followed for one download (Go's `http.Client` default).
pub const MAX_REDIRECTS: usize = 10;

/// Downloads `ADD <url>` sources. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    pub(crate) retry: RetryPolicy,
    pub(crate) stall: Duration,
}

/// A URL to download, its credentials split off.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The URL without userinfo.
    url: Url,
    /// The URL as messages show it.
    pub shown: String,
    /// `user` and `password` from the URL's userinfo.
    auth: Option<(String, Option<Secret>)>,
}

impl Target {
    /// Parse `raw` (an `http://` or `https://` URL, possibly with userinfo).
    pub(crate) fn parse(raw: &str) -> Result<Target, FetchError> {
        let shown = redact_url(raw);
        let mut url = Url::parse(raw).map_err(|e| FetchError::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::InvalidUrl {
                url: shown,
                reason: "only http:// and https:// URLs are downloaded".into(),
            });
        }
        let auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let user = percent_decode(url.username());
            let password = url.password().map(|p| Secret::new(percent_decode(p)));
            // The Basic header reqwest writes, should a trace log show it.
            register(&base64::engine::general_purpose::STANDARD.encode(format!(
                "{user}:{}",
                password.as_ref().map_or("", Secret::expose)
            )));
            let _ = url.set_username("");
            let _ = url.set_password(None);
            Some((user, password))
        };
        Ok(Target { url, shown, auth })
    }
}

impl Fetcher {
    /// A fetcher with `opts`' User-Agent, CA roots, connect and stall timeouts and retries
    /// (the registry client's, from `--retries`, `--timeout` and `--ca-cert`).
    pub fn new(opts: &ClientOptions) -> Result<Fetcher, FetchError> {
        let http = http_client_builder(opts)
            .map_err(|e| FetchError::Client(e.to_string()))?
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FetchError::Client(cause_chain(&e)))?;
        Ok(Fetcher {
            http,
            retry: opts.retry,
            stall: opts.stall_timeout.max(Duration::from_millis(100)),
        })
    }

    /// `GET` `target`, following redirects: the successful response and the URL (shown) it
    /// came from. One attempt; the caller retries.
    pub(crate) async fn get(
        &self,
        target: &Target,
    ) -> Result<(reqwest::Response, String), FetchError> {
        let origin = target.url.origin();
        let mut url = target.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let shown = redact_url(url.as_str());
            let mut req = self.http.get(url.clone());
            if let Some((user, password)) = &target.auth
                && url.origin() == origin
            {
                req = req.basic_auth(user, password.as_ref().map(Secret::expose));
            }
            let resp = match tokio::time::timeout(self.stall, req.send()).await {
                Err(_) => {
                    return Err(FetchError::Timeout {
                        url: shown,
                        cause: format!(
                            "no answer within {} s",
                            self.stall.as_secs_f64().ceil() as u64
                        ),
                    });
                }
                Ok(Err(e)) => return Err(send_error(&e, shown)),
                Ok(Ok(r)) => r,
            };
            let status = resp.status();
            if status.is_success() {
                return Ok((resp, shown));
            }
            if is_redirect(status) {
                let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok());
                url = next_url(&url, status.as_u16(), location, &shown)?;
                continue;
            }
            return Err(FetchError::Status {
                url: shown,
                status: status.as_u16(),
                retry_after: parse_retry_after(resp.headers().get(RETRY_AFTER)),
                hint: FetchError::hint_for(status.as_u16()),
            });
        }
        Err(FetchError::TooManyRedirects {
            url: target.shown.clone(),
            limit: MAX_REDIRECTS,
        })
    }
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Where a redirect from `from` goes: its `Location`, resolved against `from`, without
/// userinfo; `https` → `http` is refused.
fn next_url(
    from: &Url,
    status: u16,
    location: Option<&str>,
    shown: &str,
) -> Result<Url, FetchError> {
    let bad = |reason: String| FetchError::BadRedirect {
        url: shown.to_string(),
        reason,
    };
    let location = location.ok_or_else(|| {
        bad(format!(
            "the server answered HTTP {status} without a Location to follow"
        ))
    })?;
    let mut next = from
        .join(location)
        .map_err(|e| bad(format!("its redirect Location does not parse: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(bad(format!(
            "it redirects to a {}: URL; only http and https are followed",
            next.scheme()
        )));
    }
    if from.scheme() == "https" && next.scheme() == "http" {
        return Err(bad(format!(
            "it redirects from https to plain http ({}); refusing to downgrade, use the http URL directly if that is intended",
            redact_url(next.as_str())
        )));
    }
    let _ = next.set_username("");
    let _ = next.set_password(None);
    Ok(next)
}

/// A failed `send`, typed: connection problems are retryable.
fn send_error(e: &reqwest::Error, url: String) -> FetchError {
    let cause = cause_chain(e);
    if e.is_timeout() {
        FetchError::Timeout { url, cause }
    } else if e.is_connect() {
        FetchError::Unreachable { url, cause }
    } else {
        FetchError::Interrupted { url, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_credentials() {
        let t = Target::parse("https://us%40er:p%40ss-word@example.com/f?sig=1").unwrap();
        assert_eq!(t.url.as_str(), "https://example.com/f?sig=1");
        assert_eq!(t.shown, "https://<redacted>@example.com/f?sig=<redacted>");
        let (user, pw) = t.auth.unwrap();
        assert_eq!(user, "us@er");
        assert_eq!(pw.unwrap().expose(), "p@ss-word");
        let e = Target::parse("ftp://x/y").unwrap_err();
        assert!(e.to_string().contains("only http:// and https://"), "{e}");
        let e = Target::parse("https://[::1/x").unwrap_err();
        assert!(matches!(e, FetchError::InvalidUrl { .. }), "{e}");
    }

    #[test]
    fn redirects_resolve_and_never_downgrade() {
        let from = Url::parse("https://example.com/a/b").unwrap();
        let next = |loc: Option<&str>| next_url(&from, 302, loc, "shown");
        assert_eq!(next(Some("c")).unwrap().as_str(), "https://example.com/a/c");
        assert_eq!(
            next(Some("https://u:p@cdn.example.org/x?sig=1"))
                .unwrap()
                .as_str(),
            "https://cdn.example.org/x?sig=1",
            "userinfo in a Location is dropped"
        );
        let e = next(Some("http://example.com/a/c"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to downgrade"), "{e}");
        let e = next(Some("ftp://example.com/x")).unwrap_err().to_string();
        assert!(e.contains("only http and https"), "{e}");
        let e = next(None).unwrap_err().to_string();
        assert!(e.contains("HTTP 302 without a Location"), "{e}");
        let plain = Url::parse("http://example.com/").unwrap();
        assert!(next_url(&plain, 301, Some("https://example.com/"), "s").is_ok());
    }
}
