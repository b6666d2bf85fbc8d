//! The registry client against the real CNCF distribution registry (`/usr/bin/docker-registry`,
//! started per test on a free loopback port, anonymous or with htpasswd Basic auth), and
//! against a small in-process Bearer token stand-in that speaks the token protocol.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use ocipush::auth::{Credential, Secret, StaticCredentials};
use ocipush::blob::{BlobSource, BytesBlob, FileBlob};
use ocipush::dest::Destination;
use ocipush::digest::Digest;
use ocipush::image::{Descriptor, media_types};
use ocipush::reference::Reference;
use ocipush::registries_conf::{Endpoint, RegistriesConf, Scheme};
use ocipush::registry::{
    ClientOptions, RegistryClient, RegistryError, RemoteBlob, Repository, RetryPolicy,
};

/// A running `docker-registry`, killed on drop.
struct TestRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> TestRegistry {
        Self::start_with(htpasswd, None)
    }

    /// With `tls = Some((certificate, key))`: HTTPS only.
    fn start_with(
        htpasswd: Option<(&str, &str)>,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> TestRegistry {
        Self::start_configured(htpasswd, tls, "")
    }

    /// [`TestRegistry::start_with`], with `extra` appended to the configuration (top-level
    /// YAML sections such as `auth:`).
    fn start_configured(
        htpasswd: Option<(&str, &str)>,
        tls: Option<(&std::path::Path, &std::path::Path)>,
        extra: &str,
    ) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some((cert, key)) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        if let Some((user, pass)) = htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                file.display()
            ));
        }
        config.push_str(extra);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker-registry");
        // Ready when it logs "listening on"; then keep draining its log so it never blocks.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("listening on");
                    seen.push(line);
                    if ready {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!(
                        "docker-registry exited before listening:\n{}",
                        seen.join("\n")
                    );
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        TestRegistry {
            child,
            addr,
            _dir: dir,
        }
    }

    fn endpoint(&self, repository: &str) -> Endpoint {
        let r = Reference::parse(&format!("{}/{repository}", self.addr)).unwrap();
        RegistriesConf::default().resolve(&r).unwrap()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy::none(),
        ..ClientOptions::default()
    }
}

/// 5 MiB chunks, always chunked, three quick attempts: for the cut-upload cases.
fn resume_options() -> ClientOptions {
    ClientOptions {
        chunk_size: Some(5 * 1024 * 1024),
        monolithic_threshold: 0,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: std::time::Duration::from_millis(1),
            max_delay: std::time::Duration::from_millis(5),
            max_elapsed: std::time::Duration::from_secs(60),
        },
        ..options()
    }
}

/// 12 MiB of a repeating pattern (three 5 MiB chunks' worth) pushed with [`resume_options`] to
/// the fake registry at `addr`; `case` names the run in a failure. Returns the bytes pushed.
async fn put_resume_data(addr: &str, case: &str) -> Vec<u8> {
    let data: Vec<u8> = (0..(12 * 1024 * 1024u32))
        .map(|i| (i % 251) as u8)
        .collect();
    let r = fake_repo(addr, "app", resume_options());
    let d = desc(media_types::OCI_LAYER_TAR, &data);
    r.put_blob(&d, &BytesBlob(Bytes::from(data.clone())), &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    data
}

fn repo(reg: &TestRegistry, name: &str, opts: ClientOptions) -> Repository {
    RegistryClient::new(opts)
        .unwrap()
        .repository(&reg.endpoint(name))
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
}

async fn push_bytes(repo: &Repository, media_type: &str, bytes: &[u8]) -> Descriptor {
    let d = desc(media_type, bytes);
    let total = AtomicU64::new(0);
    let progress = |n: u64| total.store(n, Ordering::SeqCst);
    repo.put_blob(&d, &BytesBlob(Bytes::copy_from_slice(bytes)), &progress)
        .await
        .unwrap();
    assert_eq!(total.load(Ordering::SeqCst), bytes.len() as u64);
    d
}

fn manifest_for(config: &Descriptor, layers: &[Descriptor]) -> Bytes {
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    Bytes::from(serde_json::to_vec(&m).unwrap())
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

async fn collect(repo: &Repository, d: &Descriptor) -> Result<Vec<u8>, std::io::Error> {
    let mut s = repo.get_blob(d).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[tokio::test]
async fn anonymous_push_and_pull_round_trip() {
    let reg = TestRegistry::start(None);
    let r = repo(&reg, "team/app", options());
    assert_eq!(r.endpoint().scheme, Scheme::Http);
    let layer_bytes = b"pretend this is a gzip layer".repeat(100);
    let layer = desc(media_types::OCI_LAYER_GZIP, &layer_bytes);
    let config = desc(media_types::OCI_CONFIG, CONFIG);
    assert_eq!(
        r.blobs_exist(&[layer.clone(), config.clone()])
            .await
            .unwrap(),
        vec![false, false]
    );
    push_bytes(&r, media_types::OCI_LAYER_GZIP, &layer_bytes).await;
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(
        r.blobs_exist(&[layer.clone(), config.clone()])
            .await
            .unwrap(),
        vec![true, true]
    );

    let manifest = manifest_for(&config, std::slice::from_ref(&layer));
    let ours = Digest::of(&manifest);
    let reported = r
        .put_manifest("v1", media_types::OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(reported, Some(ours.clone()));
    let by_digest = r
        .put_manifest(ours.as_str(), media_types::OCI_MANIFEST, manifest.clone())
        .await
        .unwrap();
    assert_eq!(by_digest, Some(ours.clone()));

    let got = r.get_manifest("v1").await.unwrap();
    assert_eq!(
        (got.bytes.clone(), got.media_type.as_str(), &got.digest),
        (manifest.clone(), media_types::OCI_MANIFEST, &ours)
    );
    let got = r.get_manifest(ours.as_str()).await.unwrap();
    assert_eq!(got.bytes, manifest);

    assert_eq!(collect(&r, &layer).await.unwrap(), layer_bytes);
    assert_eq!(
        r.get_blob_bytes(&config, 1024).await.unwrap().as_ref(),
        CONFIG
    );
    let mut short = config.clone();
    short.size -= 1;
    let e = r.get_blob_bytes(&short, 1024).await.unwrap_err();
    assert!(matches!(e, RegistryError::Mismatch { .. }), "{e}");
    let e = r.get_blob_bytes(&layer, 10).await.unwrap_err();
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");

    // A descriptor that lies about the size: the stream fails at the end, naming blob and registry.
    let mut wrong = layer.clone();
    wrong.size += 1;
    let e = collect(&r, &wrong).await.unwrap_err().to_string();
    assert!(
        e.contains(layer.digest.as_str()) && e.contains(&reg.addr) && e.contains("ended after"),
        "{e}"
    );

    let e = r.get_manifest("nope").await.unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e}");
    assert!(e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
    let other = repo(&reg, "does/not-exist", options());
    let e = other.get_manifest("v1").await.unwrap_err();
    assert!(
        e.to_string().contains("NAME_UNKNOWN") || e.to_string().contains("MANIFEST_UNKNOWN"),
        "{e}"
    );
    let missing = desc(media_types::OCI_LAYER_GZIP, b"never pushed");
    let Err(e) = r.get_blob(&missing).await else {
        panic!("blob found")
    };
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e}");

    // RemoteBlob streams from the source repository and offers a mount.
    let remote = RemoteBlob::new(r.clone(), layer.clone());
    assert_eq!(
        remote.mount_from(),
        Some((reg.addr.clone(), "team/app".to_string()))
    );
    let dest = repo(&reg, "other/copy", options());
    dest.put_blob(&layer, &remote, &|_| {}).await.unwrap();
    assert_eq!(
        dest.blobs_exist(std::slice::from_ref(&layer))
            .await
            .unwrap(),
        vec![true]
    );
}

#[tokio::test]
async fn chunked_upload_of_a_large_blob() {
    let reg = TestRegistry::start(None);
    let opts = ClientOptions {
        chunk_size: Some(5 * 1024 * 1024),
        monolithic_threshold: 1024,
        ..options()
    };
    let r = repo(&reg, "big", opts);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    // 11 MiB + a bit: three PATCH chunks of 5 MiB.
    let data: Vec<u8> = (0..(11 * 1024 * 1024 + 12345u32))
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let d = desc(media_types::OCI_LAYER_TAR, &data);
    let calls = Mutex::new(Vec::new());
    let progress = |n: u64| calls.lock().unwrap().push(n);
    r.put_blob(&d, &FileBlob { path: path.clone() }, &progress)
        .await
        .unwrap();
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.last().copied(), Some(data.len() as u64));
    assert!(
        calls.windows(2).all(|w| w[0] <= w[1]),
        "progress went backwards"
    );
    assert_eq!(
        r.blobs_exist(std::slice::from_ref(&d)).await.unwrap(),
        vec![true]
    );
    assert!(collect(&r, &d).await.unwrap() == data);

    // A source shorter than its descriptor is reported as a source problem.
    let short = Descriptor::new(
        media_types::OCI_LAYER_TAR,
        Digest::of(b"x"),
        6 * 1024 * 1024,
    );
    let e = r
        .put_blob(&short, &BytesBlob(Bytes::from_static(b"x")), &|_| {})
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::Source { .. }), "{e}");
}

#[tokio::test]
async fn mount_between_repositories() {
    let reg = TestRegistry::start(None);
    let a = repo(&reg, "src/a", options());
    let b = repo(&reg, "dst/b", options());
    let d = push_bytes(&a, media_types::OCI_LAYER_GZIP, b"shared layer bytes").await;
    assert!(b.mount_blob(&d, "src/a").await.unwrap());
    assert_eq!(
        b.blobs_exist(std::slice::from_ref(&d)).await.unwrap(),
        vec![true]
    );

    // Not in the source: the registry opens an upload session, which the upload then uses.
    let fresh = desc(media_types::OCI_LAYER_GZIP, b"not anywhere yet");
    assert!(!b.mount_blob(&fresh, "src/a").await.unwrap());
    b.put_blob(
        &fresh,
        &BytesBlob(Bytes::from_static(b"not anywhere yet")),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        b.blobs_exist(std::slice::from_ref(&fresh)).await.unwrap(),
        vec![true]
    );
}

#[tokio::test]
async fn manifest_errors_are_clear() {
    let reg = TestRegistry::start(None);
    let r = repo(&reg, "app", options());
    let config = desc(media_types::OCI_CONFIG, CONFIG);
    // The config blob was never pushed: the registry refuses the manifest.
    let manifest = manifest_for(&config, &[]);
    let e = r
        .put_manifest("v1", media_types::OCI_MANIFEST, manifest)
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::ManifestInvalid { .. }), "{e}");
    assert!(
        e.to_string().contains("MANIFEST_BLOB_UNKNOWN")
            && e.to_string().contains("push the blobs first"),
        "{e}"
    );
    // Bytes whose digest is not the reference.
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    let manifest = manifest_for(&config, &[]);
    let wrong = Digest::of(b"something else");
    let e = r
        .put_manifest(wrong.as_str(), media_types::OCI_MANIFEST, manifest)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("DIGEST_INVALID"), "{e}");
    assert!(e.to_string().contains("does not match the manifest"), "{e}");
    // A reference that is neither a tag nor a digest never reaches the registry.
    let e = r.get_manifest("bad tag!").await.unwrap_err();
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e}");
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let reg = TestRegistry::start(Some(("alice", "right-password")));
    let good = StaticCredentials::new(Credential::Basic {
        username: "alice".into(),
        password: Secret::new("right-password"),
    });
    let r = repo(
        &reg,
        "private/app",
        ClientOptions {
            credentials: Arc::new(good),
            ..options()
        },
    );
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(
        r.blobs_exist(&[desc(media_types::OCI_CONFIG, CONFIG)])
            .await
            .unwrap(),
        vec![true]
    );

    let bad = Arc::new(CountingProvider {
        inner: StaticCredentials::new(Credential::Basic {
            username: "alice".into(),
            password: Secret::new("wrong-password"),
        }),
        invalidated: AtomicUsize::new(0),
    });
    let r = repo(
        &reg,
        "private/app",
        ClientOptions {
            credentials: bad.clone(),
            ..options()
        },
    );
    let e = r
        .blobs_exist(&[desc(media_types::OCI_CONFIG, CONFIG)])
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::AuthFailed { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("authentication failed for")
            && msg.contains("user alice")
            && msg.contains(&reg.addr),
        "{msg}"
    );
    assert!(msg.contains("check your credentials"), "{msg}");
    assert!(
        !msg.contains("wrong-password") && !format!("{e:?}").contains("wrong-password"),
        "{msg}"
    );
    assert_eq!(bad.invalidated.load(Ordering::SeqCst), 1);

    let r = repo(&reg, "private/app", options());
    let e = r.get_manifest("latest").await.unwrap_err();
    assert!(matches!(e, RegistryError::AuthRequired { .. }), "{e}");
    assert!(e.to_string().contains("docker login"), "{e}");
}

#[tokio::test]
async fn unreachable_registry() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = Reference::parse(&format!("127.0.0.1:{port}/app")).unwrap();
    let repo = RegistryClient::new(options())
        .unwrap()
        .repository(&RegistriesConf::default().resolve(&r).unwrap());
    let e = repo.get_manifest("latest").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("cannot reach registry 127.0.0.1:{port}"))
            && msg.contains("--insecure"),
        "{msg}"
    );
}

#[derive(Debug)]
struct CountingProvider {
    inner: StaticCredentials,
    invalidated: AtomicUsize,
}

#[async_trait::async_trait]
impl ocipush::auth::CredentialProvider for CountingProvider {
    async fn credentials(
        &self,
        registry: &ocipush::auth::RegistryHost<'_>,
    ) -> Result<Option<Credential>, ocipush::auth::AuthError> {
        self.inner.credentials(registry).await
    }
    fn invalidate(&self, _registry: &ocipush::auth::RegistryHost<'_>) {
        self.invalidated.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------------------------
// A hand-rolled HTTP/1.1 stand-in (one request per connection) for what the real registry
// here cannot show: Bearer token servers, upload Location handling, dropped connections, retries.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    fn query(&self) -> Vec<(String, String)> {
        let q = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }
}

enum Resp {
    Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Drop,
}

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Resp {
    Resp::Reply {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

type Handler = Arc<dyn Fn(&Req, &str) -> Resp + Send + Sync>;

/// Serve `handler` on a loopback port; returns `host:port` and the log of requests.
async fn fake_server(handler: Handler) -> (String, Arc<Mutex<Vec<Req>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (log2, addr2) = (log.clone(), addr.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (handler, log, addr) = (handler.clone(), log2.clone(), addr2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 64 * 1024];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let mut lines = head.split("\r\n");
                let mut first = lines.next().unwrap_or("").split(' ');
                let method = first.next().unwrap_or("").to_string();
                let target = first.next().unwrap_or("").to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end + 4..].to_vec();
                while body.len() < len {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&tmp[..n]),
                    }
                }
                let req = Req {
                    method,
                    target,
                    headers,
                    body,
                };
                let resp = handler(&req, &addr);
                log.lock().unwrap().push(req);
                match resp {
                    Resp::Drop => {}
                    Resp::Reply {
                        status,
                        headers,
                        body,
                    } => {
                        let mut out = format!(
                            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for (k, v) in headers {
                            out.push_str(&format!("{k}: {v}\r\n"));
                        }
                        out.push_str("\r\n");
                        let _ = sock.write_all(out.as_bytes()).await;
                        let _ = sock.write_all(&body).await;
                        let _ = sock.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, log)
}

fn fake_repo(addr: &str, name: &str, opts: ClientOptions) -> Repository {
    let r = Reference::parse(&format!("{addr}/{name}")).unwrap();
    RegistryClient::new(opts)
        .unwrap()
        .repository(&RegistriesConf::default().resolve(&r).unwrap())
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A registry whose `/v2/` wants Bearer tokens from `/token` (Basic `bob:pw`, or refresh token `RT`).
fn bearer_registry() -> Handler {
    Arc::new(|req: &Req, addr: &str| {
        assert_eq!(req.header("user-agent"), Some(ocipush::USER_AGENT));
        if req.path() == "/token" {
            if req.method == "POST" {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
                let ok = form.contains(&("grant_type".into(), "refresh_token".into()))
                    && form.contains(&("refresh_token".into(), "RT".into()));
                return if ok {
                    reply(200, &[], r#"{"access_token":"T-refresh","expires_in":300}"#)
                } else {
                    reply(401, &[], r#"{"details":"invalid refresh token"}"#)
                };
            }
            return match req.header("authorization") {
                Some(a) if a == format!("Basic {}", b64("bob:pw")) => {
                    reply(200, &[], r#"{"token":"T-basic","expires_in":300}"#)
                }
                None => reply(200, &[], r#"{"token":"T-anon"}"#),
                _ => reply(401, &[], r#"{"details":"incorrect username or password"}"#),
            };
        }
        let authorized = matches!(
            req.header("authorization"),
            Some("Bearer T-basic" | "Bearer T-refresh")
        );
        if !authorized {
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:app:pull""#
            );
            return reply(
                401,
                &[
                    ("WWW-Authenticate", &challenge),
                    ("Content-Type", "application/json"),
                ],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        if req.path().starts_with("/v2/forbidden/") {
            let challenge = format!(
                r#"Bearer realm="http://{addr}/token",service="fake-registry",scope="repository:forbidden:pull,push",error="insufficient_scope""#
            );
            return reply(
                401,
                &[("WWW-Authenticate", &challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"requested access to the resource is denied"}]}"#,
            );
        }
        match req.method.as_str() {
            "HEAD" => reply(404, &[], ""),
            "POST" if req.query().iter().any(|(k, _)| k == "mount") => reply(201, &[], ""),
            _ => reply(500, &[], "unexpected"),
        }
    })
}

fn token_requests(log: &Mutex<Vec<Req>>) -> Vec<Req> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.path() == "/token")
        .cloned()
        .collect()
}

#[tokio::test]
async fn bearer_tokens_are_fetched_scoped_and_cached() {
    let (addr, log) = fake_server(bearer_registry()).await;
    let creds: Arc<dyn ocipush::auth::CredentialProvider> =
        Arc::new(StaticCredentials::new(Credential::Basic {
            username: "bob".into(),
            password: Secret::new("pw"),
        }));
    let r = fake_repo(
        &addr,
        "app",
        ClientOptions {
            credentials: creds.clone(),
            ..options()
        },
    );
    let blobs = [
        desc(media_types::OCI_LAYER_GZIP, b"a"),
        desc(media_types::OCI_LAYER_GZIP, b"b"),
    ];
    assert_eq!(r.blobs_exist(&blobs).await.unwrap(), vec![false, false]);
    assert_eq!(r.blobs_exist(&blobs).await.unwrap(), vec![false, false]);
    let tokens = token_requests(&log);
    assert_eq!(tokens.len(), 1, "the token is cached per scope");
    let q = tokens[0].query();
    assert!(
        q.contains(&("service".into(), "fake-registry".into())),
        "{q:?}"
    );
    assert!(
        q.contains(&("scope".into(), "repository:app:pull,push".into())),
        "{q:?}"
    );

    // Authenticated but without the scope: a permission error, not a credentials error.
    let f = fake_repo(
        &addr,
        "forbidden",
        ClientOptions {
            credentials: creds.clone(),
            ..options()
        },
    );
    let e = f.blobs_exist(&blobs[..1]).await.unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::Denied { .. }), "{e}");
    let e = f.get_manifest("v1").await.unwrap_err();
    assert!(matches!(e, RegistryError::Denied { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("requested access to the resource is denied"),
        "{e}"
    );

    // A cross-repository mount asks for the source's pull scope too.
    assert!(r.mount_blob(&blobs[0], "base/image").await.unwrap());
    let tokens: Vec<Req> = token_requests(&log)
        .into_iter()
        .filter(|t| !t.target.contains("forbidden"))
        .collect();
    assert_eq!(tokens.len(), 2);
    let scopes: Vec<String> = tokens[1]
        .query()
        .into_iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        scopes,
        vec![
            "repository:app:pull,push".to_string(),
            "repository:base/image:pull".to_string()
        ]
    );
}

#[tokio::test]
async fn identity_tokens_use_the_oauth2_refresh_grant() {
    let (addr, log) = fake_server(bearer_registry()).await;
    let creds = StaticCredentials::new(Credential::IdentityToken(Secret::new("RT")));
    let r = fake_repo(
        &addr,
        "app",
        ClientOptions {
            credentials: Arc::new(creds),
            ..options()
        },
    );
    assert_eq!(
        r.blobs_exist(&[desc(media_types::OCI_LAYER_GZIP, b"a")])
            .await
            .unwrap(),
        vec![false]
    );
    let tokens = token_requests(&log);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].method, "POST");
}

#[tokio::test]
async fn wrong_credentials_at_the_token_server() {
    let (addr, log) = fake_server(bearer_registry()).await;
    let provider = Arc::new(CountingProvider {
        inner: StaticCredentials::new(Credential::Basic {
            username: "bob".into(),
            password: Secret::new("nope-secret"),
        }),
        invalidated: AtomicUsize::new(0),
    });
    let r = fake_repo(
        &addr,
        "app",
        ClientOptions {
            credentials: provider.clone(),
            ..options()
        },
    );
    let e = r
        .blobs_exist(&[desc(media_types::OCI_LAYER_GZIP, b"a")])
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::AuthFailed { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("user bob") && msg.contains("incorrect username or password"),
        "{msg}"
    );
    assert!(!msg.contains("nope-secret") && !format!("{e:?}").contains("nope-secret"));
    assert_eq!(provider.invalidated.load(Ordering::SeqCst), 1);
    assert!(token_requests(&log).len() <= 3, "bounded attempts");

    // Anonymous: the anonymous token does not open the repository.
    let r = fake_repo(&addr, "app", options());
    let e = r.get_manifest("v1").await.unwrap_err();
    assert!(matches!(e, RegistryError::AuthRequired { .. }), "{e}");
}

#[tokio::test]
async fn upload_follows_locations_and_checks_digests() {
    let handler: Handler = Arc::new(|req: &Req, addr: &str| {
        let path = req.path().to_string();
        match (req.method.as_str(), path.as_str()) {
            ("POST", "/v2/app/blobs/uploads/") => {
                reply(202, &[("Location", "/upload/abc?_state=s0")], "")
            }
            ("PATCH", "/upload/abc") => {
                let state = req
                    .query()
                    .into_iter()
                    .find(|(k, _)| k == "_state")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                let n: u32 = state.trim_start_matches('s').parse().unwrap_or(99);
                // An absolute Location, and a Range header that lies (it must not be trusted).
                let next = format!("http://{addr}/upload/abc?_state=s{}", n + 1);
                reply(202, &[("Location", &next), ("Range", "0-0")], "")
            }
            ("PUT", "/upload/abc") => {
                let digest = req
                    .query()
                    .into_iter()
                    .find(|(k, _)| k == "digest")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                reply(201, &[("Docker-Content-Digest", &digest)], "")
            }
            ("PUT", "/v2/app/manifests/v1") => reply(
                201,
                &[(
                    "Docker-Content-Digest",
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                )],
                "",
            ),
            _ => reply(404, &[], ""),
        }
    });
    let (addr, log) = fake_server(handler).await;
    let opts = ClientOptions {
        chunk_size: Some(5 * 1024 * 1024),
        monolithic_threshold: 0,
        ..options()
    };
    let r = fake_repo(&addr, "app", opts);
    let data: Vec<u8> = (0..(10 * 1024 * 1024 + 7u32))
        .map(|i| (i % 13) as u8)
        .collect();
    let d = desc(media_types::OCI_LAYER_TAR, &data);
    r.put_blob(&d, &BytesBlob(Bytes::from(data.clone())), &|_| {})
        .await
        .unwrap();
    let reqs = log.lock().unwrap().clone();
    let patches: Vec<&Req> = reqs.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 3);
    let ranges: Vec<&str> = patches
        .iter()
        .map(|r| r.header("content-range").unwrap())
        .collect();
    assert_eq!(
        ranges,
        vec!["0-5242879", "5242880-10485759", "10485760-10485766"]
    );
    assert_eq!(
        patches.iter().map(|r| r.body.len()).sum::<usize>(),
        data.len()
    );
    assert!(
        patches[1].target.ends_with("_state=s1"),
        "{}",
        patches[1].target
    );
    let put = reqs.iter().find(|r| r.method == "PUT").unwrap();
    let q = put.query();
    assert!(
        q.contains(&("_state".into(), "s3".into()))
            && q.contains(&("digest".into(), d.digest.to_string())),
        "{q:?}"
    );
    assert!(put.body.is_empty());

    let e = r
        .put_manifest("v1", media_types::OCI_MANIFEST, Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::Mismatch { .. }), "{e}");
}

#[tokio::test]
async fn dropped_connections_and_retries() {
    let heads = Arc::new(AtomicUsize::new(0));
    let heads2 = heads.clone();
    let handler: Handler = Arc::new(move |req: &Req, _addr: &str| match req.method.as_str() {
        "POST" => Resp::Drop,
        "HEAD" => {
            if heads2.fetch_add(1, Ordering::SeqCst) == 0 {
                reply(503, &[("Retry-After", "0")], "")
            } else {
                reply(200, &[], "")
            }
        }
        "GET" => reply(
            429,
            &[("Retry-After", "0"), ("Content-Type", "application/json")],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        ),
        _ => reply(500, &[], ""),
    });
    let (addr, _log) = fake_server(handler).await;
    let retry = RetryPolicy {
        max_attempts: 3,
        base_delay: std::time::Duration::from_millis(1),
        max_delay: std::time::Duration::from_millis(5),
        max_elapsed: std::time::Duration::from_secs(60),
    };
    let r = fake_repo(&addr, "app", ClientOptions { retry, ..options() });
    let d = desc(media_types::OCI_LAYER_GZIP, b"x");
    assert_eq!(
        r.blobs_exist(std::slice::from_ref(&d)).await.unwrap(),
        vec![true]
    );
    assert_eq!(heads.load(Ordering::SeqCst), 2);

    let e = r.get_manifest("v1").await.unwrap_err();
    assert!(
        matches!(e, RegistryError::Exhausted { attempts: 3, .. }),
        "{e}"
    );
    assert!(
        matches!(e.last_attempt(), RegistryError::TooManyRequests { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("slow down"), "{e}");
    assert!(e.to_string().contains("after 3 attempts over"), "{e}");

    let r = fake_repo(&addr, "app", options());
    let e = r
        .put_blob(&d, &BytesBlob(Bytes::from_static(b"x")), &|_| {})
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::ConnectionDropped { .. }), "{e}");
    assert!(
        e.to_string().contains("the repository may not exist"),
        "{e}"
    );
}

#[tokio::test]
async fn registries_conf_location_and_docker_config_credentials() {
    let reg = TestRegistry::start(Some(("carol", "pw-carol")));
    let dir = tempfile::tempdir().unwrap();
    let conf_path = dir.path().join("registries.conf");
    std::fs::write(
        &conf_path,
        format!(
            "[[registry]]\nprefix = \"registry.example.com/team\"\nlocation = \"{}/mirror/team\"\n",
            reg.addr
        ),
    )
    .unwrap();
    let conf = RegistriesConf::load_file(&conf_path).unwrap();
    let r = Reference::parse("registry.example.com/team/app:1").unwrap();
    let endpoint = conf.resolve(&r).unwrap();
    assert_eq!(endpoint.logical_registry, "registry.example.com");
    assert_eq!(endpoint.host, reg.addr);
    assert_eq!(endpoint.repository, "mirror/team/app");
    assert_eq!(endpoint.scheme, Scheme::Http);

    // Credentials are looked up for the logical registry as docker login stored them.
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"https://registry.example.com":{{"auth":"{}"}}}}}}"#,
            b64("carol:pw-carol")
        ),
    )
    .unwrap();
    let provider = ocipush::auth::DockerConfigProvider::from_path(&config).unwrap();
    let client = RegistryClient::new(ClientOptions {
        credentials: Arc::new(provider),
        ..options()
    })
    .unwrap();
    let repo = client.repository(&endpoint);
    let d = push_bytes(&repo, media_types::OCI_CONFIG, CONFIG).await;
    let manifest = manifest_for(&d, &[]);
    repo.put_manifest(
        &r.reference_str(),
        media_types::OCI_MANIFEST,
        manifest.clone(),
    )
    .await
    .unwrap();
    assert_eq!(repo.get_manifest("1").await.unwrap().bytes, manifest);
    let msg = repo.registry_label();
    assert_eq!(msg, format!("registry.example.com (via {})", reg.addr));
}

/// A registry whose second PATCH of the first session is cut; its upload status then claims the
/// first chunk. With `refuse_resume` the resumed PATCH gets 416 (as ECR answers), so the upload
/// must start a fresh session; otherwise it must continue the same session from 5 MiB.
fn cut_upload_registry(refuse_resume: bool) -> Handler {
    let posts = Arc::new(AtomicUsize::new(0));
    let patches = Arc::new(AtomicUsize::new(0));
    Arc::new(move |req: &Req, _addr: &str| {
        let path = req.path().to_string();
        match (req.method.as_str(), path.as_str()) {
            ("POST", "/v2/app/blobs/uploads/") => {
                let n = posts.fetch_add(1, Ordering::SeqCst) + 1;
                reply(202, &[("Location", &format!("/upload/s{n}"))], "")
            }
            ("PATCH", "/upload/s1") => {
                let range = req.header("content-range").unwrap_or("").to_string();
                match patches.fetch_add(1, Ordering::SeqCst) {
                    0 => reply(202, &[("Location", "/upload/s1")], ""),
                    1 => Resp::Drop,
                    _ if refuse_resume => reply(
                        416,
                        &[],
                        r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"restart refused"}]}"#,
                    ),
                    _ if !range.starts_with("0-") => reply(202, &[("Location", "/upload/s1")], ""),
                    _ => reply(400, &[], "unexpected range"),
                }
            }
            ("GET", "/upload/s1") => reply(
                204,
                &[("Range", "0-5242879"), ("Location", "/upload/s1")],
                "",
            ),
            ("PATCH", p) if p.starts_with("/upload/") => reply(202, &[("Location", p)], ""),
            ("PUT", p) if p.starts_with("/upload/") => {
                let digest = req
                    .query()
                    .into_iter()
                    .find(|(k, _)| k == "digest")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                reply(201, &[("Docker-Content-Digest", &digest)], "")
            }
            _ => reply(404, &[], ""),
        }
    })
}

#[tokio::test]
async fn a_cut_chunked_upload_resumes_or_starts_afresh_on_416() {
    for refuse in [false, true] {
        let (addr, log) = fake_server(cut_upload_registry(refuse)).await;
        let data = put_resume_data(&addr, &format!("refuse={refuse}")).await;
        let reqs = log.lock().unwrap().clone();
        let summary: Vec<String> = reqs
            .iter()
            .map(|q| {
                format!(
                    "{} {} {}",
                    q.method,
                    q.target,
                    q.header("content-range").unwrap_or("")
                )
            })
            .collect();
        let posts = reqs.iter().filter(|q| q.method == "POST").count();
        assert!(
            reqs.iter()
                .any(|q| q.method == "GET" && q.path() == "/upload/s1"),
            "the upload status was asked for: {summary:#?}"
        );
        let put = reqs.iter().find(|q| q.method == "PUT").unwrap();
        if refuse {
            assert_eq!(posts, 2, "a fresh session after the 416: {summary:#?}");
            assert_eq!(put.path(), "/upload/s2", "{summary:#?}");
            let fresh: Vec<&Req> = reqs
                .iter()
                .filter(|q| q.method == "PATCH" && q.path() == "/upload/s2")
                .collect();
            assert_eq!(fresh[0].header("content-range"), Some("0-5242879"));
            let total: usize = fresh.iter().map(|q| q.body.len()).sum();
            assert_eq!(total, data.len(), "{summary:#?}");
        } else {
            assert_eq!(posts, 1, "the same session went on: {summary:#?}");
            assert_eq!(put.path(), "/upload/s1", "{summary:#?}");
            let resumed = reqs.iter().filter(|q| q.method == "PATCH").nth(2).unwrap();
            assert_eq!(
                resumed.header("content-range"),
                Some("5242880-10485759"),
                "{summary:#?}"
            );
            assert_eq!(&resumed.body[..], &data[5242880..10485760]);
        }
    }
}

/// Runs `openssl ARGS…` in `dir`, panicking with its stderr on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it
/// (`srv.pem`, `srv.key`), in `d`.
fn make_pki(d: &std::path::Path) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ocipush test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(d.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[tokio::test]
async fn tls_with_an_extra_ca_certificate() {
    // A throwaway CA and a server certificate for 127.0.0.1 signed by it.
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d);
    let reg = TestRegistry::start_with(None, Some((&d.join("srv.pem"), &d.join("srv.key"))));
    let endpoint = Endpoint {
        logical_registry: reg.addr.clone(),
        host: reg.addr.clone(),
        repository: "tls/app".into(),
        scheme: Scheme::Https,
        insecure: false,
    };
    // Without the CA: the certificate is not trusted, and the error says so.
    let plain = RegistryClient::new(options())
        .unwrap()
        .repository(&endpoint);
    let e = plain
        .blob_exists(&desc(media_types::OCI_CONFIG, CONFIG).digest)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // With it (`--ca-cert`): a push and pull over TLS.
    let ca = ocipush::registry::CaCert {
        origin: "ca.pem".into(),
        pem: std::fs::read(d.join("ca.pem")).unwrap(),
    };
    let client = RegistryClient::new(ClientOptions {
        ca_certs: vec![ca],
        ..options()
    })
    .unwrap();
    let repo = client.repository(&endpoint);
    let cfg = push_bytes(&repo, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(collect(&repo, &cfg).await.unwrap(), CONFIG);
    // A file that is not PEM is refused up front, naming it.
    let bad = ocipush::registry::CaCert {
        origin: "junk.pem".into(),
        pem: b"not a certificate".to_vec(),
    };
    let e = RegistryClient::new(ClientOptions {
        ca_certs: vec![bad],
        ..options()
    })
    .unwrap_err();
    assert!(e.to_string().contains("junk.pem"), "{e}");
}

// ---- insecure registries and token realms (issue 11) ----

/// An endpoint for `reg` that tries TLS first: `insecure` as registries.conf would set it.
fn https_endpoint(reg: &TestRegistry, repository: &str, insecure: bool) -> Endpoint {
    Endpoint {
        logical_registry: reg.addr.clone(),
        host: reg.addr.clone(),
        repository: repository.into(),
        scheme: Scheme::Https,
        insecure,
    }
}

#[tokio::test]
async fn insecure_accepts_an_unverified_certificate_and_secure_does_not() {
    // containers-registries.conf(5): `insecure = true` allows "TLS connections with
    // untrusted certificates". The registry's certificate is signed by a CA nobody trusts.
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d);
    let reg = TestRegistry::start_with(None, Some((&d.join("srv.pem"), &d.join("srv.key"))));
    let secure = RegistryClient::new(options())
        .unwrap()
        .repository(&https_endpoint(&reg, "tls/app", false));
    let e = secure
        .blob_exists(&desc(media_types::OCI_CONFIG, CONFIG).digest)
        .await
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    let insecure = RegistryClient::new(options())
        .unwrap()
        .repository(&https_endpoint(&reg, "tls/app", true));
    let cfg = push_bytes(&insecure, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(collect(&insecure, &cfg).await.unwrap(), CONFIG);
    // Still TLS: the plain-HTTP fallback was not needed (a TLS-only registry answers
    // plain HTTP with 400, so a pull over HTTP would have failed).
    let m = manifest_for(&cfg, &[]);
    insecure
        .put_manifest("v1", media_types::OCI_MANIFEST, m.clone())
        .await
        .unwrap();
    assert_eq!(insecure.get_manifest("v1").await.unwrap().bytes, m);
}

#[tokio::test]
async fn insecure_falls_back_to_plain_http_when_tls_fails() {
    // A plain-HTTP registry: TLS is tried first (the handshake fails), then HTTP, as
    // containers/image's detectPropertiesHelper does for insecure registries.
    let reg = TestRegistry::start(None);
    let secure = RegistryClient::new(options())
        .unwrap()
        .repository(&https_endpoint(&reg, "plain/app", false));
    let e = secure
        .blob_exists(&desc(media_types::OCI_CONFIG, CONFIG).digest)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
    assert!(e.to_string().contains("--insecure"), "{e}");
    let client = RegistryClient::new(options()).unwrap();
    let insecure = client.repository(&https_endpoint(&reg, "plain/app", true));
    let cfg = push_bytes(&insecure, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(collect(&insecure, &cfg).await.unwrap(), CONFIG);
    // Another repository of the same host reuses what was learned.
    let other = client.repository(&https_endpoint(&reg, "plain/other", true));
    assert!(!other.blob_exists(&cfg.digest).await.unwrap());
}

#[tokio::test]
async fn an_http_token_realm_under_an_https_registry_is_refused() {
    // The real registry, over TLS, with token auth whose realm is plain http: the client
    // must not send the user's password there (RFC 6749 §3.2: the token endpoint needs TLS).
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d);
    let realm = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    realm.set_nonblocking(true).unwrap();
    let realm_url = format!("http://{}/token", realm.local_addr().unwrap());
    let auth = format!(
        "auth:\n  token:\n    realm: {realm_url}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
        d.join("ca.pem").display()
    );
    let reg =
        TestRegistry::start_configured(None, Some((&d.join("srv.pem"), &d.join("srv.key"))), &auth);
    let ca = ocipush::registry::CaCert {
        origin: "ca.pem".into(),
        pem: std::fs::read(d.join("ca.pem")).unwrap(),
    };
    let creds = StaticCredentials::new(Credential::Basic {
        username: "alice".into(),
        password: Secret::new("realm-test-password"),
    });
    let client = RegistryClient::new(ClientOptions {
        ca_certs: vec![ca],
        credentials: Arc::new(creds),
        ..options()
    })
    .unwrap();
    let r = client.repository(&https_endpoint(&reg, "realm/app", false));
    let e = r.get_manifest("v1").await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("plain http") && msg.contains(&realm_url.replace("/token", "")),
        "{msg}"
    );
    assert!(!msg.contains("realm-test-password"), "{msg}");
    // Nothing ever connected to the realm.
    match realm.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the http realm was contacted: {other:?}"),
    }
}

#[tokio::test]
async fn an_upload_location_downgraded_to_http_is_refused() {
    // The real registry over TLS, with its external URL (`http.host`) misconfigured to plain
    // http, as behind a TLS-terminating proxy that does not say so: every upload `Location`
    // it answers is `http://…`. Following it would send the blob (and the session URL) in
    // clear; the push stops with an error that says so.
    let pki = tempfile::tempdir().unwrap();
    let d = pki.path();
    make_pki(d);
    // `extra` continues the `http:` section written last (indented under it).
    let reg = TestRegistry::start_configured(
        None,
        Some((&d.join("srv.pem"), &d.join("srv.key"))),
        "  host: http://127.0.0.1:9\n",
    );
    let ca = ocipush::registry::CaCert {
        origin: "ca.pem".into(),
        pem: std::fs::read(d.join("ca.pem")).unwrap(),
    };
    let client = RegistryClient::new(ClientOptions {
        ca_certs: vec![ca],
        ..options()
    })
    .unwrap();
    let r = client.repository(&https_endpoint(&reg, "downgrade/app", false));
    let d = desc(media_types::OCI_CONFIG, CONFIG);
    let e = r
        .put_blob(&d, &BytesBlob(Bytes::from_static(CONFIG)), &|_| {})
        .await
        .unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::Downgrade { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("https to plain http") && msg.contains("http://127.0.0.1:9"),
        "{msg}"
    );
    // Nothing was stored.
    assert!(!r.blob_exists(&d.digest).await.unwrap());
}

/// A registry stand-in for what `docker-registry` cannot be brought to: an upload session that
/// holds exactly 1 byte (the first PATCH is dropped after 1 byte arrived) while its status says
/// `0-0`, as CNCF distribution's `blobUploadResponse` says for 0 and for 1 byte alike
/// (`registry/handlers/blobupload.go`). With `enforce_range`, a PATCH whose Content-Range does
/// not start at the session's size gets 416 `RANGE_INVALID` (distribution-spec: "If a chunk is
/// uploaded out of order, a 416 … MUST be returned"); without it, the chunk is appended
/// whatever its range, as distribution does. The closing PUT checks the digest of what the
/// session holds (400 `DIGEST_INVALID` otherwise).
fn one_byte_registry(enforce_range: bool) -> Handler {
    let sessions: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let dropped = Arc::new(AtomicUsize::new(0));
    Arc::new(move |req: &Req, _addr: &str| {
        let path = req.path().to_string();
        let session = |p: &str| {
            p.strip_prefix("/upload/s")
                .and_then(|n| n.parse::<usize>().ok())
        };
        let mut s = sessions.lock().unwrap();
        match (req.method.as_str(), session(&path)) {
            ("POST", None) if path == "/v2/app/blobs/uploads/" => {
                s.push(Vec::new());
                reply(
                    202,
                    &[("Location", &format!("/upload/s{}", s.len() - 1))],
                    "",
                )
            }
            ("PATCH", Some(n)) if n < s.len() => {
                if dropped.fetch_add(1, Ordering::SeqCst) == 0 {
                    s[n].extend_from_slice(&req.body[..1]);
                    return Resp::Drop;
                }
                let start: usize = req
                    .header("content-range")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(a, _)| a.parse().ok())
                    .unwrap_or(usize::MAX);
                if enforce_range && start != s[n].len() {
                    return reply(
                        416,
                        &[],
                        r#"{"errors":[{"code":"RANGE_INVALID","message":"invalid content range"}]}"#,
                    );
                }
                s[n].extend_from_slice(&req.body);
                let range = format!("0-{}", s[n].len() - 1);
                reply(202, &[("Location", &path), ("Range", &range)], "")
            }
            ("GET", Some(n)) if n < s.len() => {
                let range = format!("0-{}", s[n].len().saturating_sub(1));
                reply(204, &[("Location", &path), ("Range", &range)], "")
            }
            ("PUT", Some(n)) if n < s.len() => {
                let digest = req
                    .query()
                    .into_iter()
                    .find(|(k, _)| k == "digest")
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                if Digest::of(&s[n]).to_string() == digest {
                    reply(201, &[("Docker-Content-Digest", &digest)], "")
                } else {
                    reply(
                        400,
                        &[],
                        r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#,
                    )
                }
            }
            _ => reply(404, &[], ""),
        }
    })
}

#[tokio::test]
async fn a_0_0_status_is_ambiguous_416_means_the_registry_had_the_byte_and_digest_invalid_redoes() {
    for enforce_range in [true, false] {
        let (addr, log) = fake_server(one_byte_registry(enforce_range)).await;
        let data = put_resume_data(&addr, &format!("enforce_range={enforce_range}")).await;
        let reqs = log.lock().unwrap().clone();
        let summary: Vec<String> = reqs
            .iter()
            .map(|q| {
                let range = q.header("content-range").unwrap_or("");
                format!("{} {} {range}", q.method, q.path())
            })
            .collect();
        let patches: Vec<&Req> = reqs.iter().filter(|q| q.method == "PATCH").collect();
        // Dropped after 1 byte, then (status `0-0`) sent again from 0, not from 1.
        assert_eq!(patches[0].header("content-range"), Some("0-5242879"));
        assert_eq!(
            patches[1].header("content-range"),
            Some("0-5242879"),
            "{summary:#?}"
        );
        let posts = reqs.iter().filter(|q| q.method == "POST").count();
        if enforce_range {
            // The 416 said the registry had the byte: on from 1, in the same session.
            assert_eq!(
                patches[2].header("content-range"),
                Some("1-5242880"),
                "{summary:#?}"
            );
            assert_eq!(posts, 1, "{summary:#?}");
        } else {
            // The registry appended the chunk to its byte: the closing PUT answered
            // DIGEST_INVALID and the upload was redone once, from a fresh session.
            let puts: Vec<&Req> = reqs.iter().filter(|q| q.method == "PUT").collect();
            assert_eq!(puts.len(), 2, "{summary:#?}");
            assert_eq!(puts[0].path(), "/upload/s0", "{summary:#?}");
            assert_eq!(puts[1].path(), "/upload/s1", "{summary:#?}");
            assert_eq!(posts, 2, "{summary:#?}");
        }
        let last_put = reqs.iter().rev().find(|q| q.method == "PUT").unwrap();
        let sent: usize = reqs
            .iter()
            .filter(|q| q.method == "PATCH" && q.path() == last_put.path())
            .map(|q| q.body.len())
            .sum();
        assert!(sent >= data.len(), "{summary:#?}");
    }
}
