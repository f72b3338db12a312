//! `raftdump serve`: a raftd node, compatible with goraft on disk and on the wire.
//!
//! ```text
//!              HTTP (tiny_http)                       peers (ureq, keep-alive)
//!   clients ──> http.rs ──┐                       ┌──> transport.rs ──> other nodes
//!   peers   ──> /raft/* ──┤  Input (channel)      │  SendAppend / SendVote / SendSnapshot
//!                         v                       │
//!                  runtime.rs: one thread ────────┘
//!                   │  drains a batch of inputs, Tick(now)
//!                   │  core.step_many(events) -> actions, carried out in order:
//!                   │    SaveHardState -> storage (fsync now)
//!                   │    Append/Truncate -> storage (buffered)
//!                   │    Send* -> transport (entries read from storage)
//!                   │    Commit -> replay::kv::Kv.apply (+ conf on join/leave)
//!                   │    Reply*/ProposalDone/ReadDone -> held back
//!                   │  storage.sync()   (group commit: one fsync per batch)
//!                   │  core.step(Persisted(last))   (a leader counts itself)
//!                   └─ release held replies  (nothing is acknowledged before its fsync)
//!
//!   core.rs     pure Raft: step(Event) -> Vec<Action>; clock and randomness injected
//!   storage.rs  Storage trait; FileStore (goraft's files exactly) and MemStore
//!   transport.rs Transport trait; HTTP client (proto2 bodies) and the wire codec
//!   sim.rs      deterministic multi-node simulator over MemStore and an in-memory network
//! ```
//!
//! The state machine is [`crate::replay::kv::Kv`], the same code `replay` uses.

pub mod core;
pub mod exec;
pub mod http;
pub mod runtime;
pub mod sim;
pub mod storage;
pub mod transport;
