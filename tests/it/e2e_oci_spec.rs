//! `oci-spec` interop on real images: a two-platform Alpine built into an OCI layout, and the
//! layout skopeo writes from it. Every document (index, manifests, configs) is read by
//! oci-spec from its bytes, converted to ocipush's types and back; what ocipush wrote
//! re-serialises to the very bytes that were digested.

use std::path::Path;

use oci_spec::image as spec;
use ocipush::image::{ImageConfig, Index, Manifest};

use crate::common::ocipush::Sandbox;
use crate::common::tools::{image_arg, skopeo_copy};

use super::e2e_platforms::two_arch_alpine_context;

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (alg, hex) = digest.split_once(':').unwrap();
    std::fs::read(layout.join("blobs").join(alg).join(hex)).unwrap()
}

/// Read `bytes` with oci-spec, convert to ours and back; with `exact`, ours re-serialises to
/// `bytes`. Returns ours.
fn round_trip<O, T>(bytes: &[u8], exact: bool) -> O
where
    O: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    T: serde::de::DeserializeOwned,
    for<'a> O: TryFrom<&'a T, Error = ocipush::image::oci_spec::OciSpecError>,
    for<'a> T: TryFrom<&'a O, Error = ocipush::image::oci_spec::OciSpecError>,
{
    let theirs: T = serde_json::from_slice(bytes).unwrap();
    let ours = O::try_from(&theirs).unwrap();
    let direct: O = serde_json::from_slice(bytes).unwrap();
    assert_eq!(
        ours,
        direct,
        "oci-spec carried every field of {}",
        String::from_utf8_lossy(bytes)
    );
    let again = T::try_from(&ours).unwrap();
    assert_eq!(O::try_from(&again).unwrap(), ours);
    if exact {
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&ours).unwrap()).unwrap(),
            String::from_utf8(bytes.to_vec()).unwrap()
        );
    }
    ours
}

/// Every document below the layout's `index.json`: (index, manifests, configs) checked.
fn walk(layout: &Path, exact: bool) -> (usize, usize, usize) {
    let top = std::fs::read(layout.join("index.json")).unwrap();
    let top: Index = round_trip::<Index, spec::ImageIndex>(&top, false);
    let (mut indexes, mut manifests, mut configs) = (1, 0, 0);
    let mut todo: Vec<_> = top.manifests.clone();
    while let Some(d) = todo.pop() {
        let bytes = blob(layout, d.digest.as_str());
        if d.media_type.contains("index") {
            let index: Index = round_trip::<Index, spec::ImageIndex>(&bytes, exact);
            todo.extend(index.manifests);
            indexes += 1;
        } else {
            let m: Manifest = round_trip::<Manifest, spec::ImageManifest>(&bytes, exact);
            let config = blob(layout, m.config.digest.as_str());
            let c: ImageConfig =
                round_trip::<ImageConfig, spec::ImageConfiguration>(&config, exact);
            assert_eq!(c.rootfs.diff_ids.len(), m.layers.len());
            manifests += 1;
            configs += 1;
        }
    }
    (indexes, manifests, configs)
}

#[test]
fn real_images_convert_to_oci_spec_and_back_without_loss() {
    let sb = Sandbox::new();
    let (ctx, dockerfile) = two_arch_alpine_context(sb.path());
    let layout = sb.path().join("layout");
    let dest = format!("oci:{}:3", layout.display());
    let out = sb.ocipush([
        "--platform".as_ref(),
        "linux/amd64,linux/arm64".as_ref(),
        "--context".as_ref(),
        ctx.as_os_str(),
        dockerfile.as_os_str(),
        dest.as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // index.json → the image index → two manifests, each with its config.
    assert_eq!(walk(&layout, true), (2, 2, 2));

    // Documents written by another tool (containers/image, via skopeo).
    let other = sb.path().join("skopeo");
    skopeo_copy(
        &dest,
        &format!("oci:{}", image_arg(&other, "x").to_string_lossy()),
    );
    let (_, manifests, configs) = walk(&other, false);
    assert!(manifests >= 1 && configs >= 1);
}
