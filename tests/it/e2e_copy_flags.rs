//! COPY/ADD sources end to end, as BuildKit treats them: heredocs (expanded or not, `<<-`,
//! several in one instruction), `--exclude` with exceptions, `--parents` with a `/./` pivot,
//! optional wildcards, hard links kept as links, symbolic `--chmod`, `ADD --unpack=false`; the
//! image goes to an OCI layout that umoci unpacks (as root, keeping modes and links) and skopeo
//! reads. Flags ocipush cannot honour fail naming their line.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::ocipush::{Sandbox, assert_failed, assert_pushed};
use crate::common::tools::{skopeo_inspect_config, umoci_unpack};

const DOCKERFILE: &str = r#"FROM scratch
ARG NAME=world
ENV GREETING=hello
COPY <<EOF /etc/motd
$GREETING ${NAME}
EOF
COPY <<-'RAW' <<two /notes/
	$GREETING stays
	RAW
second
two
COPY --chmod=u+x,go-w <<EOF /bin/script
#!/bin/sh
EOF
COPY --exclude=**/*.log --exclude=!keep.log --exclude=cache app/ /app/
COPY --parents src/./lib/**/*.rs src/main.rs /parents/
COPY package.json package-lock.json* /pkg/
COPY nothing-here* /empty/
COPY links/ /links/
COPY --chmod=a+rX,u+w modes/ /modes/
ADD --unpack=false archive.tar /raw/
ADD archive.tar /unpacked/
"#;

fn write(root: &Path, rel: &str, data: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn context(ctx: &Path) {
    fs::create_dir_all(ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    write(ctx, "app/main.txt", "main", 0o644);
    write(ctx, "app/debug.log", "noise", 0o644);
    write(ctx, "app/keep.log", "kept", 0o644);
    write(ctx, "app/cache/blob", "cached", 0o644);
    write(ctx, "app/sub/trace.log", "noise", 0o644);
    write(ctx, "src/main.rs", "fn main() {}", 0o644);
    write(ctx, "src/lib/a.rs", "a", 0o644);
    write(ctx, "src/lib/readme.md", "no", 0o644);
    write(ctx, "src/lib/deep/b.rs", "b", 0o644);
    write(ctx, "package.json", "{}", 0o644);
    write(ctx, "links/one", "the same bytes", 0o644);
    fs::hard_link(ctx.join("links/one"), ctx.join("links/two")).unwrap();
    write(ctx, "modes/data", "d", 0o600);
    write(ctx, "modes/run", "r", 0o700);
    fs::set_permissions(ctx.join("modes"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut tar = tar::Builder::new(fs::File::create(ctx.join("archive.tar")).unwrap());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, "inside.txt", &b"inside"[..])
        .unwrap();
    tar.finish().unwrap();
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn copy_sources_and_flags_like_buildkit() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    context(&ctx);
    let layout = sb.path().join("layout");
    let dest = format!("oci:{}:v1", layout.display());
    let out = sb.ocipush([ctx.join("Dockerfile").as_os_str(), dest.as_ref()]);
    assert_pushed(&out, &format!("oci:{}", layout.display()));

    let bundle = sb.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle);
    let root = bundle.join("rootfs");

    // Heredocs: expanded unless quoted, tabs stripped by <<-, 0644 unless --chmod.
    assert_eq!(read(&root.join("etc/motd")), "hello world\n");
    assert_eq!(mode(&root.join("etc/motd")), 0o644);
    assert_eq!(read(&root.join("notes/RAW")), "$GREETING stays\n");
    assert_eq!(read(&root.join("notes/two")), "second\n");
    assert_eq!(read(&root.join("bin/script")), "#!/bin/sh\n");
    assert_eq!(mode(&root.join("bin/script")), 0o744);

    // --exclude, with an exception; an excluded directory is gone.
    assert_eq!(read(&root.join("app/main.txt")), "main");
    assert_eq!(read(&root.join("app/keep.log")), "kept");
    assert!(!root.join("app/debug.log").exists());
    assert!(!root.join("app/sub/trace.log").exists());
    assert!(root.join("app/sub").is_dir());
    assert!(!root.join("app/cache").exists());

    // --parents: paths kept below the /./ pivot, or whole without one.
    assert_eq!(read(&root.join("parents/lib/a.rs")), "a");
    assert_eq!(read(&root.join("parents/lib/deep/b.rs")), "b");
    assert!(!root.join("parents/lib/readme.md").exists());
    assert_eq!(read(&root.join("parents/src/main.rs")), "fn main() {}");

    // Optional wildcards: an absent one is fine; all absent gives an empty layer.
    assert_eq!(read(&root.join("pkg/package.json")), "{}");
    assert!(!root.join("pkg/package-lock.json").exists());
    assert!(!root.join("empty").exists());

    // Hard links stay links: one inode.
    let one = fs::metadata(root.join("links/one")).unwrap();
    let two = fs::metadata(root.join("links/two")).unwrap();
    assert_eq!(one.ino(), two.ino());
    assert_eq!(read(&root.join("links/two")), "the same bytes");

    // Symbolic --chmod per entry: X only for directories and executables.
    assert_eq!(mode(&root.join("modes")), 0o755);
    assert_eq!(mode(&root.join("modes/data")), 0o644);
    assert_eq!(mode(&root.join("modes/run")), 0o755);

    // ADD --unpack=false copies the archive; plain ADD extracts it.
    assert!(root.join("raw/archive.tar").is_file());
    assert_eq!(read(&root.join("unpacked/inside.txt")), "inside");
    assert!(!root.join("unpacked/archive.tar").exists());

    // History as BuildKit writes it.
    let config = skopeo_inspect_config(&dest, false, None);
    let history: Vec<String> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "COPY <<EOF /etc/motd # buildkit",
        "COPY <<RAW <<two /notes/ # buildkit",
        "COPY --chmod=u+x,go-w <<EOF /bin/script # buildkit",
        "COPY --parents src/./lib/**/*.rs src/main.rs /parents/ # buildkit",
        // BuildKit prints neither --exclude nor --unpack.
        "COPY app/ /app/ # buildkit",
        "ADD archive.tar /raw/ # buildkit",
    ] {
        assert!(
            history.iter().any(|h| h == want),
            "{want:?} not in {history:#?}"
        );
    }
}

#[test]
fn flags_ocipush_cannot_honour_name_their_line() {
    let sb = Sandbox::new();
    let ctx = sb.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("a.txt"), "a").unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "FROM scratch\nADD --checksum=sha256:0000 a.txt /a\n",
            "Dockerfile:2: ADD: --checksum requires HTTP(S) or Git sources",
        ),
        (
            "FROM scratch\n\nADD --keep-git-dir a.txt /a\n",
            "Dockerfile:3: ADD --keep-git-dir is not supported",
        ),
        (
            "FROM scratch\nADD https://github.com/moby/buildkit.git#v0.10.1 /b\n",
            "does not clone git repositories",
        ),
        (
            "FROM scratch\nRUN <<EOF\n#!/bin/sh\ntrue\nEOF\n",
            "Dockerfile:2: RUN <<EOF with a #! line is not supported",
        ),
        (
            "FROM scratch\nCOPY --chmod=u!x a.txt /a\n",
            "invalid --chmod mode \"u!x\" (Dockerfile:2)",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (dockerfile, want)) in cases.iter().enumerate() {
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let out = sb.ocipush([
            ctx.join("Dockerfile").into_os_string(),
            format!("oci:{}:v1", sb.path().join(format!("out{i}")).display()).into(),
        ]);
        let err = assert_failed(&out, 1);
        if !err.contains(want) {
            failures.push(format!("{dockerfile:?}: expected {want:?} in: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
