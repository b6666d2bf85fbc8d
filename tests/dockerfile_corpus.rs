//! Conformance against BuildKit's own parser corpus (`shared/testdata/buildkit-parser`):
//! every positive case must dump exactly to its `result`, every negative case must fail,
//! and `testfile-line` must give BuildKit's start/end lines. Each test reports all failing
//! cases at once.

use std::fs;
use std::path::{Path, PathBuf};

use ocipush::dockerfile::parse;

/// The corpus directory: `../shared` beside the checkout, or two levels up (git worktrees).
fn corpus() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [manifest.join("../shared"), manifest.join("../../shared")];
    for shared in &candidates {
        let dir = shared.join("testdata/buildkit-parser");
        if dir.join("README.md").is_file() {
            return dir;
        }
    }
    panic!(
        "BuildKit parser corpus not found: looked for testdata/buildkit-parser in {:?}",
        candidates
    );
}

/// The case directories under `corpus()/sub`, sorted.
fn cases(sub: &str) -> Vec<PathBuf> {
    let dir = corpus().join(sub);
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn positive_cases_dump_exactly() {
    let cases = cases("testfiles");
    assert!(
        cases.len() >= 30,
        "expected the full corpus, found {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let text = read(&dir.join("Dockerfile"));
        let expected = read(&dir.join("result"));
        match parse(&text) {
            Ok(df) => {
                let got = df.dump();
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        name(dir)
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", name(dir))),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} positive cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn invalid_json_cases_warn_with_their_line() {
    let mut failures = Vec::new();
    for dir in cases("testfiles") {
        let n = name(&dir);
        if !n.starts_with("jeztah-invalid-json-") || n.contains("json-inside-string") {
            continue;
        }
        match parse(&read(&dir.join("Dockerfile"))) {
            Ok(df) if df.warnings.iter().any(|w| w.line == 1) => {}
            Ok(df) => failures.push(format!("{n}: no warning on line 1: {:?}", df.warnings)),
            Err(e) => failures.push(format!("{n}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_fail() {
    let cases = cases("testfiles-negative");
    assert!(!cases.is_empty(), "no negative cases found");
    let mut failures = Vec::new();
    for dir in &cases {
        match parse(&read(&dir.join("Dockerfile"))) {
            Ok(df) => failures.push(format!(
                "{}: parsed but must fail:\n{}",
                name(dir),
                df.dump()
            )),
            Err(e) => {
                if e.line().is_none() {
                    failures.push(format!("{}: error without a line: {e}", name(dir)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} negative cases did not fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn line_numbers_match() {
    let df =
        parse(&read(&corpus().join("testfile-line/Dockerfile"))).expect("testfile-line parses");
    let lines: Vec<(usize, usize)> = df
        .nodes
        .iter()
        .map(|n| (n.start_line, n.end_line))
        .collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
    let first = df.nodes.first().map(|n| n.start_line);
    let last = df.nodes.last().map(|n| n.end_line);
    assert_eq!((first, last), (Some(5), Some(31)));
}

/// A deterministic stand-in for fuzzing: every corpus file, truncated at every character
/// and with troublesome characters spliced in, must parse or fail cleanly — never panic —
/// and so must typing and expanding what parses.
#[test]
fn mutated_corpus_never_panics() {
    use ocipush::dockerfile::{expand_word, expand_words, instructions};
    let mut texts = Vec::new();
    for sub in ["testfiles", "testfiles-negative"] {
        for dir in cases(sub) {
            texts.push(read(&dir.join("Dockerfile")));
        }
    }
    texts.push(read(&corpus().join("testfile-line/Dockerfile")));
    let splices = [
        "\\", "`", "\"", "'", "[", "]", "$", "${", "\n", "\r", "#", "\u{feff}", "<<E\n", "--", "=",
        "\u{a0}", "é",
    ];
    let vars = |name: &str| (name.len() % 2 == 0).then(|| format!("v {name}"));
    let mut checked = 0usize;
    for text in &texts {
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let stride = (boundaries.len() / 300).max(1);
        for (n, &cut) in boundaries.iter().step_by(stride).enumerate() {
            let head = text.get(..cut).unwrap_or("");
            let tail = text.get(cut..).unwrap_or("");
            let splice = splices.get(n % splices.len()).copied().unwrap_or("");
            for candidate in [head.to_string(), format!("{head}{splice}{tail}")] {
                checked += 1;
                let Ok(df) = parse(&candidate) else { continue };
                let _ = instructions(&df);
                for node in &df.nodes {
                    for arg in &node.args {
                        let _ = expand_word(arg, &vars, df.directives.escape);
                        let _ = expand_words(arg, &vars, df.directives.escape);
                    }
                    let _ = node.dump();
                }
            }
        }
    }
    assert!(checked > 5000, "only {checked} inputs checked");
}
