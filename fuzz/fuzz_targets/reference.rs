//! cargo-fuzz target `reference`: see [`ocipush_fuzz::reference`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocipush_fuzz::reference(data));
