//! Rootless `RUN`: the ocipush binary run as unprivileged users the harness makes
//! ([`crate::common::users`]), on the Alpine base, pushing to a real registry. With
//! subordinate ids (newuidmap/newgidmap from the Debian package `uidmap`) the image is the
//! one a root build of the same Dockerfile gives, digest for digest; read back by skopeo
//! and umoci and run in a chroot. Without them, a single-id mapping: a warning, and a
//! `chown` to another id fails with the reason and the fix.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::common::fixtures::{
    alpine_base_registry, copy_and_unpack, map_docker_alpine_to, write_files,
};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr};
use crate::common::registry::RegistryServer;
use crate::common::tools::run_image;
use crate::common::users::{self, TestUser};

const EPOCH: &str = "1700000000";

const DOCKERFILE: &str = r#"FROM alpine:latest
RUN adduser -D app && mkdir -p /data && chown app:app /data && test -d /sys/class/net
RUN rm /etc/motd
USER app
RUN id -u > /tmp/uid && mkdir -m 700 /data/private && echo secret > /data/private/key && chmod 600 /data/private/key
USER root
RUN ls -ld /data/private | grep -q '^drwx------' && cat /data/private/key > /seen
RUN rm -r /etc/apk && mkdir /etc/apk && echo new > /etc/apk/only && mkdir -m 555 /closed && touch /closed/in
CMD ["/bin/sh", "-c", "cat /tmp/uid; stat -c %U:%G /data; test -e /etc/motd || echo motd-gone"]
"#;

/// A sandbox whose files (and `ctx/Dockerfile` = `dockerfile`) belong to `user`, mapping
/// `alpine` to a fresh registry; returns it with the registry.
fn user_sandbox(user: &TestUser, dockerfile: &str) -> (Sandbox, RegistryServer) {
    let sb = Sandbox::new();
    let alpine = alpine_base_registry(&sb);
    write_files(&sb.path().join("ctx"), &[("Dockerfile", dockerfile)]);
    users::give(user, &[sb.path()]);
    (sb, alpine)
}

fn args(sb: &Sandbox, dest: &str, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> =
        vec!["--registries-conf".into(), sb.registries_conf().into()];
    a.extend(extra.iter().map(Into::into));
    a.push(sb.path().join("ctx/Dockerfile").into());
    a.push(dest.into());
    a
}

/// The Dockerfile of `sb` built by root in `root_sb` (its own sandbox and cache) and pushed
/// as `repo:tag` with the options `extra`; the digest pushed.
fn root_build(root_sb: &Sandbox, sb: &Sandbox, repo: &str, tag: &str, extra: &[&str]) -> String {
    let mut a = args(root_sb, &format!("{repo}:{tag}"), extra);
    let n = a.len();
    a[n - 2] = sb.path().join("ctx/Dockerfile").into();
    let out = root_sb.ocipush_env(a, &[("SOURCE_DATE_EPOCH", EPOCH)]);
    assert_pushed(&out, repo)
}

#[test]
fn rootless_run_with_subordinate_ids_builds_the_image_a_root_build_does() {
    let user = users::with_ranges();
    let (sb, alpine) = user_sandbox(&user, DOCKERFILE);
    let reg = RegistryServer::start();
    let repo = format!("{}/rootless", reg.addr());
    // The user's own cache, where $XDG_CACHE_HOME says.
    let xdg_cache = sb.path().join("xdg-cache");
    let xdg_cache_s = xdg_cache.to_str().unwrap();
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{repo}:user"), &[]),
        &[
            ("SOURCE_DATE_EPOCH", EPOCH),
            ("XDG_CACHE_HOME", xdg_cache_s),
        ],
    );
    let digest = assert_pushed(&out, &repo);
    assert!(!stderr(&out).contains("single-id"), "{}", stderr(&out));

    // The same Dockerfile built by root (its own sandbox and cache): the same image.
    let root_sb = Sandbox::new();
    map_docker_alpine_to(&root_sb, &alpine);
    let root_digest = root_build(&root_sb, &sb, &repo, "root", &[]);
    assert_eq!(digest, root_digest, "rootless and root builds differ");

    let img = copy_and_unpack(&format!("docker://{repo}@{digest}"), None);
    let root = &img.rootfs;
    let data = std::fs::metadata(root.join("data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 1000));
    assert_eq!(
        std::fs::read_to_string(root.join("tmp/uid")).unwrap(),
        "1000\n"
    );
    // What app kept to itself (0700 directory, 0600 file, unreadable to the user on disk)
    // is in the layer with its owner and mode, and the next RUN saw it unchanged.
    let private = std::fs::metadata(root.join("data/private")).unwrap();
    assert_eq!((private.uid(), private.mode() & 0o7777), (1000, 0o700));
    let key = std::fs::metadata(root.join("data/private/key")).unwrap();
    assert_eq!(
        (key.uid(), key.permissions().mode() & 0o7777),
        (1000, 0o600)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("seen")).unwrap(),
        "secret\n"
    );
    // `rm` made an overlay whiteout in the namespace: the layer holds exactly its marker.
    let layers = crate::e2e_run::layout_layers(&img.layout);
    let paths = |i: usize| -> Vec<String> {
        crate::e2e_run::layer_entries(&layers[i])
            .into_iter()
            .map(|e| e.0)
            .collect()
    };
    assert_eq!(paths(2), ["etc/", "etc/.wh.motd"]);
    let uid_layer = crate::e2e_run::layer_entries(&layers[3]);
    assert!(
        uid_layer
            .iter()
            .any(|(p, _, uid)| p == "tmp/uid" && *uid == 1000),
        "{uid_layer:?}"
    );
    // A directory replaced in the namespace is marked `user.overlay.opaque`: the layer holds
    // the image spec's opaque marker.
    let opaque = paths(5);
    assert!(
        opaque.contains(&"etc/apk/.wh..wh..opq".to_string()),
        "{opaque:?}"
    );
    let run = run_image(root, &img.config);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.stdout, "1000\napp:app\nmotd-gone\n");

    // The snapshots are in the user's own cache, per mapping, and nothing is left behind
    // (temporary trees holding files of other ids were removed inside the namespace).
    let run_dir = xdg_cache.join("ocipush/run");
    let snaps: Vec<_> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshots"))
        .collect();
    assert_eq!(snaps.len(), 1, "{run_dir:?}");
    let name = snaps[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("snapshots-rootless-{}-", user.uid)),
        "{name}"
    );
    assert_eq!(snaps[0].metadata().unwrap().uid(), user.uid);
    let leftovers: Vec<_> = std::fs::read_dir(snaps[0].path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Again without the layer cache (every RUN executed, on snapshots unpacked afresh in
    // the spool): the same image.
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{repo}:again"), &["--no-cache"]),
        &[
            ("SOURCE_DATE_EPOCH", EPOCH),
            ("XDG_CACHE_HOME", xdg_cache_s),
        ],
    );
    assert_eq!(assert_pushed(&out, &repo), digest);
    // Its snapshots were in the spool (no cache): removed with it, nothing left in TMPDIR.
    let tmp: Vec<_> = std::fs::read_dir(sb.path().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // That image as a base, unpacked rootless from its layers (whiteout, opaque directory,
    // app's private files, a closed directory): what the next RUN sees and its layer are
    // root's too.
    let from = format!(
        "FROM {repo}@{digest}\nRUN test ! -e /etc/motd && test ! -e /etc/apk/repositories && cat /etc/apk/only && stat -c %u:%a /data/private /closed && cat /data/private/key && touch /closed/more\n"
    );
    write_files(&sb.path().join("ctx"), &[("Dockerfile", &from)]);
    users::give(&user, &[&sb.path().join("ctx")]);
    for s in [&sb, &root_sb] {
        s.set_registries(&[
            (
                "docker.io/library/alpine",
                &format!("{}/library/alpine", alpine.addr()),
            ),
            (&repo, &repo),
        ]);
    }
    users::give(&user, &[&sb.registries_conf()]);
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{repo}:next"), &["--no-cache"]),
        &[("SOURCE_DATE_EPOCH", EPOCH)],
    );
    let next = assert_pushed(&out, &repo);
    let err = stderr(&out);
    for want in ["| new", "| 1000:700", "| 0:555", "| secret"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert_eq!(
        root_build(&root_sb, &sb, &repo, "next-root", &["--no-cache"]),
        next,
        "rootless and root builds differ"
    );
}

/// Every range of the user is mapped, one after the other: with 1000 ids and then 65536,
/// image uid 66000 exists in the namespace (past either range alone), is kept in the layer,
/// and the next RUN sees it; the image is the one root builds.
#[test]
fn rootless_run_maps_every_subordinate_range_of_the_user() {
    let user = users::with_two_ranges();
    let dockerfile = "FROM alpine:latest\n\
        RUN adduser -D -u 66000 far && mkdir /far && chown far:far /far && touch /near && chown 500:500 /near\n\
        RUN stat -c %u:%g /far > /far-owner\n";
    let (sb, alpine) = user_sandbox(&user, dockerfile);
    let reg = RegistryServer::start();
    let repo = format!("{}/two-ranges", reg.addr());
    let xdg_cache = sb.path().join("xdg-cache");
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{repo}:user"), &[]),
        &[
            ("SOURCE_DATE_EPOCH", EPOCH),
            ("XDG_CACHE_HOME", xdg_cache.to_str().unwrap()),
        ],
    );
    let digest = assert_pushed(&out, &repo);

    let root_sb = Sandbox::new();
    map_docker_alpine_to(&root_sb, &alpine);
    assert_eq!(
        root_build(&root_sb, &sb, &repo, "root", &[]),
        digest,
        "rootless and root builds differ"
    );

    let img = copy_and_unpack(&format!("docker://{repo}@{digest}"), None);
    let root = &img.rootfs;
    let far = std::fs::metadata(root.join("far")).unwrap();
    assert_eq!((far.uid(), far.gid()), (66000, 66000));
    let near = std::fs::metadata(root.join("near")).unwrap();
    assert_eq!((near.uid(), near.gid()), (500, 500));
    assert_eq!(
        std::fs::read_to_string(root.join("far-owner")).unwrap(),
        "66000:66000\n"
    );
}

#[test]
fn a_failing_rootless_run_fails_with_its_line_and_output() {
    let user = users::with_ranges();
    let (sb, _alpine) = user_sandbox(
        &user,
        "FROM alpine:latest\nRUN --network=none test -d /sys/class/net && echo net-none-ok\n\
         RUN adduser -D app && echo first-line && echo the-reason >&2 && exit 3\n",
    );
    let reg = RegistryServer::start();
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{}/bad:v1", reg.addr()), &[]),
        &[],
    );
    let err = assert_failed(&out, 1);
    // /sys is sysfs of the new network namespace with --network=none (the host's, bound,
    // otherwise).
    assert!(err.contains("Dockerfile:2 | net-none-ok"), "{err}");
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("exited with code 3"), "{err}");
    assert!(
        err.contains("first-line") && err.contains("the-reason"),
        "{err}"
    );
    assert!(!err.contains("single-id"), "{err}");
    // The failed RUN's upper directory (app's home, owned by a subordinate id) is gone.
    let snaps = std::fs::read_dir(sb.path().join("home/.cache/ocipush/run"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("snapshots-rootless-"))
        .unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn rootless_run_without_subordinate_ids_maps_only_root_and_explains_chown() {
    let user = users::without_ranges();
    let (sb, _alpine) = user_sandbox(
        &user,
        "FROM alpine:latest\nRUN echo ok > /ok && echo uid=$(id -u)\n",
    );
    let reg = RegistryServer::start();
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{}/single:v1", reg.addr()), &[]),
        &[],
    );
    let digest = assert_pushed(&out, &format!("{}/single", reg.addr()));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2 | uid=0"), "{err}");
    assert!(
        err.contains(&format!(
            "warning: RUN is rootless with a single-id mapping ({})",
            user.name
        )) && err.contains("a chown to another id fails"),
        "{err}"
    );
    let img = copy_and_unpack(&format!("docker://{}/single@{digest}", reg.addr()), None);
    let ok = std::fs::metadata(img.rootfs.join("ok")).unwrap();
    assert_eq!((ok.uid(), ok.gid()), (0, 0));

    // A chown to another id fails, and the error says why and what to do.
    write_files(
        &sb.path().join("ctx"),
        &[(
            "Dockerfile",
            "FROM alpine:latest\nRUN touch /f && chown 1000:1000 /f\n",
        )],
    );
    users::give(&user, &[&sb.path().join("ctx")]);
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{}/single:v2", reg.addr()), &[]),
        &[],
    );
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("single-id user namespace"), "{err}");
    assert!(
        err.contains(&format!(
            "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {}",
            user.name
        )),
        "{err}"
    );
    // USER of another id cannot run at all: said before anything runs.
    write_files(
        &sb.path().join("ctx"),
        &[("Dockerfile", "FROM alpine:latest\nUSER 1000\nRUN true\n")],
    );
    users::give(&user, &[&sb.path().join("ctx")]);
    let out = sb.ocipush_as(
        &user,
        args(&sb, &format!("{}/single:v3", reg.addr()), &[]),
        &[],
    );
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(
        err.contains("USER 1000") && err.contains("only root"),
        "{err}"
    );
}

/// `RUN --mount` as an unprivileged user: a cache mount owned by an image user (set through
/// the namespace), a secret, a bind of the build context (whose directory also holds the
/// user's cache: the mirror leaves itself out) and a tmpfs; the image runs and shows what the
/// cache held, and the secret is nowhere in the output.
#[test]
fn rootless_run_mounts_cache_secret_bind_and_tmpfs() {
    let user = users::with_ranges();
    let (sb, _alpine) = user_sandbox(
        &user,
        "FROM alpine:latest\n\
         RUN --mount=type=cache,target=/var/cache/x,uid=1000 echo cached > /var/cache/x/f && stat -c %u /var/cache/x > /cache-owner\n\
         RUN --mount=type=cache,target=/var/cache/x cat /var/cache/x/f > /from-cache\n\
         RUN --mount=type=secret,id=tok,required=true test \"$(wc -c < /run/secrets/tok)\" = 15 && echo secret-ok\n\
         RUN --mount=type=bind,target=/ctx test -f /ctx/Dockerfile && echo bind-ok\n\
         RUN --mount=type=tmpfs,target=/t touch /t/x && echo tmpfs-ok\n\
         CMD [\"/bin/sh\", \"-c\", \"cat /cache-owner /from-cache; test -e /t/x || echo tmpfs-empty\"]\n",
    );
    let secret = sb.path().join("ctx/tok.txt");
    std::fs::write(&secret, "rootless-s3cret").unwrap();
    users::give(&user, &[&secret]);
    let reg = RegistryServer::start();
    let name = format!("{}/mounts", reg.addr());
    let sec = format!("id=tok,src={}", secret.display());
    let out = sb.ocipush_as(
        &user,
        args(
            &sb,
            &format!("{name}:v1"),
            &["--progress", "plain", "--secret", &sec],
        ),
        &[],
    );
    let digest = assert_pushed(&out, &name);
    let err = stderr(&out);
    for want in ["secret-ok", "bind-ok", "tmpfs-ok"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(
        !err.contains("rootless-s3cret"),
        "the secret was shown: {err}"
    );
    let img = copy_and_unpack(&format!("docker://{name}@{digest}"), None);
    let ran = run_image(&img.rootfs, &img.config);
    assert_eq!(ran.stdout, "1000\ncached\ntmpfs-empty\n", "{ran:?}");
}
