//! buildah (Debian's `buildah` package) as a reference Dockerfile builder.
//!
//! Every [`Buildah`] has its own storage (`--root`, `--runroot`, driver
//! `vfs`: no mounts, no fuse) and its own configuration files under a temp
//! dir, so no state is shared with other tests or with the machine's
//! `/var/lib/containers`; only the signature policy, registries.conf,
//! storage.conf and containers.conf it is given are read. Builds need no OCI
//! runtime because the Dockerfiles have no `RUN`.
//!
//! Images are written with `--format docker` to a containers/image `dir:`
//! directory: the Docker config format keeps `Healthcheck`, `Shell` and
//! `OnBuild`, which buildah drops from OCI configs (and from any conversion
//! to an OCI layout).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::require_tool;
use super::tools::{check, run_bounded};

/// A private buildah storage and configuration.
pub struct Buildah {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Default for Buildah {
    fn default() -> Self {
        Self::new()
    }
}

impl Buildah {
    /// Fresh storage under a new temp dir. Panics with the Debian package to
    /// install when `buildah` is missing.
    pub fn new() -> Self {
        let bin = require_tool("buildah", "buildah");
        let dir = super::tempdir("buildah");
        let p = dir.path();
        for d in ["root", "runroot", "tmp", "home", "xdg-runtime"] {
            std::fs::create_dir(p.join(d)).unwrap();
        }
        std::fs::write(
            p.join("policy.json"),
            "{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n",
        )
        .unwrap();
        std::fs::write(
            p.join("registries.conf"),
            "unqualified-search-registries = []\nshort-name-mode = \"disabled\"\n",
        )
        .unwrap();
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                p.join("root").display(),
                p.join("runroot").display()
            ),
        )
        .unwrap();
        std::fs::write(p.join("containers.conf"), "").unwrap();
        std::fs::write(p.join("auth.json"), "{\"auths\":{}}\n").unwrap();
        Self { dir, bin }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `buildah --root … --runroot … --storage-driver vfs ARGS…` in the
    /// private environment and returns its output unchecked.
    pub fn raw(&self, args: &[OsString]) -> Output {
        let mut full: Vec<OsString> = vec![
            "--root".into(),
            self.path("root").into(),
            "--runroot".into(),
            self.path("runroot").into(),
            "--storage-driver".into(),
            "vfs".into(),
            "--registries-conf".into(),
            self.path("registries.conf").into(),
        ];
        full.extend(args.iter().cloned());
        let envs = [
            ("CONTAINERS_REGISTRIES_CONF", self.path("registries.conf")),
            ("CONTAINERS_STORAGE_CONF", self.path("storage.conf")),
            ("CONTAINERS_CONF", self.path("containers.conf")),
            ("REGISTRY_AUTH_FILE", self.path("auth.json")),
            ("TMPDIR", self.path("tmp")),
            ("HOME", self.path("home")),
            ("XDG_RUNTIME_DIR", self.path("xdg-runtime")),
        ];
        let envs: Vec<(&str, &std::ffi::OsStr)> =
            envs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        run_bounded(&self.bin, &full, &envs)
    }

    /// `buildah pull --tls-verify=false REF` (e.g. `127.0.0.1:P/repo@sha256:…`).
    pub fn pull(&self, image: &str) {
        let args: Vec<OsString> = vec![
            "pull".into(),
            "-q".into(),
            "--signature-policy".into(),
            self.path("policy.json").into(),
            "--tls-verify=false".into(),
            image.into(),
        ];
        check(&format!("buildah pull {image}"), self.raw(&args));
    }

    /// `buildah bud --format docker -f DOCKERFILE [--target T] [--build-arg …]
    /// -t dir:OUT CONTEXT` (bases must have been pulled: `--pull=false` pulls
    /// only what is missing). Returns the output unchecked.
    pub fn bud(
        &self,
        dockerfile: &Path,
        context: &Path,
        out_dir: &Path,
        target: Option<&str>,
        build_args: &[&str],
    ) -> Output {
        let mut args: Vec<OsString> = vec![
            "bud".into(),
            "--quiet".into(),
            "--signature-policy".into(),
            self.path("policy.json").into(),
            "--tls-verify=false".into(),
            "--pull=false".into(),
            "--format".into(),
            "docker".into(),
            "--file".into(),
            dockerfile.into(),
        ];
        if let Some(t) = target {
            args.push("--target".into());
            args.push(t.into());
        }
        for a in build_args {
            args.push("--build-arg".into());
            args.push(a.into());
        }
        let mut tag = OsString::from("dir:");
        tag.push(out_dir);
        args.push("--tag".into());
        args.push(tag);
        args.push(context.into());
        let mut out = self.raw(&args);
        // buildah 1.28 writes a Dockerfile that is only `FROM` (nothing to
        // commit) to the destination and then fails to find the result in its
        // own storage: the written image is complete, so it is taken.
        if !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("locating new copy of image")
            && out_dir.join("manifest.json").is_file()
        {
            out.status = std::process::ExitStatus::default();
        }
        out
    }
}
