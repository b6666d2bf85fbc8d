//! Unit tests for typed instructions: every instruction, its flags, and its errors.

use std::time::Duration;

use super::super::{
    CommandForm, CopyArgs, Healthcheck, InlineSource, Instruction, Located, ParseError, Run,
    instructions, parse,
};

fn typed(text: &str) -> Vec<Located<Instruction>> {
    instructions(&parse(text).unwrap()).unwrap()
}

/// The typed instruction on the last line of `FROM a\n<line>`.
fn one(line: &str) -> Instruction {
    typed(&format!("FROM a\n{line}\n"))
        .pop()
        .unwrap()
        .instruction
}

/// The error for `FROM a\n<line>` (the instruction is on line 2).
fn fail(line: &str) -> ParseError {
    instructions(&parse(&format!("FROM a\n{line}\n")).unwrap()).unwrap_err()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn from_forms() {
    assert_eq!(
        one("FROM alpine:3.20"),
        Instruction::From {
            image: "alpine:3.20".into(),
            name: None,
            platform: None
        }
    );
    assert_eq!(
        one("FROM --platform=$BUILDPLATFORM golang:1 as Builder"),
        Instruction::From {
            image: "golang:1".into(),
            name: Some("builder".into()),
            platform: Some("$BUILDPLATFORM".into())
        }
    );
    let e = fail("FROM a b");
    assert_eq!(
        e.to_string(),
        "FROM requires either one or three arguments: FROM <image> [AS <name>] (Dockerfile:2)"
    );
    assert!(
        fail("FROM a AS 1x")
            .to_string()
            .contains("invalid name for build stage: \"1x\"")
    );
    assert!(fail("FROM a AS b c").to_string().contains("one or three"));
    assert!(
        fail("FROM --foo=x a")
            .to_string()
            .contains("unknown flag: --foo")
    );
    assert!(
        fail("FROM")
            .to_string()
            .contains("FROM requires either one or three arguments")
    );
}

#[test]
fn arg_env_label() {
    assert_eq!(
        one("ARG a b=2 c="),
        Instruction::Arg(vec![
            ("a".into(), None),
            ("b".into(), Some("2".into())),
            ("c".into(), Some(String::new()))
        ])
    );
    assert_eq!(
        one("ENV A=1 B=\"x y\""),
        Instruction::Env(vec![
            ("A".into(), "1".into()),
            ("B".into(), "\"x y\"".into())
        ])
    );
    assert_eq!(
        one("ENV PATH /a:$PATH x"),
        Instruction::Env(vec![("PATH".into(), "/a:$PATH x".into())])
    );
    assert_eq!(
        one("LABEL \"com.x\"=y maintainer=me"),
        Instruction::Label(vec![
            ("\"com.x\"".into(), "y".into()),
            ("maintainer".into(), "me".into())
        ])
    );
    assert!(
        fail("ARG")
            .to_string()
            .contains("ARG requires at least one argument")
    );
    assert!(
        fail("ARG =x")
            .to_string()
            .contains("ARG names can not be blank")
    );
    assert_eq!(
        fail("ENV").to_string(),
        "ENV requires at least one argument: ENV <key>=<value> ... (Dockerfile:2)"
    );
    assert!(
        fail("ENV =x")
            .to_string()
            .contains("ENV names can not be blank")
    );
    assert!(
        fail("LABEL")
            .to_string()
            .contains("LABEL requires at least one argument")
    );
    assert!(
        fail("ENV --x=1 A=b")
            .to_string()
            .contains("ENV takes no flags")
    );
}

#[test]
fn simple_single_argument_instructions() {
    assert_eq!(
        one("MAINTAINER Jane <j@x>"),
        Instruction::Maintainer("Jane <j@x>".into())
    );
    assert_eq!(
        one("WORKDIR /my dir"),
        Instruction::Workdir("/my dir".into())
    );
    assert_eq!(one("USER app:app"), Instruction::User("app:app".into()));
    assert_eq!(
        one("STOPSIGNAL SIGTERM"),
        Instruction::StopSignal("SIGTERM".into())
    );
    assert_eq!(
        fail("WORKDIR").to_string(),
        "WORKDIR requires exactly one argument: WORKDIR <path> (Dockerfile:2)"
    );
    assert!(
        fail("USER")
            .to_string()
            .contains("USER requires exactly one argument")
    );
    assert!(
        fail("STOPSIGNAL")
            .to_string()
            .contains("STOPSIGNAL requires exactly one argument")
    );
    assert!(
        fail("MAINTAINER")
            .to_string()
            .contains("MAINTAINER requires exactly one argument")
    );
}

#[test]
fn copy_and_add() {
    assert_eq!(
        one("COPY [\"my file\", \"other\", \"/dest dir/\"]"),
        Instruction::Copy(CopyArgs {
            srcs: s(&["my file", "other"]),
            dest: "/dest dir/".into(),
            json: true,
            ..CopyArgs::default()
        })
    );
    assert_eq!(
        one(
            "COPY --from=build --chown=1:1 --chmod=0755 --link --parents --exclude=*.md --exclude=x a b /d/"
        ),
        Instruction::Copy(CopyArgs {
            srcs: s(&["a", "b"]),
            dest: "/d/".into(),
            from: Some("build".into()),
            chown: Some("1:1".into()),
            chmod: Some("0755".into()),
            link: true,
            parents: true,
            exclude: s(&["*.md", "x"]),
            ..CopyArgs::default()
        })
    );
    assert_eq!(
        one("ADD --checksum=sha256:abc --keep-git-dir=true --unpack=false https://x/y.tgz /"),
        Instruction::Add(CopyArgs {
            srcs: s(&["https://x/y.tgz"]),
            dest: "/".into(),
            checksum: Some("sha256:abc".into()),
            keep_git_dir: Some(true),
            unpack: Some(false),
            ..CopyArgs::default()
        })
    );
    // A chmod with a variable is checked after expansion.
    assert!(matches!(
        one("COPY --chmod=$MODE a b"),
        Instruction::Copy(CopyArgs { chmod: Some(_), .. })
    ));
    assert_eq!(
        fail("COPY onlyone").to_string(),
        "COPY requires at least two arguments, but only one was provided. \
         Destination could not be determined: COPY <src>... <dest> (Dockerfile:2)"
    );
    assert!(
        fail("ADD")
            .to_string()
            .contains("ADD requires at least two arguments")
    );
    assert!(
        fail("COPY [\"a\"]")
            .to_string()
            .contains("requires at least two arguments")
    );
    assert!(matches!(
        one("COPY --chmod=u+x,g-w a b"),
        Instruction::Copy(CopyArgs { chmod: Some(_), .. })
    ));
    assert_eq!(
        fail("COPY --chmod=u!x a b").to_string(),
        "invalid --chmod mode \"u!x\" (Dockerfile:2): invalid symbolic mode: expected [ugoa...][+-=][rwxXst...|ugo][,...] as chmod(1) reads it (e.g. u+x,g-w or a=rX), or an octal mode such as 755"
    );
    assert!(
        fail("COPY --chmod=8 a b")
            .to_string()
            .contains("expected an octal mode between 0 and 7777")
    );
    assert_eq!(
        fail("COPY --from=a --from=b x y").to_string(),
        "COPY: duplicate flag specified: --from: give it once (Dockerfile:2)"
    );
    assert!(
        fail("COPY --checksum=x a b")
            .to_string()
            .contains("unknown flag: --checksum")
    );
    assert!(
        fail("ADD --from=x a b")
            .to_string()
            .contains("unknown flag: --from")
    );
    assert!(
        fail("COPY --link=maybe a b")
            .to_string()
            .contains("expecting boolean value")
    );
    assert!(
        fail("COPY --from a b")
            .to_string()
            .contains("missing a value on flag: --from")
    );
}

#[test]
fn command_forms() {
    assert_eq!(
        one("CMD [\"a\", \"b c\"]"),
        Instruction::Cmd(CommandForm::Exec(s(&["a", "b c"])))
    );
    assert_eq!(
        one("CMD echo  $HOME"),
        Instruction::Cmd(CommandForm::Shell("echo  $HOME".into()))
    );
    assert_eq!(one("CMD []"), Instruction::Cmd(CommandForm::Exec(vec![])));
    assert_eq!(
        one("ENTRYPOINT"),
        Instruction::Entrypoint(CommandForm::Exec(vec![]))
    );
    assert_eq!(
        one("ENTRYPOINT [\"/bin/sh\", \"-c\"]"),
        Instruction::Entrypoint(CommandForm::Exec(s(&["/bin/sh", "-c"])))
    );
    // Invalid JSON is shell form (and a warning).
    assert_eq!(
        one("CMD ['a']"),
        Instruction::Cmd(CommandForm::Shell("['a']".into()))
    );
    assert_eq!(
        one("SHELL [\"powershell\", \"-c\"]"),
        Instruction::Shell(s(&["powershell", "-c"]))
    );
    assert!(
        fail("SHELL /bin/sh -c")
            .to_string()
            .contains("SHELL requires the arguments to be in JSON form")
    );
    assert!(
        fail("SHELL")
            .to_string()
            .contains("SHELL requires at least one argument")
    );
    assert!(
        fail("CMD --doit a")
            .to_string()
            .contains("unknown flag: --doit")
    );
    assert_eq!(
        one("RUN --mount=type=cache,target=/c --network=none make"),
        Instruction::Run(Run {
            command: CommandForm::Shell("make".into()),
            mounts: s(&["type=cache,target=/c"]),
            network: Some("none".into()),
            security: None,
            devices: vec![],
            heredocs: vec![],
        })
    );
}

#[test]
fn expose_and_volume() {
    assert_eq!(
        one("EXPOSE 80 443/tcp $P"),
        Instruction::Expose(s(&["80", "443/tcp", "$P"]))
    );
    assert!(
        fail("EXPOSE")
            .to_string()
            .contains("EXPOSE requires at least one argument")
    );
    assert_eq!(one("VOLUME /a /b"), Instruction::Volume(s(&["/a", "/b"])));
    assert_eq!(one("VOLUME [\"/a b\"]"), Instruction::Volume(s(&["/a b"])));
    assert!(
        fail("VOLUME")
            .to_string()
            .contains("VOLUME requires at least one argument")
    );
    assert!(
        fail("VOLUME [\" \"]")
            .to_string()
            .contains("VOLUME specified can not be an empty string")
    );
}

#[test]
fn healthchecks() {
    assert_eq!(
        one("HEALTHCHECK NONE"),
        Instruction::Healthcheck(Healthcheck::None)
    );
    assert_eq!(
        one(
            "HEALTHCHECK --interval=1m30s --timeout=3s --start-period=0s --start-interval=500ms --retries=3 CMD curl -f http://x/"
        ),
        Instruction::Healthcheck(Healthcheck::Cmd {
            test: CommandForm::Shell("curl -f http://x/".into()),
            interval: Some(Duration::from_secs(90)),
            timeout: Some(Duration::from_secs(3)),
            start_period: None,
            start_interval: Some(Duration::from_millis(500)),
            retries: Some(3),
        })
    );
    assert_eq!(
        one("HEALTHCHECK cmd [\"/check\"]"),
        Instruction::Healthcheck(Healthcheck::Cmd {
            test: CommandForm::Exec(s(&["/check"])),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        })
    );
    assert!(
        fail("HEALTHCHECK")
            .to_string()
            .contains("HEALTHCHECK requires at least one argument")
    );
    assert!(
        fail("HEALTHCHECK NONE x")
            .to_string()
            .contains("HEALTHCHECK NONE takes no arguments")
    );
    assert!(
        fail("HEALTHCHECK CMD")
            .to_string()
            .contains("Missing command after HEALTHCHECK CMD")
    );
    assert!(
        fail("HEALTHCHECK CONNECT TCP 7000")
            .to_string()
            .contains("Unknown type \"CONNECT\" in HEALTHCHECK")
    );
    assert_eq!(
        fail("HEALTHCHECK --interval=5 CMD x").to_string(),
        "invalid HEALTHCHECK --interval \"5\" (Dockerfile:2): missing unit: expected ns, us, ms, s, m or h"
    );
    assert!(
        fail("HEALTHCHECK --interval=10us CMD x")
            .to_string()
            .contains("cannot be less than 1ms")
    );
    assert!(
        fail("HEALTHCHECK --retries=-1 CMD x")
            .to_string()
            .contains("HEALTHCHECK --retries")
    );
    assert!(
        fail("HEALTHCHECK --bogus=1 CMD x")
            .to_string()
            .contains("unknown flag: --bogus")
    );
}

#[test]
fn onbuild() {
    assert_eq!(
        one("ONBUILD   COPY . /app"),
        Instruction::Onbuild("COPY . /app".into())
    );
    assert_eq!(
        one("onbuild run echo hi"),
        Instruction::Onbuild("run echo hi".into())
    );
    assert!(
        fail("ONBUILD")
            .to_string()
            .contains("ONBUILD requires at least one argument")
    );
    assert!(
        fail("ONBUILD ONBUILD RUN x")
            .to_string()
            .contains("Chaining ONBUILD")
    );
    assert!(
        fail("ONBUILD FROM x")
            .to_string()
            .contains("FROM isn't allowed as an ONBUILD trigger")
    );
    assert!(
        fail("ONBUILD MAINTAINER x")
            .to_string()
            .contains("MAINTAINER isn't allowed")
    );
}

#[test]
fn unknown_instruction() {
    let e = instructions(&parse("FROM a\n\nFOO bar\n").unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("unknown instruction: FOO (Dockerfile:3)"),
        "{e}"
    );
    assert_eq!(e.line(), Some(3));
    let e = instructions(&parse("FROM a\nfoo\n").unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("unknown instruction: foo (Dockerfile:2)"),
        "{e}"
    );
}

#[test]
fn located_lines_and_original() {
    let all = typed("# syntax=docker/dockerfile:1\nFROM a\n\nCOPY x \\\n  # note\n  y\n");
    let copy = &all[1];
    assert_eq!((copy.start_line, copy.end_line), (4, 6));
    assert_eq!(copy.original, "COPY x   y");
    let names: Vec<&str> = all.iter().map(|l| l.instruction.name()).collect();
    assert_eq!(names, vec!["FROM", "COPY"]);
}

#[test]
fn copy_heredocs() {
    let typed = typed(
        "FROM a\nCOPY a <<EOF <<-'TABS' b /d/\nx $V\nEOF\n\tt\n\tTABS\nADD [\"<<J\", \"/j\"]\n",
    );
    let Instruction::Copy(args) = &typed[1].instruction else {
        panic!("{typed:?}")
    };
    assert_eq!((typed[1].start_line, typed[1].end_line), (2, 6));
    assert_eq!(args.srcs, s(&["a", "b"]));
    assert_eq!(
        args.inline,
        [
            InlineSource {
                name: "EOF".into(),
                data: "x $V\n".into(),
                expand: true
            },
            InlineSource {
                name: "TABS".into(),
                data: "t\n".into(),
                expand: false
            }
        ]
    );
    // JSON form reads no body, but the word is still a (then empty) heredoc, as in BuildKit.
    let Instruction::Add(args) = &typed[2].instruction else {
        panic!("{typed:?}")
    };
    assert!(args.srcs.is_empty());
    assert_eq!(args.inline[0].name, "J");
    assert_eq!(args.inline[0].data, "");

    let e = instructions(&parse("FROM a\nCOPY a <<EOF\nx\nEOF\n").unwrap()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "COPY cannot accept a heredoc as a destination: write COPY <<EOF <dest>, with the destination path last (Dockerfile:2)"
    );
    let e = instructions(&parse("FROM a\nONBUILD COPY <<EOF /x\nx\nEOF\n").unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("heredocs are not supported in ONBUILD"),
        "{e}"
    );
}
