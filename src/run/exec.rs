//! One `RUN`, start to finish: check the host, resolve the user, unpack the snapshots, prepare
//! the upper directory and the generated files, run the sandbox while streaming its output,
//! and turn the upper directory into the layer (and the next snapshot).

use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::RunError;
use super::cache::{self, RunCache};
use super::mounts::{self, MountSource, Mounts};
use super::sandbox::{self, Spec, Status};
use super::snapshot::{self, Snapshots};
use super::snapshotter::Choice;
use super::stubs::Stubs;
use super::userns::Owners;
use crate::blob::{Blob, FileBlob};
use crate::digest::Digest;
use crate::image::Descriptor;
use crate::layerfs::LayerStore;
use crate::layers::{LayerBlob, LayerOptions, LayerWriter, Spool};
use crate::plan::{RunNetwork, RunStep};
use crate::rootfs::RootFs;
use crate::rootfs::users::resolve_owner;

/// BuildKit's `/etc/hosts` for a sandbox (`executor/oci/hosts.go`).
const HOSTS: &str =
    "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";

/// Lines of output kept for the error of a failed command.
const TAIL_LINES: usize = 20;
/// Bytes of output kept for it.
const TAIL_BYTES: usize = 8 * 1024;

/// Where a RUN reads its layers from and writes its layer to.
pub(crate) struct RunContext<'a> {
    /// For fetching base layers.
    pub(crate) rt: &'a tokio::runtime::Handle,
    pub(crate) store: &'a LayerStore,
    /// The stage's layers so far (bottom first) and their diff ids.
    pub(crate) layers: &'a [Blob],
    pub(crate) diff_ids: &'a [Digest],
    /// The image or stage the layers belong to (for messages).
    pub(crate) image: &'a str,
    /// Where the new layer goes.
    pub(crate) spool: &'a Spool,
    pub(crate) layer_opts: &'a LayerOptions,
    /// The cache directory (or the build's spool directory): snapshots live below it.
    pub(crate) state_dir: &'a Path,
    /// Each line of output, as it comes.
    pub(crate) on_output: &'a (dyn Fn(&str) + Send + Sync),
    /// The stage's architecture (OCI name: `amd64`, `arm64`, …).
    pub(crate) arch: &'a str,
    /// The layer cache directory (`None`: `--no-cache`, every RUN executes).
    pub(crate) cache_dir: Option<&'a Path>,
    /// The sources of the step's `--mount`s (aligned with them).
    pub(crate) mount_sources: &'a [MountSource],
    /// The build's secrets.
    pub(crate) secrets: &'a crate::secrets::BuildSecrets,
    /// A warning for the user (e.g. rootless RUN's single-id mapping).
    pub(crate) on_warning: &'a (dyn Fn(&str) + Send + Sync),
    /// The build's cancellation: a cancelled build kills the running command.
    pub(crate) cancel: &'a tokio_util::sync::CancellationToken,
}

/// Removes a directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        snapshot::remove_all(&self.0);
    }
}

fn check_host() -> Result<(), RunError> {
    if super::userns::ids().rootless().is_some()
        && let Some(e) = super::userns::namespaces_unavailable()
    {
        return Err(e);
    }
    Ok(())
}

/// A stage of another architecture runs only through qemu-user registered in binfmt_misc
/// (the kernel then starts the emulator for each foreign binary, as BuildKit relies on).
fn check_arch(arch: &str) -> Result<(), RunError> {
    let host = crate::build::host_platform().architecture;
    if arch.is_empty() || arch == host {
        return Ok(());
    }
    let qemu = match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        other => other,
    };
    let entry = Path::new("/proc/sys/fs/binfmt_misc").join(format!("qemu-{qemu}"));
    if entry.is_file() {
        return Ok(());
    }
    Err(RunError::Unavailable {
        what: format!(
            "the stage is linux/{arch} and this host is linux/{host}, and no qemu-user emulator is registered for {qemu} ({} is missing)",
            entry.display()
        ),
        fix: "Install qemu-user-static (Debian/Ubuntu: `apt-get install qemu-user-static binfmt-support`), or build for the host's platform".into(),
    })
}

/// Run `step` on the stage whose filesystem is `fs` (updated with the layer).
pub(crate) fn run_layer(
    step: &RunStep,
    fs: &mut RootFs,
    cx: RunContext<'_>,
) -> Result<LayerBlob, RunError> {
    let parent = snapshot::chain_ids(cx.diff_ids).last().cloned();
    let cache = match cx.cache_dir {
        Some(d) => Some(RunCache::open(d)?),
        None => None,
    };
    let snaps = Snapshots::open(
        &cx.state_dir
            .join("run")
            .join(super::userns::ids().snapshot_dir()),
    )?;
    // ocipush's own directories (the cache or spool holding snapshots, cache mounts and
    // mirrors; the spool) stay out of any context mirror, should they be inside the context.
    let ours = [cx.state_dir, cx.spool.dir()];
    let mounts = mounts::prepare(
        &step.mounts,
        cx.mount_sources,
        &snaps,
        cache.is_some(),
        &ours,
    )?;
    let key = cache::key(step, parent.as_ref(), cx.layer_opts, mounts.key());
    if let Some(hit) = cache.as_ref().and_then(|c| c.get(&key, cx.layer_opts)) {
        // The command is not run: its layer's headers update the stage's filesystem.
        let blob = Blob {
            descriptor: Descriptor::new(hit.media_type(true), hit.digest.clone(), hit.size),
            source: Arc::new(FileBlob {
                path: hit.path.clone(),
            }),
        };
        let index = cx.cache_dir.map(|d| d.join("rootfs"));
        crate::rootfs::index::apply_layers(
            fs,
            cx.rt,
            cx.store,
            &[blob],
            cx.image,
            index.as_deref(),
        )?;
        tracing::info!("RUN served from the cache: layer {}", hit.digest);
        return Ok(hit);
    }
    let blob = execute(step, fs, &cx, &snaps, &mounts)?;
    if let Some(c) = &cache {
        c.put(&key, &blob);
    }
    Ok(blob)
}

/// Run the command and build its layer.
fn execute(
    step: &RunStep,
    fs: &mut RootFs,
    cx: &RunContext<'_>,
    snaps: &Snapshots,
    mounts: &Mounts,
) -> Result<LayerBlob, RunError> {
    if cx.cancel.is_cancelled() {
        return Err(RunError::Cancelled {
            command: step.shown_command(),
        });
    }
    check_host()?;
    check_arch(cx.arch)?;
    let ids = super::userns::ids();
    let (uid, gid) = match &step.user {
        Some(u) => resolve_owner(fs, u)?,
        None => (0, 0),
    };
    if let Some(r) = ids.rootless() {
        r.warn_once(cx.on_warning);
        if !r.maps(uid, gid) {
            return Err(RunError::Invalid {
                what: format!(
                    "RUN as USER {} ({uid}:{gid}) cannot run rootless: the user namespace maps {}; {}",
                    step.user.as_deref().unwrap_or("root"),
                    match &r.ranges {
                        None => format!("only root ({})", r.why_single()),
                        Some(g) => format!("ids up to {}:{} only", g.uids.total(), g.gids.total()),
                    },
                    r.fix()
                ),
            });
        }
    }
    let mut env = step.env.clone();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        // runc's `setupUser`: HOME from the user's passwd entry when the image sets none.
        env.push(format!("HOME={}", home_of(fs, uid)));
    }
    let groups = supplementary_groups(fs, step.user.as_deref(), gid);

    let chains = ensure_snapshots(snaps, cx, cx.layers, cx.diff_ids, cx.image)?;
    let who = Who {
        uid,
        gid,
        groups,
        env,
        chains,
    };
    match super::snapshotter::choose(snaps.root())? {
        Choice::Copy => attempt(step, fs, cx, snaps, mounts, &who, true),
        // The overlay was refused once: this process does not try again.
        Choice::Overlay { fallback: true } if FALLBACK_WARNED.load(Ordering::Relaxed) => {
            attempt(step, fs, cx, snaps, mounts, &who, true)
        }
        Choice::Overlay { fallback } => match attempt(step, fs, cx, snaps, mounts, &who, false) {
            Err(e) if fallback && sandbox::overlay_refused(&e) => {
                let msg = format!(
                    "RUN: the overlay could not be mounted ({e}); copying the root instead (set {}=copy to skip the attempt)",
                    super::snapshotter::ENV
                );
                tracing::warn!("{msg}");
                if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                    (cx.on_warning)(&msg);
                }
                attempt(step, fs, cx, snaps, mounts, &who, true)
            }
            r => r,
        },
    }
}

/// The overlay mount was refused and the copy fallback announced (once per process).
static FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

/// Who runs the command, and on what.
struct Who {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    env: Vec<String>,
    /// The stage's snapshots (chain ids, bottom first).
    chains: Vec<Digest>,
}

/// Run the command over an overlay (`copy` false) or in a copied root, and build its layer.
fn attempt(
    step: &RunStep,
    fs: &mut RootFs,
    cx: &RunContext<'_>,
    snaps: &Snapshots,
    mounts: &Mounts,
    who: &Who,
    copy: bool,
) -> Result<LayerBlob, RunError> {
    let ids = super::userns::ids();
    let (uid, gid, env) = (who.uid, who.gid, &who.env);
    let chains = &who.chains;
    let lowers: Vec<String> = if chains.is_empty() {
        vec![snaps.empty()?]
    } else {
        chains.iter().rev().map(Snapshots::rel).collect()
    };

    let tmp = TempDir(snaps.temp()?);
    let tmp_name = tmp
        .0
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let upper = tmp.0.join("upper");
    let work = tmp.0.join("work");
    let merged = tmp.0.join("merged");
    // Copy: the merged root, where mount points are stubbed and the command writes.
    let root = tmp.0.join("root");
    let dirs = if copy {
        vec![&upper, &root]
    } else {
        vec![&upper, &work, &merged]
    };
    for d in dirs {
        std::fs::create_dir(d).map_err(|source| RunError::Io {
            action: "create",
            path: d.clone(),
            source,
        })?;
    }
    let overlay = if copy {
        if ids.rootless().is_some() {
            return Err(super::snapshotter::rootless_copy(
                "the overlay could not be mounted",
            ));
        }
        let abs: Vec<PathBuf> = lowers.iter().map(|l| snaps.root().join(l)).collect();
        super::copyroot::materialise(&abs, &root)?;
        None
    } else {
        let o = format!(
            "lowerdir={},upperdir={tmp_name}/upper,workdir={tmp_name}/work,{}",
            lowers.join(":"),
            ids.overlay_options()
        );
        if o.len() > 4000 {
            return Err(RunError::Invalid {
                what: format!(
                    "the stage has {} layers, more than one overlay mount can stack here",
                    lowers.len()
                ),
            });
        }
        Some(o)
    };
    // What the stubs and mounts are made in: the upper directory, or the copied root.
    let made_in = if copy { &root } else { &upper };
    let hosts = tmp.0.join("hosts");
    let resolv = tmp.0.join("resolv.conf");
    let host_resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
    for (p, data) in [(&hosts, HOSTS.as_bytes()), (&resolv, &host_resolv[..])] {
        std::fs::write(p, data).map_err(|source| RunError::Io {
            action: "write",
            path: p.clone(),
            source,
        })?;
    }

    let mut stubs = Stubs::default();
    let proc_dir = stubs.ensure(fs, made_in, "/proc", true, (0, 0), false)?;
    let dev_dir = stubs.ensure(fs, made_in, "/dev", true, (0, 0), false)?;
    let sys_dir = stubs.ensure(fs, made_in, "/sys", true, (0, 0), false)?;
    let hosts_at = stubs.ensure(fs, made_in, "/etc/hosts", false, (0, 0), false)?;
    let resolv_at = stubs.ensure(fs, made_in, "/etc/resolv.conf", false, (0, 0), false)?;
    stubs.ensure(fs, made_in, &step.workdir, true, (uid, gid), true)?;
    let ensure = |layers: &[Blob], diff_ids: &[Digest], image: &str| {
        ensure_snapshots(snaps, cx, layers, diff_ids, image).map(|_| ())
    };
    let seed = |layers: &[Blob], image: &str, source: &str, dir: &Path| {
        seed_cache(cx, layers, image, source, dir)
    };
    let mut ready = mounts
        .ready(mounts::ReadyAt {
            fs,
            upper: made_in,
            stubs: &mut stubs,
            state: cx.state_dir,
            secrets: cx.secrets,
            ensure: &ensure,
            seed: &seed,
            sources: cx.mount_sources,
            copy,
            cancel: cx.cancel,
        })
        .map_err(|e| match e {
            RunError::Cancelled { .. } => RunError::Cancelled {
                command: step.shown_command(),
            },
            e => e,
        })?;
    let mut run_env = env.clone();
    run_env.extend(ready.env.iter().cloned());
    stubs.apply_owners()?;
    // Copy: the state the command starts from, stamped once every stub is made.
    let before = if copy {
        let b = super::copyroot::Baseline::take(&root)?;
        b.wait_past();
        Some(b)
    } else {
        None
    };

    let spec = Spec {
        base: snaps.root().to_path_buf(),
        overlay,
        merged: if copy { root.clone() } else { merged },
        proc_dir,
        dev_dir,
        sys_dir,
        files: vec![(hosts, hosts_at), (resolv, resolv_at)],
        new_net: step.network == RunNetwork::None,
        uid,
        gid,
        groups: who.groups.clone(),
        cwd: step.workdir.clone(),
        argv: step.argv.clone(),
        env: run_env,
        mounts: std::mem::take(&mut ready.ops),
        rootless: ids.rootless().cloned(),
    };
    let mut tail = Tail::default();
    let status = sandbox::run(&spec, cx.cancel, &mut |bytes| {
        for line in tail.push(bytes) {
            (cx.on_output)(&line);
        }
    })
    .map_err(|e| match e {
        RunError::Cancelled { .. } => RunError::Cancelled {
            command: step.shown_command(),
        },
        RunError::Setup { step: s, source }
            if s == "execute the command" && source.raw_os_error() == Some(libc::ENOENT) =>
        {
            RunError::NotFound {
                command: step.shown_command(),
                program: step.argv[0].clone(),
                path: env
                    .iter()
                    .find_map(|kv| kv.strip_prefix("PATH="))
                    .unwrap_or(crate::image::DEFAULT_LINUX_PATH)
                    .to_string(),
            }
        }
        other if ids.rootless().is_some() => super::userns::explain_setup(other),
        other => other,
    })?;
    if let Some(rest) = tail.flush() {
        (cx.on_output)(&rest);
    }
    match status {
        Status::Exited(0) => {}
        other => {
            let failed = RunError::Failed {
                command: step.shown_command(),
                status: match other {
                    Status::Exited(c) => format!("exited with code {c}"),
                    Status::Signaled(s) => format!("was killed by signal {s}"),
                },
                tail: tail.text(),
            };
            return Err(match ids.rootless() {
                Some(r) => super::userns::explain_failure(r, failed),
                None => failed,
            });
        }
    }
    drop(ready);
    match &before {
        // The changes against the stamps, moved into an upper directory as overlay makes it.
        Some(before) => {
            let untouched = stubs.untouched()?;
            let ops = super::rootdiff::changes(&root, before, fs, &untouched)?;
            super::rootdiff::build_upper(&root, &upper, &ops)?;
        }
        None => stubs.clean()?,
    }
    let mut w = LayerWriter::new(cx.spool, cx.layer_opts)?;
    super::upper::write_upper(&upper, &mut w, fs)?;
    let blob = w.finish()?;
    let mut ids = cx.diff_ids.to_vec();
    ids.push(blob.diff_id.clone());
    if let Some(chain) = snapshot::chain_ids(&ids).last() {
        snaps.adopt(chain, &upper)?;
    }
    Ok(blob)
}

/// Unpack the snapshots of `layers` (whose diff ids are `diff_ids`) of `image`; returns their
/// chain ids.
fn ensure_snapshots(
    snaps: &Snapshots,
    cx: &RunContext<'_>,
    layers: &[Blob],
    diff_ids: &[Digest],
    image: &str,
) -> Result<Vec<Digest>, RunError> {
    let chains = snapshot::chain_ids(diff_ids);
    if chains.len() != layers.len() {
        return Err(RunError::Invalid {
            what: format!(
                "{image} has {} layers but its config lists {} diff ids",
                layers.len(),
                chains.len()
            ),
        });
    }
    for (layer, chain) in layers.iter().zip(&chains) {
        snaps.ensure(chain, |dir| {
            let path = cx.store.local(cx.rt, layer, image)?;
            let d = &layer.descriptor;
            let mut r = crate::layerfs::open_layer(&path, &d.media_type, image, &d.digest)?;
            // Rootless: owners are set inside the user namespace once the layer is unpacked.
            let mut owners = super::userns::ids().rootless().map(|_| Owners::default());
            snapshot::unpack(&mut r, dir, owners.as_mut()).map_err(|source| RunError::Unpack {
                image: image.to_string(),
                layer: d.digest.clone(),
                source,
            })?;
            owners.map_or(Ok(()), Owners::apply)
        })?;
    }
    Ok(chains)
}

/// Fill the new cache directory `dir` with what `source` (a directory) of `layers` holds, as
/// `COPY --from` would copy it to `/`: a layer written to the spool, then unpacked.
fn seed_cache(
    cx: &RunContext<'_>,
    layers: &[Blob],
    image: &str,
    source: &str,
    dir: &Path,
) -> Result<(), RunError> {
    if source.contains(['*', '?', '[']) {
        return Err(RunError::Invalid {
            what: format!(
                "RUN --mount source {source}: wildcards are not allowed in a mount source"
            ),
        });
    }
    let spec = crate::layerfs::FromSpec {
        srcs: vec![source.to_string()],
        dest: "/".into(),
        chown: None,
        chmod: None,
        exclude: vec![],
        parents: false,
    };
    let mut scratch = RootFs::empty();
    let onto = crate::layerfs::Onto {
        fs: &mut scratch,
        spool: cx.spool,
        opts: cx.layer_opts,
    };
    let blob = crate::layerfs::copy_from_layers(cx.rt, cx.store, layers, image, &spec, onto)?;
    let mut r = crate::layerfs::open_layer(&blob.path, blob.media_type(true), image, &blob.digest)?;
    let mut owners = super::userns::ids().rootless().map(|_| Owners::default());
    snapshot::unpack(&mut r, dir, owners.as_mut()).map_err(|source| RunError::Unpack {
        image: image.to_string(),
        layer: blob.digest.clone(),
        source,
    })?;
    owners.map_or(Ok(()), Owners::apply)
}

impl RunStep {
    /// The command as the Dockerfile wrote it (after `RUN`).
    fn shown_command(&self) -> String {
        let t = self.shown.trim_start();
        let rest = t
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r.trim_start());
        if rest.is_empty() {
            self.argv.join(" ")
        } else {
            rest.to_string()
        }
    }
}

/// The home directory of `uid` in the image's `/etc/passwd` (`/` when none).
fn home_of(fs: &RootFs, uid: u32) -> String {
    passwd_lines(fs, "etc/passwd")
        .iter()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// The groups listing `user` as a member in `/etc/group` (runc adds them as supplementary
/// groups), plus the primary group.
fn supplementary_groups(fs: &RootFs, user: Option<&str>, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    let name = user
        .map(|u| u.split(':').next().unwrap_or(u))
        .unwrap_or("root");
    for l in passwd_lines(fs, "etc/group") {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4
            && f[3].split(',').any(|m| m == name)
            && let Ok(g) = f[2].parse::<u32>()
            && !out.contains(&g)
        {
            out.push(g);
        }
    }
    out
}

fn passwd_lines(fs: &RootFs, file: &str) -> Vec<String> {
    use crate::rootfs::UserFile;
    let bytes = match fs.user_file(file) {
        Some(UserFile::Bytes(b)) => b.to_vec(),
        Some(UserFile::Path(p)) => std::fs::read(p).unwrap_or_default(),
        None => Vec::new(),
    };
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The output as lines for the progress display, and its end for errors.
#[derive(Default)]
struct Tail {
    partial: Vec<u8>,
    kept: std::collections::VecDeque<String>,
    kept_bytes: usize,
}

impl Tail {
    /// Complete lines in `bytes` (after what came before).
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
        }
        if self.partial.len() > TAIL_BYTES {
            let line: Vec<u8> = std::mem::take(&mut self.partial);
            lines.push(String::from_utf8_lossy(&line).into_owned());
        }
        for l in &lines {
            self.keep(l.clone());
        }
        lines
    }

    fn keep(&mut self, l: String) {
        self.kept_bytes += l.len();
        self.kept.push_back(l);
        while self.kept.len() > TAIL_LINES || self.kept_bytes > TAIL_BYTES {
            if let Some(old) = self.kept.pop_front() {
                self.kept_bytes -= old.len();
            }
        }
    }

    /// A last line without a newline.
    fn flush(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let l = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
        self.keep(l.clone());
        Some(l)
    }

    fn text(&self) -> String {
        let mut s = String::new();
        for l in &self.kept {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}
