//! One stage: apply its instructions to the base image's config as BuildKit does (inheritance,
//! default `PATH`, ARG/ENV expansion, CMD/ENTRYPOINT interplay, history) and list the layers
//! to build. The layers' diff ids are appended by the build ([`crate::build`]) in the order given here.

use std::collections::{BTreeMap, BTreeSet};

use super::remote::{Remote, remote_kind};
use super::remote_add::{RemoteSource, parse_checksum};
use super::run::{RunAt, RunEnv, RunStep, plan_run};
use super::{PlanError, Stages};
use crate::auth::redact::redact_url;
use crate::dockerfile::{self, CommandForm, CopyArgs, Healthcheck, Instruction, expand_word};
use crate::layers::{Chmod, InlineFile};

type Located = dockerfile::Located<Instruction>;
use crate::image::{DEFAULT_LINUX_PATH, HealthConfig, History, ImageConfig, Platform, rfc3339};

/// Where `COPY --from` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFrom {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, expanded.
    Image(String),
}

/// A layer to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerStep {
    /// `COPY` / `ADD` from the build context.
    Copy {
        /// The Dockerfile line.
        line: usize,
        /// Sources, expanded, relative to the context.
        srcs: Vec<String>,
        /// Absolute destination in the image (trailing `/` kept).
        dest: String,
        /// `--chown=user[:group]`, expanded; names resolve against the stage's own
        /// `/etc/passwd` and `/etc/group` when the layer is built.
        chown: Option<String>,
        /// `--chmod`, octal or symbolic (applied to each entry's own mode).
        chmod: Option<Chmod>,
        /// `ADD`: extract local tar archives (`--unpack`, true unless `--unpack=false`).
        extract: bool,
        /// `COPY --from`: the sources are absolute paths in that stage or image.
        from: Option<CopyFrom>,
        /// Heredoc sources (`COPY <<EOF /x`): files named after their delimiter, copied after
        /// `srcs` (never with `from`).
        inline: Vec<InlineFile>,
        /// `--exclude` patterns, unexpanded as in BuildKit, matched against paths relative to
        /// each source (patternmatcher rules: `**`, `!` exceptions).
        exclude: Vec<String>,
        /// `--parents`: each source keeps its path (below an optional `/./` pivot) under `dest`.
        parents: bool,
        /// `--link`: placed on an empty filesystem, independent of the layers below.
        link: bool,
        /// `ADD <url>`: downloads, placed after the other sources ([`super::remote_add`]).
        remote: Vec<RemoteSource>,
        /// Existing directories keep their metadata ([`CopyArgs::merge_dirs`]).
        merge_dirs: bool,
    },
    /// `WORKDIR`: create these directories (each parent listed).
    Mkdir {
        /// The Dockerfile line.
        line: usize,
        /// Absolute paths, parents first.
        dirs: Vec<String>,
        /// The stage's `USER` at that point: BuildKit creates the directories as that user.
        user: Option<String>,
    },
    /// `RUN`: a command executed on the stage's filesystem ([`RunStep`]).
    Run(RunStep),
}

impl LayerStep {
    /// The Dockerfile line of the instruction.
    pub fn line(&self) -> usize {
        match self {
            LayerStep::Copy { line, .. } | LayerStep::Mkdir { line, .. } => *line,
            LayerStep::Run(r) => r.line,
        }
    }
}

/// What a stage comes to: the config (history complete, new diff ids still to append) and the layers.
#[derive(Debug, Clone)]
pub struct StagePlan {
    /// The final config; `rootfs.diff_ids` holds only the base's.
    pub config: ImageConfig,
    /// The layers to build, in order.
    pub layers: Vec<LayerStep>,
    /// Build args that some `ARG` consumed.
    pub used_args: BTreeSet<String>,
    /// Warnings (e.g. a base image's ONBUILD triggers run).
    pub warnings: Vec<String>,
    /// What a later stage `FROM` this one inherits for its RUNs (ARG values and names).
    pub run_state: RunState,
}

/// A stage's RUN environment as a later stage built `FROM` it inherits it: BuildKit's
/// `dispatchState.init` starts from the base stage's LLB state (its ARG values in the env)
/// and its build args (for the history line).
#[derive(Debug, Clone, Default)]
pub struct RunState(RunEnv);

/// Inputs shared by every stage.
pub struct StageContext<'a> {
    /// All stages (for global args and the escape character).
    pub stages: &'a Stages,
    /// `--build-arg`s.
    pub build_args: &'a BTreeMap<String, String>,
    /// Automatic platform args.
    pub auto_args: &'a BTreeMap<String, String>,
    /// The platform being built.
    pub platform: &'a Platform,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
}

const BUILDKIT_COMMENT: &str = "buildkit.dockerfile.v0";

struct Planner<'a> {
    ctx: &'a StageContext<'a>,
    stage_index: usize,
    config: ImageConfig,
    args: BTreeMap<String, Option<String>>,
    shell: Vec<String>,
    cmd_set: bool,
    layers: Vec<LayerStep>,
    used_args: BTreeSet<String>,
    created: String,
    /// The environment a RUN sees ([`super::run`]).
    run_env: RunEnv,
}

/// Plan `stage` on top of `base` (`None` for `scratch`).
#[cfg(test)]
pub fn plan_stage(
    stage: &super::Stage,
    base: Option<ImageConfig>,
    ctx: &StageContext<'_>,
) -> Result<StagePlan, PlanError> {
    plan_stage_on(stage, base, None, ctx)
}

/// [`plan_stage`] for a stage built `FROM` an earlier stage whose plan gave `base_run`.
pub fn plan_stage_on(
    stage: &super::Stage,
    base: Option<ImageConfig>,
    base_run: Option<&RunState>,
    ctx: &StageContext<'_>,
) -> Result<StagePlan, PlanError> {
    let created = rfc3339(ctx.epoch);
    let mut config = base.unwrap_or_default();
    if config.architecture.is_empty() {
        config.architecture = ctx.platform.architecture.clone();
        config.os = ctx.platform.os.clone();
        config.variant = ctx.platform.variant.clone();
    }
    config.created = Some(created.clone());
    if config.os == "linux" && config.env_get("PATH").is_none() {
        config.env_set("PATH", DEFAULT_LINUX_PATH);
    }
    let shell = config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    let triggers = config
        .config
        .as_mut()
        .and_then(|c| c.on_build.take())
        .unwrap_or_default();
    let run_env = match base_run {
        Some(RunState(env)) => env.clone(),
        None => RunEnv::new(
            config
                .config
                .as_ref()
                .and_then(|c| c.env.as_deref())
                .unwrap_or_default(),
        ),
    };
    let mut p = Planner {
        ctx,
        run_env,
        stage_index: stage.index,
        config,
        args: BTreeMap::new(),
        shell,
        cmd_set: false,
        layers: vec![],
        used_args: BTreeSet::new(),
        created,
    };
    let mut warnings = vec![];
    for trigger in &triggers {
        let df = dockerfile::parse(trigger).map_err(|e| PlanError::Invalid {
            line: stage.line,
            instruction: "FROM".into(),
            message: format!("the base image's ONBUILD trigger {trigger:?} does not parse: {e}"),
        })?;
        for mut located in dockerfile::instructions(&df)? {
            located.start_line = stage.line;
            located.end_line = stage.line;
            warnings.push(format!(
                "Dockerfile:{}: running the base image's ONBUILD trigger {trigger:?}",
                stage.line
            ));
            p.apply(&located)?;
        }
    }
    for located in &stage.instructions {
        p.apply(located)?;
    }
    Ok(StagePlan {
        config: p.config,
        layers: p.layers,
        used_args: p.used_args,
        warnings,
        run_state: RunState(p.run_env),
    })
}

impl Planner<'_> {
    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(v) = self.config.env_get(name) {
            return Some(v);
        }
        self.args.get(name).cloned().flatten()
    }

    fn expand(&self, l: &Located, word: &str) -> Result<String, PlanError> {
        let lookup = |n: &str| self.lookup(n);
        expand_word(word, &lookup, self.ctx.stages.escape).map_err(|e| PlanError::Expand {
            line: l.start_line,
            instruction: keyword(l),
            message: e.to_string(),
        })
    }

    fn history(&mut self, created_by: String, empty_layer: bool) {
        self.config.history.push(History {
            created: Some(self.created.clone()),
            created_by: Some(created_by),
            author: None,
            comment: Some(BUILDKIT_COMMENT.into()),
            empty_layer,
        });
    }

    fn invalid(l: &Located, message: impl Into<String>) -> PlanError {
        PlanError::Invalid {
            line: l.start_line,
            instruction: keyword(l),
            message: message.into(),
        }
    }

    fn command(&self, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut v = self.shell.clone();
                v.push(s.clone());
                v
            }
        }
    }

    fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into())
    }

    fn apply(&mut self, l: &Located) -> Result<(), PlanError> {
        match &l.instruction {
            // FROM lines start stages; they never reach a stage's instruction list.
            Instruction::From { .. } => {}
            Instruction::Arg(pairs) => {
                let mut shown = vec![];
                for (k, default) in pairs {
                    let value = if let Some(v) = self.ctx.build_args.get(k) {
                        self.used_args.insert(k.clone());
                        Some(v.clone())
                    } else if let Some(d) = default {
                        Some(self.expand(l, d)?)
                    } else if let Some(g) = self.ctx.stages.global_args.get(k) {
                        g.clone()
                    } else {
                        self.ctx.auto_args.get(k).cloned()
                    };
                    shown.push(match &value {
                        Some(v) if default.is_some() => format!("{k}={v}"),
                        _ => k.clone(),
                    });
                    self.run_env.arg(k, value.as_deref());
                    self.args.insert(k.clone(), value);
                }
                self.history(format!("ARG {}", shown.join(" ")), true);
            }
            Instruction::Env(pairs) => {
                // Every word is expanded against the environment as it was before this ENV
                // (BuildKit's dispatch expands the whole command, then dispatchEnv sets it):
                // `ENV A=1 B=$A` does not see the new A.
                let mut expanded = vec![];
                for (k, v) in pairs {
                    let v = self.expand(l, v)?;
                    let k = self.expand(l, k)?;
                    if k.is_empty() {
                        return Err(Self::invalid(l, "empty variable name"));
                    }
                    expanded.push((k, v));
                }
                let mut shown = vec![];
                for (k, v) in expanded {
                    self.config.env_set(&k, &v);
                    self.run_env.set(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                self.history(format!("ENV {}", shown.join(" ")), true);
            }
            Instruction::Label(pairs) => {
                let mut shown = vec![];
                for (k, v) in pairs {
                    let k = self.expand(l, k)?;
                    let v = self.expand(l, v)?;
                    if k.is_empty() {
                        return Err(Self::invalid(l, "empty label name"));
                    }
                    shown.push(format!("{k}={v}"));
                    self.config
                        .runtime_mut()
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(k, v);
                }
                self.history(format!("LABEL {}", shown.join(" ")), true);
            }
            Instruction::Maintainer(m) => {
                self.config.author = Some(m.clone());
                self.history(format!("MAINTAINER {m}"), true);
            }
            Instruction::Workdir(w) => {
                let w = self.expand(l, w)?;
                if w.is_empty() {
                    return Err(Self::invalid(
                        l,
                        "the directory is empty after expanding variables",
                    ));
                }
                let dir = clean_path(&join(&self.workdir(), &w));
                self.config.runtime_mut().working_dir = Some(dir.clone());
                if dir != "/" {
                    let mut dirs = vec![];
                    let mut acc = String::new();
                    for part in dir.split('/').filter(|p| !p.is_empty()) {
                        acc.push('/');
                        acc.push_str(part);
                        dirs.push(acc.clone());
                    }
                    let user = self.config.config.as_ref().and_then(|c| c.user.clone());
                    self.layers.push(LayerStep::Mkdir {
                        line: l.start_line,
                        dirs,
                        user: user.filter(|u| !u.is_empty()),
                    });
                    self.history(format!("WORKDIR {dir}"), false);
                } else {
                    self.history(format!("WORKDIR {dir}"), true);
                }
            }
            Instruction::Copy(a) => self.copy(l, a, false)?,
            Instruction::Add(a) => self.copy(l, a, true)?,
            Instruction::Cmd(form) => {
                let cmd = self.command(form);
                self.history(format!("CMD {}", go_quote_list(&cmd)), true);
                self.config.runtime_mut().cmd = Some(cmd);
                self.cmd_set = true;
            }
            Instruction::Entrypoint(form) => {
                let ep = self.command(form);
                self.history(format!("ENTRYPOINT {}", go_quote_list(&ep)), true);
                let rt = self.config.runtime_mut();
                rt.entrypoint = Some(ep);
                if !self.cmd_set {
                    rt.cmd = None;
                }
            }
            Instruction::Shell(sh) => {
                if sh.is_empty() {
                    return Err(Self::invalid(
                        l,
                        "SHELL needs at least one element, e.g. SHELL [\"/bin/bash\", \"-c\"]",
                    ));
                }
                self.shell = sh.clone();
                self.history(format!("SHELL {}", go_quote_list(sh)), true);
                self.config.runtime_mut().shell = Some(sh.clone());
            }
            Instruction::User(u) => {
                let u = self.expand(l, u)?;
                if u.is_empty() {
                    return Err(Self::invalid(
                        l,
                        "the user is empty after expanding variables",
                    ));
                }
                self.history(format!("USER {u}"), true);
                self.config.runtime_mut().user = Some(u);
            }
            Instruction::Expose(ports) => {
                let mut all = vec![];
                for p in ports {
                    let p = self.expand(l, p)?;
                    for port in
                        dockerfile::parse_expose(&p).map_err(|e| Self::invalid(l, e.to_string()))?
                    {
                        all.push(port);
                    }
                }
                self.history(format!("EXPOSE {}", all.join(" ")), true);
                let map = self
                    .config
                    .runtime_mut()
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in all {
                    map.insert(p, Default::default());
                }
            }
            Instruction::Volume(vols) => {
                let mut all = vec![];
                for v in vols {
                    let v = self.expand(l, v)?;
                    if v.trim().is_empty() {
                        return Err(Self::invalid(
                            l,
                            "VOLUME specified can not be an empty string",
                        ));
                    }
                    all.push(v);
                }
                self.history(format!("VOLUME [{}]", all.join(" ")), true);
                let map = self
                    .config
                    .runtime_mut()
                    .volumes
                    .get_or_insert_with(BTreeMap::new);
                for v in all {
                    map.insert(v, Default::default());
                }
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(l, s)?;
                if !valid_signal(&s) {
                    return Err(Self::invalid(
                        l,
                        format!("invalid signal {s:?}: use a name like SIGTERM or a number"),
                    ));
                }
                self.history(format!("STOPSIGNAL {s}"), true);
                self.config.runtime_mut().stop_signal = Some(s);
            }
            Instruction::Healthcheck(h) => {
                let hc = match h {
                    Healthcheck::None => HealthConfig {
                        test: Some(vec!["NONE".into()]),
                        ..Default::default()
                    },
                    Healthcheck::Cmd {
                        test,
                        interval,
                        timeout,
                        start_period,
                        start_interval,
                        retries,
                    } => {
                        let test = match test {
                            CommandForm::Exec(v) => std::iter::once("CMD".to_string())
                                .chain(v.iter().cloned())
                                .collect(),
                            CommandForm::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
                        };
                        HealthConfig {
                            test: Some(test),
                            interval: interval.map(|d| d.as_nanos() as u64),
                            timeout: timeout.map(|d| d.as_nanos() as u64),
                            start_period: start_period.map(|d| d.as_nanos() as u64),
                            start_interval: start_interval.map(|d| d.as_nanos() as u64),
                            retries: *retries,
                        }
                    }
                };
                self.history(format!("HEALTHCHECK {}", original_args(l)), true);
                self.config.runtime_mut().healthcheck = Some(hc);
            }
            Instruction::Onbuild(trigger) => {
                let upper = trigger
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                if matches!(upper.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(Self::invalid(
                        l,
                        format!("{upper} isn't allowed as an ONBUILD trigger"),
                    ));
                }
                self.history(format!("ONBUILD {trigger}"), true);
                self.config
                    .runtime_mut()
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(trigger.clone());
            }
            Instruction::Run(run) => {
                let user = self.config.config.as_ref().and_then(|c| c.user.clone());
                let at = RunAt {
                    shell: &self.shell,
                    env: &self.run_env,
                    user,
                    workdir: self.workdir(),
                    line: l.start_line,
                    original: &l.original,
                    build_args: self.ctx.build_args,
                    expand: &|w| self.expand(l, w),
                    from: &|f| self.copy_from(l, f),
                };
                let (step, history) = plan_run(run, at)?;
                self.used_args
                    .extend(super::run::proxy_env(self.ctx.build_args).1);
                self.layers.push(LayerStep::Run(step));
                self.history(history, false);
            }
        }
        Ok(())
    }

    /// `COPY` / `ADD`, following BuildKit's `dispatchCopy`
    /// (frontend/dockerfile/dockerfile2llb/convert_copy.go): `--chown`, `--chmod`, the
    /// sources and the destination are expanded (`--exclude` patterns are not), `--chmod` and
    /// `--checksum` are checked first, network sources are refused, heredoc bodies are expanded
    /// unless their delimiter was quoted, and the history reads as BuildKit writes it.
    fn copy(&mut self, l: &Located, a: &CopyArgs, add: bool) -> Result<(), PlanError> {
        let name = if add { "ADD" } else { "COPY" };
        let from = match &a.from {
            Some(_) if add => {
                return Err(PlanError::Unsupported {
                    line: l.start_line,
                    what: "ADD --from".into(),
                    why: "only COPY reads from another stage or image".into(),
                    fix: "Use COPY --from=<stage|image> instead".into(),
                });
            }
            Some(f) => Some(self.copy_from(l, f)?),
            None => None,
        };
        let chown_text = match &a.chown {
            Some(c) => Some(self.expand(l, c)?),
            None => None,
        };
        // An empty --chmod (after expansion) is no --chmod, as in BuildKit.
        let chmod_text = match &a.chmod {
            Some(c) => Some(self.expand(l, c)?).filter(|c| !c.is_empty()),
            None => None,
        };
        let chmod = match &chmod_text {
            Some(c) => {
                Some(dockerfile::parse_chmod(c).map_err(|e| Self::invalid(l, e.to_string()))?)
            }
            None => None,
        };
        let mut written = vec![];
        for s in &a.srcs {
            written.push(self.expand(l, s)?);
        }
        let mut checksum = None;
        if let Some(c) = &a.checksum {
            let c = self.expand(l, c)?;
            if !c.is_empty() {
                self.check_checksum(l, &written)?;
                checksum = Some(parse_checksum(&c).map_err(|m| Self::invalid(l, m))?);
            }
        }
        if a.keep_git_dir.is_some() {
            return Err(PlanError::Unsupported {
                line: l.start_line,
                what: "ADD --keep-git-dir".into(),
                why: "the flag only applies to git sources, and ocipush does not clone git repositories".into(),
                fix: "Clone the repository into the build context first (keeping .git if you need it), ADD or COPY it from there, and remove --keep-git-dir".into(),
            });
        }
        let mut srcs = vec![];
        let mut remote = vec![];
        for s in &written {
            if add && remote_kind(s) == Some(Remote::Http) {
                remote.push(RemoteSource {
                    url: s.clone(),
                    checksum: checksum.clone(),
                    unpack: a.unpack == Some(true),
                });
                continue;
            }
            self.refuse_remote(l, name, s)?;
            srcs.push(if from.is_some() && !s.starts_with('/') {
                format!("/{s}")
            } else {
                s.clone()
            });
        }
        let dest_raw = self.expand(l, &a.dest)?;
        if dest_raw.is_empty() {
            return Err(Self::invalid(
                l,
                "the destination is empty after expanding variables",
            ));
        }
        let mut dest = join(&self.workdir(), &dest_raw);
        if (dest_raw.ends_with('/') || dest_raw == "." || dest_raw.ends_with("/."))
            && !dest.ends_with('/')
        {
            dest.push('/');
        }
        let chown = chown_text.clone();
        let inline = self.inline_files(l, a)?;
        if from.is_some() && !inline.is_empty() {
            return Err(PlanError::Unsupported {
                line: l.start_line,
                what: "COPY --from with a heredoc source".into(),
                why: "a heredoc is not read from another stage or image".into(),
                fix: "Write the heredoc in a COPY without --from".into(),
            });
        }
        crate::layers::exclude_matcher(&a.exclude).map_err(|e| Self::invalid(l, e.to_string()))?;
        // History: BuildKit's commit message (flags it prints, expanded sources as written,
        // heredocs by name, the destination as written).
        let mut created_by = String::from(name);
        if a.parents {
            created_by.push_str(" --parents");
        }
        if let Some(c) = &chown_text {
            created_by.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod_text {
            created_by.push_str(&format!(" --chmod={c}"));
        }
        for s in &written {
            // A URL's credentials never reach the image's history.
            created_by.push_str(&format!(" {}", redact_url(s)));
        }
        for f in &inline {
            created_by.push_str(&format!(" <<{}", f.name));
        }
        created_by.push_str(&format!(" {dest_raw} # buildkit"));
        self.layers.push(LayerStep::Copy {
            line: l.start_line,
            srcs,
            dest,
            chown,
            chmod,
            extract: add && a.unpack.unwrap_or(true),
            from,
            inline,
            exclude: a.exclude.clone(),
            parents: a.parents,
            link: a.link,
            remote,
            merge_dirs: a.merge_dirs,
        });
        self.history(created_by, false);
        Ok(())
    }

    /// `ADD --checksum`: BuildKit accepts it only for one HTTP(S) or git source; ocipush
    /// verifies an HTTP(S) download against it, and refuses a git source afterwards.
    fn check_checksum(&self, l: &Located, srcs: &[String]) -> Result<(), PlanError> {
        let [src] = srcs else {
            return Err(Self::invalid(
                l,
                "--checksum can't be specified for multiple sources: give each checked source its own ADD",
            ));
        };
        if remote_kind(src).is_none() {
            return Err(Self::invalid(
                l,
                format!(
                    "--checksum requires HTTP(S) or Git sources, and {src:?} is a path in the build context: remove --checksum (the context's files are used as they are)"
                ),
            ));
        }
        Ok(())
    }

    /// URLs and git repositories: BuildKit refuses them in COPY and fetches them in ADD;
    /// ocipush downloads ADD's URLs (see `copy`) and clones nothing.
    fn refuse_remote(&self, l: &Located, name: &str, src: &str) -> Result<(), PlanError> {
        let Some(kind) = remote_kind(src) else {
            return Ok(());
        };
        let (why, fix) = match (kind, name) {
            (Remote::Git, "ADD") => (
                "ocipush does not clone git repositories during a build",
                "Clone the repository into the build context first, then ADD or COPY it from there",
            ),
            (Remote::Http, _) => (
                "COPY cannot read a URL (BuildKit refuses it too: source can't be a URL for COPY)",
                "Download the file into the build context first and COPY it from there",
            ),
            (Remote::Git, _) => (
                "COPY cannot read a git repository (BuildKit refuses it too: source can't be a git ref for COPY)",
                "Clone the repository into the build context first and COPY it from there",
            ),
        };
        Err(PlanError::Unsupported {
            line: l.start_line,
            what: format!("{name} {}", redact_url(src)),
            why: why.into(),
            fix: fix.into(),
        })
    }

    /// The heredoc sources as files: bodies expanded with the stage's ARG/ENV unless the
    /// delimiter was quoted (BuildKit's `SourcesAndDest.ExpandRaw`).
    fn inline_files(&self, l: &Located, a: &CopyArgs) -> Result<Vec<InlineFile>, PlanError> {
        let mut out = vec![];
        for src in &a.inline {
            if src.name.contains('/') || src.name == "." || src.name == ".." {
                return Err(Self::invalid(
                    l,
                    format!(
                        "heredoc name {:?} cannot be a file name: it must be one path component (put directories in the destination)",
                        src.name
                    ),
                ));
            }
            let data = if src.expand {
                let lookup = |n: &str| self.lookup(n);
                dockerfile::expand_heredoc(&src.data, &lookup).map_err(|e| PlanError::Expand {
                    line: l.start_line,
                    instruction: keyword(l),
                    message: e.to_string(),
                })?
            } else {
                src.data.clone()
            };
            out.push(InlineFile {
                name: src.name.clone(),
                data,
            });
        }
        Ok(out)
    }

    /// `--from=<stage name|index|image>`: an earlier stage, else an image. A number or a stage
    /// name that is not defined before this stage is an error.
    fn copy_from(&self, l: &Located, raw: &str) -> Result<CopyFrom, PlanError> {
        let from = self.expand(l, raw)?;
        if from.is_empty() {
            return Err(Self::invalid(
                l,
                "--from is empty after expanding variables",
            ));
        }
        if let Some(i) = self.ctx.stages.lookup(&from, self.stage_index) {
            return Ok(CopyFrom::Stage(i));
        }
        let lower = from.to_ascii_lowercase();
        let later = self
            .ctx
            .stages
            .stages
            .iter()
            .any(|s| s.name.as_deref() == Some(lower.as_str()));
        if later || from.parse::<usize>().is_ok() {
            return Err(PlanError::UnknownStage {
                line: l.start_line,
                name: from,
            });
        }
        Ok(CopyFrom::Image(from))
    }
}

/// The instruction's name as written, upper case (`COPY`).
pub(crate) fn keyword(l: &Located) -> String {
    l.original
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

/// The instruction's text after its name.
fn original_args(l: &Located) -> &str {
    let t = l.original.trim_start();
    t.split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim_start())
}

fn valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-')
}

/// Join `p` onto the directory `base` unless absolute.
fn join(base: &str, p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else if base.ends_with('/') {
        format!("{base}{p}")
    } else {
        format!("{base}/{p}")
    }
}

/// `path.Clean`, rooted: WORKDIR paths are always absolute.
fn clean_path(p: &str) -> String {
    crate::layers::glob::clean(&format!("/{p}"))
}

/// Go's `%q` of a string slice: `["sh" "-c" "echo hello"]`, as BuildKit writes history.
fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
#[path = "stage_flags_tests.rs"]
mod flags_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn copy_froms(text: &str) -> Result<Vec<Option<CopyFrom>>, PlanError> {
        let df = dockerfile::parse(text).unwrap();
        let auto = crate::plan::platform_args(&Platform::linux_amd64(), &Platform::linux_amd64());
        let stages = crate::plan::plan_stages(&df, &Default::default(), &auto)?;
        let last = stages.stages.last().unwrap().clone();
        let ctx = StageContext {
            stages: &stages,
            build_args: &BTreeMap::new(),
            auto_args: &auto,
            platform: &Platform::linux_amd64(),
            epoch: 0,
        };
        let plan = plan_stage(&last, None, &ctx)?;
        Ok(plan
            .layers
            .into_iter()
            .map(|l| match l {
                LayerStep::Copy { from, .. } => from,
                LayerStep::Mkdir { .. } | LayerStep::Run(_) => None,
            })
            .collect())
    }

    #[test]
    fn copy_from_stage_index_or_image() {
        let got = copy_froms(
            "FROM scratch AS Build\nFROM scratch\nARG TARGETARCH\n\
             COPY --from=build /a /a\nCOPY --from=0 /a /b\n\
             COPY --from=tools-${TARGETARCH}:1 /a /c\nCOPY a /d\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                Some(CopyFrom::Stage(0)),
                Some(CopyFrom::Stage(0)),
                Some(CopyFrom::Image("tools-amd64:1".into())),
                None
            ]
        );
        let e = copy_froms("FROM scratch\nCOPY --from=1 /a /b\n").unwrap_err();
        assert!(matches!(e, PlanError::UnknownStage { line: 2, .. }), "{e}");
        let e = copy_froms("FROM scratch AS x\nCOPY --from=x /a /b\n").unwrap_err();
        assert!(e.to_string().contains("stage \"x\" is not defined"), "{e}");
    }

    #[test]
    fn paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("a/../.."), "/");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(join("/app", "x"), "/app/x");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(
            go_quote_list(&["sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["sh" "-c" "echo \"hi\""]"#
        );
    }
}
