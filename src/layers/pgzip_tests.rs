//! Tests of block-parallel gzip and multithreaded zstd: the output is identical for any
//! thread count, and standard decoders (flate2, the system's gzip/pigz/zstd) read it back.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use super::*;
use crate::digest::Digest;
use crate::layers::compress::{Compression, Encoder};

/// Deterministic, partly compressible data: text-like runs mixed with pseudo-random bytes.
fn sample(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            out.extend_from_slice(b"ELF shared object, x86-64, dynamically linked; ");
        } else {
            out.extend_from_slice(&x.to_le_bytes()[..(x % 8) as usize]);
        }
    }
    out.truncate(len);
    out
}

fn encode(c: Compression, data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
    let mut e = Encoder::with_threads(c, Vec::new(), threads).unwrap();
    for part in data.chunks(chunk.max(1)) {
        e.write_all(part).unwrap();
    }
    e.finish().unwrap()
}

fn system_decode(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = match Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run {tool} ({e}): install the Debian package {tool} (./scripts/install-deps.sh does)"
        ),
    };
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed");
    out.stdout
}

#[test]
fn gzip_output_is_identical_for_1_2_4_threads() {
    let data = sample(3 * BLOCK_SIZE + 12_345);
    let c = Compression::Gzip { level: 6 };
    let one = encode(c, &data, 1, 64 * 1024);
    for threads in [2, 4] {
        for chunk in [1000, 512 * 1024, 4 * BLOCK_SIZE] {
            let other = encode(c, &data, threads, chunk);
            assert_eq!(
                Digest::of(&other),
                Digest::of(&one),
                "{threads} threads, writes of {chunk}"
            );
        }
    }
}

#[test]
fn gzip_is_one_valid_stream_for_flate2_gzip_and_pigz() {
    let data = sample(2 * BLOCK_SIZE + 777);
    for level in [0, 1, 6, 9] {
        let gz = encode(Compression::Gzip { level }, &data, 2, 100_000);
        // A single member: the non-multi decoder reads all of it.
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data, "flate2 round trip at level {level}");
        let out = system_decode("gzip", &["-d", "-c"], &gz);
        assert!(out == data, "gzip -d at level {level}");
        let out = system_decode("pigz", &["-d", "-c"], &gz);
        assert!(out == data, "pigz -d at level {level}");
    }
}

/// Pseudo-random bytes (xorshift): nothing for deflate to find.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn incompressible_blocks_are_stored_and_the_rest_compressed() {
    // Block 1 random, block 2 text-like, a random tail: one valid stream, the random block
    // stored (about its own size), the compressible one still compressed, the same output
    // for any thread count.
    let mut data = noise(BLOCK_SIZE);
    data.extend(sample(BLOCK_SIZE));
    data.extend(noise(BLOCK_SIZE / 2));
    let c = Compression::Gzip { level: 2 };
    let gz = encode(c, &data, 2, 100_000);
    assert_eq!(Digest::of(&encode(c, &data, 1, 4096)), Digest::of(&gz));
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data, "flate2 round trip");
    assert!(system_decode("pigz", &["-d", "-c"], &gz) == data, "pigz -d");
    assert!(incompressible(&noise(BLOCK_SIZE)));
    assert!(!incompressible(&sample(BLOCK_SIZE)));
    // Stored: the random block costs its size plus a few bytes per 64 KiB stored block; the
    // compressible block shrinks.
    let stored = encode(c, &noise(2 * BLOCK_SIZE), 1, BLOCK_SIZE);
    assert!(
        stored.len() < 2 * BLOCK_SIZE + 2 * BLOCK_SIZE / 1000,
        "{}",
        stored.len()
    );
    let text = encode(c, &sample(2 * BLOCK_SIZE), 1, BLOCK_SIZE);
    assert!(text.len() < BLOCK_SIZE, "{}", text.len());
}

#[test]
fn small_gzip_equals_serial_gzip_and_empty_is_valid() {
    let data = sample(100_000);
    let ours = encode(Compression::Gzip { level: 6 }, &data, 2, 4096);
    let mut serial = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), flate2::Compression::new(6));
    serial.write_all(&data).unwrap();
    assert_eq!(ours, serial.finish().unwrap());

    let empty = encode(Compression::Gzip { level: 6 }, &[], 2, 1);
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&empty[..])
        .read_to_end(&mut back)
        .unwrap();
    assert!(back.is_empty());
}

#[test]
fn zstd_output_is_identical_for_1_2_4_threads_and_decodes() {
    // Larger than one zstd job at level 1 (several MiB), so workers really split it.
    let data = sample(9 * BLOCK_SIZE);
    let c = Compression::Zstd { level: 1 };
    let one = encode(c, &data, 1, 256 * 1024);
    for threads in [2, 4] {
        let other = encode(c, &data, threads, 100_000);
        assert_eq!(Digest::of(&other), Digest::of(&one), "{threads} threads");
    }
    let back = zstd::stream::decode_all(&one[..]).unwrap();
    assert!(back == data);
    let out = system_decode("zstd", &["-d", "-c", "-q"], &one);
    assert!(out == data, "zstd -d");
}
