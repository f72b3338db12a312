//! The bodies of raftdump's fuzz targets, parse-only and allocation-capped.
//!
//! Each function panics only when an invariant of the format layer is broken. The same file is
//! compiled into the integration tests (`tests/it/regressions.rs`), which replay every input
//! committed under `tests/regressions/<target>/`, so a crash found once stays fixed without a
//! fuzzer in CI's test step.

use prost::Message as _;
use raftdump::format::dialect::Dialect;
use raftdump::format::{conf, frame, log, proto, snapshot, wire};

/// Inputs larger than this are ignored (the format layer is linear; big inputs only slow fuzzing).
pub const MAX_INPUT: usize = 1 << 16;

/// A whole log file: framing, entries, commands; every byte accounted for exactly once, under
/// both dialects (goraft's proto2 and the seaweedfs/raft fork's proto3).
pub fn log_stream(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    for dialect in [Dialect::Goraft, Dialect::Seaweedfs] {
        log_stream_as(data, dialect);
    }
}

fn log_stream_as(data: &[u8], dialect: Dialect) {
    let mut pos = 0u64;
    let mut good = 0u64;
    for r in log::LogReader::with_dialect(data, dialect) {
        match r {
            Ok(e) => {
                assert_eq!(e.offset, pos);
                assert_eq!(e.ordinal, good);
                pos = e.end();
                good += 1;
                let _ = e.command();
                // The strict checker agrees with the fast decoder on every good body.
                assert!(wire::check_as(e.body, &wire::LOG_ENTRY, dialect.syntax()).is_ok());
            }
            Err(err) => {
                assert_eq!(err.offset, pos);
                assert_eq!(err.entry, good);
                assert!(err.len > 0);
                pos += err.len;
                let _ = err.to_string();
            }
        }
    }
    assert_eq!(pos, data.len() as u64);
}

/// One `LogEntry` body: the fast decoder, the strict checker and prost agree.
pub fn log_entry_pb(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let fast = wire::decode_entry(data);
    let strict = wire::check(data, &wire::LOG_ENTRY);
    assert_eq!(fast.is_ok(), strict.is_ok(), "{fast:?} vs {strict:?}");
    if let (Ok(e), Ok(quirks)) = (fast, &strict) {
        // prost rejects a string field with invalid UTF-8 in any occurrence, even one a later
        // duplicate replaces; Go's proto2 decoder never checks. Compare only where no occurrence
        // is invalid (found by the fuzzer: tests/regressions/log_entry_pb/).
        let utf8_ok = !quirks
            .iter()
            .any(|q| matches!(q, wire::WireQuirk::InvalidUtf8 { .. }));
        if utf8_ok {
            let p = proto::LogEntry::decode(data).expect("prost accepts what Go accepts");
            assert_eq!(
                (p.index, p.term, p.command_name.as_bytes()),
                (e.index, e.term, e.name)
            );
            assert_eq!(p.command.as_deref(), e.command);
        }
    }
    // proto3 (the seaweedfs/raft fork): the decoder and the strict checker agree, and what
    // they accept prost reads the same (absent fields as zero or empty).
    let fast = wire::decode_entry_proto3(data);
    let strict = wire::check_as(data, &wire::LOG_ENTRY, wire::Syntax::Proto3);
    assert_eq!(
        fast.is_ok(),
        strict.is_ok(),
        "proto3: {fast:?} vs {strict:?}"
    );
    if let Ok(e) = fast {
        let p = proto::LogEntry::decode(data).expect("prost accepts what proto3 Go accepts");
        assert_eq!(
            (p.index, p.term, p.command_name.as_bytes()),
            (e.index, e.term, e.name)
        );
        assert_eq!(p.command.as_deref(), e.command);
    }
    let _ = frame::parse_header(data);
}

/// The AppendEntries decoder a node uses (entries kept in the body) gives prost's verdict after
/// the strict checker, and prost's fields; every entry it keeps is goraft's encoding.
fn append_batch_agrees(body: &[u8]) {
    let by_prost = wire::check(body, &proto::APPEND_ENTRIES_REQUEST)
        .ok()
        .and_then(|_| proto::AppendEntriesRequest::decode(body).ok());
    let batch = raftdump::format::rpc::decode_append_request(body.to_vec());
    let (m, r) = match (by_prost, batch) {
        (None, Err(_)) => return,
        (Some(m), Ok(r)) => (m, r),
        (m, r) => panic!("prost decodes: {}, the batch decoder: {r:?}", m.is_some()),
    };
    let head = (m.term, m.prev_log_index, m.prev_log_term, m.commit_index);
    assert_eq!(head, (r.term, r.prev_index, r.prev_term, r.commit));
    assert_eq!(m.leader_name, r.leader);
    assert_eq!(m.entries.len(), r.entries.len());
    for (p, e) in m.entries.iter().zip(r.entries.iter()) {
        assert_eq!(
            (p.index, p.term, &p.command_name[..]),
            (e.index, e.term, e.name)
        );
        assert_eq!(p.command.as_deref(), e.payload);
        let mut canonical = Vec::new();
        wire::encode_entry(
            e.index,
            e.term,
            e.name.as_bytes(),
            e.payload,
            &mut canonical,
        );
        assert_eq!(e.body, canonical);
    }
}

/// Every RPC body: the first byte picks the message, the rest is the HTTP body.
pub fn rpc_bodies(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if body.len() > MAX_INPUT {
        return;
    }
    macro_rules! one {
        ($ty:ty, $spec:expr) => {{
            let strict = wire::check(body, &$spec);
            let prost = <$ty>::decode(body);
            if let Ok(quirks) = &strict {
                let utf8_ok = !quirks
                    .iter()
                    .any(|q| matches!(q, wire::WireQuirk::InvalidUtf8 { .. }));
                if utf8_ok {
                    let m = prost.expect("prost accepts what the strict checker accepts");
                    // Re-encoding what was decoded decodes again to the same message.
                    let again =
                        <$ty>::decode(&m.encode_to_vec()[..]).expect("re-encoded message decodes");
                    assert!(again == m);
                }
            }
        }};
    }
    match which % 8 {
        0 => {
            one!(proto::AppendEntriesRequest, proto::APPEND_ENTRIES_REQUEST);
            append_batch_agrees(body);
        }
        1 => one!(proto::AppendEntriesResponse, proto::APPEND_ENTRIES_RESPONSE),
        2 => one!(proto::RequestVoteRequest, proto::REQUEST_VOTE_REQUEST),
        3 => one!(proto::RequestVoteResponse, proto::REQUEST_VOTE_RESPONSE),
        4 => one!(proto::SnapshotRequest, proto::SNAPSHOT_REQUEST),
        5 => one!(proto::SnapshotResponse, proto::SNAPSHOT_RESPONSE),
        6 => one!(
            proto::SnapshotRecoveryRequest,
            proto::SNAPSHOT_RECOVERY_REQUEST
        ),
        _ => one!(
            proto::SnapshotRecoveryResponse,
            proto::SNAPSHOT_RECOVERY_RESPONSE
        ),
    }
}

/// A snapshot file (and its name): what parses re-encodes to something that parses the same.
pub fn snapshot_file(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(name) = std::str::from_utf8(&data[..data.len().min(24)]) {
        let _ = snapshot::parse_file_name(name);
    }
    if let Ok(p) = snapshot::parse(data) {
        if let Ok(s) = p.snapshot {
            let bytes = snapshot::encode(&s);
            let again = snapshot::parse(&bytes).expect("encoded snapshot parses");
            assert!(again.crc_ok());
            assert_eq!(again.snapshot.as_ref().ok(), Some(&s));
        }
    }
}

/// A conf file: what parses re-encodes to something that parses the same.
pub fn conf_json(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    if let Ok(c) = conf::parse(data) {
        let again = conf::parse(&conf::encode(&c)).expect("encoded conf parses");
        assert_eq!(again, c);
    }
}

/// Arbitrary fields -> a frame -> the same fields back, canonical.
pub fn roundtrip_entry(data: &[u8]) {
    if data.len() < 17 || data.len() > MAX_INPUT {
        return;
    }
    let index = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
    let term = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
    let split = (data[16] as usize).min(data.len() - 17);
    let (name, rest) = data[17..].split_at(split);
    let payload = (rest.first().is_some_and(|b| b & 1 == 1)).then(|| &rest[1.min(rest.len())..]);
    let mut out = Vec::new();
    log::encode_frame(index, term, name, payload, &mut out);
    let mut r = log::LogReader::new(&out);
    let e = r.next().expect("one frame").expect("frame decodes");
    assert!(r.next().is_none());
    assert!(e.is_canonical());
    assert_eq!(
        (e.index(), e.term(), e.wire.name, e.payload()),
        (index, term, name, payload)
    );
}

pub use http_node::{http_request, http_transcript, MemNode};

mod hostile;
pub use hostile::{http_head, rpc_senders};

/// The HTTP API of `raftdump serve` over a real single-node core on a [`MemStore`]: requests
/// go through [`http::route`] (and the token gate [`http::authorized`]) exactly as the server's
/// workers call them, and the node really executes them.
///
/// [`MemStore`]: raftdump::node::storage::MemStore
mod http_node {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;
    use std::time::Duration;

    use raftdump::format::gojson::lossy_go;
    use raftdump::format::proto;
    use raftdump::node::core::{Action, Config, Core, Event, Millis, RequestId, Role};
    use raftdump::node::exec;
    use raftdump::node::http::{self, Answer, Api, ApiError, HttpOptions, ReadMode, Rpc};
    use raftdump::node::runtime::{CallError, Reply};
    use raftdump::node::storage::{MemStore, Storage};
    use raftdump::node::transport;
    use raftdump::replay::kv::Kv;

    /// Ticks a call waits for its answer before it times out (each jumps to the core's next
    /// deadline, so a proposal that needs an absent quorum gives up quickly).
    const ROUNDS: u32 = 16;

    struct Inner {
        core: Core,
        store: MemStore,
        kv: Kv,
        name: String,
        now: Millis,
        next_id: RequestId,
        replies: HashMap<RequestId, Reply>,
    }

    impl Inner {
        /// Feeds `events` (after the clock) and carries out everything that follows, syncing
        /// the store at once after every write as a node with an instant disk would.
        fn step(&mut self, events: Vec<Event>) {
            let mut actions = self
                .core
                .step_many(std::iter::once(Event::Tick(self.now)).chain(events));
            // Bounded: each round answers the previous round's writes with Persisted, which
            // writes nothing new.
            for _ in 0..64 {
                let wrote = self.exec(actions);
                if !wrote {
                    return;
                }
                let last = self.store.sync().expect("memory store syncs");
                actions = self.core.step(Event::Persisted(last));
            }
            panic!("the core keeps writing after Persisted");
        }

        fn exec(&mut self, actions: Vec<Action>) -> bool {
            let mut wrote = false;
            for a in actions {
                match a {
                    Action::SaveHardState(h) => {
                        self.store.save_hard_state(&h).expect("save hard state")
                    }
                    Action::Truncate(x) => {
                        // Whatever a peer sends, applied entries are never taken back.
                        assert!(
                            x >= self.kv.applied,
                            "truncate after {x} below applied {}",
                            self.kv.applied
                        );
                        self.store.truncate_after(x).expect("truncate");
                        wrote = true;
                    }
                    Action::Append(es) => {
                        // The runtime stops the node on a store error: no input may cause one.
                        if let Err(e) = self.store.append(&es) {
                            panic!("the core appended what the store refuses: {e}");
                        }
                        wrote = true;
                    }
                    // No peer is reachable.
                    Action::SendAppend { .. }
                    | Action::SendVote { .. }
                    | Action::SendSnapshot { .. } => {}
                    Action::ReplyAppend { id, resp } => {
                        self.replies.insert(id, Reply::Append(resp));
                    }
                    Action::Refuse { id, reason } => {
                        self.replies.insert(id, Reply::Refused(reason));
                    }
                    Action::ReplyVote { id, resp } => {
                        self.replies.insert(id, Reply::Vote(resp));
                    }
                    Action::ReplySnapshotOffer { id, accept } => {
                        self.replies.insert(id, Reply::SnapshotOffer(accept));
                    }
                    Action::ReplySnapshotInstall { id, resp } => {
                        self.replies.insert(id, Reply::SnapshotInstall(resp));
                    }
                    Action::InstallSnapshot { id, snapshot, term } => {
                        // A snapshot never takes back what was applied.
                        assert!(
                            snapshot.last_index >= self.kv.applied,
                            "snapshot at {} below applied {}",
                            snapshot.last_index,
                            self.kv.applied
                        );
                        // As the runtime does.
                        let snap = raftdump::model::Snapshot {
                            last_index: snapshot.last_index,
                            last_term: snapshot.last_term,
                            peers: Some(snapshot.peers),
                            state: Some(snapshot.state),
                            path: String::new(),
                        };
                        let result = match exec::kv_from_snapshot(&snap) {
                            Ok(kv) => {
                                let conf = exec::conf_of(&kv, &self.name, snap.last_index);
                                let last = snap.last_index;
                                self.store
                                    .install_snapshot(snap, &conf)
                                    .expect("install snapshot");
                                self.kv = kv;
                                Some((term, true, last))
                            }
                            Err(_) => None,
                        };
                        self.replies.insert(id, Reply::SnapshotInstall(result));
                    }
                    Action::Commit(n) => {
                        exec::apply_to(&mut self.store, &mut self.kv, n, &self.name, true)
                            .expect("apply committed entries");
                    }
                    Action::ProposalDone { id, result } => {
                        self.replies.insert(id, Reply::Proposal(result));
                    }
                    Action::ReadDone { id, result } => {
                        self.replies.insert(id, Reply::Read(result));
                    }
                }
            }
            wrote
        }

        fn call(&mut self, make: impl FnOnce(RequestId) -> Event) -> Result<Reply, CallError> {
            let id = self.next_id;
            self.next_id += 1;
            self.step(vec![make(id)]);
            for _ in 0..ROUNDS {
                if let Some(r) = self.replies.remove(&id) {
                    return Ok(r);
                }
                self.now = self.core.next_deadline().max(self.now + 1);
                self.step(Vec::new());
            }
            self.replies.remove(&id).ok_or(CallError::Timeout)
        }
    }

    /// A bootstrapped single-node cluster in memory, served through [`Api`] as `serve` serves
    /// a running node.
    pub struct MemNode(Mutex<Inner>);

    impl MemNode {
        /// Node `n1`, leader of its own new cluster.
        pub fn bootstrap() -> MemNode {
            let core = Core::new(Config::new("n1", "http://n1:4001"), Default::default(), 0);
            let mut inner = Inner {
                core,
                store: MemStore::new(),
                kv: Kv::new(),
                name: "n1".into(),
                now: 0,
                next_id: 1,
                replies: HashMap::new(),
            };
            inner.step(vec![Event::Bootstrap]);
            MemNode(Mutex::new(inner))
        }

        fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn outcome(r: Result<Reply, CallError>) -> Result<(), ApiError> {
            match r {
                Ok(Reply::Proposal(Ok(_)) | Reply::Read(Ok(_))) => Ok(()),
                Ok(Reply::Proposal(Err(r)) | Reply::Read(Err(r))) => Err(r.into()),
                Ok(_) => Err(ApiError::Stopped),
                Err(CallError::Timeout) => Err(ApiError::Timeout),
                Err(CallError::Stopped) => Err(ApiError::Stopped),
            }
        }

        /// `(term, members, applied)`: what a request without the cluster token must not move.
        fn guarded_state(&self) -> (u64, BTreeMap<String, String>, u64) {
            let n = self.lock();
            let s = n.core.status();
            (s.term, s.members, n.kv.applied)
        }
    }

    impl Api for MemNode {
        fn read_barrier(&self, _: Duration) -> Result<(), ApiError> {
            MemNode::outcome(self.lock().call(|id| Event::Read { id }))
        }
        fn lookup(&self, key: &str) -> Option<String> {
            self.lock().kv.get(key).map(str::to_string)
        }
        fn propose(&self, name: &str, payload: Vec<u8>, _: Duration) -> Result<(), ApiError> {
            let ev = |id| Event::Propose {
                id,
                name: name.to_string(),
                payload: Some(payload),
            };
            MemNode::outcome(self.lock().call(ev))
        }
        fn status(&self) -> (String, String, u64, u64, String) {
            let s = self.lock().core.status();
            let role = s.role.as_str().to_string();
            (s.name, role, s.term, s.commit, s.leader.unwrap_or_default())
        }
        fn peers(&self) -> BTreeMap<String, String> {
            let s = self.lock().core.status();
            s.members
                .into_iter()
                .filter(|(n, _)| *n != s.name)
                .collect()
        }
        fn leader_url(&self) -> Option<String> {
            let s = self.lock().core.status();
            if s.role == Role::Leader {
                return None;
            }
            s.leader
                .and_then(|l| s.members.get(&l).cloned())
                .filter(|u| !u.is_empty())
        }
        fn rpc(&self, rpc: Rpc, body: &[u8], _: Duration) -> http::RpcAnswer {
            http::rpc_call(rpc, body, |make| self.lock().call(make))
        }
    }

    const METHODS: [&str; 8] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "",
    ];
    const TOKEN: &str = "fuzz-token";
    /// Most requests taken from one input.
    const MAX_REQUESTS: usize = 16;

    /// One request of a fuzz input.
    struct Req<'a> {
        method: &'static str,
        url: String,
        /// 0: no token header, 1: the right token, 2: a wrong one, 3: the right one + a byte.
        token: u8,
        forwarded: bool,
        body: &'a [u8],
    }

    /// The input: byte 0 holds options (bit 0: the node requires the cluster token; bit 1:
    /// `--read-mode=local`; bit 2: `--forward`); then requests, each one byte (bits 0-2: the
    /// method; bits 3-4: the token header; bit 5: the forwarded header), the URL up to `\n`,
    /// a little-endian u16 body length (cut to what is left) and the body.
    fn parse(data: &[u8]) -> (u8, Vec<Req<'_>>) {
        let Some((&opts, mut rest)) = data.split_first() else {
            return (0, Vec::new());
        };
        let mut reqs = Vec::new();
        while let Some((&m, after)) = rest.split_first() {
            if reqs.len() == MAX_REQUESTS {
                break;
            }
            let (url, after) = match after.iter().position(|&b| b == b'\n') {
                Some(nl) => (&after[..nl], &after[nl + 1..]),
                None => (after, &after[after.len()..]),
            };
            let (len, after) = match after {
                [a, b, tail @ ..] => (u16::from_le_bytes([*a, *b]) as usize, tail),
                _ => (0, &after[after.len()..]),
            };
            let (body, after) = after.split_at(len.min(after.len()));
            reqs.push(Req {
                method: METHODS[(m & 7) as usize],
                url: String::from_utf8_lossy(url).into_owned(),
                token: (m >> 3) & 3,
                forwarded: m & 0x20 != 0,
                body,
            });
            rest = after;
        }
        (opts, reqs)
    }

    fn percent_decode(s: &str) -> Option<Vec<u8>> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let h = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Some(out)
    }

    /// Whether `body` decodes as the RPC at `path` (`None`: not an RPC path).
    fn rpc_decodes(path: &[u8], body: &[u8]) -> Option<bool> {
        Some(match path {
            b"/raft/appendEntries" => transport::decode_append_request(body.to_vec()).is_ok(),
            b"/raft/requestVote" => transport::decode_vote_request(body).is_ok(),
            b"/raft/snapshot" => transport::decode_snapshot_request(body).is_ok(),
            b"/raft/snapshotRecovery" => transport::decode_snapshot_install(body).is_ok(),
            _ => return None,
        })
    }

    /// Requests of arbitrary method, URL, token header and body: the node never panics or
    /// hangs, malformed input gets a 4xx, a write that answered 200 reads back, and without
    /// the token nothing guarded moves.
    pub fn http_request(data: &[u8]) {
        if data.len() <= super::MAX_INPUT {
            http_transcript(data);
        }
    }

    /// [`http_request`]'s work, returning each request's status and body (401 for those the
    /// token gate refuses).
    pub fn http_transcript(data: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut transcript = Vec::new();
        let (flags, reqs) = parse(data);
        let node = MemNode::bootstrap();
        let opts = HttpOptions {
            read_mode: if flags & 2 != 0 {
                ReadMode::Local
            } else {
                ReadMode::Linearizable
            },
            forward: flags & 4 != 0,
            // Small limits, so that the fuzzer reaches every 413.
            max_body: 4096,
            max_rpc_body: 16384,
            max_key: 256,
            token: (flags & 1 != 0).then(|| TOKEN.to_string()),
            ..HttpOptions::default()
        };
        // No leader to forward to: forwarding always falls back to the node's own answer.
        let forward = |_: &str, _: &http::Request<'_>| -> Option<Answer> { None };
        for r in reqs {
            let given: &[u8] = match r.token {
                0 => b"",
                1 => TOKEN.as_bytes(),
                2 => b"fuzz-tokem",
                _ => b"fuzz-token!",
            };
            let path = r.url.split(['?', '#']).next().unwrap_or("");
            let decoded = percent_decode(path);
            if let Some(token) = &opts.token {
                if !http::authorized(token, &r.url, given) {
                    // The worker answers 401 without routing; the gate must close exactly the
                    // guarded paths (and those that do not decode).
                    assert!(r.token != 1, "the right token refused for {:?}", r.url);
                    assert!(decoded
                        .as_deref()
                        .is_none_or(raftdump::node::security::guarded));
                    transcript.push((401, Vec::new()));
                    continue;
                }
            }
            let unauthenticated = opts.token.is_some() && r.token != 1;
            let before = node.guarded_state();
            let req = http::Request {
                method: r.method,
                url: &r.url,
                body: r.body,
                forwarded: r.forwarded,
            };
            let a = http::route(&node, &opts, req, &forward);
            check_answer(&a, &r, decoded.as_deref(), &opts);
            if unauthenticated {
                let after = node.guarded_state();
                assert_eq!(
                    before.0, after.0,
                    "term moved without the token: {:?}",
                    r.url
                );
                assert_eq!(before.1, after.1, "members moved without the token");
                assert!(
                    !a.raftdump,
                    "an RPC answered without the token: {:?}",
                    r.url
                );
            }
            // A write that answered 200 reads back at once, linearizably.
            if r.method == "POST" && a.status == 200 {
                if let Some(key) = decoded.as_deref().and_then(|d| d.strip_prefix(b"/db/")) {
                    if std::str::from_utf8(key).is_ok() {
                        let get = http::Request {
                            method: "GET",
                            url: path,
                            body: b"",
                            forwarded: false,
                        };
                        let lin = HttpOptions {
                            read_mode: ReadMode::Linearizable,
                            ..opts.clone()
                        };
                        let g = http::route(&node, &lin, get, &forward);
                        assert_eq!(
                            (g.status, String::from_utf8_lossy(&g.body).into_owned()),
                            (200, lossy_go(r.body)),
                            "GET {path} after a successful POST"
                        );
                    }
                }
            }
            transcript.push((a.status, a.body));
        }
        transcript
    }

    /// What every answer must satisfy.
    fn check_answer(a: &Answer, r: &Req<'_>, decoded: Option<&[u8]>, opts: &HttpOptions) {
        let text = String::from_utf8_lossy(&a.body);
        assert!(
            matches!(
                a.status,
                200 | 400 | 403 | 404 | 405 | 409 | 413 | 500 | 503
            ),
            "status {} for {} {:?}",
            a.status,
            r.method,
            r.url
        );
        if a.status >= 400 && a.status != 409 {
            // No stack traces, source or file paths in error answers (those that echo what a
            // client sent, member names in a 409, are left out; found by the fuzzer: a
            // connectionString with "/work" in it, listed by /peers).
            for bad in ["panicked", "src/", "/tmp", "/work", "RUST_BACKTRACE"] {
                assert!(!text.contains(bad), "answer leaks {bad:?}: {text:?}");
            }
        }
        let Some(path) = decoded else {
            assert_eq!(a.status, 400, "an undecodable path");
            return;
        };
        if let Some(ok) = rpc_decodes(path, r.body) {
            if r.body.len() > opts.max_rpc_body {
                assert_eq!(a.status, 413);
            } else if !ok {
                assert_eq!(
                    (a.status, &a.body[..]),
                    (400, &b"\n"[..]),
                    "malformed RPC body"
                );
            } else if a.status == 403 {
                // A sender that is not a member, or a term out of bounds: refused unread.
                assert!(text.starts_with("raftdump: refused: "), "{text:?}");
            } else {
                assert!(matches!(a.status, 200 | 500), "RPC answered {}", a.status);
            }
            if a.status == 200 {
                assert!(a.raftdump);
                // The answer is the RPC's response message.
                use prost::Message as _;
                let decodes = match path {
                    b"/raft/appendEntries" => {
                        proto::AppendEntriesResponse::decode(&a.body[..]).is_ok()
                    }
                    b"/raft/requestVote" => proto::RequestVoteResponse::decode(&a.body[..]).is_ok(),
                    b"/raft/snapshot" => proto::SnapshotResponse::decode(&a.body[..]).is_ok(),
                    _ => proto::SnapshotRecoveryResponse::decode(&a.body[..]).is_ok(),
                };
                assert!(decodes, "an RPC answer that does not decode");
            }
            return;
        }
        assert!(!a.raftdump);
        if let Some(key) = path.strip_prefix(b"/db/") {
            if key.is_empty() || key.contains(&b'/') {
                assert_eq!(a.status, 404);
            } else if key.len() > opts.max_key {
                assert_eq!(a.status, 413);
            } else if r.method != "GET" && r.method != "POST" {
                assert_eq!(a.status, 405);
            } else if r.method == "POST" && r.body.len() > opts.max_body {
                assert_eq!(a.status, 413);
            }
            return;
        }
        match path {
            b"/join" => {
                if r.method != "POST" {
                    assert_eq!(a.status, 405);
                } else if r.body.len() > opts.max_body {
                    assert_eq!(a.status, 413);
                } else if raftdump::format::gojson::decode_string_fields(
                    r.body,
                    ["name", "connectionString"],
                )
                .is_err()
                {
                    assert_eq!(a.status, 400, "a malformed join body");
                }
            }
            b"/peers" | b"/members" | b"/leader" | b"/state" => {
                assert_eq!(a.status, if r.method == "GET" { 200 } else { 405 });
            }
            p if p.starts_with(b"/members/") => {
                let name = &p[b"/members/".len()..];
                if r.method != "DELETE" {
                    assert_eq!(a.status, 405);
                } else if std::str::from_utf8(name).is_err() {
                    assert_eq!(a.status, 400, "a member name that is not UTF-8");
                } else if name.is_empty() || name.contains(&b'/') {
                    assert_eq!(a.status, 404);
                }
            }
            _ => assert_eq!(a.status, 404, "an unknown path"),
        }
    }
}

/// An HTTP answer as the leader's pipelined AppendEntries client reads it from a follower's
/// connection: never a panic; an answer it takes is within the input and the size limits, reads
/// the same from exactly its own bytes, and is still incomplete one byte short of them.
pub fn pipelined_answer(data: &[u8]) {
    use raftdump::node::transport::pipelined::parse_answer;
    if data.len() > MAX_INPUT {
        return;
    }
    let Ok(Some(a)) = parse_answer(data) else {
        return;
    };
    assert!(
        a.len > 0 && a.len <= data.len(),
        "took {} of {} bytes",
        a.len,
        data.len()
    );
    assert!(a.body.len() <= 1 << 20, "a body of {} bytes", a.body.len());
    assert_eq!(
        parse_answer(&data[..a.len]),
        Ok(Some(a.clone())),
        "its own bytes"
    );
    assert_eq!(parse_answer(&data[..a.len - 1]), Ok(None), "one byte short");
}
