//! `raftdump serve`: a raftd node, compatible with goraft on disk and on the wire.
//!
//! ```text
//!   clients ──> http/ (tiny_http workers) ─────────┐ Input channel        ┌──> transport/
//!   peers   ──> /raft/* (same workers, same port) ─┤                      │    one ordered
//!               POST /db/{key}: proposed without   │                      │    pipelined HTTP
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
//!   core/        pure Raft: step(Event) -> Vec<Action>; clock and randomness injected
//!                (types.rs: events, actions, state; replication.rs: AppendEntries both ways)
//!   storage.rs   Storage trait; FileStore (goraft's files exactly) and MemStore
//!   transport/   Transport trait; ureq for snapshots, MemTransport; pipelined.rs: the
//!                pipelined HTTP/1.1 client for AppendEntries (the codec is format::rpc)
//!   exec.rs      the executor of the core's actions over an Effects (storage, peers,
//!                answers, state machine): the runtime's and the simulator's one code path;
//!                start-up state, AppendEntries ranges, apply
//!   sim/         deterministic multi-node simulator: MemStore, seeded network, exec.rs
//!                (feature `sim`: for the tests and the fuzz crate, not the library's API)
//!   chaos.rs     seeded chaos runs over sim/, and their verdict on liveness (goraft's stall)
//!                (feature `sim`)
//!   ratelog.rs   log lines that repeat per request or per peer: the first, then a count
//!                every few seconds
//!   http/        raftd's routes byte for byte, linearizable reads, --forward (routes.rs),
//!                what a node offers them (api.rs), limits.rs, the server loop (server.rs)
//! ```
//!
//! The state machine is [`crate::replay::kv::Kv`], the same code `replay` uses.

pub mod budget;
#[cfg(feature = "sim")]
pub mod chaos;
pub mod compaction;
pub mod core;
pub mod exec;
pub mod http;
pub mod ratelog;
pub mod runtime;
pub mod security;
#[cfg(feature = "sim")]
pub mod sim;
pub mod storage;
pub mod transport;
