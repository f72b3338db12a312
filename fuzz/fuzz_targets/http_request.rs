//! The HTTP API of `raftdump serve` over an in-memory node (see `http_request` in src/lib.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::http_request(data));
