//! Running the `ocipush` binary under test in a clean, per-test environment:
//! `HOME`, `DOCKER_CONFIG`, `XDG_*` and `CONTAINERS_REGISTRIES_CONF` point
//! into a temp dir, so no real docker config, auth file or registries.conf of
//! the machine is read; everything else is cleared except `PATH` and `TMPDIR`.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use serde_json::json;

use super::tools::TOOL_TIMEOUT_SECS;
use super::{require_tool, tempdir};

/// The binary under test: the one Cargo built for this test run, or
/// `$OCIPUSH_TEST_BIN` if set (e.g. a release build, or a stand-in used to
/// check the harness itself).
pub fn ocipush_bin() -> PathBuf {
    std::env::var_os("OCIPUSH_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ocipush")))
}

/// An example binary Cargo built beside the test binary, e.g. `containerize`.
/// `cargo test --all-targets` builds examples only as unit-test binaries (their `main` is not
/// in them), so `scripts/test.sh` runs `cargo build --examples` first.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("examples").join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the examples first (`cargo build --examples`, as scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A per-test home for ocipush: config files and its environment.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// The ocipush binary where an unprivileged user can run it (see [`Sandbox::command_as`]).
    user_bin: std::sync::OnceLock<tempfile::TempDir>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh sandbox: empty docker config, a registries.conf with no entries.
    pub fn new() -> Self {
        let dir = tempdir("sandbox");
        for d in ["home", "docker", "xdg-config", "xdg-runtime", "tmp"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        write_registries_conf(dir.path(), &[]);
        Self {
            dir,
            user_bin: std::sync::OnceLock::new(),
        }
    }

    /// The sandbox's root (a temp dir, removed on drop): free for test files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `$DOCKER_CONFIG` for the binary.
    pub fn docker_config_dir(&self) -> PathBuf {
        self.path().join("docker")
    }

    /// `$CONTAINERS_REGISTRIES_CONF` for the binary (also what tests pass to
    /// `--registries-conf`).
    pub fn registries_conf(&self) -> PathBuf {
        self.path().join("registries.conf")
    }

    /// Rewrites the sandbox's registries.conf with `(prefix, location)` entries
    /// and returns its path.
    pub fn set_registries(&self, mappings: &[(&str, &str)]) -> PathBuf {
        write_registries_conf(self.path(), mappings)
    }

    /// Writes `$DOCKER_CONFIG/config.json` with `auths` for each
    /// `(registry, user, pass)`.
    pub fn login(&self, logins: &[(&str, &str, &str)]) -> PathBuf {
        write_docker_config(&self.docker_config_dir(), logins)
    }

    /// A `Command` for ocipush with the sandbox environment (not yet run).
    pub fn command(&self) -> Command {
        self.command_for(&ocipush_bin())
    }

    /// A `Command` for `program` (an ocipush binary or one of the crate's examples) with the
    /// sandbox environment, bounded by `timeout` (not yet run).
    pub fn command_for(&self, program: &Path) -> Command {
        let timeout = require_tool("timeout", "coreutils");
        let mut cmd = Command::new(timeout);
        self.set_up(&mut cmd, program);
        cmd
    }

    /// A `Command` for ocipush run as the unprivileged `user` (`setpriv --reuid --regid
    /// --init-groups`), with the sandbox environment; the sandbox must be the user's
    /// ([`super::users::give`]).
    pub fn command_as(&self, user: &super::users::TestUser) -> Command {
        let setpriv = require_tool("setpriv", "util-linux");
        let timeout = require_tool("timeout", "coreutils");
        let mut cmd = Command::new(setpriv);
        cmd.arg(format!("--reuid={}", user.uid))
            .arg(format!("--regid={}", user.gid))
            .args(["--init-groups", "--"])
            .arg(timeout);
        self.set_up(&mut cmd, &self.user_binary());
        cmd
    }

    /// The ocipush binary in a directory every user can reach: the one Cargo built may sit
    /// under a directory only root can enter (a CI checkout or target dir in `/root`). A
    /// world-readable temp dir (removed with the sandbox) holds a hard link to it, or a copy
    /// where the two are on different file systems.
    fn user_binary(&self) -> PathBuf {
        let dir = self.user_bin.get_or_init(|| {
            let dir = tempdir("user-bin");
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let bin = dir.path().join("ocipush");
            if std::fs::hard_link(ocipush_bin(), &bin).is_err() {
                std::fs::copy(ocipush_bin(), &bin).unwrap();
            }
            dir
        });
        dir.path().join("ocipush")
    }

    /// Runs `ocipush ARGS…` as `user` with extra environment variables.
    pub fn ocipush_as<I, S>(
        &self,
        user: &super::users::TestUser,
        args: I,
        envs: &[(&str, &str)],
    ) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command_as(user);
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_watched(cmd)
    }

    /// `timeout … program` arguments and the sandbox environment on `cmd`.
    fn set_up(&self, cmd: &mut Command, program: &Path) {
        cmd.arg("--kill-after=10")
            .arg(TOOL_TIMEOUT_SECS.to_string())
            .arg(program)
            .env_clear()
            .stdin(Stdio::null())
            .env("HOME", self.path().join("home"))
            .env("DOCKER_CONFIG", self.docker_config_dir())
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("XDG_RUNTIME_DIR", self.path().join("xdg-runtime"))
            .env("CONTAINERS_REGISTRIES_CONF", self.registries_conf())
            .env("REGISTRY_AUTH_FILE", self.path().join("no-auth.json"))
            .env("TMPDIR", self.path().join("tmp"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("NO_COLOR", "1");
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        // `OCIPUSH_RUN_SNAPSHOTTER=copy cargo test --test it e2e_run` runs the RUN suite on
        // the copy snapshotter (its rootless tests then fail: the copy is root only).
        if let Some(s) = std::env::var_os("OCIPUSH_RUN_SNAPSHOTTER") {
            cmd.env("OCIPUSH_RUN_SNAPSHOTTER", s);
        }
    }

    /// Runs `ocipush ARGS…` and returns its output (any exit code).
    pub fn ocipush<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.ocipush_env(args, &[])
    }

    /// Runs `ocipush ARGS…` with extra environment variables.
    pub fn ocipush_env<I, S>(&self, args: I, envs: &[(&str, &str)]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run_watched(cmd)
    }
}

/// Runs a [`Sandbox::command`] and returns its output (any exit code), failing the test if the
/// watchdog had to kill it.
pub fn run_watched(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn ocipush under timeout");
    assert!(
        !matches!(out.status.code(), Some(124) | Some(137)),
        "ocipush did not finish within {TOOL_TIMEOUT_SECS}s and was killed:\n{}",
        describe(&out)
    );
    out
}

/// Runs `ocipush ARGS…` in a fresh [`Sandbox`].
pub fn ocipush<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Sandbox::new().ocipush(args)
}

/// Writes `DIR/registries.conf`, a containers-registries.conf(5) v2 file: one
/// `[[registry]]` per `(prefix, location)`, marked `insecure` (plain HTTP for
/// test registries). Returns its path.
pub fn write_registries_conf(dir: &Path, mappings: &[(&str, &str)]) -> PathBuf {
    let path = dir.join("registries.conf");
    let mut s = String::from("unqualified-search-registries = []\n");
    for (prefix, location) in mappings {
        s.push_str(&format!(
            "\n[[registry]]\nprefix = \"{prefix}\"\nlocation = \"{location}\"\ninsecure = true\n"
        ));
    }
    std::fs::write(&path, s).unwrap();
    path
}

/// Writes `DIR/config.json` (docker's format) with an `auths` entry per
/// `(registry, user, pass)`: `{"auths": {"127.0.0.1:5000": {"auth": base64("user:pass")}}}`.
pub fn write_docker_config(dir: &Path, logins: &[(&str, &str, &str)]) -> PathBuf {
    let mut auths = serde_json::Map::new();
    for (registry, user, pass) in logins {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        auths.insert((*registry).to_owned(), json!({ "auth": auth }));
    }
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("config.json");
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(&json!({ "auths": auths })).unwrap(),
    )
    .unwrap();
    p
}

/// stdout as UTF-8 (lossy).
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr as UTF-8 (lossy).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A readable dump of an ocipush run for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Asserts the run succeeded and that stdout is exactly one line
/// `<expected_name>@sha256:<64 hex>`; returns the digest (`sha256:…`).
pub fn assert_pushed(out: &Output, expected_name: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "ocipush failed:\n{}",
        describe(out)
    );
    assert_no_panic(out);
    let text = stdout(out);
    let prefix = format!("{expected_name}@");
    let line = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stdout must be one line ending in \\n:\n{}", describe(out)));
    assert!(
        !line.contains('\n') && line.starts_with(&prefix),
        "stdout must be exactly one line `{prefix}sha256:<hex>`:\n{}",
        describe(out)
    );
    let digest = &line[prefix.len()..];
    assert_valid_digest(digest);
    digest.to_owned()
}

/// Asserts `d` is `sha256:` followed by 64 lowercase hex digits.
pub fn assert_valid_digest(d: &str) {
    let hex = d
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {d:?}"));
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not a sha256 digest: {d:?}"
    );
}

/// Asserts exit code `code`, no panic/backtrace text, empty stdout, and (for
/// failures) a non-empty stderr message. Returns stderr.
pub fn assert_failed(out: &Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "wrong exit code:\n{}",
        describe(out)
    );
    assert_no_panic(out);
    assert!(
        out.stdout.is_empty(),
        "a failed run must print nothing on stdout:\n{}",
        describe(out)
    );
    let err = stderr(out);
    assert!(
        !err.trim().is_empty(),
        "no error message on stderr:\n{}",
        describe(out)
    );
    err
}

/// Asserts neither stream carries Rust panic or backtrace text.
pub fn assert_no_panic(out: &Output) {
    for s in [stdout(out), stderr(out)] {
        for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(
                !s.contains(bad),
                "output contains {bad:?}:\n{}",
                describe(out)
            );
        }
    }
}

/// A spawned [`Sandbox::command`] (`timeout … ocipush`) that is killed, with everything in its
/// process group, if the test ends (or panics) before it exits: a failed assertion leaves no
/// ocipush or RUN sandbox running.
pub struct Spawned(Option<std::process::Child>);

impl Spawned {
    /// Spawn `cmd`.
    pub fn new(mut cmd: Command) -> Spawned {
        Spawned(Some(cmd.spawn().expect("spawn ocipush under timeout")))
    }

    /// The running process.
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("not waited for yet")
    }

    /// Send `signal` to ocipush itself, the child of `timeout`: `timeout` would pass a signal
    /// on to ocipush *and* to its whole process group, so ocipush would get it twice (and
    /// take the second as "quit at once").
    pub fn signal_ocipush(&mut self, signal: libc::c_int) {
        let timeout = self.child().id();
        let children = std::fs::read_to_string(format!("/proc/{timeout}/task/{timeout}/children"))
            .expect("read timeout's children (CONFIG_PROC_CHILDREN)");
        let pid: libc::pid_t = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("timeout has started ocipush");
        // SAFETY: kill(2) on our own grandchild's pid.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Its piped stderr read line by line until one contains `marker` (panicking with what was
    /// read if it ends first); the lines after it.
    pub fn stderr_until(
        &mut self,
        marker: &str,
    ) -> std::io::Lines<std::io::BufReader<std::process::ChildStderr>> {
        use std::io::BufRead;
        let stderr = self
            .child()
            .stderr
            .take()
            .expect("stderr piped, not taken yet");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("read stderr");
            let found = line.contains(marker);
            seen.push(line);
            if found {
                return lines;
            }
        }
        panic!("never said {marker:?}: {seen:#?}");
    }

    /// Wait for it to exit and collect its piped output.
    pub fn wait_with_output(mut self) -> Output {
        let child = self.0.take().expect("not waited for yet");
        child.wait_with_output().expect("wait for ocipush")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take()
            && let Ok(None) = child.try_wait()
        {
            // `timeout` leads its own process group (it calls setpgid): kill it all.
            // SAFETY: kill(2) on the group of our own child.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}
