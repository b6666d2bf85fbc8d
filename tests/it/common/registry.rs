//! A real CNCF distribution registry (`/usr/bin/docker-registry`, Debian's
//! `docker-registry` package) on a free loopback port, for one test.
//!
//! * Readiness is read from the registry's own log ("listening on ..."), never
//!   guessed with a sleep; a bounded overall timeout turns a hang into a clear panic.
//! * Every request is recorded from the registry's access log (its stdout, one
//!   Apache "combined" line per request: method, URI, status, user agent), so
//!   tests can assert which requests a push made.
//! * Log synchronisation: the access-log line of a request is written before a
//!   small response leaves the server (Go's `net/http` buffers the response
//!   until the handler, including gorilla's logging wrapper, returns). So after
//!   the client under test has exited, [`RegistryServer::access_log`] sends one
//!   marker request of its own and waits until the marker's line is read back:
//!   every earlier line is then in the buffer (the log is a FIFO pipe).
//!   The one residual: a response larger than Go's 4 KiB write buffer (a blob
//!   GET) may reach the client just before its log line is written; a late
//!   line can only hide a request, never invent one, so "no such request"
//!   assertions cannot fail spuriously.
//! * The process is killed (and reaped) on `Drop`; its storage is a temp dir.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::require_tool;

/// How long the registry may take to say it is listening, and how long a log
/// synchronisation may take. Generous bounds that only turn hangs into failures.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts to find a port nobody else grabbed between our probe and the bind.
const PORT_ATTEMPTS: usize = 8;

/// Path prefix of the harness's own marker requests (filtered out of the log).
const SYNC_PREFIX: &str = "/_ocipush_harness_sync/";

/// One request, as the registry's access log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogEntry {
    /// `GET`, `HEAD`, `PUT`, `POST`, `PATCH`, `DELETE`.
    pub method: String,
    /// The request URI as sent (path and query), e.g. `/v2/repo/manifests/v1`.
    pub uri: String,
    /// HTTP status of the response.
    pub status: u16,
    /// The `User-Agent` header (empty when absent).
    pub user_agent: String,
    /// The whole log line.
    pub raw: String,
}

impl AccessLogEntry {
    /// The URI without its query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or(&self.uri)
    }

    /// Parses one Apache combined-log line:
    /// `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
    fn parse(line: &str) -> Option<Self> {
        let start = line.find('"')? + 1;
        let end = start + line[start..].find('"')?;
        let mut request = line[start..end].split(' ');
        let method = request.next()?.to_owned();
        let uri = request.next()?.to_owned();
        let mut rest = line[end + 1..].split_whitespace();
        let status = rest.next()?.parse().ok()?;
        // The user agent is the last quoted field.
        let ua_end = line.rfind('"')?;
        let ua_start = line[..ua_end].rfind('"')? + 1;
        let user_agent = if ua_start > end + 1 {
            line[ua_start..ua_end].to_owned()
        } else {
            String::new()
        };
        Some(Self {
            method,
            uri,
            status,
            user_agent,
            raw: line.to_owned(),
        })
    }
}

/// Lines read by a background thread from one of the child's pipes.
#[derive(Default)]
struct Lines {
    state: Mutex<LinesState>,
    changed: Condvar,
}

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    eof: bool,
}

impl Lines {
    fn spawn_reader(self: &Arc<Self>, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            let reader = BufReader::new(pipe);
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let mut st = me.state.lock().unwrap();
                st.lines.push(line);
                me.changed.notify_all();
            }
            let mut st = me.state.lock().unwrap();
            st.eof = true;
            me.changed.notify_all();
        })
    }

    fn snapshot(&self) -> Vec<String> {
        self.state.lock().unwrap().lines.clone()
    }

    /// Waits until `pred` holds for some line (returns its index), the pipe is
    /// closed (`Err(true)`), or the deadline passes (`Err(false)`).
    fn wait_for(&self, deadline: Instant, pred: impl Fn(&str) -> bool) -> Result<usize, bool> {
        let mut st = self.state.lock().unwrap();
        let mut checked = 0;
        loop {
            if let Some(i) = st.lines[checked..].iter().position(|l| pred(l)) {
                return Ok(checked + i);
            }
            checked = st.lines.len();
            if st.eof {
                return Err(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(false);
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
    }
}

/// A running `docker-registry serve` on `127.0.0.1:<free port>`.
pub struct RegistryServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    access: Arc<Lines>,
    app: Arc<Lines>,
    readers: Vec<JoinHandle<()>>,
    credentials: Option<(String, String)>,
    next_sync: AtomicU64,
}

impl RegistryServer {
    /// Starts an anonymous registry (anyone may push and pull).
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// Starts a registry that requires HTTP basic auth (`htpasswd`, bcrypt) for
    /// every request, with one account `user`/`pass`.
    pub fn start_with_auth(user: &str, pass: &str) -> Self {
        Self::start_inner(Some((user.to_owned(), pass.to_owned())))
    }

    fn start_inner(credentials: Option<(String, String)>) -> Self {
        let registry = require_tool("docker-registry", "docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("ocipush-registry-")
            .tempdir()
            .expect("create registry temp dir");
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let htpasswd_path = dir.path().join("htpasswd");
        if let Some((user, pass)) = &credentials {
            let htpasswd = require_tool("htpasswd", "apache2-utils");
            let out = Command::new(htpasswd)
                .args(["-Bbn", user, pass])
                .output()
                .expect("run htpasswd");
            assert!(
                out.status.success(),
                "htpasswd -Bbn failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(&htpasswd_path, &out.stdout).unwrap();
        }

        let mut failures = String::new();
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let config = dir.path().join("config.yml");
            let mut yaml = format!(
                "version: 0.1\nlog:\n  level: info\n  fields:\n    service: registry\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: ocipush-harness-secret\n",
                storage.display()
            );
            if credentials.is_some() {
                write!(
                    yaml,
                    "auth:\n  htpasswd:\n    realm: ocipush-test\n    path: {}\n",
                    htpasswd_path.display()
                )
                .unwrap();
            }
            std::fs::write(&config, yaml).unwrap();

            let mut child = Command::new(&registry)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", registry.display()));
            let access = Arc::new(Lines::default());
            let app = Arc::new(Lines::default());
            let readers = vec![
                access.spawn_reader(child.stdout.take().unwrap()),
                app.spawn_reader(child.stderr.take().unwrap()),
            ];
            let deadline = Instant::now() + STARTUP_TIMEOUT;
            let needle = format!("listening on 127.0.0.1:{port}");
            match app.wait_for(deadline, |l| l.contains(&needle)) {
                Ok(_) => {
                    return Self {
                        child,
                        port,
                        dir,
                        access,
                        app,
                        readers,
                        credentials,
                        next_sync: AtomicU64::new(0),
                    };
                }
                Err(exited) => {
                    let _ = child.kill();
                    let status = child.wait();
                    for r in readers {
                        let _ = r.join();
                    }
                    let log = app.snapshot().join("\n");
                    if !exited {
                        panic!(
                            "docker-registry did not report `{needle}` within {STARTUP_TIMEOUT:?}; its log:\n{log}"
                        );
                    }
                    // Most likely the port was taken between probe and bind: retry.
                    writeln!(
                        failures,
                        "attempt {attempt} (port {port}, {status:?}):\n{log}"
                    )
                    .unwrap();
                }
            }
        }
        panic!("docker-registry failed to start {PORT_ATTEMPTS} times:\n{failures}");
    }

    /// `127.0.0.1:PORT`, as used in image references.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `(user, pass)` when started with [`RegistryServer::start_with_auth`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (the filesystem driver's `rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's application log (stderr) so far, for failure messages.
    pub fn app_log(&self) -> Vec<String> {
        self.app.snapshot()
    }

    /// Every request served so far, in log order, complete up to this call
    /// (see the module docs: a marker request is sent and awaited first).
    /// The harness's own marker requests are left out.
    pub fn access_log(&self) -> Vec<AccessLogEntry> {
        self.sync();
        self.access
            .snapshot()
            .iter()
            .filter_map(|l| AccessLogEntry::parse(l))
            .filter(|e| !e.uri.starts_with(SYNC_PREFIX))
            .collect()
    }

    /// A position in the access log (after synchronising), to pass to
    /// [`RegistryServer::access_log_since`] later: "the requests of this push".
    pub fn log_mark(&self) -> usize {
        self.access_log().len()
    }

    /// The requests served after `mark` (from [`RegistryServer::log_mark`]).
    pub fn access_log_since(&self, mark: usize) -> Vec<AccessLogEntry> {
        let mut all = self.access_log();
        all.drain(..mark.min(all.len()));
        all
    }

    /// Counts the requests with `method` whose path starts with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        count(&self.access_log(), method, path_prefix)
    }

    /// Sends a marker request and waits until its access-log line is read.
    fn sync(&self) {
        let n = self.next_sync.fetch_add(1, Ordering::SeqCst);
        let path = format!("{SYNC_PREFIX}{}-{n}", std::process::id());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: ocipush-harness\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("connect to registry {}: {e}", self.addr()));
        stream.set_read_timeout(Some(SYNC_TIMEOUT)).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .unwrap_or_else(|e| panic!("read marker response from {}: {e}", self.addr()));
        let needle = format!(" {path} ");
        let deadline = Instant::now() + SYNC_TIMEOUT;
        if let Err(exited) = self.access.wait_for(deadline, |l| l.contains(&needle)) {
            panic!(
                "registry access log never showed marker {path} (registry exited: {exited}); app log:\n{}",
                self.app_log().join("\n")
            );
        }
    }
}

/// Counts entries with `method` whose path starts with `path_prefix`.
pub fn count(entries: &[AccessLogEntry], method: &str, path_prefix: &str) -> usize {
    entries
        .iter()
        .filter(|e| e.method == method && e.path().starts_with(path_prefix))
        .count()
}

/// `"METHOD path" -> count` of `entries`, for readable assertion messages.
pub fn summarize(entries: &[AccessLogEntry]) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for e in entries {
        *map.entry(format!("{} {} {}", e.method, e.path(), e.status))
            .or_insert(0) += 1;
    }
    map
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago (the OS picks it). Races
/// with other processes are handled by the caller retrying on bind failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A loopback address where nothing listens (for "unreachable registry" tests):
/// a port the OS handed out and that we closed again.
pub fn closed_port_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Path to the `docker-registry` binary (for messages).
pub fn registry_binary() -> &'static Path {
    Path::new("/usr/bin/docker-registry")
}

/// A push must not read back what it writes (a push-only identity may not read): no manifest
/// GET/HEAD and no blob GET on `repo`; and the manifest was put under `tag`.
pub fn assert_push_did_not_read_back(log: &[AccessLogEntry], repo: &str, tag: &str) {
    let manifests = format!("/v2/{repo}/manifests/");
    let blobs = format!("/v2/{repo}/blobs/");
    let bad: Vec<&AccessLogEntry> = log
        .iter()
        .filter(|e| {
            let p = e.path();
            ((e.method == "GET" || e.method == "HEAD") && p.starts_with(&manifests))
                || (e.method == "GET" && p.starts_with(&blobs))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "the push read back from the destination: {bad:#?}\nall requests: {:#?}",
        summarize(log)
    );
    assert!(
        log.iter().any(|e| e.method == "PUT"
            && e.path() == format!("{manifests}{tag}")
            && e.status == 201),
        "no successful manifest PUT for tag {tag}: {:#?}",
        summarize(log)
    );
}
