//! `RUN`: what the build ([`crate::build`]) needs to run the command (argv, environment, user, working
//! directory, network), captured at that point of the stage, and its history line — following
//! BuildKit's `dispatchRun` (frontend/dockerfile/dockerfile2llb/convert.go):
//!
//! - shell form: the stage's `SHELL` (default `/bin/sh -c`) followed by the command text
//!   (`withShell`); exec form: the JSON array as is;
//! - environment: the LLB state's env list, which `ENV` *and* `ARG` (with a value) both
//!   update in order (`dispatchEnv`, `dispatchArg`: `d.state.AddEnv`), starting from the base
//!   image's `Env` (with BuildKit's default `PATH` when it has none); an `ARG` without a value
//!   adds nothing; build args never reach the image config;
//! - history: `RUN |<n> K=V … <argv joined by spaces> # buildkit`, where the `K=V` list names the
//!   stage's ARGs in order with their current env value, or empty (`runCommandString`).
//!
//! `--mount`s are parsed and checked in [`super::run_mount`] (`type=ssh` refused);
//! `--security=insecure` and `--device` are refused with the line.

use super::PlanError;
use crate::dockerfile::{CommandForm, Run};

/// The network a `RUN` sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunNetwork {
    /// The host's network (BuildKit's `default` with the host network provider; `host`).
    Host,
    /// No network: only a loopback interface (`--network=none`).
    None,
}

/// A `RUN` to execute on the stage's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The Dockerfile line.
    pub line: usize,
    /// The command: argv\[0\] is looked up in the `PATH` of `env` inside the image.
    pub argv: Vec<String>,
    /// `KEY=VALUE`, in order (ENV and ARG values at this point).
    pub env: Vec<String>,
    /// `USER` at this point (`None`: root).
    pub user: Option<String>,
    /// `WORKDIR` at this point (absolute).
    pub workdir: String,
    /// `--network`.
    pub network: RunNetwork,
    /// The instruction as written (for messages).
    pub shown: String,
    /// `--mount`s, in the order written.
    pub mounts: Vec<super::RunMount>,
}

/// The environment a RUN sees: ordered `KEY=VALUE`, replaced in place as BuildKit's
/// `EnvList.AddOrReplace` does.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunEnv {
    vars: Vec<(String, String)>,
    /// The stage's ARG names, in declaration order (each once).
    args: Vec<String>,
}

impl RunEnv {
    /// Start from the base config's `Env` (`KEY=VALUE` strings).
    pub(super) fn new(env: &[String]) -> RunEnv {
        let mut e = RunEnv::default();
        for kv in env {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            e.set(k, v);
        }
        e
    }

    /// `ENV k=v`, or `ARG k` with a value.
    pub(super) fn set(&mut self, k: &str, v: &str) {
        match self.vars.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => self.vars.push((k.to_string(), v.to_string())),
        }
    }

    /// `ARG k[=v]`: remembered for the history line; its value (if any) set as env.
    pub(super) fn arg(&mut self, k: &str, v: Option<&str>) {
        if !self.args.iter().any(|a| a == k) {
            self.args.push(k.to_string());
        }
        if let Some(v) = v {
            self.set(k, v);
        }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// What the planner knows when it meets a `RUN`.
pub(super) struct RunAt<'a> {
    pub(super) shell: &'a [String],
    pub(super) env: &'a RunEnv,
    pub(super) user: Option<String>,
    pub(super) workdir: String,
    pub(super) line: usize,
    pub(super) original: &'a str,
    /// `--build-arg`s (for the proxy variables every RUN gets).
    pub(super) build_args: &'a std::collections::BTreeMap<String, String>,
    /// Expands a `--mount` value with the stage's ARG/ENV.
    pub(super) expand: &'a dyn Fn(&str) -> Result<String, PlanError>,
    /// Resolves a `--mount` `from=` to a stage or an image.
    pub(super) from: &'a dyn Fn(&str) -> Result<super::CopyFrom, PlanError>,
}

/// The proxy build args BuildKit gives every RUN without an `ARG` (matched case-insensitively,
/// set in both cases, kept out of the history: `proxyEnvFromBuildArgs` in dockerfile2llb
/// convert.go, `proxyEnvList` in solver/llbsolver/ops/exec.go).
const PROXY_ARGS: [&str; 5] = [
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

/// The proxy variables from `build_args`, and the build args they consumed.
pub(super) fn proxy_env(
    build_args: &std::collections::BTreeMap<String, String>,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut used = Vec::new();
    for name in PROXY_ARGS {
        // The last match in key order wins, as BuildKit's sorted loop does.
        let Some((_, v)) = build_args
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        else {
            continue;
        };
        used.extend(
            build_args
                .keys()
                .filter(|k| k.eq_ignore_ascii_case(name))
                .cloned(),
        );
        env.push((name.to_ascii_uppercase(), v.clone()));
        env.push((name.to_string(), v.clone()));
    }
    (env, used)
}

/// The shell's script for a shell-form RUN `cmd` with heredoc bodies `docs` (delimiter,
/// body), as BuildKit's `dispatchRun` builds it: a command that is one heredoc alone runs its
/// body (a "fake" heredoc, so shells without heredocs work too; moby/buildkit#2207); any other
/// command gets each body and its delimiter appended on lines of their own, for the shell to
/// read as here-documents. A lone body starting with `#!` BuildKit runs as a mounted file with
/// that interpreter, which is refused here.
fn heredoc_script(cmd: &str, docs: &[(String, String)]) -> Result<String, &'static str> {
    let [(_, body)] = docs else {
        return Ok(append_heredocs(cmd, docs));
    };
    // BuildKit's `MustParseHeredoc`: the whole command is `[n]<<[-]WORD`.
    let word = cmd
        .trim()
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .strip_prefix("<<")
        .map(|w| w.strip_prefix('-').unwrap_or(w).trim_start());
    match word {
        Some(w) if !w.is_empty() && !w.contains(char::is_whitespace) && !w.contains('<') => {
            if body.starts_with("#!") {
                Err("ocipush does not mount a heredoc as an executable file yet")
            } else {
                Ok(body.clone())
            }
        }
        _ => Ok(append_heredocs(cmd, docs)),
    }
}

fn append_heredocs(cmd: &str, docs: &[(String, String)]) -> String {
    let mut full = cmd.to_string();
    for (name, body) in docs {
        full.push('\n');
        full.push_str(body);
        full.push_str(name);
    }
    full
}

/// The step and its history line (`created_by`).
pub(super) fn plan_run(run: &Run, at: RunAt<'_>) -> Result<(RunStep, String), PlanError> {
    let unsupported = |what: &str, why: &str, fix: &str| PlanError::Unsupported {
        line: at.line,
        what: what.into(),
        why: why.into(),
        fix: fix.into(),
    };
    let mounts = plan_mounts(run, &at)?;
    if run.security.as_deref().is_some_and(|s| s != "sandbox") {
        return Err(unsupported(
            "RUN --security=insecure",
            "ocipush always runs commands in its sandbox",
            "Remove --security",
        ));
    }
    if !run.devices.is_empty() {
        return Err(unsupported(
            "RUN --device",
            "ocipush gives commands no devices besides /dev/null, zero, full, random, urandom and tty",
            "Remove --device",
        ));
    }
    let network = match run.network.as_deref() {
        None | Some("default") | Some("host") => RunNetwork::Host,
        Some("none") => RunNetwork::None,
        Some(other) => {
            return Err(PlanError::Invalid {
                line: at.line,
                instruction: "RUN".into(),
                message: format!("unsupported network mode {other:?}: use default, none or host"),
            });
        }
    };
    let argv = match &run.command {
        CommandForm::Exec(_) if !run.heredocs.is_empty() => {
            return Err(PlanError::Invalid {
                line: at.line,
                instruction: "RUN".into(),
                message: "a heredoc needs the shell form (RUN <<EOF), not a JSON array".into(),
            });
        }
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => {
            let mut v = at.shell.to_vec();
            v.push(heredoc_script(s, &run.heredocs).map_err(|why| {
                unsupported(
                    "RUN <<EOF with a #! line",
                    why,
                    "Start the script with its commands, or COPY it into the image and RUN it",
                )
            })?);
            v
        }
    };
    if argv.is_empty() || argv[0].is_empty() {
        return Err(PlanError::Invalid {
            line: at.line,
            instruction: "RUN".into(),
            message: "no command to run".into(),
        });
    }
    let mut shown_args: Vec<String> = at
        .env
        .args
        .iter()
        .map(|k| format!("{k}={}", at.env.get(k).unwrap_or("")))
        .collect();
    if !shown_args.is_empty() {
        shown_args.insert(0, format!("|{}", shown_args.len()));
    }
    shown_args.extend(argv.iter().cloned());
    let history = format!("RUN {} # buildkit", shown_args.join(" "));
    let mut env: Vec<String> = at
        .env
        .vars
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (k, v) in proxy_env(at.build_args).0 {
        if at.env.get(&k).is_none() {
            env.push(format!("{k}={v}"));
        }
    }
    let step = RunStep {
        line: at.line,
        argv,
        env,
        user: at.user.filter(|u| !u.is_empty()),
        workdir: at.workdir,
        network,
        shown: at.original.trim().to_string(),
        mounts,
    };
    Ok((step, history))
}

/// The `--mount`s of `run`, parsed (errors name the line).
fn plan_mounts(run: &Run, at: &RunAt<'_>) -> Result<Vec<super::RunMount>, PlanError> {
    use super::run_mount::{MountAt, MountError, check_targets, parse_mount};
    let to_plan = |e: MountError| match e {
        MountError::Plan(p) => p,
        MountError::Invalid(message) => PlanError::Invalid {
            line: at.line,
            instruction: "RUN".into(),
            message: format!("--mount: {message}"),
        },
        MountError::Unsupported { what, why, fix } => PlanError::Unsupported {
            line: at.line,
            what: what.into(),
            why: why.into(),
            fix: fix.into(),
        },
    };
    let mat = MountAt {
        workdir: &at.workdir,
        expand: at.expand,
        from: at.from,
    };
    let mounts = run
        .mounts
        .iter()
        .map(|m| parse_mount(m, &mat))
        .collect::<Result<Vec<_>, _>>()
        .map_err(to_plan)?;
    check_targets(&mounts).map_err(to_plan)?;
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::heredoc_script;

    use crate::image::Platform;
    use crate::plan::{LayerStep, StageContext, plan_stage};

    fn runs(text: &str, build_args: &[(&str, &str)]) -> (Vec<super::RunStep>, Vec<String>) {
        let df = crate::dockerfile::parse(text).unwrap();
        let auto = crate::plan::platform_args(&Platform::linux_amd64(), &Platform::linux_amd64());
        let ba: BTreeMap<String, String> = build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let stages =
            crate::plan::plan_stages(&df, &crate::plan::BuildArgs(ba.clone()), &auto).unwrap();
        let last = stages.stages.last().unwrap().clone();
        let ctx = StageContext {
            stages: &stages,
            build_args: &ba,
            auto_args: &auto,
            platform: &Platform::linux_amd64(),
            epoch: 0,
        };
        let plan = plan_stage(&last, None, &ctx).unwrap();
        let steps = plan
            .layers
            .into_iter()
            .filter_map(|l| match l {
                LayerStep::Run(r) => Some(r),
                _ => None,
            })
            .collect();
        let history = plan
            .config
            .history
            .iter()
            .filter_map(|h| h.created_by.clone())
            .filter(|h| h.starts_with("RUN"))
            .collect();
        (steps, history)
    }

    #[test]
    fn env_args_user_workdir_and_history() {
        let (steps, history) = runs(
            "FROM scratch\nENV A=1\nARG B=2\nARG C\nARG D\nUSER app\nWORKDIR /w\n\
             RUN echo $A $B\nENV B=3\nSHELL [\"/bin/bash\", \"-e\", \"-c\"]\nRUN [\"id\", \"-u\"]\nRUN x\n",
            &[("D", "4"), ("HTTPS_PROXY", "http://p:3128")],
        );
        let path = format!("PATH={}", crate::image::DEFAULT_LINUX_PATH);
        assert_eq!(steps[0].argv, ["/bin/sh", "-c", "echo $A $B"]);
        let proxy = ["HTTPS_PROXY=http://p:3128", "https_proxy=http://p:3128"].map(String::from);
        assert_eq!(
            steps[0].env,
            [
                &[path.clone(), "A=1".into(), "B=2".into(), "D=4".into()][..],
                &proxy[..]
            ]
            .concat()
        );
        assert_eq!(steps[0].user.as_deref(), Some("app"));
        assert_eq!(steps[0].workdir, "/w");
        assert_eq!(steps[1].argv, ["id", "-u"]);
        assert_eq!(
            steps[1].env,
            [
                &[path, "A=1".into(), "B=3".into(), "D=4".into()][..],
                &proxy[..]
            ]
            .concat()
        );
        assert_eq!(steps[2].argv, ["/bin/bash", "-e", "-c", "x"]);
        assert_eq!(
            history,
            [
                "RUN |3 B=2 C= D=4 /bin/sh -c echo $A $B # buildkit",
                "RUN |3 B=3 C= D=4 id -u # buildkit",
                "RUN |3 B=3 C= D=4 /bin/bash -e -c x # buildkit",
            ]
        );
    }

    #[test]
    fn flags_refused_or_checked() {
        for (df, want) in [
            (
                "RUN --mount=type=ssh true",
                "RUN --mount=type=ssh is not supported",
            ),
            (
                "RUN --mount=type=cache,target=/c,sharing=no true",
                "RUN: --mount: unsupported sharing value",
            ),
            ("RUN --network=bridge true", "unsupported network mode"),
            (
                "RUN --security=insecure true",
                "RUN --security=insecure is not supported",
            ),
        ] {
            let text = format!("FROM scratch\n{df}\n");
            let parsed = crate::dockerfile::parse(&text).unwrap();
            let auto =
                crate::plan::platform_args(&Platform::linux_amd64(), &Platform::linux_amd64());
            let stages = crate::plan::plan_stages(&parsed, &Default::default(), &auto).unwrap();
            let ctx = StageContext {
                stages: &stages,
                build_args: &BTreeMap::new(),
                auto_args: &auto,
                platform: &Platform::linux_amd64(),
                epoch: 0,
            };
            let e = plan_stage(&stages.stages[0], None, &ctx).unwrap_err();
            assert!(e.to_string().contains(want), "{df}: {e}");
            assert!(e.to_string().starts_with("Dockerfile:2:"), "{e}");
        }
        let (steps, _) = runs("FROM scratch\nRUN --network=none true\n", &[]);
        assert_eq!(steps[0].network, super::RunNetwork::None);
        let (steps, _) = runs(
            "FROM scratch AS b\nFROM scratch\nARG D=/m\nWORKDIR /w\nRUN --mount=from=b,target=$D --mount=type=cache,target=c true\n",
            &[],
        );
        assert_eq!(
            steps[0].mounts[0],
            super::super::RunMount::Bind {
                target: "/m".into(),
                source: "/".into(),
                from: Some(crate::plan::CopyFrom::Stage(0)),
                readwrite: false
            }
        );
        assert_eq!(steps[0].mounts[1].target(), Some("/w/c"));
    }

    #[test]
    fn heredoc_scripts_follow_buildkit() {
        let doc = |n: &str, b: &str| (n.to_string(), b.to_string());
        // A lone heredoc runs its body.
        assert_eq!(
            heredoc_script("<<EOF", &[doc("EOF", "echo a\n")]),
            Ok("echo a\n".into())
        );
        assert_eq!(
            heredoc_script(" 3<<-'X' ", &[doc("X", "b\n")]),
            Ok("b\n".into())
        );
        // Anything else gets the bodies and delimiters appended for the shell.
        assert_eq!(
            heredoc_script("cat <<A && cat <<B", &[doc("A", "1\n"), doc("B", "2\n")]),
            Ok("cat <<A && cat <<B\n1\nA\n2\nB".into())
        );
        assert_eq!(
            heredoc_script("python3 <<EOF", &[doc("EOF", "print(1)\n")]),
            Ok("python3 <<EOF\nprint(1)\nEOF".into())
        );
        assert_eq!(heredoc_script("echo hi", &[]), Ok("echo hi".into()));
        // A shebang body is run as a file by BuildKit: refused.
        assert!(heredoc_script("<<EOF", &[doc("EOF", "#!/usr/bin/env python3\n")]).is_err());
    }
}
