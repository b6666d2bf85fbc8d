//! Planning errors: each names the Dockerfile line, what is wrong and what to do.

/// Why a Dockerfile cannot be turned into an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The Dockerfile has no `FROM`.
    #[error(
        "Dockerfile:{line}: no FROM instruction before {instruction}: a Dockerfile must start with FROM (only ARG may come before it)"
    )]
    NoFrom {
        /// The line of the first instruction.
        line: usize,
        /// That instruction.
        instruction: String,
    },
    /// The Dockerfile has no instructions at all.
    #[error(
        "the Dockerfile has no FROM instruction: add e.g. `FROM alpine:3.20` or `FROM scratch`"
    )]
    Empty,
    /// An instruction ocipush cannot carry out.
    #[error("Dockerfile:{line}: {what} is not supported: {why}. {fix}")]
    Unsupported {
        /// Line.
        line: usize,
        /// What (`RUN`, `ADD <url>`, `COPY --from`).
        what: String,
        /// Why not.
        why: String,
        /// What to do instead.
        fix: String,
    },
    /// An instruction's value is invalid.
    #[error("Dockerfile:{line}: {instruction}: {message}")]
    Invalid {
        /// Line.
        line: usize,
        /// Instruction name.
        instruction: String,
        /// What is wrong.
        message: String,
    },
    /// Variable expansion failed (e.g. `${X:?message}`).
    #[error("Dockerfile:{line}: {instruction}: {message}")]
    Expand {
        /// Line.
        line: usize,
        /// Instruction name.
        instruction: String,
        /// The expansion error.
        message: String,
    },
    /// `--target` names no stage.
    #[error("build target stage {0:?} not found in the Dockerfile")]
    UnknownTarget(String),
    /// `FROM <stage>` or `COPY --from=<stage>` refers to a later or missing stage.
    #[error("Dockerfile:{line}: stage {name:?} is not defined before this line")]
    UnknownStage {
        /// Line.
        line: usize,
        /// The name used.
        name: String,
    },
    /// The Dockerfile did not parse.
    #[error(transparent)]
    Parse(#[from] crate::dockerfile::ParseError),
}
