//! Talking to peers: the [`Transport`] that carries goraft's RPC bodies (their codec is
//! `format::rpc`), over HTTP with ureq (keep-alive, timeouts), one ordered stream per peer.
//!
//! The transport never sends snapshot RPCs on its own: only on the core's
//! [`Action::SendSnapshot`](super::core::Action), which the core emits for raftdump peers only.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::core::{AppendRequest, AppendResponse, Event, SentAppend, SnapshotInstall, VoteRequest};
/// The codec, re-exported where the transport's users have always found it.
pub use crate::format::rpc::{
    decode_append_request, decode_append_response, decode_snapshot_install,
    decode_snapshot_install_response, decode_snapshot_request, decode_snapshot_response,
    decode_vote_request, decode_vote_response, encode_append_request, encode_append_request_into,
    encode_append_response, encode_snapshot_install, encode_snapshot_install_response,
    encode_snapshot_request, encode_snapshot_response, encode_vote_request, encode_vote_response,
    DecodeError,
};
use crate::model::Peer;

/// The header raftdump's server adds to its RPC answers; goraft nodes never send it, so a
/// leader knows which peers may receive snapshots.
pub const RAFTDUMP_HEADER: &str = "X-Raftdump";

/// Largest RPC answer read (bytes).
const MAX_ANSWER: u64 = 1 << 20;

/// A message for a peer.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// An AppendEntriesRequest; answer with [`Event::AppendResult`].
    Append {
        /// The peer.
        to: Peer,
        /// The request.
        req: AppendRequest,
        /// Echoed back.
        sent: SentAppend,
    },
    /// A RequestVote; answer with [`Event::VoteResult`].
    Vote {
        /// The peer.
        to: Peer,
        /// The request.
        req: VoteRequest,
    },
    /// A snapshot transfer (SnapshotRequest, then SnapshotRecoveryRequest); answer with
    /// [`Event::SnapshotResult`].
    Snapshot {
        /// The peer.
        to: Peer,
        /// The snapshot.
        install: SnapshotInstall,
    },
}

/// Carries messages to peers; results come back as [`Event`]s through the sink it was built
/// with.
///
/// # Correctness
/// - AppendEntries to one peer are delivered in the order they were sent (one stream);
///   requests queued behind one in flight may be merged into one when they are contiguous,
///   and each still gets its own result.
/// - Every `Append` gets exactly one `AppendResult` (with `resp: None` on any failure or
///   timeout), so the core's in-flight window always drains.
pub trait Transport: Send {
    /// Queues `msg`, or writes it on an open connection; never waits for a connection or an
    /// answer. (A write made here is at most 64 KiB, on a connection where the requests in
    /// flight are bounded by the core's window, so it fits the socket's buffer.)
    fn send(&mut self, msg: Outbound);
}

/// An in-memory transport: messages wait in an outbox for whoever drives the network (the
/// simulator in `node::sim`, which delivers, delays, drops and answers them).
#[derive(Debug, Default, Clone)]
pub struct MemTransport {
    outbox: Vec<Outbound>,
}

impl MemTransport {
    /// An empty outbox.
    pub fn new() -> Self {
        MemTransport::default()
    }

    /// Takes every message sent so far, in order.
    pub fn drain(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.outbox)
    }
}

impl Transport for MemTransport {
    fn send(&mut self, msg: Outbound) {
        self.outbox.push(msg);
    }
}

/// Where results go.
pub type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// Timeouts of the HTTP transport.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// A whole AppendEntries call.
    pub append: Duration,
    /// A whole RequestVote call.
    pub vote: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_millis(200),
            append: Duration::from_millis(2_000),
            vote: Duration::from_millis(500),
        }
    }
}

/// `connectionString` + path, without a doubled slash.
pub fn url(connection_string: &str, path: &str) -> String {
    format!("{}{}", connection_string.trim_end_matches('/'), path)
}

/// The HTTP client transport: one worker thread and keep-alive connection per peer. For a
/// plain `http://` peer the caller writes an AppendEntries on the open connection itself when
/// nothing is queued for the worker (see `DirectState`); the worker connects, and writes what
/// queues up behind it.
pub struct HttpTransport {
    agent: ureq::Agent,
    vote_agent: ureq::Agent,
    sink: Sink,
    streams: HashMap<String, PeerStream>,
    timeouts: Timeouts,
    token: Option<String>,
}

/// The AppendEntries stream to one peer: its worker thread's queue and, for a pipelined
/// target, the connection the worker and the runtime share.
struct PeerStream {
    tx: Sender<Queued>,
    /// `None` for targets that go through ureq (always the worker).
    direct: Option<Arc<DirectState>>,
    /// The request head (pipelined targets).
    head: String,
    /// Reused buffers for requests written on the caller's thread.
    body: Vec<u8>,
    msg: Vec<u8>,
}

/// What the runtime's thread and a peer's worker share: the open connection, and how many
/// requests the worker holds (queued or being written). The caller writes a request itself
/// only when the worker holds none (so order is kept) and the connection is open: that
/// saves a thread hand-off (a wake-up and a context switch) on the path of every round.
#[derive(Default)]
struct DirectState {
    conn: std::sync::Mutex<Option<PipeConn>>,
    /// Incremented by the caller before it queues a request, decremented by the worker
    /// under the `conn` lock once the request is written (or failed).
    queued: std::sync::atomic::AtomicUsize,
    /// Requests the caller wrote itself (for tests and debugging).
    direct_writes: std::sync::atomic::AtomicUsize,
}

/// Largest request the runtime's thread writes itself (bigger ones, such as a catch-up
/// batch, go through the worker: a write that fills the socket buffer would block).
const MAX_DIRECT: usize = 64 << 10;

/// POSTs `body`; returns the answer's body (whatever the status, as goraft does) and whether
/// the peer is a raftdump node.
pub fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Option<(Vec<u8>, bool)> {
    let resp = match agent
        .post(url)
        .set("Content-Type", "application/protobuf")
        .send_bytes(body)
    {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            log::debug!("POST {url}: {t}");
            return None;
        }
    };
    let raftdump = resp.header(RAFTDUMP_HEADER).is_some();
    let mut out = Vec::new();
    resp.into_reader()
        .take(MAX_ANSWER)
        .read_to_end(&mut out)
        .ok()?;
    Some((out, raftdump))
}

impl HttpTransport {
    /// A transport whose results go to `sink`.
    pub fn new(sink: Sink, t: Timeouts) -> Self {
        Self::with_token(sink, t, None)
    }

    /// A transport whose requests carry the cluster `token` (see [`super::security`]).
    pub fn with_token(sink: Sink, t: Timeouts, token: Option<&str>) -> Self {
        let agent = super::security::with_token(
            ureq::AgentBuilder::new()
                .timeout_connect(t.connect)
                .timeout(t.append)
                .max_idle_connections_per_host(4),
            token,
        )
        .build();
        let vote_agent = super::security::with_token(
            ureq::AgentBuilder::new()
                .timeout_connect(t.connect)
                .timeout(t.vote),
            token,
        )
        .build();
        HttpTransport {
            agent,
            vote_agent,
            sink,
            streams: HashMap::new(),
            timeouts: t,
            token: token.map(str::to_owned),
        }
    }

    fn stream(&mut self, to: &Peer) -> &mut PeerStream {
        let key = to.connection_string.clone();
        let agent = self.agent.clone();
        let sink = self.sink.clone();
        let url = url(&to.connection_string, "/raft/appendEntries");
        let (timeouts, token) = (self.timeouts, self.token.clone());
        self.streams.entry(key).or_insert_with(|| {
            let (tx, rx) = mpsc::channel();
            let target = Target::parse(&url, token.as_deref());
            let direct = target.as_ref().map(|_| Arc::new(DirectState::default()));
            let head = target.as_ref().map_or(String::new(), |t| t.head.clone());
            let shared = direct.clone();
            std::thread::Builder::new()
                .name("raft-peer".into())
                .spawn(move || match (target, shared) {
                    // Plain http:// URLs (all of raftd's): pipelined on one connection.
                    (Some(target), Some(shared)) => {
                        pipelined_worker(target, timeouts, rx, sink, &shared)
                    }
                    _ => stream_worker(agent, url, rx, sink),
                })
                .map_err(|e| log::error!("cannot start a peer thread: {e}"))
                .ok();
            PeerStream {
                tx,
                direct,
                head,
                body: Vec::with_capacity(4096),
                msg: Vec::with_capacity(4096),
            }
        })
    }
}

impl PeerStream {
    /// Writes `req` on the open connection from the caller's thread when nothing is queued
    /// for the worker and the lock is free at once; otherwise hands it back.
    fn try_direct(
        &mut self,
        req: AppendRequest,
        sent: SentAppend,
    ) -> Option<(AppendRequest, SentAppend)> {
        let Some(direct) = &self.direct else {
            return Some((req, sent));
        };
        let Ok(mut conn) = direct.conn.try_lock() else {
            return Some((req, sent));
        };
        if direct.queued.load(Ordering::SeqCst) > 0 || conn.is_none() {
            return Some((req, sent));
        }
        self.body.clear();
        encode_append_request_into(&req, &mut self.body);
        if self.body.len() > MAX_DIRECT {
            return Some((req, sent));
        }
        build_message(&self.head, &self.body, &mut self.msg);
        if let Err(sent) = write_request(&mut conn, &self.msg, vec![sent]) {
            // The connection was marked dead after the check: the worker's turn.
            if let Some(s) = sent.into_iter().next() {
                return Some((req, s));
            }
        }
        direct.direct_writes.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `head` + the body's length + the body: one HTTP request, written with one call.
fn build_message(head: &str, body: &[u8], msg: &mut Vec<u8>) {
    msg.clear();
    msg.extend_from_slice(head.as_bytes());
    let mut n = itoa::Buffer::new();
    msg.extend_from_slice(n.format(body.len()).as_bytes());
    msg.extend_from_slice(b"\r\n\r\n");
    msg.extend_from_slice(body);
}

/// Writes `msg` on `conn`, its results owed to `sents`. `Err(sents)` when the connection
/// was already dead (nothing written: the caller fails them or retries); a write that fails
/// drops the connection, and its reader fails what is outstanding, this request included.
fn write_request(
    conn: &mut Option<PipeConn>,
    msg: &[u8],
    sents: Vec<SentAppend>,
) -> Result<(), Vec<SentAppend>> {
    let Some(c) = conn.as_mut() else {
        return Err(sents);
    };
    {
        let mut o = lock_outstanding(&c.outstanding);
        if o.dead {
            drop(o);
            *conn = None;
            return Err(sents);
        }
        o.queue.push_back((std::time::Instant::now(), sents));
    }
    if let Err(e) = std::io::Write::write_all(&mut c.stream, msg) {
        log::debug!("AppendEntries: {e}");
        *conn = None;
    }
    Ok(())
}

/// An AppendEntries waiting for its peer's stream: (peer name, request, what to echo).
type Queued = (String, AppendRequest, SentAppend);

/// Most entries in one merged request.
const MAX_MERGED_ENTRIES: usize = 4096;

fn contiguous(a: &AppendRequest, b: &AppendRequest) -> bool {
    a.term == b.term
        && a.leader == b.leader
        && b.prev_index == a.prev_index + a.entries.len() as u64
        && a.entries.len() + b.entries.len() <= MAX_MERGED_ENTRIES
}

/// Takes what queued up behind `first` and merges contiguous requests: `(peer, request,
/// what each merged request echoes)`, in order.
fn drain_merged(
    first: Queued,
    rx: &Receiver<Queued>,
) -> Vec<(String, AppendRequest, Vec<SentAppend>)> {
    // Whatever queued up while the last request was in flight goes out as one request:
    // the batching happens at send time, not at queue time.
    let mut queue = vec![first];
    while queue.len() < 256 {
        match rx.try_recv() {
            Ok(m) => queue.push(m),
            Err(_) => break,
        }
    }
    let mut out = Vec::new();
    let mut queue = queue.into_iter().peekable();
    while let Some((peer, mut req, sent)) = queue.next() {
        let mut sents = vec![sent];
        while let Some((_, next, _)) = queue.peek() {
            if !contiguous(&req, next) {
                break;
            }
            let Some((_, next, s)) = queue.next() else {
                break;
            };
            req.commit = req.commit.max(next.commit);
            req.entries.extend(next.entries);
            sents.push(s);
        }
        out.push((peer, req, sents));
    }
    out
}

fn stream_worker(agent: ureq::Agent, url: String, rx: Receiver<Queued>, sink: Sink) {
    while let Ok(first) = rx.recv() {
        for (peer, req, sents) in drain_merged(first, &rx) {
            let body = encode_append_request(&req);
            let (resp, raftdump) = match post(&agent, &url, &body) {
                Some((b, raftdump)) => (decode_append_response(&b).ok(), raftdump),
                None => (None, false),
            };
            for sent in sents {
                sink(Event::AppendResult {
                    peer: peer.clone(),
                    sent,
                    resp,
                    raftdump,
                });
            }
        }
    }
}

/// A peer's AppendEntries endpoint for the pipelined client: a plain `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `host:port` to connect to (port 80 added when absent).
    connect: String,
    /// The request head up to (without) the Content-Length value.
    head: String,
}

impl Target {
    /// `None` for anything but `http://authority/path` (those go through ureq).
    fn parse(url: &str, token: Option<&str>) -> Option<Target> {
        let rest = url.strip_prefix("http://")?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if auth.is_empty() || auth.contains(['@', '?', '#']) || !plain(auth) || !plain(path) {
            return None;
        }
        let has_port = auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let connect = if has_port {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        if token.is_some_and(|t| !t.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b))) {
            return None;
        }
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {auth}\r\nContent-Type: application/protobuf\r\n"
        );
        if let Some(t) = token {
            head.push_str(&format!("{}: {t}\r\n", super::security::TOKEN_HEADER));
        }
        head.push_str("Content-Length: ");
        Some(Target { connect, head })
    }
}

/// Requests written and not answered yet, oldest first, shared by a connection's writer and
/// its reader thread.
#[derive(Default)]
struct Outstanding {
    /// When each was written, and what each echoes.
    queue: std::collections::VecDeque<(std::time::Instant, Vec<SentAppend>)>,
    /// The reader has stopped: it answered everything queued with failures.
    dead: bool,
}

/// One keep-alive connection with pipelined requests: the writer sends without waiting for
/// answers; a reader thread matches answers to requests in order (HTTP/1.1 answers come in
/// request order) and gives each its result.
struct PipeConn {
    stream: std::net::TcpStream,
    outstanding: Arc<std::sync::Mutex<Outstanding>>,
}

impl Drop for PipeConn {
    fn drop(&mut self) {
        // The reader sees the end of the stream and fails what is still outstanding.
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

fn lock_outstanding(o: &std::sync::Mutex<Outstanding>) -> std::sync::MutexGuard<'_, Outstanding> {
    o.lock().unwrap_or_else(|e| e.into_inner())
}

impl PipeConn {
    fn open(target: &Target, t: Timeouts, peer: &str, sink: &Sink) -> std::io::Result<PipeConn> {
        use std::net::ToSocketAddrs;
        let mut last = None;
        let mut stream = None;
        for addr in target.connect.to_socket_addrs()? {
            match std::net::TcpStream::connect_timeout(&addr, t.connect) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => return Err(last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into())),
        };
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(t.append))?;
        stream.set_read_timeout(Some(t.append))?;
        let outstanding = Arc::new(std::sync::Mutex::new(Outstanding::default()));
        let reader = stream.try_clone()?;
        let (o, peer, sink) = (outstanding.clone(), peer.to_string(), sink.clone());
        std::thread::Builder::new()
            .name("raft-peer-read".into())
            .spawn(move || read_answers(reader, &o, &peer, &sink, t.append))?;
        Ok(PipeConn {
            stream,
            outstanding,
        })
    }
}

/// Reads answers until the connection fails or closes, then fails everything outstanding.
fn read_answers(
    mut stream: std::net::TcpStream,
    outstanding: &std::sync::Mutex<Outstanding>,
    peer: &str,
    sink: &Sink,
    timeout: Duration,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let result = |sent: SentAppend, resp: Option<AppendResponse>, raftdump: bool| {
        sink(Event::AppendResult {
            peer: peer.to_string(),
            sent,
            resp,
            raftdump,
        })
    };
    'conn: loop {
        // Every complete answer in the buffer.
        loop {
            match parse_answer(&buf) {
                Ok(Some(a)) => {
                    buf.drain(..a.len);
                    let front = lock_outstanding(outstanding).queue.pop_front();
                    let Some((_, sents)) = front else {
                        // An answer to nothing: the stream is out of step.
                        break 'conn;
                    };
                    let resp = decode_append_response(&a.body).ok();
                    for sent in sents {
                        result(sent, resp, a.raftdump);
                    }
                    if a.close {
                        break 'conn;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::debug!("AppendEntries answer from {peer}: {e}");
                    break 'conn;
                }
            }
        }
        match std::io::Read::read(&mut stream, &mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Idle is fine; a request unanswered for the whole timeout is not.
                let late = lock_outstanding(outstanding)
                    .queue
                    .front()
                    .is_some_and(|(at, _)| at.elapsed() >= timeout);
                if late {
                    log::debug!("AppendEntries to {peer}: no answer in {timeout:?}");
                    break;
                }
            }
            Err(e) => {
                log::debug!("AppendEntries to {peer}: {e}");
                break;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let failed = {
        let mut o = lock_outstanding(outstanding);
        o.dead = true;
        std::mem::take(&mut o.queue)
    };
    for (_, sents) in failed {
        for sent in sents {
            result(sent, None, false);
        }
    }
}

/// One HTTP answer parsed from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
struct ParsedAnswer {
    /// Bytes it took.
    len: usize,
    body: Vec<u8>,
    /// It carried [`RAFTDUMP_HEADER`].
    raftdump: bool,
    /// The server closes the connection after it.
    close: bool,
}

/// Largest answer head accepted (bytes).
const MAX_HEAD: usize = 16 << 10;

/// The answer at the front of `b`: `Ok(None)` while it is incomplete. 1xx answers are
/// skipped. The body is delimited by Content-Length or chunked encoding (Go's server uses
/// one of them on a keep-alive connection).
fn parse_answer(b: &[u8]) -> Result<Option<ParsedAnswer>, String> {
    let mut at = 0;
    loop {
        let rest = &b[at..];
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            if rest.len() > MAX_HEAD {
                return Err("answer head too long".into());
            }
            return Ok(None);
        };
        let head = std::str::from_utf8(&rest[..end]).map_err(|_| "answer head not text")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status: u16 = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let body_at = at + end + 4;
        if (100..200).contains(&status) {
            at = body_at;
            continue;
        }
        let (mut length, mut chunked, mut raftdump) = (None, false, false);
        let mut close = status_line.starts_with("HTTP/1.0");
        for line in lines {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = Some(v.parse::<usize>().map_err(|_| "bad Content-Length")?);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                let v = v.to_ascii_lowercase();
                close = v.contains("close") || (close && !v.contains("keep-alive"));
            } else if k.eq_ignore_ascii_case(RAFTDUMP_HEADER) {
                raftdump = true;
            }
        }
        let max = MAX_ANSWER as usize;
        if chunked {
            let mut body = Vec::new();
            let mut p = body_at;
            loop {
                let Some(nl) = b[p..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                let size_text = std::str::from_utf8(&b[p..p + nl]).map_err(|_| "bad chunk")?;
                let size_text = size_text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
                p += nl + 2;
                if size == 0 {
                    // Trailers, up to an empty line.
                    loop {
                        let Some(nl) = b[p..].windows(2).position(|w| w == b"\r\n") else {
                            return Ok(None);
                        };
                        p += nl + 2;
                        if nl == 0 {
                            return Ok(Some(ParsedAnswer {
                                len: p,
                                body,
                                raftdump,
                                close,
                            }));
                        }
                    }
                }
                if size > max || body.len() + size > max {
                    return Err("answer too long".into());
                }
                if b.len() < p + size + 2 {
                    return Ok(None);
                }
                body.extend_from_slice(&b[p..p + size]);
                p += size + 2;
            }
        }
        let length = match length {
            Some(n) => n,
            None if status == 204 || status == 304 => 0,
            None => return Err("answer without a length on a keep-alive connection".into()),
        };
        if length > max {
            return Err("answer too long".into());
        }
        if b.len() < body_at + length {
            return Ok(None);
        }
        return Ok(Some(ParsedAnswer {
            len: body_at + length,
            body: b[body_at..body_at + length].to_vec(),
            raftdump,
            close,
        }));
    }
}

/// The AppendEntries stream to one peer over [`PipeConn`]s: each (merged) request is written
/// at once, without waiting for the answer to the one before, so a follower can receive the
/// next batch while it fsyncs the last. Order is kept: one connection at a time; after a
/// failure every outstanding request fails (`resp: None`) and a new connection is opened for
/// the next one.
fn pipelined_worker(
    target: Target,
    t: Timeouts,
    rx: Receiver<Queued>,
    sink: Sink,
    shared: &DirectState,
) {
    let mut body = Vec::with_capacity(4096);
    let mut msg = Vec::with_capacity(4096);
    while let Ok(first) = rx.recv() {
        for (peer, req, sents) in drain_merged(first, &rx) {
            body.clear();
            encode_append_request_into(&req, &mut body);
            build_message(&target.head, &body, &mut msg);
            let n = sents.len();
            let mut conn = shared.conn.lock().unwrap_or_else(|e| e.into_inner());
            // One connection attempt a request, as over ureq: a peer that cannot be reached
            // (or a proxy that cuts it off) is retried with the next heartbeat, not at once.
            if conn
                .as_ref()
                .is_some_and(|c| lock_outstanding(&c.outstanding).dead)
            {
                *conn = None;
            }
            if conn.is_none() {
                match PipeConn::open(&target, t, &peer, &sink) {
                    Ok(c) => *conn = Some(c),
                    Err(e) => log::debug!("connecting to {}: {e}", target.connect),
                }
            }
            let failed = write_request(&mut conn, &msg, sents).err();
            shared.queued.fetch_sub(n, Ordering::SeqCst);
            drop(conn);
            for sent in failed.into_iter().flatten() {
                sink(Event::AppendResult {
                    peer: peer.clone(),
                    sent,
                    resp: None,
                    raftdump: false,
                });
            }
        }
    }
}

impl Transport for HttpTransport {
    fn send(&mut self, msg: Outbound) {
        match msg {
            Outbound::Append { to, req, sent } => {
                let name = to.name.clone();
                let stream = self.stream(&to);
                let Some((req, sent)) = stream.try_direct(req, sent) else {
                    return;
                };
                if let Some(d) = &stream.direct {
                    d.queued.fetch_add(1, Ordering::SeqCst);
                }
                if stream.tx.send((name.clone(), req, sent)).is_err() {
                    (self.sink)(Event::AppendResult {
                        peer: name,
                        sent,
                        resp: None,
                        raftdump: false,
                    });
                }
            }
            Outbound::Vote { to, req } => {
                let agent = self.vote_agent.clone();
                let sink = self.sink.clone();
                // goraft concatenates here (not path.Join): keep the same URL.
                let url = format!("{}/raft/requestVote", to.connection_string);
                let _ = std::thread::Builder::new()
                    .name("raft-vote".into())
                    .spawn(move || {
                        let resp = post(&agent, &url, &encode_vote_request(&req))
                            .and_then(|(b, _)| decode_vote_response(&b).ok());
                        sink(Event::VoteResult {
                            peer: to.name,
                            term: req.term,
                            resp,
                        });
                    });
            }
            Outbound::Snapshot { to, install } => {
                let agent = self.agent.clone();
                let sink = self.sink.clone();
                let _ = std::thread::Builder::new()
                    .name("raft-snapshot".into())
                    .spawn(move || {
                        let ok = send_snapshot(&agent, &to, &install);
                        sink(Event::SnapshotResult {
                            peer: to.name,
                            last_index: install.last_index,
                            ok,
                        });
                    });
            }
        }
    }
}

fn send_snapshot(agent: &ureq::Agent, to: &Peer, s: &SnapshotInstall) -> bool {
    let offer = encode_snapshot_request(s);
    let Some((b, _)) = post(agent, &url(&to.connection_string, "/raft/snapshot"), &offer) else {
        return false;
    };
    match decode_snapshot_response(&b) {
        // goraft: false means "I already hold that entry".
        Ok(false) => return true,
        Ok(true) => {}
        Err(_) => return false,
    }
    let install = encode_snapshot_install(s);
    let Some((b, _)) = post(
        agent,
        &url(&to.connection_string, "/raft/snapshotRecovery"),
        &install,
    ) else {
        return false;
    };
    decode_snapshot_install_response(&b).is_ok_and(|success| success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_targets() {
        let t = Target::parse("http://127.0.0.1:4001/raft/appendEntries", None).unwrap();
        assert_eq!(t.connect, "127.0.0.1:4001");
        assert_eq!(
            t.head,
            "POST /raft/appendEntries HTTP/1.1\r\nHost: 127.0.0.1:4001\r\nContent-Type: application/protobuf\r\nContent-Length: "
        );
        let t = Target::parse("http://h/p/raft/appendEntries", Some("s3cret")).unwrap();
        assert_eq!(t.connect, "h:80");
        assert!(t.head.contains("\r\nX-Raftdump-Token: s3cret\r\n"));
        assert_eq!(
            Target::parse("http://[::1]:7/x", None).unwrap().connect,
            "[::1]:7"
        );
        assert_eq!(
            Target::parse("http://[::1]/x", None).unwrap().connect,
            "[::1]:80"
        );
        // Left to ureq: other schemes, credentials, spaces; a token that cannot be a header.
        assert_eq!(Target::parse("https://h:1/x", None), None);
        assert_eq!(Target::parse("http://u@h:1/x", None), None);
        assert_eq!(Target::parse("http://h:1/a b", None), None);
        assert_eq!(Target::parse("http://h:1/x", Some("a\r\nb")), None);
    }

    #[test]
    fn answers_are_parsed_in_order_and_only_when_complete() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Raftdump: 0.1\r\n\r\nabcHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let a = parse_answer(two).unwrap().unwrap();
        assert_eq!(
            (a.len, &a.body[..], a.raftdump, a.close),
            (58, &b"abc"[..], true, false)
        );
        let b = parse_answer(&two[a.len..]).unwrap().unwrap();
        assert_eq!(
            (b.len, b.body.len(), b.raftdump),
            (two.len() - a.len, 0, false)
        );
        for cut in 0..a.len {
            assert_eq!(parse_answer(&two[..cut]), Ok(None), "cut at {cut}");
        }
        // Go's chunked form, a 100 Continue first, and Connection: close.
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nab\r\n1;x=y\r\nc\r\n0\r\nTrailer: t\r\n\r\nrest";
        let c = parse_answer(chunked).unwrap().unwrap();
        assert_eq!(
            (&c.body[..], c.close, c.len),
            (&b"abc"[..], true, chunked.len() - 4)
        );
        for cut in 0..c.len {
            assert_eq!(parse_answer(&chunked[..cut]), Ok(None), "cut at {cut}");
        }
        let old = parse_answer(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(old.unwrap().close);
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(parse_answer(&[b'x'; MAX_HEAD + 1]).is_err());
    }

    /// Reads one AppendEntries request from `r`: its prevLogIndex.
    fn read_append(r: &mut impl std::io::BufRead) -> u64 {
        let mut len = 0;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("Content-Length: ") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        std::io::Read::read_exact(r, &mut body).unwrap();
        decode_append_request(&body).unwrap().prev_index
    }

    /// A test follower on a free port: it accepts one connection, reads two AppendEntries
    /// requests, signalling each on the returned channel, then hands the connection, its
    /// reader and the requests' prevLogIndex values to `then`.
    fn follower<R: Send + 'static>(
        then: impl FnOnce(std::net::TcpStream, std::io::BufReader<std::net::TcpStream>, Vec<u64>) -> R
            + Send
            + 'static,
    ) -> (u16, mpsc::Receiver<()>, std::thread::JoinHandle<R>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = mpsc::channel();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = std::io::BufReader::new(s.try_clone().unwrap());
            let mut prevs = Vec::new();
            for _ in 0..2 {
                prevs.push(read_append(&mut r));
                let _ = seen_tx.send(());
            }
            then(s, r, prevs)
        });
        (port, seen, server)
    }

    /// A transport whose events arrive on the returned channel.
    fn transport() -> (HttpTransport, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let sink: Sink = Arc::new(move |e| {
            let _ = tx.lock().unwrap().send(e);
        });
        (HttpTransport::new(sink, Timeouts::default()), rx)
    }

    /// Queues an empty AppendEntries after `prev` for `to`.
    fn append(t: &mut HttpTransport, to: &Peer, prev: u64) {
        let req = AppendRequest {
            term: 1,
            prev_index: prev,
            prev_term: 1,
            commit: 0,
            leader: "l".into(),
            entries: vec![],
        };
        let sent = SentAppend {
            term: 1,
            epoch: 0,
            round: 0,
            prev,
            last: prev,
        };
        t.send(Outbound::Append {
            to: to.clone(),
            req,
            sent,
        });
    }

    /// The next `n` AppendEntries results from `rx`, as (the request's prev index, the answer),
    /// each within a bounded wait.
    fn results(rx: &mpsc::Receiver<Event>, n: u64) -> Vec<(u64, Option<AppendResponse>)> {
        (0..n)
            .map(
                |_| match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
                    Event::AppendResult { sent, resp, .. } => (sent.prev, resp),
                    other => panic!("unexpected {other:?}"),
                },
            )
            .collect()
    }

    /// The (prev index, answered index) of each result.
    fn indexes(results: Vec<(u64, Option<AppendResponse>)>) -> Vec<(u64, Option<u64>)> {
        results
            .into_iter()
            .map(|(p, r)| (p, r.map(|r| r.index)))
            .collect()
    }

    /// The follower listening on `port`.
    fn peer(port: u16) -> Peer {
        Peer {
            name: "f".into(),
            connection_string: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A follower that reads two pipelined requests before answering either: both results
    /// come back, in order, on one connection. The second request is queued only once the
    /// follower holds the first, so the two go out apart whatever the timing.
    #[test]
    fn requests_are_pipelined_on_one_connection_and_answered_in_order() {
        use std::io::Write;
        let (port, seen, server) = follower(|mut w, mut r, prevs| {
            for p in &prevs {
                let body = encode_append_response(&AppendResponse {
                    term: 1,
                    index: *p + 1,
                    commit: 0,
                    success: true,
                });
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                w.write_all(head.as_bytes()).unwrap();
                w.write_all(&body).unwrap();
            }
            w.flush().unwrap();
            // Stay open until the client is done.
            let _ = std::io::Read::read(&mut r, &mut [0u8; 1]);
            prevs
        });
        let (mut t, rx) = transport();
        let to = peer(port);
        append(&mut t, &to, 4);
        seen.recv_timeout(Duration::from_secs(10)).unwrap();
        append(&mut t, &to, 5);
        assert_eq!(indexes(results(&rx, 2)), [(4, Some(5)), (5, Some(6))]);
        drop(t);
        assert_eq!(server.join().unwrap(), [4, 5]);
    }

    /// A burst of requests, the first ones through the peer's thread (no connection yet), the
    /// later ones written by the caller itself once the connection is open and nothing is
    /// queued: the follower receives them all in order and every result comes back once, in
    /// order.
    #[test]
    fn requests_written_by_the_caller_or_the_worker_stay_in_order() {
        use std::io::Write;
        const N: u64 = 60;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut w, _) = listener.accept().unwrap();
            w.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = std::io::BufReader::new(w.try_clone().unwrap());
            let mut prevs = Vec::new();
            for _ in 0..N {
                let p = read_append(&mut r);
                prevs.push(p);
                let body = encode_append_response(&AppendResponse {
                    term: 1,
                    index: p + 1,
                    commit: 0,
                    success: true,
                });
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                w.write_all(head.as_bytes()).unwrap();
                w.write_all(&body).unwrap();
            }
            let _ = std::io::Read::read(&mut r, &mut [0u8; 1]);
            prevs
        });
        let (mut t, rx) = transport();
        let to = peer(port);
        // The first half as a burst, before any connection is open: through the peer's thread.
        for prev in 0..N / 2 {
            append(&mut t, &to, prev);
        }
        // Once all its answers are back, the connection is open and nothing is queued: the
        // second half is written by this thread.
        let mut got = indexes(results(&rx, N / 2));
        for prev in N / 2..N {
            append(&mut t, &to, prev);
        }
        got.extend(indexes(results(&rx, N - N / 2)));
        let want: Vec<(u64, Option<u64>)> = (0..N).map(|p| (p, Some(p + 1))).collect();
        assert_eq!(got, want);
        let direct: Vec<usize> = t
            .streams
            .values()
            .filter_map(|s| s.direct.as_ref())
            .map(|d| d.direct_writes.load(Ordering::Relaxed))
            .collect();
        assert_eq!(direct.len(), 1, "a pipelined stream shares its connection");
        assert!(
            (1..N as usize).contains(&direct[0]),
            "some requests, not all, written by the caller: {direct:?}"
        );
        drop(t);
        assert_eq!(server.join().unwrap(), (0..N).collect::<Vec<_>>());
    }

    /// A connection that dies with requests outstanding fails each of them once. The follower
    /// reads both requests (so both are outstanding) and then closes the connection.
    #[test]
    fn a_dead_connection_fails_every_outstanding_request() {
        // Both connection handles close when the follower returns.
        let (port, seen, server) = follower(|_, _, _| ());
        let (mut t, rx) = transport();
        let to = peer(port);
        append(&mut t, &to, 1);
        seen.recv_timeout(Duration::from_secs(10)).unwrap();
        append(&mut t, &to, 7);
        let mut got = results(&rx, 2);
        got.sort_by_key(|g| g.0);
        assert_eq!(got, [(1, None), (7, None)]);
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "one result each"
        );
        server.join().unwrap();
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("http://h:1/", "/raft/appendEntries"),
            "http://h:1/raft/appendEntries"
        );
        assert_eq!(url("http://h:1", "/join"), "http://h:1/join");
    }
}
