//! Bad input: each fails with exit code 1 and one clear message (naming the
//! Dockerfile line where there is one), no panic or backtrace, and nothing
//! pushed. Usage errors exit 2. An unparsable JSON form is a warning only.

use std::process::Output;

use crate::common::fixtures::{alpine_base_registry, write_files};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, describe, stderr};
use crate::common::registry::{RegistryServer, closed_port_addr, summarize};
use crate::common::tools::skopeo_inspect_config;

/// True if `text` names line `n` as `Dockerfile:N` or `line N` (and not, say,
/// line 20 for n = 2).
fn mentions_line(text: &str, n: usize) -> bool {
    let lower = text.to_lowercase();
    ["dockerfile:", "line "].iter().any(|prefix| {
        let needle = format!("{prefix}{n}");
        lower.match_indices(&needle).any(|(i, m)| {
            !lower[i + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    })
}

/// Runs ocipush on `dockerfile` with a context holding `files`, pushing to a
/// fresh registry that also serves `alpine:latest`; returns the output and
/// the registry (for log checks).
fn run(dockerfile: &str, files: &[(&str, &str)]) -> (Output, RegistryServer, Sandbox) {
    let sb = Sandbox::new();
    let reg = alpine_base_registry(&sb);
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    write_files(&ctx, files);
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        format!("{}/bad:v1", reg.addr()).as_ref(),
    ]);
    (out, reg, sb)
}

fn assert_nothing_pushed(reg: &RegistryServer) {
    let log = reg.access_log();
    let puts: Vec<_> = log
        .iter()
        .filter(|e| {
            e.method == "PUT"
                && e.path().contains("/manifests/")
                && !e.path().starts_with("/v2/library/alpine/")
        })
        .collect();
    assert!(
        puts.is_empty(),
        "a manifest was pushed: {puts:#?}\n{:#?}",
        summarize(&log)
    );
}

/// Exit 1, one message on stderr naming `line` (if given) and containing each
/// of `needles` (case-insensitive), nothing pushed.
fn expect_error(
    dockerfile: &str,
    files: &[(&str, &str)],
    line: Option<usize>,
    needles: &[&str],
) -> String {
    let (out, reg, _sb) = run(dockerfile, files);
    let err = assert_failed(&out, 1);
    if let Some(n) = line {
        assert!(
            mentions_line(&err, n),
            "the message must name the line (`Dockerfile:{n}` or `line {n}`):\n{}",
            describe(&out)
        );
    }
    for needle in needles {
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "the message must mention {needle:?}:\n{}",
            describe(&out)
        );
    }
    assert_nothing_pushed(&reg);
    err
}

#[test]
fn line_matcher_is_exact() {
    assert!(mentions_line("error: Dockerfile:2: bad", 2));
    assert!(mentions_line("error at line 2", 2));
    assert!(!mentions_line("error at line 20", 2));
    assert!(!mentions_line("error", 2));
}

#[test]
fn missing_from() {
    expect_error("LABEL a=b\nCMD [\"x\"]\n", &[], None, &["FROM"]);
}

#[test]
fn unknown_instruction() {
    expect_error(
        "FROM alpine:latest\nFROBNICATE x\n",
        &[],
        Some(2),
        &["FROBNICATE"],
    );
}

#[test]
fn empty_instruction_arguments() {
    expect_error("FROM alpine:latest\nWORKDIR\n", &[], Some(2), &["WORKDIR"]);
}

#[test]
fn invalid_expose_protocol() {
    expect_error(
        "FROM alpine:latest\nEXPOSE 80/xyz\n",
        &[],
        Some(2),
        &["xyz"],
    );
}

#[test]
fn invalid_chmod() {
    expect_error(
        "FROM alpine:latest\nCOPY --chmod=abc a.txt /\n",
        &[("a.txt", "a\n")],
        Some(2),
        &["chmod"],
    );
}

#[test]
fn invalid_image_reference_in_from() {
    expect_error("FROM Invalid_Ref::!\n", &[], Some(1), &["Invalid_Ref::!"]);
}

#[test]
fn run_mount_ssh_is_not_supported_and_says_why() {
    let err = expect_error(
        "FROM alpine:latest\n\nRUN --mount=type=ssh echo hi\n",
        &[],
        Some(3),
        &["RUN --mount=type=ssh", "not supported", "SSH agent"],
    );
    // "…and why": more than a bare "RUN --mount=type=ssh is not supported".
    assert!(
        err.trim().len() > "RUN --mount=type=ssh is not supported".len() + 20,
        "{err}"
    );
}

#[test]
fn missing_copy_source() {
    expect_error(
        "FROM alpine:latest\nCOPY nope.txt /\n",
        &[],
        Some(2),
        &["nope.txt"],
    );
}

#[test]
fn copy_source_escaping_the_context() {
    let (out, reg, sb) = {
        let sb = Sandbox::new();
        let reg = alpine_base_registry(&sb);
        // ../x exists (beside the context), so only the escape is wrong.
        write_files(sb.path(), &[("x", "outside\n")]);
        let ctx = sb.path().join("ctx");
        std::fs::create_dir(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), "FROM alpine:latest\nCOPY ../x /\n").unwrap();
        let out = sb.ocipush([
            "--registries-conf".as_ref(),
            sb.registries_conf().as_os_str(),
            ctx.join("Dockerfile").as_os_str(),
            format!("{}/bad:v1", reg.addr()).as_ref(),
        ]);
        (out, reg, sb)
    };
    let err = assert_failed(&out, 1);
    assert!(mentions_line(&err, 2), "{}", describe(&out));
    assert!(err.to_lowercase().contains("context"), "{}", describe(&out));
    assert_nothing_pushed(&reg);
    drop(sb);
}

#[test]
fn copy_symlink_pointing_outside_the_context() {
    let sb = Sandbox::new();
    let reg = alpine_base_registry(&sb);
    write_files(sb.path(), &[("outside.txt", "outside\n")]);
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::os::unix::fs::symlink("../outside.txt", ctx.join("link")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\nCOPY link/ /x\n",
    )
    .unwrap();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        format!("{}/bad:v1", reg.addr()).as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(mentions_line(&err, 2), "{}", describe(&out));
    assert!(err.to_lowercase().contains("context"), "{}", describe(&out));
    assert_nothing_pushed(&reg);
}

#[test]
fn unreachable_registry() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    write_files(&ctx, &[("a.txt", "a\n")]);
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY a.txt /\n").unwrap();
    let addr = closed_port_addr();
    let out = sb.ocipush([
        ctx.join("Dockerfile").as_os_str(),
        format!("{addr}/x:v1").as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(
        err.contains(&addr),
        "the message must name the registry {addr}:\n{err}"
    );
}

#[test]
fn unreachable_base_image_registry() {
    let sb = Sandbox::new();
    let dead = closed_port_addr();
    sb.set_registries(&[(
        "docker.io/library/alpine",
        &format!("{dead}/library/alpine"),
    )]);
    let b = RegistryServer::start();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        crate::common::testdata("hello/Dockerfile").as_os_str(),
        format!("{}/x:v1", b.addr()).as_ref(),
    ]);
    let err = assert_failed(&out, 1);
    assert!(err.contains(&dead) || err.contains("alpine"), "{err}");
    assert_nothing_pushed(&b);
}

#[test]
fn no_arguments_is_a_usage_error() {
    let sb = Sandbox::new();
    let out = sb.ocipush(Vec::<&str>::new());
    assert_failed(&out, 2);
}

#[test]
fn bad_format_is_a_usage_error() {
    let sb = Sandbox::new();
    let df = sb.path().join("Dockerfile");
    std::fs::write(&df, "FROM scratch\n").unwrap();
    let out = sb.ocipush([
        "--format".as_ref(),
        "bogus".as_ref(),
        df.as_os_str(),
        "127.0.0.1:1/x:v1".as_ref(),
    ]);
    let err = assert_failed(&out, 2);
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn missing_destination_is_a_usage_error() {
    let sb = Sandbox::new();
    let df = sb.path().join("Dockerfile");
    std::fs::write(&df, "FROM scratch\n").unwrap();
    assert_failed(&sb.ocipush([df.as_os_str()]), 2);
}

#[test]
fn unparsable_json_form_is_shell_form_with_a_warning() {
    let sb = Sandbox::new();
    let reg = alpine_base_registry(&sb);
    let ctx = sb.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // Line 3: a JSON array that does not parse (missing `]`).
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine:latest\n\nCMD [\"sh\", \"-c\", \"echo hi\"\n",
    )
    .unwrap();
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        sb.registries_conf().as_os_str(),
        ctx.join("Dockerfile").as_os_str(),
        format!("{}/warn:v1", reg.addr()).as_ref(),
    ]);
    assert_pushed(&out, &format!("{}/warn", reg.addr()));
    let err = stderr(&out);
    assert!(
        mentions_line(&err, 3),
        "the warning must name line 3:\n{}",
        describe(&out)
    );
    assert!(err.to_lowercase().contains("warn"), "{}", describe(&out));
    let config = skopeo_inspect_config(&format!("docker://{}/warn:v1", reg.addr()), false, None);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "[\"sh\", \"-c\", \"echo hi\""]),
        "{config:#}"
    );
}

#[test]
fn global_flags_go_before_a_subcommand_but_build_options_do_not() {
    let sb = Sandbox::new();
    let missing = format!("oci:{}:1", sb.path().join("none").display());
    let dest = format!("oci:{}", sb.path().join("out").display());
    // `-q` before `copy` is taken: the copy itself runs (and fails: no such layout, exit 1).
    let out = sb
        .command()
        .args(["-q", "copy", &missing, &dest])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no OCI image layout"), "{err}");
    // A build option before `copy` would be ignored: a usage error naming it.
    let out = sb
        .command()
        .args(["--compression", "zstd", "copy", &missing, &dest])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--compression is an option of the build"),
        "{err}"
    );
}
