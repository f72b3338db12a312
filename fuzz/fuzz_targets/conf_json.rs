#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::conf_json(data));
