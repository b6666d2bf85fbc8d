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
use ocipush::registry::{ClientOptions, RegistryClient, RegistryError, RemoteBlob, Repository, RetryPolicy};

/// A running `docker-registry`, killed on drop.
struct TestRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    fn start(htpasswd: Option<(&str, &str)>) -> TestRegistry {
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
        if let Some((user, pass)) = htpasswd {
            let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", file.display()));
        }
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
                    panic!("docker-registry exited before listening:\n{}", seen.join("\n"));
                }
            }
        }
        std::thread::spawn(move || for _ in lines {});
        TestRegistry { child, addr, _dir: dir }
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
    ClientOptions { retry: RetryPolicy::none(), ..ClientOptions::default() }
}

fn repo(reg: &TestRegistry, name: &str, opts: ClientOptions) -> Repository {
    RegistryClient::new(opts).unwrap().repository(&reg.endpoint(name))
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64)
}

async fn push_bytes(repo: &Repository, media_type: &str, bytes: &[u8]) -> Descriptor {
    let d = desc(media_type, bytes);
    let total = AtomicU64::new(0);
    let progress = |n: u64| total.store(n, Ordering::SeqCst);
    repo.put_blob(&d, &BytesBlob(Bytes::copy_from_slice(bytes)), &progress).await.unwrap();
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

const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

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
    assert_eq!(r.blobs_exist(&[layer.clone(), config.clone()]).await.unwrap(), vec![false, false]);
    push_bytes(&r, media_types::OCI_LAYER_GZIP, &layer_bytes).await;
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(r.blobs_exist(&[layer.clone(), config.clone()]).await.unwrap(), vec![true, true]);

    let manifest = manifest_for(&config, std::slice::from_ref(&layer));
    let ours = Digest::of(&manifest);
    let reported = r.put_manifest("v1", media_types::OCI_MANIFEST, manifest.clone()).await.unwrap();
    assert_eq!(reported, Some(ours.clone()));
    let by_digest = r.put_manifest(ours.as_str(), media_types::OCI_MANIFEST, manifest.clone()).await.unwrap();
    assert_eq!(by_digest, Some(ours.clone()));

    let got = r.get_manifest("v1").await.unwrap();
    assert_eq!((got.bytes.clone(), got.media_type.as_str(), &got.digest), (manifest.clone(), media_types::OCI_MANIFEST, &ours));
    let got = r.get_manifest(ours.as_str()).await.unwrap();
    assert_eq!(got.bytes, manifest);

    assert_eq!(collect(&r, &layer).await.unwrap(), layer_bytes);
    assert_eq!(r.get_blob_bytes(&config, 1024).await.unwrap().as_ref(), CONFIG);
    let e = r.get_blob_bytes(&layer, 10).await.unwrap_err();
    assert!(matches!(e, RegistryError::TooLarge { .. }), "{e}");

    // A descriptor that lies about the size: the stream fails at the end, naming blob and registry.
    let mut wrong = layer.clone();
    wrong.size += 1;
    let e = collect(&r, &wrong).await.unwrap_err().to_string();
    assert!(e.contains(layer.digest.as_str()) && e.contains(&reg.addr) && e.contains("ended after"), "{e}");

    let e = r.get_manifest("nope").await.unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e}");
    assert!(e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
    let other = repo(&reg, "does/not-exist", options());
    let e = other.get_manifest("v1").await.unwrap_err();
    assert!(e.to_string().contains("NAME_UNKNOWN") || e.to_string().contains("MANIFEST_UNKNOWN"), "{e}");
    let missing = desc(media_types::OCI_LAYER_GZIP, b"never pushed");
    let Err(e) = r.get_blob(&missing).await else { panic!("blob found") };
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e}");

    // RemoteBlob streams from the source repository and offers a mount.
    let remote = RemoteBlob::new(r.clone(), layer.clone());
    assert_eq!(remote.mount_from(), Some((reg.addr.clone(), "team/app".to_string())));
    let dest = repo(&reg, "other/copy", options());
    dest.put_blob(&layer, &remote, &|_| {}).await.unwrap();
    assert_eq!(dest.blobs_exist(std::slice::from_ref(&layer)).await.unwrap(), vec![true]);
}

#[tokio::test]
async fn chunked_upload_of_a_large_blob() {
    let reg = TestRegistry::start(None);
    let opts = ClientOptions { chunk_size: 1, monolithic_threshold: 1024, ..options() };
    let r = repo(&reg, "big", opts);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    // 11 MiB + a bit: three PATCH chunks of at least 5 MiB (the minimum chunk size).
    let data: Vec<u8> = (0..(11 * 1024 * 1024 + 12345u32)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let d = desc(media_types::OCI_LAYER_TAR, &data);
    let calls = Mutex::new(Vec::new());
    let progress = |n: u64| calls.lock().unwrap().push(n);
    r.put_blob(&d, &FileBlob { path: path.clone() }, &progress).await.unwrap();
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.last().copied(), Some(data.len() as u64));
    assert!(calls.windows(2).all(|w| w[0] <= w[1]), "progress went backwards");
    assert_eq!(r.blobs_exist(std::slice::from_ref(&d)).await.unwrap(), vec![true]);
    assert!(collect(&r, &d).await.unwrap() == data);

    // A source shorter than its descriptor is reported as a source problem.
    let short = Descriptor::new(media_types::OCI_LAYER_TAR, Digest::of(b"x"), 6 * 1024 * 1024);
    let e = r.put_blob(&short, &BytesBlob(Bytes::from_static(b"x")), &|_| {}).await.unwrap_err();
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
    assert_eq!(b.blobs_exist(std::slice::from_ref(&d)).await.unwrap(), vec![true]);

    // Not in the source: the registry opens an upload session, which the upload then uses.
    let fresh = desc(media_types::OCI_LAYER_GZIP, b"not anywhere yet");
    assert!(!b.mount_blob(&fresh, "src/a").await.unwrap());
    b.put_blob(&fresh, &BytesBlob(Bytes::from_static(b"not anywhere yet")), &|_| {}).await.unwrap();
    assert_eq!(b.blobs_exist(std::slice::from_ref(&fresh)).await.unwrap(), vec![true]);
}

#[tokio::test]
async fn manifest_errors_are_clear() {
    let reg = TestRegistry::start(None);
    let r = repo(&reg, "app", options());
    let config = desc(media_types::OCI_CONFIG, CONFIG);
    // The config blob was never pushed: the registry refuses the manifest.
    let manifest = manifest_for(&config, &[]);
    let e = r.put_manifest("v1", media_types::OCI_MANIFEST, manifest).await.unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::ManifestInvalid { .. }), "{e}");
    assert!(e.to_string().contains("MANIFEST_BLOB_UNKNOWN") && e.to_string().contains("push the blobs first"), "{e}");
    // Bytes whose digest is not the reference.
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    let manifest = manifest_for(&config, &[]);
    let wrong = Digest::of(b"something else");
    let e = r.put_manifest(wrong.as_str(), media_types::OCI_MANIFEST, manifest).await.unwrap_err();
    assert!(e.to_string().contains("DIGEST_INVALID"), "{e}");
    assert!(e.to_string().contains("does not match the manifest"), "{e}");
    // A reference that is neither a tag nor a digest never reaches the registry.
    let e = r.get_manifest("bad tag!").await.unwrap_err();
    assert!(matches!(e, RegistryError::InvalidReference { .. }), "{e}");
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let reg = TestRegistry::start(Some(("alice", "right-password")));
    let good = StaticCredentials::new(Credential::Basic { username: "alice".into(), password: Secret::new("right-password") });
    let r = repo(&reg, "private/app", ClientOptions { credentials: Arc::new(good), ..options() });
    push_bytes(&r, media_types::OCI_CONFIG, CONFIG).await;
    assert_eq!(r.blobs_exist(&[desc(media_types::OCI_CONFIG, CONFIG)]).await.unwrap(), vec![true]);

    let bad = Arc::new(CountingProvider {
        inner: StaticCredentials::new(Credential::Basic { username: "alice".into(), password: Secret::new("wrong-password") }),
        invalidated: AtomicUsize::new(0),
    });
    let r = repo(&reg, "private/app", ClientOptions { credentials: bad.clone(), ..options() });
    let e = r.blobs_exist(&[desc(media_types::OCI_CONFIG, CONFIG)]).await.unwrap_err();
    let e = e.downcast_ref::<RegistryError>().unwrap();
    assert!(matches!(e, RegistryError::AuthFailed { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("authentication failed for") && msg.contains("user alice") && msg.contains(&reg.addr), "{msg}");
    assert!(msg.contains("check your credentials"), "{msg}");
    assert!(!msg.contains("wrong-password") && !format!("{e:?}").contains("wrong-password"), "{msg}");
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
    let repo = RegistryClient::new(options()).unwrap().repository(&RegistriesConf::default().resolve(&r).unwrap());
    let e = repo.get_manifest("latest").await.unwrap_err();
    assert!(matches!(e, RegistryError::Unreachable { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("cannot reach registry 127.0.0.1:{port}")) && msg.contains("--insecure"), "{msg}");
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
