//! A tiny HTTP/1.1 file server on 127.0.0.1 for `ADD <url>` tests, started by the test that
//! needs it (a thread per connection, `Connection: close`): files with `Last-Modified`,
//! redirects, 404 for anything unknown, paths that fail a number of times before they
//! answer, and paths that stall. Every request is logged (method, path, `Authorization`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a path answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// 200 with these bytes; `Last-Modified` is a different date on every request, to prove
    /// that builds do not depend on it.
    File(Vec<u8>),
    /// 302 to this location.
    Redirect(String),
    /// This status (and an empty body) the first `failures` times, then `then`.
    FailFirst {
        /// How many requests fail.
        failures: usize,
        /// The failing status.
        status: u16,
        /// The answer after that.
        then: Box<Reply>,
    },
    /// This status, always.
    Status(u16),
    /// 200 announcing `len` bytes, sending half, then hanging for `secs` seconds.
    Stall {
        /// Announced length.
        len: usize,
        /// How long to hang.
        secs: u64,
    },
}

/// One logged request.
#[derive(Clone, Debug)]
pub struct Request {
    /// `GET`, …
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A running server; stopped when dropped.
pub struct HttpServer {
    port: u16,
    log: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    /// Serve `routes` (path without query → reply).
    pub fn start(routes: Vec<(&str, Reply)>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Vec<(String, Reply)>> = Arc::new(
            routes
                .into_iter()
                .map(|(p, r)| (p.to_string(), r))
                .collect(),
        );
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (routes, log) = (routes.clone(), log2.clone());
                std::thread::spawn(move || serve(conn, &routes, &log));
            }
        });
        HttpServer { port, log, stop }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests asked for `path` (without query).
    pub fn hits(&self, path: &str) -> usize {
        self.log()
            .iter()
            .filter(|r| r.path.split('?').next() == Some(path))
            .count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(conn: TcpStream, routes: &[(String, Reply)], log: &Mutex<Vec<Request>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() || first.is_empty() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let n = {
        let mut l = log.lock().unwrap();
        l.push(Request {
            method,
            path: path.clone(),
            authorization,
        });
        l.iter()
            .filter(|r| r.path.split('?').next() == path.split('?').next())
            .count()
    };
    let bare = path.split('?').next().unwrap_or("");
    let reply = routes
        .iter()
        .find(|(p, _)| p == bare)
        .map(|(_, r)| r.clone())
        .unwrap_or(Reply::Status(404));
    answer(conn, &reply, n);
}

fn answer(mut conn: TcpStream, reply: &Reply, n: usize) {
    let head = |status: &str, extra: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {len}\r\n{extra}\r\n")
    };
    let out = match reply {
        Reply::File(body) => {
            // A different day each request: Sun, 01 Jan 2023 + n days.
            let day = 1 + (n % 28);
            let lm = format!("Last-Modified: Sun, {day:02} Jan 2023 10:00:00 GMT\r\n");
            let mut v = head("200 OK", &lm, body.len()).into_bytes();
            v.extend_from_slice(body);
            v
        }
        Reply::Redirect(to) => head("302 Found", &format!("Location: {to}\r\n"), 0).into_bytes(),
        Reply::FailFirst {
            failures,
            status,
            then,
        } => {
            if n <= *failures {
                head(&status_line(*status), "Retry-After: 0\r\n", 0).into_bytes()
            } else {
                return answer(conn, then, n - failures);
            }
        }
        Reply::Status(s) => {
            let body = format!("status {s}\n");
            let mut v = head(&status_line(*s), "", body.len()).into_bytes();
            v.extend_from_slice(body.as_bytes());
            v
        }
        Reply::Stall { len, secs } => {
            let _ = conn.write_all(head("200 OK", "", *len).as_bytes());
            let _ = conn.write_all(&vec![b'x'; len / 2]);
            let _ = conn.flush();
            std::thread::sleep(Duration::from_secs(*secs));
            return;
        }
    };
    let _ = conn.write_all(&out);
    let _ = conn.flush();
}

fn status_line(s: u16) -> String {
    let reason = match s {
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    format!("{s} {reason}")
}
