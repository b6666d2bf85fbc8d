//! `ADD <http(s) URL>` in the plan: which sources are downloads is [`super::remote`]'s
//! BuildKit classification (`isHTTPSource`); each becomes a [`RemoteSource`] that the build ([`crate::build`])
//! downloads ([`crate::fetch`]) before building the layer. As in BuildKit
//! (frontend/dockerfile/dockerfile2llb/convert_copy.go), a URL is never unpacked unless
//! `--unpack=true`, and `--checksum` (one source only) must be a digest the download has.

use crate::digest::Digest;

/// An `ADD <url>` source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    /// The URL as written (variables expanded). It may carry credentials: show it only
    /// through [`crate::auth::redact::redact_url`].
    pub url: String,
    /// `--checksum`: the sha256 the download must have.
    pub checksum: Option<Digest>,
    /// `--unpack=true`: extract the download when it is a tar archive (plain or compressed).
    pub unpack: bool,
}

/// `--checksum=<digest>` (expanded, not empty) as a digest, or what is wrong with it.
pub(crate) fn parse_checksum(c: &str) -> Result<Digest, String> {
    c.parse::<Digest>().map_err(|e| {
        format!(
            "--checksum={c}: {e}; write --checksum=sha256:<the 64 hex digits of the file's sha256>"
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::image::Platform;
    use crate::plan::{LayerStep, PlanError, StageContext, StagePlan, plan_stage, plan_stages};

    fn plan(text: &str) -> Result<StagePlan, PlanError> {
        let df = crate::dockerfile::parse(text).unwrap();
        let auto = crate::plan::platform_args(&Platform::linux_amd64(), &Platform::linux_amd64());
        let stages = plan_stages(&df, &Default::default(), &auto)?;
        let ctx = StageContext {
            stages: &stages,
            build_args: &Default::default(),
            auto_args: &auto,
            platform: &Platform::linux_amd64(),
            epoch: 0,
        };
        plan_stage(&stages.stages[0], None, &ctx)
    }

    #[test]
    fn planned_steps_carry_downloads_and_redacted_history() {
        let p = plan(
            "FROM scratch\n\
             ARG V=2\n\
             ADD --unpack=true local.tgz https://u:pw@example.com/v$V/tool.tgz /opt/\n\
             ADD --unpack=false local.tgz /keep/\n",
        )
        .unwrap();
        let LayerStep::Copy {
            srcs,
            remote,
            extract,
            ..
        } = &p.layers[0]
        else {
            panic!("not a copy: {:?}", p.layers[0]);
        };
        assert_eq!(srcs, &["local.tgz"]);
        assert!(*extract);
        assert_eq!(remote[0].url, "https://u:pw@example.com/v2/tool.tgz");
        assert!(remote[0].unpack);
        assert_eq!(remote[0].checksum, None);
        let LayerStep::Copy {
            extract, remote, ..
        } = &p.layers[1]
        else {
            panic!("not a copy");
        };
        assert!(!*extract, "--unpack=false keeps local archives");
        assert!(remote.is_empty());
        let history: Vec<_> = p
            .config
            .history
            .iter()
            .filter_map(|h| h.created_by.clone())
            .collect();
        assert!(
            history.contains(
                &"ADD local.tgz https://<redacted>@example.com/v2/tool.tgz /opt/ # buildkit"
                    .to_string()
            ),
            "{history:?}"
        );
    }

    #[test]
    fn checksums_pin_downloads() {
        let hex = "a".repeat(64);
        let p = plan(&format!(
            "FROM scratch\nADD --checksum=sha256:{hex} https://x.org/f /f\n"
        ))
        .unwrap();
        let LayerStep::Copy { remote, srcs, .. } = &p.layers[0] else {
            panic!("not a copy");
        };
        assert!(srcs.is_empty());
        assert!(!remote[0].unpack, "a URL is not unpacked by default");
        assert_eq!(remote[0].checksum.as_ref().unwrap().hex(), hex);
        let e = plan("FROM scratch\nADD --checksum=md5:abc https://x.org/f /f\n").unwrap_err();
        assert!(e.to_string().contains("--checksum=md5:abc"), "{e}");
        let e = plan("FROM scratch\nADD https://u:s3cret@github.com/o/r.git /src\n").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("does not clone git"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }
}
