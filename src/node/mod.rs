//! `raftdump serve`: a raftd node, compatible with goraft on disk and on the wire.
//!
//! ```text
//!   clients ──> http.rs (tiny_http workers) ───────┐ Input channel        ┌──> transport.rs
//!   peers   ──> /raft/* (same workers, same port) ─┤                      │    one ordered
//!               POST /db/{key}: proposed without   │                      │    keep-alive ureq
//!               waiting; responder threads answer  v                      │    stream per peer
//!                                    runtime.rs: one thread               │    (queued requests
//!                                     drain a batch of inputs             │     merged)
//!                                     core.step_many([Tick(now), ...])    │
//!                                     carry out the actions in order:     │
//!                                       SaveHardState -> fsync now        │
//!                                       Append/Truncate -> write, no fsync│
//!                                       Send* ───────────────────────────-┘
//!                                       Commit -> replay::kv::Kv.apply (+ conf on join/leave)
//!                                       Reply*/ProposalDone/ReadDone -> held
//!                                     hand "fsync up to i" to the fsync thread (pipelined
//!                                       group commit: one fsync covers every write before it)
//!                                     fsync done -> core.step(Persisted(i)) (it wakes the
//!                                       runtime only when the commit waits for it)
//!                                     release held answers whose entries are durable
//!
//!   Hand-offs on the path of a replication round are kept few: the runtime writes an
//!   AppendEntries on its peer's open connection itself (the peer's thread only connects and
//!   takes over when a write is queued behind it), and a follower's runtime writes its
//!   AppendEntries answer itself when the answers before it on the connection are written.
//!
//!   core.rs      pure Raft: step(Event) -> Vec<Action>; clock and randomness injected
//!   storage.rs   Storage trait; FileStore (goraft's files exactly) and MemStore
//!   transport.rs Transport trait; HTTP client (proto2 bodies), MemTransport, the wire codec
//!   exec.rs      what every executor shares: start-up state, AppendEntries ranges, apply
//!   sim.rs       deterministic multi-node simulator: MemStore, MemTransport, seeded network
//!   chaos.rs     seeded chaos runs over sim.rs, and their verdict on liveness (goraft's stall)
//!   http.rs      raftd's routes byte for byte, linearizable reads, --forward
//! ```
//!
//! The state machine is [`crate::replay::kv::Kv`], the same code `replay` uses.

pub mod budget;
pub mod chaos;
pub mod core;
pub mod exec;
pub mod http;
pub mod runtime;
pub mod security;
pub mod sim;
pub mod storage;
pub mod transport;
