//! Layer cache: hits for unchanged inputs (no tar, no compression), misses for any change in
//! content, mode or options, corrupted blobs detected and rebuilt, concurrent writers.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::digest::Digest;
use crate::layers::Compression;

fn context(root: &Path) -> Context {
    fs::create_dir_all(root.join("lib/sub")).unwrap();
    fs::write(root.join("lib/a.so"), vec![7u8; 300_000]).unwrap();
    fs::write(root.join("lib/sub/b.so"), b"bbbb").unwrap();
    std::os::unix::fs::symlink("a.so", root.join("lib/link.so")).unwrap();
    Context::open(root).unwrap()
}

fn spec() -> CopySpec {
    CopySpec {
        srcs: vec!["lib".into()],
        dest: "/usr/lib/".into(),
        ..Default::default()
    }
}

fn opts(level: u32) -> LayerOptions {
    LayerOptions {
        compression: Compression::Gzip { level },
        epoch: 0,
        threads: 0,
    }
}

fn check_blob(blob: &LayerBlob) {
    let bytes = fs::read(&blob.path).unwrap();
    assert_eq!(Digest::of(&bytes), blob.digest);
    assert_eq!(bytes.len() as u64, blob.size);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut raw)
        .unwrap();
    assert_eq!(Digest::of(&raw), blob.diff_id);
}

#[test]
fn unchanged_inputs_hit_and_changes_miss() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ctx"));
    let cache = LayerCache::open(dir.path().join("cache")).unwrap();
    let (first, o1) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o1, CacheOutcome::Built);
    check_blob(&first);
    // The same as building without a cache.
    let spool = Spool::new(dir.path().join("spool")).unwrap();
    let plain = crate::layers::build_copy_layer(&ctx, &spec(), &spool, &opts(6)).unwrap();
    assert_eq!(
        (&plain.digest, &plain.diff_id),
        (&first.digest, &first.diff_id)
    );

    let (again, o2) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o2, CacheOutcome::Hit);
    assert_eq!(again, first);

    // Another option: a miss.
    let (other, o3) = cache.copy_layer(&ctx, &spec(), &opts(1)).unwrap();
    assert_eq!(o3, CacheOutcome::Built);
    let chown = CopySpec {
        chown: Some((1, 1)),
        ..spec()
    };
    assert_eq!(
        cache.copy_layer(&ctx, &chown, &opts(6)).unwrap().1,
        CacheOutcome::Built
    );
    assert_ne!(other.digest, first.digest);

    // Same size, other content: a miss with another digest.
    let root = dir.path().join("ctx");
    fs::write(root.join("lib/sub/b.so"), b"cccc").unwrap();
    let (changed, o4) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o4, CacheOutcome::Built);
    assert_ne!(changed.digest, first.digest);
    check_blob(&changed);

    // Another mode: a miss.
    fs::set_permissions(root.join("lib/sub/b.so"), fs::Permissions::from_mode(0o600)).unwrap();
    let (moded, o5) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o5, CacheOutcome::Built);
    assert_ne!(moded.digest, changed.digest);

    // Back to the first content and mode (new mtimes): a hit on content.
    fs::write(root.join("lib/sub/b.so"), b"bbbb").unwrap();
    fs::set_permissions(root.join("lib/sub/b.so"), fs::Permissions::from_mode(0o644)).unwrap();
    let (back, o6) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o6, CacheOutcome::Hit);
    assert_eq!(back.digest, first.digest);
}

#[test]
fn stat_fast_path_hits_without_hashing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ctx"));
    let mut cache = LayerCache::open(dir.path().join("cache")).unwrap();
    cache.racy_window = Duration::ZERO;
    let (first, _) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(
        fs::read_dir(dir.path().join("cache/stat")).unwrap().count(),
        1
    );
    // Without the shape marker only the stat record can give a hit.
    for e in fs::read_dir(dir.path().join("cache/shape")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    let (again, o) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o, CacheOutcome::Hit);
    assert_eq!(again, first);
}

#[test]
fn corrupted_blob_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ctx"));
    let cache = LayerCache::open(dir.path().join("cache")).unwrap();
    let (first, _) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&first.path)
        .unwrap();
    f.write_all(b"garbage").unwrap();
    drop(f);
    let (again, o) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    assert_eq!(again.digest, first.digest);
    check_blob(&again);
    // A truncated blob, too.
    fs::OpenOptions::new()
        .write(true)
        .open(&again.path)
        .unwrap()
        .set_len(10)
        .unwrap();
    let (third, o) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    check_blob(&third);
}

#[test]
fn garbage_records_are_misses() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ctx"));
    let cache = LayerCache::open(dir.path().join("cache")).unwrap();
    cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    for e in fs::read_dir(dir.path().join("cache/layers")).unwrap() {
        fs::write(e.unwrap().path(), "{not json").unwrap();
    }
    let (blob, o) = cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap();
    assert_eq!(o, CacheOutcome::Built);
    check_blob(&blob);
}

#[test]
fn concurrent_builders_share_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = std::sync::Arc::new(context(&dir.path().join("ctx")));
    let cache_dir = dir.path().join("cache");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let ctx = ctx.clone();
            let cache_dir = cache_dir.clone();
            std::thread::spawn(move || {
                // Each builder opens the directory on its own, as separate processes do.
                let cache = LayerCache::open(&cache_dir).unwrap();
                cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap().0
            })
        })
        .collect();
    let blobs: Vec<LayerBlob> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for b in &blobs {
        assert_eq!(b.digest, blobs[0].digest);
        check_blob(b);
    }
    let leftovers: Vec<_> = fs::read_dir(cache_dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let cache = LayerCache::open(&cache_dir).unwrap();
    assert_eq!(
        cache.copy_layer(&ctx, &spec(), &opts(6)).unwrap().1,
        CacheOutcome::Hit
    );
}
