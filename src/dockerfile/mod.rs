//! Dockerfile parsing, BuildKit-exact, with no I/O.
//!
//! - [`parse`]: text → [`Dockerfile`] (parser [`Directives`], one [`Node`] per instruction,
//!   [`Warning`]s), the same tree BuildKit's `parser.Parse` builds ([`Node::dump`] renders
//!   BuildKit's dump format).
//! - [`instructions`]: nodes → typed [`Instruction`]s with their lines, words left
//!   unexpanded, flags and argument counts checked.
//! - [`expand_word`] / [`expand_words`]: BuildKit's shell-word expansion (`$V`, `${V:-x}`,
//!   quote removal), applied later with build-time ARG/ENV state; [`expands`] says which
//!   instructions BuildKit expands.
//! - Value helpers for what can only be checked after expansion: [`parse_chmod`],
//!   [`parse_expose`], [`parse_duration`].
//!
//! Conformance: BuildKit's own parser corpus passes exactly (`tests/dockerfile_corpus.rs`).
//! Heredocs are read as BuildKit reads them ([`Node::heredocs`]); `COPY`/`ADD` turn them into
//! files ([`CopyArgs::inline`], bodies expanded by [`expand_heredoc`]).
//!
//! Known, deliberate differences from BuildKit:
//! - `RUN` heredocs are rejected with a clear error (ocipush runs no commands), and so are
//!   heredocs in `ONBUILD` triggers (BuildKit would store a trigger without its body);
//! - an array-looking but invalid JSON argument also records a [`Warning`];
//! - flags and the `HEALTHCHECK` type are split on Unicode characters, not bytes (Go reads
//!   those byte-wise, so a UTF-8 byte 0x85/0xA0 counts as a space there);
//! - Go's `unicode.IsPrint` in the dump is approximated (controls, non-ASCII spaces and
//!   common format characters are escaped);
//! - Go's 64 KiB line limit is not enforced;
//! - `${V#pat}`/`${V%pat}`/`${V/pat/r}` use shortest/longest shell-pattern matches rather
//!   than Go's regexp preference order (the same for all but contrived patterns), and the
//!   replacement is literal (Go would expand `$1` templates in it);
//! - `${V` at the end of a word reports "missing '}'".

mod ast;
mod dump;
mod error;
mod expand;
mod flags;
mod heredoc;
mod instructions;
mod json;
mod lexer;
mod line_parsers;
mod parser;
mod values;

pub use ast::{Directives, Dockerfile, Heredoc, Node, Warning};
pub use dump::go_quote;
pub use error::ParseError;
pub use expand::{expand_heredoc, expand_word, expand_words, expands};
pub use instructions::{
    CommandForm, CopyArgs, Healthcheck, INSTRUCTION_NAMES, InlineSource, Instruction, Located, Run,
    instructions,
};
pub use parser::parse;
pub use values::{parse_chmod, parse_duration, parse_expose};

#[cfg(test)]
mod snapshot_tests;
