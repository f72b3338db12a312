//! raftd's HTTP API and goraft's `/raft/*` routes on tiny_http, byte-exact to raftd's
//! (docs/format.md, 'RPCs' and 'raftd's HTTP API'), plus raftdump's documented extensions: linearizable
//! reads by default, `--read-mode=local`, `--forward`, and clear 4xx answers to bad input.
//!
//! [`route`] is a plain function from (method, URL, headers, body) to an [`Answer`], so every
//! route and error case is testable without sockets; [`Server`] runs it on worker threads over
//! an already-bound listener until its shutdown flag is set.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::budget::{Budget, Reservation};
use super::core::{Event, Rejection, RequestId, Role};
use super::runtime::{CallError, Handle, ReadOnlyNode, Reply};
use super::security::{self, TOKEN_HEADER};
use super::transport::{self, RAFTDUMP_HEADER};
use crate::format::command;
use crate::format::gojson::{decode_string_fields, write_string};
use crate::model::{names, Peer};

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

/// `/raft/*` bodies up to this size skip [`HttpOptions::rpc_budget`]: heartbeats and votes never
/// wait behind big bodies, and all open connections together hold at most
/// `max_connections` x this much of them.
pub const SMALL_RPC_BODY: usize = 64 << 10;

/// Refuses a write before it is appended when the file system holding the log would keep
/// less than `reserve` bytes free: the node then stays up and keeps serving reads, instead of
/// meeting `ENOSPC` in the middle of an append (which stops it, never answering 200).
///
/// The file system is asked at most every [`SpaceGuard::REFRESH`]; in between, the bytes
/// admitted are subtracted from the free space it last reported, so the guard never admits
/// more than a fresh query would (writes of other processes aside, which the reserve covers).
#[derive(Debug, Clone)]
pub struct SpaceGuard {
    dir: std::path::PathBuf,
    reserve: u64,
    refresh: Duration,
    /// When the file system was last asked, and the free bytes known since.
    known: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl SpaceGuard {
    /// How long a free-space figure is used (with the admitted bytes subtracted).
    pub const REFRESH: Duration = Duration::from_millis(20);

    /// A guard keeping `reserve` bytes free on the file system of `dir`.
    pub fn new(dir: std::path::PathBuf, reserve: u64) -> SpaceGuard {
        SpaceGuard {
            dir,
            reserve,
            refresh: Self::REFRESH,
            known: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether a command of `payload` bytes may be appended. A file system that cannot be
    /// queried admits it (the append itself then reports any error).
    pub fn admits(&self, payload: usize) -> bool {
        // The frame adds a header, the index, term and command name: 256 bytes covers it.
        let need = payload as u64 + 256;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (at, free) = match *known {
            Some((at, free)) if now.duration_since(at) < self.refresh => (at, free),
            _ => match rustix::fs::statvfs(&self.dir) {
                Ok(st) => (now, st.f_bavail.saturating_mul(st.f_frsize)),
                Err(_) => {
                    *known = None;
                    return true;
                }
            },
        };
        let ok = free >= self.reserve.saturating_add(need);
        *known = Some((at, if ok { free - need } else { free }));
        ok
    }
}

fn no_space() -> Answer {
    Answer::text(
        507,
        "raftdump: not enough free disk space for this write; reads are still served\n",
    )
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
    /// The node has stopped.
    Stopped,
}

/// Longest request line (method, target, version): 414 over it. A key of the documented 8 KiB
/// limit percent-encoded is up to 24 KiB of target, so it fits.
pub const MAX_REQUEST_LINE: usize = 32 << 10;
/// Longest header line: 431 over it.
pub const MAX_HEADER_LINE: usize = 8 << 10;
/// Most headers in one request: 431 over it.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of all header lines of one request: 431 over it.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

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
    fn rpc_async(&self, rpc: Rpc, body: &[u8], timeout: Duration, done: RpcDone) {
        done(self.rpc(rpc, body, timeout));
    }
}

/// What [`Api::rpc_async`] calls with the answer.
pub type RpcDone = Box<dyn FnOnce(RpcAnswer) + Send>;

/// What [`Api::propose_async`] calls with the outcome.
pub type Done = Box<dyn FnOnce(Result<(), ApiError>) + Send>;

fn proposal_outcome(r: Result<Reply, CallError>) -> Result<(), ApiError> {
    match r.map_err(call_error)? {
        Reply::Proposal(Ok(_)) => Ok(()),
        Reply::Proposal(Err(r)) => Err(rejection(r)),
        _ => Err(ApiError::Stopped),
    }
}

fn rejection(r: Rejection) -> ApiError {
    match r {
        Rejection::NotLeader(p) => ApiError::NotLeader(p),
        Rejection::ConfigChangePending => ApiError::ConfigChangePending,
        Rejection::DuplicateMember(n) => ApiError::Duplicate(n),
        Rejection::Superseded => ApiError::Superseded,
    }
}

fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::Timeout => ApiError::Timeout,
        CallError::Stopped => ApiError::Stopped,
    }
}

impl Api for Handle {
    fn read_barrier(&self, timeout: Duration) -> Result<(), ApiError> {
        match self
            .call(|id| Event::Read { id }, timeout)
            .map_err(call_error)?
        {
            Reply::Read(Ok(_)) => Ok(()),
            Reply::Read(Err(r)) => Err(rejection(r)),
            _ => Err(ApiError::Stopped),
        }
    }

    fn lookup(&self, key: &str) -> Option<String> {
        self.kv().get(key).map(str::to_string)
    }

    fn propose(&self, name: &str, payload: Vec<u8>, timeout: Duration) -> Result<(), ApiError> {
        let ev = |id| Event::Propose {
            id,
            name: name.to_string(),
            payload: Some(payload),
        };
        proposal_outcome(self.call(ev, timeout))
    }

    fn propose_async(&self, name: &str, payload: Vec<u8>, timeout: Duration, done: Done) {
        let ev = |id| Event::Propose {
            id,
            name: name.to_string(),
            payload: Some(payload),
        };
        self.call_async(ev, timeout, Box::new(move |r| done(proposal_outcome(r))));
    }

    fn status(&self) -> (String, String, u64, u64, String) {
        let s = self.status();
        let state = if self.failure().is_some() {
            "stopped"
        } else {
            s.role.as_str()
        };
        (
            s.name,
            state.to_string(),
            s.term,
            s.commit,
            s.leader.unwrap_or_default(),
        )
    }

    fn peers(&self) -> BTreeMap<String, String> {
        let s = self.status();
        s.members
            .into_iter()
            .filter(|(n, _)| *n != s.name)
            .collect()
    }

    fn leader_url(&self) -> Option<String> {
        let s = self.status();
        if s.role == Role::Leader {
            return None;
        }
        s.leader
            .and_then(|l| s.members.get(&l).cloned())
            .filter(|u| !u.is_empty())
    }

    fn rpc(&self, rpc: Rpc, body: &[u8], timeout: Duration) -> RpcAnswer {
        rpc_call(rpc, body, |make| self.call(make, timeout))
    }

    fn on_batch_done(&self, f: Box<dyn Fn() + Send + Sync>) -> bool {
        Handle::on_batch_done(self, f)
    }

    fn rpc_async(&self, rpc: Rpc, body: &[u8], timeout: Duration, done: RpcDone) {
        match rpc_event(rpc, body) {
            Ok(make) => self.call_async(make, timeout, Box::new(move |r| done(rpc_answer(r)))),
            Err(a) => done(a),
        }
    }
}

/// The core's event for an RPC, built once the call has its id.
pub type MakeEvent = Box<dyn FnOnce(RequestId) -> Event + Send>;

/// Decodes an RPC body (400 if it does not decode), hands the core's event to `call` and turns
/// its reply into the protobuf answer (500 when the node does not handle it in this state).
/// Shared by every [`Api`] that runs a core, so they all answer RPCs alike.
pub fn rpc_call(
    rpc: Rpc,
    body: &[u8],
    call: impl FnOnce(MakeEvent) -> Result<Reply, CallError>,
) -> RpcAnswer {
    match rpc_event(rpc, body) {
        Ok(make) => rpc_answer(call(make)),
        Err(a) => a,
    }
}

/// The core's event for an RPC body, or the answer to a body that does not decode (400).
pub fn rpc_event(rpc: Rpc, body: &[u8]) -> Result<MakeEvent, RpcAnswer> {
    Ok(match rpc {
        Rpc::AppendEntries => match transport::decode_append_request(body) {
            Ok(req) => Box::new(move |id| Event::Append { id, req }),
            Err(_) => return Err(RpcAnswer::BadRequest),
        },
        Rpc::RequestVote => match transport::decode_vote_request(body) {
            Ok(req) => Box::new(move |id| Event::Vote { id, req }),
            Err(_) => return Err(RpcAnswer::BadRequest),
        },
        Rpc::Snapshot => match transport::decode_snapshot_request(body) {
            Ok((leader, last_index, last_term)) => Box::new(move |id| Event::SnapshotOffer {
                id,
                leader,
                last_index,
                last_term,
            }),
            Err(_) => return Err(RpcAnswer::BadRequest),
        },
        Rpc::SnapshotRecovery => match transport::decode_snapshot_install(body) {
            Ok(req) => Box::new(move |id| Event::SnapshotInstall { id, req }),
            Err(_) => return Err(RpcAnswer::BadRequest),
        },
    })
}

/// The protobuf answer to an RPC's reply (500 when the node does not handle it in this state).
pub fn rpc_answer(reply: Result<Reply, CallError>) -> RpcAnswer {
    match reply {
        Ok(Reply::Append(r)) => RpcAnswer::Ok(transport::encode_append_response(&r)),
        Ok(Reply::Vote(r)) => RpcAnswer::Ok(transport::encode_vote_response(&r)),
        Ok(Reply::SnapshotOffer(Some(a))) => RpcAnswer::Ok(transport::encode_snapshot_response(a)),
        Ok(Reply::SnapshotInstall(Some((t, s, c)))) => {
            RpcAnswer::Ok(transport::encode_snapshot_install_response(t, s, c))
        }
        Ok(Reply::Refused(r)) => RpcAnswer::Refused(r.to_string()),
        _ => RpcAnswer::Failed,
    }
}

impl Api for ReadOnlyNode {
    fn read_barrier(&self, _: Duration) -> Result<(), ApiError> {
        Ok(())
    }
    fn lookup(&self, key: &str) -> Option<String> {
        self.kv.get(key).map(str::to_string)
    }
    fn propose(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), ApiError> {
        Err(ApiError::ReadOnly)
    }
    fn status(&self) -> (String, String, u64, u64, String) {
        (
            self.name.clone(),
            "read-only".into(),
            0,
            self.at,
            String::new(),
        )
    }
    fn peers(&self) -> BTreeMap<String, String> {
        self.kv
            .members
            .iter()
            .filter(|(n, _)| **n != self.name)
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect()
    }
    fn leader_url(&self) -> Option<String> {
        None
    }
    fn rpc(&self, rpc: Rpc, body: &[u8], _: Duration) -> RpcAnswer {
        // goraft decodes first (400), then finds the server not running (500).
        let decodes = match rpc {
            Rpc::AppendEntries => transport::decode_append_request(body).is_ok(),
            Rpc::RequestVote => transport::decode_vote_request(body).is_ok(),
            Rpc::Snapshot => transport::decode_snapshot_request(body).is_ok(),
            Rpc::SnapshotRecovery => transport::decode_snapshot_install(body).is_ok(),
        };
        if decodes {
            RpcAnswer::Failed
        } else {
            RpcAnswer::BadRequest
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Content-Type, when one is sent.
    pub content_type: Option<&'static str>,
    /// Whether to add the raftdump marker header (RPC answers).
    pub raftdump: bool,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Answer {
    fn text(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            body: body.into(),
            content_type: Some(TEXT),
            raftdump: false,
        }
    }
    fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: Vec::new(),
            content_type: None,
            raftdump: false,
        }
    }
    fn not_found() -> Answer {
        Answer::text(404, "404 page not found\n")
    }
}

/// The parts of a request [`route`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// The raw request target (path and query).
    pub url: &'a str,
    /// The body (already read, at most the limit + 1 bytes).
    pub body: &'a [u8],
    /// Whether it was forwarded by another raftdump node (never forwarded twice).
    pub forwarded: bool,
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(s.as_bytes(), &mut out);
    out
}

fn not_leader_text(p: &Option<Peer>) -> String {
    match p {
        Some(p) if !p.connection_string.is_empty() => format!(
            "raftdump: not the leader; the leader is {} at {}\n",
            p.name, p.connection_string
        ),
        Some(p) => format!("raftdump: not the leader; the leader is {}\n", p.name),
        None => "raftdump: not the leader; no leader is known\n".to_string(),
    }
}

/// Common answers to a write-path error (raftd's strings where raftd has one).
fn write_error(e: &ApiError, not_leader_status: u16) -> Answer {
    match e {
        ApiError::NotLeader(_) => {
            Answer::text(not_leader_status, "raft.Server: Not current leader\n")
        }
        ApiError::ReadOnly => Answer::text(403, "raftdump: this node is read-only\n"),
        ApiError::ConfigChangePending => {
            Answer::text(503, "raftdump: a membership change is in progress; retry\n")
        }
        ApiError::Duplicate(n) => Answer::text(
            409,
            format!("raftdump: a member named {n:?} already exists\n"),
        ),
        ApiError::Superseded => {
            Answer::text(500, "command failed to be committed due to node failure\n")
        }
        ApiError::Timeout => Answer::text(
            503,
            "raftdump: no quorum answered in time; the write may still commit\n",
        ),
        ApiError::Stopped => Answer::text(400, "raft: Has been stopped\n"),
    }
}

/// The answer to `POST /db/{key}` for the proposal's outcome.
pub fn write_answer(
    api: &dyn Api,
    opts: &HttpOptions,
    req: &Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
    r: Result<(), ApiError>,
) -> Answer {
    match r {
        Ok(()) => Answer::empty(200),
        Err(e @ ApiError::NotLeader(_)) => {
            forwarded_or(api, opts, req, forward, write_error(&e, 400))
        }
        Err(e) => write_error(&e, 400),
    }
}

/// With `--forward` (and a known leader), the leader's answer to `req`; otherwise `a`.
fn forwarded_or(
    api: &dyn Api,
    opts: &HttpOptions,
    req: &Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
    a: Answer,
) -> Answer {
    if opts.forward && !req.forwarded {
        if let Some(url) = api.leader_url() {
            if let Some(f) = forward(&url, req) {
                return f;
            }
        }
    }
    a
}

/// The 400 for a write whose key (percent-decoded) or value is not UTF-8: raftd's JSON
/// command would store it changed (U+FFFD), and it could not be read back under its key.
fn not_utf8(key: &[u8], value: &[u8]) -> Option<Answer> {
    let what = if let Err(e) = std::str::from_utf8(key) {
        format!("key is not UTF-8 at byte {}", e.valid_up_to())
    } else if let Err(e) = std::str::from_utf8(value) {
        format!("value is not UTF-8 at byte {}", e.valid_up_to())
    } else {
        return None;
    };
    Some(Answer::text(
        400,
        format!("raftdump: the {what}; keys and values are stored as UTF-8 text\n"),
    ))
}

/// The key of a `/db/{key}` path (percent-decoded), if the path is one.
fn db_key(url: &str) -> Option<Vec<u8>> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let key = decoded.strip_prefix(b"/db/")?;
    (!key.is_empty() && !key.contains(&b'/')).then(|| key.to_vec())
}

/// Routes one request. `forward` relays a request to the leader's URL (used with `--forward`).
pub fn route(
    api: &dyn Api,
    opts: &HttpOptions,
    req: Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
) -> Answer {
    let path = req.url.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path) else {
        return Answer::text(400, "400 Bad Request");
    };
    let get = req.method == "GET";
    let post = req.method == "POST";
    let try_forward = |a: Answer| forwarded_or(api, opts, &req, forward, a);
    if let Some(key) = decoded.strip_prefix(b"/db/") {
        if key.is_empty() || key.contains(&b'/') {
            return Answer::not_found();
        }
        if key.len() > opts.max_key {
            return Answer::text(413, format!("raftdump: key over {} bytes\n", opts.max_key));
        }
        if get {
            if opts.read_mode == ReadMode::Linearizable {
                if let Err(e) = api.read_barrier(opts.timeout) {
                    return match e {
                        ApiError::NotLeader(p) => {
                            try_forward(Answer::text(400, not_leader_text(&p)))
                        }
                        other => write_error(&other, 400),
                    };
                }
            }
            // raftd's map is keyed by the decoded path; a key that is not UTF-8 was stored
            // with U+FFFD and is never found under its raw bytes.
            let value = std::str::from_utf8(key).ok().and_then(|k| api.lookup(k));
            return Answer::text(200, value.unwrap_or_default());
        }
        if post {
            if req.body.len() > opts.max_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_body),
                );
            }
            if let Some(a) = not_utf8(key, req.body) {
                return a;
            }
            let payload = command::encode_write(key, req.body);
            if opts
                .space
                .as_ref()
                .is_some_and(|g| !g.admits(payload.len()))
            {
                return no_space();
            }
            let r = api.propose(names::WRITE, payload, opts.timeout);
            return write_answer(api, opts, &req, forward, r);
        }
        return Answer::empty(405);
    }
    match decoded.as_slice() {
        b"/join" => {
            if !post {
                return Answer::empty(405);
            }
            if req.body.len() > opts.max_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_body),
                );
            }
            let (name, cs) = match decode_string_fields(req.body, ["name", "connectionString"]) {
                Ok([n, c]) => (n, c),
                Err(e) => return Answer::text(400, format!("raftdump: bad join body: {e}\n")),
            };
            if req.body.trim_ascii() == b"null" {
                return Answer::text(400, "raftdump: a null join is refused\n");
            }
            if name.is_empty() || cs.is_empty() {
                return Answer::text(
                    400,
                    "raftdump: a join needs a non-empty name and connectionString\n",
                );
            }
            let payload = command::encode_join(&name, &cs);
            match api.propose(names::JOIN, payload, opts.timeout) {
                Ok(()) => Answer::empty(200),
                Err(e @ ApiError::NotLeader(_)) => try_forward(write_error(&e, 500)),
                Err(e) => write_error(&e, 500),
            }
        }
        b"/peers" | b"/members" => {
            if !get {
                return Answer::empty(405);
            }
            let mut out = b"{".to_vec();
            for (i, (n, c)) in api.peers().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(n.as_bytes(), &mut out);
                out.extend_from_slice(b":{\"name\":");
                write_string(n.as_bytes(), &mut out);
                out.extend_from_slice(b",\"connectionString\":");
                write_string(c.as_bytes(), &mut out);
                out.push(b'}');
            }
            out.push(b'}');
            Answer::text(200, out)
        }
        b"/leader" => {
            if !get {
                return Answer::empty(405);
            }
            Answer::text(200, json_string(&api.status().4))
        }
        b"/state" => {
            if !get {
                return Answer::empty(405);
            }
            let (name, state, term, commit, _) = api.status();
            let s = format!("Name: {name}, State: {state}, Term: {term}, CommitedIndex: {commit} ");
            Answer::text(200, json_string(&s))
        }
        b"/raft/appendEntries"
        | b"/raft/requestVote"
        | b"/raft/snapshot"
        | b"/raft/snapshotRecovery" => {
            let rpc = match decoded.as_slice() {
                b"/raft/appendEntries" => Rpc::AppendEntries,
                b"/raft/requestVote" => Rpc::RequestVote,
                b"/raft/snapshot" => Rpc::Snapshot,
                _ => Rpc::SnapshotRecovery,
            };
            if req.body.len() > opts.max_rpc_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_rpc_body),
                );
            }
            rpc_http_answer(api.rpc(rpc, req.body, opts.timeout))
        }
        _ => Answer::not_found(),
    }
}

/// The HTTP answer to an RPC (goraft's bodies, and raftdump's marker header on a 200).
fn rpc_http_answer(a: RpcAnswer) -> Answer {
    match a {
        RpcAnswer::Ok(b) => Answer {
            status: 200,
            body: b,
            content_type: Some("application/octet-stream"),
            raftdump: true,
        },
        RpcAnswer::BadRequest => Answer::text(400, "\n"),
        RpcAnswer::Failed => Answer::text(500, "Failed creating response.\n"),
        RpcAnswer::Refused(why) => Answer::text(403, format!("raftdump: refused: {why}\n")),
    }
}

/// Whether a request for `url` carrying `given` in [`TOKEN_HEADER`] (empty when absent) may go
/// on: its path is not guarded by `token`, or it carries the token.
pub fn authorized(token: &str, url: &str, given: &[u8]) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    // A path that does not decode is refused by `route` anyway; check it as guarded.
    let guarded = percent_decode(path).is_none_or(|p| security::guarded(&p));
    !guarded || security::token_matches(token.as_bytes(), given)
}

/// [`TOKEN_HEADER`]'s value in `rq`, empty when absent.
fn token_header(rq: &tiny_http::Request) -> &[u8] {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(TOKEN_HEADER))
        .map_or(&b""[..], |h| h.value.as_str().as_bytes())
}

/// The header a forwarding node adds, so that a request is forwarded at most once.
pub const FORWARDED_HEADER: &str = "X-Raftdump-Forwarded";

/// Relays `req` to `leader_url` and returns its answer (`None` if the leader cannot be reached).
pub fn forward_to(agent: &ureq::Agent, leader_url: &str, req: &Request<'_>) -> Option<Answer> {
    let url = transport::url(leader_url, req.url);
    let r = agent
        .request(req.method, &url)
        .set(FORWARDED_HEADER, "1")
        .send_bytes(req.body);
    let resp = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            log::warn!("forwarding to {url}: {t}");
            return None;
        }
    };
    let status = resp.status();
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .ok()?;
    Some(Answer {
        status,
        content_type: (!body.is_empty() || status != 200).then_some(TEXT),
        body,
        raftdump: false,
    })
}

/// The HTTP server over one listener: requests are handled on the thread of their connection
/// (`workers == 0`), or handed to a pool of worker threads. Either way a write is proposed
/// without waiting and answered by a responder thread once decided.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    responders: Vec<JoinHandle<()>>,
    outbox: Arc<Outbox>,
    /// Connection-thread mode: the server (dropped on stop) and the requests being handled.
    direct: Option<(Arc<tiny_http::Server>, Arc<AtomicUsize>, Duration)>,
}

/// Counts a request in progress for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request answered on a responder thread.
enum Job {
    /// A decided write.
    Write(Pending),
    /// An answer already computed (an AppendEntries handled without waiting).
    Answer(tiny_http::Request, Answer),
}

/// A write whose answer is computed once its proposal is decided (on a responder thread).
struct Pending {
    rq: tiny_http::Request,
    method: String,
    url: String,
    body: Vec<u8>,
    forwarded: bool,
    result: Result<(), ApiError>,
}

/// Threads that answer writes decided by the runtime, so that HTTP threads never wait.
const RESPONDERS: usize = 2;

/// A batch of at least this many answers is shared between two responders.
const SHARED_BATCH: usize = 8;

/// Decided writes waiting for a responder. The runtime decides writes in batches: the first
/// of a batch wakes one idle responder, which takes every write queued by then (one wake-up
/// per batch, not per write).
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    ready: std::sync::Condvar,
    /// Writes proposed and not decided yet (counted without the lock: one per write).
    outstanding: AtomicUsize,
    /// No more writes are proposed: responders leave once nothing is outstanding.
    closed: AtomicBool,
    /// Whoever decides writes calls [`Outbox::flush`] after each batch: a push does not
    /// wake a responder itself (which would take the first job of a batch alone).
    deferred: AtomicBool,
}

#[derive(Default)]
struct OutboxState {
    jobs: Vec<Job>,
    /// Responders waiting for jobs.
    idle: usize,
    /// A responder was woken and has not taken the jobs yet.
    waking: bool,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A proposed write was decided, or an answer is ready.
    fn push(&self, p: Job) {
        let deferred = self.deferred.load(Ordering::Relaxed);
        let wake = {
            let mut s = self.lock();
            s.jobs.push(p);
            let wake = !deferred && s.idle > 0 && !s.waking;
            s.waking |= wake;
            wake
        };
        // Notified after the lock is released, so the responder does not wake up only to
        // block on it.
        if wake {
            self.ready.notify_one();
        }
    }

    /// The end of a batch of pushes: wakes a responder for them.
    fn flush(&self) {
        let wake = {
            let mut s = self.lock();
            let wake = !s.jobs.is_empty() && s.idle > 0 && !s.waking;
            s.waking |= wake;
            wake
        };
        // Notified after the lock is released, so the responder does not wake up only to
        // block on it.
        if wake {
            self.ready.notify_one();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _guard = self.lock();
        self.ready.notify_all();
    }

    /// Everything decided so far; `None` once closed with nothing left to answer.
    fn take(&self) -> Option<Vec<Job>> {
        let mut s = self.lock();
        loop {
            s.waking = false;
            if s.jobs.len() >= SHARED_BATCH && s.idle > 0 {
                // A large batch is shared with an idle responder: each answer is a loopback
                // send that also delivers it, and two cores send it in about half the time.
                // This one takes the first half (the oldest writes).
                let half = s.jobs.len() / 2;
                let rest = s.jobs.split_off(half);
                let mine = std::mem::replace(&mut s.jobs, rest);
                s.waking = true;
                drop(s);
                self.ready.notify_one();
                return Some(mine);
            }
            if !s.jobs.is_empty() {
                return Some(std::mem::take(&mut s.jobs));
            }
            if self.closed.load(Ordering::SeqCst) && self.outstanding.load(Ordering::SeqCst) == 0 {
                self.ready.notify_all();
                return None;
            }
            s.idle += 1;
            // Bounded wait: `closed` is also rechecked by time.
            s = match self.ready.wait_timeout(s, Duration::from_millis(100)) {
                Ok((s, _)) => s,
                Err(e) => e.into_inner().0,
            };
            s.idle -= 1;
        }
    }
}

/// One write proposed and not decided yet: counted in [`Outbox::outstanding`] until it
/// is pushed or dropped (a callback the runtime never called still lets the responders stop).
struct Ticket(Arc<Outbox>);

impl Ticket {
    fn new(outbox: Arc<Outbox>) -> Ticket {
        outbox.outstanding.fetch_add(1, Ordering::SeqCst);
        Ticket(outbox)
    }

    fn push(&self, p: Job) {
        self.0.push(p);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
        if self.0.closed.load(Ordering::SeqCst) {
            let _guard = self.0.lock();
            self.0.ready.notify_all();
        }
    }
}

impl Server {
    /// Serves `api` on `listener` until [`Server::stop`] or until `shutdown` is set. With
    /// `workers == 0` (the fastest: no hand-off between threads before the runtime), each
    /// request is handled on its connection's thread; otherwise `workers` threads take
    /// requests from a queue.
    pub fn start(
        listener: TcpListener,
        api: Arc<dyn Api>,
        opts: HttpOptions,
        workers: usize,
        shutdown: Arc<AtomicBool>,
    ) -> std::io::Result<Server> {
        let limits = tiny_http::Limits {
            idle_timeout: Some(opts.idle_timeout),
            write_timeout: Some(opts.idle_timeout),
            header_timeout: opts.header_timeout,
            max_request_line: MAX_REQUEST_LINE,
            max_header_line: MAX_HEADER_LINE,
            max_headers: MAX_HEADERS,
            max_header_bytes: MAX_HEADER_BYTES,
            max_connections: opts.max_connections,
        };
        let agent = security::with_token(
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_millis(500))
                .timeout(opts.timeout + Duration::from_secs(1)),
            opts.token.as_deref(),
        )
        .build();
        let opts = Arc::new(opts);
        let outbox = Arc::new(Outbox::default());
        let o = outbox.clone();
        if api.on_batch_done(Box::new(move || o.flush())) {
            outbox.deferred.store(true, Ordering::Relaxed);
        }
        let mut responders = Vec::new();
        for _ in 0..RESPONDERS {
            let (outbox, api, opts, agent) =
                (outbox.clone(), api.clone(), opts.clone(), agent.clone());
            responders.push(
                std::thread::Builder::new()
                    .name("http-respond".into())
                    .spawn(move || responder(&outbox, &*api, &opts, &agent))?,
            );
        }
        if workers == 0 {
            let inflight = Arc::new(AtomicUsize::new(0));
            let drain = opts.timeout + Duration::from_secs(1);
            let (n, stop, out) = (inflight.clone(), shutdown.clone(), outbox.clone());
            let handler: tiny_http::Handler = Arc::new(move |rq| {
                let _busy = InFlight::new(&n);
                if stop.load(Ordering::SeqCst) {
                    // Dropped unanswered: tiny_http answers 500 and the connection closes.
                    return;
                }
                handle(rq, &*api, &opts, &agent, &out);
            });
            let server =
                tiny_http::Server::from_listener_with_handler(listener, None, limits, handler)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            return Ok(Server {
                stop: shutdown,
                threads: Vec::new(),
                responders,
                outbox,
                direct: Some((Arc::new(server), inflight, drain)),
            });
        }
        let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (server, api, opts, stop, agent, outbox) = (
                server.clone(),
                api.clone(),
                opts.clone(),
                shutdown.clone(),
                agent.clone(),
                outbox.clone(),
            );
            threads.push(
                std::thread::Builder::new()
                    .name("http".into())
                    .spawn(move || worker(&server, &*api, &opts, &stop, &agent, &outbox))?,
            );
        }
        Ok(Server {
            stop: shutdown,
            threads,
            responders,
            outbox,
            direct: None,
        })
    }

    /// Stops accepting and waits for the HTTP threads (workers notice within 100 ms; in
    /// connection-thread mode, the requests being handled, for at most the request timeout
    /// and a second) and for the responders (once every write proposed is answered).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some((server, inflight, drain)) = self.direct {
            drop(server);
            let deadline = Instant::now() + drain;
            while inflight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for t in self.threads {
            let _ = t.join();
        }
        self.outbox.close();
        for t in self.responders {
            let _ = t.join();
        }
    }
}

fn responder(outbox: &Outbox, api: &dyn Api, opts: &HttpOptions, agent: &ureq::Agent) {
    while let Some(jobs) = outbox.take() {
        for job in jobs {
            let p = match job {
                Job::Write(p) => p,
                Job::Answer(rq, answer) => {
                    send(rq, answer);
                    continue;
                }
            };
            let answer = match p.result {
                // The common case, without building a `Request`.
                Ok(()) => Answer::empty(200),
                result => {
                    let req = Request {
                        method: &p.method,
                        url: &p.url,
                        body: &p.body,
                        forwarded: p.forwarded,
                    };
                    write_answer(
                        api,
                        opts,
                        &req,
                        &|leader, r| forward_to(agent, leader, r),
                        result,
                    )
                }
            };
            send(p.rq, answer);
        }
    }
}

fn send(rq: tiny_http::Request, answer: Answer) {
    let mut resp = tiny_http::Response::from_data(answer.body).with_status_code(answer.status);
    if let Some(ct) = answer.content_type {
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", ct) {
            resp.add_header(h);
        }
        if answer.status >= 400 {
            if let Ok(h) = tiny_http::Header::from_bytes("X-Content-Type-Options", "nosniff") {
                resp.add_header(h);
            }
        }
    }
    if answer.raftdump {
        if let Ok(h) = tiny_http::Header::from_bytes(RAFTDUMP_HEADER, env!("CARGO_PKG_VERSION")) {
            resp.add_header(h);
        }
    }
    let _ = rq.respond(resp);
}

fn worker(
    server: &tiny_http::Server,
    api: &dyn Api,
    opts: &HttpOptions,
    stop: &AtomicBool,
    agent: &ureq::Agent,
    outbox: &Arc<Outbox>,
) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(Duration::from_millis(100)) {
            Ok(Some(rq)) => handle(rq, api, opts, agent, outbox),
            Ok(None) => continue,
            Err(_) => break,
        }
    }
}

/// Room in the node's RPC budget for `rq`'s body (and its decoded copy), unless it is small or
/// not an RPC; 503 when none comes within the timeout.
fn rpc_reservation(
    rq: &tiny_http::Request,
    is_rpc: bool,
    opts: &HttpOptions,
) -> Result<Option<Reservation>, Answer> {
    let len = match rq.body_length() {
        Some(n) => n.min(opts.max_rpc_body.saturating_add(1)),
        None => opts.max_rpc_body,
    };
    if !is_rpc || len <= SMALL_RPC_BODY {
        return Ok(None);
    }
    match opts.rpc_budget.reserve(len.saturating_mul(2), opts.timeout) {
        Some(r) => Ok(Some(r)),
        None => Err(Answer::text(
            503,
            format!(
                "raftdump: over {} bytes of RPC bodies in flight; retry\n",
                opts.rpc_budget.cap()
            ),
        )),
    }
}

/// Answers one request; a write is proposed without waiting, and a responder thread answers
/// it once decided.
fn handle(
    mut rq: tiny_http::Request,
    api: &dyn Api,
    opts: &HttpOptions,
    agent: &ureq::Agent,
    outbox: &Arc<Outbox>,
) {
    if let Some(token) = &opts.token {
        if !authorized(token, rq.url(), token_header(&rq)) {
            // raftd reads no body here: the connection is closed after the answer.
            send(
                rq,
                Answer::text(
                    401,
                    format!("raftdump: this route needs a valid {TOKEN_HEADER} header\n"),
                ),
            );
            return;
        }
    }
    let is_rpc = rq.url().starts_with("/raft/");
    let limit = if is_rpc {
        opts.max_rpc_body
    } else {
        opts.max_body
    } as u64
        + 1;
    let _reserved = match rpc_reservation(&rq, is_rpc, opts) {
        Ok(r) => r,
        Err(a) => {
            send(rq, a);
            return;
        }
    };
    // Sized from the length when known: growing by doubling would hold up to twice the body.
    let known = rq
        .body_length()
        .map_or(0, |n| (n as u64).min(limit) as usize);
    let mut body = Vec::with_capacity(known);
    if rq.as_reader().take(limit).read_to_end(&mut body).is_err() {
        // raftd: a body that cannot be read is a 400 with an empty body.
        send(rq, Answer::text(400, if is_rpc { "\n" } else { "" }));
        return;
    }
    // An AppendEntries is handed to the runtime without waiting: this thread goes back to
    // reading the connection, where the leader's next request may already wait (pipelining),
    // and a responder answers once the entries are durable. Answers go out in request order
    // (tiny_http orders a connection's answers).
    if is_rpc
        && rq.url() == "/raft/appendEntries"
        && rq.method() == &tiny_http::Method::Post
        && body.len() <= opts.max_rpc_body
    {
        let ticket = Ticket::new(outbox.clone());
        let mut rq = Some(rq);
        api.rpc_async(
            Rpc::AppendEntries,
            &body,
            opts.timeout,
            Box::new(move |answer| {
                if let Some(rq) = rq.take() {
                    let answer = rpc_http_answer(answer);
                    // The runtime's thread writes the answer itself when the answers before
                    // it on the connection are written (the leader's stream: always), which
                    // saves waking a responder on the path of every replication round. An
                    // answer that would wait for another one goes to a responder.
                    if rq.answer_ready() {
                        send(rq, answer);
                    } else {
                        ticket.push(Job::Answer(rq, answer));
                    }
                }
            }),
        );
        return;
    }
    let method = rq.method().as_str().to_ascii_uppercase();
    let url = rq.url().to_string();
    let forwarded = rq.headers().iter().any(|h| h.field.equiv(FORWARDED_HEADER));
    // A write is proposed without waiting: the runtime calls back when it is decided and a
    // responder thread answers. Everything else is answered here by `route`.
    if method == "POST" && body.len() <= opts.max_body {
        if let Some(key) = db_key(&url).filter(|k| k.len() <= opts.max_key) {
            if let Some(a) = not_utf8(&key, &body) {
                send(rq, a);
                return;
            }
            let payload = command::encode_write(&key, &body);
            if opts
                .space
                .as_ref()
                .is_some_and(|g| !g.admits(payload.len()))
            {
                send(rq, no_space());
                return;
            }
            let ticket = Ticket::new(outbox.clone());
            let mut pending = Some((rq, method, url, body, forwarded));
            api.propose_async(
                names::WRITE,
                payload,
                opts.timeout,
                Box::new(move |result| {
                    if let Some((rq, method, url, body, forwarded)) = pending.take() {
                        ticket.push(Job::Write(Pending {
                            rq,
                            method,
                            url,
                            body,
                            forwarded,
                            result,
                        }));
                    }
                }),
            );
            return;
        }
    }
    let req = Request {
        method: &method,
        url: &url,
        body: &body,
        forwarded,
    };
    let answer = route(api, opts, req, &|leader, r| forward_to(agent, leader, r));
    send(rq, answer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An Api that records proposals and RPCs and answers them all.
    #[derive(Default)]
    struct Fake {
        proposed: Mutex<Vec<String>>,
        rpcs: Mutex<usize>,
    }

    impl Api for Fake {
        fn read_barrier(&self, _: Duration) -> Result<(), ApiError> {
            Ok(())
        }
        fn lookup(&self, _: &str) -> Option<String> {
            None
        }
        fn propose(&self, name: &str, _: Vec<u8>, _: Duration) -> Result<(), ApiError> {
            self.proposed.lock().unwrap().push(name.to_string());
            Ok(())
        }
        fn status(&self) -> (String, String, u64, u64, String) {
            Default::default()
        }
        fn peers(&self) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
        fn leader_url(&self) -> Option<String> {
            None
        }
        fn rpc(&self, _: Rpc, _: &[u8], _: Duration) -> RpcAnswer {
            *self.rpcs.lock().unwrap() += 1;
            RpcAnswer::BadRequest
        }
    }

    fn call(api: &Fake, opts: &HttpOptions, method: &str, url: &str, body: &[u8]) -> Answer {
        let req = Request {
            method,
            url,
            body,
            forwarded: false,
        };
        route(api, opts, req, &|_, _| None)
    }

    fn text(a: &Answer) -> (u16, &str) {
        (a.status, std::str::from_utf8(&a.body).unwrap())
    }

    #[test]
    fn limits_answer_413_before_anything_is_proposed() {
        let api = Fake::default();
        let opts = HttpOptions {
            max_rpc_body: 16,
            ..HttpOptions::default()
        };
        let long_key = format!("/db/{}", "k".repeat(8193));
        for m in ["GET", "POST"] {
            let a = call(&api, &opts, m, &long_key, b"v");
            assert_eq!(text(&a), (413, "raftdump: key over 8192 bytes\n"));
        }
        let a = call(&api, &opts, "POST", "/db/k", &vec![b'v'; (1 << 20) + 1]);
        assert_eq!(text(&a), (413, "raftdump: body over 1048576 bytes\n"));
        let a = call(&api, &opts, "POST", "/raft/appendEntries", &[0; 17]);
        assert_eq!(text(&a), (413, "raftdump: body over 16 bytes\n"));
        assert!(api.proposed.lock().unwrap().is_empty());
        assert_eq!(*api.rpcs.lock().unwrap(), 0);
        let a = call(
            &api,
            &opts,
            "POST",
            &format!("/db/{}", "k".repeat(8192)),
            b"v",
        );
        assert_eq!(a.status, 200);
        let a = call(&api, &opts, "POST", "/raft/appendEntries", &[0; 16]);
        assert_eq!(text(&a), (400, "\n"));
    }

    #[test]
    fn the_token_gate_closes_guarded_and_undecodable_paths_only() {
        let t = "secret";
        for url in [
            "/join",
            "/raft/appendEntries",
            "/raft/%61ppendEntries?x",
            "/%6Aoin",
            "/%zz",
        ] {
            assert!(!authorized(t, url, b""), "{url}");
            assert!(!authorized(t, url, b"secreT"), "{url}");
            assert!(!authorized(t, url, b"secret "), "{url}");
            assert!(authorized(t, url, b"secret"), "{url}");
        }
        for url in ["/db/join", "/state", "/joinx", "/raft", "/db/k?/join"] {
            assert!(authorized(t, url, b""), "{url}");
        }
    }

    #[test]
    fn bad_joins_are_refused_without_a_proposal() {
        let api = Fake::default();
        let opts = HttpOptions::default();
        let cases: [(&[u8], &str); 4] = [
            (b"null", "raftdump: a null join is refused\n"),
            (
                br#"{"name":"","connectionString":"http://a:1"}"#,
                "raftdump: a join needs a non-empty name and connectionString\n",
            ),
            (
                br#"{"name":"n","connectionString":""}"#,
                "raftdump: a join needs a non-empty name and connectionString\n",
            ),
            (
                b"{}",
                "raftdump: a join needs a non-empty name and connectionString\n",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(text(&call(&api, &opts, "POST", "/join", body)), (400, want));
        }
        assert!(api.proposed.lock().unwrap().is_empty());
    }

    #[test]
    fn the_space_guard_refuses_writes_with_507() {
        let tmp = tempfile::tempdir().unwrap();
        let api = Fake::default();
        let opts = HttpOptions {
            space: Some(SpaceGuard::new(tmp.path().to_owned(), u64::MAX / 2)),
            ..HttpOptions::default()
        };
        let a = call(&api, &opts, "POST", "/db/k", b"v");
        assert_eq!(a.status, 507);
        assert!(api.proposed.lock().unwrap().is_empty());
        let ok = SpaceGuard::new(tmp.path().to_owned(), 0);
        assert!(ok.admits(10));
    }

    /// Sends `parts` on one connection (pausing between them) and returns everything read
    /// back until the server closes it or 2 s pass.
    fn raw(addr: std::net::SocketAddr, parts: &[&[u8]]) -> String {
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for p in parts {
            c.write_all(p).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// An Api that keeps the callbacks of writes and AppendEntries for the test to call, as
    /// the runtime's thread would.
    #[derive(Default)]
    struct Holding {
        writes: Mutex<Vec<Done>>,
        rpcs: Mutex<Vec<RpcDone>>,
    }

    impl Api for Holding {
        fn read_barrier(&self, _: Duration) -> Result<(), ApiError> {
            Ok(())
        }
        fn lookup(&self, _: &str) -> Option<String> {
            None
        }
        fn propose(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), ApiError> {
            Ok(())
        }
        fn propose_async(&self, _: &str, _: Vec<u8>, _: Duration, done: Done) {
            self.writes.lock().unwrap().push(done);
        }
        fn status(&self) -> (String, String, u64, u64, String) {
            Default::default()
        }
        fn peers(&self) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
        fn leader_url(&self) -> Option<String> {
            None
        }
        fn rpc(&self, _: Rpc, _: &[u8], _: Duration) -> RpcAnswer {
            RpcAnswer::Failed
        }
        fn rpc_async(&self, _: Rpc, _: &[u8], _: Duration, done: RpcDone) {
            self.rpcs.lock().unwrap().push(done);
        }
    }

    /// Waits (bounded) until `api` holds `writes` write and `rpcs` RPC callbacks.
    fn wait_held(api: &Holding, writes: usize, rpcs: usize) {
        for _ in 0..500 {
            if api.writes.lock().unwrap().len() == writes && api.rpcs.lock().unwrap().len() == rpcs
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the requests never reached the api");
    }

    /// Calls `f` on another thread and checks that it returns within 2 s (a callback runs on
    /// the runtime's thread and must never wait for another answer).
    fn returns_promptly(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(2))
            .expect("the callback blocked");
    }

    /// An AppendEntries answer that is decided before the write pipelined ahead of it on the
    /// same connection is not written by the deciding thread (it would wait for the write's
    /// answer): it goes out after the write's answer, in request order. An answer whose turn
    /// has come is written by the deciding thread itself, before its callback returns.
    #[test]
    fn rpc_answers_keep_request_order_and_never_block_the_runtime() {
        use std::io::Write;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Arc::new(Holding::default());
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server::start(listener, api.clone(), HttpOptions::default(), 0, stop).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(
            b"POST /db/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv\
              POST /raft/appendEntries HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nae",
        )
        .unwrap();
        wait_held(&api, 1, 1);
        let rpc = api.rpcs.lock().unwrap().pop().unwrap();
        returns_promptly(move || rpc(RpcAnswer::Ok(vec![8, 1])));
        // Nothing is written before the write's answer.
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 1024];
        assert!(
            std::io::Read::read(&mut c, &mut buf).is_err(),
            "an answer went out before the write's"
        );
        let write = api.writes.lock().unwrap().pop().unwrap();
        returns_promptly(move || write(Ok(())));
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = std::io::Read::read(&mut c, &mut buf).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
            if got.ends_with(&[8, 1]) {
                break;
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let first = text.find("HTTP/1.1 200").unwrap();
        let second = text[first + 1..].find("HTTP/1.1 200").unwrap() + first + 1;
        assert!(text[..second].contains("Content-Length: 0\r\n"), "{text}");
        assert!(text[second..].contains("Content-Length: 2\r\n"), "{text}");
        assert!(got.ends_with(&[8, 1]), "{text}");

        // Now the next AppendEntries' turn has come when it is decided: its answer is on the
        // socket as soon as the callback returns.
        c.write_all(b"POST /raft/appendEntries HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nae")
            .unwrap();
        wait_held(&api, 0, 1);
        let rpc = api.rpcs.lock().unwrap().pop().unwrap();
        returns_promptly(move || rpc(RpcAnswer::Ok(vec![8, 2])));
        c.set_nonblocking(true).unwrap();
        let n = std::io::Read::read(&mut c, &mut buf).expect("written by the deciding thread");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
        assert!(buf[..n].ends_with(&[8, 2]), "{:?}", &buf[..n]);
        drop(c);
        server.stop();
    }

    #[test]
    fn both_modes_answer_heads_split_anywhere_and_bound_header_lines() {
        // 0: on the connection's thread; 4: through the worker queue.
        for workers in [0, 4] {
            serves_heads_split_anywhere_and_bounds_header_lines(workers);
        }
    }

    fn serves_heads_split_anywhere_and_bounds_header_lines(workers: usize) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Arc::new(Fake::default());
        let opts = HttpOptions {
            idle_timeout: Duration::from_millis(500),
            ..HttpOptions::default()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server::start(listener, api.clone(), opts, workers, stop).unwrap();
        // Two requests on one connection, the second split between CR and LF, a bare LF
        // inside a header value (part of the line, as before), then a write.
        let text = raw(
            addr,
            &[
                b"GET /leader HTTP/1.1\r\nHost: x\r\n\r\nGET /lea",
                b"der HTTP/1.1\r",
                b"\nX-A: a\nb\r\n\r\nPOST /db/k HTTP/1.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv",
            ],
        );
        assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
        assert_eq!(*api.proposed.lock().unwrap(), ["write"]);
        // A header line of MAX_HEADER_LINE - 1 bytes (its CR counted) is the longest
        // accepted; one byte more gets 431 and the connection is closed.
        let line = |n: usize| format!("X-A: {}", "a".repeat(n - 5));
        let head = |n: usize| {
            format!(
                "GET /leader HTTP/1.1\r\n{}\r\nConnection: close\r\n\r\n",
                line(n)
            )
        };
        let longest = MAX_HEADER_LINE - 2;
        assert!(raw(addr, &[head(longest).as_bytes()]).starts_with("HTTP/1.1 200"));
        assert!(raw(addr, &[head(longest + 1).as_bytes()]).starts_with("HTTP/1.1 431 "));
        server.stop();
    }

    #[test]
    fn the_space_guard_counts_what_it_admitted_until_it_asks_again() {
        let tmp = tempfile::tempdir().unwrap();
        let reserve = 1 << 20;
        let mut g = SpaceGuard::new(tmp.path().to_owned(), reserve);
        g.refresh = Duration::from_secs(3600);
        // As if the file system had said: room for three writes of 1000 bytes (+256 each).
        *g.known.lock().unwrap() = Some((Instant::now(), reserve + 3 * 1256 + 600));
        assert_eq!((0..6).take_while(|_| g.admits(1000)).count(), 3);
        assert!(!g.admits(1000));
        assert!(g.admits(600 - 256));
        assert_eq!(g.known.lock().unwrap().unwrap().1, reserve);
        // Once the figure is old, the file system is asked again.
        g.refresh = Duration::ZERO;
        // (the cached figure would refuse; the temp dir's file system has more than 1 MiB).
        assert!(g.admits(1000));
    }
}
