//! Whole-process load generator for `raftdump serve`: keep-alive HTTP/1.1 clients of its own,
//! bounded in request count and time, against nodes it starts on 127.0.0.1 (free ports).
//!
//! ```text
//! cargo bench --bench load -- write3 [REQUESTS]    3 nodes, 16 clients POST to the leader
//! cargo bench --bench load -- latency3 [REQUESTS]  3 nodes, 1 client: p50 / p99
//! cargo bench --bench load -- write1 [REQUESTS]    1 node, 16 clients
//! cargo bench --bench load -- read1 [REQUESTS]     1 node, 16 clients GET (local reads)
//! cargo bench --bench load -- startup1m            start-up on a 1,000,002-entry log
//! cargo bench --bench load -- startupsnap          start-up on a compacted dir (a snapshot
//!                                                  of 250,000 keys + 200 entries)
//! cargo bench --bench load -- make1m DIR           just write that data dir
//! cargo bench --bench load -- makesnap DIR         just write the compacted dir
//! cargo bench --bench load -- all
//! ```
//!
//! Values are 16 bytes, as in the original raftd's recorded figures (benches/README.md). Every write is fsynced on a majority
//! before raftdump answers it. Each scenario stops after its request count or 60 s.
//! `LOAD_SERVE_ARGS="--flag value"` adds flags to every node (`--snapshot-every 100000` for
//! snapshots during a write run: compare with the same run without); `LOAD_BIN=path` runs that
//! raftdump binary instead of this build's (A/B runs against a saved build).
//!
//! Figures, against the original raftd's recorded ones: benches/README.md.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftdump::format::log::LogWriter;
use raftdump::model::Command as Cmd;

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");
const MAX_TIME: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    addr: String,
    port: u16,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is owned by `Node`, whose Drop stops and reaps it.
#[allow(clippy::zombie_processes)]
fn start(dir: &Path, extra: &[&str]) -> Node {
    let err = dir.with_extension("stderr");
    // LOAD_SERVE_ARGS adds flags to every node (e.g. "--http-threads 16").
    let env_args = std::env::var("LOAD_SERVE_ARGS").unwrap_or_default();
    // LOAD_BIN runs another raftdump binary (A/B runs against a saved build).
    let bin = std::env::var("LOAD_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut child = Command::new(bin)
        .args(["serve", "-p", "0"])
        .args(extra)
        .args(env_args.split_whitespace())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn raftdump");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if let Some(l) = text
            .lines()
            .find(|l| l.starts_with("Listening at: http://"))
        {
            let addr = l["Listening at: http://".len()..].to_string();
            let port = addr
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port");
            return Node { child, addr, port };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("node did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    fn new(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).ok();
        s.set_read_timeout(Some(Duration::from_secs(12))).ok();
        Conn {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        }
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut msg = head.into_bytes();
        msg.extend_from_slice(body);
        self.w.write_all(&msg).expect("write");
        let mut line = String::new();
        if let Err(e) = self.r.read_line(&mut line) {
            panic!("{method} {path}: no answer: {e}");
        }
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().expect("length");
                }
            }
        }
        let mut b = vec![0; len];
        self.r.read_exact(&mut b).expect("body");
        (status, b)
    }
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("v{i:07}-").into_bytes();
    v.resize(16, b'x');
    v
}

/// `clients` threads POST `total` writes, starting at `addrs[0]`; a write refused because
/// leadership moved is retried on the node `/leader` names. Returns (writes/s, p50 ms, p99 ms,
/// max ms, retries).
fn load(
    addrs: &[(String, String)],
    clients: usize,
    total: u64,
    method: &'static str,
) -> (f64, f64, f64, f64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (addrs, next, retries) = (addrs.to_vec(), next.clone(), retries.clone());
            std::thread::spawn(move || {
                let mut at = addrs[0].1.clone();
                let mut c = Conn::new(&at);
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || t0.elapsed() > MAX_TIME {
                        return lat;
                    }
                    let t = Instant::now();
                    let path = format!("/db/key{:06}", i % 100_000);
                    let mut tries = 0;
                    let body = if method == "POST" {
                        value(i)
                    } else {
                        Vec::new()
                    };
                    while c.request(method, &path, &body).0 != 200 {
                        tries += 1;
                        assert!(
                            tries < 200 && t0.elapsed() < MAX_TIME,
                            "write {i} never succeeded"
                        );
                        retries.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                        let (_, leader) = c.request("GET", "/leader", b"");
                        let leader = String::from_utf8_lossy(&leader)
                            .trim_matches('"')
                            .to_string();
                        if let Some((_, a)) = addrs.iter().find(|(n, _)| *n == leader) {
                            if *a != at {
                                at = a.clone();
                                c = Conn::new(&at);
                            }
                        }
                    }
                    lat.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client"))
        .collect();
    let secs = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    (
        lat.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        retries.load(Ordering::Relaxed),
    )
}

fn cluster(tmp: &Path, n: usize, extra: &[&str]) -> Vec<Node> {
    let mut nodes = vec![start(&tmp.join("n1"), extra)];
    let join = format!("127.0.0.1:{}", nodes[0].port);
    for i in 2..=n {
        let mut args = extra.to_vec();
        args.extend(["--join", &join]);
        nodes.push(start(&tmp.join(format!("n{i}")), &args));
    }
    // Let every follower catch up before measuring.
    let mut c = Conn::new(&nodes[0].addr);
    assert_eq!(c.request("POST", "/db/warmup", b"x").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    nodes
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("raftdump-load-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // Fields after the name: state(skipped: not a number) ... utime is field 14, stime 15.
    (f.get(10).copied().unwrap_or(0.0) + f.get(11).copied().unwrap_or(0.0)) / 100.0
}

fn write_scenario(tag: &str, nodes_n: usize, clients: usize, total: u64) {
    run_scenario(tag, nodes_n, clients, total, "POST", &[]);
}

fn run_scenario(
    tag: &str,
    nodes_n: usize,
    clients: usize,
    total: u64,
    method: &'static str,
    extra: &[&str],
) {
    let tmp = tmpdir(tag);
    let nodes = cluster(&tmp, nodes_n, extra);
    let cpu0: Vec<f64> = nodes.iter().map(|n| cpu_secs(n.child.id())).collect();
    let addrs: Vec<(String, String)> = (1..=nodes_n)
        .map(|i| std::fs::read_to_string(tmp.join(format!("n{i}/name"))).expect("name"))
        .zip(nodes.iter().map(|n| n.addr.clone()))
        .collect();
    let (rate, p50, p99, max, retries) = load(&addrs, clients, total, method);
    let cpu: Vec<String> = nodes
        .iter()
        .zip(cpu0)
        .map(|(n, c0)| format!("{:.0}", (cpu_secs(n.child.id()) - c0) * 1e6 / total as f64))
        .collect();
    println!(
        "{tag}: {nodes_n} node(s), {clients} client(s), {total} {method}s of 16 bytes: {rate:.0} requests/s, p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.1} ms; {retries} retries after leader changes; CPU us/request per node: {}",
        cpu.join(" ")
    );
    // With `--snapshot-every`: the snapshots each node holds at the end, so that a run says
    // whether they were taken.
    let snaps: Vec<usize> = (1..=nodes_n)
        .map(|i| {
            std::fs::read_dir(tmp.join(format!("n{i}/snapshot"))).map_or(0, |d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ss"))
                    .count()
            })
        })
        .collect();
    if snaps.iter().any(|&n| n > 0) {
        let each: Vec<String> = snaps.iter().map(usize::to_string).collect();
        println!(
            "{tag}: snapshot files per node at the end: {}",
            each.join(" ")
        );
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The large-1m log, as fixtures/goraft/large-1m/README.txt describes it.
fn make_1m(dir: &Path) {
    std::fs::create_dir_all(dir.join("snapshot")).expect("dir");
    std::fs::write(dir.join("name"), "9a53ec2").expect("name");
    std::fs::write(dir.join("conf"), "{\"commitIndex\":1,\"peers\":[]}").expect("conf");
    let f = std::fs::File::create(dir.join("log")).expect("log");
    let mut w = LogWriter::new(std::io::BufWriter::with_capacity(1 << 20, f));
    let join = Cmd::Join {
        name: "9a53ec2".into(),
        connection_string: "http://127.0.0.1:24001".into(),
    };
    w.append(1, 0, &join).expect("write");
    w.append(2, 0, &Cmd::Nop).expect("write");
    for i in 0..1_000_000u64 {
        let key = format!("mkey{:07}", i % 250_000);
        let v = String::from_utf8(value(i)).expect("ascii");
        w.append(i + 3, 0, &Cmd::Write { key, value: v })
            .expect("write");
    }
    let n = w.bytes_written();
    w.into_inner().flush().expect("flush");
    assert_eq!(n, 72_983_606, "the large-1m log's size");
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts a node on `dir` and prints, as `tag run N`, when its HTTP listens and when the last
/// key (`mkey0249999`, written last with `value(999_999)`) answers right, and its peak RSS.
fn time_to_last_key(tag: &str, run: u32, dir: &Path) {
    let t0 = Instant::now();
    let node = start(dir, &[]);
    let listening = t0.elapsed();
    let mut c = Conn::new(&node.addr);
    let want = value(999_999);
    loop {
        let (s, b) = c.request("GET", "/db/mkey0249999", b"");
        if s == 200 && b == want {
            break;
        }
        assert!(t0.elapsed() < MAX_TIME, "the last key never answered");
        std::thread::sleep(Duration::from_millis(1));
    }
    let ready = t0.elapsed();
    println!(
        "{tag} run {run}: HTTP listening after {:.0} ms, last key right after {:.0} ms, peak RSS {:.1} MB",
        listening.as_secs_f64() * 1e3,
        ready.as_secs_f64() * 1e3,
        vm_hwm_kb(node.child.id()) as f64 / 1024.0
    );
}

fn startup_1m() {
    let tmp = tmpdir("1m");
    let gold = tmp.join("gold");
    make_1m(&gold);
    for run in 1..=3 {
        let dir = tmp.join(format!("run{run}"));
        std::fs::create_dir_all(dir.join("snapshot")).expect("dir");
        for f in ["log", "conf", "name"] {
            std::fs::copy(gold.join(f), dir.join(f)).expect("copy");
        }
        let _ = std::fs::read(dir.join("log")); // warm page cache, as the baseline
        time_to_last_key("startup1m", run, &dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A compacted dir: a snapshot at index 1,000,000 of 250,000 keys (`mkey0000000`..) and the
/// 200 entries goraft keeps after compaction, the last of them writing `mkey0249999`.
fn make_compacted(dir: &Path) {
    use raftdump::format::snapshot;
    use raftdump::model::{Peer, Snapshot};
    const AT: u64 = 1_000_000;
    std::fs::create_dir_all(dir.join("snapshot")).expect("dir");
    std::fs::write(dir.join("name"), "9a53ec2").expect("name");
    std::fs::write(
        dir.join("conf"),
        format!("{{\"commitIndex\":{AT},\"peers\":[]}}"),
    )
    .expect("conf");
    let map: std::collections::BTreeMap<String, String> = (0..250_000u64)
        .map(|i| {
            let v = String::from_utf8(value(i)).expect("ascii");
            (format!("mkey{i:07}"), v)
        })
        .collect();
    let path = dir.join(format!("snapshot/0_{AT}.ss"));
    let snap = Snapshot {
        last_index: AT,
        last_term: 0,
        peers: Some(vec![Peer {
            name: "9a53ec2".into(),
            connection_string: "http://127.0.0.1:24001".into(),
        }]),
        state: Some(serde_json::to_vec(&map).expect("json")),
        path: path.to_string_lossy().into_owned(),
    };
    std::fs::write(&path, snapshot::encode(&snap)).expect("snapshot");
    let f = std::fs::File::create(dir.join("log")).expect("log");
    let mut w = LogWriter::new(std::io::BufWriter::new(f));
    for i in 0..200u64 {
        let key = format!("mkey{:07}", 249_800 + i);
        let v = String::from_utf8(value(999_800 + i)).expect("ascii");
        w.append(AT + 1 + i, 0, &Cmd::Write { key, value: v })
            .expect("write");
    }
    w.into_inner().flush().expect("flush");
}

fn startup_snap() {
    let tmp = tmpdir("snap");
    for run in 1..=5 {
        let dir = tmp.join(format!("run{run}"));
        make_compacted(&dir);
        time_to_last_key("startupsnap", run, &dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn main() {
    // `cargo test --benches` runs bench binaries without `--bench`: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("load: run it with `cargo bench --bench load -- SCENARIO`");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map_or("all", String::as_str);
    let n = |d: u64| args.get(1).and_then(|s| s.parse().ok()).unwrap_or(d);
    match what {
        "write3" => write_scenario("write3", 3, 16, n(100_000)),
        "latency3" => write_scenario("latency3", 3, 1, n(5_000)),
        "write1" => write_scenario("write1", 1, 16, n(100_000)),
        "read1" => run_scenario("read1", 1, 16, n(100_000), "GET", &["--read-mode", "local"]),
        "startup1m" => startup_1m(),
        "startupsnap" => startup_snap(),
        "makesnap" => make_compacted(Path::new(args.get(1).map_or("compacted", String::as_str))),
        "make1m" => make_1m(Path::new(args.get(1).map_or("large-1m", String::as_str))),
        "all" => {
            write_scenario("write3", 3, 16, 100_000);
            write_scenario("latency3", 3, 1, 5_000);
            write_scenario("write1", 1, 16, 100_000);
            startup_1m();
        }
        other => eprintln!(
            "unknown scenario {other}: write3, latency3, write1, startup1m, startupsnap, all"
        ),
    }
}
