//! raftdump: inspect, verify, repair, diff, replay and serve goraft / raftd data directories.
//!
//! Module map (layers point one way, see ARCHITECTURE.md):
//!
//! - [`model`]: indexes, terms, entries, commands, peers, conf, snapshots: plain data.
//! - [`format`](mod@format): pure bytes <-> model for the log, conf, snapshot and RPC messages.
//! - [`datadir`]: the filesystem edge: find and memory-map a node's files, never write.
//! - [`inspect`]: one streaming summary pass over a log, and the entry filter of `inspect`.
//! - [`follow`]: reads a log a running node appends to (`inspect --follow`), as events.
//! - [`repair`]: plans and applies the safe repair of a damaged node (the only writer of data files).
//! - [`node`]: `serve`: the Raft core, storage, transport, HTTP API and runtime.
//! - [`render`]: the only formatting code, writing to `&mut dyn Write`.
//! - [`replay`]: raftd's state machine and the streaming replayer.
//! - [`diff`]: index-aligned comparison of N nodes' logs.
//! - [`par`]: a pass over a log in parts on several cores, results in file order.
//! - [`cli`]: argument parsing, one file per subcommand, exit codes.
#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod datadir;
pub mod diff;
pub mod follow;
pub mod format;
pub mod inspect;
pub mod model;
pub mod node;
pub mod par;
pub mod render;
pub mod repair;
pub mod replay;
