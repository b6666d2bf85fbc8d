//! Command-line arguments (clap), raw as typed; `validate` turns them into library options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build container images from Dockerfiles (no RUN) and push them to OCI registries and Amazon ECR,
/// with no Docker daemon and no container runtime.
#[derive(Debug, Parser)]
#[command(name = "ocipush", version, about, args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    /// Subcommands; without one, build DOCKERFILE and push it to DESTINATION.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The build.
    #[command(flatten)]
    pub build: BuildArgs,
    /// More output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress output, only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build DOCKERFILE and push it to DESTINATION (the default command).
    Build(BuildArgs),
}

/// Options of a build + push.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// The Dockerfile to build.
    #[arg(value_name = "DOCKERFILE", required = true)]
    pub dockerfile: Option<PathBuf>,
    /// Where to push: [registry[:port]/]repo[:tag][@digest], or oci:<dir>[:<tag>] for an OCI image layout.
    #[arg(value_name = "DESTINATION", required = true)]
    pub destination: Option<String>,
    /// The build context directory [default: the Dockerfile's directory].
    #[arg(long, value_name = "DIR")]
    pub context: Option<PathBuf>,
    /// A build argument, KEY=VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// An extra tag for the pushed image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Manifest and config media types.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Target platform, os/arch[/variant].
    #[arg(long, default_value = "linux/amd64", value_name = "OS/ARCH[/VARIANT]")]
    pub platform: String,
    /// The stage to build [default: the last].
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Allow plain HTTP to every registry (loopback registries use HTTP anyway).
    #[arg(long)]
    pub insecure: bool,
    /// A containers-registries.conf(5) file mapping registries to other locations.
    #[arg(long = "registries-conf", value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
    /// Layer compression: gzip[:level] or none.
    #[arg(long, default_value = "gzip", value_name = "ALGO[:LEVEL]")]
    pub compression: String,
    /// Blob uploads in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub jobs: usize,
}

/// `--format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// OCI image spec media types.
    Oci,
    /// Docker manifest v2 schema 2 media types.
    Docker,
}
