//! The pipelined HTTP/1.1 client for AppendEntries: requests written on one kept connection
//! without waiting for the answer to the one before, a reader thread matching answers to
//! requests in order, and its own parser of the answers (Content-Length or chunked).
//!
//! Why not ureq: ureq waits for each answer before it writes the next request, and its
//! per-request work (URL parsing, the pool, header maps) was a sixth of the leader's CPU under
//! `cargo bench --bench load -- write3`. Writing on a kept connection without waiting cut the
//! leader's CPU per acknowledged write by about 20% (benches/README.md, "serve: AppendEntries
//! pipelined"), and lets a follower receive the next batch while it fsyncs the last.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use super::{drain_merged, Queued, Sink, Timeouts, MAX_ANSWER, RAFTDUMP_HEADER};
use crate::format::rpc::{decode_append_response, encode_append_request_into};
use crate::node::core::{AppendResponse, Event, SentAppend};
use crate::node::ratelog;

/// The site of this module's per-connection debug lines (rate-limited per peer).
const DEBUG: (log::Level, &str) = (log::Level::Debug, module_path!());

/// What the runtime's thread and a peer's worker share: the open connection, and how many
/// requests the worker holds (queued or being written). The caller writes a request itself
/// only when the worker holds none (so order is kept) and the connection is open: that
/// saves a thread hand-off (a wake-up and a context switch) on the path of every round.
#[derive(Default)]
pub(super) struct DirectState {
    pub(super) conn: std::sync::Mutex<Option<PipeConn>>,
    /// Incremented by the caller before it queues a request, decremented by the worker
    /// under the `conn` lock once the request is written (or failed).
    pub(super) queued: std::sync::atomic::AtomicUsize,
    /// Requests the caller wrote itself (for tests and debugging).
    pub(super) direct_writes: std::sync::atomic::AtomicUsize,
}

/// `head` + the body's length + the body: one HTTP request, written with one call.
pub(super) fn build_message(head: &str, body: &[u8], msg: &mut Vec<u8>) {
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
pub(super) fn write_request(
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
        ratelog::log(DEBUG, "write", || format!("AppendEntries: {e}"));
        *conn = None;
    }
    Ok(())
}

/// A peer's AppendEntries endpoint for the pipelined client: a plain `http://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// `host:port` to connect to (port 80 added when absent).
    pub(super) connect: String,
    /// The request head up to (without) the Content-Length value.
    pub(super) head: String,
}

impl Target {
    /// `None` for anything but `http://authority/path` (those go through ureq).
    pub(super) fn parse(url: &str, token: Option<&str>) -> Option<Target> {
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
            head.push_str(&format!("{}: {t}\r\n", crate::node::security::TOKEN_HEADER));
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
pub(super) struct PipeConn {
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
                    ratelog::log(DEBUG, &format!("answer {peer}"), || {
                        format!("AppendEntries answer from {peer}: {e}")
                    });
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
                    ratelog::log(DEBUG, &format!("late {peer}"), || {
                        format!("AppendEntries to {peer}: no answer in {timeout:?}")
                    });
                    break;
                }
            }
            Err(e) => {
                ratelog::log(DEBUG, &format!("read {peer}"), || {
                    format!("AppendEntries to {peer}: {e}")
                });
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAnswer {
    /// Bytes it took.
    pub len: usize,
    /// Its body, de-chunked.
    pub body: Vec<u8>,
    /// It carried [`RAFTDUMP_HEADER`].
    pub raftdump: bool,
    /// The server closes the connection after it.
    pub close: bool,
}

/// Largest answer head accepted (bytes).
const MAX_HEAD: usize = 16 << 10;

/// The answer at the front of `b`: `Ok(None)` while it is incomplete. 1xx answers are
/// skipped. The body is delimited by Content-Length or chunked encoding (Go's server uses
/// one of them on a keep-alive connection).
pub fn parse_answer(b: &[u8]) -> Result<Option<ParsedAnswer>, String> {
    let mut at = 0;
    loop {
        let rest = &b[at..];
        // A head is refused over MAX_HEAD bytes whether it arrives whole or in parts (up to
        // MAX_HEAD + 3 bytes may still end in its terminator).
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            if rest.len() > MAX_HEAD + 3 {
                return Err("answer head too long".into());
            }
            return Ok(None);
        };
        if end > MAX_HEAD {
            return Err("answer head too long".into());
        }
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
pub(super) fn pipelined_worker(
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
                    Err(e) => ratelog::log(
                        (log::Level::Warn, module_path!()),
                        &format!("connect {peer}"),
                        || format!("cannot reach peer {peer} at {}: {e}", target.connect),
                    ),
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
        assert!(parse_answer(&[b'x'; MAX_HEAD + 4]).is_err());
        // The head limit is the same whether the head arrives whole or in parts.
        let mut at_limit = b"HTTP/1.1 204 No Content\r\nX: ".to_vec();
        at_limit.resize(MAX_HEAD, b'x');
        at_limit.extend_from_slice(b"\r\n\r\n");
        assert!(parse_answer(&at_limit).unwrap().is_some());
        for cut in [MAX_HEAD, MAX_HEAD + 1, MAX_HEAD + 3] {
            assert_eq!(parse_answer(&at_limit[..cut]), Ok(None), "cut at {cut}");
        }
        let mut over = at_limit[..MAX_HEAD].to_vec();
        over.extend_from_slice(b"x\r\n\r\n");
        assert!(parse_answer(&over).is_err());
    }
}
