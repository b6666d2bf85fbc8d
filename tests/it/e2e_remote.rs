//! `ADD <http URL>` against a local HTTP server started by each test
//! ([`crate::common::http_server`]), and named build contexts (`--build-context`): an OCI
//! layout made by umoci as `FROM`, a directory as `COPY --from`, a `docker-image://` remap, a
//! stage replaced by a context. Images are pushed to a real registry and read back with
//! skopeo and umoci.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use ocipush::digest::Digest;

use crate::common::fixtures::{alpine_oci_layout, copy_and_unpack, seed_alpine, write_files};
use crate::common::http_server::{HttpServer, Reply};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr};
use crate::common::registry::RegistryServer;
use crate::common::tempdir;
use crate::common::tls_server::TlsServer;
use crate::common::tools::skopeo_inspect_config;

/// 2023-11-14T22:13:20Z
const EPOCH: &str = "1700000000";

/// A gzip tarball holding `inner/in-archive.txt`, made by `tar`.
fn tarball(dir: &Path) -> Vec<u8> {
    write_files(dir, &[("tree/inner/in-archive.txt", "from the archive\n")]);
    let out = dir.join("archive.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(dir.join("tree"))
        .arg("inner")
        .status()
        .expect("run tar");
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn build(sb: &Sandbox, dockerfile: &str, dest: &str, extra: &[&str]) -> std::process::Output {
    let ctx = sb.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut args: Vec<String> = vec![
        "--platform".into(),
        "linux/amd64".into(),
        "--cache-dir".into(),
        sb.path().join("cache").display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(ctx.join("Dockerfile").display().to_string());
    args.push(dest.to_string());
    sb.ocipush_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)])
}

#[test]
fn add_url_places_files_as_buildkit_does() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let work = tempdir("remote-files");
    let hello = b"hello over http\n".to_vec();
    let srv = HttpServer::start(vec![
        ("/files/hello.txt", Reply::File(hello.clone())),
        ("/redir", Reply::Redirect("/files/hello.txt".into())),
        (
            "/flaky/app",
            Reply::FailFirst {
                failures: 1,
                status: 503,
                then: Box::new(Reply::File(b"#!/bin/sh\necho app\n".to_vec())),
            },
        ),
        ("/archive.tar.gz", Reply::File(tarball(work.path()))),
        ("/", Reply::File(b"index\n".to_vec())),
    ]);
    let sum = Digest::of(&hello);
    let dockerfile = format!(
        "FROM scratch\n\
         ADD {hello} /downloads/\n\
         ADD {redir} /renamed.txt\n\
         ADD --chmod=755 --chown=1000:1001 {flaky} /bin/app\n\
         ADD --checksum={sum} {hello} /pinned/\n\
         ADD {archive} /kept/\n\
         ADD --unpack=true {archive} /unpacked/\n\
         ADD {root} /unnamed/\n",
        hello = srv.url("/files/hello.txt"),
        redir = srv.url("/redir"),
        flaky = srv.url("/flaky/app"),
        archive = srv.url("/archive.tar.gz"),
        root = srv.url("/"),
    );
    let dest = format!("{}/remote:v1", reg.addr());
    let out = build(&sb, &dockerfile, &dest, &[]);
    let digest = assert_pushed(&out, &format!("{}/remote", reg.addr()));
    assert!(
        stderr(&out).contains("downloaded http://127.0.0.1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(srv.hits("/flaky/app"), 2, "the 503 was retried once");

    let img = copy_and_unpack(&format!("docker://{dest}"), None);
    let root = &img.rootfs;
    let meta = |rel: &str| std::fs::symlink_metadata(root.join(rel)).unwrap();
    // Named after the URL, inside the directory, 0600, root-owned, mtime the epoch (not the
    // server's Last-Modified).
    assert_eq!(
        std::fs::read(root.join("downloads/hello.txt")).unwrap(),
        hello
    );
    let m = meta("downloads/hello.txt");
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!(m.mtime(), EPOCH.parse::<i64>().unwrap());
    // A destination without a trailing slash is the file itself (after a redirect too).
    assert_eq!(std::fs::read(root.join("renamed.txt")).unwrap(), hello);
    let m = meta("bin/app");
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(std::fs::read(root.join("pinned/hello.txt")).unwrap(), hello);
    // An archive is kept as it is, unless --unpack=true.
    assert!(meta("kept/archive.tar.gz").is_file());
    assert!(!root.join("kept/inner").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("unpacked/inner/in-archive.txt")).unwrap(),
        "from the archive\n"
    );
    assert!(!root.join("unpacked/archive.tar.gz").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("unnamed/__unnamed__")).unwrap(),
        "index\n"
    );
    let history = img.config["history"].to_string();
    assert!(
        history.contains(&format!("ADD {} /downloads/", srv.url("/files/hello.txt"))),
        "{history}"
    );

    // Rebuilt (Last-Modified differs on every answer): the same image, and the pinned
    // download comes from the cache, not the server.
    let before = srv.hits("/files/hello.txt");
    let out = build(&sb, &dockerfile, &dest, &[]);
    assert_eq!(
        assert_pushed(&out, &format!("{}/remote", reg.addr())),
        digest
    );
    assert_eq!(
        srv.hits("/files/hello.txt"),
        before + 2,
        "only the two unpinned ADDs of hello.txt download it again"
    );
    assert!(
        stderr(&out).contains("reusing download of"),
        "{}",
        stderr(&out)
    );

    // The pinned download and the cached layers, changed on disk (same size, other bytes):
    // each is noticed, fetched or built again and said as a fallback; the image is the same.
    let cache = sb.path().join("cache");
    let pinned = cache.join("downloads/sha256").join(sum.hex());
    corrupt(&pinned);
    let layers = cached_layer_blobs(&cache);
    assert!(
        !layers.is_empty(),
        "no cached layer under {}",
        cache.display()
    );
    for l in &layers {
        corrupt(l);
    }
    let before = srv.hits("/files/hello.txt");
    let out = build(&sb, &dockerfile, &dest, &["--progress", "rawjson"]);
    assert_eq!(
        assert_pushed(&out, &format!("{}/remote", reg.addr())),
        digest
    );
    assert_eq!(
        srv.hits("/files/hello.txt"),
        before + 3,
        "the pinned one too"
    );
    let events = crate::e2e_options::rawjson_events(&stderr(&out));
    let refetched = crate::e2e_options::fallbacks(&events, "download_refetched");
    assert_eq!(refetched.len(), 1, "{}", stderr(&out));
    assert_eq!(refetched[0]["step"], format!("download {sum}"));
    let rebuilt = crate::e2e_options::fallbacks(&events, "cache_entry_rebuilt");
    assert_eq!(rebuilt.len(), layers.len(), "{}", stderr(&out));
    for e in &rebuilt {
        let step = e["step"].as_str().unwrap();
        let hex = step.strip_prefix("layer cache sha256:").expect(step);
        assert!(layers.iter().any(|l| l.ends_with(hex)), "{step}");
    }
    assert_eq!(Digest::of(&std::fs::read(&pinned).unwrap()), sum);
}

/// The layer blobs a build cached under `cache` (`…/blobs/sha256/<hex>`).
fn cached_layer_blobs(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.parent().is_some_and(|d| d.ends_with("blobs/sha256"))
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                found.push(p);
            }
        }
    }
    found
}

/// Flip every byte of `file` (its size kept, its stat changed).
fn corrupt(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    assert!(!bytes.is_empty(), "{}", file.display());
    for b in &mut bytes {
        *b ^= 0xff;
    }
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn add_url_failures_name_the_line_and_the_url() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let srv = HttpServer::start(vec![
        ("/f.txt", Reply::File(b"real content\n".to_vec())),
        ("/down", Reply::Status(503)),
        ("/stall", Reply::Stall { len: 1000, secs: 8 }),
    ]);
    let dest = format!("{}/remote-bad:v1", reg.addr());
    let fails = |dockerfile: String, extra: &[&str]| {
        let out = build(&sb, &dockerfile, &dest, extra);
        assert_failed(&out, 1)
    };

    let err = fails(
        format!(
            "FROM scratch\nADD {} /x\n",
            srv.url("/missing.txt")
                .replace("http://", "http://bob:s3cret-pw@")
        ),
        &[],
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("HTTP 404 Not Found"), "{err}");
    assert!(err.contains("/missing.txt"), "{err}");
    assert!(
        !err.contains("s3cret-pw"),
        "a credential was printed: {err}"
    );
    assert!(
        srv.log().iter().any(|r| r
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "the URL's credentials were sent to its own server"
    );

    let wrong = Digest::of(b"other content");
    let err = fails(
        format!(
            "FROM scratch\nCOPY Dockerfile /d\nADD --checksum={wrong} {} /x\n",
            srv.url("/f.txt")
        ),
        &[],
    );
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains(wrong.as_str()), "{err}");
    assert!(
        err.contains(Digest::of(b"real content\n").as_str()),
        "{err}"
    );

    let err = fails(
        format!("FROM scratch\nADD {} /x\n", srv.url("/down")),
        &["--retries", "1"],
    );
    assert!(err.contains("after 2 attempts"), "{err}");
    assert!(err.contains("503"), "{err}");

    let err = fails(
        format!("FROM scratch\nADD {} /x\n", srv.url("/stall")),
        &["--retries", "0", "--timeout", "2"],
    );
    assert!(err.contains("timed out"), "{err}");

    let err = fails(
        format!("FROM scratch\nCOPY {} /x\n", srv.url("/f.txt")),
        &[],
    );
    assert!(err.contains("source can't be a URL for COPY"), "{err}");
    let err = fails(
        "FROM scratch\nADD https://github.com/moby/buildkit.git /src\n".into(),
        &[],
    );
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("does not clone git"), "{err}");
}

#[test]
fn named_contexts_stand_in_for_images_stages_and_directories() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let alpine = seed_alpine(&reg, "mirror/alpine:3");
    let src = sb.path().join("src-ctx");
    write_files(
        &src,
        &[
            ("hello.txt", "from a named context\n"),
            ("secret.txt", "ignored\n"),
            (".dockerignore", "secret.txt\n"),
        ],
    );
    let layout = alpine_oci_layout();
    let dockerfile = "FROM nothing.invalid/never:1 AS tools\n\
                      COPY never-read /x\n\
                      \n\
                      FROM base\n\
                      COPY --from=src /hello.txt /hello.txt\n\
                      COPY --from=tools /hello.txt /tools-hello.txt\n\
                      COPY --from=Alpine:latest /bin/busybox /remapped-busybox\n\
                      COPY --from=base /etc/alpine-release /from-layout-release\n";
    let dest = format!("{}/contexts:v1", reg.addr());
    let out = build(
        &sb,
        dockerfile,
        &dest,
        &[
            "--build-context",
            &format!("base=oci-layout://{}", layout.display()),
            "--build-context",
            &format!("src={}", src.display()),
            "--build-context",
            &format!("tools={}", src.display()),
            "--build-context",
            &format!("alpine=docker-image://{alpine}"),
            "--build-context",
            "unused=docker-image://never.invalid/x:1",
        ],
    );
    assert_pushed(&out, &format!("{}/contexts", reg.addr()));
    let err = stderr(&out);
    assert!(
        err.contains("build context unused was given but the Dockerfile does not use it"),
        "{err}"
    );
    assert!(!err.contains("build context base was given"), "{err}");

    let img = copy_and_unpack(&format!("docker://{dest}"), None);
    let root = &img.rootfs;
    // FROM the layout: Alpine's files and config.
    assert!(root.join("bin/busybox").is_file());
    assert!(root.join("etc/alpine-release").is_file());
    assert_eq!(img.config["config"]["Cmd"][0], "/bin/sh");
    // COPY --from a directory context, its .dockerignore applied.
    assert_eq!(
        std::fs::read_to_string(root.join("hello.txt")).unwrap(),
        "from a named context\n"
    );
    // A stage named like a context is the context (its FROM is never resolved).
    assert_eq!(
        std::fs::read_to_string(root.join("tools-hello.txt")).unwrap(),
        "from a named context\n"
    );
    // COPY --from an oci-layout context.
    assert_eq!(
        std::fs::read(root.join("from-layout-release")).unwrap(),
        std::fs::read(root.join("etc/alpine-release")).unwrap()
    );
    // docker-image:// remaps an image (no registries.conf entry for docker.io here).
    assert_eq!(
        std::fs::read(root.join("remapped-busybox")).unwrap(),
        std::fs::read(root.join("bin/busybox")).unwrap()
    );

    // The directory's .dockerignore hides secret.txt.
    let out = build(
        &sb,
        "FROM scratch\nCOPY --from=src /secret.txt /s\n",
        &format!("{}/contexts:v2", reg.addr()),
        &["--build-context", &format!("src={}", src.display())],
    );
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("secret.txt"), "{err}");

    // FROM a directory context: an image whose files are the directory's.
    let dest = format!("{}/contexts:dir", reg.addr());
    let out = build(
        &sb,
        "FROM src\nCMD [\"x\"]\n",
        &dest,
        &["--build-context", &format!("src={}", src.display())],
    );
    assert_pushed(&out, &format!("{}/contexts", reg.addr()));
    let config = skopeo_inspect_config(&format!("docker://{dest}"), false, None);
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
    assert_eq!(config["architecture"], "amd64");

    let out = sb.ocipush([
        "--build-context",
        "x=https://example.com/ctx.tar",
        "Dockerfile",
        "oci:o",
    ]);
    let err = assert_failed(&out, 2);
    assert!(err.contains("does not download build contexts"), "{err}");
}

#[test]
fn add_https_trusts_the_ca_given_with_ca_cert() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start();
    let files = sb.path().join("www");
    write_files(&files, &[("tool.txt", "over tls\n")]);
    let work = sb.path().join("tls");
    std::fs::create_dir_all(&work).unwrap();
    let tls = TlsServer::start(&files, &work);
    let dockerfile = format!("FROM scratch\nADD {} /opt/\n", tls.url("tool.txt"));
    let dest = format!("{}/remote-tls:v1", reg.addr());

    // Without the CA: the system roots do not know it.
    let out = build(&sb, &dockerfile, &dest, &["--retries", "0"]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("cannot download https://127.0.0.1"), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");

    let ca = tls.ca_cert.display().to_string();
    let out = build(&sb, &dockerfile, &dest, &["--ca-cert", &ca]);
    assert_pushed(&out, &format!("{}/remote-tls", reg.addr()));
    let img = copy_and_unpack(&format!("docker://{dest}"), None);
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("opt/tool.txt")).unwrap(),
        "over tls\n"
    );
}
