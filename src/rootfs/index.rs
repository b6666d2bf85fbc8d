//! A layer's index: what each tar header of the layer says (path, type, mode, owner, symlink
//! target; whiteouts and opaque markers), plus the bytes of `/etc/passwd` and `/etc/group`
//! when the layer holds them. Read in one streamed pass over the layer and kept on disk, one
//! JSON line per entry, under the cache directory by layer digest (written to a temporary name
//! and renamed), so a rebuild applies a base without downloading it again.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{Kind, MAX_USER_FILE, Meta, RootFs, USER_FILES, UserFile};
use crate::blob::Blob;
use crate::layerfs::{LayerFsError, LayerStore, LayerTar};

/// Bumped when the record format changes (older files are then ignored).
const VERSION: &str = "v1";

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// Path, relative, cleaned.
    p: String,
    /// `d` directory, `f` file, `l` symlink, `s` special, `w` whiteout, `o` opaque.
    k: char,
    #[serde(default)]
    m: u32,
    #[serde(default)]
    u: u32,
    #[serde(default)]
    g: u32,
    /// Symlink target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    l: Option<String>,
    /// A user file's bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
}

/// Apply `layers` (bottom first) of `image` over `fs`, each from its index on disk under
/// `cache` when there, else read from the layer (and indexed there).
pub(crate) fn apply_layers(
    fs: &mut RootFs,
    rt: &Handle,
    store: &LayerStore,
    layers: &[Blob],
    image: &str,
    cache: Option<&Path>,
) -> Result<(), LayerFsError> {
    for layer in layers {
        let file = cache.map(|dir| {
            dir.join(format!(
                "{}-{VERSION}.jsonl",
                layer.descriptor.digest.to_string().replace(':', "-")
            ))
        });
        if let Some(f) = &file
            && apply_cached(fs, f).is_ok()
        {
            continue;
        }
        apply_read(fs, rt, store, layer, image, file.as_deref())?;
    }
    Ok(())
}

/// Apply a cached index; any error (missing, truncated, unparsable) means "read the layer".
fn apply_cached(fs: &mut RootFs, file: &Path) -> std::io::Result<()> {
    let r = BufReader::new(File::open(file)?);
    let mut records = Vec::new();
    let mut complete = false;
    for line in r.lines() {
        let line = line?;
        if line == "end" {
            complete = true;
            break;
        }
        records.push(serde_json::from_str::<Record>(&line).map_err(std::io::Error::other)?);
    }
    if !complete {
        return Err(std::io::Error::other("truncated index"));
    }
    fs.begin_layer();
    for rec in records {
        apply(fs, rec);
    }
    Ok(())
}

fn apply_read(
    fs: &mut RootFs,
    rt: &Handle,
    store: &LayerStore,
    layer: &Blob,
    image: &str,
    file: Option<&Path>,
) -> Result<(), LayerFsError> {
    let read_err = |source| LayerFsError::Read {
        image: image.to_string(),
        layer: layer.descriptor.digest.clone(),
        source,
    };
    let mut out = match file {
        Some(f) => Some(Spooled::create(f).map_err(|source| LayerFsError::Io {
            action: "write the layer index",
            path: f.display().to_string(),
            source,
        })?),
        None => None,
    };
    fs.begin_layer();
    let path = store.local(rt, layer, image)?;
    let d = &layer.descriptor;
    let mut r: LayerTar = crate::layerfs::open_layer(&path, &d.media_type, image, &d.digest)?;
    let mut ar = tar::Archive::new(&mut r as &mut dyn Read);
    for entry in ar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let Some(rec) = record(&mut entry).map_err(read_err)? else {
            continue;
        };
        if let Some(o) = &mut out {
            o.line(&rec);
        }
        apply(fs, rec);
    }
    if let Some(o) = out {
        o.commit();
    }
    Ok(())
}

/// The record of one tar entry; `None` for entries that are no path (pax metadata).
fn record<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Option<Record>> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let raw = entry.path_bytes().into_owned();
    let name = String::from_utf8(raw).map_err(|e| {
        bad(format!(
            "entry {:?} has a name that is not UTF-8",
            e.as_bytes()
        ))
    })?;
    let path = crate::layerfs::clean_path(&name)
        .ok_or_else(|| bad(format!("entry {name:?} leaves the root")))?;
    let (dir, base) = match path.rsplit_once('/') {
        Some((d, b)) => (d, b),
        None => ("", path.as_str()),
    };
    let rec = |k: char, p: String| Record {
        p,
        k,
        m: 0,
        u: 0,
        g: 0,
        l: None,
        c: None,
    };
    if base == ".wh..wh..opq" {
        return Ok(Some(rec('o', dir.to_string())));
    }
    if let Some(hidden) = base.strip_prefix(".wh.") {
        let p = if dir.is_empty() {
            hidden.to_string()
        } else {
            format!("{dir}/{hidden}")
        };
        return Ok(Some(rec('w', p)));
    }
    let h = entry.header();
    let t = h.entry_type();
    let k = if t.is_dir() {
        'd'
    } else if t.is_file() || t.is_contiguous() || t.is_hard_link() {
        'f'
    } else if t.is_symlink() {
        'l'
    } else if t.is_character_special() || t.is_block_special() || t.is_fifo() {
        's'
    } else {
        return Ok(None);
    };
    let id = |v: std::io::Result<u64>, what: &str| -> std::io::Result<u32> {
        v.ok()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("entry {name:?} has an invalid {what}")))
    };
    let mut r = rec(k, path.clone());
    r.m = h
        .mode()
        .map_err(|_| bad(format!("entry {name:?} has an invalid mode")))?
        & 0o7777;
    r.u = id(h.uid(), "uid")?;
    r.g = id(h.gid(), "gid")?;
    if k == 'l' {
        let target = entry
            .link_name_bytes()
            .and_then(|l| String::from_utf8(l.into_owned()).ok())
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad(format!("symlink {name:?} has no valid target")))?;
        r.l = Some(target);
    }
    if k == 'f'
        && !t.is_hard_link()
        && USER_FILES.contains(&path.as_str())
        && entry.size() <= MAX_USER_FILE
    {
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes)?;
        r.c = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    Ok(Some(r))
}

fn apply(fs: &mut RootFs, rec: Record) {
    let comps: Vec<&str> = rec.p.split('/').filter(|c| !c.is_empty()).collect();
    let kind = match rec.k {
        'w' => return fs.whiteout(&comps),
        'o' => return fs.opaque(&comps),
        'd' => Kind::Dir,
        'l' => Kind::Symlink(rec.l.clone().unwrap_or_default().into()),
        's' => Kind::Special,
        _ => Kind::File,
    };
    let content = rec
        .c
        .as_deref()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .map(|b| UserFile::Bytes(Arc::from(b)));
    fs.set(
        &comps,
        Meta {
            kind,
            mode: rec.m,
            uid: rec.u,
            gid: rec.g,
        },
        content,
    );
}

/// An index being written: a temporary file renamed into place when whole. Failing to write
/// the cache never fails the build; the layer is simply read again next time.
struct Spooled {
    out: Option<BufWriter<tempfile::NamedTempFile>>,
    path: PathBuf,
}

impl Spooled {
    fn create(path: &Path) -> std::io::Result<Spooled> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        Ok(Spooled {
            out: Some(BufWriter::new(tmp)),
            path: path.to_path_buf(),
        })
    }

    fn line(&mut self, rec: &Record) {
        let ok = self.out.as_mut().is_some_and(|o| {
            serde_json::to_writer(&mut *o, rec).is_ok() && o.write_all(b"\n").is_ok()
        });
        if !ok {
            self.out = None;
        }
    }

    fn commit(mut self) {
        let Some(mut o) = self.out.take() else { return };
        if o.write_all(b"end\n").is_err() {
            return;
        }
        if let Ok(tmp) = o.into_inner()
            && let Err(e) = tmp.persist(&self.path)
        {
            tracing::debug!("layer index: cannot write {}: {e}", self.path.display());
        }
    }
}
