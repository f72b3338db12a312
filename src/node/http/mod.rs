//! raftd's HTTP API and goraft's `/raft/*` routes on tiny_http, byte-exact to raftd's
//! (docs/format.md, 'RPCs' and 'raftd's HTTP API'), plus raftdump's documented extensions: linearizable
//! reads by default, `--read-mode=local`, `--forward`, and clear 4xx answers to bad input.
//!
//! [`route`] is a plain function from (method, URL, headers, body) to an [`Answer`], so every
//! route and error case is testable without sockets; [`Server`] runs it on worker threads over
//! an already-bound listener until its shutdown flag is set.
//!
//! Files: `routes.rs` (requests to answers), `api.rs` (what a node offers the routes),
//! `limits.rs` (sizes, disk space and the RPC budget), `server.rs` (the threads and sockets).

use std::collections::BTreeMap;
use std::time::Duration;

use super::budget::Budget;
use crate::model::Peer;

mod api;
mod limits;
mod routes;
mod server;
#[cfg(test)]
mod tests;

pub use api::{rpc_answer, rpc_call, rpc_event, MakeEvent};
pub use limits::{
    SpaceGuard, MAX_HEADERS, MAX_HEADER_BYTES, MAX_HEADER_LINE, MAX_REQUEST_LINE, SMALL_RPC_BODY,
};
pub use routes::{authorized, forward_to, route, write_answer, Answer, Request, FORWARDED_HEADER};
pub use server::Server;

/// How `GET /db/{key}` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// The leader confirms its leadership with a heartbeat round first; other nodes refuse
    /// (or forward).
    Linearizable,
    /// raftd's behaviour: any node answers from its own state, possibly stale.
    Local,
}

/// HTTP behaviour knobs.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Read mode.
    pub read_mode: ReadMode,
    /// Forward writes, joins and linearizable reads from a follower to the leader.
    pub forward: bool,
    /// Largest accepted request body for `/db` and `/join` (bytes).
    pub max_body: usize,
    /// Largest accepted `/raft/*` body (bytes).
    pub max_rpc_body: usize,
    /// How long a write or read waits for the cluster.
    pub timeout: Duration,
    /// Longest accepted key of `/db/{key}` (decoded bytes).
    pub max_key: usize,
    /// The cluster token `/join` and `/raft/*` require (see [`super::security`]); `None`:
    /// not checked.
    pub token: Option<String>,
    /// A connection idle this long (no byte of a request or body) is closed.
    pub idle_timeout: Duration,
    /// A request's head must be complete this long after its first byte.
    pub header_timeout: Duration,
    /// Most open client connections: one client address holds at most half of them, and a
    /// new connection closes the longest idle one when they are all taken (more are closed at
    /// once only when none is idle).
    pub max_connections: usize,
    /// Refuse writes (507) when the data dir's file system runs low on space.
    pub space: Option<SpaceGuard>,
    /// The node's budget for `/raft/*` bodies in flight (each counted twice: the body and its
    /// decoded copy); a body waits up to `timeout` for room, then gets 503.
    pub rpc_budget: Budget,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            read_mode: ReadMode::Linearizable,
            forward: false,
            max_body: 1 << 20,
            max_rpc_body: 64 << 20,
            timeout: Duration::from_secs(10),
            max_key: 8 << 10,
            token: None,
            idle_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            space: None,
            rpc_budget: Budget::default(),
        }
    }
}

/// Why the node could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Not the leader (its name and URL when known).
    NotLeader(Option<Peer>),
    /// A read-only node.
    ReadOnly,
    /// A membership change is still in progress.
    ConfigChangePending,
    /// A join for a name that is already a member.
    Duplicate(String),
    /// The entry was replaced by another leader's: not committed.
    Superseded,
    /// No answer in time (no quorum?); a write may still commit.
    Timeout,
    /// A membership change refused by the strict check: why.
    Unsafe(String),
    /// A removal of a name that is not a member.
    NoSuchMember(String),
    /// This node was removed from the cluster by the `raft:leave` at this index.
    Removed(crate::model::Index),
    /// The node has stopped.
    Stopped,
}

/// The four goraft RPC routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    /// `/raft/appendEntries`.
    AppendEntries,
    /// `/raft/requestVote`.
    RequestVote,
    /// `/raft/snapshot`.
    Snapshot,
    /// `/raft/snapshotRecovery`.
    SnapshotRecovery,
}

/// The outcome of an RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAnswer {
    /// 200 with this protobuf body.
    Ok(Vec<u8>),
    /// 400 `\n`: the body does not decode.
    BadRequest,
    /// 500 `Failed creating response.\n`: not handled in this state.
    Failed,
    /// 403 with the reason: the sender is not a member, or the term is out of bounds; the
    /// node changed nothing.
    Refused(String),
}

/// What the HTTP layer needs from a node (a running one, or a read-only one).
pub trait Api: Send + Sync {
    /// Waits until a read would be linearizable here.
    fn read_barrier(&self, timeout: Duration) -> Result<(), ApiError>;
    /// The value of `key` in the local state machine.
    fn lookup(&self, key: &str) -> Option<String>;
    /// Proposes a command and waits until it is committed and applied.
    fn propose(&self, name: &str, payload: Vec<u8>, timeout: Duration) -> Result<(), ApiError>;
    /// Proposes a command; `done` gets the outcome (it must not block). By default this is
    /// [`Api::propose`] on the calling thread.
    fn propose_async(&self, name: &str, payload: Vec<u8>, timeout: Duration, done: Done) {
        done(self.propose(name, payload, timeout));
    }
    /// `(name, state, term, commit index, leader name)`.
    fn status(&self) -> (String, String, u64, u64, String);
    /// Every member but this node, by name.
    fn peers(&self) -> BTreeMap<String, String>;
    /// Removes member `name` from the cluster (a committed `raft:leave`); `force` skips the
    /// quorum check. A node that runs no core has no members to remove.
    fn remove_member(&self, name: &str, force: bool, timeout: Duration) -> Result<(), ApiError> {
        let _ = (name, force, timeout);
        Err(ApiError::ReadOnly)
    }
    /// The leader's URL when known and not this node.
    fn leader_url(&self) -> Option<String>;
    /// Handles a goraft RPC body.
    fn rpc(&self, rpc: Rpc, body: &[u8], timeout: Duration) -> RpcAnswer;
    /// Registers `f`, called after each batch of `done` callbacks of the `*_async` calls (so
    /// their results can be handed on together); returns false when batches are not known.
    fn on_batch_done(&self, f: Box<dyn Fn() + Send + Sync>) -> bool {
        let _ = f;
        false
    }
    /// Handles a goraft RPC body; `done` gets the answer (it must not block). By default this
    /// is [`Api::rpc`] on the calling thread.
    /// The body is moved in: an AppendEntries keeps its entries in it until they are written.
    fn rpc_async(&self, rpc: Rpc, body: Vec<u8>, timeout: Duration, done: RpcDone) {
        done(self.rpc(rpc, &body, timeout));
    }
}

/// What [`Api::rpc_async`] calls with the answer.
pub type RpcDone = Box<dyn FnOnce(RpcAnswer) + Send>;

/// What [`Api::propose_async`] calls with the outcome.
pub type Done = Box<dyn FnOnce(Result<(), ApiError>) + Send>;
