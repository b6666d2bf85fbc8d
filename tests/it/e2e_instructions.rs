//! Every supported instruction, read back by tools we did not write:
//! `skopeo inspect --config` for the image config and `umoci unpack` (as root,
//! keeping owners and modes) for the files. The Dockerfile and context are
//! `testdata/instructions/` (with a `.dockerignore`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::{Value, json};

use crate::common::fixtures::{alpine_base_registry, copy_and_unpack, copy_tree};
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::registry::RegistryServer;
use crate::common::testdata;
use crate::common::tools::{run_image, skopeo_inspect_config};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// 2023-11-14T22:13:20Z
const EPOCH: u64 = 1_700_000_000;

struct Built {
    config: Value,
    base_config: Value,
    img: crate::common::fixtures::Unpacked,
}

fn build() -> Built {
    let sb = Sandbox::new();
    let a = alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    copy_tree(&testdata("instructions"), &ctx);
    let dest = format!("{}/instr:v1", b.addr());
    // No --context: it defaults to the Dockerfile's directory.
    let out = sb.ocipush_env(
        [
            "--registries-conf".as_ref(),
            sb.registries_conf().as_os_str(),
            "--build-arg".as_ref(),
            "VERSION=1.2.3".as_ref(),
            "--build-arg".as_ref(),
            "GREETING=hey".as_ref(),
            ctx.join("Dockerfile").as_os_str(),
            dest.as_ref(),
        ],
        &[("SOURCE_DATE_EPOCH", &EPOCH.to_string())],
    );
    let digest = assert_pushed(&out, &format!("{}/instr", b.addr()));
    let config = skopeo_inspect_config(&format!("docker://{dest}"), false, None);
    let base_config = skopeo_inspect_config(
        &format!("docker://{}/library/alpine:latest", a.addr()),
        false,
        None,
    );
    let img = copy_and_unpack(&format!("docker://{}/instr@{digest}", b.addr()), None);
    Built {
        config,
        base_config,
        img,
    }
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

#[test]
fn instructions_are_reflected_in_config_files_and_behaviour() {
    let Built {
        config,
        base_config,
        img,
    } = build();
    let c = &config["config"];
    let ctx = format!("{config:#}");

    // ENV (both forms), ARG via --build-arg, default PATH inherited.
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in [
        DEFAULT_PATH,
        "APP_HOME=/opt/app",
        "LANG=C.UTF-8",
        "LEGACY=legacy value with spaces",
        "GREETING=hey",
    ] {
        assert!(env.contains(&want), "Env lacks {want:?}: {env:?}");
    }
    assert!(
        !env.iter().any(|e| e.starts_with("VERSION=")),
        "ARG must not persist into Env: {env:?}"
    );

    assert_eq!(
        c["Labels"],
        json!({"org.example.name": "instr test", "org.example.version": "1.2.3"}),
        "{ctx}"
    );
    assert_eq!(
        config["author"], "Jane Doe <jane@example.com>",
        "MAINTAINER: {ctx}"
    );
    assert_eq!(keys(&c["ExposedPorts"]), ["53/udp", "8080/tcp"], "{ctx}");
    assert_eq!(keys(&c["Volumes"]), ["/cache", "/data"], "{ctx}");
    assert_eq!(c["WorkingDir"], "/opt/app", "{ctx}");
    assert_eq!(c["User"], "1000:1000", "{ctx}");
    assert_eq!(c["StopSignal"], "SIGTERM", "{ctx}");
    assert_eq!(c["Entrypoint"], json!(["/usr/local/bin/run.sh"]), "{ctx}");
    // Exec form: no variable expansion.
    assert_eq!(c["Cmd"], json!(["--greet", "${GREETING}"]), "{ctx}");
    assert_eq!(c["Shell"], json!(["/bin/sh", "-ec"]), "{ctx}");
    assert_eq!(c["OnBuild"], json!(["COPY . /onbuild"]), "{ctx}");
    let hc = &c["Healthcheck"];
    assert_eq!(hc["Test"], json!(["CMD", "/bin/true"]), "{ctx}");
    assert_eq!(hc["Interval"], 30_000_000_000u64, "{ctx}");
    assert_eq!(hc["Timeout"], 5_000_000_000u64, "{ctx}");
    assert_eq!(hc["Retries"], 3, "{ctx}");

    // SOURCE_DATE_EPOCH sets `created`.
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "{ctx}");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");

    // History: one entry per layer-producing step is non-empty, and the
    // non-empty entries match rootfs.diff_ids one to one.
    let history = config["history"].as_array().expect("history");
    let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
    let non_empty = history
        .iter()
        .filter(|h| h["empty_layer"] != json!(true))
        .count();
    assert_eq!(non_empty, diff_ids.len(), "history vs diff_ids: {ctx}");
    let base_layers = base_config["rootfs"]["diff_ids"].as_array().unwrap().len();
    let base_history = base_config["history"].as_array().map_or(0, Vec::len);
    assert_eq!(
        &diff_ids[..base_layers],
        base_config["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .as_slice(),
        "base layers come first"
    );
    assert!(
        diff_ids.len() >= base_layers + 6,
        "six COPY instructions add at least six layers: {ctx}"
    );
    assert!(
        history.len() > base_history + 6,
        "metadata instructions are recorded as empty layers: {ctx}"
    );
    for h in &history[base_history..] {
        assert_eq!(h["created"], "2023-11-14T22:13:20Z", "history entry {h}");
    }

    // Files.
    let root = &img.rootfs;
    let owned = meta(root, "opt/app/owned.txt");
    assert_eq!((owned.uid(), owned.gid()), (1000, 1000), "--chown");
    assert_eq!(read(root, "opt/app/owned.txt"), "owned by 1000\n");
    assert_eq!(owned.mtime(), EPOCH as i64, "mtime = SOURCE_DATE_EPOCH");
    let run_sh = meta(root, "usr/local/bin/run.sh");
    assert_eq!(run_sh.permissions().mode() & 0o7777, 0o755, "--chmod");
    assert_eq!(
        (run_sh.uid(), run_sh.gid()),
        (0, 0),
        "default owner is root"
    );
    assert_eq!(
        meta(root, "etc/app/a.conf").permissions().mode() & 0o7777,
        0o644
    );
    assert_eq!(read(root, "etc/app/a.conf"), "a=1\n", "wildcard");
    assert_eq!(read(root, "etc/app/b.conf"), "b=2\n", "wildcard");
    assert_eq!(
        read(root, "opt/app/dir/x.txt"),
        "x\n",
        "directory source: contents"
    );
    assert_eq!(read(root, "opt/app/dir/sub/y.txt"), "y\n");
    assert!(
        !root.join("opt/app/dir/dir").exists(),
        "a directory source copies its contents"
    );
    assert_eq!(
        read(root, "opt/app/spaced name.txt"),
        "spaces\n",
        "JSON form with spaces"
    );
    // .dockerignore
    assert_eq!(
        read(root, "ctx/keep.log"),
        "keep\n",
        "!keep.log re-includes it"
    );
    assert_eq!(read(root, "ctx/run.sh").lines().next(), Some("#!/bin/sh"));
    for ignored in [
        "ctx/debug.log",
        "ctx/dir/trace.log",
        "ctx/secret",
        "opt/app/dir/trace.log",
    ] {
        assert!(!root.join(ignored).exists(), "{ignored} should be ignored");
    }
    assert!(root.join("ctx/dir/x.txt").is_file());
    // WORKDIR created the directory; the base is intact.
    assert!(root.join("opt/app").is_dir());
    assert_eq!(read(root, "etc/alpine-release"), "3.20.3\n");

    // Behaviour: entrypoint + cmd, Env and WorkingDir as a runtime would.
    let run = run_image(root, &img.config);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        run.stdout, "args: --greet ${GREETING}\ngreeting=hey\npwd=/opt/app\n",
        "{run:?}"
    );
}

fn meta(root: &Path, rel: &str) -> std::fs::Metadata {
    std::fs::symlink_metadata(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
