//! Small HTTP helpers: size-limited body reads that give up on a stalled connection, the stall
//! watchdog every request goes through, error cause chains, URLs without their query (upload
//! locations and redirects may carry signatures) for logs and messages.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;

/// Why a response body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The connection failed.
    Http(reqwest::Error),
    /// Nothing arrived for this long.
    Stalled(Duration),
}

impl BodyError {
    /// A description without URL.
    pub fn describe(&self) -> String {
        match self {
            BodyError::Http(e) => cause_chain(e),
            BodyError::Stalled(d) => stalled(*d),
        }
    }
}

/// "no data for 30 s".
pub(crate) fn stalled(d: Duration) -> String {
    format!(
        "no data moved for {} s (the registry or the network stalled)",
        d.as_secs_f64().ceil() as u64
    )
}

/// Await `fut`, giving up when `stall` passes without it finishing and without `activity`
/// (bytes of a request body sent) changing. `Err(())` is a stall.
pub(crate) async fn watch_stall<F: Future>(
    fut: F,
    stall: Duration,
    activity: Option<watch::Receiver<u64>>,
) -> Result<F::Output, ()> {
    tokio::pin!(fut);
    let mut activity = activity;
    loop {
        let timer = tokio::time::sleep(stall);
        tokio::pin!(timer);
        let moved = async {
            match activity.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        // The sender is gone (body fully sent): only the timer remains.
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            out = &mut fut => return Ok(out),
            () = moved => continue,
            () = &mut timer => return Err(()),
        }
    }
}

/// Read at most `limit` bytes of `resp`'s body, each read within `stall`; `true` when there was
/// more (not read).
pub(crate) async fn read_limited(
    resp: reqwest::Response,
    limit: u64,
    stall: Duration,
) -> Result<(Bytes, bool), BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Ok((Bytes::new(), true));
    }
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    loop {
        let next = tokio::time::timeout(stall, stream.next())
            .await
            .map_err(|_| BodyError::Stalled(stall))?;
        let Some(chunk) = next else { break };
        let chunk = chunk.map_err(BodyError::Http)?;
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
