//! The one guard for every tar ocipush reads from someone else — ADD's archives
//! ([`super::archive`]) and image layers (`crate::layerfs`, both of its passes). Whatever the
//! archive declares, memory and work stay bounded and nothing is silently reinterpreted:
//!
//! * [`TarGuard`] follows the stream's header blocks *before* the tar crate sees them, and fails
//!   on an extension header (GNU long name / long link, PAX records) larger than
//!   [`MAX_EXTENSION_HEADER`] (the tar crate reads those whole into memory: a compressed "zip
//!   bomb" could declare gigabytes), on more than [`MAX_ENTRIES`] entries, and on a GNU sparse
//!   map longer than [`MAX_SPARSE_BLOCKS`] extension blocks (the tar crate keeps one record per
//!   sparse block).
//! * Per entry: a name or link target must be UTF-8 without NUL and at most [`MAX_PATH`] bytes
//!   ([`path`], [`link_target`]); mode, owner and device numbers must parse ([`mode`],
//!   [`owner`], [`device`]). An owner that does not parse or does not fit in 32 bits — in the
//!   header or in a PAX `uid`/`gid` record — is refused, never mapped to 0.
//!
//! Per-entry checks return the reason as text; each caller wraps it in its own typed error
//! naming the archive or layer and the entry.

use std::io::{self, Read};

/// The largest GNU long name / long link or PAX extended header accepted.
pub(crate) const MAX_EXTENSION_HEADER: u64 = 1024 * 1024;

/// The most entries one tar may hold (extension headers not counted). Real layers hold at most
/// a few hundred thousand; callers keep a record per entry.
pub(crate) const MAX_ENTRIES: u64 = 1 << 20;

/// The longest entry name or link target, in bytes (Linux's `PATH_MAX`).
pub(crate) const MAX_PATH: usize = 4096;

/// The most GNU sparse extension blocks after one header (21 sparse records each).
pub(crate) const MAX_SPARSE_BLOCKS: u64 = 1024;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A reader over a tar stream that follows its header blocks and fails (`InvalidData`) on an
/// oversized extension header, too many entries or an oversized sparse map, before the tar
/// crate buffers anything. Tracking stops (everything passes through) only at a header whose
/// size field cannot be read — the tar crate then fails on that header itself.
pub(crate) struct TarGuard<R> {
    inner: R,
    /// Bytes of entry data (with padding) before the next header block.
    skip: u64,
    /// The header block being collected.
    header: Vec<u8>,
    /// The data of a PAX `x` header being collected (for its `size=` record).
    pax: Option<Vec<u8>>,
    /// A `size=` from the last PAX header, for the next entry.
    pax_size: Option<u64>,
    /// GNU sparse extension blocks still expected, and the data size to skip after them.
    sparse: Option<(u64, u64)>,
    /// Entries seen.
    entries: u64,
    /// Following the stream.
    tracking: bool,
}

impl<R: Read> TarGuard<R> {
    /// Guard `inner`, the uncompressed tar stream.
    pub(crate) fn new(inner: R) -> Self {
        TarGuard {
            inner,
            skip: 0,
            header: Vec::with_capacity(512),
            pax: None,
            pax_size: None,
            sparse: None,
            entries: 0,
            tracking: true,
        }
    }

    /// Entries seen so far.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        while self.tracking && !data.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(data.len() as u64)) as usize;
                if let Some(pax) = self.pax.as_mut() {
                    pax.extend_from_slice(&data[..n]);
                }
                data = &data[n..];
                self.skip -= n as u64;
                if self.skip == 0
                    && let Some(pax) = self.pax.take()
                {
                    self.pax_size = pax_size(&pax);
                }
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() < 512 {
                continue;
            }
            let h = std::mem::take(&mut self.header);
            if let Some((blocks, size)) = self.sparse {
                // A GNU sparse extension block: 21 records, then the "more follow" flag.
                let more = h[504] != 0;
                if more && blocks + 1 > MAX_SPARSE_BLOCKS {
                    return Err(invalid(format!(
                        "a GNU sparse file lists more than {MAX_SPARSE_BLOCKS} extension blocks"
                    )));
                }
                if more {
                    self.sparse = Some((blocks + 1, size));
                } else {
                    self.sparse = None;
                    self.skip = size.div_ceil(512) * 512;
                }
                continue;
            }
            if h.iter().all(|&b| b == 0) {
                continue; // end-of-archive block
            }
            let kind = h[156];
            let Some(size) = header_size(&h[124..136]) else {
                self.tracking = false;
                break;
            };
            let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
            if extension && size > MAX_EXTENSION_HEADER {
                return Err(invalid(format!(
                    "an extended header (type '{}') declares {size} bytes, more than the \
                     {MAX_EXTENSION_HEADER}-byte limit",
                    kind as char
                )));
            }
            if !extension {
                self.entries += 1;
                if self.entries > MAX_ENTRIES {
                    return Err(invalid(format!(
                        "the archive has more than {MAX_ENTRIES} entries, more than any real \
                         image layer or archive"
                    )));
                }
            }
            let size = if extension {
                size
            } else {
                self.pax_size.take().unwrap_or(size)
            };
            if kind == b'S' && h[482] != 0 {
                // Old GNU sparse: extension blocks follow the header, then the stored data.
                self.sparse = Some((1, size));
                continue;
            }
            if kind == b'x' && size > 0 {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
            // Entry data is padded to whole blocks (skipped for every type, as the tar crate
            // does).
            self.skip = size.div_ceil(512) * 512;
            if self.skip == 0 {
                self.pax = None;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// A tar size field: octal (NUL/space terminated), or GNU base-256 (high bit set).
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// The `size=` record of PAX extended header data (`"<len> size=<n>\n"` records).
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|rec| {
        let (_, kv) = rec.split_once(' ')?;
        kv.strip_prefix("size=")?.trim().parse().ok()
    })
}

/// Checks a (UTF-8) entry name or link target: no NUL, at most [`MAX_PATH`] bytes.
pub(crate) fn check_path(p: &str) -> Result<(), String> {
    if p.contains('\0') {
        return Err("has a NUL byte in its name".into());
    }
    if p.len() > MAX_PATH {
        return Err(format!(
            "has a {}-byte name, longer than the {MAX_PATH}-byte limit",
            p.len()
        ));
    }
    Ok(())
}

/// An entry's name: UTF-8, checked by [`check_path`].
pub(crate) fn path(raw: &[u8]) -> Result<&str, String> {
    let p = std::str::from_utf8(raw).map_err(|_| "has a name that is not valid UTF-8")?;
    check_path(p)?;
    Ok(p)
}

/// An entry's link target, if it has one: UTF-8, checked by [`check_path`].
pub(crate) fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Option<String>, String> {
    let Some(raw) = entry.link_name_bytes() else {
        return Ok(None);
    };
    let target = String::from_utf8(raw.into_owned())
        .map_err(|_| "has a link target that is not valid UTF-8".to_string())?;
    if target.len() > MAX_PATH || target.contains('\0') {
        return Err(format!(
            "has a link target that is longer than {MAX_PATH} bytes or holds a NUL byte"
        ));
    }
    Ok(Some(target))
}

/// A numeric header field as Go's archive/tar reads it: a blank field (all NUL or space, as
/// some writers leave unused fields) is 0; anything else must parse.
fn numeric<T: Default>(
    h: &tar::Header,
    value: io::Result<T>,
    at: std::ops::Range<usize>,
    what: &str,
) -> Result<T, String> {
    match value {
        Ok(v) => Ok(v),
        Err(_) if h.as_bytes()[at].iter().all(|&b| b == 0 || b == b' ') => Ok(T::default()),
        Err(e) => Err(format!("has a corrupt {what} field ({e})")),
    }
}

/// The permission bits (`& 0o7777`) of an entry.
pub(crate) fn mode(h: &tar::Header) -> Result<u32, String> {
    numeric(h, h.mode(), 100..108, "mode").map(|m| m & 0o7777)
}

/// The owner of an entry: the header's uid and gid, overridden by PAX `uid`/`gid` records as Go's
/// archive/tar (and so Docker and BuildKit) reads them. A value that does not parse or does not
/// fit in 32 bits is refused.
pub(crate) fn owner<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<(u32, u32), String> {
    // The tar crate applies PAX uid/gid records it can parse and silently ignores the others:
    // look at the records themselves so a garbled one is refused rather than ignored.
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| format!("has unreadable PAX records ({e})"))?
    {
        for rec in pax {
            let rec = rec.map_err(|e| format!("has a malformed PAX record ({e})"))?;
            let key = rec.key_bytes();
            if key == b"uid" || key == b"gid" {
                let value = String::from_utf8_lossy(rec.value_bytes()).into_owned();
                let ok = value.parse::<u64>().is_ok_and(|v| u32::try_from(v).is_ok());
                if !ok {
                    return Err(format!(
                        "has a PAX {} record {value:?} that is not a 32-bit owner id",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
        }
    }
    let h = entry.header();
    let uid = numeric(h, h.uid(), 108..116, "uid")?;
    let gid = numeric(h, h.gid(), 116..124, "gid")?;
    match (u32::try_from(uid), u32::try_from(gid)) {
        (Ok(u), Ok(g)) => Ok((u, g)),
        _ => Err(format!(
            "has an owner {uid}:{gid} that does not fit in 32 bits"
        )),
    }
}

/// The device numbers of a character or block device (`(0, 0)` for a FIFO, whose fields Go's
/// archive/tar, and so Docker, ignores). A blank field (all NUL or space, as Python's tarfile
/// writes) reads as 0, the way Go's parser reads it.
pub(crate) fn device(h: &tar::Header, fifo: bool) -> Result<(u32, u32), String> {
    if fifo {
        return Ok((0, 0));
    }
    Ok((
        numeric(h, h.device_major(), 329..337, "device")?.unwrap_or(0),
        numeric(h, h.device_minor(), 337..345, "device")?.unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_fields_and_pax_records() {
        assert_eq!(header_size(b"00000001750\0"), Some(1000));
        assert_eq!(header_size(b"\0\0\0\0\0\0\0\0\0\0\0\0"), Some(0));
        assert_eq!(
            header_size(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(header_size(b"zzz\0\0\0\0\0\0\0\0\0"), None);
        assert_eq!(pax_size(b"20 path=a/b/c/d/e\n13 size=42\n\0\0"), Some(42));
        assert_eq!(pax_size(b"12 path=abc\n"), None);
    }

    fn header(kind: u8, size: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        h[156] = kind;
        h
    }

    #[test]
    fn extension_headers_past_the_limit_fail() {
        let mut h = header(b'x', MAX_EXTENSION_HEADER + 1);
        let mut r = TarGuard::new(&h[..]);
        let mut sink = Vec::new();
        let e = r.read_to_end(&mut sink).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // The same size on a regular file is fine (its data streams).
        h[156] = b'0';
        let mut r = TarGuard::new(&h[..]);
        r.read_to_end(&mut sink).unwrap();
    }

    #[test]
    fn entries_are_counted_and_sparse_maps_followed() {
        // Two files of 1 byte (one data block each), an extension header, a third file.
        let mut tar = Vec::new();
        for _ in 0..2 {
            tar.extend_from_slice(&header(b'0', 1));
            tar.extend_from_slice(&[7u8; 512]);
        }
        tar.extend_from_slice(&header(b'L', 3));
        tar.extend_from_slice(&[b'a'; 512]);
        tar.extend_from_slice(&header(b'0', 0));
        let mut r = TarGuard::new(&tar[..]);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.entries(), 3);

        // A sparse header announcing extension blocks, each saying "more follow".
        let mut s = header(b'S', 0);
        s[482] = 1;
        let mut more = [0u8; 512];
        more[504] = 1;
        let mut tar = s.to_vec();
        for _ in 0..MAX_SPARSE_BLOCKS + 1 {
            tar.extend_from_slice(&more);
        }
        let mut r = TarGuard::new(&tar[..]);
        let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("sparse"), "{e}");

        // A short sparse map, then a header the guard must see as a header again.
        let mut tar = s.to_vec();
        tar.extend_from_slice(&[0u8; 512]); // last extension block
        tar.extend_from_slice(&header(b'x', MAX_EXTENSION_HEADER + 1));
        let mut r = TarGuard::new(&tar[..]);
        let e = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(e.to_string().contains("extended header"), "{e}");
    }

    #[test]
    fn paths_are_bounded() {
        assert!(path(b"a/b").is_ok());
        assert!(path(b"a\xffb").unwrap_err().contains("UTF-8"));
        assert!(path(b"a\0b").unwrap_err().contains("NUL"));
        let long = "x".repeat(MAX_PATH + 1);
        assert!(path(long.as_bytes()).unwrap_err().contains("limit"));
    }
}
