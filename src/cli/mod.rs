//! The command line: parse arguments, set up logging, run the job, map the outcome to an exit
//! code and one clear message.

mod args;
mod copy;
#[cfg(feature = "ecr")]
mod ecr;
mod metadata;
mod progress;
mod redacted_log;
mod reliability;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ocipush::build::BuildArgs;
use ocipush::build::BuildOptions;
use ocipush::image::{Format, Platform};
use ocipush::layers::Compression;
use ocipush::pipeline::{Session, Target, build_and_push_platforms};
use ocipush::registries_conf::RegistriesConf;

use args::{Cli, Command, FormatArg};

/// A failure: the message shown, and the exit code (1 failure, 2 usage).
pub(crate) struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
    fn failed(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
    /// A job's error `e`: exit 130 when it is the job's cancellation (only a signal cancels
    /// the CLI's jobs, [`cancel_on_signals`]), else 1.
    fn of_job(e: impl std::fmt::Display, cancelled: bool) -> Failure {
        if cancelled {
            Failure {
                message: format!("{e} (interrupted by a signal)"),
                code: 130,
            }
        } else {
            Failure::failed(e.to_string())
        }
    }
}

/// Parse the command line. The global `-v`/`-q` may come before a subcommand; the build's own
/// options may not (they would be ignored).
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    let matches = cmd.try_get_matches_from_mut(std::env::args_os())?;
    if let Some((sub, _)) = matches.subcommand() {
        let global = ["verbose", "quiet", "progress"];
        if let Some(id) = matches.ids().find(|id| {
            !global.contains(&id.as_str())
                && matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)
        }) {
            let name = cmd
                .get_arguments()
                .find(|a| a.get_id() == id)
                .map(|a| match a.get_long() {
                    Some(l) => format!("--{l}"),
                    None => a.get_id().to_string().to_uppercase(),
                })
                .unwrap_or_else(|| id.to_string());
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("{name} is an option of the build; it cannot be used with `{sub}`"),
            ));
        }
    }
    Cli::from_arg_matches(&matches)
}

/// Run the command line and return the process exit code.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rawjson = progress_mode(&cli) == progress::ProgressMode::Rawjson;
    init_logging(cli.verbose, rawjson);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // Errors never carry a secret; scrub anyway (defence in depth, see redacted_log).
            let message = ocipush::auth::redact::scrub(&f.message);
            if rawjson {
                progress::raw_json_line(
                    "error",
                    serde_json::json!({ "message": message, "exit_code": f.code }),
                );
            } else {
                eprintln!("error: {message}");
            }
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(verbose: u8, rawjson: bool) {
    let default = match verbose {
        0 => "warn",
        1 => "ocipush=info",
        2 => "ocipush=debug",
        _ => "trace",
    };
    redacted_log::init(default, rawjson);
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let mode = progress_mode(&cli);
    let build = match cli.command {
        Some(Command::Build(b)) => *b,
        Some(Command::Copy(a)) => return copy::run(&a, mode).await,
        #[cfg(feature = "ecr")]
        Some(Command::IamPolicy(a)) => return ecr::iam_policy(&a),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "ocipush", &mut std::io::stdout());
            return Ok(());
        }
        Some(Command::Man) => {
            use clap::CommandFactory;
            return clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map_err(|e| Failure::failed(format!("cannot write the manual page: {e}")));
        }
        None => cli.build,
    };
    let (Some(dockerfile), Some(destination)) =
        (build.dockerfile.clone(), build.destination.clone())
    else {
        return Err(Failure::usage(
            "usage: ocipush [OPTIONS] <DOCKERFILE> <DESTINATION>",
        ));
    };
    let target = Target::parse(&destination)
        .map_err(|e| Failure::usage(format!("invalid destination {destination:?}: {e}")))?;
    let platforms = parse_platforms(build.platform.as_deref()).map_err(Failure::usage)?;
    let compression = parse_compression(&build.compression).map_err(Failure::usage)?;
    let build_args =
        BuildArgs::parse(build.build_args.iter().map(String::as_str)).map_err(Failure::usage)?;
    for t in &build.tags {
        if !ocipush::reference::valid_tag(t) {
            return Err(Failure::usage(format!(
                "invalid --tag {t:?}: a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with . or -"
            )));
        }
    }
    let epoch = source_date_epoch().map_err(Failure::usage)?;
    let build_contexts = ocipush::contexts::NamedContexts::parse(&build.build_contexts)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let secrets = ocipush::secrets::BuildSecrets::parse(&build.secrets)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let context = build
        .context
        .clone()
        .unwrap_or_else(|| dockerfile_dir(&dockerfile));
    if !dockerfile.is_file() {
        return Err(Failure::failed(format!(
            "cannot read Dockerfile {}: no such file",
            dockerfile.display()
        )));
    }
    if !context.is_dir() {
        return Err(Failure::failed(format!(
            "build context {} is not a directory",
            context.display()
        )));
    }

    let registries = RegistriesConf::load(build.registries_conf.as_deref())
        .map_err(|e| Failure::failed(e.to_string()))?
        .with_insecure(build.insecure);
    #[cfg(feature = "ecr")]
    let ecr_settings = ecr::settings(&build.ecr, &build.reliability, &target);
    #[cfg(feature = "ecr")]
    let credentials = ocipush::pipeline::credentials_for(
        &ecr_settings,
        reliability::helper_timeout(&build.reliability),
    );
    #[cfg(not(feature = "ecr"))]
    let credentials =
        ocipush::pipeline::default_credentials(reliability::helper_timeout(&build.reliability));
    let credentials = credentials.map_err(|e| Failure::failed(e.to_string()))?;
    let client = reliability::client(&build.reliability, credentials, build.insecure)?;
    let session =
        Session::with_client(registries, client).with_redactor(redacted_log::session_redactor());
    #[cfg(feature = "ecr")]
    let session = session.with_ecr(ecr_settings);
    let spool = tempfile::Builder::new()
        .prefix("ocipush-spool-")
        .tempdir()
        .map_err(|e| {
            Failure::failed(format!(
                "cannot create a spool directory in {}: {e}",
                std::env::temp_dir().display()
            ))
        })?;
    let mut opts = BuildOptions::new(dockerfile, context, spool.path());
    opts.build_args = build_args;
    opts.platform = platforms[0].clone();
    opts.format = match build.format {
        FormatArg::Oci => Format::Oci,
        FormatArg::Docker => Format::Docker,
    };
    opts.epoch = epoch;
    opts.compression = compression;
    opts.compress_threads = build.perf.compress_threads as usize;
    opts.target = build.target.clone();
    // BuildOptions::new has the default layer cache (LayerCache::default_dir) set.
    opts.cache_dir = if build.perf.no_cache {
        None
    } else {
        build.perf.cache_dir.clone().or(opts.cache_dir.take())
    };
    opts.build_contexts = build_contexts;
    opts.secrets = secrets;
    opts.annotations = parse_annotations(&build.annotations).map_err(Failure::usage)?;
    cancel_on_signals(opts.cancel.clone(), mode == progress::ProgressMode::Rawjson);
    let events = progress::reporter(mode, platforms.len() > 1);
    let pushed = build_and_push_platforms(
        &session,
        &opts,
        &platforms,
        &target,
        &build.tags,
        build.jobs as usize,
        &events,
    )
    .await
    .map_err(|e| {
        let cancelled = matches!(e, ocipush::pipeline::PipelineError::Cancelled);
        Failure::of_job(e, cancelled)
    })?;
    if let Some(path) = &build.metadata_file {
        let doc = metadata::document(&pushed, &target, &target.references(&build.tags));
        metadata::write(path, &doc).map_err(|e| {
            Failure::failed(format!(
                "{e} (the image was pushed: {})",
                target.pushed_name(&pushed.digest)
            ))
        })?;
    }
    println!("{}", target.pushed_name(&pushed.digest));
    Ok(())
}

/// A second signal this soon after the first is the same interruption delivered twice.
const SAME_INTERRUPTION: std::time::Duration = std::time::Duration::from_secs(1);

/// The first SIGINT or SIGTERM cancels the job (the build stops, open uploads are closed,
/// nothing is tagged, temporary files are removed on the way out); a second one, a second or
/// more later, ends the process at once.
pub(crate) fn cancel_on_signals(cancel: ocipush::CancellationToken, rawjson: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::debug!("cannot listen for SIGINT/SIGTERM; an interrupt ends the process at once");
        return;
    };
    tokio::spawn(async move {
        let mut first: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if let Some(at) = first {
                // One interruption often comes twice: `timeout` (and other wrappers) pass a
                // signal on to their child and then to their whole process group. Only a
                // later one is the user insisting.
                if at.elapsed() < SAME_INTERRUPTION {
                    continue;
                }
                std::process::exit(130);
            }
            first = Some(std::time::Instant::now());
            let said = "stopping, closing open uploads (again to quit at once)";
            if rawjson {
                progress::raw_json_line("interrupted", serde_json::json!(said));
            } else {
                eprintln!("ocipush: interrupted; {said}");
            }
            cancel.cancel();
        }
    });
}

/// `--annotation KEY=VALUE`s. buildx's level prefixes (`index:`, `manifest-descriptor:`, …)
/// are refused rather than taken as part of the key: only manifest annotations are written.
fn parse_annotations(
    items: &[String],
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("invalid --annotation {item:?}: expected KEY=VALUE"))?;
        if let Some((level, _)) = k.split_once(':')
            && [
                "index",
                "manifest",
                "index-descriptor",
                "manifest-descriptor",
            ]
            .contains(&level.split('[').next().unwrap_or(level))
        {
            if level != "manifest" {
                return Err(format!(
                    "invalid --annotation {item:?}: ocipush writes manifest annotations only (no {level}: level)"
                ));
            }
            out.insert(k["manifest:".len()..].to_string(), v.to_string());
            continue;
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--progress`, with `-q` meaning quiet.
fn progress_mode(cli: &Cli) -> progress::ProgressMode {
    if cli.quiet {
        progress::ProgressMode::Quiet
    } else {
        cli.progress
    }
}

/// `--platform a,b,c`: each os/arch[/variant], no duplicates; the host's platform by default.
pub(crate) fn parse_platforms(s: Option<&str>) -> Result<Vec<Platform>, String> {
    let Some(s) = s else {
        return Ok(vec![ocipush::build::host_platform()]);
    };
    let mut out: Vec<Platform> = Vec::new();
    for item in s.split(',').map(str::trim) {
        let p = Platform::parse(item).ok_or_else(|| {
            format!("invalid --platform {item:?}: expected os/arch[/variant], e.g. linux/amd64")
        })?;
        if out.iter().any(|q| q.matches(&p) && p.matches(q)) {
            return Err(format!("--platform lists {item} twice"));
        }
        out.push(p);
    }
    Ok(out)
}

fn dockerfile_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    let (algo, level) = match s.split_once(':') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let level = match level {
        Some(l) => Some(
            l.parse::<u32>()
                .map_err(|_| format!("invalid --compression level {l:?}: expected a number"))?,
        ),
        None => None,
    };
    match algo {
        "gzip" => {
            let level = level.unwrap_or(ocipush::layers::DEFAULT_GZIP_LEVEL);
            if level > 9 {
                return Err(format!("invalid gzip level {level}: expected 0-9"));
            }
            Ok(Compression::Gzip { level })
        }
        "zstd" => {
            let level = level.map_or(ocipush::layers::DEFAULT_ZSTD_LEVEL, |l| l as i32);
            if !(1..=22).contains(&level) {
                return Err(format!("invalid zstd level {level}: expected 1-22"));
            }
            Ok(Compression::Zstd { level })
        }
        "none" if level.is_none() => Ok(Compression::None),
        _ => Err(format!(
            "invalid --compression {s:?}: expected gzip[:level], zstd[:level] or none"
        )),
    }
}

fn source_date_epoch() -> Result<u64, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            format!(
                "invalid SOURCE_DATE_EPOCH {v:?}: expected seconds since 1970 as a whole number"
            )
        }),
        _ => Ok(0),
    }
}
