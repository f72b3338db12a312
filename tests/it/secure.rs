//! Secure defaults of `raftdump serve`, on real processes bound to 127.0.0.1
//! free ports: the cluster token, the join policy, size limits, malformed RPC bodies, slow
//! clients. Every wait has a deadline; only the processes started here are killed, by pid.
//! The helpers are shared with `durability.rs`.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

/// A `raftdump serve` process; killed (SIGKILL) and reaped on drop.
pub(crate) struct Node {
    pub child: Child,
    pub url: String,
    pub stderr: PathBuf,
}

/// Starts `raftdump serve -p 0 EXTRA DIR` (under `wrapper` when given, e.g. `fiu-run ...`)
/// and waits (20 s at most) for its "Listening at" line; `None` if it exited first.
#[allow(clippy::zombie_processes)] // Node's Drop kills and reaps the child.
pub(crate) fn try_spawn(dir: &Path, extra: &[&str], wrapper: &[&str]) -> Result<Node, String> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let stderr = dir.with_extension(format!("stderr.{}.{n}", std::process::id()));
    let f = fs::File::create(&stderr).unwrap();
    let mut cmd = match wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    cmd.args(["serve", "-p", "0"])
        .args(extra)
        .arg(dir)
        .env("RAFTDUMP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f);
    let (child, url) = crate::start_serve(&mut cmd, &stderr)?;
    Ok(Node { child, url, stderr })
}

pub(crate) fn spawn(dir: &Path, extra: &[&str]) -> Node {
    try_spawn(dir, extra, &[])
        .unwrap_or_else(|e| panic!("node on {} did not start: {e}", dir.display()))
}

impl Node {
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
}

/// `(status, body)`; any status is an answer, a transport error is `Err`.
pub(crate) fn request(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let mut rq = agent.request(method, url);
    for (k, v) in headers {
        rq = rq.set(k, v);
    }
    let r = match rq.send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(format!("{method} {url}: {e}")),
    };
    let status = r.status();
    let mut b = Vec::new();
    r.into_reader()
        .take(8 << 20)
        .read_to_end(&mut b)
        .map_err(|e| e.to_string())?;
    Ok((status, b))
}

pub(crate) fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (s, b) = request(&agent(), method, url, headers, body).unwrap();
    (s, String::from_utf8_lossy(&b).into_owned())
}

pub(crate) use crate::eventually;

fn state(n: &Node) -> String {
    let (s, b) = http("GET", &format!("{}/state", n.url), &[], b"");
    assert_eq!(s, 200);
    b
}

fn token_file(dir: &Path, token: &str, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("token");
    fs::write(&p, format!("{token}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

const TOKEN: &str = "cluster-token-7f3a9c21e4b8d605";

#[test]
fn the_token_guards_join_and_raft_routes_and_peers_send_it() {
    let tmp = tempfile::tempdir().unwrap();
    let tf = token_file(tmp.path(), TOKEN, 0o600);
    let tf = tf.to_str().unwrap();
    let n1 = spawn(&tmp.path().join("n1"), &["--token-file", tf]);
    let join = br#"{"name":"intruder","connectionString":"http://127.0.0.1:1"}"#;
    let refused = "raftdump: this route needs a valid X-Raftdump-Token header\n";
    let wrong = [("X-Raftdump-Token", "cluster-token-7f3a9c21e4b8d606")];
    let short = [("X-Raftdump-Token", "cluster-token")];
    for path in [
        "/join",
        "/raft/appendEntries",
        "/raft/requestVote",
        "/raft/snapshot",
        "/raft/snapshotRecovery",
        "/%6Aoin",
    ] {
        let url = format!("{}{path}", n1.url);
        for h in [&[][..], &wrong[..], &short[..]] {
            assert_eq!(
                http("POST", &url, h, join),
                (401, refused.into()),
                "{path} {h:?}"
            );
        }
    }
    // Nothing was appended: the node still has no peer.
    assert_eq!(
        http("GET", &format!("{}/peers", n1.url), &[], b""),
        (200, "{}".into())
    );
    // The token passes; a malformed body then gets the route's own answer.
    let good = [("X-Raftdump-Token", TOKEN)];
    let url = format!("{}/raft/requestVote", n1.url);
    assert_eq!(http("POST", &url, &good, b"\xff\xff"), (400, "\n".into()));
    // The client API is not guarded.
    let url = format!("{}/db/k", n1.url);
    assert_eq!(http("POST", &url, &[], b"v1").0, 200);

    // A second node with the same token joins (its join and its RPCs carry the header) and
    // receives the write.
    let n2 = spawn(
        &tmp.path().join("n2"),
        &[
            "--token-file",
            tf,
            "--read-mode",
            "local",
            "--join",
            &n1.url[7..],
        ],
    );
    assert_eq!(
        http("POST", &format!("{}/db/k2", n1.url), &[], b"v2").0,
        200
    );
    let url = format!("{}/db/k2", n2.url);
    let got = eventually(10, "n2 to apply k2", || {
        let (s, b) = http("GET", &url, &[], b"");
        (s == 200 && b == "v2").then_some(b)
    });
    assert_eq!(got, "v2");
    drop(n2);

    // A node without the token cannot join.
    let n3 = spawn_fails(&tmp.path().join("n3"), &["--join", &n1.url[7..]]);
    assert!(n3.contains("401"), "{n3}");
}

/// Runs a node expected to exit during start-up; its stderr.
fn spawn_fails(dir: &Path, extra: &[&str]) -> String {
    match try_spawn(dir, extra, &[]) {
        Ok(n) => panic!("started: {}", n.stderr_text()),
        Err(text) => text,
    }
}

#[test]
fn a_token_file_readable_by_others_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let tf = token_file(tmp.path(), TOKEN, mode);
        let out = Command::new(BIN)
            .args(["serve", "-p", "0", "--token-file", tf.to_str().unwrap()])
            .arg(tmp.path().join("n"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{mode:o}");
        let err = String::from_utf8_lossy(&out.stderr);
        let want =
            format!("has mode {mode:04o}: group and others must have no access (chmod 600)\n");
        assert!(
            err.starts_with("raftdump: error: the token file ") && err.ends_with(&want),
            "{err}"
        );
    }
}

#[test]
fn fake_joins_leave_a_three_node_cluster_writable() {
    let tmp = tempfile::tempdir().unwrap();
    let n1 = spawn(&tmp.path().join("n1"), &[]);
    let leader = &n1.url[7..];
    let local = ["--read-mode", "local", "--join", leader];
    let n2 = spawn(&tmp.path().join("n2"), &local);
    let n3 = spawn(&tmp.path().join("n3"), &local);
    let peers_url = format!("{}/peers", n1.url);
    let peers = eventually(10, "two peers", || {
        let (s, b) = http("GET", &peers_url, &[], b"");
        (s == 200 && b.matches("connectionString").count() == 2).then_some(b)
    });
    let n2_name = fs::read_to_string(tmp.path().join("n2/name")).unwrap();
    let join = format!("{}/join", n1.url);
    let reused = format!(r#"{{"name":"{n2_name}","connectionString":"http://127.0.0.1:1"}}"#);
    let cases: [(&[u8], u16, &str); 4] = [
        (b"null", 400, "raftdump: a null join is refused\n"),
        (
            br#"{"name":"","connectionString":"http://127.0.0.1:1"}"#,
            400,
            "raftdump: a join needs a non-empty name and connectionString\n",
        ),
        (
            reused.as_bytes(),
            409,
            &format!("raftdump: a member named {n2_name:?} already exists\n"),
        ),
        (
            br#"{"connectionString":"http://127.0.0.1:1"}"#,
            400,
            "raftdump: a join needs a non-empty name and connectionString\n",
        ),
    ];
    for (body, status, text) in cases {
        let got = http("POST", &join, &[], body);
        assert_eq!(
            got,
            (status, text.to_string()),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(http("GET", &peers_url, &[], b""), (200, peers));
    // Still writable, and the write reaches both followers.
    for i in 0..5 {
        let url = format!("{}/db/after{i}", n1.url);
        assert_eq!(http("POST", &url, &[], b"ok").0, 200, "write {i}");
    }
    for n in [&n2, &n3] {
        let url = format!("{}/db/after4", n.url);
        eventually(10, "a follower to apply", || {
            let (s, b) = http("GET", &url, &[], b"");
            (s == 200 && b == "ok").then_some(())
        });
    }
    let log = fs::read(tmp.path().join("n1/log")).unwrap();
    let joins = raftdump::format::log::LogReader::new(&log)
        .filter_map(Result::ok)
        .filter(|e| e.wire.name == raftdump::model::names::JOIN.as_bytes())
        .count();
    assert_eq!(joins, 3, "only the three real joins are in the log");
}

#[test]
fn size_limits_answer_413_and_accept_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let n = spawn(&tmp.path().join("n"), &[]);
    let one_mib = vec![b'v'; 1 << 20];
    let over = vec![b'v'; (1 << 20) + 1];
    assert_eq!(
        http("POST", &format!("{}/db/big", n.url), &[], &over),
        (413, "raftdump: body over 1048576 bytes\n".into())
    );
    assert_eq!(
        http("POST", &format!("{}/db/big", n.url), &[], &one_mib).0,
        200
    );
    let (s, b) = request(&agent(), "GET", &format!("{}/db/big", n.url), &[], b"").unwrap();
    assert_eq!((s, b.len()), (200, 1 << 20));
    assert!(b == one_mib);

    let key8k = "k".repeat(8 << 10);
    let key_over = "k".repeat((8 << 10) + 1);
    for method in ["POST", "GET"] {
        assert_eq!(
            http(method, &format!("{}/db/{key_over}", n.url), &[], b"x"),
            (413, "raftdump: key over 8192 bytes\n".into()),
            "{method}"
        );
    }
    assert_eq!(
        http("POST", &format!("{}/db/{key8k}", n.url), &[], b"x").0,
        200
    );
    assert_eq!(
        http("GET", &format!("{}/db/{key8k}", n.url), &[], b""),
        (200, "x".into())
    );
    // A key that looks like a path is an opaque key, never a file.
    let url = format!("{}/db/..%2F..%2Fetc%2Fpasswd", n.url);
    assert_eq!(http("POST", &url, &[], b"x").0, 404);
    let url = format!("{}/db/..%5C..%5Cname%00", n.url);
    assert_eq!(http("POST", &url, &[], b"dots").0, 200);
    assert_eq!(http("GET", &url, &[], b""), (200, "dots".into()));
}

#[test]
fn malformed_rpc_bodies_get_400_and_change_no_term_or_leader() {
    let tmp = tempfile::tempdir().unwrap();
    let n = spawn(&tmp.path().join("n"), &[]);
    // A leader whose start-up entries (self-join, nop) are committed: nothing moves after.
    let before = eventually(10, "leader", || {
        let s = state(&n);
        (s.contains("State: leader") && s.contains("CommitedIndex: 2 ")).then_some(s)
    });
    let bodies: [&[u8]; 6] = [
        b"",
        b"\xff\xff\xff\xff",
        b"not protobuf at all",
        // RequestVote: term 99, then a truncated length-delimited field.
        b"\x08\x63\x12\x40ab",
        // AppendEntries: term 99 and a field number 0.
        b"\x08\x63\x00\x00",
        // A varint that never ends.
        &[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    ];
    for rpc in [
        "appendEntries",
        "requestVote",
        "snapshot",
        "snapshotRecovery",
    ] {
        for body in bodies {
            let url = format!("{}/raft/{rpc}", n.url);
            let (s, b) = http("POST", &url, &[], body);
            assert_eq!((s, b.as_str()), (400, "\n"), "{rpc} {body:?}");
        }
    }
    assert_eq!(state(&n), before);
    assert_eq!(http("POST", &format!("{}/db/k", n.url), &[], b"v").0, 200);
}

#[test]
fn slow_clients_are_cut_off_and_cannot_starve_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = [
        "--header-timeout",
        "500",
        "--idle-timeout",
        "1000",
        "--max-connections",
        "8",
    ];
    let n = spawn(&tmp.path().join("n"), &limits);
    let addr = &n.url[7..];
    // Eight connections from one address start a request head and never finish it: the address
    // holds at most half of the 8 slots, so at most 4 are held and the others are closed at
    // once (or close an earlier one that the node had not yet seen a byte of: that one is idle).
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"GET /st").unwrap();
        slow.push(c);
    }
    // A ninth, a whole request: refused, unless it too found one of them idle (then served).
    let mut extra = TcpStream::connect(addr).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = extra.write_all(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = Vec::new();
    let _ = extra.read_to_end(&mut buf);
    let extra = String::from_utf8_lossy(&buf).into_owned();
    let extra_held = extra.starts_with("HTTP/1.1 200");
    assert!(extra.is_empty() || extra_held, "over the cap: {extra:?}");
    // Keep trickling a byte every round: the node answers 408 to a kept connection whose head
    // is still unfinished at its deadline (seen on the next byte) or at the 1 s idle timeout
    // (the ninth's answer above may take that long); the connections closed by the cap get no
    // answer.
    let answers = trickle_until_answered(&mut slow, Duration::from_secs(10));
    let cut: Vec<&String> = answers.iter().filter(|a| !a.is_empty()).collect();
    for a in &cut {
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
    }
    // The address holds exactly its share, 4 slots: the slow connections the node kept, and
    // the ninth if it took the slot of one the node had not yet seen a byte of. Which ones is
    // a race; that every kept slow connection gets its 408 is not (the node closes gently: an
    // end of stream after the answer, so no reset discards it), nor that the cap closed the
    // others without an answer.
    let held = cut.len() + usize::from(extra_held);
    assert_eq!(
        held, 4,
        "the address's share, answers {answers:?}, ninth {extra:?}"
    );
    // The node serves again, once the slow clients close as a client that read its answer does.
    drop(slow);
    let url = format!("{}/state", n.url);
    eventually(5, "a served request", || {
        let got = request(&agent(), "GET", &url, &[], b"");
        got.is_ok_and(|(s, _)| s == 200).then_some(())
    });
    // A keep-alive connection is served, then closed by the node once idle (not by the 5 s
    // read timeout here, which would be an error).
    let mut idle = TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let closed = idle.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        closed.is_ok(),
        "an idle connection still open after 5 s: {closed:?}"
    );
}

/// Reads each connection, then writes it a byte if it said nothing, round after round, until
/// each has answered or been closed, at most `limit`; returns what each one answered.
/// Reading first means a byte is never written after an answer (its reset would drop it).
fn trickle_until_answered(conns: &mut [TcpStream], limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut got = vec![None; conns.len()];
    while got.iter().any(Option::is_none) {
        let waiting: Vec<usize> = (0..conns.len()).filter(|i| got[*i].is_none()).collect();
        assert!(
            Instant::now() < deadline,
            "connections {waiting:?} neither answered nor closed within {limit:?}"
        );
        for i in waiting {
            let c = &mut conns[i];
            c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = vec![0u8; 512];
            match c.read(&mut buf) {
                Ok(n) => got[i] = Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let _ = c.write_all(b"a");
                }
                Err(_) => got[i] = Some(String::new()),
            }
        }
    }
    got.into_iter().map(Option::unwrap_or_default).collect()
}
