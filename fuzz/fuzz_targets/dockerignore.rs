//! cargo-fuzz target `dockerignore`: see [`ocipush_fuzz::dockerignore`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocipush_fuzz::dockerignore(data));
