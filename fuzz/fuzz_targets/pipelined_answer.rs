//! Bytes from a follower's connection, as the leader's pipelined AppendEntries client parses
//! them (see `pipelined_answer` in src/lib.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::pipelined_answer(data));
