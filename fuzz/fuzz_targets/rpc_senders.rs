//! Forged Raft RPCs from several senders against a simulated 3-node cluster (see
//! `rpc_senders` in src/hostile.rs).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftdump_fuzz::rpc_senders(data));
