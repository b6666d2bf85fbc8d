//! Block-parallel gzip (pigz-style): one standard gzip member whose deflate stream is cut into
//! fixed-size input blocks. Each block is compressed on its own (raw deflate, primed with the
//! last 32 KiB of the previous block as its dictionary) and ends with a sync flush, so the
//! compressed blocks concatenate into one valid stream; the last block ends the stream.
//!
//! The output depends only on the input, the level and [`BLOCK_SIZE`] — never on the number
//! of threads — so a layer digest is the same on every machine. With one thread the blocks are
//! compressed inline; with more, a small worker pool compresses them while the caller keeps
//! producing input, and at most `2 × threads` blocks are in flight (memory stays flat).
//! Block buffers are recycled, not reallocated per block. A full block that deflate would
//! hardly shrink (judged on its first 64 KiB) is stored instead of compressed.
//! A layer smaller than one block is a plain serial gzip stream (one deflate call sequence).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Input bytes per independently compressed block. Part of the output format: changing it
/// changes every multi-block digest.
pub const BLOCK_SIZE: usize = 1 << 20;
/// The deflate window: how much of the previous block primes the next one.
const DICT_SIZE: usize = 32 * 1024;

/// One block to compress, with the buffer its output goes to.
struct Job {
    bufs: Bufs,
    last: bool,
    reply: SyncSender<io::Result<Bufs>>,
}

/// A block's input, its dictionary and its compressed output.
#[derive(Default)]
struct Bufs {
    data: Vec<u8>,
    dict: Vec<u8>,
    out: Vec<u8>,
}

/// Worker threads compressing blocks; they stop when the job sender is dropped.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: u32) -> io::Result<Pool> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            let handle = std::thread::Builder::new()
                .name(format!("ocipush-gzip-{i}"))
                .spawn(move || worker(&rx, level))?;
            workers.push(handle);
        }
        Ok(Pool {
            jobs: Some(tx),
            workers,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<Job>>, level: u32) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let Bufs { data, dict, out } = &mut job.bufs;
        let done = compress_block(level, data, dict, job.last, out).map(|()| job.bufs);
        // The encoder may have been dropped (an error upstream): nobody waits for this block.
        let _ = job.reply.send(done);
    }
}

/// Raw-deflate `data` primed with `dict` into `out` (cleared first); sync-flushed, or finished
/// when `last`. The deflate state is made fresh for each block: a reset one is not enough
/// (zlib-rs's `reset` left state behind that changed later blocks' output — measured: the same
/// 100k-file layer got a different digest on each run).
fn compress_block(
    level: u32,
    data: &[u8],
    dict: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let level = if level > 0 && incompressible(data) {
        0
    } else {
        level
    };
    let mut c = Compress::new(flate2::Compression::new(level.min(9)), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    out.clear();
    out.reserve(data.len() / 2 + 1024);
    // All input without flushing first, then the flush alone, as a serial zlib stream does.
    while (c.total_in() as usize) < data.len() {
        let consumed = c.total_in() as usize;
        c.compress_vec(&data[consumed..], out, FlushCompress::None)
            .map_err(io::Error::other)?;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64 * 1024));
        }
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let status = c.compress_vec(&[], out, flush).map_err(io::Error::other)?;
        match status {
            Status::StreamEnd => break,
            // A flush is complete once deflate returns with output space left.
            _ if !last && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(())
}

/// Bytes at the start of a block that decide whether it is worth compressing.
const PROBE_SIZE: usize = 64 * 1024;

/// Whether deflate would save under 2% of `block`, judged by its first [`PROBE_SIZE`] bytes
/// at level 1 (about a twentieth of the block's own cost): such a block (random data, an
/// archive, media, model weights) is stored, not compressed, which takes a fraction of the
/// time for the same size. A pure function of the block, so digests stay machine-independent.
fn incompressible(block: &[u8]) -> bool {
    if block.len() < BLOCK_SIZE {
        return false;
    }
    let probe = &block[..PROBE_SIZE];
    let mut c = Compress::new(flate2::Compression::new(1), false);
    // Room for 98% of the probe: a stream that does not end within it saves under 2%.
    let room = probe.len() * 98 / 100;
    let mut out = Vec::with_capacity(room);
    match c.compress_vec(probe, &mut out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) => out.len() >= room,
        Ok(_) => true,
        Err(_) => false,
    }
}

/// The 10-byte gzip header: no name, mtime 0, OS "unknown" (255); XFL as zlib's gzip sets it.
fn header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9.. => 2,
        0 | 1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// A streaming block-parallel gzip encoder writing one gzip member to `W`.
pub(crate) struct ParGzEncoder<W: Write> {
    out: Option<W>,
    level: u32,
    buf: Vec<u8>,
    dict: Vec<u8>,
    crc: Crc,
    pool: Option<Pool>,
    pending: VecDeque<Receiver<io::Result<Bufs>>>,
    /// Buffers back from written blocks, for the next ones.
    spare: Vec<Bufs>,
    max_pending: usize,
    started: bool,
}

impl<W: Write> ParGzEncoder<W> {
    /// An encoder at `level` (0–9) using `threads` compressing threads (1 = inline).
    pub(crate) fn new(out: W, level: u32, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let pool = if threads > 1 {
            Some(Pool::new(threads, level.min(9))?)
        } else {
            None
        };
        Ok(ParGzEncoder {
            out: Some(out),
            level: level.min(9),
            buf: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            crc: Crc::new(),
            pool,
            pending: VecDeque::new(),
            spare: Vec::new(),
            max_pending: threads * 2,
            started: false,
        })
    }

    fn out(&mut self) -> io::Result<&mut W> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))
    }

    /// Hand the buffered block to a worker (or compress it here), then write out finished
    /// blocks in order until at most `keep` remain in flight.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        if !self.started {
            let h = header(self.level);
            self.out()?.write_all(&h)?;
            self.started = true;
        }
        let mut bufs = self.spare.pop().unwrap_or_default();
        bufs.data.clear();
        std::mem::swap(&mut bufs.data, &mut self.buf);
        self.buf.reserve(BLOCK_SIZE);
        // This block's dictionary is the last one's tail; the next one's, this block's tail.
        let tail = bufs.data.len().saturating_sub(DICT_SIZE);
        bufs.dict.clear();
        bufs.dict.extend_from_slice(&bufs.data[tail..]);
        std::mem::swap(&mut bufs.dict, &mut self.dict);
        let sender = self.pool.as_ref().and_then(|p| p.jobs.clone());
        match sender {
            None => {
                let Bufs { data, dict, out } = &mut bufs;
                compress_block(self.level, data, dict, last, out)?;
                self.out()?.write_all(&bufs.out)?;
                self.spare.push(bufs);
            }
            Some(jobs) => {
                let (reply, rx) = mpsc::sync_channel(1);
                jobs.send(Job { bufs, last, reply })
                    .map_err(|_| io::Error::other("gzip worker threads stopped"))?;
                self.pending.push_back(rx);
                let keep = if last { 0 } else { self.max_pending };
                self.drain(keep)?;
            }
        }
        Ok(())
    }

    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while self.pending.len() > keep {
            let Some(rx) = self.pending.pop_front() else {
                break;
            };
            let bufs = rx
                .recv()
                .map_err(|_| io::Error::other("a gzip worker thread stopped"))??;
            self.out()?.write_all(&bufs.out)?;
            self.spare.push(bufs);
        }
        Ok(())
    }

    /// Compress what is left, write the trailer (CRC-32, size mod 2³²) and return the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        self.drain(0)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        let mut out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
        out.write_all(&trailer)?;
        Ok(out)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.buf.len() == BLOCK_SIZE {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    /// Writes out blocks already compressed; a partial block stays buffered (flushing it
    /// would change the output).
    fn flush(&mut self) -> io::Result<()> {
        self.drain(0)?;
        self.out()?.flush()
    }
}

#[cfg(test)]
#[path = "pgzip_tests.rs"]
mod tests;
