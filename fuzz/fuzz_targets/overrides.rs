//! cargo +nightly fuzz run overrides: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| segtune::fuzz::overrides(data));
