//! A fault-injecting HTTP/1.1 proxy in front of a real registry: a test stand-in for a flaky
//! network and an overloaded registry, speaking real HTTP on a loopback port.
//!
//! Each request is matched against [`Rule`]s (method, a substring of the path, which
//! occurrences); a matching rule applies its [`Fault`] instead of (or while) forwarding:
//! an HTTP status of our choosing (503, 429 with `Retry-After`, 401 with a challenge, GHCR's
//! 416 for a body over 4 MiB — [`Fault::ghcr_too_large`] with [`Rule::larger_than`], a 405 to
//! any `PATCH` from a registry without chunked uploads — [`Fault::chunks_unsupported`]), a header
//! added to the registry's answer ([`Fault::AddHeader`], e.g. `OCI-Chunk-Min-Length`), a
//! request body cut half-way (the registry receives part of it, the client a closed
//! connection) or before its first byte, an answer cut mid-body (a download broken off), a stall (the request is read and never answered), a dropped connection, or a
//! hold (the request waits until the test releases it: "kill the registry mid-push").
//! Anything else is forwarded unchanged to the upstream, one request per upstream
//! connection (`Connection: close`), and the response streamed back.
//!
//! With [`FaultProxy::require_bearer`] it is also a Bearer token server (the distribution
//! token protocol) in front of an anonymous registry; its token answers and 401s are logged
//! like injected faults.
//!
//! Credential-safety behaviours (issue 11), kept apart from the fault rules: a proxy can listen
//! on another loopback address ([`FaultProxy::start_on`], a second host), point every upload
//! `Location` the registry answers at another origin ([`FaultProxy::send_uploads_to`], as
//! registries that hand blob uploads to a storage host do), answer requests carrying a given
//! `Authorization` with Amazon ECR's 403 for an expired token
//! ([`FaultProxy::expire_credential`]), and refuses a TLS handshake as any plain-HTTP server
//! would (logged with the method `TLS`: a client trying TLS first).
//!
//! Every request is logged with what was done to it ([`ProxyLogEntry`]); tests wait for
//! events on a condition variable ([`FaultProxy::wait_for`]), never with sleeps. Threads
//! serving connections end when their connection ends; stalled connections are kept open
//! until the proxy is dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a test waits for a proxy event (a watchdog, not a timing assertion).
const WAIT_TIMEOUT: Duration = Duration::from_secs(300);

/// What to do to a matching request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status, headers and body (the request body is read first, the
    /// request is not forwarded).
    Status {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
    },
    /// Forward the head and the first half of the body, then close both connections.
    CutBody,
    /// Forward the head only, then close both connections (cut before any body byte: the
    /// registry's upload status then still says what it had, `0-0` for an empty session).
    CutAfterHead,
    /// Forward the request, and add this header to the registry's answer.
    AddHeader(String, String),
    /// Forward the request, but pass only this many bytes of the answer (head included) back
    /// before closing (a download cut mid-body).
    CutResponse(u64),
    /// Read the request and never answer (the connection stays open).
    Stall,
    /// Close the connection without an answer (after reading the head).
    Drop,
    /// Wait until [`FaultProxy::release`], then forward.
    Hold,
    /// With a Bearer gate: revoke every token issued so far and answer 401 with the Bearer
    /// challenge (a token that expired mid-push).
    ExpireTokens,
}

impl Fault {
    /// `503 Service Unavailable` with an OCI error body.
    pub fn unavailable() -> Fault {
        Fault::Status {
            status: 503,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body:
                r#"{"errors":[{"code":"UNAVAILABLE","message":"injected: service unavailable"}]}"#
                    .into(),
        }
    }

    /// `429 Too Many Requests` with `Retry-After: secs` and the `TOOMANYREQUESTS` code.
    pub fn too_many(secs: u64) -> Fault {
        Fault::Status {
            status: 429,
            headers: vec![
                ("Retry-After".into(), secs.to_string()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected: slow down"}]}"#
                .into(),
        }
    }

    /// `401 Unauthorized` with a Basic challenge (a credential or token "expired" mid-push).
    pub fn unauthorized_basic(realm: &str) -> Fault {
        Fault::Status {
            status: 401,
            headers: vec![
                (
                    "WWW-Authenticate".into(),
                    format!("Basic realm=\"{realm}\""),
                ),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: r#"{"errors":[{"code":"UNAUTHORIZED","message":"injected: authentication required"}]}"#
                .into(),
        }
    }

    /// GHCR's answer to a request body over 4 MiB, status and body as GHCR sends them
    /// (oras-project/rust-oci-client#35, ocx-sh/ocx#237):
    /// `416 REQUESTED_RANGE_NOT_SATISFIABLE`, "the request body is too large and exceeds the
    /// maximum permissible limit of 4.00MiB". Use with [`Rule::larger_than`]`(4 MiB)`.
    pub fn ghcr_too_large() -> Fault {
        Fault::Status {
            status: 416,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: r#"{"errors":[{"code":"REQUESTED_RANGE_NOT_SATISFIABLE","message":"the request body is too large and exceeds the maximum permissible limit of 4.00MiB"}]}"#
                .into(),
        }
    }

    /// A registry that takes no chunked uploads (Google Artifact Registry: "You must use
    /// monolithic uploads", https://cloud.google.com/artifact-registry/docs/reference/docker-api)
    /// answering a `PATCH`: `405 Method Not Allowed` (brainhivenl/steiger#28). Its body is not
    /// documented; this one is distribution's `UNSUPPORTED` envelope.
    pub fn chunks_unsupported() -> Fault {
        Fault::Status {
            status: 405,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body:
                r#"{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}"#
                    .into(),
        }
    }

    /// The distribution-spec v1.1 `OCI-Chunk-Min-Length: bytes` on an answer (the registry's
    /// minimum chunk for the session the `POST` opens).
    pub fn chunk_min_length(bytes: u64) -> Fault {
        Fault::AddHeader("OCI-Chunk-Min-Length".into(), bytes.to_string())
    }

    /// Amazon ECR's answer to an expired authorization token (also to a token of another
    /// region): `403 Forbidden` with the OCI error `DENIED` "Your authorization token has
    /// expired. Reauthenticate and try again."
    /// (<https://docs.aws.amazon.com/AmazonECR/latest/userguide/common-errors-docker.html>;
    /// awslabs/amazon-ecr-credential-helper#27).
    pub fn ecr_token_expired() -> Fault {
        Fault::Status {
            status: 403,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: r#"{"errors":[{"code":"DENIED","message":"Your authorization token has expired. Reauthenticate and try again."}]}"#
                .into(),
        }
    }

    fn label(&self) -> String {
        match self {
            Fault::Status { status, .. } => format!("status {status}"),
            Fault::CutBody => "cut body".into(),
            Fault::CutAfterHead => "cut after head".into(),
            Fault::AddHeader(name, _) => format!("add {name}"),
            Fault::CutResponse(_) => "cut response".into(),
            Fault::Stall => "stall".into(),
            Fault::Drop => "drop".into(),
            Fault::Hold => "hold".into(),
            Fault::ExpireTokens => "expire tokens".into(),
        }
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The method (`None`: any).
    pub method: Option<String>,
    /// A substring of the request target (path and query).
    pub target_contains: String,
    /// Matching requests let through before the fault starts.
    pub skip: usize,
    /// How many matching requests get the fault (`usize::MAX`: all of them).
    pub times: usize,
    /// Only requests whose `Content-Length` is above this match (`None`: any).
    pub larger_than: Option<u64>,
    /// The fault.
    pub fault: Fault,
    seen: usize,
    applied: usize,
}

impl Rule {
    /// `fault` for the first `times` requests `method target_contains`.
    pub fn new(method: &str, target_contains: &str, times: usize, fault: Fault) -> Rule {
        Rule {
            method: (!method.is_empty()).then(|| method.to_string()),
            target_contains: target_contains.to_string(),
            skip: 0,
            times,
            larger_than: None,
            fault,
            seen: 0,
            applied: 0,
        }
    }

    /// Let `n` matching requests through first.
    pub fn after(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    /// Only requests with a body over `bytes` match (a registry's body-size cap).
    pub fn larger_than(mut self, bytes: u64) -> Rule {
        self.larger_than = Some(bytes);
        self
    }

    fn matches(&self, head: &Head) -> bool {
        self.method.as_deref().is_none_or(|m| m == head.method)
            && head.target.contains(&self.target_contains)
            && self.larger_than.is_none_or(|n| head.content_length > n)
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone, Default)]
pub struct ProxyLogEntry {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The fault applied (`None`: forwarded).
    pub fault: Option<String>,
    /// The status the client got (the injected one, or the upstream's), if any.
    pub status: Option<u16>,
    /// The request's `Content-Range` header, if any.
    pub content_range: Option<String>,
    /// The request's `Content-Length` (0 when absent).
    pub content_length: u64,
    /// Whether an `Authorization` header was sent.
    pub authorized: bool,
}

impl ProxyLogEntry {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }
}

/// A Bearer token gate (the distribution token protocol) in front of an anonymous registry:
/// `/token` issues tokens for Basic `user:pass`; every `/v2/` request needs a live one.
struct BearerGate {
    basic: String,
    issued: Vec<String>,
    live: Vec<String>,
    /// The challenge's `service` and `scope`.
    service: String,
    scope: String,
}

#[derive(Default)]
struct State {
    gate: Option<BearerGate>,
    /// `scheme://host:port` replacing the origin of every upstream `Location`.
    location_origin: Option<String>,
    /// `Authorization` values answered with ECR's 403 "token has expired".
    expired_credentials: Vec<String>,
    rules: Vec<Rule>,
    log: Vec<ProxyLogEntry>,
    held: usize,
    released: bool,
    stalled: Vec<TcpStream>,
}

struct Shared {
    /// The address the proxy listens on (its token realm names it).
    listen_host: String,
    state: Mutex<State>,
    changed: Condvar,
    upstream: AtomicU16,
    stopping: AtomicBool,
}

/// The proxy, listening on `127.0.0.1:<port>`; stops (and closes every connection) on drop.
pub struct FaultProxy {
    host: String,
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> FaultProxy {
        Self::start_on("127.0.0.1", upstream_port)
    }

    /// A proxy listening on `ip` (another loopback address such as `127.0.0.2`: another host
    /// as far as origins go) forwarding to `127.0.0.1:upstream_port`.
    pub fn start_on(ip: &str, upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind((ip, 0)).expect("bind the fault proxy");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            listen_host: ip.to_string(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            upstream: AtomicU16::new(upstream_port),
            stopping: AtomicBool::new(false),
        });
        let s = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(&s, conn));
            }
        });
        FaultProxy {
            host: ip.to_string(),
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `IP:PORT` (`127.0.0.1:PORT` unless started elsewhere), to use in image references.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// From now on, every `Location` the registry answers points at `origin`
    /// (`http://127.0.0.2:PORT`) instead: the upload continues on another host. A `Location`
    /// may be any absolute URL (distribution-spec, "Pushing blobs"), and registries hand blob
    /// traffic to storage hosts (distribution's `storage.redirect`; Quay and GCR redirect blob
    /// downloads to S3/GCS).
    pub fn send_uploads_to(&self, origin: &str) {
        self.shared.state.lock().unwrap().location_origin =
            Some(origin.trim_end_matches('/').to_string());
    }

    /// Answer every request whose `Authorization` is exactly `authorization` as Amazon ECR
    /// answers a token past its 12 hours (or one of another region): [`Fault::ecr_token_expired`].
    pub fn expire_credential(&self, authorization: &str) {
        self.shared
            .state
            .lock()
            .unwrap()
            .expired_credentials
            .push(authorization.to_string());
    }

    /// Add a rule (rules are tried in order; the first matching, still active one applies).
    pub fn add(&self, rule: Rule) -> &Self {
        self.shared.state.lock().unwrap().rules.push(rule);
        self
    }

    /// Require Bearer tokens from this proxy's own token endpoint (`/token`, Basic
    /// `user:pass`) for every `/v2/` request.
    pub fn require_bearer(&self, user: &str, pass: &str) {
        self.require_bearer_as(user, pass, "fault-proxy", "repository:faults:pull,push");
    }

    /// [`require_bearer`](Self::require_bearer), challenging with this `service` and `scope`
    /// (Amazon ECR Public's: `service="public.ecr.aws",scope="aws"`).
    pub fn require_bearer_as(&self, user: &str, pass: &str, service: &str, scope: &str) {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        self.shared.state.lock().unwrap().gate = Some(BearerGate {
            basic: format!("Basic {basic}"),
            issued: Vec::new(),
            live: Vec::new(),
            service: service.to_string(),
            scope: scope.to_string(),
        });
    }

    /// Every token the gate issued so far.
    pub fn tokens_issued(&self) -> Vec<String> {
        let st = self.shared.state.lock().unwrap();
        st.gate
            .as_ref()
            .map(|g| g.issued.clone())
            .unwrap_or_default()
    }

    /// Remove every rule: from now on everything is forwarded.
    pub fn clear(&self) {
        self.shared.state.lock().unwrap().rules.clear();
    }

    /// Forward to another upstream port from now on (a restarted registry).
    pub fn set_upstream(&self, port: u16) {
        self.shared.upstream.store(port, Ordering::SeqCst);
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<ProxyLogEntry> {
        self.shared.state.lock().unwrap().log.clone()
    }

    /// How many requests got a fault.
    pub fn faults_applied(&self) -> usize {
        self.log().iter().filter(|e| e.fault.is_some()).count()
    }

    /// Wait until `pred` holds for the log (panics after a generous watchdog bound).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[ProxyLogEntry]) -> bool) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut st = self.shared.state.lock().unwrap();
        while !pred(&st.log) {
            let now = Instant::now();
            assert!(
                now < deadline,
                "the fault proxy never saw {what}; log: {:#?}",
                st.log
            );
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Wait until `n` uploads have reached their closing `PUT …?digest=` (held there by a
    /// [`Fault::Hold`] rule on it): the client then knows every session it opened.
    pub fn wait_for_closing_puts(&self, n: usize) {
        self.wait_for(&format!("{n} uploads at their closing PUT"), |log| {
            log.iter()
                .filter(|e| e.method == "PUT" && e.target.contains("digest="))
                .count()
                >= n
        });
    }

    /// Wait until a request is being held by a [`Fault::Hold`].
    pub fn wait_held(&self) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        let mut st = self.shared.state.lock().unwrap();
        while st.held == 0 {
            let now = Instant::now();
            assert!(now < deadline, "no request was held; log: {:#?}", st.log);
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Let held requests go on (to the current upstream).
    pub fn release(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.released = true;
        self.shared.changed.notify_all();
    }
}

/// How many requests with `method` to upload sessions (`…/blobs/uploads/…`) `log` holds.
pub fn upload_requests(log: &[ProxyLogEntry], method: &str) -> usize {
    log.iter()
        .filter(|e| e.method == method && e.path().contains("/blobs/uploads/"))
        .count()
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        {
            let mut st = self.shared.state.lock().unwrap();
            st.released = true;
            for s in st.stalled.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            self.shared.changed.notify_all();
        }
        // Wake the acceptor so it sees `stopping`.
        let _ = TcpStream::connect((self.host.as_str(), self.port));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

/// A parsed request head.
struct Head {
    raw_lines: Vec<String>,
    method: String,
    target: String,
    content_length: u64,
    content_range: Option<String>,
    authorized: bool,
    authorization: Option<String>,
}

fn read_head(r: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
        if lines.len() > 200 {
            return Err(io::Error::other("request head too long"));
        }
    }
    let mut first = lines.first().map(|l| l.split(' ')).into_iter().flatten();
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let header = |name: &str| {
        lines.iter().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Err(io::Error::other(
            "chunked request bodies are not supported by the fault proxy",
        ));
    }
    Ok(Some(Head {
        method,
        target,
        content_length: header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        content_range: header("content-range"),
        authorized: header("authorization").is_some(),
        authorization: header("authorization"),
        raw_lines: lines,
    }))
}

fn serve(s: &Arc<Shared>, client: TcpStream) {
    let Ok(reader) = client.try_clone() else {
        return;
    };
    if tls_handshake_refused(s, &client) {
        return;
    }
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut client = client;
    let head = match read_head(&mut reader) {
        Ok(Some(h)) => h,
        _ => return,
    };
    // One request per client connection: every answer carries `Connection: close`.
    let fault = {
        let mut st = s.state.lock().unwrap();
        let mut chosen = None;
        for rule in st.rules.iter_mut() {
            if !rule.matches(&head) {
                continue;
            }
            rule.seen += 1;
            if rule.seen > rule.skip && rule.applied < rule.times {
                rule.applied += 1;
                chosen = Some(rule.fault.clone());
                break;
            }
        }
        chosen
    };
    let port = client.local_addr().map(|a| a.port()).unwrap_or(0);
    let fault = fault
        .or_else(|| expired_credential(s, &head))
        .or_else(|| gate(s, &head, port));
    let idx = {
        let mut st = s.state.lock().unwrap();
        st.log.push(ProxyLogEntry {
            method: head.method.clone(),
            target: head.target.clone(),
            fault: fault.as_ref().map(Fault::label),
            status: None,
            content_range: head.content_range.clone(),
            content_length: head.content_length,
            authorized: head.authorized,
        });
        s.changed.notify_all();
        st.log.len() - 1
    };
    let set_status = |status: Option<u16>| {
        let mut st = s.state.lock().unwrap();
        st.log[idx].status = status;
        s.changed.notify_all();
    };
    match fault {
        Some(Fault::Status {
            status,
            headers,
            body,
        }) => {
            if io::copy(
                &mut (&mut reader).take(head.content_length),
                &mut io::sink(),
            )
            .is_err()
            {
                return;
            }
            let mut out = format!(
                "HTTP/1.1 {status} Injected\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&body);
            let _ = client.write_all(out.as_bytes());
            set_status(Some(status));
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::ExpireTokens) => {
            let challenge = {
                let mut st = s.state.lock().unwrap();
                match st.gate.as_mut() {
                    Some(g) => {
                        g.live.clear();
                        bearer_challenge(&s.listen_host, port, &g.service, &g.scope)
                    }
                    None => bearer_challenge(
                        &s.listen_host,
                        port,
                        "fault-proxy",
                        "repository:faults:pull,push",
                    ),
                }
            };
            let _ = io::copy(
                &mut (&mut reader).take(head.content_length),
                &mut io::sink(),
            );
            let out = format!(
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\
                 WWW-Authenticate: {challenge}\r\n\r\n"
            );
            let _ = client.write_all(out.as_bytes());
            set_status(Some(401));
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall) => {
            let _ = io::copy(
                &mut (&mut reader).take(head.content_length),
                &mut io::sink(),
            );
            let mut st = s.state.lock().unwrap();
            st.stalled.push(client);
        }
        Some(Fault::Drop) => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Hold) => {
            let mut st = s.state.lock().unwrap();
            st.held += 1;
            s.changed.notify_all();
            while !st.released {
                st = s.changed.wait(st).unwrap();
            }
            drop(st);
            forward(
                s,
                &head,
                &mut reader,
                &mut client,
                Tweaks::default(),
                set_status,
            );
        }
        Some(Fault::CutBody) => {
            let cut = Tweaks {
                cut: Some(2),
                ..Tweaks::default()
            };
            forward(s, &head, &mut reader, &mut client, cut, set_status);
        }
        Some(Fault::CutAfterHead) => {
            let cut = Tweaks {
                cut: Some(0),
                ..Tweaks::default()
            };
            forward(s, &head, &mut reader, &mut client, cut, set_status);
        }
        Some(Fault::CutResponse(n)) => {
            let limit = Tweaks {
                answer_limit: Some(n),
                ..Tweaks::default()
            };
            forward(s, &head, &mut reader, &mut client, limit, set_status);
        }
        Some(Fault::AddHeader(name, value)) => {
            let add = Tweaks {
                add_header: Some((name, value)),
                ..Tweaks::default()
            };
            forward(s, &head, &mut reader, &mut client, add, set_status);
        }
        None => {
            forward(
                s,
                &head,
                &mut reader,
                &mut client,
                Tweaks::default(),
                set_status,
            );
        }
    }
}

/// ECR's 403 for a request carrying a credential marked expired.
fn expired_credential(s: &Shared, head: &Head) -> Option<Fault> {
    let st = s.state.lock().unwrap();
    let a = head.authorization.as_deref()?;
    st.expired_credentials
        .iter()
        .any(|e| e == a)
        .then(Fault::ecr_token_expired)
}

/// A response head line with the origin of a `Location` replaced by `origin`.
fn rewrite_location(line: &str, origin: &str) -> String {
    match line.split_once(':') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("location") => {
            let v = v.trim();
            let path = match v.split_once("://") {
                Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
                None => v,
            };
            format!("{k}: {origin}{path}\r\n")
        }
        _ => line.to_string(),
    }
}

/// A plain-HTTP server given a TLS ClientHello (first byte 0x16, a handshake record): like
/// any plain server it cannot answer in TLS; the connection is closed, and logged with the
/// method `TLS` (a client trying TLS first, as an insecure registry is tried).
fn tls_handshake_refused(s: &Shared, client: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    if !matches!(client.peek(&mut first), Ok(1)) || first[0] != 0x16 {
        return false;
    }
    let mut st = s.state.lock().unwrap();
    st.log.push(ProxyLogEntry {
        method: "TLS".into(),
        target: String::new(),
        fault: Some("tls handshake refused".into()),
        ..ProxyLogEntry::default()
    });
    s.changed.notify_all();
    drop(st);
    let _ = client.shutdown(Shutdown::Both);
    true
}

fn bearer_challenge(host: &str, port: u16, service: &str, scope: &str) -> String {
    format!("Bearer realm=\"http://{host}:{port}/token\",service=\"{service}\",scope=\"{scope}\"")
}

/// With a Bearer gate: answer `/token` requests, and refuse `/v2/` requests without a live
/// token (as injected faults, so they are logged and answered the same way).
fn gate(s: &Shared, head: &Head, port: u16) -> Option<Fault> {
    let host = s.listen_host.clone();
    let mut st = s.state.lock().unwrap();
    let g = st.gate.as_mut()?;
    if head.target.starts_with("/token") {
        if head.authorization.as_deref() != Some(g.basic.as_str()) {
            return Some(Fault::Status {
                status: 401,
                headers: vec![],
                body: r#"{"details":"incorrect username or password"}"#.into(),
            });
        }
        let token = format!("fault-proxy-token-{}-{}", g.issued.len() + 1, port);
        g.issued.push(token.clone());
        g.live.push(token.clone());
        return Some(Fault::Status {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: format!(r#"{{"token":"{token}","expires_in":300}}"#),
        });
    }
    let ok = head
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| g.live.iter().any(|l| l == t));
    (!ok).then(|| Fault::Status {
        status: 401,
        headers: vec![(
            "WWW-Authenticate".into(),
            bearer_challenge(&host, port, &g.service, &g.scope),
        )],
        body: r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.into(),
    })
}

/// What [`forward`] changes: with `cut: Some(d)`, only 1/d of the request body goes up (none
/// for 0) and both connections are then closed; at most `answer_limit` bytes of the answer
/// (head included) come back; `add_header` is added to the answer's head.
#[derive(Default)]
struct Tweaks {
    cut: Option<u64>,
    answer_limit: Option<u64>,
    add_header: Option<(String, String)>,
}

/// Send `head` and its body to the upstream (`Connection: close`) and stream the answer back,
/// changed as `tweaks` says.
fn forward(
    s: &Shared,
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    client: &mut TcpStream,
    tweaks: Tweaks,
    set_status: impl Fn(Option<u16>),
) {
    let port = s.upstream.load(Ordering::SeqCst);
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)) else {
        // The registry is gone: the client sees its connection closed.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let mut out = String::new();
    for (i, l) in head.raw_lines.iter().enumerate() {
        let name = l.split(':').next().unwrap_or("").trim();
        if i > 0
            && (name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"))
        {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if up.write_all(out.as_bytes()).is_err() {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let send = match tweaks.cut {
        Some(0) => 0,
        Some(d) => head.content_length / d,
        None => head.content_length,
    };
    let copied = io::copy(&mut reader.take(send), &mut up);
    if tweaks.cut.is_some() || !matches!(copied, Ok(n) if n == send) {
        let _ = up.flush();
        let _ = up.shutdown(Shutdown::Both);
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    // Stream the answer back; note its status (from the status line).
    let mut up = BufReader::new(up);
    let mut line = Vec::new();
    let _ = up.read_until(b'\n', &mut line);
    let status = std::str::from_utf8(&line)
        .ok()
        .and_then(|t| t.get(9..12))
        .and_then(|c| c.parse::<u16>().ok());
    set_status(status);
    let mut first = line.clone();
    let mut consumed = line.len() as u64;
    if let Some((name, value)) = &tweaks.add_header
        && status.is_some()
    {
        first.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let location_origin = s.state.lock().unwrap().location_origin.clone();
    if let Some(origin) = location_origin
        && status.is_some()
    {
        // The rest of the head, its Location pointed at `origin`.
        loop {
            let mut l = String::new();
            match up.read_line(&mut l) {
                Ok(0) | Err(_) => break,
                Ok(n) => consumed += n as u64,
            }
            first.extend_from_slice(rewrite_location(&l, &origin).as_bytes());
            if l == "\r\n" {
                break;
            }
        }
    }
    if client.write_all(&first).is_ok() {
        let rest = tweaks
            .answer_limit
            .map_or(u64::MAX, |n| n.saturating_sub(consumed));
        let _ = io::copy(&mut (&mut up).take(rest), client);
    }
    let _ = client.flush();
    let _ = client.shutdown(Shutdown::Both);
}
