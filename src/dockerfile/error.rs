//! [`ParseError`]: every way a Dockerfile can fail to parse, to type-check, or to expand.

/// Why a Dockerfile (or one of its words) was rejected. Every variant names the 1-based
/// Dockerfile line; value-level helpers ([`parse_chmod`](super::parse_chmod),
/// [`expand_word`](super::expand_word), …) do not know it and leave `line` as `None`
/// until the caller attaches it with [`ParseError::at_line`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The file has no instruction at all (empty, or only comments and blank lines).
    #[error(
        "file with no instructions (Dockerfile:{line}): a Dockerfile needs at least a FROM instruction"
    )]
    NoInstructions {
        /// The last line of the file.
        line: usize,
    },
    /// A parser directive (`# escape=`, `# syntax=`, `# check=`) is invalid or repeated.
    #[error("{message} (Dockerfile:{line})")]
    Directive {
        /// Line of the directive.
        line: usize,
        /// What is wrong, and what to do.
        message: String,
    },
    /// Syntax BuildKit's parser rejects (e.g. `ENV` without a value, a JSON array of non-strings).
    #[error("{message} (Dockerfile:{line})")]
    Syntax {
        /// Line where the instruction starts.
        line: usize,
        /// What is wrong, and what to do.
        message: String,
    },
    /// An instruction name that does not exist.
    #[error("unknown instruction: {instruction} (Dockerfile:{line}): valid instructions are {}", super::instructions::INSTRUCTION_NAMES.join(", "))]
    UnknownInstruction {
        /// Line where the instruction starts.
        line: usize,
        /// The name as written.
        instruction: String,
    },
    /// A `--flag` the instruction does not accept, a repeated flag, or a malformed one.
    #[error("{instruction}: {message} (Dockerfile:{line})")]
    Flag {
        /// Line where the instruction starts.
        line: usize,
        /// The instruction, upper case.
        instruction: String,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The instruction's arguments are missing, too many, or malformed.
    #[error("{message} (Dockerfile:{line})")]
    Arguments {
        /// Line where the instruction starts.
        line: usize,
        /// The instruction, upper case.
        instruction: String,
        /// What is wrong, and what is expected.
        message: String,
    },
    /// A value (a `--chmod` mode, an `EXPOSE` port, a duration) is not valid.
    #[error("invalid {what} {value:?}{}: {expected}", at(.line))]
    InvalidValue {
        /// Line, when known.
        line: Option<usize>,
        /// What kind of value (e.g. `--chmod mode`).
        what: String,
        /// The value as given.
        value: String,
        /// What is expected instead.
        expected: String,
    },
    /// Variable expansion failed (`${V:?msg}`, an unterminated quote, a bad substitution).
    #[error("{message}{}", at(.line))]
    Expand {
        /// Line, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}

fn at(line: &Option<usize>) -> String {
    match line {
        Some(n) => format!(" (Dockerfile:{n})"),
        None => String::new(),
    }
}

impl ParseError {
    /// The Dockerfile line the error concerns, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::NoInstructions { line }
            | ParseError::Directive { line, .. }
            | ParseError::Syntax { line, .. }
            | ParseError::UnknownInstruction { line, .. }
            | ParseError::Flag { line, .. }
            | ParseError::Arguments { line, .. } => Some(*line),
            ParseError::InvalidValue { line, .. } | ParseError::Expand { line, .. } => *line,
        }
    }

    /// Attach a line number to a value-level error that has none yet.
    pub fn at_line(mut self, n: usize) -> Self {
        if let ParseError::InvalidValue { line, .. } | ParseError::Expand { line, .. } = &mut self {
            line.get_or_insert(n);
        }
        self
    }

    pub(crate) fn expand(message: impl Into<String>) -> Self {
        ParseError::Expand {
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn value(what: &str, value: &str, expected: &str) -> Self {
        ParseError::InvalidValue {
            line: None,
            what: what.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }
}
