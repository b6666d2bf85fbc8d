//! Put one file on a base image as its entrypoint and push the result — the programmatic
//! route ([`ocipush::builder`]), no Dockerfile:
//!
//! ```text
//! cargo run --example containerize -- <file> <base> <dest>
//! cargo run --example containerize -- target/release/app alpine:3.20 registry.example/app:v1
//! cargo run --example containerize -- ./hello.sh oci:base-layout:latest oci:out:v1
//! ```
//!
//! The file lands at `/app/<its name>`, mode 0755, and is the image's entrypoint. `<base>` is
//! an image reference, `scratch`, or `oci:<dir>[:<tag>]`; `<dest>` a reference or
//! `oci:<dir>[:<tag>]`. Registries are reached as the CLI reaches them (registries.conf, docker
//! credentials, Amazon ECR tokens). The last line of stdout is the pushed `name@sha256:…`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ocipush::builder::{Base, ImageBuilder, Layer};
use ocipush::events::{Event, EventSink};
use ocipush::pipeline::{Session, Target, default_credentials};
use ocipush::registries_conf::RegistriesConf;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, base, dest] = args.as_slice() else {
        eprintln!("usage: containerize <file> <base> <dest>");
        return ExitCode::from(2);
    };
    match run(file, base, dest).await {
        Ok(pushed) => {
            println!("{pushed}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("containerize: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(file: &str, base: &str, dest: &str) -> Result<String, Box<dyn std::error::Error>> {
    let name = PathBuf::from(file)
        .file_name()
        .ok_or_else(|| format!("{file} names no file"))?
        .to_string_lossy()
        .into_owned();
    let app = format!("/app/{name}");
    let base = match base.strip_prefix("oci:") {
        Some(rest) => match rest.rsplit_once(':') {
            Some((dir, tag)) if !tag.contains('/') => Base::Layout {
                dir: dir.into(),
                tag: Some(tag.into()),
            },
            _ => Base::Layout {
                dir: rest.into(),
                tag: None,
            },
        },
        None => Base::from(base),
    };
    let session = Session::new(
        RegistriesConf::load(None)?,
        default_credentials(Duration::from_secs(60))?,
        false,
    )?;
    let events: EventSink = Arc::new(|e: Event| {
        if let Event::Warning(w) = &e {
            eprintln!("warning: {w}");
        }
    });
    let pushed = ImageBuilder::from(base)
        .layer(Layer::new().file_with_mode(file, &app, 0o755))
        .entrypoint([app])
        .containerize(&session, &Target::parse(dest)?, &events)
        .await?;
    Ok(pushed.reference)
}
