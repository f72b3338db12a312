#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::log_entry_pb(data));
