#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::roundtrip_entry(data));
