use super::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    fn rpc_async(&self, _: Rpc, _: Vec<u8>, _: Duration, done: RpcDone) {
        self.rpcs.lock().unwrap().push(done);
    }
}

/// Waits (bounded) until `api` holds `writes` write and `rpcs` RPC callbacks.
fn wait_held(api: &Holding, writes: usize, rpcs: usize) {
    for _ in 0..500 {
        if api.writes.lock().unwrap().len() == writes && api.rpcs.lock().unwrap().len() == rpcs {
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

/// The header names of each answer in `text` (a stream of answers), in order.
fn header_names(text: &str) -> Vec<Vec<String>> {
    text.split("HTTP/1.1 ")
        .skip(1)
        .map(|a| {
            let head = a.split("\r\n\r\n").next().unwrap();
            head.split("\r\n")
                .skip(1)
                .map(|l| l.split(':').next().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn answers_have_go_net_http_headers_in_its_order() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let api = Arc::new(Fake::default());
    let stop = Arc::new(AtomicBool::new(false));
    let server = Server::start(listener, api, HttpOptions::default(), 0, stop).unwrap();
    let text = raw(
        addr,
        &[b"GET /leader HTTP/1.1\r\n\r\n\
            GET /nope HTTP/1.1\r\n\r\n\
            POST /raft/appendEntries HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\
            POST /db/k HTTP/1.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\nv"],
    );
    let names = header_names(&text);
    // As raftd's: a body the handler wrote gets net/http's detected Content-Type after Date
    // and Content-Length; http.Error's headers are the handler's, sorted, before them; an
    // empty 200 has none; Connection: close answers a request that asked for it; no Server
    // header anywhere.
    let want: [&[&str]; 4] = [
        &["Date", "Content-Length", "Content-Type"],
        &[
            "Content-Type",
            "X-Content-Type-Options",
            "Date",
            "Content-Length",
        ],
        &[
            "Content-Type",
            "X-Content-Type-Options",
            "Date",
            "Content-Length",
        ],
        &["Date", "Content-Length", "Connection"],
    ];
    assert_eq!(names, want, "{text}");
    assert!(
        text.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"),
        "{text}"
    );
    // An HTTP/1.0 request that keeps its connection is told so.
    let text = raw(
        addr,
        &[b"GET /leader HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
            GET /leader HTTP/1.0\r\n\r\n"],
    );
    let want: [&[&str]; 2] = [
        &["Date", "Content-Length", "Content-Type", "Connection"],
        &["Date", "Content-Length", "Content-Type"],
    ];
    assert_eq!(
        header_names(&text.replace("HTTP/1.0 ", "HTTP/1.1 ")),
        want,
        "{text}"
    );
    assert!(
        text.contains("Content-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\"\"")
    );
    server.stop();
}
