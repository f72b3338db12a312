//! `raftdump serve`: run a raftd-compatible node on a data dir (see `node`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{Outcome, Ui};
use crate::check::{self, codes, Severity};
use crate::datadir;
use crate::datadir::lock::DirLock;
use crate::node::http::{HttpOptions, ReadMode, Server, SpaceGuard};
use crate::node::runtime::{Options, ReadOnlyNode, Runtime};
use crate::node::security::{self, Policy};
use crate::node::{storage, transport};
use crate::render::escape_terminal;

const AFTER_HELP: &str = "\
Like raftd: its command lines work as they are: `-h` is the host (use --help for help), Go's
single-dash long options are taken too (`-join ADDR`, `-join=ADDR`, `-debug`, `-trace`, and
every option above), and the node advertises http://localhost:PORT by default. The first
node of a new cluster joins itself and leads in term 0; `--join` posts this node's join to
the leader. The HTTP API (GET/POST /db/KEY, POST /join, GET /peers, /members, /leader,
/state) and goraft's /raft/* routes answer byte for byte as raftd does, with net/http's
headers in its order.

Restarts: a node restarted with the command line it was started with starts from its log:
when the log already holds this node's own join, --join is ignored (`--join ignored: already
a member`). A non-empty log without this node's join is refused (move the dir aside to join
afresh, or start without --join to run on it).

Beyond raftd: reads are linearizable (the leader confirms its leadership first; a follower
answers 400 naming the leader, or forwards with --forward; --read-mode=local restores raftd's
local reads), the log is fsynced on a majority before a write is answered, term and vote
are kept in `raftdump-state`, a file goraft ignores, and votes follow the Raft paper's
up-to-date rule, which cannot stall a healed cluster as goraft's can (--vote-rule=goraft
restores goraft's). An error that repeats per request or per peer (a refused RPC, a peer that
cannot be reached) is logged once, then as a count every 5 s.

Membership: DELETE /members/NAME removes a member (a committed raft:leave). Joins and
removals that would leave the members heard from short of a quorum are refused with 503
(--strict-reconfig-check=false restores raftd's behaviour; ?force=true forces a removal), and
so is a join while the last member to join has not caught up. A removed node takes no writes
(410) and says why.

Security: the node listens on loopback (localhost: 127.0.0.1) unless -h or --listen says
otherwise. On any other address /join, /members/NAME and /raft/* require the cluster token
of --token-file (sent by raftdump nodes as the X-Raftdump-Token header; 401 without it),
unless --insecure-no-token is given. Joins with an empty or null name, or reusing a member's
name, are refused. Values over --max-body (1 MiB), keys over 8 KiB and RPC bodies over 64
MiB get 413; a request head must arrive within --header-timeout, an idle connection is
closed after --idle-timeout, and at most --max-connections are open (half of them at most
from one client address; when all are taken, the longest idle one is closed for a new one).
RPC bodies in flight share a 256 MiB budget (then 503). A key or value that is not UTF-8
gets 400; so do a bad or conflicting Content-Length and an HTTP/1.0 POST without one; a
request line over 32 KiB gets 414 and headers over 8 KiB a line, 100 lines or 32 KiB in all
get 431. Raft RPCs from a sender that is not a member, or with a term more than 2^32 above
the node's (or near the largest term), get 403 and change nothing. Keys are opaque bytes
(never file names); error answers name no file and carry no trace. While the disk has less
than --min-free, writes get 507 and reads are still served; a failed fsync or append stops
the node, never answering 200.

Start-up checks: before it starts, the node's files get `raftdump verify`'s checks. An error
that means committed data is missing or the log contradicts itself (for example
conf-commit-beyond-log, term-decrease, index-gap, log-garbage, snapshot-crc; `raftdump verify
--help` describes every code) is printed with its code and offset and the node does not start
(exit 2) unless --force is given; other findings are printed and start-up goes on. A
raftdump-state whose term is forged (state-term-beyond-log) starts the node, which cannot
campaign, with the steps to recover.

One process per data dir: a node holds an advisory lock on DIR/raftdump.lock (which holds
its pid) from before it reads DIR until it exits; a second `serve` or a `repair --apply` on
DIR exits 2 naming that pid. The kernel drops the lock when the process ends, even on
kill -9. --read-only takes no lock (it never writes). An original raftd on the same dir
neither takes nor sees the lock: never run both.";

/// The help after the options: what serve does, then the exit statuses.
fn after_help() -> String {
    format!("{AFTER_HELP}\n\n{}", super::exit::help("serve"))
}

/// How GET /db/KEY is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadModeArg {
    /// The leader confirms its leadership first; followers refuse or forward.
    Linearizable,
    /// Any node answers from its own state (raftd's behaviour; may be stale).
    Local,
}

/// The up-to-date check of vote requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VoteRuleArg {
    /// Reproduces goraft's behaviour, including its stall: deny if our last index or our last
    /// term is greater.
    Goraft,
    /// The Raft paper's: grant if the candidate's (last term, last index) is at least ours.
    Paper,
}

/// Run a raftd-compatible node on DIR (created if missing).
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true, after_help = after_help())]
pub struct Args {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Host to advertise (raftd's -h): the connectionString is http://HOST:PORT; also the
    /// address listened on unless --listen is given (a host name listens on its first IPv4
    /// address, as Go does: localhost listens on 127.0.0.1 only).
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    host: String,
    /// Address to listen on (e.g. 0.0.0.0 for every interface); default: the -h host.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// File holding the cluster token that /join and /raft/* require and that this node
    /// sends to its peers (one line; the file must have no group or other access: chmod 600).
    /// Required when listening on a non-loopback address; enforced on loopback too when given.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without a token (for clusters with original goraft
    /// nodes, which cannot send one): anyone who reaches the port can join or forge RPCs.
    #[arg(long, conflicts_with = "token_file")]
    insecure_no_token: bool,
    /// Port; 0 binds a free port (the "Listening at" line shows it).
    #[arg(short = 'p', long = "port", default_value_t = 4001)]
    pub(super) port: u16,
    /// host:port other nodes use to reach this one (default: -h and the bound port), for a
    /// node behind a proxy or a port forward; it becomes the connectionString of the join.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "read_only")]
    advertise: Option<String>,
    /// host:port of the leader to join.
    #[arg(long, value_name = "HOST:PORT")]
    pub(super) join: Option<String>,
    /// Serve the state from the files without writing anything (GETs only).
    #[arg(long, conflicts_with = "join")]
    read_only: bool,
    /// With --read-only: the index to serve (default: the last entry of the log).
    #[arg(long, requires = "read_only", value_name = "INDEX")]
    at: Option<u64>,
    /// How GET /db/KEY is answered.
    #[arg(long, value_enum, default_value_t = ReadModeArg::Linearizable)]
    read_mode: ReadModeArg,
    /// Forward writes, joins and reads sent to a follower to the leader.
    #[arg(long)]
    forward: bool,
    /// Heartbeat interval in milliseconds (raftd: 50).
    #[arg(long, value_name = "MS", default_value_t = 50)]
    heartbeat: u64,
    /// Election timeout T in milliseconds; each wait is random in [T, 2T) (raftd: 150).
    #[arg(long, value_name = "MS", default_value_t = 150)]
    election_timeout: u64,
    /// How a vote request's log is judged up to date. The default differs from raftd's:
    /// goraft's rule can leave a healed cluster where every candidate is refused by a
    /// majority, forever (when the longest logs end in older terms); the paper's rule grants
    /// every vote goraft's grants and always elects the most up-to-date log.
    #[arg(long, value_enum, default_value_t = VoteRuleArg::Paper)]
    vote_rule: VoteRuleArg,
    /// The leader refuses a join (503, nothing appended) when the members it heard from
    /// within the longest election timeout, the newcomer not counted, would not be a quorum
    /// of the cluster with it, and while the last member to join has not caught up; and a
    /// removal (DELETE /members/NAME) that would leave the live members short of a quorum,
    /// unless ?force=true. `false` appends every change, as raftd does.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    strict_reconfig_check: bool,
    /// Take a snapshot (`snapshot/<term>_<index>.ss`, as goraft writes it) after every N
    /// applied entries and compact the log as goraft's TakeSnapshot does, keeping the last 200
    /// entries; off by default, as in raftd. A follower behind the compacted log gets the
    /// snapshot only when it is a raftdump node (raftd has no state machine for it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: Option<u64>,
    /// Largest request body for /db and /join, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body: usize,
    /// A request's head (request line and headers) must arrive within MS of its first byte.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    header_timeout: u64,
    /// A connection with no byte to read (idle keep-alive, stalled body) or whose answer is
    /// not read for MS is closed.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    idle_timeout: u64,
    /// Most open client connections; one client address holds at most half of them, and when
    /// all are taken a new connection closes the one idle longest (or is closed at once when
    /// none is idle).
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// Writes are refused (507) while the data dir's file system has less than BYTES free, so
    /// that a full disk stops writes but not reads; 0 turns the check off.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    min_free: u64,
    /// HTTP worker threads; 0 handles each request on its connection's own thread (no
    /// hand-off between threads: the fastest).
    #[arg(long, value_name = "N", default_value_t = 0)]
    http_threads: usize,
    /// Start even when the data dir has an error that means committed data is missing or the
    /// log contradicts itself (see Start-up checks below).
    #[arg(long, conflicts_with = "read_only")]
    force: bool,
    /// Raft debugging, as raftd's -debug: the log level debug (like -vv).
    #[arg(long)]
    debug: bool,
    /// Raft trace debugging, as raftd's -trace: the log level trace (like -vvv).
    #[arg(long)]
    trace: bool,
    /// Dialect of the data dir's log: serve runs only on goraft (raftd) logs.
    #[command(flatten)]
    dialect: super::DialectArgs,
    /// The data directory.
    dir: PathBuf,
}

impl Args {
    /// The verbosity serve logs at: `-v`'s count, raised by --debug (2) and --trace (3).
    pub fn verbosity(&self, verbose: u8) -> u8 {
        let raft = if self.trace {
            3
        } else if self.debug {
            2
        } else {
            0
        };
        verbose.max(raft)
    }
}

/// Refuses a data dir that is not a raftd node's: a SeaweedFS master's raft dir (the
/// seaweedfs/raft dialect, or its MaxVolumeId commands or snapshot state). Reads only.
fn refuse_foreign(args: &Args) -> anyhow::Result<()> {
    if !args.dir.join("log").is_file() {
        return Ok(());
    }
    let dir = crate::datadir::open_as(&args.dir, args.dialect.choice())
        .with_context(|| format!("cannot serve {}", args.dir.display()))?;
    let d = &dir.dialect;
    if d.is_seaweedfs_master() {
        bail!(
            "{} is a SeaweedFS master's raft dir (dialect {}, state machine seaweedfs: \
             MaxVolumeId), not a raftd node: serve runs raftd's key-value machine and would \
             write raftd entries into it; read it with inspect, verify or replay instead. \
             Nothing was changed. Evidence: {}",
            args.dir.display(),
            d.dialect,
            d.evidence_line()
        );
    }
    Ok(())
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

/// Runs the node until SIGINT or SIGTERM.
pub fn run(args: Args, _ui: &mut Ui) -> anyhow::Result<Outcome> {
    refuse_foreign(&args)?;
    // Taken before the dir is read and held until `run` returns: one writer per data dir.
    let _lock = if args.read_only {
        None
    } else {
        Some(lock_dir(&args.dir)?)
    };
    let sigint = Arc::new(AtomicBool::new(false));
    let sigterm = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, sigint.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, sigterm.clone())?;

    let listen = args.listen.as_deref().unwrap_or(&args.host);
    let listener = bind(listen, args.port)?;
    let local = listener.local_addr()?;
    let port = local.port();
    let token = match security::policy(
        local.ip(),
        args.token_file.is_some(),
        args.insecure_no_token,
    ) {
        Policy::Enforce => args
            .token_file
            .as_deref()
            .map(security::load_token)
            .transpose()?,
        Policy::LoopbackOnly => None,
        Policy::Insecure => {
            eprintln!("raftdump: warning: /join and /raft/* on {local} accept anyone (--insecure-no-token)");
            None
        }
        Policy::Refuse => bail!(
            "{local} is not a loopback address: give --token-file PATH (a 0600 file holding the \
             cluster token), or --insecure-no-token for a cluster with original goraft nodes"
        ),
    };
    let url = format!("http://{}:{port}", args.host);
    let advertised = args.advertise.as_ref().map(|a| format!("http://{a}"));
    let opts = HttpOptions {
        read_mode: match args.read_mode {
            ReadModeArg::Linearizable => ReadMode::Linearizable,
            ReadModeArg::Local => ReadMode::Local,
        },
        forward: args.forward,
        max_body: args.max_body,
        token: token.clone(),
        header_timeout: Duration::from_millis(args.header_timeout),
        idle_timeout: Duration::from_millis(args.idle_timeout),
        max_connections: args.max_connections,
        space: (args.min_free > 0 && !args.read_only)
            .then(|| SpaceGuard::new(args.dir.clone(), args.min_free)),
        ..HttpOptions::default()
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    crate::node::budget::return_big_buffers_to_the_os();
    eprintln!("Initializing Raft Server: {}", args.dir.display());

    let mut runtime = None;
    let server = if args.read_only {
        let node = ReadOnlyNode::open(&args.dir, args.at)
            .with_context(|| format!("cannot serve {} read-only", args.dir.display()))?;
        eprintln!("Serving the state at index {} read-only", node.at);
        Server::start(
            listener,
            Arc::new(node),
            opts,
            args.http_threads,
            shutdown.clone(),
        )?
    } else {
        startup_check(&args.dir, args.force)?;
        let name = storage::ensure_name(&args.dir, seed())?;
        let (rt, report) = Runtime::start(Options {
            dir: args.dir.clone(),
            name: name.clone(),
            connection_string: advertised.clone().unwrap_or_else(|| url.clone()),
            heartbeat_ms: args.heartbeat,
            election_timeout_ms: args.election_timeout,
            seed: seed(),
            bootstrap: args.join.is_none(),
            timeouts: transport::Timeouts::default(),
            vote_rule: match args.vote_rule {
                VoteRuleArg::Goraft => crate::node::core::VoteRule::Goraft,
                VoteRuleArg::Paper => crate::node::core::VoteRule::Paper,
            },
            strict_reconfig: args.strict_reconfig_check,
            token: token.clone(),
            snapshot_every: args.snapshot_every,
        })
        .with_context(|| format!("cannot start a node on {}", args.dir.display()))?;
        if let Some((bytes, why)) = &report.truncated_tail {
            eprintln!("raftdump: warning: cut {bytes} bytes off the log's torn tail: {why}");
        }
        let join_to = match (&args.join, report.empty, report.member) {
            (Some(leader), true, _) => Some(leader),
            (Some(_), false, true) => {
                eprintln!("--join ignored: already a member");
                None
            }
            (Some(_), false, false) => {
                let _ = rt.stop();
                bail!(
                    "Cannot join with an existing log: {}'s log (entries up to index {}) does \
                     not make this node ({name}) a member: it holds no join of this node, or a \
                     later removal. To join afresh, move the dir aside and start with an empty \
                     dir; to run on this log, start without --join",
                    args.dir.display(),
                    report.last_index
                );
            }
            (None, ..) => None,
        };
        let server = Server::start(
            listener,
            Arc::new(rt.handle()),
            opts,
            args.http_threads,
            shutdown.clone(),
        )?;
        match join_to {
            Some(leader) => {
                eprintln!("Attempting to join leader: {leader}");
                join(
                    leader,
                    &name,
                    advertised.as_deref().unwrap_or(&url),
                    token.as_deref(),
                )?;
            }
            None if report.empty => eprintln!("Initializing new cluster"),
            None => eprintln!("Recovered from log"),
        }
        runtime = Some(rt);
        server
    };
    eprintln!("Listening at: {url}");

    let outcome = loop {
        if sigint.load(Ordering::SeqCst) {
            break Ok(Outcome::Interrupted);
        }
        if sigterm.load(Ordering::SeqCst) {
            break Ok(Outcome::Clean);
        }
        if let Some(rt) = &runtime {
            if !rt.is_running() {
                let why = rt.handle().failure().unwrap_or_else(|| "stopped".into());
                break Err(anyhow::anyhow!("the node stopped: {why}"));
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The runtime goes first: requests still waiting on it are answered at once
    // ("raft: Has been stopped") instead of holding the workers until their timeout.
    shutdown.store(true, Ordering::SeqCst);
    let stopped = runtime.map(Runtime::stop);
    server.stop();
    stopped.transpose()?;
    outcome
}

/// Runs `verify`'s checks on the node's files (a dir without a log is new: nothing to check).
/// Prints every error and warning; fails on an error of [`codes::BLOCKS_START`] unless `force`.
fn startup_check(dir: &Path, force: bool) -> anyhow::Result<()> {
    let Ok(d) = datadir::open(dir) else {
        // No log yet (or no dir): the store creates it; real I/O errors surface there.
        return Ok(());
    };
    let report = check::node::check(&d);
    let mut blocking = 0;
    for f in &report.findings {
        let blocks = codes::BLOCKS_START.contains(&f.code);
        let sev = match f.severity {
            Severity::Error if blocks && !force => "error",
            Severity::Error | Severity::Warning => "warning",
            Severity::Info => continue,
        };
        blocking += usize::from(blocks);
        let place = match (&f.file, f.offset, f.index) {
            (Some(p), Some(o), _) => format!("{}:{o}", p.display()),
            (Some(p), None, Some(i)) => format!("{} (index {i})", p.display()),
            (Some(p), None, None) => p.display().to_string(),
            (None, ..) => dir.display().to_string(),
        };
        eprintln!(
            "raftdump: {sev}[{}]: {place}: {}",
            f.code,
            escape_terminal(&f.message)
        );
        if f.code == "state-term-beyond-log" {
            eprintln!("{}", poisoned_term_steps(dir));
        }
    }
    if blocking > 0 && !force {
        bail!(
            "{} has {blocking} error(s) that mean committed data is missing or the log \
             contradicts itself; not starting (inspect it with `raftdump verify`, fix it with \
             `raftdump repair`, or start anyway with --force)",
            dir.display()
        );
    }
    Ok(())
}

/// How to recover a cluster whose saved terms were forged up to the largest term.
fn poisoned_term_steps(dir: &Path) -> String {
    format!(
        "raftdump: this node starts but cannot campaign: no term is left above its saved term.
  To recover, with every node of the cluster stopped:
  1. run `raftdump verify DIR...` on every node's data dir and note the highest
     \"last term\" H it prints (the largest term any leader used);
  2. on every node, replace the saved term with H and no vote, for example
     printf '{{\"currentTerm\":H,\"votedFor\":null}}\\n' > {}/raftdump-state
     (a node left at the forged term can neither lead nor vote: it refuses every lower term);
  3. start the nodes again: the first election runs in term H + 1, above every term used.",
        dir.display()
    )
}

/// Listens on `host`:`port` as Go's net.Listen does for raftd: a host name that resolves to
/// several addresses listens on the first IPv4 one (localhost: 127.0.0.1), else the first.
fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let what = || format!("cannot listen on {host}:{port}");
    let addrs: Vec<_> = (host, port).to_socket_addrs().with_context(what)?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .with_context(|| format!("{}: no address", what()))?;
    TcpListener::bind(addr).with_context(what)
}

/// Creates `dir` if it is missing (as raftd does) and takes its lock.
fn lock_dir(dir: &Path) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(DirLock::acquire(dir)?)
}

/// POSTs this node's join to the leader, as raftd does (but a refusal is an error here).
fn join(leader: &str, name: &str, url: &str, token: Option<&str>) -> anyhow::Result<()> {
    // raftd's client encodes the command with json.Encoder too: the same bytes.
    let body = crate::format::command::encode_join(name, url);
    let target = format!("http://{leader}/join");
    let agent = security::with_token(
        ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(30)),
        token,
    )
    .build();
    // A leader answers 503 while another membership change (or its own first entry) is not
    // committed yet: retry that for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match agent
            .post(&target)
            .set("Content-Type", "application/json")
            .send_bytes(&body)
        {
            Ok(_) => return Ok(()),
            Err(ureq::Error::Status(503, _)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                bail!(
                    "the join was refused by {target}: {code} {}",
                    text.trim_end()
                )
            }
            Err(e) => bail!("cannot join {target}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_host_listens_on_ipv4_loopback_only() {
        let l = bind("localhost", 0).unwrap();
        assert_eq!(l.local_addr().unwrap().ip(), std::net::Ipv4Addr::LOCALHOST);
        let l = bind("127.0.0.1", 0).unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
    }
}
