//! Fuzz bodies for hostile peers: raw bytes on `serve`'s HTTP port (the request head as the
//! server parses it), and sequences of forged Raft RPCs from several senders against a
//! simulated 3-node cluster.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use raftdump::format::command;
use raftdump::model::{names, term_is_poisoned, Entry, MAX_TERM_STEP};
use raftdump::node::core::{AppendRequest, Event, SnapshotInstall, VoteRequest};
use raftdump::node::http::{HttpOptions, Server};
use raftdump::node::sim::{Sim, SimConfig};

use super::{MemNode, MAX_INPUT};

/// How long an answer (or the close) may take.
const ANSWER_WITHIN: Duration = Duration::from_millis(1500);

/// One server for the whole fuzzing run: raftdump's HTTP limits over a single-node cluster in
/// memory, on a free loopback port.
fn server() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let opts = HttpOptions {
            header_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(500),
            ..HttpOptions::default()
        };
        let node = Arc::new(MemNode::bootstrap());
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server::start(listener, node, opts, 0, stop).expect("server starts");
        // Serves until the process ends.
        std::mem::forget(server);
        addr
    })
}

/// Sends `data` on a new connection, closes the sending side, and returns what the server
/// answers before it closes. Panics if it neither answers nor closes in time.
fn exchange(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).expect("connect to the fuzzed server");
    c.set_read_timeout(Some(ANSWER_WITHIN)).expect("timeout");
    // The server may close before it has read everything (after a 400, 414 or 431).
    let _ = c.write_all(data);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match c.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no answer and no close within {ANSWER_WITHIN:?}: {e}"),
    }
    out
}

/// Whether `b` starts with a status line (`HTTP/1.1 200 `; an error about a head that claims
/// another version is written in that version, as tiny_http does).
fn is_status_line(b: &[u8]) -> bool {
    b.len() >= 13
        && b.starts_with(b"HTTP/")
        && b[5].is_ascii_digit()
        && b[6] == b'.'
        && b[7].is_ascii_digit()
        && b[8] == b' '
        && b[9..12].iter().all(u8::is_ascii_digit)
        && b[12] == b' '
}

/// Raw bytes on `serve`'s port: the answer is a status line or nothing (a closed connection),
/// within a bound, and the server answers a valid request afterwards.
pub fn http_head(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let addr = server();
    let answer = exchange(addr, data);
    assert!(
        answer.is_empty() || is_status_line(&answer),
        "not an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    let ok = exchange(
        addr,
        b"GET /state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(
        ok.starts_with(b"HTTP/1.1 200 "),
        "the server stopped answering"
    );
}

/// The senders a forged RPC names: the three members, then names no member has.
const SENDERS: [&str; 6] = ["n1", "n2", "n3", "evil", "", "n4"];

/// Forged RPCs from several senders against a simulated 3-node cluster: 8 bytes of seed, then
/// 12 bytes an RPC. Non-members may send anything; members' names are forged only where no
/// cluster token is needed to stay safe (a vote, which never makes the forged sender lead, or a
/// term out of bounds). Nodes in their join window are left alone (the token is their defence). The simulator checks Raft's safety properties after
/// every event; at the end no term is near overflow and the cluster elects a leader that commits
/// a write.
pub fn rpc_senders(data: &[u8]) {
    if data.len() < 8 || data.len() > MAX_INPUT {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap_or_default());
    let mut sim = Sim::cluster(SimConfig::new(seed), 3);
    for (k, op) in data[8..].chunks(12).enumerate() {
        let mut b = [0u8; 12];
        b[..op.len()].copy_from_slice(op);
        let to = usize::from(b[0]) % 3;
        let id = u64::MAX - k as u64;
        // A node that has not seen its own join yet hears anyone (its join window, which only
        // the cluster token closes): forged RPCs go to the nodes that know their members.
        if sim.nodes[to].up && sim.nodes[to].core.joined() {
            let event = forged_event(&sim, to, id, &b);
            sim.step(to, event);
        }
        sim.run_for(u64::from(b[9] % 64));
    }
    for n in &sim.nodes {
        let t = n.core.hard_state().term;
        assert!(!term_is_poisoned(t), "{} reached term {t}", n.name);
    }
    for attempt in 0..5 {
        let Some(l) = sim.await_leader(30_000) else {
            panic!("no leader after the forged RPCs");
        };
        let id = sim.write(l, "after", "ok");
        if matches!(sim.run_until_done(l, id, 10_000), Some(Ok(_))) {
            return;
        }
        assert!(attempt < 4, "no write commits after the forged RPCs");
    }
}

/// The forged event `b` describes for node `to`.
fn forged_event(sim: &Sim, to: usize, id: u64, b: &[u8; 12]) -> Event {
    let sender = SENDERS[usize::from(b[1]) % SENDERS.len()];
    let member = sender.starts_with('n') && sender != "n4";
    let core = &sim.nodes[to].core;
    let cur = core.hard_state().term;
    let wide = u64::from_le_bytes([b[4], b[5], b[6], b[7], b[8], b[10], b[11], b[3]]);
    let mut term = match b[3] % 8 {
        0 => cur,
        1 => cur.saturating_add(1),
        2 => cur.saturating_add(u64::from(b[4])),
        3 => cur.saturating_add(MAX_TERM_STEP),
        4 => cur.saturating_add(MAX_TERM_STEP + 1),
        5 => u64::MAX,
        6 => u64::MAX - MAX_TERM_STEP,
        _ => wide,
    };
    let mut kind = b[2] % 4;
    if member && term > cur.saturating_add(255) {
        // A member's name with a big step up: beyond the bound, or nodes forced far apart
        // (more than the bound) would refuse each other for good; the token is the defence.
        term = u64::MAX;
    }
    if member && kind != 1 {
        // A member's name on an append or a snapshot: only a term no node may accept.
        kind = 0;
        term = cur
            .saturating_add(MAX_TERM_STEP + 1)
            .max(u64::MAX - MAX_TERM_STEP / 2);
    }
    let last = core.log().last_index();
    let prev_index = last.saturating_sub(u64::from(b[5] % 4));
    let prev_term = core.log().term_at(prev_index).unwrap_or(u64::from(b[6]));
    match kind {
        0 => Event::Append {
            id,
            req: AppendRequest {
                term,
                prev_index,
                prev_term,
                commit: prev_index.saturating_add(u64::from(b[8] % 4)),
                leader: sender.into(),
                entries: (1..=u64::from(b[7] % 3))
                    .map(|i| Entry {
                        index: prev_index.saturating_add(i),
                        term,
                        name: names::WRITE.into(),
                        payload: Some(command::encode_write(b"forged", sender.as_bytes())),
                    })
                    .collect(),
            }
            .into(),
        },
        1 => Event::Vote {
            id,
            req: VoteRequest {
                term,
                last_index: last.saturating_add(u64::from(b[5])),
                last_term: term,
                candidate: sender.into(),
            },
        },
        2 => Event::SnapshotOffer {
            id,
            leader: sender.into(),
            last_index: last.saturating_add(u64::from(b[5])),
            last_term: term,
        },
        _ => Event::SnapshotInstall {
            id,
            req: SnapshotInstall {
                leader: sender.into(),
                last_index: last.saturating_add(u64::from(b[5])),
                last_term: term,
                peers: Vec::new(),
                state: b"{}".to_vec(),
            },
        },
    }
}
