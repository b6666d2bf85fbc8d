//! A minimal deterministic tar writer: ustar headers, with PAX extended headers when a path or
//! link target does not fit, or a number overflows its octal field. No atime/ctime, no user or
//! group names: exactly the fields given, so the same entries always give the same bytes.

use std::io::{self, Read, Write};

const BLOCK: usize = 512;

/// The type of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier entry.
    Hardlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::Hardlink => b'1',
            EntryType::Symlink => b'2',
            EntryType::CharDevice => b'3',
            EntryType::BlockDevice => b'4',
            EntryType::Dir => b'5',
            EntryType::Fifo => b'6',
        }
    }
}

/// Everything a header says about an entry.
#[derive(Debug, Clone)]
pub struct TarHeader {
    /// Relative path, without a trailing `/` (added for directories).
    pub path: String,
    /// Entry type.
    pub entry_type: EntryType,
    /// Permission bits (and setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Content size (regular files only).
    pub size: u64,
    /// Link target (symlinks, hard links).
    pub link: String,
    /// Device major/minor numbers (devices only).
    pub device: (u32, u32),
}

/// Writes tar entries to `W`; [`TarWriter::finish`] writes the end-of-archive blocks.
pub(crate) struct TarWriter<W: Write> {
    out: W,
    /// File content is copied through this buffer: one read and one write per 256 KiB rather
    /// than per 8 KiB (`io::copy`'s stack buffer).
    buf: Vec<u8>,
}

/// The size of [`TarWriter`]'s copy buffer.
const COPY_BUF: usize = 256 * 1024;

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter {
            out,
            buf: Vec::new(),
        }
    }

    /// Copy up to `size` bytes from `data` to the output; returns how many `data` gave.
    fn copy_content(&mut self, data: &mut dyn Read, size: u64) -> io::Result<u64> {
        if self.buf.is_empty() {
            self.buf = vec![0; COPY_BUF];
        }
        let mut copied = 0u64;
        while copied < size {
            let want = (size - copied).min(COPY_BUF as u64) as usize;
            let n = match data.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            copied += n as u64;
        }
        Ok(copied)
    }

    /// Write one entry; for a regular file, exactly `header.size` bytes are copied from `data`.
    /// Returns the number of content bytes `data` gave (less than `size` means it ended early, in
    /// which case the entry is padded with zeros and the caller should fail).
    pub(crate) fn append(
        &mut self,
        header: &TarHeader,
        data: Option<&mut dyn Read>,
    ) -> io::Result<u64> {
        let mut name = header.path.clone();
        if header.entry_type == EntryType::Dir && !name.ends_with('/') {
            name.push('/');
        }
        let size = if header.entry_type == EntryType::File {
            header.size
        } else {
            0
        };
        let mut pax: Vec<(&str, String)> = Vec::new();
        let (prefix_field, name_field) = match split_name(&name) {
            Some(split) => split,
            None => {
                pax.push(("path", name.clone()));
                ("", truncate(&name, 100))
            }
        };
        if header.link.len() > 100 {
            pax.push(("linkpath", header.link.clone()));
        }
        let mut block = [0u8; BLOCK];
        put_str(&mut block[0..100], name_field);
        put_octal(&mut block[100..108], u64::from(header.mode & 0o7777));
        for (range, key, value) in [(108..116, "uid", header.uid), (116..124, "gid", header.gid)] {
            if !put_octal(&mut block[range], value) {
                pax.push((key, value.to_string()));
            }
        }
        if !put_octal(&mut block[124..136], size) {
            pax.push(("size", size.to_string()));
        }
        if !put_octal(&mut block[136..148], header.mtime) {
            pax.push(("mtime", header.mtime.to_string()));
        }
        block[156] = header.entry_type.flag();
        put_str(&mut block[157..257], truncate(&header.link, 100));
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        if matches!(
            header.entry_type,
            EntryType::CharDevice | EntryType::BlockDevice
        ) {
            put_octal(&mut block[329..337], u64::from(header.device.0));
            put_octal(&mut block[337..345], u64::from(header.device.1));
        }
        put_str(&mut block[345..500], prefix_field);

        if !pax.is_empty() {
            self.write_pax(&pax, header.mtime)?;
        }
        set_checksum(&mut block);
        self.out.write_all(&block)?;
        if size == 0 {
            return Ok(0);
        }
        let data = data.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "regular file entry without content",
            )
        })?;
        let copied = self.copy_content(data, size)?;
        if copied < size {
            io::copy(&mut io::repeat(0).take(size - copied), &mut self.out)?;
        }
        self.pad(size)?;
        Ok(copied)
    }

    fn write_pax(&mut self, records: &[(&str, String)], mtime: u64) -> io::Result<()> {
        let mut body = Vec::new();
        for (key, value) in records {
            body.extend_from_slice(pax_record(key, value).as_bytes());
        }
        let mut block = [0u8; BLOCK];
        put_str(&mut block[0..100], "././@PaxHeader");
        put_octal(&mut block[100..108], 0o644);
        put_octal(&mut block[108..116], 0);
        put_octal(&mut block[116..124], 0);
        put_octal(&mut block[124..136], body.len() as u64);
        put_octal(&mut block[136..148], mtime.min(0o77777777777));
        block[156] = b'x';
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        set_checksum(&mut block);
        self.out.write_all(&block)?;
        self.out.write_all(&body)?;
        self.pad(body.len() as u64)
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    /// Write the two zero blocks that end an archive and return the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; BLOCK * 2])?;
        Ok(self.out)
    }
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
fn pax_record(key: &str, value: &str) -> String {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    format!("{len} {key}={value}\n")
}

/// Split `name` into ustar (prefix, name) fields when it fits.
fn split_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 {
        return Some(("", name));
    }
    // Split at a '/' such that the prefix has at most 155 bytes and the rest at most 100.
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    for (i, _) in trimmed.match_indices('/') {
        if i <= 155 && name.len() - i - 1 <= 100 && i > 0 {
            return Some((&name[..i], &name[i + 1..]));
        }
    }
    None
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_str(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// Zero-padded octal with a NUL terminator; false (and the field zeroed) when it does not fit.
fn put_octal(field: &mut [u8], value: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        put_octal(field, 0);
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn set_checksum(block: &mut [u8; BLOCK]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    block[148..156].copy_from_slice(s.as_bytes());
}

/// Whether `block` is a tar header with a valid checksum (any tar flavour).
pub(crate) fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < BLOCK || block[..BLOCK].iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let unsigned: u32 = block[..BLOCK]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    let signed: i64 = block[..BLOCK]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::from(stored) == signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(path: &str, t: EntryType) -> TarHeader {
        TarHeader {
            path: path.into(),
            entry_type: t,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 0,
            link: String::new(),
            device: (0, 0),
        }
    }

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record("path", "abc"), "12 path=abc\n");
        let r = pax_record("path", &"x".repeat(95));
        assert_eq!(r.len().to_string(), r.split(' ').next().unwrap());
    }

    #[test]
    fn round_trips_through_tar_crate() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        let long_link = "/".to_string() + &"t".repeat(150);
        let mut w = TarWriter::new(Vec::new());
        w.append(&hdr("dir", EntryType::Dir), None).unwrap();
        let mut f = hdr("dir/file", EntryType::File);
        f.size = 5;
        f.uid = 1 << 40;
        w.append(&f, Some(&mut &b"hello"[..])).unwrap();
        let mut l = hdr(&long, EntryType::Symlink);
        l.link = long_link.clone();
        w.append(&l, None).unwrap();
        let mid = format!("{}/{}", "p".repeat(150), "n".repeat(90));
        w.append(&hdr(&mid, EntryType::File), Some(&mut &b""[..]))
            .unwrap();
        let bytes = w.finish().unwrap();
        assert!(is_tar_header(&bytes[..512]));

        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let p = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            let uid = e.header().uid().unwrap();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            seen.push((p, link, body, uid));
        }
        assert_eq!(seen[0].0, "dir/");
        assert_eq!(seen[1].2, b"hello");
        assert_eq!(seen[2].0, long);
        assert_eq!(seen[2].1.as_deref(), Some(long_link.as_str()));
        assert_eq!(seen[3].0, mid);
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn short_data_is_reported() {
        let mut w = TarWriter::new(Vec::new());
        let mut f = hdr("f", EntryType::File);
        f.size = 10;
        assert_eq!(w.append(&f, Some(&mut &b"abc"[..])).unwrap(), 3);
    }
}
