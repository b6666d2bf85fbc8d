//! Differential tests: every case is built by ocipush and by buildah (the
//! oracle, a Dockerfile builder we did not write) from the same context on
//! the same pinned base images, and the two images are compared field by
//! field — the image config (`Env`, `Entrypoint`, `Cmd`, `WorkingDir`,
//! `User`, `ExposedPorts`, `Volumes`, `Labels`, `StopSignal`, `Healthcheck`,
//! `Shell`, `OnBuild`) and the merged root filesystem (for every path: type,
//! mode with setuid/setgid/sticky, uid, gid, size, sha256, symlink target,
//! hard-link identity; mtimes are ignored).
//!
//! BuildKit is the judge. Where buildah and BuildKit disagree, or where
//! buildah 1.28 cannot build a feature (heredocs, `--exclude`, `--parents`,
//! `--link`, symbolic `--chmod`, `ADD --unpack`), a case says so explicitly:
//! an *equivalent Dockerfile* for buildah (`Case::oracle`) and/or *BuildKit
//! fixes* (`Case::buildkit`) applied to buildah's result, each with the
//! BuildKit source it follows (mirrors: moby/buildkit, tonistiigi/fsutil).
//!
//! Bases: the umoci-built Alpine 3.20.3 and a usrmerge image assembled from
//! it (`common::usrmerge`), both served by one real `docker-registry` and
//! referenced by digest from every Dockerfile (`{ALPINE}`, `{USRMERGE}`).
//!
//! Cases known to fail against ocipush today are listed in [`PENDING`], which
//! is checked in both directions: a listed case that passes fails the suite
//! ("remove it from PENDING"), an unlisted case that fails fails it, and an
//! oracle that cannot build its case always fails it. Nothing is skipped.
//!
//! `OCIPUSH_DIFF_CASES=a,b` runs only those cases (the PENDING check then
//! covers only them), `OCIPUSH_DIFF_JOBS=N` sets the parallelism (default
//! 2), `OCIPUSH_DIFF_VERBOSE=1` shows what every case expects to change in
//! its base (shown anyway when ocipush cannot build the case). The full report is printed and written to
//! `$CARGO_TARGET_TMPDIR/differential-report.txt`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::buildah::Buildah;
use crate::common::fixtures::{alpine_oci_layout, seed_alpine};
use crate::common::flatten::{
    Difference, Image, Kind, Node, Tree, compare_trees, read_dir_transport, read_oci_layout,
};
use crate::common::ocipush::{Sandbox, describe};
use crate::common::registry::RegistryServer;
use crate::common::require_tool;
use crate::common::tools::{
    TOOL_TIMEOUT_SECS, image_arg, skopeo_copy, skopeo_inspect_raw_bytes, umoci_unpack,
};
use crate::common::usrmerge::{USRMERGE_TAG, usrmerge_oci_layout};

/// SOURCE_DATE_EPOCH for ocipush (mtimes are not compared anyway).
const EPOCH: &str = "1700000000";

/// Cases that fail against ocipush today, each with the reason. The suite
/// fails when one of them passes (remove it from here) and when a case not
/// listed fails.
const PENDING: &[(&str, &str)] = &[];

// ------------------------------------------------------------------ cases

/// A build-context item (created identically in both tools' contexts).
#[derive(Clone, Debug)]
enum C {
    /// A regular file with its mode.
    File(&'static str, String, u32),
    /// A directory with its mode (applied after everything was written).
    Dir(&'static str, u32),
    Symlink(&'static str, &'static str),
    /// `Hardlink(new, existing)`.
    Hardlink(&'static str, &'static str),
    /// A tar archive (gzip-compressed when the name ends in `.gz`).
    Tar(&'static str, Vec<T>),
    /// Owner of an existing item: `(path, uid, gid)`.
    Owner(&'static str, u32, u32),
}

/// A tar member: `(name, kind, mode, uid, gid)`.
#[derive(Clone, Debug)]
struct T(&'static str, TK, u32, u64, u64);

#[derive(Clone, Debug)]
enum TK {
    Dir,
    File(&'static str),
    Symlink(&'static str),
    Hardlink(&'static str),
}

/// A BuildKit expectation that replaces buildah's result.
#[derive(Clone, Debug)]
enum Fix {
    /// `path`'s `field` (`mode` as 4 octal digits, `uid`, `gid`, …) is `value`.
    Set(&'static str, &'static str, &'static str),
    /// `path` is a directory `(mode, uid, gid)`, replacing whatever was there.
    Dir(&'static str, u32, u64, u64),
    /// `path` is a regular file with the content of context file `ctx`.
    CtxFile(&'static str, &'static str, u32, u64, u64),
    /// `path` is a symlink to `target` (mode 0777, root), replacing whatever was there.
    Symlink(&'static str, &'static str),
    /// A config key's normalised value (`None`: unset).
    Config(&'static str, Option<Value>),
}

/// A command run in ocipush's unpacked image (and, to prove the check
/// itself, in buildah's): `chroot --userspec=USERSPEC ROOTFS /bin/sh -c SCRIPT`.
#[derive(Clone, Debug)]
struct RunCheck {
    userspec: &'static str,
    script: &'static str,
    stdout: &'static str,
}

#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    covers: &'static str,
    dockerfile: String,
    ctx: Vec<C>,
    build_args: Vec<&'static str>,
    target: Option<&'static str>,
    /// The Dockerfile buildah builds instead (same context plus `oracle_ctx`).
    oracle: Option<String>,
    oracle_ctx: Vec<C>,
    /// Why the oracle Dockerfile or the fixes encode BuildKit's behaviour.
    why: Option<&'static str>,
    fixes: Vec<Fix>,
    runs: Vec<RunCheck>,
}

fn case(name: &'static str, covers: &'static str, lines: &[&str]) -> Case {
    Case {
        name,
        covers,
        dockerfile: df(lines),
        ctx: Vec::new(),
        build_args: Vec::new(),
        target: None,
        oracle: None,
        oracle_ctx: Vec::new(),
        why: None,
        fixes: Vec::new(),
        runs: Vec::new(),
    }
}

fn df(lines: &[&str]) -> String {
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

impl Case {
    fn file(mut self, p: &'static str, content: &str) -> Self {
        self.ctx.push(C::File(p, content.to_owned(), 0o644));
        self
    }
    fn file_mode(mut self, p: &'static str, content: &str, mode: u32) -> Self {
        self.ctx.push(C::File(p, content.to_owned(), mode));
        self
    }
    fn dir(mut self, p: &'static str, mode: u32) -> Self {
        self.ctx.push(C::Dir(p, mode));
        self
    }
    fn symlink(mut self, p: &'static str, target: &'static str) -> Self {
        self.ctx.push(C::Symlink(p, target));
        self
    }
    fn hardlink(mut self, p: &'static str, existing: &'static str) -> Self {
        self.ctx.push(C::Hardlink(p, existing));
        self
    }
    fn tar(mut self, p: &'static str, members: Vec<T>) -> Self {
        self.ctx.push(C::Tar(p, members));
        self
    }
    fn owner(mut self, p: &'static str, uid: u32, gid: u32) -> Self {
        self.ctx.push(C::Owner(p, uid, gid));
        self
    }
    fn arg(mut self, a: &'static str) -> Self {
        self.build_args.push(a);
        self
    }
    fn target(mut self, t: &'static str) -> Self {
        self.target = Some(t);
        self
    }
    /// buildah builds `lines` instead: the equivalent of the case in the
    /// Dockerfile syntax buildah 1.28 has, per BuildKit (`why`).
    fn oracle(mut self, why: &'static str, lines: &[&str]) -> Self {
        self.oracle = Some(df(lines));
        self.why = Some(why);
        self
    }
    /// A file only the oracle's context has.
    fn oracle_file(mut self, p: &'static str, content: &str, mode: u32) -> Self {
        self.oracle_ctx.push(C::File(p, content.to_owned(), mode));
        self
    }
    fn oracle_dir(mut self, p: &'static str, mode: u32) -> Self {
        self.oracle_ctx.push(C::Dir(p, mode));
        self
    }
    /// BuildKit differs from buildah here: `fixes` replace buildah's result.
    fn buildkit(mut self, why: &'static str, fixes: Vec<Fix>) -> Self {
        self.why = Some(match self.why {
            Some(w) => Box::leak(format!("{w}\n{why}").into_boxed_str()),
            None => why,
        });
        self.fixes.extend(fixes);
        self
    }
    fn run(mut self, userspec: &'static str, script: &'static str, stdout: &'static str) -> Self {
        self.runs.push(RunCheck {
            userspec,
            script,
            stdout,
        });
        self
    }
    fn base(&self) -> &'static str {
        match (
            self.dockerfile.contains("{ALPINE}"),
            self.dockerfile.contains("{USRMERGE}"),
        ) {
            (true, true) => "both",
            (false, true) => "usrmerge",
            _ => "alpine",
        }
    }
}

const HELLO: &str = "hello\n";
const SCRIPT: &str = "#!/bin/sh\necho hello from script\n";

/// A small tree: `d/` (0700) with `a.txt`, `run.sh` (0755), `sub/` (0750)
/// with `sub/b.txt`.
fn with_tree(c: Case) -> Case {
    c.file("d/a.txt", "a\n")
        .file_mode("d/run.sh", SCRIPT, 0o755)
        .file("d/sub/b.txt", "b\n")
        .dir("d/sub", 0o750)
        .dir("d", 0o700)
}

/// The members of the tar used by the ADD cases.
fn archive() -> Vec<T> {
    vec![
        T("arch/", TK::Dir, 0o750, 5, 6),
        T("arch/a.txt", TK::File("alpha\n"), 0o640, 1234, 1234),
        T("arch/bin.sh", TK::File(SCRIPT), 0o755, 0, 0),
        T("arch/link", TK::Symlink("a.txt"), 0o777, 0, 0),
        T("arch/hard", TK::Hardlink("arch/a.txt"), 0o640, 1234, 1234),
        T("arch/sub/", TK::Dir, 0o700, 0, 0),
        T("arch/sub/s.txt", TK::File("sub\n"), 0o600, 7, 7),
    ]
}

/// Every case. The `why` texts cite BuildKit (frontend/dockerfile/
/// dockerfile2llb/convert*.go, solver/llbsolver/file/backend.go,
/// solver/llbsolver/ops/user_linux.go) and fsutil (copy/copy.go,
/// copy/mkdir.go).
fn cases() -> Vec<Case> {
    vec![
        // ------------------------------------------------ COPY destinations
        case(
            "copy_file_to_tmp",
            "COPY a file into /tmp/: /tmp keeps 1777",
            &["FROM {ALPINE}", "COPY f.txt /tmp/"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_file_new_parents",
            "COPY to a new nested path: parents created 0755 root",
            &["FROM {ALPINE}", "COPY f.txt /new/deep/f.txt"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_file_existing_dir_no_slash",
            "COPY x /opt: an existing directory as dest gets dest/x",
            &["FROM {ALPINE}", "COPY f.txt /opt"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_file_replaces_file",
            "COPY over an existing file: the source's mode wins",
            &["FROM {ALPINE}", "COPY motd /etc/motd"],
        )
        .file_mode("motd", "welcome\n", 0o600),
        case(
            "copy_multiple_sources",
            "COPY several files into a new dir/",
            &["FROM {ALPINE}", "COPY f.txt run.sh /multi/"],
        )
        .file("f.txt", HELLO)
        .file_mode("run.sh", SCRIPT, 0o755),
        with_tree(case(
            "copy_dir_contents_new_slash",
            "COPY dir/ /new/: a new dest dir is created 0755 (fsutil prepareTargetDir), \
             contents keep their modes",
            &["FROM {ALPINE}", "COPY d/ /new/"],
        )),
        with_tree(case(
            "copy_dir_contents_new_no_slash",
            "COPY dir /new: same as dir/ (the directory's contents are copied)",
            &["FROM {ALPINE}", "COPY d /new2"],
        )),
        with_tree(case(
            "copy_dir_into_existing_dir",
            "COPY dir /opt: contents land in /opt, which keeps its metadata",
            &["FROM {ALPINE}", "COPY d /opt"],
        )),
        case(
            "copy_dir_onto_existing_tree",
            "COPY etc/ /etc/: the existing top dir keeps its metadata; existing sub dirs \
             take the source's",
            &["FROM {ALPINE}", "COPY etc/ /etc/"],
        )
        .file("etc/profile.d/zz.sh", "export ZZ=1\n")
        .file("etc/newdir/n.conf", "n\n")
        .dir("etc/profile.d", 0o700)
        .dir("etc/newdir", 0o750)
        .dir("etc", 0o700),
        case(
            "copy_dir_onto_existing_home_usrmerge",
            "COPY home/ /home/ over /home/app (1000:1000 0750): the existing sub dir takes \
             the source's metadata",
            &["FROM {USRMERGE}", "COPY home/ /home/"],
        )
        .file("home/app/.profile", "export A=1\n")
        .dir("home/app", 0o755),
        case(
            "copy_special_modes",
            "setuid/setgid/sticky bits of context files and dirs are kept",
            &["FROM {ALPINE}", "COPY special/ /special/"],
        )
        .file_mode("special/suid", SCRIPT, 0o4755)
        .file_mode("special/sgid", SCRIPT, 0o2755)
        .file("special/sticky/x", "x\n")
        .dir("special/sticky", 0o1777)
        .buildkit(
            "buildah 1.28 strips setuid/setgid from copied files (0755). BuildKit keeps them: \
             the context arrives through fsutil's diskwriter (diskwriter_unix.go: \
             os.Chmod(p, os.FileMode(stat.Mode)) with Go's ModeSetuid/ModeSetgid) and fsutil \
             copy_linux.go copyFileInfo chmods the copy to fi.Mode()",
            vec![
                Fix::Set("/special/suid", "mode", "4755"),
                Fix::Set("/special/sgid", "mode", "2755"),
            ],
        ),
        case(
            "copy_context_owner_ignored",
            "context files owned by 1234:1234 are copied as 0:0",
            &["FROM {ALPINE}", "COPY owned/ /owned/"],
        )
        .file("owned/f", HELLO)
        .owner("owned/f", 1234, 1234)
        .owner("owned", 1234, 1234),
        // ------------------------------------------------ --chmod
        case(
            "copy_chmod_octal_file",
            "--chmod=0600 on a file into an existing dir",
            &["FROM {ALPINE}", "COPY --chmod=0600 f.txt /srv/f.txt"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chmod_octal_new_parent",
            "--chmod=0640 creating the dest's parent: the parent gets the mode too",
            &["FROM {ALPINE}", "COPY --chmod=0640 f.txt /newp/f.txt"],
        )
        .file("f.txt", HELLO)
        .buildkit(
            "fsutil copy/copy.go Copy(): the missing parents of the dest are created by \
             MkdirAll(ensureDstPath, perm) with perm = *ci.Mode when --chmod is octal \
             (fsutil#228, moby/buildkit#5943: /newp is 0640); buildah creates it 0755",
            vec![Fix::Set("/newp", "mode", "0640")],
        ),
        with_tree(case(
            "copy_chmod_octal_dir",
            "--chmod=0750 on a directory copy: every file and sub dir, and the created dest",
            &["FROM {ALPINE}", "COPY --chmod=0750 d/ /cd/"],
        ))
        .buildkit(
            "buildah creates the dest /cd 0755. BuildKit: fsutil copy.go Copy() creates the \
             missing dest with MkdirAll(ensureDstPath, *ci.Mode) (prepareTargetDir does the \
             same with c.mode), so /cd is 0750",
            vec![Fix::Set("/cd", "mode", "0750")],
        ),
        case(
            "copy_chmod_symbolic_u_x",
            "--chmod=u+x (symbolic) on a 0644 file: 0744; the created parent stays 0755",
            &["FROM {ALPINE}", "COPY --chmod=u+x f.txt /sym/f.txt"],
        )
        .file("f.txt", HELLO)
        .oracle(
            "buildah 1.28 only parses octal --chmod. BuildKit convert_copy.go passes a \
             non-octal --chmod as ModeStr; fsutil copyFileInfo applies modeSet.Apply(0644) \
             = 0744, and MkdirAll creates /sym with 0755 (ci.Mode is nil for ModeStr)",
            &["FROM {ALPINE}", "COPY --chmod=0744 f.txt /sym/f.txt"],
        ),
        case(
            "copy_chmod_symbolic_a_rx",
            "--chmod=a=rX on a tree: everything 0444 (BuildKit's mode parser ignores X with =), created dest 0755",
            &["FROM {ALPINE}", "COPY --chmod=a=rX t/ /rx/"],
        )
        .file("t/a.txt", "a\n")
        .file_mode("t/run.sh", SCRIPT, 0o755)
        .file("t/sub/b.txt", "b\n")
        .dir("t/sub", 0o750)
        .oracle(
            "buildah 1.28 only parses octal --chmod. BuildKit applies symbolic modes with \
             tonistiigi/dchapes-mode (fsutil copyFileInfo, modeSet.Apply), a port of BSD \
             setmode: its parser honours `X` only with `+` (mode.go: `case 'X': if op == '+'`), \
             so a=rX is a=r and every file and directory gets 0444 (GNU chmod would give dirs \
             and executables 0555). The dest /rx is created by prepareTargetDir's MkdirAll \
             with 0755 and, being the copy's root, is not chmod-ed (copy() with \
             overwriteTargetMetadata=false). The oracle copies a context with those modes \
             already applied",
            &["FROM {ALPINE}", "COPY t-rx/ /rx/"],
        )
        .oracle_file("t-rx/a.txt", "a\n", 0o444)
        .oracle_file("t-rx/run.sh", SCRIPT, 0o444)
        .oracle_file("t-rx/sub/b.txt", "b\n", 0o444)
        .oracle_dir("t-rx/sub", 0o444),
        // ------------------------------------------------ --chown and USER
        case(
            "copy_as_user_app",
            "USER app does not change COPY's owner (0:0); /home/app keeps 0750 1000:1000",
            &["FROM {USRMERGE}", "USER app", "COPY f.txt /home/app/x"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chown_name",
            "--chown=app: uid and gid from the stage's /etc/passwd",
            &["FROM {USRMERGE}", "COPY --chown=app f.txt /home/app/x"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chown_name_group",
            "--chown=app:app: group from the stage's /etc/group",
            &["FROM {USRMERGE}", "COPY --chown=app:app f.txt /home/app/x"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chown_uid_only",
            "--chown=1000: gid = uid (llb.WithUser ByID)",
            &["FROM {ALPINE}", "COPY --chown=1000 f.txt /srv/x"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chown_empty_user",
            "--chown=:99: empty user is uid 0 (BuildKit user_linux.go readUser: ByName \"\" \
             marshals as ByID 0), gid 99",
            &["FROM {ALPINE}", "COPY --chown=:99 f.txt /srv/x"],
        )
        .file("f.txt", HELLO),
        case(
            "copy_chown_creates_parents",
            "--chown=app to a new nested path: the created parents are chowned too \
             (fsutil MkdirAll chowns what it creates)",
            &["FROM {USRMERGE}", "COPY --chown=app f.txt /srv/a/b/f.txt"],
        )
        .file("f.txt", HELLO),
        with_tree(case(
            "copy_chown_dir_new",
            "--chown=1000:1000 on a dir copy to a new dest",
            &["FROM {ALPINE}", "COPY --chown=1000:1000 d/ /cd2/"],
        )),
        // ------------------------------------------------ usrmerge symlinks
        case(
            "usrmerge_copy_to_bin_slash",
            "COPY x /bin/ on usrmerge: lands in /usr/bin, /bin stays a symlink",
            &["FROM {USRMERGE}", "COPY run.sh /bin/"],
        )
        .file_mode("run.sh", SCRIPT, 0o755),
        case(
            "usrmerge_copy_to_bin_name",
            "COPY x /bin/hello on usrmerge: /usr/bin/hello",
            &["FROM {USRMERGE}", "COPY run.sh /bin/hello"],
        )
        .file_mode("run.sh", SCRIPT, 0o755),
        case(
            "usrmerge_copy_dir_to_lib",
            "COPY lib/ /lib/ on usrmerge: contents merged into /usr/lib",
            &["FROM {USRMERGE}", "COPY lib/ /lib/"],
        )
        .file("lib/libx.so", "elf\n")
        .file("lib/apk/extra", "x\n"),
        case(
            "usrmerge_copy_new_dir_under_symlink",
            "COPY to /lib/newdir/f on usrmerge: /usr/lib/newdir created",
            &["FROM {USRMERGE}", "COPY f.txt /lib/newdir/f.txt"],
        )
        .file("f.txt", HELLO),
        case(
            "usrmerge_workdir_under_symlink",
            "WORKDIR /lib/work on usrmerge: /usr/lib/work created",
            &["FROM {USRMERGE}", "WORKDIR /lib/work"],
        ),
        case(
            "absolute_symlink_parents",
            "COPY through Alpine's absolute symlinks /var/run -> /run and \
             /var/spool/mail -> /var/mail: resolved inside the rootfs",
            &[
                "FROM {ALPINE}",
                "COPY f.txt /var/run/app/x",
                "COPY f.txt /var/spool/mail/",
            ],
        )
        .file("f.txt", HELLO),
        case(
            "copy_over_symlink_dest",
            "COPY onto an existing symlink to a file: the symlink stays, its target is \
             replaced",
            &[
                "FROM {ALPINE}",
                "COPY key.pub /usr/share/apk/keys/x86/alpine-devel@lists.alpinelinux.org-5243ef4b.rsa.pub",
            ],
        )
        .file("key.pub", "not a key\n")
        .buildkit(
            "buildah (like ocipush) replaces the symlink with a regular file. BuildKit: fsutil \
             copy.go Copy() resolves the whole dest with continuity fs.RootPath, which follows \
             a symlink in the last component too; prepareTargetDir then finds a file and \
             copy() replaces that file: the symlink stays, the key it points to gets the new \
             content and the source's mode",
            vec![
                Fix::Symlink(
                    "/usr/share/apk/keys/x86/alpine-devel@lists.alpinelinux.org-5243ef4b.rsa.pub",
                    "../alpine-devel@lists.alpinelinux.org-5243ef4b.rsa.pub",
                ),
                Fix::CtxFile(
                    "/usr/share/apk/keys/alpine-devel@lists.alpinelinux.org-5243ef4b.rsa.pub",
                    "key.pub",
                    0o644,
                    0,
                    0,
                ),
            ],
        ),
        // ------------------------------------------------ WORKDIR
        case(
            "workdir_new",
            "WORKDIR /w/x: created 0755 root with its parents",
            &["FROM {ALPINE}", "WORKDIR /w/x"],
        ),
        case(
            "workdir_existing",
            "WORKDIR on existing dirs changes nothing (/tmp 1777, /home/app 0750)",
            &["FROM {USRMERGE}", "WORKDIR /tmp", "WORKDIR /home/app"],
        ),
        case(
            "workdir_under_user_name",
            "USER app then WORKDIR: created dirs (and parents) owned by app",
            &[
                "FROM {USRMERGE}",
                "USER app",
                "WORKDIR /home/app/work",
                "WORKDIR /srv/w1/w2",
            ],
        ),
        case(
            "workdir_under_user_uid",
            "USER 1000:1000 then WORKDIR: created dirs owned 1000:1000",
            &["FROM {ALPINE}", "USER 1000:1000", "WORKDIR /data/x"],
        ),
        case(
            "workdir_relative",
            "relative WORKDIR joins the current one; .. is resolved",
            &["FROM {ALPINE}", "WORKDIR /a", "WORKDIR b", "WORKDIR ../c"],
        ),
        case(
            "workdir_relative_copy_dest",
            "COPY to . and sub/ is relative to WORKDIR",
            &[
                "FROM {ALPINE}",
                "WORKDIR /app",
                "COPY f.txt .",
                "COPY f.txt sub/",
            ],
        )
        .file("f.txt", HELLO),
        // ------------------------------------------------ wildcards, exclude, parents
        case(
            "wildcard_some_match",
            "COPY *.txt nomatch* /w/: a wildcard matching nothing beside one matching",
            &["FROM {ALPINE}", "COPY *.txt nomatch* /w/"],
        )
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .file("c.md", "c\n"),
        case(
            "wildcard_none_match",
            "COPY nomatch* /w/: every wildcard matching nothing is not an error and \
             creates nothing",
            &["FROM {ALPINE}", "COPY nomatch* /w/"],
        )
        .file("a.txt", "a\n")
        .oracle(
            "buildah errors (\"no such file or directory\", containers/buildah#5742). \
             BuildKit convert_copy.go sets AllowEmptyWildcard: true and \
             solver/llbsolver/file/backend.go docopy returns nil when a wildcard matches \
             nothing, before creating the dest: the image is the base",
            &["FROM {ALPINE}"],
        ),
        case(
            "wildcard_dirs",
            "COPY d* /g/: matched directories have their contents copied",
            &["FROM {ALPINE}", "COPY d* /g/"],
        )
        .file("d1/x", "x\n")
        .file("d2/sub/y", "y\n"),
        case(
            "copy_exclude",
            "--exclude patterns (top-level *.log, a directory); sub/x.log is not matched by *.log",
            &[
                "FROM {ALPINE}",
                "COPY --exclude=*.log --exclude=sub/skip app/ /app/",
            ],
        )
        .file("app/main.txt", "main\n")
        .file("app/debug.log", "log\n")
        .file("app/sub/x.log", "nested log\n")
        .file("app/sub/skip/s.txt", "skipped\n")
        .file("app/sub/keep.txt", "keep\n")
        .oracle(
            "buildah 1.28 has no --exclude. BuildKit passes ExcludePatterns to fsutil, which \
             matches them against the path relative to the source (patternmatcher: * does \
             not cross /, an excluded dir is skipped whole); the oracle copies a context \
             without the excluded paths",
            &["FROM {ALPINE}", "COPY app-ex/ /app/"],
        )
        .oracle_file("app-ex/main.txt", "main\n", 0o644)
        .oracle_file("app-ex/sub/x.log", "nested log\n", 0o644)
        .oracle_file("app-ex/sub/keep.txt", "keep\n", 0o644),
        case(
            "copy_parents",
            "--parents keeps the source paths; created parents take the context dirs' modes",
            &["FROM {ALPINE}", "COPY --parents a/b/c.txt x/y.txt /p/"],
        )
        .file("a/b/c.txt", "c\n")
        .file("x/y.txt", "y\n")
        .dir("a", 0o750)
        .oracle(
            "buildah 1.28 has no --parents. BuildKit convert_copy.go copies the context root \
             with IncludePatterns [a/b/c.txt]; fsutil createParentDirs creates /p/a and \
             /p/a/b from the source dirs (copyDirectoryOnly + copyFileInfo: their modes, \
             0750 for a)",
            &[
                "FROM {ALPINE}",
                "COPY a/b/c.txt /p/a/b/",
                "COPY x/y.txt /p/x/",
            ],
        )
        .buildkit(
            "fsutil copy.go createParentDirs: parents copied from the context keep its mode",
            vec![Fix::Set("/p/a", "mode", "0750")],
        ),
        case(
            "copy_parents_pivot",
            "--parents with /./: only the part after the pivot is kept",
            &["FROM {ALPINE}", "COPY --parents ./a/./b/c.txt /p2/"],
        )
        .file("a/b/c.txt", "c\n")
        .dir("a/b", 0o750)
        .oracle(
            "buildah 1.28 has no --parents. BuildKit convert_copy.go cuts the source at /./: \
             src a, pattern b/c.txt; fsutil creates /p2/b from the context's a/b (0750)",
            &["FROM {ALPINE}", "COPY a/b/c.txt /p2/b/"],
        )
        .buildkit(
            "fsutil copy.go createParentDirs: the parent keeps the context dir's mode",
            vec![Fix::Set("/p2/b", "mode", "0750")],
        ),
        // ------------------------------------------------ ADD
        case(
            "add_local_tar",
            "ADD a local tar: unpacked with its owners, modes, symlinks and hard links",
            &["FROM {ALPINE}", "ADD arch.tar /x/"],
        )
        .tar("arch.tar", archive()),
        case(
            "add_local_tar_gz",
            "ADD a local .tar.gz: decompressed and unpacked",
            &["FROM {ALPINE}", "ADD arch.tar.gz /y/"],
        )
        .tar("arch.tar.gz", archive()),
        case(
            "add_unpack_false",
            "ADD --unpack=false copies the archive as a file",
            &["FROM {ALPINE}", "ADD --unpack=false arch.tar /z/"],
        )
        .tar("arch.tar", archive())
        .oracle(
            "buildah 1.28 has no ADD --unpack. BuildKit convert_copy.go: unpack = \
             *cfg.unpack (false) so AttemptUnpack is off and the archive is copied like COPY",
            &["FROM {ALPINE}", "COPY arch.tar /z/"],
        ),
        // ------------------------------------------------ heredocs
        case(
            "heredoc_basic",
            "COPY <<EOF /hd/x: unquoted heredoc, variables expanded, file 0644 root",
            &[
                "FROM {ALPINE}",
                "ARG V=1",
                "COPY <<EOF /hd/x",
                "hello $V",
                "EOF",
            ],
        )
        .oracle(
            "buildah 1.28 has no heredocs. BuildKit instructions/parse.go \
             parseSourcesAndDest + commands.go ExpandRaw expand an unquoted heredoc; \
             convert_copy.go writes it with llb.Mkfile(…, 0644) and copies it to the dest",
            &["FROM {ALPINE}", "COPY hd-x /hd/x"],
        )
        .oracle_file("hd-x", "hello 1\n", 0o644),
        case(
            "heredoc_dash_quoted",
            "COPY <<-\"EOF\": leading tabs stripped, quoted so no expansion",
            &[
                "FROM {ALPINE}",
                "ARG V=1",
                "COPY <<-\"EOF\" /hd/y",
                "\tline $V",
                "\t\tindented",
                "\tEOF",
            ],
        )
        .oracle(
            "buildah 1.28 has no heredocs. BuildKit: <<- chomps leading tabs \
             (parser.ChompHeredocContent), a quoted name disables expansion",
            &["FROM {ALPINE}", "COPY hd-y /hd/y"],
        )
        .oracle_file("hd-y", "line $V\nindented\n", 0o644),
        case(
            "heredoc_two_to_dir",
            "two heredocs in one COPY to a dir: files named after the heredocs",
            &[
                "FROM {ALPINE}",
                "COPY <<a.txt <<b.txt /hd/",
                "A",
                "a.txt",
                "B",
                "b.txt",
            ],
        )
        .oracle(
            "buildah 1.28 has no heredocs. BuildKit convert_copy.go: each SourceContent is \
             Mkfile(<name>, 0644) copied into the dest dir",
            &["FROM {ALPINE}", "COPY hd/a.txt hd/b.txt /hd/"],
        )
        .oracle_file("hd/a.txt", "A\n", 0o644)
        .oracle_file("hd/b.txt", "B\n", 0o644),
        case(
            "heredoc_chmod_chown",
            "heredoc with --chmod=0755 --chown=app into /usr/local/bin, then run it",
            &[
                "FROM {USRMERGE}",
                "COPY --chmod=0755 --chown=app <<EOF /usr/local/bin/hi",
                "#!/bin/sh",
                "echo hi from heredoc",
                "EOF",
            ],
        )
        .oracle(
            "buildah 1.28 has no heredocs. BuildKit: Mkfile 0644 then the copy applies \
             --chmod and --chown",
            &[
                "FROM {USRMERGE}",
                "COPY --chmod=0755 --chown=app hi /usr/local/bin/hi",
            ],
        )
        .oracle_file("hi", "#!/bin/sh\necho hi from heredoc\n", 0o644)
        .run("1000:1000", "hi", "hi from heredoc\n"),
        // ------------------------------------------------ links in the context
        case(
            "hardlinks_in_context",
            "hard links in the context stay hard links",
            &["FROM {ALPINE}", "COPY hl/ /hl/"],
        )
        .file("hl/a", "same inode\n")
        .hardlink("hl/b", "hl/a")
        .file("hl/c", "other\n"),
        case(
            "symlinks_in_context",
            "symlinks inside a copied dir are copied as links (relative, absolute, dangling)",
            &["FROM {ALPINE}", "COPY sl/ /sl/"],
        )
        .file("sl/a.txt", "a\n")
        .symlink("sl/rel", "a.txt")
        .symlink("sl/abs", "/etc/passwd")
        .symlink("sl/dangling", "nowhere"),
        case(
            "symlink_source_followed",
            "a symlink named as the COPY source is followed (FollowSymlinks)",
            &["FROM {ALPINE}", "COPY rel /followed"],
        )
        .file("a.txt", "a\n")
        .symlink("rel", "a.txt"),
        // ------------------------------------------------ COPY --from
        case(
            "from_stage_file",
            "COPY --from=stage a file",
            &[
                "FROM {ALPINE} AS s",
                "COPY f.txt /src/f.txt",
                "FROM {ALPINE}",
                "COPY --from=s /src/f.txt /dst/",
            ],
        )
        .file("f.txt", HELLO),
        with_tree(case(
            "from_stage_dir_keeps_owners",
            "COPY --from=stage a dir: contents keep the stage's owners and modes",
            &[
                "FROM {ALPINE} AS s",
                "COPY --chown=1000:1000 d/ /src/",
                "FROM {ALPINE}",
                "COPY --from=s /src /dst",
            ],
        )),
        case(
            "from_stage_usrmerge_symlinked_source",
            "COPY --from a usrmerge stage through /lib and /bin (symlinked middle component)",
            &[
                "FROM {USRMERGE} AS s",
                "FROM {ALPINE}",
                "COPY --from=s /lib/ld-musl-x86_64.so.1 /out/",
                "COPY --from=s /lib/apk/ /out/apk/",
                "COPY --from=s /bin/busybox /out/bb",
            ],
        ),
        case(
            "from_stage_chown",
            "COPY --from=stage --chown=app:app into /home/app",
            &[
                "FROM {ALPINE} AS s",
                "COPY f.txt /src/f.txt",
                "COPY run.sh /src/sub/run.sh",
                "FROM {USRMERGE}",
                "COPY --from=s --chown=app:app /src/ /home/app/dst/",
            ],
        )
        .file("f.txt", HELLO)
        .file_mode("run.sh", SCRIPT, 0o755),
        case(
            "from_stage_parents",
            "COPY --from=stage --parents with a /./ pivot and without one: paths kept",
            &[
                "FROM {ALPINE} AS s",
                "COPY tree/ /src/",
                "FROM {ALPINE}",
                "COPY --from=s --parents /src/./a/b/f.txt /src/x/run.sh /p/",
            ],
        )
        .file("tree/a/b/f.txt", HELLO)
        .file_mode("tree/x/run.sh", SCRIPT, 0o755)
        .dir("tree/a", 0o750)
        .oracle(
            "buildah 1.28 has no --parents. BuildKit convert_copy.go copies the pivot \
             directory (/src, else /) with IncludePatterns [a/b/f.txt] / [src/x/run.sh]; \
             fsutil createParentDirs creates the directories above each match from the \
             source's own (copyDirectoryOnly + copyFileInfo: /src/a is 0750)",
            &[
                "FROM {ALPINE} AS s",
                "COPY tree/ /src/",
                "FROM {ALPINE}",
                "COPY --from=s /src/a/b/f.txt /p/a/b/",
                "COPY --from=s /src/x/run.sh /p/src/x/",
            ],
        )
        .buildkit(
            "fsutil copy.go createParentDirs: parents copied from the source keep its mode",
            vec![Fix::Set("/p/a", "mode", "0750")],
        ),
        case(
            "from_stage_hardlinks",
            "COPY --from=stage a dir with hard links and foreign owners: both kept",
            &[
                "FROM {ALPINE} AS s",
                "ADD arch.tar /x/",
                "FROM {ALPINE}",
                "COPY --from=s /x/arch/ /h/",
            ],
        )
        .tar("arch.tar", archive()),
        case(
            "from_stage_index",
            "COPY --from=0 (stage by index)",
            &[
                "FROM {ALPINE}",
                "COPY f.txt /src/",
                "FROM {ALPINE}",
                "COPY --from=0 /src/f.txt /from0",
            ],
        )
        .file("f.txt", HELLO),
        case(
            "multi_stage_target",
            "--target builds an intermediate stage (and its dependencies only)",
            &[
                "FROM {ALPINE} AS base",
                "ENV STAGE=base",
                "COPY f.txt /base.txt",
                "FROM base AS mid",
                "ENV STAGE=mid",
                "COPY run.sh /mid.sh",
                "FROM mid AS last",
                "ENV STAGE=last",
                "COPY f.txt /last.txt",
            ],
        )
        .file("f.txt", HELLO)
        .file_mode("run.sh", SCRIPT, 0o755)
        .target("mid"),
        case(
            "arg_in_from",
            "ARG before FROM names the base",
            &["ARG BASE={ALPINE}", "FROM $BASE", "COPY f.txt /f.txt"],
        )
        .file("f.txt", HELLO),
        // ------------------------------------------------ .dockerignore
        case(
            "dockerignore",
            ".dockerignore with a wildcard, an exception and a directory",
            &["FROM {ALPINE}", "COPY . /app/"],
        )
        .file(".dockerignore", "*.log\n!keep.log\nsecret/\n**/*.tmp\n")
        .file("main.txt", "main\n")
        .file("drop.log", "drop\n")
        .file("keep.log", "keep\n")
        .file("secret/key", "k\n")
        .file("sub/a.tmp", "t\n")
        .file("sub/b.txt", "b\n"),
        // ------------------------------------------------ COPY --link
        case(
            "copy_link_tmp",
            "COPY --link into /tmp/: done on scratch and merged, the layer's fresh /tmp \
             (0755) replaces the base's 1777",
            &["FROM {ALPINE}", "COPY --link f.txt /tmp/"],
        )
        .file("f.txt", HELLO)
        .oracle(
            "buildah 1.28 has no --link. BuildKit convert_copy.go: with --link and no \
             --chmod the copy runs on llb.Scratch() and is merged (llb.Merge); fsutil \
             MkdirAll creates /tmp 0755 in the scratch layer and that layer's /tmp entry \
             replaces the base's metadata (moby/moby#44956, moby/buildkit#3602)",
            &["FROM {ALPINE}", "COPY f.txt /tmp/"],
        )
        .buildkit(
            "the merged layer carries /tmp as created on scratch: 0755 root",
            vec![Fix::Set("/tmp", "mode", "0755")],
        ),
        case(
            "copy_link_usrmerge_bin",
            "COPY --link x /bin/ on usrmerge: base symlinks are not followed, the layer's \
             /bin directory replaces the /bin symlink",
            &["FROM {USRMERGE}", "COPY --link run.sh /bin/"],
        )
        .file_mode("run.sh", SCRIPT, 0o755)
        .oracle(
            "buildah 1.28 has no --link. BuildKit convert_copy.go copies onto llb.Scratch() \
             (no /bin symlink there: fsutil creates a /bin directory 0755) and merges; \
             applied on the base, the directory entry replaces the symlink (containerd \
             archive apply removes a non-directory in the way of a directory)",
            &["FROM {USRMERGE}"],
        )
        .buildkit(
            "/bin is a fresh 0755 root directory holding only run.sh",
            vec![
                Fix::Dir("/bin", 0o755, 0, 0),
                Fix::CtxFile("/bin/run.sh", "run.sh", 0o755, 0, 0),
            ],
        ),
        case(
            "copy_link_with_chmod",
            "COPY --link --chmod: not linked (BuildKit links only without --chmod), /tmp \
             keeps 1777",
            &["FROM {ALPINE}", "COPY --link --chmod=0755 f.txt /tmp/"],
        )
        .file("f.txt", HELLO)
        .oracle(
            "buildah 1.28 has no --link. BuildKit convert_copy.go merges only when \
             cfg.link && cfg.chmod == \"\": with --chmod it is a plain COPY",
            &["FROM {ALPINE}", "COPY --chmod=0755 f.txt /tmp/"],
        ),
        // ------------------------------------------------ ENV / ARG / LABEL
        case(
            "env_one_value_per_instruction",
            "ENV A=alpha C=${A}-x: a variable set in the same ENV is not seen by its \
             neighbours",
            &[
                "FROM {ALPINE}",
                "ENV A=alpha C=${A}-x",
                "ENV A=beta B=$A D=${C:-def} E=${UNSET:-dflt} F=${A:+set}",
            ],
        ),
        case(
            "arg_env_label_expansion",
            "ARG defaults and --build-arg expand in ENV, LABEL, COPY dest",
            &[
                "FROM {ALPINE}",
                "ARG V=1.0",
                "ARG W",
                "ARG DEST=/d",
                "ENV VER=$V WW=\"w-${W}\"",
                "LABEL version=$V w=\"$W\" \"multi word\"=\"a b\"",
                "COPY f.txt ${DEST}/$V.txt",
            ],
        )
        .file("f.txt", HELLO)
        .arg("W=from-cli"),
        case(
            "config_user_expose_volume_stopsignal",
            "USER, EXPOSE (ranges, protocols), VOLUME, STOPSIGNAL",
            &[
                "FROM {ALPINE}",
                "USER app:staff",
                "EXPOSE 80 8080/udp 9000-9001",
                "VOLUME [\"/data\", \"/logs\"]",
                "VOLUME /cache",
                "STOPSIGNAL SIGQUIT",
            ],
        )
        .buildkit(
            "buildah keeps the range as one key 9000-9001/tcp. BuildKit convert_expose.go \
             parsePort expands a range into one port/proto per port",
            vec![Fix::Config(
                "ExposedPorts",
                Some(json!({"80/tcp": {}, "8080/udp": {}, "9000/tcp": {}, "9001/tcp": {}})),
            )],
        ),
        case(
            "config_healthcheck_shell_onbuild",
            "HEALTHCHECK with options, SHELL, ONBUILD",
            &[
                "FROM {ALPINE}",
                "HEALTHCHECK --interval=5s --timeout=3s --start-period=2s --retries=4 CMD [\"/bin/true\"]",
                "SHELL [\"/bin/ash\", \"-c\"]",
                "ONBUILD COPY f.txt /onbuild.txt",
                "ONBUILD ENV X=1",
            ],
        ),
        case(
            "config_healthcheck_none_shell_form",
            "HEALTHCHECK NONE after one, CMD-SHELL form",
            &[
                "FROM {ALPINE} AS s",
                "HEALTHCHECK CMD wget -q localhost || exit 1",
                "FROM s",
                "HEALTHCHECK NONE",
            ],
        ),
        case(
            "entrypoint_resets_base_cmd",
            "ENTRYPOINT without CMD in the stage clears the base's Cmd",
            &["FROM {ALPINE}", "ENTRYPOINT [\"/bin/echo\", \"x\"]"],
        ),
        case(
            "cmd_then_entrypoint",
            "CMD then ENTRYPOINT in the same stage: Cmd is kept",
            &[
                "FROM {ALPINE}",
                "CMD [\"a\", \"b\"]",
                "ENTRYPOINT [\"/bin/echo\"]",
            ],
        ),
        case(
            "shell_form_with_custom_shell",
            "SHELL then shell-form ENTRYPOINT and CMD use the custom shell",
            &[
                "FROM {ALPINE}",
                "SHELL [\"/bin/ash\", \"-eo\", \"pipefail\", \"-c\"]",
                "ENTRYPOINT exec echo",
                "CMD echo hi",
            ],
        )
        .buildkit(
            "buildah 1.28 wraps shell-form ENTRYPOINT/CMD in /bin/sh -c whatever SHELL says. \
             BuildKit convert.go dispatchEntrypoint/dispatchCmd use withShell(d.image, …), \
             i.e. the stage's SHELL",
            vec![
                Fix::Config(
                    "Entrypoint",
                    Some(json!(["/bin/ash", "-eo", "pipefail", "-c", "exec echo"])),
                ),
                Fix::Config(
                    "Cmd",
                    Some(json!(["/bin/ash", "-eo", "pipefail", "-c", "echo hi"])),
                ),
            ],
        ),
        case(
            "stage_inherits_config",
            "FROM another stage inherits its config (ENV, WORKDIR, USER, LABEL)",
            &[
                "FROM {ALPINE} AS s",
                "ENV X=1",
                "WORKDIR /wd",
                "USER 1000",
                "LABEL a=b",
                "FROM s",
                "ENV Y=$X-2",
            ],
        ),
        // ------------------------------------------------ the images run
        case(
            "run_usrmerge_nonroot",
            "usrmerge image with a script in /bin and USER app runs: the script is found \
             through /bin, app writes /tmp and its home",
            &[
                "FROM {USRMERGE}",
                "COPY hello.sh /bin/hello",
                "USER app",
                "WORKDIR /home/app/work",
            ],
        )
        .file_mode("hello.sh", SCRIPT, 0o755)
        .run(
            "1000:1000",
            "hello && echo ok > /tmp/x && cat /tmp/x && echo home > /home/app/work/h && cat /home/app/work/h && ls -ld /bin | cut -c1",
            "hello from script\nok\nhome\nl\n",
        ),
        case(
            "run_alpine_nonroot_tmp",
            "a non-root USER writes to /tmp after a COPY into /tmp",
            &["FROM {ALPINE}", "COPY f.txt /tmp/", "USER 1000"],
        )
        .file("f.txt", HELLO)
        .run(
            "1000:1000",
            "echo ok > /tmp/x && cat /tmp/x && cat /tmp/f.txt",
            "ok\nhello\n",
        ),
    ]
}

// ------------------------------------------------------------------ set-up

/// The registry serving both bases, their pinned references, and buildah's
/// private storage with both bases pulled.
struct Env {
    _reg: RegistryServer,
    alpine: String,
    usrmerge: String,
    buildah: Buildah,
    /// The bases' merged filesystems (to show what a case expects to change).
    base_trees: Vec<Tree>,
}

fn manifest_digest(image_ref: &str) -> String {
    let raw = skopeo_inspect_raw_bytes(image_ref, false, None);
    format!("sha256:{}", hex::encode(Sha256::digest(&raw)))
}

fn setup() -> Env {
    let reg = RegistryServer::start();
    seed_alpine(&reg, "library/alpine:latest");
    let usrmerge_src = format!(
        "oci:{}",
        image_arg(usrmerge_oci_layout(), USRMERGE_TAG).to_string_lossy()
    );
    skopeo_copy(
        &usrmerge_src,
        &format!("docker://{}/diff/usrmerge:latest", reg.addr()),
    );
    let pin = |repo: &str| {
        let d = manifest_digest(&format!("docker://{}/{repo}:latest", reg.addr()));
        format!("{}/{repo}@{d}", reg.addr())
    };
    let alpine = pin("library/alpine");
    let usrmerge = pin("diff/usrmerge");
    let buildah = Buildah::new();
    buildah.pull(&alpine);
    buildah.pull(&usrmerge);
    let base_trees = vec![
        read_oci_layout(alpine_oci_layout(), "latest").tree,
        read_oci_layout(usrmerge_oci_layout(), USRMERGE_TAG).tree,
    ];
    Env {
        _reg: reg,
        alpine,
        usrmerge,
        buildah,
        base_trees,
    }
}

fn write_ctx(dir: &Path, items: &[C]) {
    use std::os::unix::fs::{chown, symlink};
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mkparent = |p: &Path| {
        let parent = p.parent().unwrap();
        if !parent.exists() {
            std::fs::create_dir_all(parent).unwrap();
            let mut d = parent;
            while d != dir {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
                d = d.parent().unwrap();
            }
        }
    };
    let mut later = Vec::new();
    for item in items {
        match item {
            C::File(p, content, mode) => {
                let p = dir.join(p);
                mkparent(&p);
                std::fs::write(&p, content).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            C::Dir(p, mode) => {
                let p = dir.join(p);
                std::fs::create_dir_all(&p).unwrap();
                later.push((p, *mode));
            }
            C::Symlink(p, target) => {
                let p = dir.join(p);
                mkparent(&p);
                symlink(target, &p).unwrap();
            }
            C::Hardlink(p, existing) => {
                let p = dir.join(p);
                mkparent(&p);
                std::fs::hard_link(dir.join(existing), &p).unwrap();
            }
            C::Tar(p, members) => {
                let p = dir.join(p);
                mkparent(&p);
                std::fs::write(&p, make_tar(members, p.to_string_lossy().ends_with(".gz")))
                    .unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
            C::Owner(p, uid, gid) => {
                chown(dir.join(p), Some(*uid), Some(*gid)).unwrap();
            }
        }
    }
    // Modes of directories last (a 0555 directory is still writable by root,
    // but this keeps the intent obvious).
    for (p, mode) in later {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

fn make_tar(members: &[T], gzip: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for T(name, kind, mode, uid, gid) in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*gid);
        h.set_mtime(1_600_000_000);
        match kind {
            TK::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, name, std::io::empty()).unwrap();
            }
            TK::File(content) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(content.len() as u64);
                b.append_data(&mut h, name, content.as_bytes()).unwrap();
            }
            TK::Symlink(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
            TK::Hardlink(target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    let bytes = b.into_inner().unwrap();
    if !gzip {
        return bytes;
    }
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap()
}

// ------------------------------------------------------------------ config

/// The config keys compared.
const CONFIG_KEYS: &[&str] = &[
    "Env",
    "Entrypoint",
    "Cmd",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "Shell",
    "OnBuild",
];

/// A config value with the differences that mean nothing removed: unset,
/// `null`, `""`, `[]` and `{}` are all "unset"; buildah's own
/// `io.buildah.version` label is dropped; `ExposedPorts`/`Volumes` are their
/// key sets; a Healthcheck's zero durations/retries are dropped (Docker and
/// BuildKit omit them).
fn normalize_config(key: &str, v: Option<&Value>) -> Option<Value> {
    let mut v = v?.clone();
    match key {
        "Labels" => {
            if let Some(o) = v.as_object_mut() {
                o.remove("io.buildah.version");
            }
        }
        "ExposedPorts" | "Volumes" => {
            if let Some(o) = v.as_object() {
                let mut keys: Vec<Value> = o.keys().map(|k| json!(k)).collect();
                keys.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                v = Value::Array(keys);
            }
        }
        "Healthcheck" => {
            if let Some(o) = v.as_object_mut() {
                o.retain(|_, x| !(x.is_null() || *x == json!(0)));
            }
        }
        _ => {}
    }
    match &v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) if o.is_empty() => None,
        _ => Some(v),
    }
}

fn config_fields(image: &Image) -> BTreeMap<&'static str, Value> {
    let c = &image.config["config"];
    CONFIG_KEYS
        .iter()
        .filter_map(|k| normalize_config(k, c.get(*k)).map(|v| (*k, v)))
        .collect()
}

fn compare_configs(
    actual: &BTreeMap<&'static str, Value>,
    expected: &BTreeMap<&'static str, Value>,
) -> Vec<Difference> {
    let show = |v: Option<&Value>| v.map_or_else(|| "unset".to_owned(), Value::to_string);
    CONFIG_KEYS
        .iter()
        .filter(|k| actual.get(*k) != expected.get(*k))
        .map(|k| Difference {
            path: "(config)".into(),
            field: (*k).to_owned(),
            actual: show(actual.get(k)),
            expected: show(expected.get(k)),
        })
        .collect()
}

// ------------------------------------------------------------------ fixes

fn apply_fixes(
    tree: &mut Tree,
    config: &mut BTreeMap<&'static str, Value>,
    fixes: &[Fix],
    ctx: &Path,
) {
    for f in fixes {
        match f {
            Fix::Set(path, field, value) => {
                let node = tree
                    .nodes
                    .get_mut(*path)
                    .unwrap_or_else(|| panic!("fix {f:?}: {path} is not in the oracle's image"));
                match *field {
                    "mode" => node.mode = u32::from_str_radix(value, 8).unwrap(),
                    "uid" => node.uid = value.parse().unwrap(),
                    "gid" => node.gid = value.parse().unwrap(),
                    other => panic!("fix {f:?}: field {other} cannot be set"),
                }
            }
            Fix::Dir(path, mode, uid, gid) => {
                tree.remove_tree(path);
                let ino = tree.new_ino();
                tree.nodes.insert(
                    (*path).to_owned(),
                    Node {
                        kind: Kind::Dir,
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        ino,
                    },
                );
            }
            Fix::CtxFile(path, src, mode, uid, gid) => {
                let bytes = std::fs::read(ctx.join(src)).unwrap();
                tree.remove_tree(path);
                let ino = tree.new_ino();
                tree.nodes.insert(
                    (*path).to_owned(),
                    Node {
                        kind: Kind::File {
                            size: bytes.len() as u64,
                            sha256: hex::encode(Sha256::digest(&bytes)),
                        },
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        ino,
                    },
                );
            }
            Fix::Symlink(path, target) => {
                tree.remove_tree(path);
                let ino = tree.new_ino();
                tree.nodes.insert(
                    (*path).to_owned(),
                    Node {
                        kind: Kind::Symlink((*target).to_owned()),
                        mode: 0o777,
                        uid: 0,
                        gid: 0,
                        ino,
                    },
                );
            }
            Fix::Config(key, value) => {
                let key = CONFIG_KEYS
                    .iter()
                    .find(|k| *k == key)
                    .unwrap_or_else(|| panic!("fix {f:?}: unknown config key"));
                match normalize_config(key, value.as_ref()) {
                    Some(v) => config.insert(key, v),
                    None => config.remove(key),
                };
            }
        }
    }
}

// ------------------------------------------------------------------ running

/// One difference, with buildah's own value when a BuildKit fix changed it.
struct Row {
    diff: Difference,
    buildah: Option<String>,
}

struct Outcome {
    name: &'static str,
    covers: &'static str,
    base: &'static str,
    /// ocipush failed to build (its error).
    build_error: Option<String>,
    /// The oracle could not build or check the case: the case itself is wrong.
    oracle_error: Option<String>,
    rows: Vec<Row>,
    /// Failed run checks on ocipush's image.
    run_failures: Vec<String>,
    /// When ocipush could not build: what the expected image changes in its
    /// base (`actual` = expected value, `expected` = the base's).
    expected_changes: Vec<Difference>,
    secs: f64,
    /// Time of buildah's build and of ocipush's build alone.
    buildah_secs: f64,
    ocipush_secs: f64,
}

impl Outcome {
    fn passed(&self) -> bool {
        self.build_error.is_none()
            && self.oracle_error.is_none()
            && self.rows.is_empty()
            && self.run_failures.is_empty()
    }
}

fn run_case(env: &Env, c: &Case) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome {
        name: c.name,
        covers: c.covers,
        base: c.base(),
        build_error: None,
        oracle_error: None,
        rows: Vec::new(),
        run_failures: Vec::new(),
        expected_changes: Vec::new(),
        secs: 0.0,
        buildah_secs: 0.0,
        ocipush_secs: 0.0,
    };
    let sb = Sandbox::new();
    let root = sb.path().join("case");
    let subst = |s: &str| {
        s.replace("{ALPINE}", &env.alpine)
            .replace("{USRMERGE}", &env.usrmerge)
    };
    let ctx = root.join("ctx");
    let octx = root.join("oracle-ctx");
    write_ctx(&ctx, &c.ctx);
    write_ctx(&octx, &c.ctx);
    write_ctx(&octx, &c.oracle_ctx);
    let dockerfile = root.join("Dockerfile");
    std::fs::write(&dockerfile, subst(&c.dockerfile)).unwrap();
    let oracle_dockerfile = root.join("Dockerfile.oracle");
    std::fs::write(
        &oracle_dockerfile,
        subst(c.oracle.as_deref().unwrap_or(&c.dockerfile)),
    )
    .unwrap();

    // The oracle.
    let bdir = root.join("buildah-out");
    let t = Instant::now();
    let bout = env
        .buildah
        .bud(&oracle_dockerfile, &octx, &bdir, c.target, &c.build_args);
    if !bout.status.success() {
        out.oracle_error = Some(format!(
            "buildah bud failed ({}):\n{}",
            bout.status,
            String::from_utf8_lossy(&bout.stderr)
        ));
        out.secs = started.elapsed().as_secs_f64();
        return out;
    }
    out.buildah_secs = t.elapsed().as_secs_f64();
    let bimg = read_dir_transport(&bdir);

    // ocipush.
    let olayout = root.join("ocipush-out");
    let mut args: Vec<std::ffi::OsString> = vec!["--context".into(), ctx.clone().into()];
    for a in &c.build_args {
        args.push("--build-arg".into());
        args.push(a.into());
    }
    if let Some(t) = c.target {
        args.push("--target".into());
        args.push(t.into());
    }
    args.push(dockerfile.clone().into());
    args.push(format!("oci:{}:t", olayout.display()).into());
    let t = Instant::now();
    let o = sb.ocipush_env(&args, &[("SOURCE_DATE_EPOCH", EPOCH)]);
    out.ocipush_secs = t.elapsed().as_secs_f64();
    if !o.status.success() {
        out.build_error = Some(format!("ocipush failed: {}", describe(&o)));
    }

    // Expected = buildah's result with BuildKit's fixes.
    let mut expected_tree = bimg.tree.clone();
    let buildah_config = config_fields(&bimg);
    let mut expected_config = buildah_config.clone();
    apply_fixes(&mut expected_tree, &mut expected_config, &c.fixes, &ctx);

    if out.build_error.is_some() || std::env::var_os("OCIPUSH_DIFF_VERBOSE").is_some() {
        out.expected_changes = env
            .base_trees
            .iter()
            .map(|base| compare_trees(&expected_tree, base))
            .min_by_key(Vec::len)
            .unwrap();
    }
    let oimg = out
        .build_error
        .is_none()
        .then(|| read_oci_layout(&olayout, "t"));
    if let Some(oimg) = &oimg {
        let mut diffs = compare_configs(&config_fields(oimg), &expected_config);
        diffs.extend(compare_trees(&oimg.tree, &expected_tree));
        for d in diffs {
            let raw = if d.path == "(config)" {
                let k = CONFIG_KEYS.iter().find(|k| **k == d.field).unwrap();
                Some(
                    buildah_config
                        .get(k)
                        .map_or_else(|| "unset".to_owned(), Value::to_string),
                )
            } else if d.path == "(layers)" {
                None
            } else {
                Some(match bimg.tree.fields(&d.path) {
                    None if d.field == "exists" => "absent".to_owned(),
                    None => "absent".to_owned(),
                    Some(f) if d.field == "exists" => format!("{} …", f["type"]),
                    Some(f) => f.get(d.field.as_str()).cloned().unwrap_or("-".into()),
                })
            };
            let buildah = raw.filter(|r| *r != d.expected && d.field != "exists");
            out.rows.push(Row { diff: d, buildah });
        }
    }

    // Run checks: prove each on buildah's image, then run it on ocipush's.
    if !c.runs.is_empty() {
        let boci = root.join("buildah-oci");
        skopeo_copy(
            &format!("dir:{}", bdir.display()),
            &format!("oci:{}:t", boci.display()),
        );
        let bbundle = root.join("buildah-bundle");
        umoci_unpack(&boci, "t", &bbundle);
        for r in &c.runs {
            let got = chroot_run(&bbundle.join("rootfs"), r);
            if got != Ok(r.stdout.to_owned()) {
                out.oracle_error = Some(format!(
                    "run check {:?} as {} fails on buildah's image: {got:?}",
                    r.script, r.userspec
                ));
            }
        }
        if oimg.is_some() {
            let obundle = root.join("ocipush-bundle");
            umoci_unpack(&olayout, "t", &obundle);
            for r in &c.runs {
                let got = chroot_run(&obundle.join("rootfs"), r);
                if got != Ok(r.stdout.to_owned()) {
                    out.run_failures.push(format!(
                        "`chroot --userspec={} ROOTFS /bin/sh -c {:?}`: expected stdout {:?}, got {got:?}",
                        r.userspec, r.script, r.stdout
                    ));
                }
            }
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    out
}

/// `chroot --userspec=U ROOTFS /bin/sh -c SCRIPT` with a clean environment;
/// `Ok(stdout)` when it exits 0, else the status and both streams.
fn chroot_run(rootfs: &Path, r: &RunCheck) -> Result<String, String> {
    let timeout = require_tool("timeout", "coreutils");
    let chroot = require_tool("chroot", "coreutils");
    let out = Command::new(timeout)
        .arg("--kill-after=10")
        .arg(TOOL_TIMEOUT_SECS.to_string())
        .arg(chroot)
        .arg(format!("--userspec={}", r.userspec))
        .arg(rootfs)
        .args(["/bin/sh", "-c", r.script])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/")
        .stdin(Stdio::null())
        .output()
        .expect("spawn chroot");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{}; stdout {stdout:?}; stderr {:?}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn report(outcomes: &[Outcome], pending: &BTreeMap<&str, &str>, secs: f64) -> String {
    let mut s = String::new();
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let sum = |f: fn(&Outcome) -> f64| outcomes.iter().map(f).sum::<f64>();
    writeln!(
        s,
        "differential: {} cases, {passed} pass, {} fail ({} listed in PENDING), {secs:.1} s \
         (summed over cases: {:.1} s in buildah bud, {:.1} s in ocipush, {:.1} s in all)",
        outcomes.len(),
        outcomes.len() - passed,
        outcomes
            .iter()
            .filter(|o| !o.passed() && pending.contains_key(o.name))
            .count(),
        sum(|o| o.buildah_secs),
        sum(|o| o.ocipush_secs),
        sum(|o| o.secs),
    )
    .unwrap();
    for o in outcomes {
        let status = match (o.passed(), pending.contains_key(o.name)) {
            _ if o.oracle_error.is_some() => "ORACLE-ERROR",
            (true, false) => "PASS",
            (true, true) => "PASS (but PENDING)",
            (false, true) => "FAIL (pending)",
            (false, false) => "FAIL",
        };
        writeln!(
            s,
            "{status:<18} {:<40} [{}] {} ({:.1} s)",
            o.name, o.base, o.covers, o.secs
        )
        .unwrap();
        if let Some(e) = &o.oracle_error {
            writeln!(s, "    oracle: {}", e.replace('\n', "\n    ")).unwrap();
        }
        if let Some(e) = &o.build_error {
            writeln!(s, "    {}", e.trim().replace('\n', "\n    ")).unwrap();
        }
        for r in &o.rows {
            let d = &r.diff;
            write!(
                s,
                "    {}  {}: ocipush {}, expected {}",
                d.path, d.field, d.actual, d.expected
            )
            .unwrap();
            if let Some(b) = &r.buildah {
                write!(s, " (buildah {b}; BuildKit rule of this case)").unwrap();
            }
            s.push('\n');
        }
        for f in &o.run_failures {
            writeln!(s, "    run: {f}").unwrap();
        }
        if !o.expected_changes.is_empty() {
            writeln!(s, "    expected changes to the base:").unwrap();
            for d in &o.expected_changes {
                writeln!(
                    s,
                    "      {}  {}: {} -> {}",
                    d.path, d.field, d.expected, d.actual
                )
                .unwrap();
            }
        }
    }
    s
}

#[test]
fn differential_ocipush_vs_buildah() {
    let all = cases();
    let mut names = std::collections::BTreeSet::new();
    for c in &all {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        assert!(
            c.fixes.is_empty() && c.oracle.is_none() || c.why.is_some(),
            "case {}: an oracle Dockerfile or BuildKit fixes need their reason",
            c.name
        );
    }
    let pending: BTreeMap<&str, &str> = PENDING.iter().copied().collect();
    let mut problems = Vec::new();
    for p in pending.keys() {
        if !names.contains(p) {
            problems.push(format!("PENDING lists {p}, which is not a case"));
        }
    }
    let only: Option<Vec<String>> = std::env::var("OCIPUSH_DIFF_CASES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let selected: Vec<&Case> = match &only {
        None => all.iter().collect(),
        Some(list) => {
            for n in list {
                assert!(
                    names.contains(n.as_str()),
                    "OCIPUSH_DIFF_CASES names unknown case {n}"
                );
            }
            eprintln!(
                "differential: OCIPUSH_DIFF_CASES set: running only {} of {} cases",
                list.len(),
                all.len()
            );
            all.iter()
                .filter(|c| list.iter().any(|n| n == c.name))
                .collect()
        }
    };
    let jobs: usize = std::env::var("OCIPUSH_DIFF_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
        .max(1);

    let started = Instant::now();
    let env = setup();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = selected.get(i) else { break };
                    let o = run_case(&env, c);
                    results.lock().unwrap().push((i, o));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);
    let outcomes: Vec<Outcome> = results.into_iter().map(|(_, o)| o).collect();
    let secs = started.elapsed().as_secs_f64();

    for o in &outcomes {
        if let Some(e) = &o.oracle_error {
            problems.push(format!(
                "{}: the oracle cannot build or check this case (fix the case): {e}",
                o.name
            ));
        } else if o.passed() && pending.contains_key(o.name) {
            problems.push(format!(
                "{} passes now: remove it from PENDING in tests/it/e2e_differential.rs",
                o.name
            ));
        } else if !o.passed() && !pending.contains_key(o.name) {
            problems.push(format!(
                "{} fails (see its differences below); it is not listed in PENDING",
                o.name
            ));
        }
    }
    let text = report(&outcomes, &pending, secs);
    eprintln!("{text}");
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("differential-report.txt");
    let _ = std::fs::write(&file, &text);
    assert!(
        problems.is_empty(),
        "differential suite: {} problem(s):\n  {}\n(the report above has every difference; \
         also in {})",
        problems.len(),
        problems.join("\n  "),
        file.display()
    );
}

#[test]
fn differential_case_table_is_big_enough_and_documented() {
    let all = cases();
    assert!(all.len() >= 40, "only {} cases", all.len());
    for c in &all {
        assert!(!c.covers.is_empty(), "{}: say what it covers", c.name);
    }
}
