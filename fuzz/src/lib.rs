//! The checks behind ocipush's fuzz targets, shared by `cargo fuzz` (`fuzz_targets/*.rs`,
//! libFuzzer) and by plain `cargo test` (`tests/it/e2e_hostile.rs` includes this file and runs
//! every check over the seed corpora in `fuzz/corpus/<target>/`), so the properties hold on the
//! stable toolchain too.
//!
//! Each check must return normally for every input: a panic is the bug. Beyond "no panic" they
//! assert the property the input is hostile to: a Dockerfile error names its line; a parsed
//! image reference re-parses from its canonical form; an archive ADD extracts leaves nothing
//! outside the destination in the layer.

use std::io::Read;
use std::path::Path;

/// The most input a check looks at (libFuzzer is run with the same `-max_len`).
pub const MAX_INPUT: usize = 64 * 1024;

/// Dockerfile text: `parse` either succeeds (and its dump is produced) or fails with an error
/// that names the Dockerfile line.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(&data[..data.len().min(MAX_INPUT)]) else {
        return;
    };
    match ocipush::dockerfile::parse(text) {
        Ok(df) => {
            let _ = df.dump();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                e.line().is_some() && msg.contains("Dockerfile:"),
                "a Dockerfile error must name its line: {msg}"
            );
        }
    }
}

/// `.dockerignore` text after a first line naming a path to test: parsing never panics, and
/// matching is total.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(&data[..data.len().min(MAX_INPUT)]);
    let (path, patterns) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(ig) = ocipush::layers::DockerIgnore::parse(patterns, Path::new(".dockerignore")) {
        let _ = ig.is_excluded(path);
        let _ = ig.may_include_below(path);
        let _ = ig.is_empty();
    }
}

/// An image reference: parsing never panics; a parsed reference re-parses from its canonical
/// name to the same reference.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(&data[..data.len().min(4096)]) else {
        return;
    };
    if let Ok(r) = ocipush::reference::Reference::parse(text) {
        let canonical = format!("{}/{}", r.registry, r.repository);
        let mut full = canonical.clone();
        if let Some(t) = &r.tag {
            full.push(':');
            full.push_str(t);
        }
        if let Some(d) = &r.digest {
            full.push('@');
            full.push_str(d.as_str());
        }
        let again = ocipush::reference::Reference::parse(&full).unwrap_or_else(|e| {
            panic!("{text:?} parsed, but its canonical form {full:?} does not: {e}")
        });
        assert_eq!(again.registry, r.registry, "{text:?} → {full:?}");
        assert_eq!(again.repository, r.repository, "{text:?} → {full:?}");
        assert_eq!(again.tag, r.tag, "{text:?} → {full:?}");
        let _ = (r.familiar(), r.name(), r.reference_str());
    }
}

/// A file ADD may extract (any bytes; tar, or compressed tar): building the layer either fails
/// with an error or gives a layer in which every entry lies inside the destination `/d/`.
/// Nothing is ever extracted onto the host: the layer is a tar stream written to the spool.
pub fn add_archive(data: &[u8]) {
    use ocipush::layers::{Compression, Context, CopySpec, LayerOptions, Spool, build_copy_layer};
    let data = &data[..data.len().min(MAX_INPUT)];
    let tmp = tempfile::tempdir().expect("temp dir");
    let ctx_dir = tmp.path().join("ctx");
    std::fs::create_dir(&ctx_dir).expect("context dir");
    std::fs::write(ctx_dir.join("input.tar"), data).expect("write input");
    let spool = Spool::new(tmp.path().join("spool")).expect("spool");
    let ctx = Context::open(&ctx_dir).expect("context");
    let spec = CopySpec {
        srcs: vec!["input.tar".into()],
        dest: "/d/".into(),
        extract_archives: true,
        ..Default::default()
    };
    let opts = LayerOptions {
        compression: Compression::None,
        epoch: 0,
        threads: 1,
    };
    let Ok(layer) = build_copy_layer(&ctx, &spec, &spool, &opts) else {
        return;
    };
    let file = std::fs::File::open(&layer.path).expect("the layer exists");
    let mut ar = tar::Archive::new(file);
    for entry in ar.entries().expect("the layer is a tar") {
        let mut entry = entry.expect("the layer's entries read");
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        assert!(
            path == "d/" || path == "d" || path.starts_with("d/"),
            "layer entry {path:?} is outside the destination /d/"
        );
        assert!(
            !path.split('/').any(|c| c == ".."),
            "layer entry {path:?} has a '..' component"
        );
        let _ = std::io::copy(&mut entry.by_ref().take(u64::MAX), &mut std::io::sink());
    }
}
