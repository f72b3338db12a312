//! `serve --snapshot-every` on real processes: snapshots under load, a follower killed and
//! caught up by snapshot after the leader compacted its log past it, and kill -9 during
//! snapshots and compactions. Every acknowledged write stays readable; `verify` is clean.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use raftdump::format::log::LogReader;

use crate::node::{assert_log_clean, spawn_node, text, Node};
use crate::{eventually, verify_clean};

/// Writes from `threads` clients until `stop` (or `per` writes each); returns the acknowledged
/// keys and values.
fn load(url: &str, threads: usize, per: usize, stop: &Arc<AtomicBool>) -> Vec<(String, String)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (acked, stop) = (acked.clone(), stop.clone());
            s.spawn(move || {
                for i in 0..per {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let (k, v) = (format!("k{t}-{i}"), format!("v{i}"));
                    let url = format!("{url}/db/{k}");
                    let ok = ureq::post(&url)
                        .timeout(std::time::Duration::from_secs(10))
                        .send_string(&v)
                        .is_ok_and(|r| r.status() == 200);
                    if !ok {
                        return;
                    }
                    acked.lock().unwrap().push((k, v));
                }
            });
        }
    });
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

fn first_index(dir: &Path) -> u64 {
    let log = std::fs::read(dir.join("log")).unwrap();
    LogReader::new(&log)
        .next()
        .and_then(|r| r.ok())
        .map_or(0, |e| e.index())
}

fn snapshots(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("snapshot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = ["--read-mode", "local", "--snapshot-every", "500"];
    let n1 = spawn_node(&tmp.path().join("n1"), 0, &opts);
    let join = format!("127.0.0.1:{}", n1.port);
    let mut with_join = opts.to_vec();
    with_join.extend(["--join", join.as_str()]);
    let n2 = spawn_node(&tmp.path().join("n2"), 0, &with_join);
    let mut n3 = spawn_node(&tmp.path().join("n3"), 0, &with_join);
    let never = Arc::new(AtomicBool::new(false));
    let mut acked = load(&n1.url, 4, 100, &never);
    eventually(10, "n3 to hold the first writes", || {
        (text("GET", &format!("{}/db/k0-99", n3.url), "").1 == "v99").then_some(())
    });
    let n3_last = n3.port;
    n3.kill9();
    acked.extend(load(&n1.url, 8, 300, &never));
    assert_eq!(acked.len(), 400 + 2400, "every write was acknowledged");
    eventually(10, "the leader's log to be compacted past n3", || {
        (first_index(&n1.dir) > 600).then_some(())
    });
    assert!(!snapshots(&n1.dir).is_empty());
    assert_eq!(snapshots(&n1.dir).len(), 1, "older snapshots are removed");
    let n3 = spawn_node(&tmp.path().join("n3"), n3_last, &opts);
    for n in [&n1, &n2, &n3] {
        eventually(20, "every acknowledged write on every node", || {
            acked
                .iter()
                .all(|(k, v)| text("GET", &format!("{}/db/{k}", n.url), "").1 == *v)
                .then_some(())
        });
    }
    assert!(
        !snapshots(&n3.dir).is_empty(),
        "n3 was caught up by a snapshot"
    );
    let nodes = [n1, n2, n3];
    for mut n in nodes {
        n.kill9();
        assert_log_clean(&n.dir);
        verify_clean(&n.dir);
    }
}

#[test]
fn kill_9_during_snapshots_and_compactions_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let opts = ["--read-mode", "local", "--snapshot-every", "40"];
    let mut acked = Vec::new();
    for round in 0..4 {
        let mut n: Node = spawn_node(&dir, 0, &opts);
        for (k, v) in &acked {
            assert_eq!(
                text("GET", &format!("{}/db/{k}", n.url), "").1,
                *v,
                "round {round}: {k}"
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let url = n.url.clone();
        let got = std::thread::scope(|s| {
            let h = s.spawn(|| load(&url, 4, 1_000, &stop));
            // Kill while snapshots are being taken: after a few hundred writes.
            eventually(20, "writes to arrive", || {
                let (_, b) = text("GET", &format!("{}/db/k0-{}", url, 50 + 30 * round), "");
                (!b.is_empty()).then_some(())
            });
            n.kill9();
            stop.store(true, Ordering::SeqCst);
            h.join().unwrap()
        });
        acked.extend(got);
        // Keys of a round are rewritten by the next: keep the last value of each.
        let mut last = std::collections::BTreeMap::new();
        for (k, v) in acked.drain(..) {
            last.insert(k, v);
        }
        acked = last.into_iter().collect();
    }
    let n = spawn_node(&dir, 0, &opts);
    for (k, v) in &acked {
        assert_eq!(text("GET", &format!("{}/db/{k}", n.url), "").1, *v, "{k}");
    }
    drop(n);
    assert_log_clean(&dir);
    verify_clean(&dir);
}
