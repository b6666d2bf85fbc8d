//! [`instructions`]: syntax-tree nodes → typed [`Instruction`]s, as BuildKit's
//! `instructions.ParseInstruction` does. Words stay unexpanded (and, where BuildKit expands,
//! still quoted): expansion needs build-time ARG/ENV state and happens in the planner.
//! What can be checked without that state is checked here: instruction names, flags,
//! argument counts, `FROM … AS name`, HEALTHCHECK durations and retries, and literal
//! `--chmod` modes. `COPY`/`ADD` heredoc words become [`InlineSource`]s with their bodies.

use std::time::Duration;

use serde::Serialize;

use super::ast::{Dockerfile, Node, chomp};
use super::error::ParseError;
use super::flags::{Flags, Kind};
use super::heredoc::parse_heredoc;
use super::values::{parse_chmod, parse_duration};

/// Every instruction name, upper case.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Located<T> {
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line.
    pub end_line: usize,
    /// The instruction's logical line as written (continuations joined).
    pub original: String,
    /// The instruction.
    pub instruction: T,
}

/// The exec or shell form of `CMD`, `ENTRYPOINT`, `RUN` and `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandForm {
    /// JSON form: the argv, used as is.
    Exec(Vec<String>),
    /// Shell form: the command line, run with the stage's `SHELL`.
    Shell(String),
}

/// Arguments of `COPY` and `ADD`. Paths and flag values are unexpanded words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    /// Path sources, in order (may be empty when every source is a heredoc).
    pub srcs: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /x`), in order, after the path sources as BuildKit
    /// copies them.
    pub inline: Vec<InlineSource>,
    /// Destination.
    pub dest: String,
    /// Whether the paths were given as a JSON array (then they are not whitespace-split).
    pub json: bool,
    /// `--from=<stage|image>` (COPY only).
    pub from: Option<String>,
    /// `--chown=<user[:group]>`.
    pub chown: Option<String>,
    /// `--chmod=<mode>` (checked with [`parse_chmod`] here when it has no variable).
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude=<pattern>`, repeatable.
    pub exclude: Vec<String>,
    /// `--checksum=<digest>` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir[=bool]` (ADD only); `None` when not given.
    pub keep_git_dir: Option<bool>,
    /// `--unpack[=bool]` (ADD only); `None` when not given.
    pub unpack: Option<bool>,
    /// Never set by the parser: [`crate::builder`]'s copies, whose directories exist only to
    /// hold entries, leave directories that already exist in the image as they are (as a
    /// copied file's parents are) instead of giving them the source directory's metadata.
    pub merge_dirs: bool,
}

/// A heredoc source of `COPY`/`ADD` (BuildKit's `instructions.SourceContent`): a file named
/// after the delimiter holding the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    /// The delimiter, quotes removed: the file's name.
    pub name: String,
    /// The body (leading tabs already removed for `<<-`), not yet expanded.
    pub data: String,
    /// Whether the body is expanded with the stage's ARG/ENV ([`expand_heredoc`](super::expand_heredoc)):
    /// the delimiter was not quoted.
    pub expand: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited health check.
    None,
    /// `HEALTHCHECK [flags] CMD …`. Durations are `None` when not given or `0` (both
    /// mean "inherit"); `retries` is `None` when not given.
    Cmd {
        /// The test command.
        test: CommandForm,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// `RUN`, parsed so the planner can reject it with its line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command.
    pub command: CommandForm,
    /// `--mount=…`, repeatable.
    pub mounts: Vec<String>,
    /// `--network=…`.
    pub network: Option<String>,
    /// `--security=…`.
    pub security: Option<String>,
    /// `--device=…`, repeatable.
    pub devices: Vec<String>,
    /// Heredoc bodies (`RUN <<EOF`), `(delimiter, body as written)`, in order.
    pub heredocs: Vec<(String, String)>,
}

/// A typed Dockerfile instruction. Words are unexpanded: pass the ones BuildKit expands
/// (see [`expands`](super::expands)) through [`expand_word`](super::expand_word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    /// `FROM [--platform=p] image [AS name]`; `name` is lower-cased as BuildKit does.
    From {
        /// The base image reference (or stage name, or `scratch`).
        image: String,
        /// The stage name.
        name: Option<String>,
        /// `--platform`.
        platform: Option<String>,
    },
    /// `ARG name[=default] …`; defaults still quoted (`ARG a="x y"` gives `"x y"`).
    Arg(Vec<(String, Option<String>)>),
    /// `ENV key=value …` (or legacy `ENV key value`); keys and values still quoted.
    Env(Vec<(String, String)>),
    /// `LABEL key=value …`; keys and values still quoted.
    Label(Vec<(String, String)>),
    /// `MAINTAINER text`.
    Maintainer(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `COPY`.
    Copy(CopyArgs),
    /// `ADD`.
    Add(CopyArgs),
    /// `CMD`. A bare `CMD` is `Exec([])`.
    Cmd(CommandForm),
    /// `ENTRYPOINT`. A bare `ENTRYPOINT` is `Exec([])` (clears it).
    Entrypoint(CommandForm),
    /// `SHELL ["exe", "arg", …]`.
    Shell(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `EXPOSE` words (check each after expansion with [`parse_expose`](super::parse_expose)).
    Expose(Vec<String>),
    /// `VOLUME` paths.
    Volume(Vec<String>),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD <instruction>`: the trigger's text, as written.
    Onbuild(String),
    /// `RUN`: not executable by ocipush.
    Run(Run),
}

impl Instruction {
    /// The instruction name, upper case (`COPY`, `HEALTHCHECK`, …), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::From { .. } => "FROM",
            Instruction::Arg(_) => "ARG",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Maintainer(_) => "MAINTAINER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Run(_) => "RUN",
        }
    }
}

/// Convert every node of `df` to a typed instruction, with its lines.
pub fn instructions(df: &Dockerfile) -> Result<Vec<Located<Instruction>>, ParseError> {
    df.nodes.iter().map(instruction).collect()
}

/// The instruction name as written (for error messages), else upper case.
fn written_name(node: &Node) -> String {
    let first = node.original.split_whitespace().next().unwrap_or("");
    if first.eq_ignore_ascii_case(&node.instruction) && !first.is_empty() {
        first.to_string()
    } else {
        node.instruction.to_uppercase()
    }
}

fn instruction(node: &Node) -> Result<Located<Instruction>, ParseError> {
    let line = node.start_line;
    let name = node.instruction.to_uppercase();
    let args_err = |message: String| ParseError::Arguments {
        line,
        instruction: name.clone(),
        message,
    };
    let no_flags = || Flags::parse(&node.flags, &[], &name, line).map(|_| ());
    let exactly_one = |what: &str| -> Result<String, ParseError> {
        no_flags()?;
        match node.args.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(args_err(format!(
                "{name} requires exactly one argument: {name} {what}"
            ))),
        }
    };
    let at_least_one = |what: &str| -> Result<(), ParseError> {
        if node.args.is_empty() {
            Err(args_err(format!(
                "{name} requires at least one argument: {name} {what}"
            )))
        } else {
            Ok(())
        }
    };
    let instr = match node.instruction.as_str() {
        "from" => {
            let flags = Flags::parse(&node.flags, &[("platform", Kind::String)], &name, line)?;
            let (image, stage) = match node.args.as_slice() {
                [image] => (image.clone(), None),
                [image, as_kw, stage] if as_kw.eq_ignore_ascii_case("as") => {
                    let lower = stage.to_lowercase();
                    if !valid_stage_name(&lower) {
                        return Err(args_err(format!(
                            "invalid name for build stage: {stage:?}, name can't start with a number or contain symbols: use letters, digits, '-', '_' and '.'"
                        )));
                    }
                    (image.clone(), Some(lower))
                }
                _ => {
                    return Err(args_err(
                        "FROM requires either one or three arguments: FROM <image> [AS <name>]"
                            .into(),
                    ));
                }
            };
            Instruction::From {
                image,
                name: stage,
                platform: flags.string("platform"),
            }
        }
        "arg" => {
            no_flags()?;
            at_least_one("<name>[=<default>] ...")?;
            let mut out = Vec::new();
            for arg in &node.args {
                match arg.split_once('=') {
                    Some(("", _)) => {
                        return Err(args_err(
                            "ARG names can not be blank: write ARG <name>[=<default>]".into(),
                        ));
                    }
                    Some((k, v)) => out.push((k.to_string(), Some(v.to_string()))),
                    None => out.push((arg.clone(), None)),
                }
            }
            Instruction::Arg(out)
        }
        "env" | "label" => {
            no_flags()?;
            at_least_one("<key>=<value> ...")?;
            let mut pairs = Vec::new();
            for triple in node.args.chunks(3) {
                match triple {
                    [k, v, _] if !k.is_empty() => pairs.push((k.clone(), v.clone())),
                    [_, _, _] => {
                        return Err(args_err(format!(
                            "{name} names can not be blank: write {name} <key>=<value>"
                        )));
                    }
                    _ => return Err(args_err(format!("Bad input to {name}, too many arguments"))),
                }
            }
            if node.instruction == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "maintainer" => Instruction::Maintainer(exactly_one("<name>")?),
        "workdir" => Instruction::Workdir(exactly_one("<path>")?),
        "user" => Instruction::User(exactly_one("<user>[:<group>]")?),
        "stopsignal" => Instruction::StopSignal(exactly_one("<signal>")?),
        "copy" | "add" => copy_args(node, &name, line)?,
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_form(node))
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_form(node))
        }
        "shell" => {
            no_flags()?;
            at_least_one("[\"executable\", \"parameters\"]")?;
            if !node.json {
                return Err(args_err("SHELL requires the arguments to be in JSON form: SHELL [\"executable\", \"parameters\"]".into()));
            }
            Instruction::Shell(node.args.clone())
        }
        "expose" => {
            no_flags()?;
            at_least_one("<port>[/<protocol>] ...")?;
            Instruction::Expose(node.args.clone())
        }
        "volume" => {
            no_flags()?;
            at_least_one("<path> ...")?;
            let mut out = Vec::new();
            for v in &node.args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(args_err(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                out.push(v.to_string());
            }
            Instruction::Volume(out)
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(node, &name, line)?),
        "onbuild" => {
            no_flags()?;
            if !node.heredocs.is_empty() {
                return Err(args_err(
                    "heredocs are not supported in ONBUILD triggers: the trigger keeps only its first line, so the content would be lost; COPY a file from the build context in the trigger instead".into(),
                ));
            }
            let Some(inner) = &node.next else {
                return Err(args_err(
                    "ONBUILD requires at least one argument: ONBUILD <instruction>".into(),
                ));
            };
            match inner.instruction.as_str() {
                "onbuild" => {
                    return Err(args_err(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ));
                }
                "maintainer" | "from" => {
                    return Err(args_err(format!(
                        "{} isn't allowed as an ONBUILD trigger",
                        inner.instruction.to_uppercase()
                    )));
                }
                _ => {}
            }
            // The original text with the leading `ONBUILD` and the spaces after it removed.
            let text = node.original.trim_start();
            let text = text.get(7..).filter(|_| text.len() >= 7).unwrap_or("");
            Instruction::Onbuild(text.trim_start().to_string())
        }
        "run" => {
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("mount", Kind::Strings),
                    ("network", Kind::String),
                    ("security", Kind::String),
                    ("device", Kind::Strings),
                ],
                &name,
                line,
            )?;
            Instruction::Run(Run {
                command: command_form(node),
                mounts: flags.strings("mount"),
                network: flags.string("network"),
                security: flags.string("security"),
                devices: flags.strings("device"),
                heredocs: node
                    .heredocs
                    .iter()
                    .map(|h| (h.name.clone(), h.content.clone()))
                    .collect(),
            })
        }
        _ => {
            return Err(ParseError::UnknownInstruction {
                line,
                instruction: written_name(node),
            });
        }
    };
    Ok(Located {
        start_line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
        instruction: instr,
    })
}

/// BuildKit's stage-name rule: `^[a-z][a-z0-9-_.]*$`.
fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

/// `handleJSONArgs`: exec form as is; shell form is the one command line.
fn command_form(node: &Node) -> CommandForm {
    if node.json || node.args.is_empty() {
        CommandForm::Exec(node.args.clone())
    } else {
        CommandForm::Shell(node.args.join(" "))
    }
}

fn copy_args(node: &Node, name: &str, line: usize) -> Result<Instruction, ParseError> {
    let is_add = node.instruction == "add";
    let allowed: &[(&str, Kind)] = if is_add {
        &[
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
            ("exclude", Kind::Strings),
            ("unpack", Kind::Bool),
        ]
    } else {
        &[
            ("from", Kind::String),
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::Strings),
        ]
    };
    let [all_srcs @ .., dest] = node.args.as_slice() else {
        return Err(no_dest(name, line));
    };
    if all_srcs.is_empty() {
        return Err(no_dest(name, line));
    }
    let flags = Flags::parse(&node.flags, allowed, name, line)?;
    let chmod = flags.string("chmod");
    if let Some(mode) = chmod
        .as_deref()
        .filter(|m| !m.contains('$') && !m.is_empty())
    {
        parse_chmod(mode).map_err(|e| e.at_line(line))?;
    }
    // BuildKit's parseSourcesAndDest (frontend/dockerfile/instructions/parse.go): a source
    // word that reads as `<<NAME` is the heredoc of that name (empty when the line read none,
    // e.g. in JSON form); the destination cannot be one.
    if matches!(parse_heredoc(dest), Ok(Some(_))) {
        return Err(ParseError::Arguments {
            line,
            instruction: name.to_string(),
            message: format!(
                "{name} cannot accept a heredoc as a destination: write {name} <<EOF <dest>, with the destination path last"
            ),
        });
    }
    let mut srcs = Vec::new();
    let mut inline = Vec::new();
    for src in all_srcs {
        match parse_heredoc(src) {
            Ok(Some(word)) => {
                let body = node.heredocs.iter().rev().find(|h| h.name == word.name);
                let content = body.map(|h| h.content.as_str()).unwrap_or("");
                inline.push(InlineSource {
                    data: if word.chomp {
                        chomp(content)
                    } else {
                        content.to_string()
                    },
                    name: word.name,
                    expand: word.expand,
                });
            }
            _ => srcs.push(src.clone()),
        }
    }
    let args = CopyArgs {
        srcs,
        inline,
        dest: dest.clone(),
        json: node.json,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod,
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.strings("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.opt_bool("keep-git-dir"),
        unpack: flags.opt_bool("unpack"),
        merge_dirs: false,
    };
    Ok(if is_add {
        Instruction::Add(args)
    } else {
        Instruction::Copy(args)
    })
}

fn no_dest(name: &str, line: usize) -> ParseError {
    ParseError::Arguments {
        line,
        instruction: name.to_string(),
        message: format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined: {name} <src>... <dest>"
        ),
    }
}

fn healthcheck(node: &Node, name: &str, line: usize) -> Result<Healthcheck, ParseError> {
    let args_err = |message: String| ParseError::Arguments {
        line,
        instruction: name.to_string(),
        message,
    };
    let Some((typ, rest)) = node.args.split_first() else {
        return Err(args_err("HEALTHCHECK requires at least one argument: HEALTHCHECK [options] CMD <command> or HEALTHCHECK NONE".into()));
    };
    let typ = typ.to_uppercase();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(args_err("HEALTHCHECK NONE takes no arguments".into()));
        }
        return Ok(Healthcheck::None);
    }
    let flags = Flags::parse(
        &node.flags,
        &[
            ("interval", Kind::String),
            ("timeout", Kind::String),
            ("start-period", Kind::String),
            ("start-interval", Kind::String),
            ("retries", Kind::String),
        ],
        name,
        line,
    )?;
    if typ != "CMD" {
        return Err(args_err(format!(
            "Unknown type {typ:?} in HEALTHCHECK (try CMD)"
        )));
    }
    if rest.is_empty() {
        return Err(args_err("Missing command after HEALTHCHECK CMD".into()));
    }
    let test = if node.json {
        CommandForm::Exec(rest.to_vec())
    } else {
        CommandForm::Shell(rest.join(" "))
    };
    let duration = |flag: &str| -> Result<Option<Duration>, ParseError> {
        let Some(v) = flags.string(flag).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let d = parse_duration(&v).map_err(|e| match e {
            ParseError::InvalidValue {
                value, expected, ..
            } => ParseError::InvalidValue {
                line: Some(line),
                what: format!("HEALTHCHECK --{flag}"),
                value,
                expected,
            },
            other => other.at_line(line),
        })?;
        if d.is_zero() {
            return Ok(None);
        }
        if d < Duration::from_millis(1) {
            return Err(args_err(format!(
                "Interval \"{flag}\" cannot be less than 1ms"
            )));
        }
        Ok(Some(d))
    };
    let retries = match flags.string("retries").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let n: u32 = v.parse().map_err(|_| ParseError::InvalidValue {
                line: Some(line),
                what: "HEALTHCHECK --retries".into(),
                value: v.clone(),
                expected: "expected a non-negative whole number".into(),
            })?;
            if n > i32::MAX as u32 {
                return Err(ParseError::value(
                    "HEALTHCHECK --retries",
                    &v,
                    "the number is too large",
                )
                .at_line(line));
            }
            Some(n)
        }
    };
    Ok(Healthcheck::Cmd {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    })
}

#[cfg(test)]
mod tests;
