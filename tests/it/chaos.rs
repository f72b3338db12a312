//! Cluster chaos with a linearizability check: three real `raftdump serve`
//! processes on 127.0.0.1 (ports from binding port 0), six client threads that record every
//! operation (start, end, result), and one nemesis a scenario: kill -9 of the leader then a
//! restart, SIGSTOP of the leader then SIGCONT, or isolation of the leader behind the harness'
//! own TCP proxies (each node advertises a proxy port with `--advertise`, so every byte between
//! nodes passes through a proxy this file controls). Afterwards: each key's history is checked
//! for linearizability with todc-utils' WGL checker, no acknowledged write is lost, the data
//! dirs are clean under `raftdump verify` and identical under `raftdump diff`, and writes were
//! accepted again within 5 s of each fault's end. A negative control runs the same recorder and
//! checker on `--read-mode=local` nodes with a scripted stale read, which must be rejected.
//!
//! A scenario runs `RAFTDUMP_CHAOS_SECS` seconds (default 20). Every loop is bounded; only the
//! processes started here are signalled or killed, by pid, also on panic (drop guards).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::eventually;

use todc_utils::linearizability::history::{Action, History};
use todc_utils::linearizability::WGLChecker;
use todc_utils::specifications::register::{RegisterOperation, RegisterSpecification};

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");
const NODES: usize = 3;
const CLIENTS: usize = 6;
/// Few keys, so that each key sees real concurrency; few enough ops that WGL stays fast.
const KEYS: usize = 8;
/// How long writes are tried once a fault has ended before the scenario fails (a bound that
/// keeps a cluster that never recovers from hanging the test; how fast it recovers is printed).
const RECOVERY: Duration = Duration::from_secs(15);

fn scenario_secs() -> u64 {
    std::env::var("RAFTDUMP_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// One node: its process (None while killed), its dir, its HTTP port and the port it advertises.
struct Proc {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    advertise: Option<u16>,
    extra: Vec<String>,
    stderr: PathBuf,
    starts: u32,
    /// The proxies and this node's index there: told the pid as soon as it is spawned.
    net: Option<(Arc<Net>, usize)>,
}

impl Proc {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn name(&self) -> String {
        fs::read_to_string(self.dir.join("name")).unwrap_or_default()
    }

    /// Starts (or restarts, on the same dir and port) the process; `join` only the first time.
    // The child is owned by `Proc`, whose Drop kills and waits for it.
    #[allow(clippy::zombie_processes)]
    fn start(&mut self, join: Option<u16>) {
        assert!(self.child.is_none());
        self.starts += 1;
        let stderr = self.dir.with_extension(format!("stderr.{}", self.starts));
        let f = fs::File::create(&stderr).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra);
        if let Some(a) = self.advertise {
            cmd.args(["--advertise", &format!("127.0.0.1:{a}")]);
        }
        if let Some(j) = join {
            cmd.args(["--join", &format!("127.0.0.1:{j}")]);
        }
        let child = cmd
            .arg(&self.dir)
            .env("RAFTDUMP_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        if let Some((net, i)) = &self.net {
            net.pids.lock().unwrap()[*i] = Some(child.id());
        }
        self.child = Some(child);
        self.stderr = stderr;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read_to_string(&self.stderr).unwrap_or_default();
            if let Some(line) = text
                .split_inclusive('\n')
                .find(|l| l.starts_with("Listening at: ") && l.ends_with('\n'))
            {
                let port = line.trim_end().rsplit(':').next().unwrap().parse().unwrap();
                if self.port == 0 {
                    self.port = port;
                }
                assert_eq!(self.port, port, "{text}");
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "node on {} did not start ({exited:?}): {text}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: &str) {
        let pid = self.pid().expect("signal to a running node");
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig} {pid}");
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and a bounded wait for a clean exit.
    fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-CONT", &c.id().to_string()])
            .status();
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                let text = fs::read_to_string(&self.stderr).unwrap_or_default();
                assert_eq!(s.code(), Some(0), "{}: {text}", self.dir.display());
                return;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("{} did not exit after SIGTERM", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        self.kill9();
    }
}

/// Three nodes (and, when isolating, their proxies); dropping it kills what it started.
struct Cluster {
    nodes: Vec<Proc>,
    net: Option<Arc<Net>>,
    /// Kept (and its path printed) when the test panics, for a look at the data dirs.
    tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    fn start(extra: &[&str], proxied: bool) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        // Free ports for the nodes: bind port 0, note it, let it go (as the proxies need to
        // know their targets before the nodes start).
        let mut nodes: Vec<Proc> = (0..NODES)
            .map(|i| Proc {
                child: None,
                dir: tmp.path().join(format!("n{}", i + 1)),
                port: if proxied { crate::free_port() } else { 0 },
                advertise: None,
                extra: extra.clone(),
                stderr: PathBuf::new(),
                starts: 0,
                net: None,
            })
            .collect();
        let net = proxied.then(|| Net::start(&nodes.iter().map(|n| n.port).collect::<Vec<_>>()));
        if let Some(net) = &net {
            for (i, (n, p)) in nodes.iter_mut().zip(net.proxy_ports.iter()).enumerate() {
                n.advertise = Some(*p);
                n.net = Some((net.clone(), i));
            }
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            net,
            tmp: Some(tmp),
        };
        nodes[0].start(None);
        let first = nodes[0].port;
        cluster.nodes.push(nodes.remove(0));
        for mut n in nodes {
            n.start(Some(first));
            cluster.nodes.push(n);
        }
        cluster.publish_pids();
        // All three are members and a leader commits.
        eventually(20, "a 3-node cluster that commits", || {
            let l = cluster.leader(&[])?;
            let url = format!("{}/db/boot", cluster.nodes[l].url());
            (http(&agent(2000), "POST", &url, b"1").0 == 200).then_some(())
        });
        // Apart from the write: each write moves the leader's commit index ahead again.
        eventually(10, "the same commit index on every node", || {
            cluster.same_commit().then_some(())
        });
        if let Some(net) = &cluster.net {
            // The nodes reach each other through the proxies (serve --advertise).
            assert!(
                net.relayed.load(Ordering::SeqCst) > 0,
                "no connection went through a proxy"
            );
        }
        cluster
    }

    fn publish_pids(&self) {
        if let Some(net) = &self.net {
            *net.pids.lock().unwrap() = self.nodes.iter().map(Proc::pid).collect();
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Proc::url).collect()
    }

    /// The node that says it leads and that another node follows, skipping `skip`.
    fn leader(&self, skip: &[usize]) -> Option<usize> {
        let a = agent(500);
        let live: Vec<usize> = (0..NODES)
            .filter(|i| !skip.contains(i) && self.nodes[*i].child.is_some())
            .collect();
        for &i in &live {
            let (s, b) = http(&a, "GET", &format!("{}/state", self.nodes[i].url()), b"");
            if s != 200 || !b.contains("State: leader") {
                continue;
            }
            let name = self.nodes[i].name();
            let followed = live.iter().filter(|j| **j != i).any(|j| {
                let (s, b) = http(&a, "GET", &format!("{}/leader", self.nodes[*j].url()), b"");
                s == 200 && serde_json::from_str::<String>(&b).ok() == Some(name.clone())
            });
            if followed {
                return Some(i);
            }
        }
        None
    }

    /// Every running node reports the same commit index.
    fn same_commit(&self) -> bool {
        let a = agent(500);
        let commits: Vec<Option<String>> = self
            .nodes
            .iter()
            .map(|n| {
                let (s, b) = http(&a, "GET", &format!("{}/state", n.url()), b"");
                (s == 200).then(|| {
                    b.split("CommitedIndex: ")
                        .nth(1)
                        .map(|c| c.trim_end_matches(['"', ' ']).to_string())
                })?
            })
            .collect();
        commits.iter().all(|c| c.is_some() && *c == commits[0])
    }

    /// A write accepted by some node, tried until one is; the time it took.
    fn time_to_write(&self, value: &str) -> Duration {
        let t0 = Instant::now();
        // Short attempts: a node that is cut off must not hide one that answers.
        let a = agent(300);
        let deadline = t0 + RECOVERY;
        let mut i = 0;
        loop {
            let (s, _) = http(
                &a,
                "POST",
                &format!("{}/db/probe", self.nodes[i % NODES].url()),
                value.as_bytes(),
            );
            if s == 200 {
                return t0.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "no node accepted a write within {RECOVERY:?} after the fault ended"
            );
            i += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn agent(timeout_ms: u64) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_millis(timeout_ms.min(500)))
        .timeout(Duration::from_millis(timeout_ms))
        .build()
}

/// `(status, body)`; 0 when no answer came (refused, reset or timed out).
fn http(a: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> (u16, String) {
    match a.request(method, url).send_bytes(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let s = r.status();
            let mut b = String::new();
            match r.into_reader().take(1 << 16).read_to_string(&mut b) {
                Ok(_) => (s, b),
                Err(_) => (0, String::new()),
            }
        }
        Err(_) => (0, String::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// The history

/// What an operation came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Answered 200.
    Ok,
    /// Certainly had no effect (refused: connection refused, or "not the leader").
    Failed,
    /// May or may not have taken effect (timeout, reset, any other error).
    Unknown,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Write(u32),
    /// The value read (0: absent); meaningful when the outcome is Ok.
    Read(u32),
}

#[derive(Debug, Clone)]
struct Op {
    /// A process in the Knossos sense: a client gets a new one after an op of unknown outcome.
    process: usize,
    key: usize,
    kind: Kind,
    start: u64,
    end: u64,
    outcome: Outcome,
}

/// Every client's operations, stamped against one clock.
struct Recorder {
    t0: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            t0: Instant::now(),
            ops: Mutex::new(Vec::new()),
        })
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// Runs one write through `a` on `url`, records it and returns its outcome.
    fn write(&self, a: &ureq::Agent, url: &str, process: usize, key: usize, v: u32) -> Outcome {
        let start = self.now();
        let r = a
            .post(&format!("{url}/db/k{key}"))
            .send_bytes(v.to_string().as_bytes());
        let end = self.now();
        let outcome = match r {
            Ok(r) if r.status() == 200 => Outcome::Ok,
            Err(ureq::Error::Status(400, r)) => {
                let b = r.into_string().unwrap_or_default();
                // Refused before anything was proposed.
                if b == "raft.Server: Not current leader\n" {
                    Outcome::Failed
                } else {
                    Outcome::Unknown
                }
            }
            Err(ureq::Error::Transport(t)) if is_refused(&t) => Outcome::Failed,
            _ => Outcome::Unknown,
        };
        self.push(Op {
            process,
            key,
            kind: Kind::Write(v),
            start,
            end,
            outcome,
        });
        outcome
    }

    /// Runs one read; only answered reads count (a read has no effect).
    fn read(&self, a: &ureq::Agent, url: &str, process: usize, key: usize) -> Option<u32> {
        let start = self.now();
        let r = a.get(&format!("{url}/db/k{key}")).call();
        let got = match r {
            Ok(r) if r.status() == 200 => r.into_string().ok(),
            _ => None,
        };
        let end = self.now();
        let value = got.map(|b| {
            if b.is_empty() {
                0
            } else {
                b.parse::<u32>()
                    .unwrap_or_else(|_| panic!("k{key} holds {b:?}, never written"))
            }
        });
        self.push(Op {
            process,
            key,
            kind: Kind::Read(value.unwrap_or(0)),
            start,
            end,
            outcome: if value.is_some() {
                Outcome::Ok
            } else {
                Outcome::Failed
            },
        });
        value
    }

    fn push(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }
}

fn is_refused(t: &ureq::Transport) -> bool {
    use std::error::Error as _;
    let mut src = t.source();
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        src = e.source();
    }
    t.kind() == ureq::ErrorKind::ConnectionFailed
}

/// Whether one key's operations are linearizable for a register that starts at 0 (absent).
/// Ok operations take effect between their start and end; a write of unknown outcome may take
/// effect at any time after its start (its response goes at the very end of the history); a
/// failed operation and an unanswered read are left out.
fn linearizable(ops: &[&Op]) -> bool {
    type Spec = RegisterSpecification<u32>;
    let mut events: Vec<(u64, u8, usize, Action<RegisterOperation<u32>>)> = Vec::new();
    let mut procs: HashMap<usize, usize> = HashMap::new();
    for op in ops {
        let (call, ret, end) = match (op.kind, op.outcome) {
            (_, Outcome::Failed) | (Kind::Read(_), Outcome::Unknown) => continue,
            (Kind::Write(v), Outcome::Ok) => (
                RegisterOperation::Write(v),
                RegisterOperation::Write(v),
                op.end,
            ),
            (Kind::Write(v), Outcome::Unknown) => (
                RegisterOperation::Write(v),
                RegisterOperation::Write(v),
                u64::MAX,
            ),
            (Kind::Read(v), Outcome::Ok) => (
                RegisterOperation::Read(None),
                RegisterOperation::Read(Some(v)),
                op.end,
            ),
        };
        let n = procs.len();
        let p = *procs.entry(op.process).or_insert(n);
        events.push((op.start, 0, p, Action::Call(call)));
        events.push((end, 1, p, Action::Response(ret)));
    }
    if events.is_empty() {
        return true;
    }
    events.sort_by_key(|e| (e.0, e.1));
    let actions = events.into_iter().map(|(_, _, p, a)| (p, a)).collect();
    WGLChecker::<Spec>::is_linearizable(History::from_actions(actions))
}

/// Per-key linearizability of a history: the keys that fail, and the op count checked.
fn check_history(ops: &[Op]) -> (Vec<usize>, usize) {
    let mut by_key: BTreeMap<usize, Vec<&Op>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key).or_default().push(op);
    }
    let mut bad = Vec::new();
    let mut checked = 0;
    for (k, ops) in &by_key {
        checked += ops.iter().filter(|o| o.outcome != Outcome::Failed).count();
        let t = Instant::now();
        if !linearizable(ops) {
            bad.push(*k);
        }
        eprintln!(
            "chaos: key k{k}: {} ops checked in {:?}",
            ops.len(),
            t.elapsed()
        );
    }
    (bad, checked)
}

/// Acknowledged writes whose value is gone: the final value of the key is neither theirs nor
/// that of a write (acknowledged or not) that did not end before they started.
fn lost_writes(ops: &[Op], finals: &BTreeMap<usize, u32>) -> Vec<String> {
    let mut lost = Vec::new();
    for w in ops {
        let (Kind::Write(v), Outcome::Ok) = (w.kind, w.outcome) else {
            continue;
        };
        let f = finals.get(&w.key).copied().unwrap_or(0);
        if f == v {
            continue;
        }
        let later = ops.iter().any(|o| {
            matches!(o.kind, Kind::Write(x) if x == f)
                && o.key == w.key
                && o.outcome != Outcome::Failed
                && !(o.outcome == Outcome::Ok && o.end < w.start)
        });
        if !later {
            lost.push(format!("k{}={v} (final {f})", w.key));
        }
    }
    lost
}

// ---------------------------------------------------------------------------------------------
// Clients

/// Six clients, each on its own thread with a keep-alive agent, until `stop` or its op cap.
fn start_clients(
    urls: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    cap: usize,
) -> Vec<JoinHandle<()>> {
    let seed = rec.t0.elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    (0..CLIENTS)
        .map(|c| {
            let (urls, rec, stop) = (urls.clone(), rec.clone(), stop.clone());
            std::thread::spawn(move || {
                let a = agent(1000);
                let mut rng = seed.wrapping_add(c as u64 * 7919) | 1;
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut incarnation = 0;
                let mut seq = 0u32;
                let mut node = c % NODES;
                for _ in 0..cap {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let process = c * 100_000 + incarnation;
                    let key = (next() % KEYS as u64) as usize;
                    let ok = if next() % 2 == 0 {
                        seq += 1;
                        // Unique values: the client in the high bits.
                        let v = ((c as u32 + 1) << 24) | seq;
                        match rec.write(&a, &urls[node], process, key, v) {
                            Outcome::Ok => true,
                            Outcome::Failed => false,
                            Outcome::Unknown => {
                                incarnation += 1;
                                false
                            }
                        }
                    } else {
                        rec.read(&a, &urls[node], process, key).is_some()
                    };
                    if !ok {
                        // Try the next node (followers refuse; a dead or stopped one fails).
                        node = (node + 1) % NODES;
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    std::thread::sleep(Duration::from_millis(5 + next() % 10));
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Nemeses and the scenario runner

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nemesis {
    /// kill -9 of the leader every 10 s; restarted after 1 s.
    Kill,
    /// SIGSTOP of the leader for 5 s every 15 s.
    Stop,
    /// The leader cut off from the other nodes both ways for 10 s every 20 s.
    Isolate,
}

impl Nemesis {
    /// (period, fault length)
    fn schedule(self) -> (Duration, Duration) {
        match self {
            Nemesis::Kill => (Duration::from_secs(10), Duration::from_secs(1)),
            Nemesis::Stop => (Duration::from_secs(15), Duration::from_secs(5)),
            Nemesis::Isolate => (Duration::from_secs(20), Duration::from_secs(10)),
        }
    }
}

struct Fault {
    /// From the start of the fault to a new leader among the other nodes.
    elected_in: Duration,
    /// From the end of the fault to the first accepted write.
    recovered_in: Duration,
}

/// Injects one fault on the current leader, waits for the others to elect a new leader (which
/// shows that the fault took), and heals it once `length` has passed.
fn inject(cluster: &mut Cluster, nemesis: Nemesis, length: Duration) -> Fault {
    let l = eventually(10, "a leader", || cluster.leader(&[]));
    let t0 = Instant::now();
    match nemesis {
        Nemesis::Kill => {
            cluster.nodes[l].kill9();
            cluster.publish_pids();
        }
        Nemesis::Stop => cluster.nodes[l].signal("-STOP"),
        Nemesis::Isolate => cluster.net.as_ref().expect("a proxied cluster").isolate(l),
    }
    let new = eventually(10, "a new leader during the fault", || cluster.leader(&[l]));
    let elected_in = t0.elapsed();
    assert_ne!(new, l);
    std::thread::sleep(length.saturating_sub(t0.elapsed()));
    match nemesis {
        Nemesis::Kill => {
            cluster.nodes[l].start(None);
            cluster.publish_pids();
        }
        Nemesis::Stop => cluster.nodes[l].signal("-CONT"),
        Nemesis::Isolate => cluster.net.as_ref().expect("a proxied cluster").heal(),
    }
    Fault {
        elected_in,
        recovered_in: cluster.time_to_write("after-fault"),
    }
}

/// What a scenario measured.
struct Report {
    ops: usize,
    checked: usize,
    faults: Vec<Duration>,
}

fn run_scenario(nemesis: Nemesis) -> Report {
    let secs = scenario_secs();
    let mut cluster = Cluster::start(&[], nemesis == Nemesis::Isolate);
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    // Bounded: at most 100 ops a second a client on average (they pause 5-15 ms between ops).
    let clients = start_clients(
        cluster.urls(),
        rec.clone(),
        stop.clone(),
        secs as usize * 100,
    );
    let (period, length) = nemesis.schedule();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(secs);
    let mut faults = Vec::new();
    let mut next = t0 + Duration::from_secs(2);
    // Each round leaves room for the fault and its recovery before the end.
    while next + length + Duration::from_secs(1) <= end {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let f = inject(&mut cluster, nemesis, length);
        eprintln!(
            "chaos: {nemesis:?} at {:?}: a new leader after {:?}, writes accepted {:?} \
             after the fault ended",
            next - t0,
            f.elected_in,
            f.recovered_in
        );
        faults.push(f.recovered_in);
        next += period;
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    if let Some(net) = &cluster.net {
        eprintln!(
            "chaos: proxies relayed {} connections ({} of unknown source)",
            net.relayed.load(Ordering::SeqCst),
            net.unknown.load(Ordering::SeqCst)
        );
    }
    finish(
        cluster,
        &rec,
        Report {
            ops: 0,
            checked: 0,
            faults,
        },
    )
}

/// The checks after a run: final reads through the leader (appended to the history), per-key
/// linearizability, lost writes, every node's state after a clean stop, verify and diff.
fn finish(mut cluster: Cluster, rec: &Recorder, mut report: Report) -> Report {
    let l = eventually(15, "a leader after the run", || cluster.leader(&[]));
    let a = agent(2000);
    let mut finals = BTreeMap::new();
    for k in 0..KEYS {
        let v = rec
            .read(&a, &cluster.nodes[l].url(), 9_000_000 + k, k)
            .unwrap_or_else(|| panic!("final read of k{k} failed"));
        finals.insert(k, v);
    }
    let ops = rec.ops();
    let (bad, checked) = check_history(&ops);
    let lost = lost_writes(&ops, &finals);
    let acked = ops
        .iter()
        .filter(|o| matches!(o.kind, Kind::Write(_)) && o.outcome == Outcome::Ok)
        .count();
    let unknown = ops.iter().filter(|o| o.outcome == Outcome::Unknown).count();
    eprintln!(
        "chaos: {} ops ({acked} acknowledged writes, {unknown} unknown), {checked} checked; \
         non-linearizable keys {bad:?}; lost {lost:?}",
        ops.len()
    );
    assert!(bad.is_empty(), "keys not linearizable: {bad:?}");
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // Every node holds the same state once the commit index has spread.
    eventually(10, "the same commit index on every node", || {
        cluster.same_commit().then_some(())
    });
    // Followers first, the leader last: stopped the other way round, a follower may win an
    // election in between and append its term's first entry where no one else can take it.
    let l = eventually(10, "a leader before the stop", || cluster.leader(&[]));
    for i in (0..NODES).filter(|i| *i != l).chain([l]) {
        cluster.nodes[i].terminate();
    }
    let dirs: Vec<&Path> = cluster.nodes.iter().map(|n| n.dir.as_path()).collect();
    for d in &dirs {
        let state = replay(d);
        for (k, v) in &finals {
            let got = state
                .get(&format!("k{k}"))
                .map_or(0, |s| s.parse().unwrap());
            assert_eq!(got, *v, "k{k} on {}", d.display());
        }
        let dir = raftdump::datadir::open(d).unwrap();
        let node = raftdump::check::node::check(&dir);
        // Not even a warning: a cleanly stopped node's dir holds canonical frames only.
        let bad: Vec<_> = node
            .findings
            .iter()
            .filter(|f| f.severity != raftdump::check::Severity::Info)
            .collect();
        assert!(bad.is_empty(), "{}: {bad:?}", d.display());
    }
    let out = Command::new(BIN)
        .arg("verify")
        .args(&dirs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("0 errors, 0 warnings"),
        "verify: {text}"
    );
    let out = Command::new(BIN).arg("diff").args(&dirs).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("result: identical"),
        "diff: {text}"
    );
    report.ops = ops.len();
    report.checked = checked;
    report
}

/// The key-value state of a stopped node's dir, by `raftdump replay --json`.
fn replay(dir: &Path) -> BTreeMap<String, String> {
    let out = Command::new(BIN)
        .args(["replay", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "replay {}", dir.display());
    let mut kv = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "kv" {
            kv.insert(
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_str().unwrap().to_string(),
            );
        }
    }
    kv
}

// ---------------------------------------------------------------------------------------------
// The isolating proxies

/// A relayed connection: its source node if known, its destination node, both streams.
type Relayed = (Option<usize>, usize, TcpStream, TcpStream);

/// One proxy a node: the node advertises the proxy's port, so that every connection between
/// nodes passes through the proxy of its destination. The source of a connection is found by
/// which node process owns the connecting socket (/proc), so that a node can be cut off both
/// ways.
struct Net {
    proxy_ports: Vec<u16>,
    /// The node processes, by index (None while killed).
    pids: Mutex<Vec<Option<u32>>>,
    isolated: Mutex<Option<usize>>,
    /// Open relayed connections: (source node if known, destination node, both streams).
    conns: Mutex<Vec<Relayed>>,
    stop: AtomicBool,
    relayed: AtomicU64,
    /// Connections whose source process was not found.
    unknown: AtomicU64,
}

impl Net {
    fn start(targets: &[u16]) -> Arc<Net> {
        let listeners: Vec<TcpListener> = targets
            .iter()
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let net = Arc::new(Net {
            proxy_ports: listeners
                .iter()
                .map(|l| l.local_addr().unwrap().port())
                .collect(),
            pids: Mutex::new(vec![None; targets.len()]),
            isolated: Mutex::new(None),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            relayed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
        });
        for (dst, (l, target)) in listeners.into_iter().zip(targets.iter()).enumerate() {
            let (net, target) = (net.clone(), *target);
            l.set_nonblocking(true).unwrap();
            std::thread::spawn(move || net.accept_loop(l, dst, target));
        }
        net
    }

    fn accept_loop(self: Arc<Net>, l: TcpListener, dst: usize, target: u16) {
        while !self.stop.load(Ordering::SeqCst) {
            let Ok((inbound, peer)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = inbound.set_nonblocking(false);
            let src = self.owner(peer.port(), self.proxy_ports[dst]);
            if src.is_none() {
                self.unknown.fetch_add(1, Ordering::SeqCst);
            }
            let Ok(outbound) = TcpStream::connect_timeout(
                &([127, 0, 0, 1], target).into(),
                Duration::from_millis(500),
            ) else {
                let _ = inbound.shutdown(Shutdown::Both);
                continue;
            };
            // Under the lock that `isolate` takes: no connection slips past a cut.
            let mut conns = self.conns.lock().unwrap();
            let cut = *self.isolated.lock().unwrap();
            // Fail closed: during a cut, a connection whose source is unknown is refused too.
            if cut.is_some() && (cut == Some(dst) || cut == src || src.is_none()) {
                let _ = inbound.shutdown(Shutdown::Both);
                let _ = outbound.shutdown(Shutdown::Both);
                continue;
            }
            self.relayed.fetch_add(1, Ordering::SeqCst);
            let (i2, o2) = (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            conns.push((
                src,
                dst,
                inbound.try_clone().unwrap(),
                outbound.try_clone().unwrap(),
            ));
            drop(conns);
            std::thread::spawn(move || pipe(inbound, outbound));
            std::thread::spawn(move || pipe(o2, i2));
        }
    }

    /// The node whose process owns the socket 127.0.0.1:`port` connected to our `proxy` port.
    fn owner(&self, port: u16, proxy: u16) -> Option<usize> {
        let inode = socket_inode(port, proxy)?;
        let want = format!("socket:[{inode}]");
        let pids = self.pids.lock().unwrap().clone();
        pids.iter().position(|pid| {
            pid.is_some_and(|pid| {
                fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
                    rd.flatten().any(|e| {
                        fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == want.as_str())
                    })
                })
            })
        })
    }

    /// Cuts node `i` off: new connections from or to it are refused, open ones are shut.
    fn isolate(&self, i: usize) {
        let mut conns = self.conns.lock().unwrap();
        *self.isolated.lock().unwrap() = Some(i);
        conns.retain(|(src, dst, a, b)| {
            // Fail closed: a connection of unknown source is cut too.
            if src.is_none() || *src == Some(i) || *dst == i {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    fn heal(&self) {
        *self.isolated.lock().unwrap() = None;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        if std::thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("chaos: data dirs kept in {}", tmp.keep().display());
            }
        }
        if let Some(net) = &self.net {
            net.stop.store(true, Ordering::SeqCst);
            for (_, _, a, b) in net.conns.lock().unwrap().drain(..) {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// The inode of the IPv4 TCP socket 127.0.0.1:`port` -> 127.0.0.1:`remote`. Both ends are
/// matched and inode 0 skipped: the same local port may also appear in a TIME_WAIT entry of an
/// older connection elsewhere, which no process owns.
fn socket_inode(port: u16, remote: u16) -> Option<String> {
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    let remote = format!("0100007F:{remote:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hit = f.get(1) == Some(&local.as_str())
            && f.get(2) == Some(&remote.as_str())
            && f.get(9).is_some_and(|i| *i != "0");
        hit.then(|| f[9].to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// The tests

fn assert_scenario(nemesis: Nemesis) {
    let t = Instant::now();
    let r = run_scenario(nemesis);
    eprintln!(
        "chaos: scenario {nemesis:?}: {} s, {} faults (writes back after {:?}), {} ops, {} checked",
        t.elapsed().as_secs(),
        r.faults.len(),
        r.faults,
        r.ops,
        r.checked
    );
    assert!(!r.faults.is_empty(), "no fault was injected");
    assert!(r.checked > 100, "too few operations: {}", r.checked);
}

#[test]
fn chaos_leader_kill9_and_restart() {
    assert_scenario(Nemesis::Kill);
}

#[test]
fn chaos_leader_sigstop() {
    assert_scenario(Nemesis::Stop);
}

#[test]
fn chaos_leader_isolated_by_proxy() {
    assert_scenario(Nemesis::Isolate);
}

/// The checker itself: it accepts a plain history and rejects a stale read and a lost write;
/// an unknown write may or may not have happened.
#[test]
fn checker_accepts_and_rejects_known_histories() {
    let op = |process, kind, start, end, outcome| Op {
        process,
        key: 0,
        kind,
        start,
        end,
        outcome,
    };
    use Kind::{Read, Write};
    use Outcome::{Failed, Ok as Acked, Unknown};
    let fine = [
        op(0, Write(1), 0, 10, Acked),
        op(1, Read(1), 11, 20, Acked),
        op(1, Write(2), 21, 30, Unknown),
        op(0, Read(1), 31, 40, Acked),
        op(0, Read(2), 41, 50, Acked),
        op(2, Write(3), 41, 50, Failed),
    ];
    assert!(linearizable(&fine.iter().collect::<Vec<_>>()));
    let stale = [
        op(0, Write(1), 0, 10, Acked),
        op(0, Write(2), 11, 20, Acked),
        op(1, Read(1), 21, 30, Acked),
    ];
    assert!(!linearizable(&stale.iter().collect::<Vec<_>>()));
    let lost = [op(0, Write(1), 0, 10, Acked), op(1, Read(0), 11, 20, Acked)];
    assert!(!linearizable(&lost.iter().collect::<Vec<_>>()));
    let mut finals = BTreeMap::new();
    finals.insert(0, 0);
    assert_eq!(lost_writes(&lost, &finals), ["k0=1 (final 0)"]);
    finals.insert(0, 2);
    assert!(lost_writes(&fine, &finals).is_empty());
    finals.insert(0, 3);
    assert_eq!(lost_writes(&fine, &finals).len(), 1);
}

/// The negative control: the same cluster, clients and checker, with `--read-mode=local` on
/// every node and a scripted stale read each round (on a key of its own): the old leader is
/// stopped while a new leader commits a write, then runs again alone (the new majority stopped)
/// and answers a read with the old value. The checker must flag that key every round.
#[test]
fn chaos_negative_control_local_reads_are_flagged() {
    let cluster = Cluster::start(&["--read-mode", "local"], false);
    let urls = cluster.urls();
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = start_clients(urls.clone(), rec.clone(), stop.clone(), 6000);
    let a = agent(2000);
    let rounds = 3;
    for round in 0..rounds {
        let key = KEYS + round;
        let p = 8_000_000 + round * 10;
        let old = eventually(10, "a leader", || cluster.leader(&[]));
        assert_eq!(rec.write(&a, &urls[old], p, key, 1), Outcome::Ok);
        eventually(5, "the write on every node", || {
            (0..NODES)
                .all(|i| {
                    http(&a, "GET", &format!("{}/db/k{key}", urls[i]), b"") == (200, "1".into())
                })
                .then_some(())
        });
        cluster.nodes[old].signal("-STOP");
        let new = eventually(10, "a new leader", || cluster.leader(&[old]));
        assert_eq!(rec.write(&a, &urls[new], p + 1, key, 2), Outcome::Ok);
        // The new majority stops, the old leader runs again: alone, it still answers locally.
        let others: Vec<usize> = (0..NODES).filter(|i| *i != old).collect();
        for &i in &others {
            cluster.nodes[i].signal("-STOP");
        }
        cluster.nodes[old].signal("-CONT");
        let stale = rec.read(&a, &urls[old], p + 2, key);
        for &i in &others {
            cluster.nodes[i].signal("-CONT");
        }
        assert_eq!(stale, Some(1), "round {round}: the scripted stale read");
        let ops: Vec<Op> = rec.ops().into_iter().filter(|o| o.key == key).collect();
        assert_eq!(check_history(&ops), (vec![key], 3), "round {round}");
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    // The whole history: every scripted key is flagged (client keys may be too: local reads
    // from followers are often stale).
    let ops = rec.ops();
    let (bad, checked) = check_history(&ops);
    eprintln!(
        "chaos: negative control: {} ops, {checked} checked, flagged {bad:?}",
        ops.len()
    );
    for round in 0..rounds {
        assert!(
            bad.contains(&(KEYS + round)),
            "k{} not flagged: {bad:?}",
            KEYS + round
        );
    }
}
