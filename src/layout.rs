//! An OCI image layout directory (image-spec `image-layout.md`) as a [`Destination`]:
//! `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Blobs are streamed to a temporary
//! file, hashed while written, verified, and renamed into place; blobs already present are
//! skipped. `index.json` is rewritten atomically, one entry per `org.opencontainers.image.ref.name`.
//!
//! Several writers in one process are serialised; two processes updating the same
//! `index.json` at once may lose one's entry (blobs are always safe).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::blob::BlobSource;
use crate::dest::{DestError, Destination, Progress};
use crate::digest::{Digest, Hasher};
use crate::image::{Descriptor, media_types};

/// The annotation naming an index entry (its tag).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Why an OCI layout operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A file system operation failed.
    #[error("OCI layout: cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The directory holds something that is not a valid OCI layout.
    #[error("{} is not a valid OCI image layout: {reason}; use an empty directory or a layout written by an OCI tool", path.display())]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A source directory that holds no OCI layout.
    #[error("there is no OCI image layout at {}: {} is missing; check the path (ocipush, skopeo and umoci write layouts)", dir.display(), file)]
    NotALayout {
        /// The directory.
        dir: PathBuf,
        /// The file that is missing.
        file: &'static str,
    },
    /// A blob's bytes did not match its descriptor.
    #[error("OCI layout {}: blob {digest} was not stored: {reason}; the source changed or is corrupt, rebuild it", dir.display())]
    Mismatch {
        /// The layout.
        dir: PathBuf,
        /// The expected digest.
        digest: Digest,
        /// What differed.
        reason: String,
    },
    /// A blob's source could not be read.
    #[error("OCI layout: cannot read the source of blob {digest}: {source}")]
    Source {
        /// The blob.
        digest: Digest,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// No index entry carries the tag.
    #[error("OCI layout {}: no image tagged '{tag}' in index.json", dir.display())]
    TagNotFound {
        /// The layout.
        dir: PathBuf,
        /// The tag asked for.
        tag: String,
    },
    /// A reference that cannot name an index entry.
    #[error("OCI layout: invalid reference '{reference}': {reason}")]
    BadReference {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// An OCI image layout directory, optionally with the tag manifests are put under.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
    tag: Option<String>,
    index_lock: tokio::sync::Mutex<()>,
}

impl OciLayout {
    /// Open the layout at `dir`, creating it (directory, `oci-layout`, empty `index.json`,
    /// `blobs/sha256`) when needed. Manifests put by digest are indexed under `tag` when given.
    pub fn open_or_create(
        dir: impl Into<PathBuf>,
        tag: Option<String>,
    ) -> Result<OciLayout, LayoutError> {
        let dir = dir.into();
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        let marker = dir.join("oci-layout");
        match fs::read(&marker) {
            Ok(bytes) => {
                let v: Value =
                    serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
                        path: marker.clone(),
                        reason: e.to_string(),
                    })?;
                if !v.get("imageLayoutVersion").is_some_and(Value::is_string) {
                    return Err(LayoutError::Invalid {
                        path: marker,
                        reason: "no imageLayoutVersion".into(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                write_atomic(&dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            }
            Err(e) => {
                return Err(LayoutError::Io {
                    action: "read",
                    path: marker,
                    source: e,
                });
            }
        }
        let index = dir.join("index.json");
        if !index.exists() {
            let empty =
                json!({"schemaVersion": 2, "mediaType": media_types::OCI_INDEX, "manifests": []});
            write_atomic(&dir, &index, &to_json(&empty))?;
        }
        if let Some(t) = &tag {
            check_ref_name(t)?;
        }
        Ok(OciLayout {
            dir,
            tag,
            index_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Open an existing layout for reading (nothing is created); `tag` as in
    /// [`OciLayout::open_or_create`].
    pub fn open_existing(
        dir: impl Into<PathBuf>,
        tag: Option<String>,
    ) -> Result<OciLayout, LayoutError> {
        let dir = dir.into();
        for f in ["oci-layout", "index.json"] {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(LayoutError::NotALayout { dir, file: f });
            }
        }
        OciLayout::open_or_create(dir, tag)
    }

    /// The image the layout's tag names (`latest` when none was given; the only entry of
    /// `index.json` when it has exactly one and no tag was given).
    pub fn root(&self) -> Result<Descriptor, LayoutError> {
        if let Some(t) = &self.tag {
            return self.resolve(t);
        }
        if let Ok(d) = self.resolve("latest") {
            return Ok(d);
        }
        let index = self.read_index()?;
        let path = self.dir.join("index.json");
        match manifests(&index, &path)?.as_slice() {
            [only] => serde_json::from_value(only.clone()).map_err(|e| LayoutError::Invalid {
                path,
                reason: e.to_string(),
            }),
            _ => Err(LayoutError::TagNotFound {
                dir: self.dir.clone(),
                tag: "latest".into(),
            }),
        }
    }

    /// A small blob (a manifest, a config) read whole and verified; refused above `limit` bytes.
    pub fn read_blob(&self, desc: &Descriptor, limit: u64) -> Result<Bytes, LayoutError> {
        let path = self.blob_path(&desc.digest);
        if desc.size > limit {
            return Err(self.mismatch(desc, format!("it is larger than {limit} bytes")));
        }
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let digest = Digest::of(&bytes);
        if digest != desc.digest || bytes.len() as u64 != desc.size {
            return Err(self.mismatch(
                desc,
                format!("the file holds {} bytes hashing to {digest}", bytes.len()),
            ));
        }
        Ok(Bytes::from(bytes))
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// The index entry tagged `tag`.
    pub fn resolve(&self, tag: &str) -> Result<Descriptor, LayoutError> {
        let index = self.read_index()?;
        let path = self.dir.join("index.json");
        for m in manifests(&index, &path)? {
            if m.get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(Value::as_str)
                == Some(tag)
            {
                return serde_json::from_value(m.clone()).map_err(|e| LayoutError::Invalid {
                    path: path.clone(),
                    reason: format!("entry for '{tag}': {e}"),
                });
            }
        }
        Err(LayoutError::TagNotFound {
            dir: self.dir.clone(),
            tag: tag.to_string(),
        })
    }

    fn read_index(&self) -> Result<Value, LayoutError> {
        let path = self.dir.join("index.json");
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| LayoutError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        manifests(&v, &path)?;
        Ok(v)
    }

    fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    async fn put_blob_inner(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), LayoutError> {
        if self.has_blob(&blob.digest, blob.size) {
            progress(blob.size);
            return Ok(());
        }
        let target = self.blob_path(&blob.digest);
        let blobs = target.parent().unwrap_or(&self.dir).to_path_buf();
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&blobs)
            .map_err(io_err("create a temporary file in", &blobs))?;
        let std_file = tmp
            .as_file()
            .try_clone()
            .map_err(io_err("open", tmp.path()))?;
        let mut file = tokio::fs::File::from_std(std_file);
        let source_err = |source| LayoutError::Source {
            digest: blob.digest.clone(),
            source,
        };
        let mut stream = source.open().await.map_err(source_err)?;
        let mut hasher = Hasher::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(source_err)?;
            hasher.update(&chunk);
            if hasher.len() > blob.size {
                return Err(self.mismatch(
                    blob,
                    format!("the source gave more than the expected {} bytes", blob.size),
                ));
            }
            file.write_all(&chunk)
                .await
                .map_err(io_err("write", tmp.path()))?;
            progress(hasher.len());
        }
        file.flush().await.map_err(io_err("write", tmp.path()))?;
        file.sync_all().await.map_err(io_err("sync", tmp.path()))?;
        drop(file);
        let (digest, size) = hasher.finish();
        if size != blob.size {
            return Err(self.mismatch(
                blob,
                format!(
                    "the source gave {size} bytes, the descriptor says {}",
                    blob.size
                ),
            ));
        }
        if digest != blob.digest {
            return Err(self.mismatch(blob, format!("its bytes hash to {digest}")));
        }
        if !self.has_blob(&blob.digest, blob.size) {
            tmp.persist(&target).map_err(|e| LayoutError::Io {
                action: "rename a blob into",
                path: target.clone(),
                source: e.error,
            })?;
        }
        Ok(())
    }

    fn mismatch(&self, blob: &Descriptor, reason: String) -> LayoutError {
        LayoutError::Mismatch {
            dir: self.dir.clone(),
            digest: blob.digest.clone(),
            reason,
        }
    }

    async fn put_manifest_inner(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Digest, LayoutError> {
        let digest = Digest::of(&bytes);
        let ref_name = match reference.parse::<Digest>() {
            Ok(d) if d == digest => self.tag.clone(),
            Ok(d) => {
                return Err(LayoutError::Mismatch {
                    dir: self.dir.clone(),
                    digest: d,
                    reason: format!("the manifest's bytes hash to {digest}"),
                });
            }
            Err(_) => {
                check_ref_name(reference)?;
                Some(reference.to_string())
            }
        };
        let path = self.blob_path(&digest);
        if !self.has_blob(&digest, bytes.len() as u64) {
            write_atomic(&self.dir, &path, &bytes)?;
        }
        let mut entry = Descriptor::new(media_type, digest.clone(), bytes.len() as u64);
        if let Some(name) = &ref_name {
            entry
                .annotations
                .insert(REF_NAME_ANNOTATION.to_string(), name.clone());
        }
        let entry = serde_json::to_value(&entry).map_err(|e| LayoutError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;

        let _guard = self.index_lock.lock().await;
        let mut index = self.read_index()?;
        let index_path = self.dir.join("index.json");
        let Some(list) = index.get_mut("manifests").and_then(Value::as_array_mut) else {
            return Err(LayoutError::Invalid {
                path: index_path,
                reason: "no manifests array".into(),
            });
        };
        let name_of = |m: &Value| {
            m.get("annotations")
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        match &ref_name {
            Some(name) => list.retain(|m| name_of(m).as_deref() != Some(name.as_str())),
            None => list.retain(|m| {
                !(name_of(m).is_none()
                    && m.get("digest").and_then(Value::as_str) == Some(digest.as_str()))
            }),
        }
        list.push(entry);
        write_atomic(&self.dir, &index_path, &to_json(&index))?;
        Ok(digest)
    }
}

fn manifests<'a>(index: &'a Value, path: &Path) -> Result<&'a Vec<Value>, LayoutError> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| LayoutError::Invalid {
            path: path.to_path_buf(),
            reason: "index.json has no manifests array".into(),
        })
}

fn check_ref_name(name: &str) -> Result<(), LayoutError> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(LayoutError::BadReference {
            reference: name.to_string(),
            reason: "a tag must be non-empty, without spaces or control characters".into(),
        });
    }
    Ok(())
}

fn to_json(v: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Write `bytes` to `path` through a temporary file in `path`'s directory and a rename.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    let parent = path.parent().unwrap_or(dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(io_err("create a temporary file in", parent))?;
    tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err("sync", tmp.path()))?;
    tmp.persist(path).map_err(|e| LayoutError::Io {
        action: "rename into",
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[async_trait::async_trait]
impl Destination for OciLayout {
    fn describe(&self) -> String {
        match &self.tag {
            Some(t) => format!("oci:{}:{t}", self.dir.display()),
            None => format!("oci:{}", self.dir.display()),
        }
    }

    async fn blobs_exist(&self, blobs: &[Descriptor]) -> Result<Vec<bool>, DestError> {
        Ok(blobs
            .iter()
            .map(|b| self.has_blob(&b.digest, b.size))
            .collect())
    }

    async fn put_blob(
        &self,
        blob: &Descriptor,
        source: &dyn BlobSource,
        progress: Progress<'_>,
    ) -> Result<(), DestError> {
        self.put_blob_inner(blob, source, progress)
            .await
            .map_err(DestError::new)
    }

    async fn put_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<Option<Digest>, DestError> {
        self.put_manifest_inner(reference, media_type, bytes)
            .await
            .map(Some)
            .map_err(DestError::new)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::blob::{BytesBlob, FileBlob};
    use crate::layers::{Compression, EntryMeta, LayerOptions, LayerWriter, Spool};

    fn no_progress(_: u64) {}

    /// A one-layer image (a file `hello.txt` and a directory `etc`), pushed into `layout` as `tag`.
    async fn push_image(layout: &OciLayout, spool: &Spool, tag: &str, text: &str) -> Digest {
        let mut w = LayerWriter::new(
            spool,
            &LayerOptions {
                compression: Compression::Gzip { level: 6 },
                epoch: 0,
                threads: 0,
            },
        )
        .unwrap();
        w.add_dir("etc", EntryMeta::root(0o755)).unwrap();
        w.add_file(
            "hello.txt",
            EntryMeta::root(0o644),
            text.len() as u64,
            &mut text.as_bytes(),
        )
        .unwrap();
        let layer = w.finish().unwrap();
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        });
        let config = Bytes::from(serde_json::to_vec(&config).unwrap());
        let config_desc = Descriptor::new(
            media_types::OCI_CONFIG,
            Digest::of(&config),
            config.len() as u64,
        );
        let layer_desc = layer.descriptor(true);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_MANIFEST,
            "config": config_desc,
            "layers": [layer_desc],
        });
        let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let exist = layout
            .blobs_exist(&[layer_desc.clone(), config_desc.clone()])
            .await
            .unwrap();
        assert_eq!(exist, [false, false]);
        layout
            .put_blob(
                &layer_desc,
                &FileBlob {
                    path: layer.path.clone(),
                },
                &no_progress,
            )
            .await
            .unwrap();
        layout
            .put_blob(&config_desc, &BytesBlob(config), &no_progress)
            .await
            .unwrap();
        assert_eq!(
            layout
                .blobs_exist(&[layer_desc, config_desc])
                .await
                .unwrap(),
            [true, true]
        );
        layout
            .put_manifest(tag, media_types::OCI_MANIFEST, manifest)
            .await
            .unwrap()
            .unwrap()
    }

    fn ref_names(layout: &OciLayout) -> Vec<String> {
        let index = layout.read_index().unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn index_entries_are_added_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("spool")).unwrap();
        let layout = OciLayout::open_or_create(tmp.path().join("oci"), None).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("oci/oci-layout")).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let d1 = push_image(&layout, &spool, "v1", "one").await;
        let d2 = push_image(&layout, &spool, "v2", "two").await;
        assert_eq!(layout.resolve("v1").unwrap().digest, d1);
        assert_eq!(layout.resolve("v2").unwrap().digest, d2);
        let d1b = push_image(&layout, &spool, "v1", "one again").await;
        assert_ne!(d1, d1b);
        assert_eq!(ref_names(&layout), ["v2", "v1"]);
        assert_eq!(layout.resolve("v1").unwrap().digest, d1b);
        assert!(fs::read(layout.blob_path(&d1)).is_ok());
        assert!(matches!(
            layout.resolve("nope"),
            Err(LayoutError::TagNotFound { .. })
        ));

        // Reopening keeps everything; a put by digest uses the layout's tag.
        let tagged =
            OciLayout::open_or_create(tmp.path().join("oci"), Some("latest".into())).unwrap();
        let bytes = fs::read(tagged.blob_path(&d2)).unwrap();
        let got = tagged
            .put_manifest(d2.as_str(), media_types::OCI_MANIFEST, Bytes::from(bytes))
            .await
            .unwrap();
        assert_eq!(got, Some(d2.clone()));
        assert_eq!(tagged.resolve("latest").unwrap().digest, d2);
        assert_eq!(ref_names(&tagged), ["v2", "v1", "latest"]);
        assert!(tagged.describe().ends_with(":latest"));
    }

    #[tokio::test]
    async fn wrong_bytes_are_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = OciLayout::open_or_create(tmp.path(), None).unwrap();
        let desc = Descriptor::new(media_types::OCI_LAYER_TAR, Digest::of(b"expected"), 8);
        let e = layout
            .put_blob(
                &desc,
                &BytesBlob(Bytes::from_static(b"tampered")),
                &no_progress,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.downcast_ref::<LayoutError>(),
                Some(LayoutError::Mismatch { .. })
            ),
            "{e}"
        );
        let long = Descriptor::new(media_types::OCI_LAYER_TAR, Digest::of(b"x"), 1);
        assert!(
            layout
                .put_blob(&long, &BytesBlob(Bytes::from_static(b"xx")), &no_progress)
                .await
                .is_err()
        );
        assert_eq!(
            fs::read_dir(tmp.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        let _: Arc<dyn Destination> = Arc::new(layout);
        fs::write(tmp.path().join("oci-layout"), "garbage").unwrap();
        assert!(matches!(
            OciLayout::open_or_create(tmp.path(), None),
            Err(LayoutError::Invalid { .. })
        ));
    }

    #[tokio::test]
    async fn umoci_unpacks_the_layout() {
        let umoci = ["/usr/bin/umoci", "/usr/local/bin/umoci"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(umoci) = umoci else {
            assert!(
                std::env::var_os("CI").is_none(),
                "umoci is not installed but CI is set"
            );
            eprintln!("skipping: umoci is not installed");
            return;
        };
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("spool")).unwrap();
        let dir = tmp.path().join("oci");
        let layout = OciLayout::open_or_create(&dir, None).unwrap();
        push_image(&layout, &spool, "v1", "hello from ocipush\n").await;
        let bundle = tmp.path().join("bundle");
        let is_root =
            std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap()) == 0;
        let mut cmd = std::process::Command::new(umoci);
        cmd.arg("unpack");
        if !is_root {
            cmd.arg("--rootless");
        }
        let out = cmd
            .arg("--image")
            .arg(format!("{}:v1", dir.display()))
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            fs::read_to_string(bundle.join("rootfs/hello.txt")).unwrap(),
            "hello from ocipush\n"
        );
        assert!(bundle.join("rootfs/etc").is_dir());
    }
}
