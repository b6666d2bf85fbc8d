//! Output options: `--format oci|docker`, extra `-t/--tag`s, `--platform`.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::common::fixtures::{alpine_base_registry, alpine_dockerfile, copy_alpine_tarball};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, describe};
use crate::common::registry::RegistryServer;
use crate::common::testdata;
use crate::common::tools::{
    skopeo_inspect, skopeo_inspect_config, skopeo_inspect_raw, skopeo_inspect_raw_bytes,
};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Pushes testdata/hello to a fresh registry with `extra` options; returns
/// (registry, printed digest, raw manifest JSON).
fn push_hello(extra: &[&str]) -> (RegistryServer, String, serde_json::Value, Vec<u8>) {
    let sb = Sandbox::new();
    let a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let conf = sb.registries_conf();
    let reference = testdata("hello/Dockerfile");
    let dest = format!("{}/fmt:v1", b.addr());
    let mut args: Vec<&std::ffi::OsStr> = vec!["--registries-conf".as_ref(), conf.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.push(reference.as_os_str());
    args.push(dest.as_ref());
    let out = sb.ocipush(&args);
    let digest = assert_pushed(&out, &format!("{}/fmt", b.addr()));
    let raw_ref = format!("docker://{}/fmt@{digest}", b.addr());
    let raw = skopeo_inspect_raw(&raw_ref, false, None);
    let bytes = skopeo_inspect_raw_bytes(&raw_ref, false, None);
    drop(a);
    (b, digest, raw, bytes)
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn default_format_is_oci_with_explicit_media_type() {
    let (_b, digest, raw, bytes) = push_hello(&[]);
    assert_eq!(
        sha256(&bytes),
        digest,
        "printed digest = sha256 of the manifest bytes"
    );
    assert_eq!(raw["schemaVersion"], 2);
    assert_eq!(
        raw["mediaType"], OCI_MANIFEST,
        "explicit top-level mediaType: {raw:#}"
    );
    assert_eq!(raw["config"]["mediaType"], OCI_CONFIG, "{raw:#}");
    for l in raw["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], OCI_LAYER_GZIP, "{raw:#}");
    }
}

#[test]
fn format_oci_explicit_equals_default() {
    let (_b1, d1, _, _) = push_hello(&[]);
    let (_b2, d2, raw, _) = push_hello(&["--format", "oci"]);
    assert_eq!(d1, d2);
    assert_eq!(raw["mediaType"], OCI_MANIFEST);
}

#[test]
fn format_docker_pushes_a_docker_v2_schema2_manifest() {
    let (b, digest, raw, bytes) = push_hello(&["--format", "docker"]);
    assert_eq!(sha256(&bytes), digest);
    assert_eq!(raw["schemaVersion"], 2);
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST, "{raw:#}");
    assert_eq!(raw["config"]["mediaType"], DOCKER_CONFIG, "{raw:#}");
    for l in raw["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"], DOCKER_LAYER,
            "base layers are converted too: {raw:#}"
        );
    }
    // skopeo reads it as a normal image.
    let config = skopeo_inspect_config(&format!("docker://{}/fmt:v1", b.addr()), false, None);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["sh", "-c", "echo hello"])
    );
}

#[test]
fn extra_tags_point_at_the_same_digest() {
    let (b, digest, _, _) = push_hello(&["-t", "v2", "--tag", "latest"]);
    for tag in ["v1", "v2", "latest"] {
        let s = skopeo_inspect(&format!("docker://{}/fmt:{tag}", b.addr()), false, None);
        assert_eq!(s["Digest"], digest.as_str(), "tag {tag}: {s:#}");
    }
}

#[test]
fn platform_arm64_from_scratch() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let name = crate::common::alpine_tarball_name("aarch64");
    std::fs::copy(crate::common::alpine_tarball("aarch64"), ctx.join(&name)).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD {name} /\nCMD [\"/bin/sh\"]\n"),
    )
    .unwrap();
    let b = RegistryServer::start();
    let dest = format!("{}/alpine-arm:v1", b.addr());
    let out = sb.ocipush([
        "--platform".as_ref(),
        "linux/arm64".as_ref(),
        ctx.join("Dockerfile").as_os_str(),
        dest.as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/alpine-arm", b.addr()));
    let config = skopeo_inspect_config(&format!("docker://{dest}"), false, None);
    assert_eq!(config["architecture"], "arm64", "{config:#}");
    assert_eq!(config["os"], "linux");

    // And the amd64 default really is amd64 (the two differ).
    let ctx64 = sb.path().join("ctx64");
    std::fs::create_dir(&ctx64).unwrap();
    copy_alpine_tarball(&ctx64);
    std::fs::write(ctx64.join("Dockerfile"), alpine_dockerfile()).unwrap();
    let dest64 = format!("{}/alpine-amd:v1", b.addr());
    let out = sb.ocipush([ctx64.join("Dockerfile").as_os_str(), dest64.as_ref()]);
    assert_pushed(&out, &format!("{}/alpine-amd", b.addr()));
    let config = skopeo_inspect_config(&format!("docker://{dest64}"), false, None);
    assert_eq!(config["architecture"], "amd64", "{config:#}");
}

/// `--metadata-file`: buildx's keys, naming what the registry holds.
#[test]
fn metadata_file_names_the_pushed_manifest_its_config_and_every_tag() {
    let dir = crate::common::tempdir("metadata");
    let file = dir.path().join("meta.json");
    let file_arg = file.to_string_lossy().into_owned();
    let (b, digest, raw, bytes) = push_hello(&["--metadata-file", &file_arg, "-t", "extra"]);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], digest.as_str(), "{meta:#}");
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest.as_str());
    assert_eq!(meta["containerimage.descriptor"]["mediaType"], OCI_MANIFEST);
    assert_eq!(meta["containerimage.descriptor"]["size"], bytes.len());
    assert_eq!(
        meta["containerimage.config.digest"],
        raw["config"]["digest"]
    );
    assert_eq!(
        meta["image.name"],
        format!("{0}/fmt:v1,{0}/fmt:extra", b.addr()).as_str()
    );
    let platforms = meta["ocipush.platforms"].as_object().unwrap();
    assert_eq!(platforms.len(), 1, "{meta:#}");
    let (_, one) = platforms.iter().next().unwrap();
    assert_eq!(one["digest"], digest.as_str());
    // Nothing but the file is left next to it (written to a temporary name, then renamed).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn completions_are_printed_for_each_shell() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.ocipush(["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("metadata-file"), "{shell}: {text}");
    }
    let out = sb.ocipush(["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn the_manual_page_is_roff_naming_every_subcommand_and_option() {
    let out = Sandbox::new().ocipush(["man"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(".ie \\n(.g .ds Aq"),
        "roff preamble: {text}"
    );
    for want in [
        ".TH ocipush 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH SUBCOMMANDS",
        "iam\\-policy",
        "metadata\\-file",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

/// `--progress rawjson`: every stderr line is one versioned JSON event, valid against the
/// published schema (`src/cli/rawjson.schema.json`, checked by Python's `jsonschema`), in the
/// documented order, with every uploaded byte accounted for — the layer uploaded while it was
/// built included; stdout is unchanged.
#[test]
fn rawjson_progress_is_one_versioned_event_per_line() {
    let sb = Sandbox::new();
    let _a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("big.bin"),
        crate::common::fixtures::noise(3 << 20, 11),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY big.bin /big.bin\nCMD [\"sh\", \"-c\", \"echo hello\"]\n",
    )
    .unwrap();
    let dest = format!("{}/raw:v1", b.addr());
    let out = sb.ocipush([
        "--progress".as_ref(),
        "rawjson".as_ref(),
        "--no-cache".as_ref(),
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        dest.as_ref(),
    ]);
    let digest = assert_pushed(&out, &format!("{}/raw", b.addr()));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    validate_against_schema(&stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let at = |name: &str| names.iter().position(|n| *n == name);
    assert_eq!(names.first(), Some(&"base_resolved"), "{names:?}");
    assert!(at("layer_started") < at("layer_built"), "{names:?}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "manifest_put", "{names:?}");
    assert_eq!(last["data"]["digest"], digest.as_str());
    assert_eq!(last["data"]["reference"], "v1");
    for e in &events {
        if ["base_resolved", "layer_started", "layer_built"].contains(&e["event"].as_str().unwrap())
        {
            assert_eq!(e["data"]["platform"], "linux/amd64", "{e}");
        }
    }
    // Every byte: the streamed layer's last `sent` is its size; each other upload's last
    // progress is its size, and it is announced before and finished after.
    let data = |name: &'static str| {
        events
            .iter()
            .filter(move |e| e["event"] == name)
            .map(|e| &e["data"])
    };
    let streamed: Vec<_> = data("blob_streamed").collect();
    assert_eq!(
        streamed.len(),
        1,
        "the COPY layer was uploaded while built: {names:?}"
    );
    let layer = &streamed[0]["layer"];
    let sent = data("layer_streaming")
        .filter(|d| &d["layer"] == layer)
        .map(|d| d["sent"].as_u64().unwrap())
        .max();
    assert_eq!(sent, streamed[0]["size"].as_u64(), "{names:?}");
    for up in data("blob_uploading") {
        let d = &up["digest"];
        let sent = data("blob_progress")
            .filter(|p| &p["digest"] == d)
            .map(|p| p["sent"].as_u64().unwrap())
            .max();
        assert_eq!(sent, up["size"].as_u64(), "all of {d} reported");
        assert!(
            data("blob_uploaded").any(|u| &u["digest"] == d),
            "{d} finished"
        );
    }
}

/// A failed run in `rawjson` still prints only JSON lines: the failure is the last one, an
/// `error` event with the plain modes' message and the exit code.
#[test]
fn a_failure_in_rawjson_is_its_last_line_an_error_event() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY missing.txt /\n").unwrap();
    let dockerfile = ctx.join("Dockerfile");
    let run = |progress: &str| {
        sb.ocipush([
            "--progress".as_ref(),
            progress.as_ref(),
            dockerfile.as_os_str(),
            "127.0.0.1:1/never:v1".as_ref(),
        ])
    };
    let plain = assert_failed(&run("plain"), 1);
    let out = run("rawjson");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = rawjson_events(&stderr);
    let last = events.last().expect("an error line");
    assert_eq!(last["event"], "error", "{stderr}");
    assert_eq!(last["data"]["exit_code"], 1, "{stderr}");
    let message = last["data"]["message"].as_str().unwrap();
    assert!(message.contains("missing.txt"), "{message}");
    assert!(
        plain.contains(&format!("error: {message}")),
        "the same message as plain: {plain}"
    );
}

/// The events of a `--progress rawjson` stderr, every line validated against the schema first.
pub(crate) fn rawjson_events(stderr: &str) -> Vec<serde_json::Value> {
    validate_against_schema(stderr);
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The `data` of each `fallback` event of `kind` among `events`.
pub(crate) fn fallbacks<'a>(
    events: &'a [serde_json::Value],
    kind: &str,
) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|e| e["event"] == "fallback" && e["data"]["kind"] == kind)
        .map(|e| &e["data"])
        .collect()
}

/// Validate each line of `lines` against the published rawjson schema with Python's
/// `jsonschema` (Draft 2020-12), a validator we did not write.
pub(crate) fn validate_against_schema(lines: &str) {
    use std::io::Write as _;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli/rawjson.schema.json");
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             v = jsonschema.Draft202012Validator(json.load(open(sys.argv[1])))\n\
             for n, line in enumerate(sys.stdin, 1):\n\
             \x20   v.validate(json.loads(line))\n\
             print(n)",
        ])
        .arg(&schema)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "a rawjson line does not match the schema:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(n, lines.lines().count(), "every line validated");
}

/// `--progress auto` on a terminal (a pty from util-linux `script`) draws indicatif bars —
/// cursor-control sequences and a `[====>   ]` upload bar — while `--progress plain` on the same
/// terminal writes plain lines only; both end with the pushed name.
#[test]
fn progress_bars_are_drawn_on_a_terminal_and_plain_lines_otherwise() {
    let script = crate::common::require_tool("script", "bsdutils");
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("big.bin"),
        crate::common::fixtures::noise(8 << 20, 5),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY big.bin /big.bin\n",
    )
    .unwrap();
    let under_pty = |mode: &str| {
        let mut inner = sb.command();
        inner.args([
            "--no-cache",
            "--progress",
            mode,
            ctx.join("Dockerfile").to_str().unwrap(),
            &format!("oci:{}:v1", sb.path().join(mode).display()),
        ]);
        let quote =
            |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', "'\\''"));
        let line: Vec<String> = std::iter::once(quote(inner.get_program()))
            .chain(inner.get_args().map(quote))
            .collect();
        let mut cmd = std::process::Command::new(&script);
        cmd.env_clear()
            .env("TERM", "xterm")
            .args(["-qec", &line.join(" "), "/dev/null"]);
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{mode}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = under_pty("auto");
    assert!(
        tty.contains("\u{1b}[2K") && tty.contains("] "),
        "bars on a terminal: {tty:?}"
    );
    assert!(tty.contains(&format!("oci:{}@sha256:", sb.path().join("auto").display())));
    let plain = under_pty("plain");
    assert!(
        !plain.contains('\u{1b}'),
        "no control sequences in plain mode: {plain:?}"
    );
    assert!(
        plain.contains("uploading ") && plain.contains("pushed manifest"),
        "{plain:?}"
    );
}

/// `--annotation KEY=VALUE` (and buildx's `manifest:` level) lands in the pushed manifest, as
/// skopeo reads it back; another level is refused as a usage error rather than misread.
#[test]
fn annotations_land_in_the_manifest_and_other_levels_are_refused() {
    let (_b, _digest, raw, _bytes) = push_hello(&[
        "--annotation",
        "org.opencontainers.image.source=https://example.test/hello",
        "--annotation",
        "manifest:org.opencontainers.image.revision=abc123",
    ]);
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.source"], "https://example.test/hello",
        "{raw:#}"
    );
    assert_eq!(
        raw["annotations"]["org.opencontainers.image.revision"], "abc123",
        "{raw:#}"
    );
    let out = Sandbox::new().ocipush([
        "--annotation",
        "index:org.opencontainers.image.source=x",
        testdata("hello/Dockerfile").to_str().unwrap(),
        "127.0.0.1:9/x:v1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("manifest annotations only"));
}
