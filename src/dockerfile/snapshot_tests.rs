//! insta snapshots of typed instructions for representative Dockerfiles.

use super::{instructions, parse};

fn typed(text: &str) -> Vec<super::Located<super::Instruction>> {
    let df = parse(text).expect("parses");
    instructions(&df).expect("typed")
}

#[test]
fn reference_alpine_cmd() {
    insta::assert_debug_snapshot!(typed(
        "FROM alpine:latest\nCMD [\"sh\", \"-c\", \"echo hello\"]\n"
    ));
}

#[test]
fn alpine_rootfs() {
    insta::assert_debug_snapshot!(typed(
        "FROM scratch\nADD alpine-minirootfs-3.20.3-x86_64.tar.gz /\nCMD [\"/bin/sh\"]\n"
    ));
}

#[test]
fn everything() {
    let text = r#"# syntax=docker/dockerfile:1
# escape=\
ARG BASE=alpine:3.20 VERSION
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
FROM scratch
LABEL org.opencontainers.image.title="demo app" version=$VERSION
LABEL legacy value with spaces
MAINTAINER Jane Doe <jane@example.com>
ENV APP_HOME=/app \
    PATH=/app/bin:$PATH
ENV LEGACY some value
WORKDIR $APP_HOME
COPY --from=build --chown=app:app --chmod=0755 --link bin/ ./bin/
COPY ["file with spaces.txt", "/app/data/"]
COPY --parents --exclude=*.md --exclude=tmp docs/ /app/docs/
ADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 https://example.com/x.tar.gz /opt/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit
USER app:app
EXPOSE 8080 8443/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --start-interval=2s --retries=3 \
  CMD ["/app/bin/health", "--quiet"]
ONBUILD COPY . /app/src
SHELL ["/bin/sh", "-ec"]
ENTRYPOINT ["/app/bin/server"]
CMD ["--port", "8080"]
"#;
    let df = parse(text).expect("parses");
    assert!(df.warnings.is_empty(), "{:?}", df.warnings);
    assert_eq!(df.directives.syntax.as_deref(), Some("docker/dockerfile:1"));
    insta::assert_debug_snapshot!(instructions(&df).expect("typed"));
}
