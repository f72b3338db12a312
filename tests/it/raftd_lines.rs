//! raftd's own command lines against `raftdump serve` processes: the tutorial's lines verbatim
//! (Go's single-dash `-join`), a restart of every node with the line it was started with, and
//! the log staying quiet under a flood of refused RPCs. Ports are fixed before the nodes start
//! (a restart must come back on the port its connectionString names); only the processes
//! started here are killed, by pid.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use crate::eventually;
use crate::node::{start_line, Node};

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
}

/// `(status, body)` of a request; `None` when no answer came.
fn call(method: &str, url: &str, body: &str) -> Option<(u16, String)> {
    let r = match agent().request(method, url).send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(_) => return None,
    };
    let status = r.status();
    let mut b = String::new();
    r.into_reader().read_to_string(&mut b).ok()?;
    Some((status, b))
}

/// A command line as a shell would split it.
fn line(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The URL of the node the others agree leads, once they all do.
fn leader_url(nodes: &[Node], names: &BTreeMap<String, String>) -> String {
    eventually(20, "every node to know the same leader", || {
        let seen: Vec<String> = nodes
            .iter()
            .map(|n| call("GET", &format!("{}/leader", n.url), "").map(|(_, b)| b))
            .collect::<Option<_>>()?;
        let first: String = serde_json::from_str(&seen[0]).ok()?;
        (seen.iter().all(|s| *s == seen[0]))
            .then(|| names.get(&first).cloned())
            .flatten()
    })
}

#[test]
fn the_raftd_tutorial_lines_run_a_cluster_that_restarts_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| crate::free_port()).collect();
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("node.{i}")))
        .collect();
    // The tutorial's lines (raftd's README), ports and dirs aside.
    let lines: Vec<Vec<String>> = (0..3)
        .map(|i| {
            let join = if i == 0 {
                String::new()
            } else {
                format!("-join localhost:{}", ports[0])
            };
            let mut l = line(&format!("serve -p {} {join}", ports[i]));
            l.push(dirs[i].display().to_string());
            l
        })
        .collect();
    let stderr = |i: usize, run: usize| tmp.path().join(format!("n{i}.{run}.stderr"));
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| start_line(&lines[i], &stderr(i, 0)))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(n.url, format!("http://localhost:{}", ports[i]));
    }
    let names: BTreeMap<String, String> = (0..3)
        .map(|i| {
            let name = fs::read_to_string(dirs[i].join("name")).unwrap();
            (name, nodes[i].url.clone())
        })
        .collect();
    eventually(20, "two other members", || {
        let (_, b) = call("GET", &format!("{}/members", nodes[0].url), "")?;
        (b.matches("connectionString").count() == 2).then_some(())
    });
    // raftd's connectionStrings, byte for byte: http://localhost:PORT.
    let log = fs::read(dirs[0].join("log")).unwrap();
    for p in &ports {
        let cs = format!("\"connectionString\":\"http://localhost:{p}\"");
        assert!(log.windows(cs.len()).any(|w| w == cs.as_bytes()), "{cs}");
    }
    let mut acked = BTreeMap::new();
    let mut write = |nodes: &[Node], k: String, v: String| {
        let leader = leader_url(nodes, &names);
        if call("POST", &format!("{leader}/db/{k}"), &v) == Some((200, String::new())) {
            acked.insert(k, v);
        }
    };
    for i in 0..20 {
        write(&nodes, format!("k{i}"), format!("v{i}"));
    }
    let leader = leader_url(&nodes, &names);
    assert_eq!(
        call("GET", &format!("{leader}/db/k0"), ""),
        Some((200, "v0".into()))
    );

    // Every node restarted with its original command line, -join included.
    for n in nodes.drain(..) {
        n.stop();
    }
    nodes = (0..3)
        .map(|i| start_line(&lines[i], &stderr(i, 1)))
        .collect();
    for (i, n) in nodes.iter().enumerate() {
        let err = n.stderr_text();
        let ignored = err.matches("--join ignored: already a member\n").count();
        assert_eq!(ignored, usize::from(i > 0), "{err}");
        assert!(err.contains("Recovered from log"), "{err}");
    }
    for i in 20..30 {
        write(&nodes, format!("k{i}"), format!("v{i}"));
    }
    assert!(acked.len() >= 25, "{} writes acknowledged", acked.len());
    let leader = leader_url(&nodes, &names);
    for (k, v) in &acked {
        assert_eq!(
            call("GET", &format!("{leader}/db/{k}"), ""),
            Some((200, v.clone())),
            "{k}"
        );
    }
    for n in nodes.drain(..) {
        n.stop();
    }
    for d in &dirs {
        crate::verify_clean(d);
    }
}

/// The lines of `err` that name `what`, and the occurrences they stand for: a line alone is
/// one, a count line "... (N more in the last 5 s)" is N more.
fn logged(err: &str, what: &str) -> (usize, u64) {
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(what)).collect();
    let count = |l: &str| -> Option<u64> {
        let (_, c) = l.rsplit_once(" (")?;
        c.strip_suffix(" more in the last 5 s)")?.parse().ok()
    };
    let occurrences = lines.iter().map(|l| count(l).unwrap_or(1)).sum();
    (lines.len(), occurrences)
}

#[test]
fn a_flood_of_refused_rpcs_logs_a_line_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let port = crate::free_port();
    let dir = tmp.path().join("n1");
    let args = line(&format!("serve -p {port} {}", dir.display()));
    let stderr = tmp.path().join("n1.stderr");
    let n = start_line(&args, &stderr);
    eventually(10, "the node to lead", || {
        let (_, b) = call("GET", &format!("{}/state", n.url), "")?;
        b.contains("State: leader").then_some(())
    });
    // A vote request from "x", who is not a member: 403 each time.
    let rv = [0x08, 0x00, 0x10, 0x00, 0x18, 0x00, 0x22, 0x01, b'x'];
    let url = format!("{}/raft/requestVote", n.url);
    let a = agent();
    let started = std::time::Instant::now();
    let flood = 400;
    for _ in 0..flood {
        let r = a.post(&url).send_bytes(&rv);
        assert!(matches!(r, Err(ureq::Error::Status(403, _))));
    }
    // Every refusal is accounted for: the first line, then count lines (one a window).
    let what = "refused a Raft RPC: sender \"x\" is not a member";
    let lines = eventually(15, "the count line of the flood", || {
        let (lines, occurrences) = logged(&n.stderr_text(), what);
        (occurrences >= flood).then_some(lines)
    });
    let windows = started.elapsed().as_secs() / 5 + 2;
    assert_eq!(
        logged(&n.stderr_text(), what).1,
        flood,
        "{}",
        n.stderr_text()
    );
    assert!(
        lines as u64 <= windows,
        "{lines} lines: {}",
        n.stderr_text()
    );

    // A member whose address is the leader's own: each AppendEntries to it reaches the leader,
    // which refuses it (the sender is itself, not one of its peers): one line, then counts.
    let join = format!(r#"{{"name":"ghost","connectionString":"{}"}}"#, n.url);
    let quick = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(500))
        .build();
    let _ = quick.post(&format!("{}/join", n.url)).send_string(&join);
    let name = fs::read_to_string(dir.join("name")).unwrap();
    let what = format!("refused a Raft RPC: sender \"{name}\"");
    let (lines, occurrences) =
        eventually(20, "a count line of the leader's own AppendEntries", || {
            let (lines, occurrences) = logged(&n.stderr_text(), &what);
            (lines >= 2).then_some((lines, occurrences))
        });
    // At a heartbeat every 50 ms, a window counts dozens.
    assert!(occurrences >= 10 * lines as u64, "{}", n.stderr_text());
    n.stop();
}
