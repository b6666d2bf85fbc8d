//! Planner tests for one-value-per-instruction expansion and the COPY/ADD flags: heredocs,
//! `--exclude`, `--parents`, `--link`, `--chmod`, `--unpack`, `--checksum`, `--keep-git-dir`,
//! network sources, and the history BuildKit writes for them.

use std::collections::BTreeMap;

use super::*;
use crate::layers::Chmod;

/// The plan of the last stage of `text`, built on scratch with `build_args`.
fn plan_with(text: &str, build_args: &[(&str, &str)]) -> Result<StagePlan, PlanError> {
    let df = dockerfile::parse(text)?;
    let auto = crate::plan::platform_args(&Platform::linux_amd64(), &Platform::linux_amd64());
    let args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let stages = crate::plan::plan_stages(&df, &crate::plan::BuildArgs(args.clone()), &auto)?;
    let last = stages.stages.last().cloned().expect("a stage");
    let ctx = StageContext {
        stages: &stages,
        build_args: &args,
        auto_args: &auto,
        platform: &Platform::linux_amd64(),
        epoch: 0,
    };
    plan_stage(&last, None, &ctx)
}

fn plan(text: &str) -> StagePlan {
    plan_with(text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn env(p: &StagePlan, k: &str) -> Option<String> {
    p.config.env_get(k)
}

/// The last history entry's `created_by`.
fn last_history(p: &StagePlan) -> String {
    p.config
        .history
        .last()
        .and_then(|h| h.created_by.clone())
        .unwrap_or_default()
}

fn only_copy(p: &StagePlan) -> LayerStep {
    p.layers.last().cloned().expect("a layer")
}

fn err(text: &str) -> String {
    match plan_with(text, &[]) {
        Ok(_) => panic!("planned: {text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn env_words_see_the_environment_before_the_instruction() {
    let p = plan("FROM scratch\nENV A=alpha C=${A}-x\nENV D=$A\n");
    assert_eq!(env(&p, "C").as_deref(), Some("-x"));
    assert_eq!(env(&p, "D").as_deref(), Some("alpha"));
    let p = plan("FROM scratch\nENV A=old\nENV A=new B=$A\n");
    assert_eq!(env(&p, "A").as_deref(), Some("new"));
    assert_eq!(env(&p, "B").as_deref(), Some("old"));
    assert_eq!(
        p.config.history[1].created_by.as_deref(),
        Some("ENV A=new B=old")
    );
    // Keys too: K is not set yet when `${K}` is expanded.
    let e = err("FROM scratch\nENV K=name ${K}=v\n");
    assert_eq!(e, "Dockerfile:2: ENV: empty variable name");
    let p = plan("FROM scratch\nENV K=name\nENV ${K}=v\n");
    assert_eq!(env(&p, "name").as_deref(), Some("v"));
}

#[test]
fn labels_see_the_environment_before_the_instruction() {
    let p = plan("FROM scratch\nENV A=1\nLABEL x=$A A=2 y=$A\n");
    let labels = p.config.config.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["x"], "1");
    assert_eq!(labels["y"], "1");
}

#[test]
fn arg_defaults_see_earlier_args_of_the_same_instruction() {
    // BuildKit's dispatchArg adds each ARG to the environment before expanding the next.
    let p = plan("FROM scratch\nARG A=alpha C=${A}-x\nENV OUT=$C\n");
    assert_eq!(env(&p, "OUT").as_deref(), Some("alpha-x"));
    let p = plan_with(
        "FROM scratch\nARG A=alpha C=${A}-x\nENV OUT=$C\n",
        &[("A", "beta")],
    )
    .unwrap();
    assert_eq!(env(&p, "OUT").as_deref(), Some("beta-x"));
}

#[test]
fn heredocs_become_inline_files() {
    let p = plan(
        "FROM scratch\nARG WHO=world\nENV GREETING=hello\n\
         COPY <<EOF <<-'RAW' /dir/\n$GREETING ${WHO}\\n \"q\" 'x' \\$HOME\nEOF\n\t$GREETING\n\tRAW\n",
    );
    let LayerStep::Copy {
        inline, srcs, dest, ..
    } = only_copy(&p)
    else {
        panic!()
    };
    assert!(srcs.is_empty());
    assert_eq!(dest, "/dir/");
    assert_eq!(
        inline,
        [
            InlineFile {
                name: "EOF".into(),
                data: "hello worldn \"q\" 'x' $HOME\n".into(),
            },
            InlineFile {
                name: "RAW".into(),
                data: "$GREETING\n".into(),
            },
        ]
    );
    assert_eq!(last_history(&p), "COPY <<EOF <<RAW /dir/ # buildkit");

    // Mixed with a path source: paths first in the history, as BuildKit writes it.
    let p = plan("FROM scratch\nWORKDIR /w\nADD <<EOF a.txt sub/\nx\nEOF\n");
    let LayerStep::Copy {
        inline,
        srcs,
        dest,
        extract,
        ..
    } = only_copy(&p)
    else {
        panic!()
    };
    assert_eq!(
        (srcs, dest.as_str(), extract),
        (vec!["a.txt".to_string()], "/w/sub/", true)
    );
    assert_eq!(inline.len(), 1);
    assert_eq!(last_history(&p), "ADD a.txt <<EOF sub/ # buildkit");

    // Unset variables expand to nothing; expansion errors name the line.
    let p = plan("FROM scratch\nCOPY <<EOF /f\n[${NOPE}]\nEOF\n");
    let LayerStep::Copy { inline, .. } = only_copy(&p) else {
        panic!()
    };
    assert_eq!(inline[0].data, "[]\n");
    let e = err("FROM scratch\nCOPY <<EOF /f\n${NOPE:?must be set}\nEOF\n");
    assert!(e.starts_with("Dockerfile:2: COPY: "), "{e}");
    assert!(e.contains("must be set"), "{e}");

    let e = err("FROM scratch AS a\nFROM scratch\nCOPY --from=a <<EOF /f\nx\nEOF\n");
    assert!(
        e.contains("Dockerfile:3: COPY --from with a heredoc source is not supported"),
        "{e}"
    );
}

#[test]
fn copy_flags_are_carried() {
    let p = plan(
        "FROM scratch\nARG M=g-w\nCOPY --link --parents --exclude=*.md --exclude=$X --chmod=u+x,$M a/./b /d/\n",
    );
    let LayerStep::Copy {
        exclude,
        parents,
        link,
        chmod,
        extract,
        ..
    } = only_copy(&p)
    else {
        panic!()
    };
    // Exclude patterns are not expanded (BuildKit does not expand them either).
    assert_eq!(exclude, ["*.md", "$X"]);
    assert!(parents && link && !extract);
    assert_eq!(chmod, Some(Chmod::parse("u+x,g-w").unwrap()));
    assert_eq!(
        last_history(&p),
        "COPY --parents --chmod=u+x,g-w a/./b /d/ # buildkit"
    );

    let p = plan("FROM scratch\nARG U=5\nCOPY --chown=$U:$U --chmod=0640 a /d\n");
    let LayerStep::Copy { chmod, chown, .. } = only_copy(&p) else {
        panic!()
    };
    assert_eq!(
        (chmod, chown.as_deref()),
        (Some(Chmod::Octal(0o640)), Some("5:5"))
    );
    assert_eq!(
        last_history(&p),
        "COPY --chown=5:5 --chmod=0640 a /d # buildkit"
    );
    // An empty --chmod is none.
    let p = plan("FROM scratch\nCOPY --chmod=$EMPTY a /d\n");
    let LayerStep::Copy { chmod, .. } = only_copy(&p) else {
        panic!()
    };
    assert_eq!(chmod, None);
    let e = err("FROM scratch\nARG M=u!x\nCOPY --chmod=$M a /d\n");
    assert!(
        e.starts_with("Dockerfile:3: COPY: invalid --chmod mode \"u!x\""),
        "{e}"
    );
    let e = err("FROM scratch\nCOPY --exclude=[ a /d/\n");
    assert!(
        e.starts_with("Dockerfile:2: COPY: invalid --exclude pattern \"[\""),
        "{e}"
    );
    // COPY --from keeps the sources as written in the history.
    let p = plan("FROM scratch AS a\nFROM scratch\nCOPY --from=a --exclude=x s /d/\n");
    let LayerStep::Copy { srcs, exclude, .. } = only_copy(&p) else {
        panic!()
    };
    assert_eq!(
        (srcs, exclude),
        (vec!["/s".to_string()], vec!["x".to_string()])
    );
    assert_eq!(last_history(&p), "COPY s /d/ # buildkit");
}

#[test]
fn add_unpack_checksum_git() {
    let extract = |text: &str| match only_copy(&plan(text)) {
        LayerStep::Copy { extract, .. } => extract,
        LayerStep::Mkdir { .. } | LayerStep::Run(_) => panic!(),
    };
    assert!(extract("FROM scratch\nADD a.tar /d/\n"));
    assert!(extract("FROM scratch\nADD --unpack a.tar /d/\n"));
    assert!(!extract("FROM scratch\nADD --unpack=false a.tar /d/\n"));
    assert!(!extract("FROM scratch\nCOPY a.tar /d/\n"));

    let e = err("FROM scratch\nADD --checksum=sha256:abc a.tar /d/\n");
    assert!(
        e.starts_with("Dockerfile:2: ADD: --checksum requires HTTP(S) or Git sources"),
        "{e}"
    );
    let e = err("FROM scratch\nADD --checksum=sha256:abc a b /d/\n");
    assert!(
        e.contains("checksum can't be specified for multiple sources"),
        "{e}"
    );
    let e = err("FROM scratch\nADD --checksum=sha256:abc https://x.org/a.tgz /d/\n");
    assert!(
        e.starts_with("Dockerfile:2: ADD: --checksum=sha256:abc: invalid digest"),
        "{e}"
    );
    let e = err("FROM scratch\nADD --keep-git-dir a /d/\n");
    assert!(
        e.starts_with("Dockerfile:2: ADD --keep-git-dir is not supported"),
        "{e}"
    );
    let e = err("FROM scratch\nADD git@github.com:o/r.git /d/\n");
    assert!(e.contains("does not clone git repositories"), "{e}");
    let e = err("FROM scratch\nADD https://github.com/o/r.git#main /d/\n");
    assert!(e.contains("does not clone git repositories"), "{e}");
    let e = err("FROM scratch\nCOPY https://x.org/a /d/\n");
    assert!(
        e.starts_with(
            "Dockerfile:2: COPY https://x.org/a is not supported: COPY cannot read a URL"
        ),
        "{e}"
    );
    let e = err("FROM scratch\nCOPY git://h/r /d/\n");
    assert!(e.contains("COPY cannot read a git repository"), "{e}");
}
