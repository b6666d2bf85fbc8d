//! cargo-fuzz target `add_archive`: see [`ocipush_fuzz::add_archive`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocipush_fuzz::add_archive(data));
