//! Input from strangers. The fuzz targets' checks (`fuzz/src/lib.rs`, included here so they
//! run on the stable toolchain as plain tests) over their whole seed corpora
//! (`fuzz/corpus/<target>/`: BuildKit's parser corpus, our malformed Dockerfiles,
//! .dockerignore patterns, image references, hostile tars); and end to end through the binary:
//! malformed Dockerfiles exit 1 naming the line, hostile archives in ADD are refused naming
//! the entry with nothing written anywhere, device nodes and FIFOs are kept as Docker keeps them.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz_checks;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr};
use crate::common::{repo_root, shared_dir};

/// The seed corpus of a fuzz target: `fuzz/corpus/<target>/`, plus, for the Dockerfile target,
/// BuildKit's parser corpus read from `../shared` (never copied into the repository).
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = repo_root().join("fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    if target == "dockerfile" {
        let buildkit = shared_dir().join("testdata/buildkit-parser");
        for sub in ["testfiles", "testfiles-negative"] {
            let cases = buildkit.join(sub);
            for case in std::fs::read_dir(&cases)
                .unwrap_or_else(|e| panic!("read {}: {e}", cases.display()))
            {
                let f = case.unwrap().path().join("Dockerfile");
                if f.is_file() {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "empty corpus {}", dir.display());
    files
}

/// Runs `check` on every corpus file of `target`; reports every failing input at once.
fn run_corpus(target: &str, check: fn(&[u8])) {
    let mut failures = Vec::new();
    for f in corpus(target) {
        let data = std::fs::read(&f).unwrap();
        if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{}: {msg}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fuzz_corpus_dockerfile() {
    run_corpus("dockerfile", fuzz_checks::dockerfile);
}

#[test]
fn fuzz_corpus_dockerignore() {
    run_corpus("dockerignore", fuzz_checks::dockerignore);
}

#[test]
fn fuzz_corpus_reference() {
    run_corpus("reference", fuzz_checks::reference);
}

#[test]
fn fuzz_corpus_add_archive() {
    run_corpus("add_archive", fuzz_checks::add_archive);
}

/// `ocipush ctx/Dockerfile oci:<sandbox>/out:v1` with `files` in the context.
fn build(sb: &Sandbox, dockerfile: &[u8], files: &[(&str, &[u8])]) -> Output {
    let ctx = sb.path().join("ctx");
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir(&ctx).unwrap();
    for (name, data) in files {
        std::fs::write(ctx.join(name), data).unwrap();
    }
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = sb.path().join("out");
    sb.ocipush([
        ctx.join("Dockerfile").into_os_string(),
        format!("oci:{}:v1", out.display()).into(),
    ])
}

#[test]
fn malformed_dockerfiles_exit_1_naming_the_line() {
    let sb = Sandbox::new();
    let cases: &[(&str, usize)] = &[
        ("malformed-missing-from", 1),
        ("malformed-unknown-instruction", 2),
        ("malformed-empty-args", 2),
        ("malformed-bad-expose", 2),
        ("malformed-bad-chmod", 2),
        ("malformed-bad-escape", 1),
        ("malformed-unterminated-heredoc", 2),
        ("malformed-var-error", 3),
        ("malformed-bad-subst", 2),
        ("malformed-continuation-at-eof", 2),
        ("malformed-nul-bytes", 1),
        ("malformed-only-comments", 2),
        ("malformed-healthcheck-bad", 2),
    ];
    let dir = repo_root().join("fuzz/corpus/dockerfile");
    let mut failures = Vec::new();
    for (name, line) in cases {
        let text = std::fs::read(dir.join(name)).unwrap();
        let out = build(&sb, &text, &[]);
        if out.status.code() != Some(1) {
            failures.push(format!("{name}: exit {:?}: {}", out.status, stderr(&out)));
            continue;
        }
        let err = assert_failed(&out, 1);
        if !err.contains(&format!("Dockerfile:{line}")) {
            failures.push(format!("{name}: does not name line {line}: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn hostile_archives_are_refused_naming_the_entry_and_nothing_is_written() {
    let sb = Sandbox::new();
    let canary = sb.path().join("canary");
    let dir = repo_root().join("fuzz/corpus/add_archive");
    let cases: &[(&str, &str)] = &[
        ("dotdot.tar", "a/../../evil"),
        ("dotdot.tar.gz", "a/../../evil"),
        ("symlink-out.tar", "l"),
        ("through-symlink.tar", "l/passwd"),
        ("through-relative-symlink.tar", "sub/l"),
        ("hardlink-out.tar", "h"),
        ("hardlink-up.tar", "h"),
        ("hardlink-later.tar", "h"),
    ];
    let mut failures = Vec::new();
    for (file, entry) in cases {
        let data = std::fs::read(dir.join(file)).unwrap();
        let df = b"FROM scratch\nADD evil.tar /d/\n";
        let out = build(&sb, df, &[("evil.tar", &data)]);
        if out.status.code() != Some(1) {
            failures.push(format!("{file}: exit {:?}: {}", out.status, stderr(&out)));
            continue;
        }
        let err = assert_failed(&out, 1);
        if !err.contains(&format!("'{entry}")) || !err.contains("Dockerfile:2") {
            failures.push(format!(
                "{file}: does not name entry '{entry}' and line 2: {err}"
            ));
        }
        if sb.path().join("out/index.json").exists() {
            failures.push(format!("{file}: an image layout was written"));
        }
    }
    // An archive whose entries name an absolute path outside: sanitised into the destination
    // (as Docker does), never written on the host.
    let abs = tar_with(&[(&format!("{}/evil", canary.display()), b"x")]);
    let out = build(
        &sb,
        b"FROM scratch\nADD abs.tar /d/\n",
        &[("abs.tar", &abs)],
    );
    assert_pushed(&out, &format!("oci:{}", sb.path().join("out").display()));
    let paths = layer_paths(&sb.path().join("out"));
    let want = format!("d{}/evil", canary.display());
    assert!(paths.contains(&want), "{paths:?}");
    assert!(!canary.exists(), "ocipush wrote outside its directories");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn device_nodes_and_fifos_in_an_archive_are_kept_as_docker_keeps_them() {
    let sb = Sandbox::new();
    let data = std::fs::read(repo_root().join("fuzz/corpus/add_archive/devices.tar")).unwrap();
    let out = build(
        &sb,
        b"FROM scratch\nADD dev.tar /dev/\n",
        &[("dev.tar", &data)],
    );
    assert_pushed(&out, &format!("oci:{}", sb.path().join("out").display()));
    let entries = layer_entries(&sb.path().join("out"));
    let kind = |p: &str| {
        entries
            .iter()
            .find(|(path, _, _)| path == p)
            .map(|(_, k, dev)| (*k, *dev))
    };
    assert_eq!(kind("dev/null"), Some((b'3', (1, 3))), "{entries:?}");
    assert_eq!(kind("dev/sda"), Some((b'4', (8, 0))), "{entries:?}");
    assert_eq!(kind("dev/fifo").map(|k| k.0), Some(b'6'), "{entries:?}");
}

/// A plain tar with one regular file per `(name, data)` (names written as given).
fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// `(path, type flag, (major, minor))` of every entry of the one layer in the layout at `dir`.
fn layer_entries(dir: &Path) -> Vec<(String, u8, (u32, u32))> {
    let read_json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
    };
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let index = read_json(dir.join("index.json"));
    let manifest = read_json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let layer = blob(manifest["layers"][0]["digest"].as_str().unwrap());
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(layer).unwrap());
    let mut ar = tar::Archive::new(gz);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let dev = (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        );
        out.push((
            String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            h.entry_type().as_byte(),
            dev,
        ));
        let _ = std::io::copy(&mut e.by_ref().take(u64::MAX), &mut std::io::sink());
    }
    out
}

fn layer_paths(dir: &Path) -> Vec<String> {
    layer_entries(dir).into_iter().map(|(p, _, _)| p).collect()
}

#[test]
fn an_archive_declaring_a_huge_long_name_is_refused_in_bounded_memory() {
    // A GNU long-name header declaring 64 MiB (zeros compress to almost nothing): the tar
    // reader would buffer it whole; ocipush refuses it past 1 MiB.
    use std::io::Write;
    let size: usize = 64 << 20;
    let mut h = [0u8; 512];
    h[..13].copy_from_slice(b"././@LongLink");
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'L';
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&h).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(size >> 20) {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = gz.finish().unwrap();
    let sb = Sandbox::new();
    let out = build(
        &sb,
        b"FROM scratch\nADD bomb.tgz /d/\n",
        &[("bomb.tgz", &bomb)],
    );
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("more than the 1048576-byte limit"), "{err}");
}

#[test]
fn an_oversized_dockerfile_is_refused_before_it_is_read() {
    let sb = Sandbox::new();
    // 5 MiB of comments: larger than any real Dockerfile, past the 4 MiB limit.
    let mut text = b"FROM scratch\n".to_vec();
    while text.len() <= 5 * 1024 * 1024 {
        text.extend_from_slice(
            b"# padding padding padding padding padding padding padding padding\n",
        );
    }
    let out = build(&sb, &text, &[]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("more than the 4194304 bytes"), "{err}");
}
