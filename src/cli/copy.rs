//! `ocipush copy SRC DEST`: parse, set up a session, copy, print `DEST@sha256:…`.

use ocipush::copy::{CopyOptions, copy_image};
use ocipush::pipeline::Target;
use ocipush::registries_conf::RegistriesConf;

use super::args::CopyArgs;
use super::{Failure, cancel_on_signals, parse_platforms, progress, reliability};

/// Run `ocipush copy`.
pub(crate) async fn run(a: &CopyArgs, mode: progress::ProgressMode) -> Result<(), Failure> {
    let parse = |what: &str, s: &str| {
        Target::parse(s).map_err(|e| Failure::usage(format!("invalid {what} {s:?}: {e}")))
    };
    let src = parse("SRC", &a.src)?;
    let dest = parse("DEST", &a.dest)?;
    let platforms = match &a.platform {
        Some(p) => parse_platforms(Some(p)).map_err(Failure::usage)?,
        None => vec![],
    };
    let registries = RegistriesConf::load(a.registries_conf.as_deref())
        .map_err(|e| Failure::failed(e.to_string()))?
        .with_insecure(a.insecure);
    let session = reliability::session(&a.reliability, registries, a.insecure, &dest)?;
    let mut opts = CopyOptions::default();
    opts.platforms = platforms;
    opts.jobs = a.jobs as usize;
    cancel_on_signals(opts.cancel.clone(), mode == progress::ProgressMode::Rawjson);
    let events = progress::reporter(mode, false);
    let digest = copy_image(&session, &src, &dest, &opts, &events)
        .await
        .map_err(|e| {
            let cancelled = matches!(e, ocipush::copy::CopyError::Cancelled);
            Failure::of_job(e, cancelled)
        })?;
    println!("{}", dest.pushed_name(&digest));
    Ok(())
}
