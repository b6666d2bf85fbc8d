//! cargo-fuzz target `dockerfile`: see [`ocipush_fuzz::dockerfile`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ocipush_fuzz::dockerfile(data));
