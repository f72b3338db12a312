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

use super::core::{AppendRequest, Event, SentAppend, SnapshotInstall, VoteRequest};
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
use crate::node::ratelog;

/// Public only for its fuzz target (`parse_answer`).
#[doc(hidden)]
pub mod pipelined;

use pipelined::{build_message, pipelined_worker, write_request, DirectState, Target};

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
            ratelog::log((log::Level::Debug, module_path!()), url, || {
                format!("POST {url}: {t}")
            });
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
    use crate::node::core::AppendResponse;

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
        decode_append_request(body).unwrap().prev_index
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
