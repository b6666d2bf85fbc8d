//! Downloads against a tiny HTTP/1.1 server on 127.0.0.1 run by each test: redirects and
//! credentials, retries, checksums, cut-off and stalled bodies, reuse of pinned downloads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::digest::Digest;
use crate::registry::{ClientOptions, RetryPolicy};

/// What a test server saw of one request: its path and `Authorization` header.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
}

/// An answer: status line + headers (without the blank line) and body; `hang` keeps the
/// connection open that long after the first half of the body.
struct Answer {
    head: String,
    body: Vec<u8>,
    hang: Option<Duration>,
}

fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    Answer {
        head,
        body: body.to_vec(),
        hang: None,
    }
}

type Route = Arc<dyn Fn(&str, usize) -> Answer + Send + Sync>;

/// Serve `route(path, request number)` on a fresh port; returns the base URL and the log.
async fn serve(route: Route) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let route = route.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
                let auth = text
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
                    .map(|l| l["authorization:".len()..].trim().to_string());
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(Seen {
                        path: path.clone(),
                        auth,
                    });
                    l.len()
                };
                let a = route(&path, n);
                let _ = sock.write_all(a.head.as_bytes()).await;
                let _ = sock.write_all(b"\r\n").await;
                match a.hang {
                    Some(d) => {
                        let half = a.body.len() / 2;
                        let _ = sock.write_all(&a.body[..half]).await;
                        tokio::time::sleep(d).await;
                    }
                    None => {
                        let _ = sock.write_all(&a.body).await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn fetcher(retries: u32, stall: Duration) -> Fetcher {
    Fetcher::new(&ClientOptions {
        retry: RetryPolicy {
            max_attempts: retries + 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(30),
        },
        stall_timeout: stall,
        ..ClientOptions::default()
    })
    .unwrap()
}

fn stores(dir: &std::path::Path, cache: bool) -> Stores {
    Stores {
        spool: DownloadStore::new(&dir.join("spool")),
        cache: cache.then(|| DownloadStore::new(&dir.join("cache"))),
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test]
async fn downloads_retry_and_reuse_pinned_files() {
    let route: Route = Arc::new(|path, n| match (path, n) {
        ("/flaky/app.tar.gz", 1) => {
            answer("503 Service Unavailable", &[("Retry-After", "0")], b"busy")
        }
        ("/flaky/app.tar.gz", _) | ("/app.tar.gz", _) => answer("200 OK", &[], b"payload bytes"),
        _ => answer("404 Not Found", &[], b"no"),
    });
    let (base, seen) = serve(route).await;
    let dir = tempfile::tempdir().unwrap();
    let stores = stores(dir.path(), true);
    let f = fetcher(2, Duration::from_secs(5));

    let got = f
        .fetch(&format!("{base}/flaky/app.tar.gz"), None, &stores)
        .await
        .unwrap();
    assert_eq!(got.digest, Digest::of(b"payload bytes"));
    assert_eq!(std::fs::read(&got.path).unwrap(), b"payload bytes");
    assert!(
        got.path.starts_with(dir.path().join("spool")),
        "unpinned: spool"
    );
    assert_eq!(seen.lock().unwrap().len(), 2, "503 then 200");

    let sum = Digest::of(b"payload bytes");
    let url = format!("{base}/app.tar.gz");
    let first = f.fetch(&url, Some(&sum), &stores).await.unwrap();
    assert!(!first.reused);
    assert!(
        first.path.starts_with(dir.path().join("cache")),
        "pinned: cache"
    );
    let again = f.fetch(&url, Some(&sum), &stores).await.unwrap();
    assert!(again.reused);
    assert_eq!(again.path, first.path);
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the pinned file was fetched once"
    );

    // A stored file that no longer matches its name is fetched again.
    std::fs::write(&first.path, b"tampered").unwrap();
    let fixed = f.fetch(&url, Some(&sum), &stores).await.unwrap();
    assert!(!fixed.reused);
    assert_eq!(std::fs::read(&fixed.path).unwrap(), b"payload bytes");
}

#[tokio::test]
async fn errors_name_the_url_and_what_to_do() {
    let route: Route = Arc::new(|path, _| match path {
        "/ok" => answer("200 OK", &[], b"abc"),
        "/down" => answer("503 Service Unavailable", &[], b""),
        "/short" => answer("200 OK", &[("Content-Length", "100")], b"only a few"),
        "/slow" => Answer {
            hang: Some(Duration::from_secs(3)),
            ..answer("200 OK", &[], &[7u8; 64])
        },
        _ => answer("404 Not Found", &[], b"missing"),
    });
    let (base, seen) = serve(route).await;
    let dir = tempfile::tempdir().unwrap();
    let stores = stores(dir.path(), false);
    let f = fetcher(2, Duration::from_millis(500));

    let e = f
        .fetch(&format!("{base}/nope?token=s3cr3t-token"), None, &stores)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("HTTP 404 Not Found"), "{msg}");
    assert!(msg.contains("/nope?token=<redacted>"), "{msg}");
    assert!(!msg.contains("s3cr3t"), "{msg}");
    assert_eq!(seen.lock().unwrap().len(), 1, "a 404 is not retried");

    let e = f
        .fetch(&format!("{base}/down"), None, &stores)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("after 3 attempts"), "{e}");

    let e = f
        .fetch(&format!("{base}/short"), None, &stores)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cut off: after 10 bytes"), "{e}");

    let e = f
        .fetch(&format!("{base}/slow"), None, &stores)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");

    let want = Digest::of(b"something else");
    let e = f
        .fetch(&format!("{base}/ok"), Some(&want), &stores)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(want.as_str()), "{msg}");
    assert!(msg.contains(Digest::of(b"abc").as_str()), "{msg}");
    // Nothing of a failed download stays in the store.
    assert_eq!(
        files_in(&dir.path().join("spool/downloads/sha256")),
        Vec::<String>::new()
    );

    let e = f
        .fetch("http://127.0.0.1:1/x", None, &stores)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot download"), "{e}");
}

#[tokio::test]
async fn redirects_keep_credentials_at_home() {
    let (other, other_seen) = serve(Arc::new(|_, _| answer("200 OK", &[], b"elsewhere"))).await;
    let to_other = format!("{other}/final.bin");
    let route: Route = Arc::new(move |path, _| match path {
        "/loop" => answer("302 Found", &[("Location", "/loop")], b""),
        "/local" => answer("301 Moved Permanently", &[("Location", "/here.bin")], b""),
        "/here.bin" => answer("200 OK", &[], b"here"),
        _ => answer(
            "307 Temporary Redirect",
            &[("Location", to_other.as_str())],
            b"",
        ),
    });
    let (base, seen) = serve(route).await;
    let dir = tempfile::tempdir().unwrap();
    let stores = stores(dir.path(), false);
    let f = fetcher(0, Duration::from_secs(5));
    let with_creds = |path: &str| base.replacen("http://", "http://alice:pa55word@", 1) + path;

    let got = f.fetch(&with_creds("/local"), None, &stores).await.unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), b"here");
    let got = f.fetch(&with_creds("/away"), None, &stores).await.unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), b"elsewhere");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|s| s.auth.as_deref().is_some_and(|a| a.starts_with("Basic "))),
        "{seen:?}"
    );
    let other_seen = other_seen.lock().unwrap().clone();
    assert_eq!(other_seen.len(), 1);
    assert_eq!(other_seen[0].path, "/final.bin");
    assert_eq!(other_seen[0].auth, None, "credentials crossed origins");

    let e = f
        .fetch(&with_creds("/loop"), None, &stores)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("more than 10 redirects"), "{msg}");
    assert!(!msg.contains("pa55word"), "{msg}");
}

#[tokio::test]
async fn sources_become_named_files() {
    let (base, _) = serve(Arc::new(|_, _| answer("200 OK", &[], b"x"))).await;
    let dir = tempfile::tempdir().unwrap();
    let stores = stores(dir.path(), false);
    let f = fetcher(0, Duration::from_secs(5));
    let srcs = vec![
        RemoteSource {
            url: format!("{base}/dir/tool.tgz?v=1"),
            checksum: None,
            unpack: true,
        },
        RemoteSource {
            url: format!("{base}/"),
            checksum: None,
            unpack: false,
        },
    ];
    let mut reported = 0;
    let files = fetch_sources(&f, &srcs, &stores, |_, _| reported += 1)
        .await
        .unwrap();
    assert_eq!(reported, 2);
    assert_eq!(files[0].name, "tool.tgz");
    assert!(files[0].unpack);
    assert_eq!(files[1].name, "__unnamed__");
    assert_eq!(files[1].size, 1);
}
