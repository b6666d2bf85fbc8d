//! `--metadata-file FILE`: what a push produced, as JSON for CI, with the keys `docker buildx
//! build --metadata-file` writes (docker/buildx `build/build.go` and BuildKit's
//! `exporter/containerimage/exptypes`: `containerimage.digest`, `containerimage.descriptor`,
//! `containerimage.config.digest`, `image.name`), plus `ocipush.platforms`: each platform's
//! manifest and config digest (buildx has no key for them). Written to a temporary file next to
//! FILE and renamed, so a reader never sees half of it.

use std::path::Path;

use ocipush::pipeline::{Pushed, Target};
use serde_json::{Value, json};

/// The metadata of `pushed` to `target` under `references`.
pub(crate) fn document(pushed: &Pushed, target: &Target, references: &[String]) -> Value {
    let (media_type, size) = match (&pushed.index, pushed.images.first()) {
        (Some(index), _) => (index.media_type.clone(), index.bytes.len()),
        (None, Some((_, image))) => (
            image.manifest.media_type.clone(),
            image.manifest.bytes.len(),
        ),
        (None, None) => (String::new(), 0),
    };
    let names: Vec<String> = references
        .iter()
        .map(|r| reference_name(target, r))
        .collect();
    let mut doc = json!({
        "containerimage.digest": pushed.digest.as_str(),
        "containerimage.descriptor": {
            "mediaType": media_type,
            "digest": pushed.digest.as_str(),
            "size": size,
        },
        "image.name": names.join(","),
        "ocipush.platforms": pushed.images.iter().map(|(platform, image)| {
            (platform.to_string(), json!({
                "digest": image.manifest.digest.as_str(),
                "config.digest": image.config.digest.as_str(),
            }))
        }).collect::<serde_json::Map<String, Value>>(),
    });
    if let (None, [(_, image)]) = (&pushed.index, pushed.images.as_slice()) {
        doc["containerimage.config.digest"] = json!(image.config.digest.as_str());
    }
    doc
}

/// `target` under `reference` (a tag, or a digest after `@`).
fn reference_name(target: &Target, reference: &str) -> String {
    let sep = if reference.contains(':') { '@' } else { ':' };
    match target {
        Target::Registry(r) => format!("{}/{}{sep}{reference}", r.registry, r.repository),
        Target::Layout { dir, .. } => format!("oci:{}{sep}{reference}", dir.display()),
    }
}

/// Write `doc` to `path` (temporary file + rename).
pub(crate) fn write(path: &Path, doc: &Value) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fail = |e: std::io::Error| format!("cannot write --metadata-file {}: {e}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".ocipush-metadata-")
        .tempfile_in(dir)
        .map_err(fail)?;
    let text = serde_json::to_string_pretty(doc).unwrap_or_default();
    std::io::Write::write_all(&mut tmp, format!("{text}\n").as_bytes()).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}
