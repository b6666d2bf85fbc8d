//! `--mount` parsing: BuildKit's defaults and refusals (`commands_runmount.go`).

use super::*;

fn parse(v: &str) -> Result<RunMount, MountError> {
    let expand =
        |s: &str| -> Result<String, crate::plan::PlanError> { Ok(s.replace("$DIR", "/expanded")) };
    let from = |s: &str| -> Result<CopyFrom, crate::plan::PlanError> {
        Ok(if s == "build" {
            CopyFrom::Stage(0)
        } else {
            CopyFrom::Image(s.to_string())
        })
    };
    parse_mount(
        v,
        &MountAt {
            workdir: "/work",
            expand: &expand,
            from: &from,
        },
    )
}

fn err(v: &str) -> String {
    match parse(v) {
        Err(MountError::Invalid(m)) => m,
        other => panic!("{v}: {other:?}"),
    }
}

#[test]
fn bind_defaults_read_only_from_the_context() {
    assert_eq!(
        parse("target=/src").unwrap(),
        RunMount::Bind {
            target: "/src".into(),
            source: "/".into(),
            from: None,
            readwrite: false,
        }
    );
    assert_eq!(
        parse("type=BIND,from=build,src=out/../bin/,dst=rel/dir,rw").unwrap(),
        RunMount::Bind {
            target: "/work/rel/dir".into(),
            source: "/bin".into(),
            from: Some(CopyFrom::Stage(0)),
            readwrite: true,
        }
    );
    assert_eq!(
        parse("\"target=/a,b\",readwrite=true,ro").unwrap(),
        RunMount::Bind {
            target: "/a,b".into(),
            source: "/".into(),
            from: None,
            readwrite: false,
        }
    );
    assert_eq!(
        parse("target=$DIR,from=alpine:3").unwrap().target(),
        Some("/expanded")
    );
}

#[test]
fn cache_defaults() {
    assert_eq!(
        parse("type=cache,target=/root/.cache/").unwrap(),
        RunMount::Cache {
            target: "/root/.cache".into(),
            from: None,
            source: "/".into(),
            id: "/root/.cache".into(),
            sharing: CacheSharing::Shared,
            mode: 0o755,
            uid: 0,
            gid: 0,
            readonly: false,
        }
    );
    assert_eq!(
        parse("type=cache,id=go,target=/c,sharing=LOCKED,mode=0700,uid=1000,gid=10,ro,from=build,source=/seed/").unwrap(),
        RunMount::Cache {
            target: "/c".into(),
            from: Some(CopyFrom::Stage(0)),
            source: "/seed".into(),
            id: "go".into(),
            sharing: CacheSharing::Locked,
            mode: 0o700,
            uid: 1000,
            gid: 10,
            readonly: true,
        }
    );
}

#[test]
fn secret_defaults() {
    assert_eq!(
        parse("type=secret,id=tok").unwrap(),
        RunMount::Secret {
            id: "tok".into(),
            target: Some("/run/secrets/tok".into()),
            env: None,
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0,
        }
    );
    // The id defaults to the target's basename; `required` as a bare flag.
    assert_eq!(
        parse("type=secret,target=/etc/key.pem,required,mode=0440,gid=5").unwrap(),
        RunMount::Secret {
            id: "key.pem".into(),
            target: Some("/etc/key.pem".into()),
            env: None,
            required: true,
            mode: 0o440,
            uid: 0,
            gid: 5,
        }
    );
    // `env=` alone: no file; `source` is the id.
    assert_eq!(
        parse("type=secret,source=aws,env=AWS_KEY,required=false").unwrap(),
        RunMount::Secret {
            id: "aws".into(),
            target: None,
            env: Some("AWS_KEY".into()),
            required: false,
            mode: 0o400,
            uid: 0,
            gid: 0,
        }
    );
}

#[test]
fn tmpfs_size() {
    assert_eq!(
        parse("type=tmpfs,target=/t,size=64m").unwrap(),
        RunMount::Tmpfs {
            target: "/t".into(),
            size: Some(64 << 20),
        }
    );
    assert_eq!(
        parse("type=tmpfs,dst=t").unwrap(),
        RunMount::Tmpfs {
            target: "/work/t".into(),
            size: None,
        }
    );
}

#[test]
fn refusals() {
    for (v, want) in [
        ("type=nfs,target=/x", "unsupported mount type \"nfs\""),
        (
            "target=/x,mode=0700",
            "mode not allowed for \"bind\" type mounts",
        ),
        (
            "type=tmpfs,target=/x,uid=1",
            "uid not allowed for \"tmpfs\"",
        ),
        (
            "target=/x,sharing=locked",
            "invalid cache sharing set for bind mount",
        ),
        (
            "type=cache,target=/x,sharing=exclusive",
            "unsupported sharing value",
        ),
        (
            "target=/x,required",
            "unexpected key 'required' for mount type 'bind'",
        ),
        (
            "type=cache,target=/x,size=1m",
            "unexpected key 'size' for mount type 'cache'",
        ),
        ("target=/x,bogus=1", "unexpected key 'bogus'"),
        (
            "target=/x,nokey",
            "invalid field 'nokey' must be a key=value pair",
        ),
        ("target=/x,ro=maybe", "invalid value for ro: maybe"),
        ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
        ("type=cache,target=/x,uid=-1", "invalid value -1 for uid"),
        (
            "type=tmpfs,target=/x,size=lots",
            "invalid value for size: lots",
        ),
        ("target=/", "invalid mount target \"/\""),
        ("type=cache", "a cache mount needs a target"),
        ("type=secret", "one of source, target required"),
        ("type=secret,id=a,src=b", "both source and id can't be set"),
        (
            "type=secret,id=a,from=x",
            "secret mount should not have a from",
        ),
        (
            "target=/x,from=$STAGE",
            "doesn't support variable expansion",
        ),
        ("\"target=/x", "unterminated quote"),
    ] {
        let m = err(v);
        assert!(m.contains(want), "{v}: {m}");
    }
    assert!(matches!(
        parse("type=ssh"),
        Err(MountError::Unsupported { .. })
    ));
    let two = [
        parse("target=/a").unwrap(),
        parse("type=tmpfs,target=/a/").unwrap(),
    ];
    assert!(check_targets(&two).is_err());
}
