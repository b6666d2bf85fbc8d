//! The syntax tree [`parse`](super::parse) produces: the parsed [`Dockerfile`], its parser
//! [`Directives`], one [`Node`] per instruction, and non-fatal [`Warning`]s.
//!
//! The shape mirrors BuildKit's `parser.Node`, flattened: a node's `args` are BuildKit's
//! `Next` chain, and [`Node::next`] holds the nested instruction of an `ONBUILD`.

use super::dump::go_quote;

/// A parsed Dockerfile: directives, instructions in order, and warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The parser directives found at the top of the file.
    pub directives: Directives,
    /// One node per instruction, in file order.
    pub nodes: Vec<Node>,
    /// Non-fatal problems (e.g. an invalid JSON array read as shell form).
    pub warnings: Vec<Warning>,
}

impl Dockerfile {
    /// BuildKit's dump of the whole file: one line per instruction, each `(…)`.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            out.push('(');
            out.push_str(&node.dump());
            out.push_str(")\n");
        }
        out
    }
}

/// Parser directives (`# escape=`, `# syntax=`, `# check=`), read only from the first lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape and line-continuation character: `\` (default) or `` ` ``.
    pub escape: char,
    /// The `# syntax=` value, if given (e.g. `docker/dockerfile:1`).
    pub syntax: Option<String>,
    /// The `# check=` value, if given (e.g. `skip=all;error=true`).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
        }
    }
}

/// A non-fatal problem found while parsing, with the line it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line number in the Dockerfile.
    pub line: usize,
    /// What is wrong and what was done about it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (Dockerfile:{})", self.message, self.line)
    }
}

/// One instruction as BuildKit's parser sees it: name, flags and syntactic arguments.
///
/// Arguments are not expanded and, for `ENV`/`LABEL`/`ARG`, keep their quotes: quote removal
/// is part of [`expand_word`](super::expand_word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction name in lower case (`from`, `copy`, …). Unknown names are kept too.
    pub instruction: String,
    /// Leading `--name[=value]` flags, as written (quotes removed), without a final `--`.
    pub flags: Vec<String>,
    /// The arguments as BuildKit's per-instruction line parser splits them. `ENV` and
    /// `LABEL` give `key, value, sep` triples (sep `"="` or `""` for the legacy form).
    /// `HEALTHCHECK` gives the type (`CMD`, `NONE`) then the command. An unknown
    /// instruction has one empty argument, as in BuildKit.
    pub args: Vec<String>,
    /// Whether the arguments were given as a JSON array (exec form).
    pub json: bool,
    /// The logical line: continuation lines joined, comments inside it dropped.
    pub original: String,
    /// 1-based line where the instruction starts.
    pub start_line: usize,
    /// 1-based line where it ends (continuations, and comments within them, included).
    pub end_line: usize,
    /// The instruction an `ONBUILD` wraps.
    pub next: Option<Box<Node>>,
    /// The here-documents read after the instruction (`COPY <<EOF /x` … `EOF`), in the order
    /// their `<<NAME` words appear. Only `ADD`, `COPY` and `RUN` in shell form (also under
    /// `ONBUILD`) read them, as BuildKit's parser does.
    pub heredocs: Vec<Heredoc>,
}

/// One here-document: BuildKit's `parser.Heredoc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with its quotes removed (`EOF` for `<<'EOF'`): also the file name a
    /// `COPY`/`ADD` heredoc gets.
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub file_descriptor: u32,
    /// Whether variables in the body are expanded: no part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-NAME`: leading tabs are stripped from the body's lines (and from the terminator).
    pub chomp: bool,
    /// The body as written, every line with its line ending, the terminator line excluded.
    /// Leading tabs are still there when `chomp` (strip them with [`Heredoc::chomped`]).
    pub content: String,
}

impl Heredoc {
    /// The body as an instruction uses it: with `<<-`, leading tabs removed from every line
    /// (BuildKit's `ChompHeredocContent`).
    pub fn chomped(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        chomp(&self.content)
    }
}

/// Remove the leading tabs of every line (`(?m)^\t+`).
pub(crate) fn chomp(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

impl Node {
    /// BuildKit's `Node.Dump()` of this instruction, without the surrounding parentheses:
    /// `copy ["--from=a"] "src" "dst"`, `onbuild (run "echo")`.
    pub fn dump(&self) -> String {
        let mut s = self.instruction.to_lowercase();
        if !self.flags.is_empty() {
            s.push_str(" [");
            let quoted: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(&quoted.join(" "));
            s.push(']');
        }
        for arg in &self.args {
            s.push(' ');
            s.push_str(&go_quote(arg));
        }
        if let Some(inner) = &self.next {
            s.push_str(" (");
            s.push_str(&inner.dump());
            s.push(')');
        }
        s.trim().to_string()
    }
}
