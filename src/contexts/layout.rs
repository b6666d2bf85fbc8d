//! `oci-layout://DIR[:TAG|@DIGEST]`: an image read out of an OCI image layout on disk
//! (image-spec `image-layout.md`), as BuildKit's OCI layout source does: the entry of
//! `index.json` the tag or digest names (without either, `latest` or the only entry), through
//! an index to the platform being built, its manifest and config read whole (size-limited,
//! digest-checked), its layers left in the layout as files to stream from.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::{ContextError, LayoutRef};
use crate::base_image::{BaseImage, BaseLayer};
use crate::blob::{BlobSource, FileBlob};
use crate::image::{Descriptor, ImageConfig, Index, Manifest, Platform, media_types};
use crate::layout::OciLayout;
use crate::registry::MAX_MANIFEST_SIZE;

/// Largest config read (as for registry bases).
const MAX_CONFIG: u64 = 8 * 1024 * 1024;

/// The image `reference` names in the layout at `dir`, for `platform`.
pub(crate) fn read_layout_image(
    name: &str,
    dir: &Path,
    reference: &LayoutRef,
    platform: &Platform,
) -> Result<BaseImage, ContextError> {
    let lerr = |source| ContextError::Layout {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        source,
    };
    let bad = |message: String| ContextError::LayoutImage {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        message,
    };
    let tag = match reference {
        LayoutRef::Tag(t) => Some(t.clone()),
        _ => None,
    };
    let layout = OciLayout::open_existing(dir, tag).map_err(lerr)?;
    let top = match reference {
        LayoutRef::Digest(d) => {
            let path = layout.blob_path(d);
            let size = std::fs::metadata(&path)
                .map_err(|_| bad(format!("no blob {d} in the layout")))?
                .len();
            Descriptor::new(media_types::OCI_MANIFEST, d.clone(), size)
        }
        _ => layout.root().map_err(lerr)?,
    };
    let (mut desc, mut bytes) = read_document(&layout, &top).map_err(lerr)?;
    if media_types::is_index(&desc.media_type) {
        let index: Index = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("index {} does not parse: {e}", desc.digest)))?;
        let chosen = index.manifest_for(platform).map_err(|available| {
            bad(format!(
                "the index has no {platform} image; it has: {}. Choose one with --platform",
                available.join(", ")
            ))
        })?;
        (desc, bytes) = read_document(&layout, chosen).map_err(lerr)?;
    }
    if !media_types::is_manifest(&desc.media_type) {
        return Err(bad(format!(
            "{} is a {:?}, not an image manifest or index",
            desc.digest, desc.media_type
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("manifest {} does not parse: {e}", desc.digest)))?;
    let raw = layout
        .read_blob(&manifest.config, MAX_CONFIG)
        .map_err(lerr)?;
    let config: ImageConfig = serde_json::from_slice(&raw).map_err(|e| {
        bad(format!(
            "config {} does not parse: {e}",
            manifest.config.digest
        ))
    })?;
    if !config.os.is_empty()
        && (config.os != platform.os || config.architecture != platform.architecture)
    {
        return Err(bad(format!(
            "the image is {}/{}, not {platform}: choose --platform {}/{} or another image",
            config.os, config.architecture, config.os, config.architecture
        )));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(bad(format!(
            "manifest names {} layers but the config lists {} diff ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(manifest.layers.len());
    for (d, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let path = layout.blob_path(&d.digest);
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == d.size) {
            return Err(bad(format!(
                "layer {} is missing from the layout (or has the wrong size)",
                d.digest
            )));
        }
        layers.push(BaseLayer {
            descriptor: d.clone(),
            diff_id: diff_id.clone(),
            source: Arc::new(FileBlob { path }) as Arc<dyn BlobSource>,
        });
    }
    let shown = match reference {
        LayoutRef::Default => format!("oci-layout://{}", dir.display()),
        LayoutRef::Tag(t) => format!("oci-layout://{}:{t}", dir.display()),
        LayoutRef::Digest(d) => format!("oci-layout://{}@{d}", dir.display()),
    };
    Ok(BaseImage {
        reference: shown,
        digest: desc.digest,
        config,
        layers,
    })
}

/// A manifest or index read whole and verified, with its media type (the descriptor's, else
/// the document's own `mediaType`).
fn read_document(
    layout: &OciLayout,
    desc: &Descriptor,
) -> Result<(Descriptor, Bytes), crate::layout::LayoutError> {
    let bytes = layout.read_blob(desc, MAX_MANIFEST_SIZE)?;
    let own = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string));
    let mut d = desc.clone();
    if let Some(mt) = own.filter(|m| !m.is_empty()) {
        d.media_type = mt;
    }
    Ok((d, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Encoded, Format};

    /// A layout whose `index.json` tags an index (`v1`) of an amd64 and an arm64 image, each
    /// one fake layer.
    fn two_platform_layout(dir: &Path) -> (crate::digest::Digest, crate::digest::Digest) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let put = |bytes: &[u8]| {
            let d = crate::digest::Digest::of(bytes);
            std::fs::write(blobs.join(d.hex()), bytes).unwrap();
            d
        };
        let mut entries = vec![];
        let mut manifests = vec![];
        for arch in ["amd64", "arm64"] {
            let layer = format!("layer for {arch}").into_bytes();
            let layer_d = put(&layer);
            let mut config = ImageConfig {
                architecture: arch.into(),
                os: "linux".into(),
                ..Default::default()
            };
            config.rootfs.diff_ids = vec![layer_d.clone()];
            let config = Encoded::new(&config, media_types::OCI_CONFIG);
            put(&config.bytes);
            let m = Manifest::new(
                Format::Oci,
                config.descriptor(),
                vec![Descriptor::new(
                    media_types::OCI_LAYER_GZIP,
                    layer_d,
                    layer.len() as u64,
                )],
            )
            .encode();
            put(&m.bytes);
            manifests.push(m.digest.clone());
            let mut d = m.descriptor();
            d.platform = Platform::parse(&format!("linux/{arch}"));
            entries.push(d);
        }
        let index = Index::new(Format::Oci, entries).encode();
        put(&index.bytes);
        let mut top = index.descriptor();
        top.annotations
            .insert(crate::layout::REF_NAME_ANNOTATION.into(), "v1".into());
        let index_json = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
        std::fs::write(dir.join("index.json"), index_json.to_string()).unwrap();
        (manifests[0].clone(), manifests[1].clone())
    }

    #[test]
    fn platforms_are_picked_from_an_index() {
        let dir = tempfile::tempdir().unwrap();
        let (amd64, arm64) = two_platform_layout(dir.path());
        let tag = LayoutRef::Tag("v1".into());
        let arm = Platform::parse("linux/arm64").unwrap();
        let img = read_layout_image("base", dir.path(), &tag, &arm).unwrap();
        assert_eq!(img.digest, arm64);
        assert_eq!(img.config.architecture, "arm64");
        assert_eq!(img.layers.len(), 1);
        let img = read_layout_image(
            "base",
            dir.path(),
            &LayoutRef::Default,
            &Platform::linux_amd64(),
        )
        .unwrap();
        assert_eq!(img.digest, amd64);
        // A manifest by digest.
        let img = read_layout_image(
            "base",
            dir.path(),
            &LayoutRef::Digest(amd64.clone()),
            &Platform::linux_amd64(),
        )
        .unwrap();
        assert_eq!(img.config.architecture, "amd64");
        let e = read_layout_image("base", dir.path(), &LayoutRef::Digest(amd64), &arm).unwrap_err();
        assert!(e.to_string().contains("not linux/arm64"), "{e}");

        let s390x = Platform::parse("linux/s390x").unwrap();
        let e = read_layout_image("base", dir.path(), &tag, &s390x).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("linux/amd64, linux/arm64"), "{msg}");
        assert!(msg.contains("build context \"base\""), "{msg}");
        let e =
            read_layout_image("base", dir.path(), &LayoutRef::Tag("v2".into()), &arm).unwrap_err();
        assert!(e.to_string().contains("no image tagged 'v2'"), "{e}");
        let e = read_layout_image("base", &dir.path().join("nope"), &tag, &arm).unwrap_err();
        assert!(e.to_string().contains("no OCI image layout"), "{e}");
    }
}
