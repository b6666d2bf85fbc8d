//! `RUN` (feature `run`, as root): commands executed in ocipush's namespace sandbox over an
//! overlay of the stage's layers, on the Alpine base built by umoci. The pushed image is read
//! back by skopeo and umoci and run in a chroot; the RUN layers are read as tars to find the
//! whiteout of a deleted file; a failing command fails the build with its line and output.

use std::io::Read;
use std::os::unix::fs::MetadataExt;

use serde_json::Value;

use crate::common::fixtures::{alpine_base_registry, copy_and_unpack, write_files};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr};
use crate::common::registry::RegistryServer;
use crate::common::tools::run_image;

pub(crate) const EPOCH: u64 = 1_700_000_000;

pub(crate) const DOCKERFILE: &str = r#"FROM alpine:latest
ARG GREETING=hello
ARG HOSTPATH
ENV WHO=world
RUN adduser -D app && mkdir -p /data && chown app:app /data
RUN rm /etc/motd
RUN echo "$GREETING $WHO" > /greeting && echo built-by-run && echo on-stderr >&2
USER app
RUN id -u > /tmp/uid && echo "home=$HOME" > /data/home && hostname > /data/hostname
WORKDIR /data
COPY late.txt ./
RUN ["/bin/sh", "-c", "cat late.txt > copied-seen && test -r /proc/1/cmdline && test -c /dev/null && test ! -e \"$HOSTPATH\" && grep -q buildkitsandbox /etc/hosts && echo ok > checks"]
USER root
RUN mv /etc/apk /etc/apk-moved && ! (cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness) 2>/dev/null && ! mknod /tmp/disk b 8 0 2>/dev/null && test ! -s /proc/kcore && echo hardened > /hardened
CMD ["/bin/sh", "-c", "cat /greeting /tmp/uid; stat -c %U /data; test -e /etc/motd || echo motd-gone"]
"#;

/// Builds `DOCKERFILE` with `GREETING=hi` and pushes it; returns the sandbox, the registry,
/// the push output and the reference pushed by digest.
fn build(
    sb: &Sandbox,
    reg: &RegistryServer,
    tag: &str,
    extra: &[&str],
) -> (std::process::Output, String) {
    let ctx = sb.path().join("ctx");
    write_files(&ctx, &[("late.txt", "late\n"), ("Dockerfile", DOCKERFILE)]);
    let dest = format!("{}/run:{tag}", reg.addr());
    let host_path = sb.path().join("ctx").display().to_string();
    let mut args: Vec<std::ffi::OsString> = vec![
        "--registries-conf".into(),
        sb.registries_conf().into(),
        "--build-arg".into(),
        "GREETING=hi".into(),
        "--build-arg".into(),
        format!("HOSTPATH={host_path}").into(),
    ];
    args.extend(extra.iter().map(Into::into));
    args.push(ctx.join("Dockerfile").into());
    args.push(dest.clone().into());
    let out = sb.ocipush_env(args, &[("SOURCE_DATE_EPOCH", &EPOCH.to_string())]);
    (out, dest)
}

/// The tar of a layer blob (gzip or plain tar).
fn layer_tar(blob: &[u8]) -> Vec<u8> {
    if !blob.starts_with(&[0x1f, 0x8b]) {
        return blob.to_vec();
    }
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(blob)
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

/// The entries of a layer blob (gzip or plain tar) as `(path, type byte, uid)`.
pub(crate) fn layer_entries(blob: &[u8]) -> Vec<(String, u8, u64)> {
    let raw = layer_tar(blob);
    let mut ar = tar::Archive::new(&raw[..]);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                e.header().entry_type().as_byte(),
                e.header().uid().unwrap(),
            )
        })
        .collect()
}

/// The layer blobs of the image in `layout` (tag `t`), bottom first.
pub(crate) fn layout_layers(layout: &std::path::Path) -> Vec<Vec<u8>> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap();
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let manifest: Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()))
        .collect()
}

#[test]
fn run_executes_in_a_sandbox_and_its_changes_are_layers() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let (out, dest) = build(&sb, &reg, "v1", &[]);
    let digest = assert_pushed(&out, &format!("{}/run", reg.addr()));
    let err = stderr(&out);
    // The output streams to the progress display, stdout and stderr alike.
    assert!(err.contains("Dockerfile:7 | built-by-run"), "{err}");
    assert!(err.contains("Dockerfile:7 | on-stderr"), "{err}");

    let img = copy_and_unpack(&format!("docker://{}/run@{digest}", reg.addr()), None);
    let root = &img.rootfs;
    // adduser, mkdir and chown ran as root; the user exists for later instructions.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000"), "{passwd}");
    let data = std::fs::metadata(root.join("data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 1000));
    // USER app: the RUN ran as uid 1000, with HOME from /etc/passwd and BuildKit's hostname.
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/uid")).unwrap(),
        "1000\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/home")).unwrap(),
        "home=/home/app\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/hostname")).unwrap(),
        "buildkitsandbox\n"
    );
    // ARG (from --build-arg) and ENV are both visible to RUN.
    assert_eq!(
        std::fs::read_to_string(root.join("greeting")).unwrap(),
        "hi world\n"
    );
    // The COPY after a RUN landed in the RUN's /data, and the next RUN saw it; the exec
    // form ran in WORKDIR with /proc and /dev, without the host's files.
    assert_eq!(
        std::fs::read_to_string(root.join("data/copied-seen")).unwrap(),
        "late\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("data/checks")).unwrap(),
        "ok\n"
    );
    let checks = std::fs::metadata(root.join("data/checks")).unwrap();
    assert_eq!(checks.uid(), 1000);
    // Deleted, and no mount point stub left behind.
    assert!(!root.join("etc/motd").exists());
    assert!(!root.join("etc/resolv.conf").exists());
    assert!(root.join("etc/hosts").is_file());
    // A directory of the base moved by a RUN is whole in its new place (no overlay
    // redirect); /proc/sys was read-only, mknod refused, /proc/kcore masked.
    assert!(!root.join("etc/apk").exists());
    assert!(root.join("etc/apk-moved/repositories").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("hardened")).unwrap(),
        "hardened\n"
    );

    // The layer of `RUN rm /etc/motd` holds exactly its whiteout (and its directory).
    let layers = layout_layers(&img.layout);
    assert_eq!(
        layers.len(),
        1 + 4 + 1 + 1 + 2,
        "base, 4 RUNs, WORKDIR, COPY, 2 RUNs"
    );
    let rm = layer_entries(&layers[2]);
    let names: Vec<&str> = rm.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["etc/", "etc/.wh.motd"], "{rm:?}");
    // Files the RUN as app wrote are owned by app in the layer.
    let as_app = layer_entries(&layers[4]);
    assert!(
        as_app.iter().any(|e| e.0 == "tmp/uid" && e.2 == 1000),
        "{as_app:?}"
    );

    // Config: ENV kept, build args not; history as BuildKit writes it.
    let cfg = &img.config;
    let env: Vec<&str> = cfg["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"WHO=world"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("GREETING")), "{env:?}");
    let history: Vec<&str> = cfg["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    let host_path = sb.path().join("ctx").display().to_string();
    assert!(
        history.contains(
            &format!("RUN |2 GREETING=hi HOSTPATH={host_path} /bin/sh -c rm /etc/motd # buildkit")
                .as_str()
        ),
        "{history:#?}"
    );

    // The image runs and prints what the Dockerfile says.
    let run = run_image(root, cfg);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, "hi world\n1000\napp\nmotd-gone\n");

    // The same build again, every RUN executed again (no cache): the same image.
    let (again, _) = build(&sb, &reg, "v2", &["--no-cache"]);
    let digest2 = assert_pushed(&again, &format!("{}/run", reg.addr()));
    assert_eq!(digest, digest2, "RUN layers are deterministic");
    assert!(stderr(&again).contains("Dockerfile:7 | built-by-run"));
    // And with the cache: nothing executed, the same image.
    let (cached, _) = build(&sb, &reg, "v3", &[]);
    let digest3 = assert_pushed(&cached, &format!("{}/run", reg.addr()));
    assert_eq!(digest, digest3);
    assert!(!stderr(&cached).contains(" | "), "{}", stderr(&cached));
    let _ = dest;
}

#[test]
fn a_failing_run_fails_the_build_with_its_line_and_output() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM alpine:latest\nRUN true\nRUN echo first-line && echo the-reason >&2 && exit 3\nRUN echo never\n",
        )],
    );
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        format!("{}/bad:v1", reg.addr()).as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(
        err.contains("echo first-line && echo the-reason >&2 && exit 3"),
        "{err}"
    );
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(
        err.contains("first-line") && err.contains("the-reason"),
        "{err}"
    );
    assert!(!err.contains("never"), "{err}");

    // An exec-form command the image does not have: named, with the PATH searched.
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM alpine:latest\nRUN [\"no-such-tool\", \"x\"]\n",
        )],
    );
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        format!("{}/bad:v1", reg.addr()).as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(
        err.contains("no-such-tool was not found in the image"),
        "{err}"
    );
}

/// Builds `dockerfile` (context `ctx` under the sandbox) to `reg` with extra `args`.
fn build_with(
    sb: &Sandbox,
    conf: &std::path::Path,
    reg: &RegistryServer,
    dockerfile: &str,
    args: &[&str],
) -> std::process::Output {
    let ctx = sb.path().join("ctx2");
    write_files(&ctx, &[("Dockerfile", dockerfile)]);
    let mut argv: Vec<std::ffi::OsString> = vec!["--registries-conf".into(), conf.into()];
    argv.extend(args.iter().map(Into::into));
    argv.push(ctx.join("Dockerfile").into());
    argv.push(format!("{}/other:v1", reg.addr()).into());
    sb.ocipush(argv)
}

#[test]
fn network_none_has_only_loopback_and_default_shares_the_hosts() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    // /proc/net/dev: two header lines, then one line per interface.
    let host_ifaces = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count()
        - 2;
    let out = build_with(
        &sb,
        &sb.registries_conf(),
        &reg,
        "FROM alpine:latest\nRUN --network=none echo none=$(tail -n +3 /proc/net/dev | wc -l)\nRUN echo default=$(tail -n +3 /proc/net/dev | wc -l)\n",
        &[],
    );
    assert_pushed(&out, &format!("{}/other", reg.addr()));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2 | none=1"), "{err}");
    assert!(
        err.contains(&format!("Dockerfile:3 | default={host_ifaces}")),
        "{err}"
    );
}

#[test]
fn a_foreign_stage_runs_only_through_registered_qemu() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    crate::e2e_platforms::push_two_arch_alpine(&sb, &a);
    let conf = crate::common::fixtures::map_docker_alpine_to(&sb, &a);
    let reg = RegistryServer::start();
    let out = build_with(
        &sb,
        &conf,
        &reg,
        "FROM alpine:latest\nRUN uname -m\n",
        &["--platform", "linux/arm64"],
    );
    if std::path::Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").is_file() {
        assert_pushed(&out, &format!("{}/other", reg.addr()));
        assert!(
            stderr(&out).contains("Dockerfile:2 | aarch64"),
            "{}",
            stderr(&out)
        );
    } else {
        let err = assert_failed(&out, 1);
        assert!(err.contains("Dockerfile:2"), "{err}");
        assert!(err.contains("linux/arm64") && err.contains("qemu"), "{err}");
        assert!(err.contains("qemu-user-static"), "{err}");
    }
}

#[test]
fn stages_built_by_run_feed_later_stages() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let out = build_with(
        &sb,
        &sb.registries_conf(),
        &reg,
        "FROM alpine:latest AS build\nARG V=7\nRUN echo v$V > /out && rm /etc/motd\n\
         FROM build AS more\nRUN cat /out > /again && test ! -e /etc/motd && test \"$V\" = 7\n\
         FROM alpine:latest\nCOPY --from=more /out /again /copied/\nRUN cat /copied/out /copied/again > /both\n",
        &[],
    );
    let digest = assert_pushed(&out, &format!("{}/other", reg.addr()));
    let img = copy_and_unpack(&format!("docker://{}/other@{digest}", reg.addr()), None);
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("both")).unwrap(),
        "v7\nv7\n"
    );
    // The final stage starts again from Alpine: its motd is there.
    assert!(img.rootfs.join("etc/motd").is_file());
}

/// Heredocs reach the shell as BuildKit's `dispatchRun` passes them: a lone `<<EOF` runs its
/// body; any other command gets the bodies appended for the shell to read.
#[test]
fn run_heredocs_are_scripts_and_here_documents() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let out = build_with(
        &sb,
        &sb.registries_conf(),
        &reg,
        "FROM alpine:latest\nRUN <<EOF\necho one=$((1+1))\necho two\nEOF\nRUN cat <<A > /a.txt && tr a-z A-Z <<-B\nalpha\nA\n\tbeta\n\tB\nRUN cat /a.txt\n",
        &[],
    );
    assert_pushed(&out, &format!("{}/other", reg.addr()));
    let err = stderr(&out);
    for want in [
        "Dockerfile:2 | one=2",
        "Dockerfile:2 | two",
        "Dockerfile:6 | BETA",
        "Dockerfile:11 | alpha",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// The pids of running processes whose command line is exactly `argv` (read from `/proc`).
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (cmdline == want).then_some(pid)
        })
        .collect()
}

/// Ctrl-C while a RUN command is running: the sandbox is killed at once (the command and
/// what it started), ocipush exits 130 saying the build was cancelled, nothing is pushed, and
/// no snapshot or spool directory is left behind.
#[test]
fn an_interrupt_during_run_kills_the_command_and_leaves_nothing() {
    use std::process::Stdio;

    // An odd duration, so the process is surely this test's.
    const SLEEP: [&str; 2] = ["sleep", "4271"];
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            // Says it started once the background sleep has exec'd (its comm is "sleep"), in
            // words that are not in the step's own text (which the progress shows too).
            "FROM alpine:latest\nRUN sleep 4271 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo sandbox-$((1+1))-started; wait\n",
        )],
    );
    let mut cmd = sb.command();
    cmd.args(["--progress", "plain", "--registries-conf"])
        .arg(sb.registries_conf())
        .arg(ctx.join("Dockerfile"))
        .arg(format!("{}/run:cancelled", reg.addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = crate::common::ocipush::Spawned::new(cmd);
    let lines = child.stderr_until("sandbox-2-started");
    // The command runs (in the background of the RUN's shell, which waits for it).
    assert_eq!(processes_running(&SLEEP).len(), 1, "the background sleep");
    // Only ocipush gets the signal; the RUN's sandbox is a session of its own, so only
    // ocipush's cancellation can stop the command.
    child.signal_ocipush(libc::SIGINT);
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.child().wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(
        err.contains("cancelled") && err.contains("nothing was tagged"),
        "{err}"
    );
    assert!(
        processes_running(&SLEEP).is_empty(),
        "the RUN's command outlived the build: {err}"
    );
    let log = reg.access_log();
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path().contains("/manifests/")),
        "a manifest was pushed"
    );
    assert!(
        std::fs::read_dir(sb.path().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "the spool was left in TMPDIR"
    );
    // The snapshot store (in the user's cache) keeps no temporary tree of the killed RUN.
    let run_dir = sb.path().join("home/.cache/ocipush/run");
    for snaps in std::fs::read_dir(&run_dir).unwrap() {
        let snaps = snaps.unwrap().path();
        let temps: Vec<_> = std::fs::read_dir(&snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
            .collect();
        assert!(temps.is_empty(), "{}: {temps:?}", snaps.display());
    }
}

/// A RUN layer's entries keep the times the command gave them, clamped to SOURCE_DATE_EPOCH
/// (BuildKit's `rewrite-timestamp`): a file dated before the epoch keeps its date, one made
/// now gets the epoch; whiteouts get the epoch.
#[test]
fn run_layer_mtimes_are_clamped_to_source_date_epoch() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let ctx = sb.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Dockerfile",
            "FROM alpine:latest\nRUN touch -d @1000000000 /old && touch /new && rm /etc/motd\n",
        )],
    );
    let dest = format!("{}/clamped:v1", reg.addr());
    let out = sb.ocipush_env(
        [
            "--registries-conf".into(),
            sb.registries_conf().into_os_string(),
            ctx.join("Dockerfile").into_os_string(),
            std::ffi::OsString::from(&dest),
        ],
        &[("SOURCE_DATE_EPOCH", &EPOCH.to_string())],
    );
    let digest = assert_pushed(&out, &format!("{}/clamped", reg.addr()));
    let img = copy_and_unpack(&format!("docker://{}/clamped@{digest}", reg.addr()), None);
    let layers = layout_layers(&img.layout);
    let raw = layer_tar(layers.last().unwrap());
    let mtimes: std::collections::BTreeMap<String, u64> = tar::Archive::new(&raw[..])
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                e.header().mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(mtimes.get("old"), Some(&1_000_000_000), "{mtimes:?}");
    assert_eq!(mtimes.get("new"), Some(&EPOCH), "{mtimes:?}");
    assert_eq!(mtimes.get("etc/.wh.motd"), Some(&EPOCH), "{mtimes:?}");
    assert!(mtimes.values().all(|&m| m <= EPOCH), "{mtimes:?}");
}
