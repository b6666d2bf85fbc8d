//! Upload bodies: a blob source's stream that counts bytes for progress (published on a
//! `watch` channel the uploading task turns into progress callbacks), remembers a read error of
//! the source (so it is reported as such, not as a network error), and checks the length.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use crate::blob::ByteStream;
use crate::dest::Progress;

/// Where a failing source's error is left for the uploader.
pub(crate) type ErrorSlot = Arc<Mutex<Option<io::Error>>>;

/// Wrap `stream` (expected to yield exactly `len` bytes) so that it publishes `base + sent` on
/// `tx` and leaves any source error in `slot`.
pub(crate) fn counted(
    stream: ByteStream,
    len: u64,
    base: u64,
    tx: Arc<watch::Sender<u64>>,
    slot: ErrorSlot,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let mut sent = 0u64;
    let mut done = false;
    stream
        .map(Some)
        .chain(futures_util::stream::once(async { None }))
        .filter_map(move |item| {
            let out = if done {
                None
            } else {
                match item {
                    Some(Ok(b)) => {
                        sent += b.len() as u64;
                        if sent > len {
                            done = true;
                            Some(Err(fail(
                                &slot,
                                format!("the blob source gave more than the expected {len} bytes"),
                            )))
                        } else {
                            let _ = tx.send(base + sent);
                            Some(Ok(b))
                        }
                    }
                    Some(Err(e)) => {
                        done = true;
                        let msg = e.to_string();
                        if let Ok(mut s) = slot.lock() {
                            s.get_or_insert(e);
                        }
                        Some(Err(io::Error::other(msg)))
                    }
                    None if sent < len => {
                        done = true;
                        Some(Err(fail(
                            &slot,
                            format!("the blob source ended after {sent} of {len} bytes"),
                        )))
                    }
                    None => None,
                }
            };
            std::future::ready(out)
        })
}

fn fail(slot: &ErrorSlot, msg: String) -> io::Error {
    if let Ok(mut s) = slot.lock() {
        s.get_or_insert(io::Error::new(io::ErrorKind::UnexpectedEof, msg.clone()));
    }
    io::Error::other(msg)
}

/// Take the source error left in `slot`, if any.
pub(crate) fn take_error(slot: &ErrorSlot) -> Option<io::Error> {
    slot.lock().ok().and_then(|mut s| s.take())
}

/// Drive `fut` to completion, calling `progress` with each new total published on `rx`.
pub(crate) async fn with_progress<F: std::future::Future>(
    fut: F,
    mut rx: watch::Receiver<u64>,
    progress: Progress<'_>,
) -> F::Output {
    tokio::pin!(fut);
    let mut open = true;
    loop {
        tokio::select! {
            out = &mut fut => {
                if rx.has_changed().unwrap_or(false) {
                    progress(*rx.borrow_and_update());
                }
                return out;
            }
            changed = rx.changed(), if open => {
                match changed {
                    Ok(()) => progress(*rx.borrow_and_update()),
                    Err(_) => open = false,
                }
            }
        }
    }
}

/// Up to `len` bytes of a shared stream: the chunks of a chunked upload read one source
/// stream in turn.
pub(crate) struct Shared {
    pub stream: ByteStream,
    pub leftover: Option<Bytes>,
}

/// The next `len` bytes of `shared` as a stream (shorter if the source ends).
pub(crate) fn take(shared: Arc<tokio::sync::Mutex<Shared>>, len: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (shared, len),
        |(shared, remaining)| async move {
            if remaining == 0 {
                return None;
            }
            let mut s = shared.lock().await;
            let next = match s.leftover.take() {
                Some(b) => Some(Ok(b)),
                None => s.stream.next().await,
            };
            match next {
                None => None,
                Some(Err(e)) => Some((Err(e), (shared.clone(), 0))),
                Some(Ok(mut b)) => {
                    if b.len() as u64 > remaining {
                        let rest = b.split_off(remaining as usize);
                        s.leftover = Some(rest);
                    }
                    let n = b.len() as u64;
                    drop(s);
                    Some((Ok(b), (shared, remaining - n)))
                }
            }
        },
    ))
}
