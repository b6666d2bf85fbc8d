//! Small HTTP helpers: size-limited body reads, error cause chains, URLs without their query
//! (upload locations and redirects may carry signatures) for logs and messages.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// Read at most `limit` bytes of `resp`'s body; `true` when there was more (not read).
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
) -> Result<(Bytes, bool), reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Ok((Bytes::new(), true));
    }
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let room = (limit as usize).saturating_sub(buf.len());
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf.freeze(), true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf.freeze(), false))
}

/// An error and its causes, `a: b: c`, with repeats dropped and no URL.
pub(crate) fn cause_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = match err.downcast_ref::<reqwest::Error>() {
            Some(r) if r.url().is_some() => {
                let mut r2 = String::new();
                // reqwest's Display names the URL (with its query); describe the kind instead.
                if r.is_connect() {
                    r2.push_str("connection failed");
                } else if r.is_timeout() {
                    r2.push_str("timed out");
                } else if r.is_body() {
                    r2.push_str("request or response body error");
                } else if r.is_decode() {
                    r2.push_str("cannot decode response");
                } else if r.is_redirect() {
                    r2.push_str("redirect error");
                } else {
                    r2.push_str("request failed");
                }
                r2
            }
            _ => err.to_string(),
        };
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// `url` without query or fragment.
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}
