//! Typed wrappers around tools we did not write: skopeo, umoci, tar, chroot.
//! A failing tool panics with its full command line, exit status and stderr.
//!
//! Every tool runs under coreutils `timeout` (a hang becomes a failure, never a
//! stuck test) and is reaped before the wrapper returns.

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};

use serde_json::Value;

use super::require_tool;

/// Upper bound for one tool invocation (a watchdog, not a timing assertion).
pub const TOOL_TIMEOUT_SECS: u32 = 600;

/// Basic-auth credentials `(user, pass)` for a registry.
pub type Creds<'a> = Option<(&'a str, &'a str)>;

/// Runs `program args…` under `timeout`, with stdin closed, and returns its output.
pub fn run_bounded(program: &Path, args: &[OsString], envs: &[(&str, &OsStr)]) -> Output {
    let timeout = require_tool("timeout", "coreutils");
    let mut cmd = Command::new(timeout);
    cmd.arg("--kill-after=10")
        .arg(TOOL_TIMEOUT_SECS.to_string())
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    if out.status.code() == Some(124) || out.status.code() == Some(137) {
        panic!(
            "{} {:?} did not finish within {TOOL_TIMEOUT_SECS}s and was killed; stderr:\n{}",
            program.display(),
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Panics (with command, status, stdout and stderr) unless `out` succeeded.
pub fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

// ---------------------------------------------------------------- skopeo

/// Runs skopeo with `args` in an isolated configuration (no host
/// registries.conf, no host auth file, signature policy off) and returns the
/// raw output without checking it (for negative assertions).
pub fn skopeo_raw(args: &[OsString]) -> Output {
    skopeo_raw_with_conf(args, None)
}

/// Like [`skopeo_raw`], but with `registries_conf` as skopeo's
/// registries.conf (to check a file the way containers/image reads it).
pub fn skopeo_raw_with_conf(args: &[OsString], registries_conf: Option<&Path>) -> Output {
    let skopeo = require_tool("skopeo", "skopeo");
    let cfg = super::tempdir("skopeo-cfg");
    let conf = match registries_conf {
        Some(p) => p.to_path_buf(),
        None => {
            let p = cfg.path().join("registries.conf");
            std::fs::write(&p, "unqualified-search-registries = []\n").unwrap();
            p
        }
    };
    let auth = cfg.path().join("auth.json");
    std::fs::write(&auth, "{\"auths\":{}}\n").unwrap();
    let mut full = os(&["--insecure-policy"]);
    full.extend(args.iter().cloned());
    run_bounded(
        &skopeo,
        &full,
        &[
            ("CONTAINERS_REGISTRIES_CONF", conf.as_os_str()),
            ("REGISTRY_AUTH_FILE", auth.as_os_str()),
            ("XDG_RUNTIME_DIR", cfg.path().as_os_str()),
            ("HOME", cfg.path().as_os_str()),
        ],
    )
}

/// `--tls-verify=…` and `--creds`/`--no-creds` for a `docker://` reference.
fn docker_flags(prefix: &str, image_ref: &str, tls_verify: bool, creds: Creds) -> Vec<OsString> {
    if !image_ref.starts_with("docker://") {
        return Vec::new();
    }
    let mut v = vec![OsString::from(format!("--{prefix}tls-verify={tls_verify}"))];
    match creds {
        Some((u, p)) => v.push(format!("--{prefix}creds={u}:{p}").into()),
        None => v.push(format!("--{prefix}no-creds").into()),
    }
    v
}

fn inspect(extra: &[&str], image_ref: &str, tls_verify: bool, creds: Creds) -> Output {
    let mut args = os(&["inspect"]);
    args.extend(os(extra));
    args.extend(docker_flags("", image_ref, tls_verify, creds));
    args.push(image_ref.into());
    skopeo_raw(&args)
}

fn json(what: &str, out: Output) -> Value {
    let out = check(what, out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: output is not JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `skopeo inspect IMAGE` (e.g. `docker://127.0.0.1:P/repo:tag`, `oci:DIR:tag`):
/// the summary (`Digest`, `Architecture`, `Os`, `Layers`, `Env`, `Labels`, …).
pub fn skopeo_inspect(image_ref: &str, tls_verify: bool, creds: Creds) -> Value {
    json(
        &format!("skopeo inspect {image_ref}"),
        inspect(&[], image_ref, tls_verify, creds),
    )
}

/// `skopeo inspect --config --raw IMAGE`: the config blob exactly as stored (`--raw` keeps the
/// Docker-only fields `Shell`, `Healthcheck` and `OnBuild` that skopeo's OCI view drops).
pub fn skopeo_inspect_config(image_ref: &str, tls_verify: bool, creds: Creds) -> Value {
    json(
        &format!("skopeo inspect --config --raw {image_ref}"),
        inspect(&["--config", "--raw"], image_ref, tls_verify, creds),
    )
}

/// `skopeo inspect --raw IMAGE`: the manifest (or index) exactly as stored.
pub fn skopeo_inspect_raw(image_ref: &str, tls_verify: bool, creds: Creds) -> Value {
    json(
        &format!("skopeo inspect --raw {image_ref}"),
        inspect(&["--raw"], image_ref, tls_verify, creds),
    )
}

/// The raw manifest bytes (`skopeo inspect --raw`), for digest checks.
pub fn skopeo_inspect_raw_bytes(image_ref: &str, tls_verify: bool, creds: Creds) -> Vec<u8> {
    check(
        &format!("skopeo inspect --raw {image_ref}"),
        inspect(&["--raw"], image_ref, tls_verify, creds),
    )
    .stdout
}

/// `skopeo inspect` without checking the result (for "nothing was pushed").
pub fn skopeo_inspect_output(image_ref: &str, tls_verify: bool, creds: Creds) -> Output {
    inspect(&["--raw"], image_ref, tls_verify, creds)
}

/// `skopeo copy SRC DST` with TLS verification off for `docker://` ends and
/// anonymous access. See [`skopeo_copy_with`] for credentials.
pub fn skopeo_copy(src: &str, dst: &str) {
    skopeo_copy_with(src, None, dst, None);
}

/// `skopeo copy` with credentials for either end.
pub fn skopeo_copy_with(src: &str, src_creds: Creds, dst: &str, dst_creds: Creds) {
    let mut args = os(&["copy"]);
    args.extend(docker_flags("src-", src, false, src_creds));
    args.extend(docker_flags("dest-", dst, false, dst_creds));
    args.push(src.into());
    args.push(dst.into());
    check(&format!("skopeo copy {src} {dst}"), skopeo_raw(&args));
}

// ---------------------------------------------------------------- umoci

/// Runs `umoci args…`, panicking with its stderr on failure.
pub fn umoci(args: &[&OsStr]) -> Output {
    let umoci = require_tool("umoci", "umoci");
    let args: Vec<OsString> = args.iter().map(|a| a.to_os_string()).collect();
    check(&format!("umoci {args:?}"), run_bounded(&umoci, &args, &[]))
}

/// `umoci unpack --image LAYOUT:TAG BUNDLE` (as root: ownership preserved).
/// The root filesystem is then `BUNDLE/rootfs`.
pub fn umoci_unpack(layout_dir: &Path, tag: &str, bundle_dir: &Path) {
    let image = image_arg(layout_dir, tag);
    umoci(&[
        "unpack".as_ref(),
        "--image".as_ref(),
        &image,
        bundle_dir.as_os_str(),
    ]);
}

/// `DIR:TAG` as umoci and skopeo's `oci:` transport spell it.
pub fn image_arg(layout_dir: &Path, tag: &str) -> OsString {
    let mut s = layout_dir.as_os_str().to_os_string();
    s.push(":");
    s.push(tag);
    s
}

/// `tar -xzf TARBALL -C DIR --numeric-owner` (GNU tar, as root: keeps owners).
pub fn untar_gz(tarball: &Path, dir: &Path) {
    let tar = require_tool("tar", "tar");
    check(
        &format!("tar -xzf {}", tarball.display()),
        run_bounded(
            &tar,
            &[
                "--numeric-owner".into(),
                "-xzf".into(),
                tarball.into(),
                "-C".into(),
                dir.into(),
            ],
            &[],
        ),
    );
}

// ---------------------------------------------------------------- chroot

/// What a process run in a chroot printed, and how it ended.
#[derive(Debug)]
pub struct ChrootOutput {
    pub stdout: String,
    pub stderr: String,
    pub status: ExitStatus,
}

/// Runs `argv` inside `rootfs` with exactly `env` (`KEY=VALUE` strings, as in an
/// OCI config), working directory `/`. See [`run_in_chroot_at`].
pub fn run_in_chroot(rootfs: &Path, argv: &[String], env: &[String]) -> ChrootOutput {
    run_in_chroot_at(rootfs, "/", argv, env)
}

/// Runs `argv` inside `rootfs` (we are root) with exactly `env`, in `workdir`,
/// the way a container runtime starts a process (minus namespaces): the child
/// calls chroot(2) and chdir(2) before exec, and argv[0] is looked up with the
/// `PATH` from `env` inside the new root. No shell is needed in the image.
///
/// Async-signal safety of the pre-exec hook: `std::os::unix::fs::chroot` and
/// `std::env::set_current_dir` convert paths shorter than 384 bytes on the
/// stack (no allocation after fork); the paths are cloned before the fork.
pub fn run_in_chroot_at(
    rootfs: &Path,
    workdir: &str,
    argv: &[String],
    env: &[String],
) -> ChrootOutput {
    use std::os::unix::process::CommandExt;
    assert!(!argv.is_empty(), "run_in_chroot: empty argv");
    assert!(
        rootfs.join("bin").exists() || rootfs.join("usr").exists(),
        "run_in_chroot: {} does not look like a root filesystem",
        rootfs.display()
    );
    let root = rootfs.to_path_buf();
    let wd = std::path::PathBuf::from(workdir);
    assert!(
        root.as_os_str().len() < 300 && wd.as_os_str().len() < 300,
        "run_in_chroot: paths too long for an allocation-free pre-exec hook"
    );
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear().stdin(Stdio::null());
    for kv in env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        cmd.env(k, v);
    }
    // SAFETY: the hook only makes two syscalls through allocation-free std
    // wrappers (see above) and touches no locks.
    unsafe {
        cmd.pre_exec(move || {
            std::os::unix::fs::chroot(&root)?;
            std::env::set_current_dir(&wd)
        });
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "run {argv:?} in chroot {} (workdir {workdir}, env {env:?}): {e}",
            rootfs.display()
        )
    });
    ChrootOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

/// The argv an OCI runtime would run for this image config: `Entrypoint`
/// followed by `Cmd`. Accepts the whole config blob (with its `config` object)
/// or just the inner `config` object.
pub fn image_argv(config_json: &Value) -> Vec<String> {
    let c = inner_config(config_json);
    let strings = |k: &str| -> Vec<String> {
        c.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("argv entries are strings").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings("Entrypoint");
    argv.extend(strings("Cmd"));
    argv
}

/// The image's `Env` (`KEY=VALUE` strings).
pub fn image_env(config_json: &Value) -> Vec<String> {
    inner_config(config_json)
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The image's `WorkingDir` (`/` when unset).
pub fn image_workdir(config_json: &Value) -> String {
    inner_config(config_json)
        .get("WorkingDir")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("/")
        .to_owned()
}

fn inner_config(v: &Value) -> &Value {
    match v.get("config") {
        Some(c) if c.is_object() => c,
        _ => v,
    }
}

/// Runs the image's entrypoint+cmd from `config_json` in `rootfs` with its Env
/// and WorkingDir (what `docker run IMAGE` would do, minus namespaces).
pub fn run_image(rootfs: &Path, config_json: &Value) -> ChrootOutput {
    let argv = image_argv(config_json);
    assert!(
        !argv.is_empty(),
        "image has neither Entrypoint nor Cmd: {config_json}"
    );
    run_in_chroot_at(
        rootfs,
        &image_workdir(config_json),
        &argv,
        &image_env(config_json),
    )
}
