//! Command-line arguments (clap), raw as typed; `validate` turns them into library options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build container images from Dockerfiles and push them to OCI registries and Amazon ECR,
/// with no Docker daemon and no container runtime.
#[derive(Debug, Parser)]
#[command(
    name = "ocipush",
    version,
    about,
    subcommand_negates_reqs = true,
    override_usage = "ocipush [OPTIONS] <DOCKERFILE> <DESTINATION>\n       ocipush [-v|-q] <COMMAND> [ARGS]"
)]
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
    /// No progress output, only errors (the same as --progress quiet).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How progress is shown on stderr: auto (bars on a terminal, else lines), tty, plain,
    /// rawjson (one JSON object per line), quiet.
    #[arg(long, value_enum, global = true, default_value_t = super::progress::ProgressMode::Auto)]
    pub progress: super::progress::ProgressMode,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build DOCKERFILE and push it to DESTINATION (the default command).
    Build(Box<BuildArgs>),
    /// Copy an image or a whole index between registries and OCI layouts (oci:<dir>[:tag]).
    Copy(CopyArgs),
    /// Print the least-privilege IAM policy a push to an ECR repository needs (and, with --trust,
    /// the role's trust policy).
    #[cfg(feature = "ecr")]
    IamPolicy(IamPolicyArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff, `man -l -` reads it) to stdout.
    Man,
}

/// `ocipush iam-policy`.
#[cfg(feature = "ecr")]
#[derive(Debug, Args, Clone)]
pub struct IamPolicyArgs {
    /// The ECR repository: <account>.dkr.ecr.<region>.amazonaws.com/<name>, or Amazon ECR
    /// Public's public.ecr.aws/<registry alias>/<name>.
    #[arg(value_name = "ECR_REPOSITORY")]
    pub repository: String,
    /// Amazon ECR Public only: the 12-digit account that owns the registry alias, for the
    /// repository ARN (without it the ARN has `*` for the account).
    #[arg(long, value_name = "ACCOUNT_ID")]
    pub account: Option<String>,
    /// Also print the role's trust policy: ec2 | account:<id>[:<external-id>] | github:<owner>/<repo>.
    #[arg(long, value_name = "WHO")]
    pub trust: Option<String>,
    /// The push creates the repository (--create-repository): adds ecr:CreateRepository.
    #[arg(long = "create-repository")]
    pub create_repository: bool,
    /// Accepted like the push's; adds nothing: CreateRepository carries the setting.
    #[arg(long = "image-tag-mutability", value_name = "MUTABLE|IMMUTABLE")]
    pub image_tag_mutability: Option<String>,
    /// Accepted like the push's; adds nothing: CreateRepository carries the setting.
    #[arg(long = "scan-on-push")]
    pub scan_on_push: bool,
    /// The push starts an image scan (--scan): adds ecr:StartImageScan.
    #[arg(long)]
    pub scan: bool,
    /// A base image pulled from ECR (repeatable): adds the read actions on that repository.
    #[arg(long = "base", value_name = "ECR_IMAGE")]
    pub base_images: Vec<String>,
    /// A base image pulled through an ECR pull-through-cache repository (repeatable): adds the
    /// read actions, ecr:BatchImportUpstreamImage and ecr:CreateRepository (the cache's first
    /// pull creates it) on that repository.
    #[arg(long = "pull-through-base", value_name = "ECR_IMAGE")]
    pub pull_through_bases: Vec<String>,
}

// ---- `ocipush copy` (platforms work) ----

/// `ocipush copy`.
#[derive(Debug, Args, Clone)]
pub struct CopyArgs {
    /// The image to copy: [registry[:port]/]repo[:tag][@digest] or oci:<dir>[:<tag>].
    #[arg(value_name = "SRC")]
    pub src: String,
    /// Where to: [registry[:port]/]repo[:tag][@digest] or oci:<dir>[:<tag>].
    #[arg(value_name = "DEST")]
    pub dest: String,
    /// Copy only these platforms of an index, os/arch[/variant], comma-separated [default: all].
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...")]
    pub platform: Option<String>,
    /// Allow plain HTTP or an unverified TLS certificate for every registry (TLS is tried first;
    /// loopback registries use HTTP anyway).
    #[arg(long)]
    pub insecure: bool,
    /// A containers-registries.conf(5) file mapping registries to other locations.
    #[arg(long = "registries-conf", value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
    /// Blob transfers in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Retries, timeouts and TLS roots (the same flags as a build's).
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
}

// ---- end `ocipush copy` ----

/// Amazon ECR options of a push.
#[cfg(feature = "ecr")]
#[derive(Debug, Args, Clone, Default)]
pub struct EcrArgs {
    /// Push through the ECR API (InitiateLayerUpload/UploadLayerPart/CompleteLayerUpload/PutImage)
    /// instead of the registry endpoint.
    #[arg(long = "ecr-api")]
    pub ecr_api: bool,
    /// The AWS profile to take credentials from.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Assume this IAM role with the credentials found (a vendor pushing into a customer's account).
    #[arg(long = "role-arn", value_name = "ARN")]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires.
    #[arg(long = "external-id", value_name = "ID", requires = "role_arn")]
    pub external_id: Option<String>,
    /// The AssumeRole session name [default: ocipush].
    #[arg(long = "role-session-name", value_name = "NAME", requires = "role_arn")]
    pub role_session_name: Option<String>,
    /// The assumed role's session length, in seconds (900-43200).
    #[arg(long = "role-duration", value_name = "SECONDS", requires = "role_arn", value_parser = clap::value_parser!(u64).range(900..=43200))]
    pub role_duration: Option<u64>,
    /// Create the ECR repository if it does not exist.
    #[arg(long = "create-repository")]
    pub create_repository: bool,
    /// Tag mutability of a repository created by --create-repository.
    #[arg(long = "image-tag-mutability", value_name = "MUTABLE|IMMUTABLE", requires = "create_repository", value_parser = ["MUTABLE", "IMMUTABLE"])]
    pub image_tag_mutability: Option<String>,
    /// Turn on scan-on-push for a repository created by --create-repository.
    #[arg(long = "scan-on-push", requires = "create_repository")]
    pub scan_on_push: bool,
    /// Start an image scan after the push.
    #[arg(long)]
    pub scan: bool,
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
    /// Write what was pushed as JSON to FILE (buildx's keys: containerimage.digest,
    /// containerimage.descriptor, containerimage.config.digest, image.name; plus
    /// ocipush.platforms).
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// A named build context, NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG|@DIGEST]
    /// (repeatable): what `FROM NAME`, a stage `AS NAME` and `COPY --from=NAME` use instead.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// An annotation of the image manifest, KEY=VALUE (repeatable; buildx's `--annotation`
    /// at its default `manifest` level).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// A build secret for `RUN --mount=type=secret`, id=ID[,src=PATH|,env=VAR][,type=file|env]
    /// (repeatable; buildx's syntax: with neither src nor env, the variable ID if set, else the
    /// file ID). Its content never reaches the image, the cache or the output.
    #[arg(long = "secret", value_name = "id=ID[,src=PATH|,env=VAR]")]
    pub secrets: Vec<String>,
    /// Manifest and config media types.
    #[arg(long, value_enum, default_value_t = FormatArg::Oci)]
    pub format: FormatArg,
    /// Target platform(s), os/arch[/variant], comma-separated: one image per platform, pushed
    /// as an index when more than one [default: the host's platform].
    #[arg(long, value_name = "OS/ARCH[/VARIANT],...")]
    pub platform: Option<String>,
    /// The stage to build [default: the last].
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Allow plain HTTP or an unverified TLS certificate for every registry (TLS is tried first;
    /// loopback registries use HTTP anyway).
    #[arg(long)]
    pub insecure: bool,
    /// A containers-registries.conf(5) file mapping registries to other locations.
    #[arg(long = "registries-conf", value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
    /// Layer compression: gzip[:level] (0-9), zstd[:level] (1-22) or none.
    #[arg(long, default_value = "gzip", value_name = "ALGO[:LEVEL]")]
    pub compression: String,
    /// Blob uploads in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Amazon ECR.
    #[cfg(feature = "ecr")]
    #[command(flatten)]
    pub ecr: EcrArgs,
    /// Retries, timeouts and TLS roots.
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
    /// Speed: compression threads and the layer cache.
    #[command(flatten)]
    pub perf: PerfArgs,
}

/// How hard to try, how long to wait, whom to trust (reliability block).
#[derive(Debug, Args, Clone)]
pub struct ReliabilityArgs {
    /// Retries of a registry step that failed transiently (connection errors, timeouts, 408,
    /// 429, 5xx), with exponential backoff and jitter, honouring Retry-After; 0 = no retry.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,
    /// Give up on a registry that makes no progress for this many seconds (connecting, waiting
    /// for an answer, or moving data); a step and its retries stop after (N+1) x this. A docker
    /// credential helper that has not answered within this time is stopped.
    #[arg(long, default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,
    /// Also trust the CA certificates in this PEM file (repeatable), besides the system roots.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Upload layers in PATCH chunks of this size (bytes, or e.g. 4MiB, 16MiB; 1MiB-4GiB)
    /// [default: per registry: ghcr.io 4MiB, others 16MiB]. Raised to 5MiB on Amazon ECR and to
    /// the registry's OCI-Chunk-Min-Length; lowered when the registry answers "too large".
    #[arg(long = "chunk-size", value_name = "SIZE", value_parser = ocipush::registry::parse_chunk_size)]
    pub chunk_size: Option<u64>,
}

// ---- Performance options (layer cache, compression threads) ----

/// Speed options of a build: compression threads and the local layer cache.
#[derive(Debug, Args, Clone, Default)]
pub struct PerfArgs {
    /// Threads compressing each layer [default: one per core]; the output does not depend on it.
    #[arg(long = "compress-threads", default_value_t = 0, value_name = "N", hide_default_value = true, value_parser = clap::value_parser!(u64).range(0..=256))]
    pub compress_threads: u64,
    /// The layer cache directory [default: $XDG_CACHE_HOME/ocipush, else ~/.cache/ocipush].
    #[arg(long = "cache-dir", value_name = "DIR", env = "OCIPUSH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build every layer afresh: neither read nor fill the layer cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
}

/// `--format`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum FormatArg {
    /// OCI image spec media types.
    Oci,
    /// Docker manifest v2 schema 2 media types.
    Docker,
}
