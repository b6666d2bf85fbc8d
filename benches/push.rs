//! Push throughput to a local CNCF registry (`docker-registry serve`, filesystem storage in a
//! temporary directory, on a free loopback port), through the library's registry client:
//!
//! - `push/blob_64MiB/chunked`: one 64 MiB incompressible blob from a file
//!   (`Repository::upload` with `FileBlob`), with the default options (PATCH chunks of 16 MiB,
//!   as blobs above the 32 MiB monolithic threshold go);
//! - `push/blob_64MiB/monolithic`: the same blob in one PUT (threshold raised);
//! - `push/configs_100x4KiB_jobs4`: 100 distinct 4 KiB blobs from memory with `push_blobs`,
//!   4 at a time (the existence checks included, as in a real push).
//!
//! Every iteration pushes to a fresh repository, so nothing is skipped or mounted. Without
//! `docker-registry` on `PATH` it prints a note and measures nothing.
//!
//!     cargo bench --bench push

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ocipush::blob::{Blob, BytesBlob, FileBlob};
use ocipush::digest::Digest;
use ocipush::image::Descriptor;
use ocipush::push::{PushOptions, push_blobs};
use ocipush::registries_conf::{Endpoint, Scheme};
use ocipush::registry::{ClientOptions, RegistryClient};

const BIG: usize = 64 << 20;
const SMALL: usize = 4 << 10;
const SMALL_COUNT: usize = 100;
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// A `docker-registry serve` child, killed (by its own handle) on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Whether `GET /v2/` answers 200 (plain HTTP/1.0, no client library needed).
fn v2_answers(host: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

fn start_registry(bin: &Path) -> Result<Registry, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // A free port: bind :0, note it, release it for the registry.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{ level: error, accesslog: {{ disabled: true }} }}\n\
             storage: {{ filesystem: {{ rootdirectory: {} }} }}\nhttp: {{ addr: {host} }}\n",
            dir.path().join("storage").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut reg = Registry {
        child,
        host,
        _dir: dir,
    };
    // Polling an external server until it listens (not synchronising our own code).
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if v2_answers(&reg.host) {
            return Ok(reg);
        }
        if let Ok(Some(status)) = reg.child.try_wait() {
            return Err(format!("docker-registry exited: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("docker-registry did not answer on {}", reg.host))
}

/// Incompressible bytes (xorshift64*), the same every run.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn endpoint(host: &str, repository: String) -> Endpoint {
    Endpoint {
        logical_registry: host.to_string(),
        host: host.to_string(),
        repository,
        scheme: Scheme::Http,
        insecure: false,
    }
}

fn push(c: &mut Criterion) {
    let Some(bin) = find_on_path("docker-registry") else {
        println!("push bench: docker-registry is not on PATH; nothing measured");
        return;
    };
    let reg = match start_registry(&bin) {
        Ok(r) => r,
        Err(e) => {
            println!("push bench: {e}; nothing measured");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fresh = AtomicUsize::new(0);
    let next_repo = |kind: &str| format!("bench/{kind}{}", fresh.fetch_add(1, Ordering::Relaxed));

    // The big blob, written once.
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(BIG, 0x9E37_79B9_7F4A_7C15);
    let big = Descriptor::new(LAYER_TYPE, Digest::of(&data), BIG as u64);
    let path = tmp.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let file = FileBlob { path };

    let chunked = RegistryClient::new(ClientOptions {
        insecure: true,
        ..ClientOptions::default()
    })
    .unwrap();
    let monolithic = RegistryClient::new(ClientOptions {
        insecure: true,
        monolithic_threshold: u64::MAX,
        ..ClientOptions::default()
    })
    .unwrap();

    let mut g = c.benchmark_group("push");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(BIG as u64));
    for (name, client) in [("chunked", &chunked), ("monolithic", &monolithic)] {
        g.bench_function(format!("blob_64MiB/{name}"), |b| {
            b.iter(|| {
                let repo = client.repository(&endpoint(&reg.host, next_repo("blob")));
                rt.block_on(repo.upload(&big, &file, &|_| {})).unwrap();
            })
        });
    }

    // Small blobs: distinct contents, pushed from memory like image configs.
    let blobs: Vec<Blob> = (0..SMALL_COUNT)
        .map(|i| {
            let bytes = Bytes::from(noise(SMALL, i as u64 + 1));
            Blob {
                descriptor: Descriptor::new(CONFIG_TYPE, Digest::of(&bytes), SMALL as u64),
                source: Arc::new(BytesBlob(bytes)),
            }
        })
        .collect();
    let opts = PushOptions {
        jobs: 4,
        registry: None,
        ..PushOptions::default()
    };
    let events = ocipush::events::ignore();
    g.throughput(Throughput::Bytes((SMALL * SMALL_COUNT) as u64))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("configs_100x4KiB_jobs4", |b| {
        b.iter(|| {
            let repo = chunked.repository(&endpoint(&reg.host, next_repo("small")));
            rt.block_on(push_blobs(&repo, &blobs, &opts, &events))
                .unwrap();
        })
    });
    g.finish();
    drop(reg);
}

criterion_group!(benches, push);
criterion_main!(benches);
