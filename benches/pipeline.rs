//! Layer pipeline throughput: read files → tar → sha256 (diff_id) → compress → sha256 (digest)
//! → spool file, for each codec and level, with 1 and 2 compression threads.
//!
//! Data: `OCIPUSH_BENCH_DIR` (default `/usr/lib/x86_64-linux-gnu`), its regular files in path
//! order up to `OCIPUSH_BENCH_MB` MiB (default 64). Each configuration also prints its
//! compressed size once, so levels can be compared on speed *and* ratio.
//!
//!     cargo bench --bench pipeline

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ocipush::layers::{Compression, EntryMeta, LayerBlob, LayerOptions, LayerWriter, Spool};

fn files(dir: &Path, budget: u64) -> Vec<(String, PathBuf, u64)> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
                all.push((rel, e.path(), size));
            }
        }
    }
    all.sort();
    let mut total = 0;
    all.into_iter()
        .take_while(|(_, _, s)| {
            total += s;
            total <= budget
        })
        .collect()
}

fn build(
    spool: &Spool,
    files: &[(String, PathBuf, u64)],
    c: Compression,
    threads: usize,
) -> LayerBlob {
    let opts = LayerOptions {
        compression: c,
        epoch: 0,
        threads,
    };
    let mut w = LayerWriter::new(spool, &opts).unwrap();
    for (rel, path, size) in files {
        let mut f = File::open(path).unwrap();
        w.add_file(rel, EntryMeta::root(0o644), *size, &mut f)
            .unwrap();
    }
    let blob = w.finish().unwrap();
    std::fs::remove_file(&blob.path).unwrap();
    blob
}

fn pipeline(c: &mut Criterion) {
    let dir = std::env::var("OCIPUSH_BENCH_DIR").unwrap_or("/usr/lib/x86_64-linux-gnu".into());
    let mb: u64 = std::env::var("OCIPUSH_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let files = files(Path::new(&dir), mb << 20);
    let total: u64 = files.iter().map(|f| f.2).sum();
    let tmp = tempfile::tempdir().unwrap();
    let spool = Spool::new(tmp.path()).unwrap();
    let codecs = [
        Compression::None,
        Compression::Gzip { level: 1 },
        Compression::Gzip { level: 2 },
        Compression::Gzip { level: 3 },
        Compression::Gzip { level: 4 },
        Compression::Gzip { level: 6 },
        Compression::Zstd { level: 1 },
        Compression::Zstd { level: 3 },
    ];
    let mut g = c.benchmark_group("layer");
    g.throughput(Throughput::Bytes(total))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for codec in codecs {
        let mut digest = None;
        for threads in [1, 2] {
            let blob = build(&spool, &files, codec, threads);
            if digest.is_none() {
                eprintln!(
                    "{}: {} of {} bytes ({:.1} %)",
                    codec.name(),
                    blob.size,
                    total,
                    100.0 * blob.size as f64 / total as f64
                );
            }
            // The same bytes for any thread count.
            assert!(digest.as_ref().is_none_or(|d| *d == blob.digest));
            digest = Some(blob.digest);
            g.bench_function(BenchmarkId::new(codec.name(), format!("{threads}t")), |b| {
                b.iter(|| build(&spool, &files, codec, 0))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
