//! cargo +nightly fuzz run tables: see fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| segtune::fuzz::tables(data));
