//! The library's jobs run on a spawned task (`Runtime::spawn`, `tokio::spawn`), as an IDE or a CI system runs them next to its
//! own work: given owned arguments, their futures are `Send + 'static`. (A closure returning a
//! future kept inside one — `stream::iter(…).map(|b| upload(b))` — once made them not provably
//! `Send` for every lifetime, so `tokio::spawn` refused them at compile time; only `block_on`
//! worked.) Each job here runs for real, into OCI layouts, and is read back by skopeo. A task
//! aborted (its future dropped, how embedders often cancel) stops the threads it started.

use std::sync::Arc;

use ocipush::build::BuildOptions;
use ocipush::builder::{ImageBuilder, Layer};
use ocipush::copy::{CopyOptions, copy_image};
use ocipush::pipeline::{Session, Target, build_and_push_platforms};
use ocipush::registries_conf::RegistriesConf;

use crate::common::fixtures::write_files;
use crate::common::tempdir;
use crate::common::tools::skopeo_inspect_raw;

fn session() -> Session {
    Session::new(
        RegistriesConf::default(),
        Arc::new(ocipush::auth::Anonymous),
        false,
    )
    .unwrap()
}

#[test]
fn builds_copies_and_builders_run_on_spawned_tasks() {
    let work = tempdir("spawned");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let layout = |name: &str| format!("oci:{}:v1", work.path().join(name).display());

    // ImageBuilder::containerize.
    let target = Target::parse(&layout("built")).unwrap();
    let builder = ImageBuilder::from("scratch")
        .cache_dir(None)
        .layer(Layer::new().bytes(b"spawned\n".to_vec(), "/hello", 0o644));
    let built = rt
        .block_on(rt.spawn(async move {
            builder
                .containerize(&session(), &target, &ocipush::events::ignore())
                .await
        }))
        .unwrap()
        .unwrap();

    // copy_image, from that layout.
    let (src, dest) = (
        Target::parse(&layout("built")).unwrap(),
        Target::parse(&layout("copied")).unwrap(),
    );
    let copied = rt
        .block_on(rt.spawn(async move {
            copy_image(
                &session(),
                &src,
                &dest,
                &CopyOptions::default(),
                &ocipush::events::ignore(),
            )
            .await
        }))
        .unwrap()
        .unwrap();
    assert_eq!(copied, built.digest);

    // build_and_push_platforms, the Dockerfile route.
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY hello /hello\n"),
            ("hello", "spawned\n"),
        ],
    );
    let mut opts = BuildOptions::new(ctx.join("Dockerfile"), &ctx, work.path().join("spool"));
    opts.cache_dir = None;
    let target = Target::parse(&layout("dockerfile")).unwrap();
    let pushed = rt
        .block_on(rt.spawn(async move {
            let platforms = vec![opts.platform.clone()];
            build_and_push_platforms(
                &session(),
                &opts,
                &platforms,
                &target,
                &[],
                2,
                &ocipush::events::ignore(),
            )
            .await
        }))
        .unwrap()
        .unwrap();

    for (name, digest) in [("copied", &built.digest), ("dockerfile", &pushed.digest)] {
        let manifest = skopeo_inspect_raw(&layout(name), false, None);
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1, "{name}");
        assert!(
            std::fs::read_to_string(work.path().join(name).join("index.json"))
                .unwrap()
                .contains(&digest.to_string()),
            "{name}"
        );
    }
}

/// Aborting the task of a build — dropping its future — stops the thread writing its layer, as
/// cancelling its token does: the 192 MiB layer being written when the task is aborted is never
/// finished, and its partial file is removed. (Before, the thread wrote the layer to the end
/// for nobody, as a `RUN` ran on; and a cancelled layer writer spun at full CPU for ever, its
/// cancellation error being the kind `write_all` retries.)
#[test]
fn an_aborted_build_stops_the_threads_it_started() {
    use ocipush::events::Event;

    let work = tempdir("aborted");
    let ctx = work.path().join("ctx");
    write_files(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY big.bin /big.bin\n")],
    );
    std::fs::write(
        ctx.join("big.bin"),
        crate::common::fixtures::noise(192 << 20, 29),
    )
    .unwrap();
    let mut opts = BuildOptions::new(ctx.join("Dockerfile"), &ctx, work.path().join("spool"));
    opts.cache_dir = None;
    let target = Target::parse(&format!("oci:{}:v1", work.path().join("out").display())).unwrap();
    let (sink, mut rx) = ocipush::events::channel();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let job = rt.spawn(async move {
        let platforms = vec![opts.platform.clone()];
        build_and_push_platforms(&session(), &opts, &platforms, &target, &[], 2, &sink).await
    });
    let mut before = Vec::new();
    while let Some(s) = rx.blocking_recv() {
        let started = matches!(s.event, Event::LayerStarted { line: 2, .. });
        before.push(s.event);
        if started {
            break;
        }
    }
    assert!(
        matches!(before.last(), Some(Event::LayerStarted { .. })),
        "the COPY never started: {before:#?}"
    );
    job.abort();
    assert!(rt.block_on(job).unwrap_err().is_cancelled());
    // The channel ends once every holder of the sink is gone: the aborted task and every
    // thread it started.
    let mut after = Vec::new();
    while let Some(s) = rx.blocking_recv() {
        after.push(s.event);
    }
    assert!(
        !after.iter().any(|e| matches!(e, Event::LayerBuilt { .. })),
        "{after:#?}"
    );
    // The layer's writer stopped: no blob was finished in the spool, and its partial file
    // is gone.
    let spooled: Vec<_> = std::fs::read_dir(work.path().join("spool/blobs/sha256"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert_eq!(
        spooled,
        Vec::<std::path::PathBuf>::new(),
        "the layer was written on after the build was dropped"
    );
    assert!(!work.path().join("out/index.json").exists());
}

/// What an embedder shares between tasks (`Arc<Session>`) or sends back from one (results,
/// errors into `anyhow`) is `Send + Sync` — a compile-time check, failing the build if a
/// type stops being so.
#[test]
fn shared_and_returned_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Session>();
    send_sync::<ImageBuilder>();
    send_sync::<BuildOptions>();
    send_sync::<CopyOptions>();
    send_sync::<Target>();
    send_sync::<ocipush::pipeline::Pushed>();
    send_sync::<ocipush::Error>();
    send_sync::<ocipush::copy::CopyError>();
    send_sync::<ocipush::events::Event>();
    send_sync::<ocipush::events::EventSink>();
}

/// Abort `job` (a push or copy whose uploads `proxy` holds, every session's location known),
/// then wait until every upload session it opened has been closed (`DELETE`), and check that
/// `reg` got no manifest.
fn abort_and_see_sessions_closed<T: std::fmt::Debug>(
    rt: &tokio::runtime::Runtime,
    job: tokio::task::JoinHandle<T>,
    proxy: &crate::common::fault_proxy::FaultProxy,
    reg: &crate::common::registry::RegistryServer,
) {
    use crate::common::fault_proxy::upload_requests;
    job.abort();
    assert!(rt.block_on(job).unwrap_err().is_cancelled());
    proxy.wait_for("every session opened closed", |log| {
        upload_requests(log, "DELETE") >= upload_requests(log, "POST")
    });
    let log = reg.access_log();
    assert!(
        log.iter()
            .filter(|e| e.method == "DELETE" && e.path().contains("/blobs/uploads/"))
            .all(|e| e.status == 204),
        "{log:#?}"
    );
    assert!(
        !log.iter()
            .any(|e| e.method == "PUT" && e.path().contains("/manifests/")),
        "{log:#?}"
    );
}

/// Aborting the task of a push — dropping its future mid-upload — still closes the upload
/// sessions it opened (from a task of their own: a drop cannot await), as cancelling does; no
/// manifest is put.
#[test]
fn an_aborted_push_closes_its_upload_sessions() {
    let sb = crate::common::ocipush::Sandbox::new();
    let (reg, proxy, builder) = crate::e2e_builder::held_upload();
    let target = Target::parse(&format!("{}/aborted:v1", proxy.addr())).unwrap();
    let session = crate::e2e_builder::session(&sb);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let job = rt.spawn(async move {
        builder
            .containerize(&session, &target, &ocipush::events::ignore())
            .await
    });
    proxy.wait_held();
    abort_and_see_sessions_closed(&rt, job, &proxy, &reg);
}

/// The same for a copy: aborted while its blobs' uploads are held, the sessions it opened are
/// closed and nothing is tagged.
#[test]
fn an_aborted_copy_closes_its_upload_sessions() {
    use crate::common::fault_proxy::{Fault, FaultProxy, Rule};
    use crate::common::registry::RegistryServer;

    let sb = crate::common::ocipush::Sandbox::new();
    let a = crate::common::fixtures::alpine_base_registry(&sb);
    let b = RegistryServer::start();
    let proxy = FaultProxy::start(b.port());
    proxy.add(Rule::new("PUT", "digest=", usize::MAX, Fault::Hold));
    let session = crate::e2e_builder::session(&sb);
    let src = Target::parse(&format!("{}/library/alpine:latest", a.addr())).unwrap();
    let dest = Target::parse(&format!("{}/copy-aborted:v1", proxy.addr())).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let job = rt.spawn(async move {
        copy_image(
            &session,
            &src,
            &dest,
            &CopyOptions::default(),
            &ocipush::events::ignore(),
        )
        .await
    });
    // Both blobs (the layer and the config) at their closing PUT: every session's location is
    // known (one whose POST is still in flight when the task is aborted cannot be closed).
    proxy.wait_for_closing_puts(2);
    proxy.wait_held();
    abort_and_see_sessions_closed(&rt, job, &proxy, &b);
}
