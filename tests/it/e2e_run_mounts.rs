//! `RUN --mount` (feature `run`, as root) on the Alpine base built by umoci, pushed to the
//! real registry and read back by skopeo and umoci: cache mounts persist across builds and
//! stay out of layers; secrets (from a file and from the environment) are readable in the RUN
//! and appear in no pushed byte and no output; bind mounts from the context and from a stage
//! are read-only, or writable with their writes discarded; tmpfs leaves nothing; ssh is
//! refused; the RUN cache key follows a bound file's content but not a secret's; and buildah
//! (`--isolation chroot`) builds the same files from one mount Dockerfile.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::buildah::Buildah;
use crate::common::fixtures::{alpine_base_registry, copy_and_unpack, seed_alpine, write_files};
use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed, stderr, stdout};
use crate::common::registry::RegistryServer;
use crate::e2e_run::{layer_entries, layout_layers};

/// Builds `dockerfile` in the context `ctx` (files written first) to `reg` as `repo:tag`.
fn build(
    sb: &Sandbox,
    reg: &RegistryServer,
    files: &[(&str, &str)],
    repo_tag: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> std::process::Output {
    let ctx = sb.path().join("ctx");
    write_files(&ctx, files);
    let mut argv: Vec<std::ffi::OsString> =
        vec!["--registries-conf".into(), sb.registries_conf().into()];
    argv.extend(args.iter().map(Into::into));
    argv.push(ctx.join("Dockerfile").into());
    argv.push(format!("{}/{repo_tag}", reg.addr()).into());
    sb.ocipush_env(argv, envs)
}

/// Every path in every layer of the image in `layout`, with the layer's index.
fn all_layer_paths(layout: &Path) -> Vec<(usize, String)> {
    layout_layers(layout)
        .iter()
        .enumerate()
        .flat_map(|(i, l)| layer_entries(l).into_iter().map(move |e| (i, e.0)))
        .collect()
}

#[test]
fn a_cache_mount_survives_between_builds_and_stays_out_of_the_layer() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let cache = sb.path().join("cache");
    let cache_arg = cache.display().to_string();
    let dockerfile = "FROM alpine:latest AS tools\nRUN mkdir -p /out && echo seed > /out/s.txt\n\
        FROM alpine:latest\nARG N\n\
        RUN --mount=type=cache,id=thing,target=/cachemnt/sub --mount=type=cache,target=/owned,uid=1000,gid=1000,mode=0700 \
        echo run$N >> /cachemnt/sub/log && cp /cachemnt/sub/log /seen && stat -c '%u %g %a' /owned > /owned-stat\n\
        RUN --mount=type=cache,id=seeded,target=/s,from=tools,source=/out --mount=type=cache,id=seeded-dir,target=/d,from=seeddir \
        cat /s/s.txt /d/x.txt > /seeds && echo more$N >> /s/s.txt && echo more$N >> /d/x.txt\n";
    let files = [("Dockerfile", dockerfile)];
    let seed_dir = sb.path().join("seed-dir");
    write_files(&seed_dir, &[("x.txt", "x\n")]);
    let seed_arg = format!("seeddir={}", seed_dir.display());
    let first = build(
        &sb,
        &reg,
        &files,
        "cache:1",
        &[
            "--cache-dir",
            &cache_arg,
            "--build-arg",
            "N=1",
            "--build-context",
            &seed_arg,
        ],
        &[],
    );
    assert_pushed(&first, &format!("{}/cache", reg.addr()));
    let second = build(
        &sb,
        &reg,
        &files,
        "cache:2",
        &[
            "--cache-dir",
            &cache_arg,
            "--build-arg",
            "N=2",
            "--build-context",
            &seed_arg,
        ],
        &[],
    );
    let digest = assert_pushed(&second, &format!("{}/cache", reg.addr()));
    let img = copy_and_unpack(&format!("docker://{}/cache@{digest}", reg.addr()), None);
    // The second build saw what the first wrote into the cache.
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("seen")).unwrap(),
        "run1\nrun2\n"
    );
    // A cache with `from` started with its source's files once (a stage's, a directory
    // context's, copied: the directory itself is untouched), then kept what RUNs wrote.
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("seeds")).unwrap(),
        "seed\nmore1\nx\nmore1\n"
    );
    assert_eq!(
        std::fs::read_to_string(seed_dir.join("x.txt")).unwrap(),
        "x\n"
    );
    // uid, gid and mode apply to a cache directory when it is made.
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("owned-stat")).unwrap(),
        "1000 1000 700\n"
    );
    // Neither the cache's files nor its mount points (or their parents) reach a layer.
    let paths = all_layer_paths(&img.layout);
    assert!(
        !paths.iter().any(|(_, p)| p.starts_with("cachemnt")
            || p.starts_with("owned/")
            || p.starts_with("s/")
            || p.starts_with("d/")),
        "{paths:?}"
    );
    assert!(!img.rootfs.join("cachemnt").exists());
    assert!(!img.rootfs.join("owned").exists());
    let run_layer: Vec<&str> = paths
        .iter()
        .filter(|(i, _)| *i == 1)
        .map(|(_, p)| p.as_str())
        .collect();
    assert_eq!(run_layer, ["owned-stat", "seen"], "{paths:?}");
}

#[test]
fn secrets_from_a_file_and_the_environment_reach_the_run_and_nothing_else() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let file_secret = "s3cret-from-file-7Qx9";
    let env_secret = "s3cret-from-env-K2v8";
    let secret_file = sb.path().join("token.txt");
    std::fs::write(&secret_file, file_secret).unwrap();
    // The Dockerfile spells each secret in two quoted halves: its text (in the config's
    // history) must not hold the secret itself.
    let halves = |s: &str| {
        let (a, b) = s.split_at(8);
        format!("\"{a}\"\"{b}\"")
    };
    let dockerfile = format!(
        "FROM alpine:latest\n\
         RUN --mount=type=secret,id=filetok --mount=type=secret,id=envtok,env=ENVTOK,target=/etc/envtok \
         cat /run/secrets/filetok > /dev/null && test -s /run/secrets/filetok \
         && test \"$(cat /run/secrets/filetok)\" = {f} && test \"$ENVTOK\" = {e} \
         && test \"$(cat /etc/envtok)\" = {e} && test \"$(stat -c '%a %u' /run/secrets/filetok)\" = '400 0' \
         && ! sh -c 'echo x > /run/secrets/filetok' 2>/dev/null && echo secrets-ok && touch /done\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo absent-ok\n",
        f = halves(file_secret),
        e = halves(env_secret),
    );
    let args = [
        "--secret",
        &format!("id=filetok,src={}", secret_file.display()),
        "--secret",
        "id=envtok,env=MY_ENV_TOKEN",
    ];
    let out = build(
        &sb,
        &reg,
        &[("Dockerfile", &dockerfile)],
        "secret:1",
        &args,
        &[("MY_ENV_TOKEN", env_secret)],
    );
    let digest = assert_pushed(&out, &format!("{}/secret", reg.addr()));
    let err = stderr(&out);
    assert!(err.contains("secrets-ok"), "{err}");
    assert!(err.contains("absent-ok"), "{err}");
    for s in [file_secret, env_secret] {
        assert!(!err.contains(s), "secret in stderr: {err}");
        assert!(!stdout(&out).contains(s), "secret in stdout");
    }
    let img = copy_and_unpack(&format!("docker://{}/secret@{digest}", reg.addr()), None);
    assert!(img.rootfs.join("done").is_file());
    assert!(!img.rootfs.join("run/secrets").exists());
    assert!(!img.rootfs.join("etc/envtok").exists());
    // Every byte pushed: manifest, config, index, and each layer as stored and decompressed.
    let mut scanned = 0;
    for e in std::fs::read_dir(img.layout.join("blobs/sha256")).unwrap() {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        let mut forms = vec![raw.clone()];
        if raw.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut plain)
                .unwrap();
            forms.push(plain);
        }
        for bytes in forms {
            for s in [file_secret, env_secret] {
                assert!(
                    !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                    "a pushed blob holds the secret {s}"
                );
            }
            scanned += 1;
        }
    }
    assert!(
        scanned >= 5,
        "manifest, config and layers scanned: {scanned}"
    );

    // required=true and no such secret: the build fails, naming the line and the secret.
    let out = build(
        &sb,
        &reg,
        &[(
            "Dockerfile",
            "FROM alpine:latest\nRUN --mount=type=secret,id=nope,required=true true\n",
        )],
        "secret:2",
        &[],
        &[],
    );
    let err = assert_failed(&out, 1);
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("secret nope is required"), "{err}");
}

#[test]
fn bind_and_tmpfs_mounts_leave_nothing_and_ssh_is_refused() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let dockerfile = "FROM alpine:latest AS tools\nRUN mkdir -p /out && echo from-stage > /out/b.txt\n\
        FROM alpine:latest\n\
        RUN --mount=target=/ctx --mount=type=bind,from=tools,source=/out,target=/stage \
        cat /ctx/data/a.txt /stage/b.txt > /seen && test ! -e /ctx/data/ignored.txt \
        && ! touch /ctx/new 2>/dev/null && ! touch /stage/new 2>/dev/null && test -L /ctx/data/up\n\
        RUN --mount=type=bind,source=data,target=/rw,rw --mount=from=tools,src=/out,dst=/rw2,readwrite \
        echo changed > /rw/a.txt && touch /rw2/new && cat /rw/a.txt > /rwseen\n\
        RUN --mount=type=tmpfs,target=/tmp/scratch,size=1m echo x > /tmp/scratch/file && test \"$(cat /tmp/scratch/file)\" = x\n\
        RUN --mount=type=bind,source=../../data/../data/a.txt,target=/file.txt cat /file.txt > /single\n";
    let files = [
        ("Dockerfile", dockerfile),
        ("data/a.txt", "from-context\n"),
        ("data/ignored.txt", "ignored\n"),
        (".dockerignore", "data/ignored.txt\n"),
    ];
    let ctx = sb.path().join("ctx");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.join("data/up")).unwrap();
    let out = build(&sb, &reg, &files, "bind:1", &[], &[]);
    let digest = assert_pushed(&out, &format!("{}/bind", reg.addr()));
    let img = copy_and_unpack(&format!("docker://{}/bind@{digest}", reg.addr()), None);
    let read = |p: &str| std::fs::read_to_string(img.rootfs.join(p)).unwrap();
    assert_eq!(read("seen"), "from-context\nfrom-stage\n");
    assert_eq!(read("rwseen"), "changed\n");
    assert_eq!(read("single"), "from-context\n");
    // The context itself is untouched by the rw mount.
    assert_eq!(
        std::fs::read_to_string(ctx.join("data/a.txt")).unwrap(),
        "from-context\n"
    );
    let paths = all_layer_paths(&img.layout);
    for gone in ["ctx", "stage", "rw", "rw2", "tmp/scratch", "file.txt"] {
        assert!(
            !paths.iter().any(|(i, p)| *i > 0
                && (p.trim_end_matches('/') == gone || p.starts_with(&format!("{gone}/")))),
            "{gone} in a layer: {paths:?}"
        );
        assert!(!img.rootfs.join(gone).exists(), "{gone} in the image");
    }
    let tmp = std::fs::metadata(img.rootfs.join("tmp")).unwrap();
    assert_eq!(tmp.mode() & 0o7777, 0o1777, "Alpine's /tmp kept as it was");

    // A symlink out of the context is not followed out of it; ssh is refused with the line.
    for (df, want) in [
        (
            "FROM alpine:latest\nRUN --mount=source=data/up/passwd,target=/p cat /p\n",
            "not in the build context",
        ),
        (
            "FROM alpine:latest\nRUN --mount=type=ssh true\n",
            "RUN --mount=type=ssh is not supported",
        ),
    ] {
        let out = build(&sb, &reg, &[("Dockerfile", df)], "bind:2", &[], &[]);
        let err = assert_failed(&out, 1);
        assert!(err.contains("Dockerfile:2"), "{err}");
        assert!(err.contains(want), "{err}");
    }
}

/// The regular files of the last layer of the image whose manifest is `manifest` (blobs read
/// by `blob`), with their contents.
fn last_layer_files(
    manifest: &serde_json::Value,
    blob: &dyn Fn(&str) -> Vec<u8>,
) -> Vec<(String, String)> {
    let layers = manifest["layers"].as_array().unwrap();
    let raw = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let mut plain = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut plain)
            .unwrap();
    } else {
        plain = raw;
    }
    let mut ar = tar::Archive::new(&plain[..]);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.header().entry_type().is_file() {
            let path = e.path().unwrap().display().to_string();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            out.push((path, s));
        }
    }
    out.sort();
    out
}

/// buildah (`--isolation chroot`, which supports RUN mounts and `--secret`) and ocipush build
/// one Dockerfile using a cache, a secret, a context bind and a tmpfs: the RUN's layer holds
/// the same files with the same contents.
#[test]
fn buildah_and_ocipush_agree_on_a_mount_dockerfile() {
    let buildah = Buildah::new();
    let sb = Sandbox::new();
    let a = RegistryServer::start();
    seed_alpine(&a, "library/alpine:latest");
    let base = format!("{}/library/alpine:latest", a.addr());
    buildah.pull(&base);
    let secret = sb.path().join("tok");
    std::fs::write(&secret, "twelve bytes").unwrap();
    let dockerfile = format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/cache --mount=type=secret,id=tok --mount=type=bind,source=in,target=/in \
         --mount=type=tmpfs,target=/scratch \
         echo hi > /scratch/x && cat /in/a.txt /scratch/x > /out.txt && wc -c < /run/secrets/tok >> /out.txt \
         && echo c > /cache/c && ls /cache >> /out.txt\n"
    );
    let ctx = sb.path().join("ctx");
    write_files(
        &ctx,
        &[("Dockerfile", &dockerfile), ("in/a.txt", "input\n")],
    );
    let bdir = sb.path().join("buildah-out");
    let args: Vec<std::ffi::OsString> = vec![
        "bud".into(),
        "--quiet".into(),
        "--isolation".into(),
        "chroot".into(),
        "--signature-policy".into(),
        buildah_policy(&sb).into(),
        "--tls-verify=false".into(),
        "--pull=false".into(),
        "--layers=false".into(),
        "--secret".into(),
        format!("id=tok,src={}", secret.display()).into(),
        "--file".into(),
        ctx.join("Dockerfile").into(),
        "--tag".into(),
        format!("dir:{}", bdir.display()).into(),
        ctx.clone().into(),
    ];
    let bout = buildah.raw(&args);
    assert!(
        bout.status.success(),
        "buildah bud: {}",
        String::from_utf8_lossy(&bout.stderr)
    );
    let bmanifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bdir.join("manifest.json")).unwrap()).unwrap();
    let mut bfiles = last_layer_files(&bmanifest, &|d| {
        std::fs::read(bdir.join(d.strip_prefix("sha256:").unwrap())).unwrap()
    });
    // buildah's chroot isolation leaves its empty /etc/resolv.conf mount point in every RUN
    // layer (with or without mounts); BuildKit and ocipush do not.
    bfiles.retain(|(p, c)| !(p == "etc/resolv.conf" && c.is_empty()));

    let olayout = sb.path().join("ocipush-out");
    let out = sb.ocipush([
        "--secret".into(),
        format!("id=tok,src={}", secret.display()),
        ctx.join("Dockerfile").display().to_string(),
        format!("oci:{}:t", olayout.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(olayout.join("index.json")).unwrap()).unwrap();
    let oblob = |d: &str| {
        std::fs::read(
            olayout
                .join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let omanifest: serde_json::Value =
        serde_json::from_slice(&oblob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let ofiles = last_layer_files(&omanifest, &oblob);
    assert_eq!(
        ofiles,
        [("out.txt".to_string(), "input\nhi\n12\nc\n".to_string())]
    );
    assert_eq!(ofiles, bfiles, "ocipush and buildah RUN layers differ");
}

/// A signature policy accepting anything (buildah's own is private to [`Buildah`]).
fn buildah_policy(sb: &Sandbox) -> std::path::PathBuf {
    let p = sb.path().join("policy.json");
    std::fs::write(
        &p,
        "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n",
    )
    .unwrap();
    p
}

/// The RUN cache key holds the mounts as BuildKit keys them: a context bind by its files'
/// content (a change runs the RUN again), a secret by its id only (a new value does not).
#[test]
fn mounts_are_part_of_the_run_cache_key() {
    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let cache = sb.path().join("cache");
    let secret = sb.path().join("tok");
    let cache_arg = cache.display().to_string();
    let secret_arg = format!("id=tok,src={}", secret.display());
    let dockerfile = "FROM alpine:latest\n\
        RUN --mount=source=data,target=/data --mount=type=secret,id=tok echo ran && cat /data/a.txt > /seen\n";
    let run = |tag: &str, a: &str, secret_value: &str| {
        std::fs::write(&secret, secret_value).unwrap();
        let out = build(
            &sb,
            &reg,
            &[("Dockerfile", dockerfile), ("data/a.txt", a)],
            &format!("key:{tag}"),
            &["--cache-dir", &cache_arg, "--secret", &secret_arg],
            &[],
        );
        let digest = assert_pushed(&out, &format!("{}/key", reg.addr()));
        (stderr(&out).contains("Dockerfile:2 | ran"), digest)
    };
    let (ran, first) = run("1", "one\n", "secret-value-1");
    assert!(ran, "the first build runs the command");
    let (ran, same) = run("2", "one\n", "secret-value-2");
    assert!(!ran, "same files, same secret id: served from the cache");
    assert_eq!(first, same);
    let (ran, changed) = run("3", "two\n", "secret-value-2");
    assert!(ran, "a bound context file changed: the command runs again");
    assert_ne!(first, changed);
    let img = copy_and_unpack(&format!("docker://{}/key@{changed}", reg.addr()), None);
    assert_eq!(
        std::fs::read_to_string(img.rootfs.join("seen")).unwrap(),
        "two\n"
    );
}

/// A RUN waiting for a `sharing=locked` cache mount that another build holds stops waiting
/// when its build is interrupted: exit 130 without running, while the holder goes on. (The
/// wait was a blocking `flock`: the interrupted build hung until the holder was done.)
#[test]
fn an_interrupt_ends_the_wait_for_a_locked_cache_mount() {
    use std::process::Stdio;

    use crate::common::ocipush::Spawned;

    let sb = Sandbox::new();
    let _alpine = alpine_base_registry(&sb);
    let reg = RegistryServer::start();
    let cache = sb.path().join("cache").display().to_string();
    let spawn = |name: &str, run: &str| {
        let ctx = sb.path().join(name);
        write_files(
            &ctx,
            &[(
                "Dockerfile",
                &format!(
                    "FROM alpine:latest\nRUN --mount=type=cache,id=lk,target=/c,sharing=locked {run}\n"
                ),
            )],
        );
        let mut cmd = sb.command();
        cmd.args([
            "-v",
            "--progress",
            "plain",
            "--cache-dir",
            &cache,
            "--registries-conf",
        ])
        .arg(sb.registries_conf())
        .arg(ctx.join("Dockerfile"))
        .arg(format!("{}/{name}:v1", reg.addr()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        Spawned::new(cmd)
    };
    // The holder keeps the lock while its command runs (words not in the step's own text).
    let mut holder = spawn(
        "holder",
        "sleep 4273 & until [ \"$(cat /proc/$!/comm)\" = sleep ]; do :; done; echo holder-$((1+1))-ready; wait",
    );
    // (Kept open: the holder still writes to its stderr.)
    let _holder_lines = holder.stderr_until("holder-2-ready");
    let mut waiter = spawn("waiter", "echo waiter-$((1+1))-ran");
    let waiter_lines = waiter.stderr_until("waiting for a cache mount another build holds");
    waiter.signal_ocipush(libc::SIGINT);
    let rest: Vec<String> = waiter_lines.map(|l| l.unwrap()).collect();
    let status = waiter.child().wait().unwrap();
    let err = rest.join("\n");
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(!err.contains("waiter-2-ran"), "{err}");
    // The holder is untouched by it, and stops on its own interruption.
    assert_eq!(holder.child().try_wait().unwrap(), None, "the holder ended");
    holder.signal_ocipush(libc::SIGINT);
    let status = holder.child().wait().unwrap();
    assert_eq!(status.code(), Some(130));
}
