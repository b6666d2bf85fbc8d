//! The programmatic image API (`ocipush::builder`) end to end: the `containerize` example run
//! as a user runs it, and the builder used in-process for what a Dockerfile would do — layers
//! landing on the base's own directories and users, literal values, ENTRYPOINT resetting CMD,
//! an OCI-layout base, several platforms, reproducible digests. Every image is read back by
//! skopeo and umoci and run in a chroot.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::sync::Arc;

use ocipush::builder::{Base, ImageBuilder, Layer};
use ocipush::image::Platform;
use ocipush::pipeline::{Pushed, Session, Target};
use ocipush::registries_conf::RegistriesConf;

use crate::common::fixtures::{alpine_base_registry, alpine_oci_layout, copy_and_unpack};
use crate::common::ocipush::{Sandbox, assert_pushed, describe, example_bin, run_watched};
use crate::common::registry::RegistryServer;
use crate::common::tools::{image_argv, image_env, run_in_chroot};

#[test]
fn the_containerize_example_pushes_a_file_as_the_entrypoint_and_it_runs() {
    let sb = Sandbox::new();
    let base = alpine_base_registry(&sb);
    let dest = RegistryServer::start();
    sb.set_registries(&[
        (
            "docker.io/library/alpine",
            &format!("{}/library/alpine", base.addr()),
        ),
        (&dest.addr(), &dest.addr()),
    ]);
    let app = sb.path().join("hello.sh");
    std::fs::write(&app, "#!/bin/sh\necho \"hello from $0\"\n").unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut cmd = sb.command_for(&example_bin("containerize"));
    let name = format!("{}/app", dest.addr());
    cmd.args([
        app.to_str().unwrap(),
        "alpine:latest",
        &format!("{name}:v1"),
    ]);
    let out = run_watched(cmd);
    assert_pushed(&out, &name);
    let left: Vec<_> = std::fs::read_dir(sb.path().join("tmp")).unwrap().collect();
    assert!(left.is_empty(), "staging and spool removed: {left:?}");

    let img = copy_and_unpack(&format!("docker://{name}:v1"), None);
    let argv = image_argv(&img.config);
    assert_eq!(
        argv,
        ["/app/hello.sh"],
        "ENTRYPOINT set, alpine's CMD reset"
    );
    let meta = std::fs::metadata(img.rootfs.join("app/hello.sh")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    let run = run_in_chroot(&img.rootfs, &argv, &image_env(&img.config));
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, "hello from /app/hello.sh\n");

    // An OCI layout as base and as destination.
    let layout = sb.path().join("out");
    let mut cmd = sb.command_for(&example_bin("containerize"));
    let base_arg = format!("oci:{}:latest", alpine_oci_layout().display());
    let dest_arg = format!("oci:{}:v2", layout.display());
    cmd.args([app.to_str().unwrap(), &base_arg, &dest_arg]);
    let out = run_watched(cmd);
    assert!(out.status.success(), "{}", describe(&out));
    let last = String::from_utf8_lossy(&out.stdout);
    assert!(
        last.trim_end()
            .starts_with(&format!("oci:{}@sha256:", layout.display())),
        "{}",
        describe(&out)
    );
    let img = copy_and_unpack(&format!("oci:{}:v2", layout.display()), None);
    let run = run_in_chroot(
        &img.rootfs,
        &image_argv(&img.config),
        &image_env(&img.config),
    );
    assert_eq!(run.stdout, "hello from /app/hello.sh\n", "{}", run.stderr);
}

/// A session with `sb`'s registries.conf (its registries plain HTTP), anonymous.
pub(crate) fn session(sb: &Sandbox) -> Session {
    let conf = RegistriesConf::load(Some(&sb.registries_conf())).unwrap();
    Session::new(conf, Arc::new(ocipush::auth::Anonymous), false).unwrap()
}

fn containerize(b: &ImageBuilder, session: &Session, target: &str) -> Pushed {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(b.containerize(
        session,
        &Target::parse(target).unwrap(),
        &ocipush::events::ignore(),
    ))
    .unwrap_or_else(|e| panic!("containerize {target}: {e}"))
}

#[test]
fn a_built_image_lands_on_its_base_like_copy_and_keeps_values_literal() {
    let sb = Sandbox::new();
    let _base = alpine_base_registry(&sb);
    let dest = RegistryServer::start();
    let session = session(&sb);
    let src = sb.path().join("src");
    std::fs::create_dir_all(src.join("static/maps")).unwrap();
    std::fs::write(src.join("static/index.html"), "<p>hi</p>\n").unwrap();
    std::fs::write(src.join("static/maps/app.js.map"), "{}").unwrap();
    std::fs::write(src.join("static/app.js"), "1;\n").unwrap();
    symlink("index.html", src.join("static/home.html")).unwrap();
    let tool = src.join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\nid -u; id -g; echo \"$GREETING\"\n").unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o644)).unwrap();

    let builder = ImageBuilder::from("alpine:latest")
        .cache_dir(None)
        .epoch(1_700_000_000)
        .layer(
            Layer::new()
                .named("app")
                .file_with_mode(&tool, "/usr/local/bin/", 0o755)
                .dir_excluding(src.join("static"), "/srv/www", ["**/*.map"])
                .bytes(b"port = 8080\n".to_vec(), "/etc/app.toml", 0o640)
                .bytes(b"seed\n".to_vec(), "/tmp/seed", 0o600)
                .symlink("/usr/local/bin/tool.sh", "/usr/bin/tool")
                .owner("nobody"),
        )
        .env("GREETING", "cost: $HOME \"quoted\" \\back")
        .label("org.example.note", "a b  c")
        .workdir("/srv/www")
        .user("nobody")
        .expose("8080/tcp")
        .annotation(
            "org.opencontainers.image.source",
            "https://example.test/app",
        )
        .entrypoint(["/usr/bin/tool"]);
    let target = format!("{}/built:v1", dest.addr());
    let pushed = containerize(&builder, &session, &target);
    assert_eq!(
        pushed.reference,
        format!("{}/built@{}", dest.addr(), pushed.digest)
    );
    let again = containerize(&builder, &session, &format!("{}/built:v2", dest.addr()));
    assert_eq!(
        again.digest, pushed.digest,
        "the same inputs give the same digest"
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&pushed.images[0].1.manifest.bytes).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.source"],
        "https://example.test/app"
    );
    let img = copy_and_unpack(&format!("docker://{target}"), None);
    let c = &img.config;
    // One layer for the whole `Layer`, one for WORKDIR's directory (it exists: BuildKit still
    // writes the layer), on alpine's one.
    let manifest = &pushed.images[0].1;
    assert_eq!(
        manifest.layers.len(),
        3,
        "{}",
        String::from_utf8_lossy(&manifest.manifest.bytes)
    );
    assert_eq!(
        image_argv(c),
        ["/usr/bin/tool"],
        "alpine's CMD reset by ENTRYPOINT"
    );
    assert!(
        image_env(c).contains(&"GREETING=cost: $HOME \"quoted\" \\back".to_string()),
        "{:?}",
        image_env(c)
    );
    let inner = &c["config"];
    assert_eq!(inner["Labels"]["org.example.note"], "a b  c");
    assert_eq!(inner["User"], "nobody");
    assert_eq!(inner["WorkingDir"], "/srv/www");
    assert!(inner["ExposedPorts"]["8080/tcp"].is_object());
    let history: Vec<String> = c["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str().map(str::to_string))
        .collect();
    assert!(
        history
            .iter()
            .any(|h| h == "COPY --chown=nobody app/ / # buildkit"),
        "{history:?}"
    );

    let root = &img.rootfs;
    // Owned by alpine's own `nobody` (65534), what exists keeps its mode and owner.
    let tool_meta = std::fs::symlink_metadata(root.join("usr/local/bin/tool.sh")).unwrap();
    assert_eq!(
        (tool_meta.uid(), tool_meta.gid(), tool_meta.mode() & 0o7777),
        (65534, 65534, 0o755)
    );
    let etc = std::fs::metadata(root.join("etc")).unwrap();
    assert_eq!(
        (etc.uid(), etc.mode() & 0o7777),
        (0, 0o755),
        "/etc keeps alpine's owner"
    );
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(
        (tmp.uid(), tmp.mode() & 0o7777),
        (0, 0o1777),
        "/tmp keeps its sticky 1777"
    );
    let toml = std::fs::metadata(root.join("etc/app.toml")).unwrap();
    assert_eq!(toml.mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_link(root.join("usr/bin/tool")).unwrap(),
        Path::new("/usr/local/bin/tool.sh")
    );
    assert_eq!(
        std::fs::read_link(root.join("srv/www/home.html")).unwrap(),
        Path::new("index.html")
    );
    assert!(root.join("srv/www/app.js").is_file());
    assert!(!root.join("srv/www/maps/app.js.map").exists(), "excluded");
    let mtime = std::fs::metadata(root.join("srv/www/index.html"))
        .unwrap()
        .mtime();
    assert_eq!(mtime, 1_700_000_000, "mtimes are the epoch");

    let run = run_in_chroot(
        root,
        &[
            "/bin/su".into(),
            "-s".into(),
            "/bin/sh".into(),
            "nobody".into(),
            "-c".into(),
            "/usr/bin/tool".into(),
        ],
        &image_env(c),
    );
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, "65534\n65534\ncost: $HOME \"quoted\" \\back\n");
}

#[test]
fn several_platforms_and_a_layout_base_from_code() {
    let sb = Sandbox::new();
    let session = session(&sb);
    let out = sb.path().join("layout");
    let multi = ImageBuilder::from("scratch")
        .cache_dir(None)
        .platforms([
            Platform::linux_amd64(),
            Platform::parse("linux/arm64").unwrap(),
        ])
        .layer(Layer::new().bytes(b"data\n".to_vec(), "/data.txt", 0o644))
        .cmd(["/data.txt"]);
    let pushed = containerize(&multi, &session, &format!("oci:{}:multi", out.display()));
    assert_eq!(pushed.images.len(), 2);
    assert!(pushed.index.is_some(), "an index over both platforms");
    let index: serde_json::Value =
        serde_json::from_slice(&pushed.index.as_ref().unwrap().bytes).unwrap();
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"]);

    let on_layout = ImageBuilder::from(Base::Layout {
        dir: alpine_oci_layout().to_path_buf(),
        tag: Some("latest".into()),
    })
    .cache_dir(None)
    .cmd(["/bin/cat", "/etc/alpine-release"]);
    let pushed = containerize(&on_layout, &session, &format!("oci:{}:cat", out.display()));
    let img = copy_and_unpack(&format!("oci:{}:cat", out.display()), None);
    assert_eq!(
        img.config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1
    );
    let run = run_in_chroot(
        &img.rootfs,
        &image_argv(&img.config),
        &image_env(&img.config),
    );
    assert!(
        run.status.success() && !run.stdout.is_empty(),
        "{}",
        run.stderr
    );
    assert!(pushed.reference.ends_with(&pushed.digest.to_string()));

    let err = ImageBuilder::from("scratch").layer(
        Layer::new()
            .bytes(b"a".to_vec(), "/x", 0o644)
            .bytes(b"b".to_vec(), "/x", 0o644),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(err.containerize(
            &session,
            &Target::parse(&format!("oci:{}:bad", out.display())).unwrap(),
            &ocipush::events::ignore(),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("/x is given twice"), "{e}");
}

/// A registry behind a proxy that holds every upload at its closing `PUT` (the layer's,
/// streamed while built, comes first; the config's only after it), and a builder of one
/// 1 MiB layer on scratch to push there.
pub(crate) fn held_upload() -> (
    RegistryServer,
    crate::common::fault_proxy::FaultProxy,
    ImageBuilder,
) {
    use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
    let reg = RegistryServer::start();
    let proxy = FaultProxy::start(reg.port());
    proxy.add(Rule::new("PUT", "digest=", usize::MAX, Fault::Hold));
    let builder = ImageBuilder::from("scratch")
        .cache_dir(None)
        .layer(Layer::new().bytes(crate::common::fixtures::noise(1 << 20, 7), "/blob", 0o644));
    (reg, proxy, builder)
}

/// Cancelling the token while an upload is in flight (held by the proxy): `containerize`
/// returns `Cancelled`, the registry saw its sessions closed and no manifest.
#[test]
fn cancelling_containerize_mid_upload_closes_sessions_and_tags_nothing() {
    let sb = Sandbox::new();
    let (reg, proxy, builder) = held_upload();
    let session = session(&sb);
    let token = ocipush::CancellationToken::new();
    let builder = builder.cancel_on(token.clone());
    let addr = proxy.addr();
    let canceller = std::thread::spawn(move || {
        proxy.wait_held();
        token.cancel();
        proxy
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let target = Target::parse(&format!("{addr}/cancelled:v1")).unwrap();
    let got = rt.block_on(builder.containerize(&session, &target, &ocipush::events::ignore()));
    let _proxy = canceller.join().unwrap();
    assert!(
        !got.as_ref().is_err_and(ocipush::Error::is_retryable),
        "a cancellation is final"
    );
    assert!(matches!(got, Err(ocipush::Error::Cancelled)), "{got:?}");
    let log = reg.access_log();
    assert!(
        log.iter().any(|e| e.method == "DELETE"
            && e.path().contains("/blobs/uploads/")
            && e.status == 204),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path().contains("/manifests/")),
        "{log:#?}"
    );
}

/// The `custom_credentials` example: its provider's credentials reach the registry that asked
/// (a registry requiring a login), and a wrong password fails the push with the registry's
/// refusal and without showing the password.
#[test]
fn the_custom_credentials_example_logs_in_with_its_own_provider() {
    let sb = Sandbox::new();
    let reg = RegistryServer::start_with_auth("ci-bot", "s3cret-from-ci");
    let name = format!("{}/group/app", reg.addr());
    let run = |password: &str| {
        let mut cmd = sb.command_for(&example_bin("custom_credentials"));
        cmd.env("CI_REGISTRY", reg.addr())
            .env("CI_REGISTRY_USER", "ci-bot")
            .env("CI_REGISTRY_PASSWORD", password)
            .arg(format!("{name}:v1"));
        run_watched(cmd)
    };
    let out = run("s3cret-from-ci");
    let digest = assert_pushed(&out, &name);
    let img = copy_and_unpack(
        &format!("docker://{name}@{digest}"),
        Some(("ci-bot", "s3cret-from-ci")),
    );
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("VERSION")).unwrap(),
        "1.0.0\n"
    );

    let out = run("wrong-password");
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("wrong-password"),
        "the password was shown: {err}"
    );
    assert!(
        err.contains("401") || err.to_lowercase().contains("auth"),
        "{err}"
    );
}
