//! Replay: apply a log (from its snapshot, up to a chosen index) to raftd's state machine.
//!
//! `kv` is the one state machine of the project: `serve` applies committed entries with the same
//! code, so what `replay` says a node holds is what a node serving that log answers.

pub mod kv;
