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

mod ast;
mod dump;
mod error;
mod expand;
mod flags;
mod instructions;
mod json;
mod lexer;
mod line_parsers;
mod parser;
mod values;

pub use ast::{Directives, Dockerfile, Node, Warning};
pub use dump::go_quote;
pub use error::ParseError;
pub use expand::{expand_word, expand_words, expands};
pub use instructions::{
    CommandForm, CopyArgs, Healthcheck, INSTRUCTION_NAMES, Instruction, Located, Run, instructions,
};
pub use parser::parse;
pub use values::{parse_chmod, parse_duration, parse_expose};

#[cfg(test)]
mod snapshot_tests;
