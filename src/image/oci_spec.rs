//! Conversions between this crate's image documents and the [`oci_spec`] crate's image types
//! (feature `oci-spec`), for embedders whose other tools speak oci-spec.
//!
//! Both sides serialise to the OCI image spec's JSON, so each conversion goes through that
//! JSON: every field the spec defines is carried, whichever side it comes from. What the
//! spec does not define is where the two differ: [`ImageConfig`] keeps fields it does not know
//! (a pushed config is what was read), oci-spec drops them. The crate's own types stay the ones
//! that are pushed: their serialisation is canonical, so a digest is computed once.
//!
//! | this crate | oci-spec |
//! |---|---|
//! | [`Manifest`] | [`spec::ImageManifest`] |
//! | [`Index`] | [`spec::ImageIndex`] |
//! | [`Descriptor`] | [`spec::Descriptor`] |
//! | [`Platform`] | [`spec::Platform`] |
//! | [`ImageConfig`] | [`spec::ImageConfiguration`] |
//!
//! Each pair converts both ways with `TryFrom<&T>`.

use oci_spec::image as spec;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Descriptor, ImageConfig, Index, Manifest, Platform};

/// A document that one side cannot represent as the other reads it.
#[derive(Debug, thiserror::Error)]
#[error("cannot convert this {what} {direction} oci-spec: {source}")]
pub struct OciSpecError {
    what: &'static str,
    direction: &'static str,
    #[source]
    source: serde_json::Error,
}

fn via<A: Serialize, B: DeserializeOwned>(
    a: &A,
    what: &'static str,
    direction: &'static str,
) -> Result<B, OciSpecError> {
    serde_json::to_value(a)
        .and_then(serde_json::from_value)
        .map_err(|source| OciSpecError {
            what,
            direction,
            source,
        })
}

macro_rules! both_ways {
    ($ours:ty, $theirs:ty, $what:literal) => {
        impl TryFrom<&$ours> for $theirs {
            type Error = OciSpecError;
            fn try_from(v: &$ours) -> Result<Self, OciSpecError> {
                via(v, $what, "to")
            }
        }

        impl TryFrom<&$theirs> for $ours {
            type Error = OciSpecError;
            fn try_from(v: &$theirs) -> Result<Self, OciSpecError> {
                via(v, $what, "from")
            }
        }
    };
}

both_ways!(Manifest, spec::ImageManifest, "image manifest");
both_ways!(Index, spec::ImageIndex, "image index");
both_ways!(Descriptor, spec::Descriptor, "descriptor");
both_ways!(Platform, spec::Platform, "platform");
both_ways!(ImageConfig, spec::ImageConfiguration, "image config");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_platform_with_a_variant_goes_both_ways() {
        let ours: Platform =
            serde_json::from_str(r#"{"architecture":"arm64","os":"linux","variant":"v8"}"#)
                .unwrap();
        let theirs = spec::Platform::try_from(&ours).unwrap();
        assert_eq!(theirs.architecture(), &spec::Arch::ARM64);
        assert_eq!(theirs.variant().as_deref(), Some("v8"));
        assert_eq!(Platform::try_from(&theirs).unwrap(), ours);
    }

    #[test]
    fn a_config_keeps_what_the_spec_defines_and_oci_spec_drops_the_rest() {
        let ours: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Cmd":["sh"]},
                "rootfs":{"type":"layers","diff_ids":[]},"moby.buildkit.buildinfo.v1":"x"}"#,
        )
        .unwrap();
        assert!(ours.extra.contains_key("moby.buildkit.buildinfo.v1"));
        let theirs = spec::ImageConfiguration::try_from(&ours).unwrap();
        assert_eq!(theirs.os(), &spec::Os::Linux);
        let back = ImageConfig::try_from(&theirs).unwrap();
        assert_eq!(back.config, ours.config);
        assert!(!back.extra.contains_key("moby.buildkit.buildinfo.v1"));
    }
}
