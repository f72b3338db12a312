//! The domain model shared by every layer: indexes, terms, decoded entries and commands, peers,
//! conf and snapshots.
//!
//! It owns plain data only. It must not parse bytes (that is `format`) or touch the filesystem
//! (that is `datadir`).

use serde::Serialize;

/// A Raft log index (goraft starts at 1).
pub type Index = u64;
/// A Raft term (goraft's first leader runs in term 0).
pub type Term = u64;

/// The largest step up in term a sane message or saved state takes, and the distance from
/// `Term::MAX` no term may come closer than. A real cluster moves one term per election: 2^32
/// elections are over a century of one a second. A forged or corrupt term beyond it would leave
/// no term to campaign in (the next one overflows).
pub const MAX_TERM_STEP: Term = 1 << 32;

/// Whether a node at term `current` may move to `term`: at most [`MAX_TERM_STEP`] above it,
/// and at least that far from `Term::MAX`. A lower or equal term is always in bounds.
pub fn term_in_bounds(current: Term, term: Term) -> bool {
    term <= current || (term - current <= MAX_TERM_STEP && !term_is_poisoned(term))
}

/// Whether a term leaves no room to campaign: within [`MAX_TERM_STEP`] of `Term::MAX`.
pub fn term_is_poisoned(term: Term) -> bool {
    term > Term::MAX - MAX_TERM_STEP
}

/// The command names goraft and raftd define.
pub mod names {
    /// goraft's membership change: add a peer.
    pub const JOIN: &str = "raft:join";
    /// goraft's membership change: remove a peer.
    pub const LEAVE: &str = "raft:leave";
    /// goraft's no-op, appended by every new leader.
    pub const NOP: &str = "raft:nop";
    /// raftd's key-value write.
    pub const WRITE: &str = "write";
}

/// A decoded command payload.
///
/// The payload bytes themselves always stay with the entry; this is only their meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `raft:join` `{"name","connectionString"}`.
    Join {
        /// The joining node's name.
        name: String,
        /// Its advertised URL, e.g. `http://127.0.0.1:4001`.
        connection_string: String,
    },
    /// `raft:leave` `{"name"}`.
    Leave {
        /// The leaving node's name.
        name: String,
    },
    /// `raft:nop`: no payload.
    Nop,
    /// raftd's `write` `{"key","value"}`.
    Write {
        /// The key.
        key: String,
        /// The value, as Go decoded it (invalid UTF-8 already became U+FFFD when it was written).
        value: String,
    },
    /// A command name raftdump does not know (etcd 0.x, SeaweedFS, ...): passed through.
    Other {
        /// The payload as JSON when it is JSON.
        json: Option<serde_json::Value>,
    },
    /// A known command name whose payload goraft could not decode.
    Invalid {
        /// What was wrong with the payload.
        reason: String,
    },
}

impl Command {
    /// Whether this command names a raftd or goraft built-in that raftdump decodes.
    pub fn is_known_name(name: &str) -> bool {
        matches!(name, names::JOIN | names::LEAVE | names::NOP | names::WRITE)
    }
}

/// One member of the cluster, as goraft writes it in conf, snapshots and join payloads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct Peer {
    /// The node name (raftd: 7 hex digits).
    pub name: String,
    /// The advertised URL.
    #[serde(rename = "connectionString")]
    pub connection_string: String,
}

/// The `conf` file: only `commitIndex` is ever read back by goraft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conf {
    /// The commit index at the last membership change (not the true commit point).
    #[serde(rename = "commitIndex")]
    pub commit_index: Index,
    /// The other members (never this node), in random order.
    pub peers: Vec<Peer>,
}

/// A snapshot file's decoded content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The last index the snapshot covers.
    pub last_index: Index,
    /// The term of that entry.
    pub last_term: Term,
    /// All members including the snapshotting node, or `None` for JSON `null`.
    pub peers: Option<Vec<Peer>>,
    /// The state machine's bytes (`None` for JSON `null`).
    pub state: Option<Vec<u8>>,
    /// The path recorded at save time.
    pub path: String,
}

/// An owned log entry: what goraft's `LogEntry` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Log index.
    pub index: Index,
    /// Term.
    pub term: Term,
    /// Command name.
    pub name: String,
    /// Command payload bytes, `None` when field 4 is absent (`raft:nop`).
    pub payload: Option<Vec<u8>>,
}
