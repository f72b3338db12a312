//! Raw bytes on `raftdump serve`'s HTTP port: the request head as the server parses it (see
//! `http_head` in src/hostile.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::http_head(data));
