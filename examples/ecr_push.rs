//! The reference job — Alpine with `CMD ["sh", "-c", "echo hello"]` — from a Dockerfile given
//! as text, pushed to Amazon ECR (or any registry) through the default credentials (docker
//! `config.json`, then an ECR token from the AWS credential chain: an instance role, a
//! profile, OIDC web identity…), with progress events printed as they arrive.
//!
//! ```text
//! cargo run --example ecr_push -- 123456789012.dkr.ecr.us-east-1.amazonaws.com/ec2-ecr-test:v1
//! ```
//!
//! Events reach a channel ([`ocipush::events::channel`]), so printing them never slows the
//! build; one line per event on stderr, the pushed `name@sha256:…` last on stdout.

use std::process::ExitCode;
use std::time::Duration;

use ocipush::build::BuildOptions;
use ocipush::events::Event;
use ocipush::pipeline::{Session, Target, build_and_push, default_credentials};
use ocipush::registries_conf::RegistriesConf;

const DOCKERFILE: &str = "FROM alpine:latest\nCMD [\"sh\", \"-c\", \"echo hello\"]\n";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dest] = args.as_slice() else {
        eprintln!("usage: ecr_push <repository:tag>");
        return ExitCode::from(2);
    };
    match run(dest).await {
        Ok(pushed) => {
            println!("{pushed}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ecr_push: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dest: &str) -> Result<String, Box<dyn std::error::Error>> {
    let session = Session::new(
        RegistriesConf::load(None)?,
        default_credentials(Duration::from_secs(60))?,
        false,
    )?;
    let context = tempfile::tempdir()?; // the Dockerfile copies nothing: an empty context
    let spool = tempfile::tempdir()?;
    let build = BuildOptions::from_text(DOCKERFILE, context.path(), spool.path());
    let (events, mut rx) = ocipush::events::channel();
    let printer = tokio::spawn(async move {
        while let Some(stamped) = rx.recv().await {
            match stamped.event {
                Event::BaseResolved { image, digest, .. } => eprintln!("base {image} {digest}"),
                Event::BlobExists { digest } => eprintln!("exists {digest}"),
                Event::BlobUploading { digest, size } => {
                    eprintln!("uploading {digest} ({size} bytes)")
                }
                Event::BlobProgress { digest, sent } => eprintln!("  {digest}: {sent} bytes sent"),
                Event::BlobUploaded { digest } => eprintln!("uploaded {digest}"),
                Event::ManifestPut { reference, digest } => {
                    eprintln!("manifest {digest} as {reference}")
                }
                other => eprintln!("{other:?}"),
            }
        }
    });
    let target = Target::parse(dest)?;
    let pushed = build_and_push(&session, &build, &target, &events).await;
    drop(events); // closes the channel once the job's copies are gone: the printer ends
    printer.await?;
    Ok(pushed?.reference)
}
