//! The reference job, end to end: Alpine built by ocipush from the shared
//! minirootfs and pushed as `docker.io/library/alpine:latest` (remapped to
//! registry A by registries.conf), then `testdata/hello/Dockerfile` verbatim
//! pushed to registry B, pulled back by skopeo, unpacked by umoci and run in
//! a chroot: it prints `hello`.

use std::path::{Path, PathBuf};

use crate::common::fixtures::{
    alpine_dockerfile, copy_alpine_tarball, copy_and_unpack, map_docker_alpine_to, touch_tree,
};
use crate::common::ocipush::{Sandbox, assert_pushed};
use crate::common::registry::{RegistryServer, assert_push_did_not_read_back};
use crate::common::tools::{run_image, skopeo_inspect, skopeo_inspect_config};
use crate::common::{tempdir, testdata};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Writes the Alpine context (`DIR/ctx/<tarball>`) and its Dockerfile
/// (`DIR/Dockerfile.alpine`, outside the context); returns both paths.
fn alpine_context(dir: &Path) -> (PathBuf, PathBuf) {
    let ctx = dir.join("alpine-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    copy_alpine_tarball(&ctx);
    let dockerfile = dir.join("Dockerfile.alpine");
    std::fs::write(&dockerfile, alpine_dockerfile()).unwrap();
    (ctx, dockerfile)
}

/// Builds Alpine with ocipush and pushes it as docker.io/library/alpine:latest
/// (remapped to `a`); returns the printed digest.
fn push_alpine(sb: &Sandbox, a: &RegistryServer, ctx: &Path, dockerfile: &Path) -> String {
    let conf = map_docker_alpine_to(sb, a);
    let out = sb.ocipush([
        "--registries-conf".as_ref(),
        conf.as_os_str(),
        "--context".as_ref(),
        ctx.as_os_str(),
        dockerfile.as_os_str(),
        "docker.io/library/alpine:latest".as_ref(),
    ]);
    assert_pushed(&out, "docker.io/library/alpine")
}

/// Pushes `dockerfile` to `b` as `ec2-ecr-test:v1`; returns the digest.
fn push_hello(
    sb: &Sandbox,
    b: &RegistryServer,
    dockerfile: &Path,
    context: Option<&Path>,
) -> String {
    let mut args: Vec<std::ffi::OsString> =
        vec!["--registries-conf".into(), sb.registries_conf().into()];
    if let Some(c) = context {
        args.push("--context".into());
        args.push(c.into());
    }
    args.push(dockerfile.into());
    args.push(format!("{}/ec2-ecr-test:v1", b.addr()).into());
    let out = sb.ocipush(&args);
    assert_pushed(&out, &format!("{}/ec2-ecr-test", b.addr()))
}

#[test]
fn reference_job_alpine_then_hello_runs_in_chroot() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let b = RegistryServer::start();
    let (ctx, dockerfile) = alpine_context(sb.path());

    // 1. Alpine, as Alpine's own Dockerfile builds it.
    let alpine_digest = push_alpine(&sb, &a, &ctx, &dockerfile);
    let alpine_ref = format!("docker://{}/library/alpine:latest", a.addr());
    let summary = skopeo_inspect(&alpine_ref, false, None);
    assert_eq!(summary["Digest"], alpine_digest.as_str(), "{summary:#}");
    assert_eq!(summary["Architecture"], "amd64");
    assert_eq!(summary["Os"], "linux");
    assert_eq!(
        summary["Layers"].as_array().unwrap().len(),
        1,
        "{summary:#}"
    );
    let config = skopeo_inspect_config(&alpine_ref, false, None);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["/bin/sh"]),
        "{config:#}"
    );
    assert_eq!(
        config["config"]["Env"],
        serde_json::json!([DEFAULT_PATH]),
        "{config:#}"
    );
    assert_eq!(
        config["created"], "1970-01-01T00:00:00Z",
        "SOURCE_DATE_EPOCH defaults to 0"
    );

    // 2. The reference Dockerfile, verbatim, FROM alpine:latest (→ registry A).
    let reference = testdata("hello/Dockerfile");
    assert_eq!(
        std::fs::read_to_string(&reference).unwrap(),
        "FROM alpine:latest\n\nCMD [\"sh\", \"-c\", \"echo hello\"]\n"
    );
    let mark = b.log_mark();
    let digest = push_hello(&sb, &b, &reference, None);
    let push_log = b.access_log_since(mark);
    assert_push_did_not_read_back(&push_log, "ec2-ecr-test", "v1");
    let ua = format!("ocipush/{}", env!("CARGO_PKG_VERSION"));
    for e in &push_log {
        assert!(
            e.user_agent.starts_with(&ua),
            "User-Agent must be {ua}: {e:#?}"
        );
    }

    // The tag points at the printed digest.
    let tagged = skopeo_inspect(
        &format!("docker://{}/ec2-ecr-test:v1", b.addr()),
        false,
        None,
    );
    assert_eq!(tagged["Digest"], digest.as_str(), "{tagged:#}");

    // 3. Pull the printed digest back, unpack, run: `hello`.
    let img = copy_and_unpack(
        &format!("docker://{}/ec2-ecr-test@{digest}", b.addr()),
        None,
    );
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("etc/alpine-release")).unwrap(),
        "3.20.3\n"
    );
    let run = run_image(&img.rootfs, &img.config);
    assert!(run.status.success(), "{run:?}");
    assert_eq!(run.stdout, "hello\n", "{run:?}");
    assert_eq!(
        crate::common::tools::image_argv(&img.config),
        ["sh", "-c", "echo hello"]
    );
}

#[test]
fn reference_job_is_reproducible_and_ignores_mtimes() {
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    let b = RegistryServer::start();
    let (ctx, dockerfile) = alpine_context(sb.path());

    let alpine1 = push_alpine(&sb, &a, &ctx, &dockerfile);
    let alpine2 = push_alpine(&sb, &a, &ctx, &dockerfile);
    assert_eq!(
        alpine1, alpine2,
        "building Alpine twice gives the same digest"
    );

    let reference = testdata("hello/Dockerfile");
    let mark = b.log_mark();
    let hello1 = push_hello(&sb, &b, &reference, None);
    assert_push_did_not_read_back(&b.access_log_since(mark), "ec2-ecr-test", "v1");

    let mark = b.log_mark();
    let hello2 = push_hello(&sb, &b, &reference, None);
    assert_eq!(hello1, hello2, "pushing the same Dockerfile twice");
    assert_push_did_not_read_back(&b.access_log_since(mark), "ec2-ecr-test", "v1");

    // The same Dockerfile from another directory, with fresh mtimes on every
    // context file (and on the Alpine tarball, rebuilt first).
    let copy = tempdir("hello-copy");
    let df = copy.path().join("Dockerfile");
    std::fs::copy(&reference, &df).unwrap();
    touch_tree(copy.path(), 1_900_000_000);
    touch_tree(&ctx, 1_900_000_000);
    touch_tree_file(&dockerfile, 1_900_000_000);
    let alpine3 = push_alpine(&sb, &a, &ctx, &dockerfile);
    assert_eq!(
        alpine1, alpine3,
        "Alpine digest changed with context mtimes"
    );

    let mark = b.log_mark();
    let hello3 = push_hello(&sb, &b, &df, Some(copy.path()));
    assert_eq!(
        hello1, hello3,
        "hello digest changed with context mtimes / location"
    );
    assert_push_did_not_read_back(&b.access_log_since(mark), "ec2-ecr-test", "v1");
}

fn touch_tree_file(p: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .and_then(|f| f.set_modified(t))
        .unwrap();
}
