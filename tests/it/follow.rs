//! `inspect --follow` and `verify --follow` as real processes on real files: a `raftdump serve`
//! being written to, a frame written in two halves, a torn tail that stays, a log truncated by a
//! new leader, SIGINT, and a finding printed once. The child's stdout and stderr are read line
//! by line with a deadline; nothing sleeps to synchronise.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use raftdump::format::log::LogWriter;
use serde_json::Value;

use crate::eventually;
use crate::node::{spawn_node, text};

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

/// A `raftdump … --follow` child with its stdout and stderr lines arriving on channels.
struct Follow {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
    /// Every stdout line read so far.
    lines: Vec<String>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Follow {
    fn start(args: &[&str]) -> Follow {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RAFTDUMP_LOG", "raftdump::follow=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines_of(child.stdout.take().unwrap());
        let err = lines_of(child.stderr.take().unwrap());
        Follow {
            child,
            out,
            err,
            lines: Vec::new(),
        }
    }

    /// Reads stdout lines until one satisfies `want`, for at most `secs` seconds; returns the
    /// lines read on the way (that one included).
    fn until(&mut self, secs: u64, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.out.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no line {what} within {secs} s; read: {:#?}", self.lines)
            });
            self.lines.push(line.clone());
            let v: Value = serde_json::from_str(&line).unwrap();
            got.push(v);
            if want(got.last().unwrap()) {
                return got;
            }
        }
    }

    /// Waits (bounded) for a stderr line containing `needle`.
    fn stderr_says(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .err
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("stderr never said {needle:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }

    /// SIGINT, then the exit code (bounded wait).
    fn interrupt(&mut self) -> Option<i32> {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let code = eventually(10, "the follower to exit on SIGINT", || {
            self.child.try_wait().unwrap().map(|s| s.code())
        });
        // What it printed after the last line waited for must still be JSON Lines.
        while let Ok(line) = self.out.try_recv() {
            serde_json::from_str::<Value>(&line).unwrap();
        }
        code
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn is(ty: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["type"] == ty
}

fn frames(entries: &[(u64, u64, &str)]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new());
    for &(index, term, key) in entries {
        let payload = format!("{{\"key\":\"{key}\",\"value\":\"v{index}\"}}\n");
        w.append_raw(index, term, "write", Some(payload.as_bytes()))
            .unwrap();
    }
    w.into_inner()
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn log_with(entries: &[(u64, u64, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    std::fs::write(&log, frames(entries)).unwrap();
    (tmp, log)
}

#[test]
fn every_acknowledged_write_of_a_running_node_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    let node = spawn_node(&dir, 0, &[]);
    eventually(20, "the node's log", || {
        dir.join("log").exists().then_some(())
    });
    let mut f = Follow::start(&["inspect", "--follow", "--json", dir.to_str().unwrap()]);
    f.until(20, "node", is("node"));
    for i in 0..40 {
        let (key, value) = (format!("k{i:02}"), format!("value {i}"));
        let (s, b) = text("POST", &format!("{}/db/{key}", node.url), &value);
        assert_eq!((s, b.as_str()), (200, ""), "POST {key}");
        // Acknowledged: the entry is in the log, and the follower prints it.
        let want = serde_json::json!({"key": key, "value": value});
        let got = f.until(20, &format!("for {key}"), |v| v["command"] == want);
        assert!(
            got.iter()
                .all(|v| !matches!(v["type"].as_str(), Some("problem" | "truncated"))),
            "{got:?}"
        );
    }
    let entries: Vec<Value> = f
        .lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let indexes: Vec<u64> = entries
        .iter()
        .filter(|v| v["type"] == "entry")
        .map(|v| v["index"].as_u64().unwrap())
        .collect();
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "{indexes:?}");
    // Killed while a client keeps writing, then started again on the same dir: the writes
    // acknowledged after the restart are printed too, and nothing was taken for damage.
    let url = node.url.clone();
    let writer = std::thread::spawn(move || {
        for i in 0..200 {
            let u = format!("{url}/db/w{i}");
            let ok = ureq::post(&u).send_string("x").is_ok();
            if !ok {
                break;
            }
        }
    });
    let mut node = node;
    f.until(20, "a write of the second round", |v| {
        v["command"]["key"]
            .as_str()
            .is_some_and(|k| k.starts_with('w'))
    });
    node.kill9();
    writer.join().unwrap();
    let node = spawn_node(&dir, 0, &[]);
    for i in 0..5 {
        let key = format!("after{i}");
        let (s, b) = text("POST", &format!("{}/db/{key}", node.url), "v");
        assert_eq!((s, b.as_str()), (200, ""), "POST {key}");
        f.until(20, &format!("for {key}"), |v| {
            v["command"]["key"] == key.as_str()
        });
    }
    assert!(
        f.lines.iter().all(|l| !l.contains("\"problem\"")),
        "{:#?}",
        f.lines
    );
    drop(node);
    assert_eq!(f.interrupt(), Some(0));
}

#[test]
fn a_frame_written_in_two_halves_is_printed_once_whole_never_as_damage() {
    let (_tmp, log) = log_with(&[(1, 1, "a"), (2, 1, "b")]);
    let mut f = Follow::start(&[
        "inspect",
        "--follow",
        "--json",
        "--settle",
        "600000",
        log.to_str().unwrap(),
    ]);
    f.until(20, "entry 2", |v| v["index"] == 2);
    let third = frames(&[(3, 1, "c")]);
    let (a, b) = third.split_at(third.len() / 2);
    append(&log, a);
    // The follower has seen the half frame and waits on it.
    f.stderr_says("an incomplete or damaged frame at the end of the log");
    append(&log, b);
    let got = f.until(20, "entry 3", |v| v["index"] == 3);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["command"]["key"], "c");
    assert_eq!(f.interrupt(), Some(0));
}

#[test]
fn a_torn_tail_that_stays_is_reported_once_after_settle() {
    let (_tmp, log) = log_with(&[(1, 1, "a")]);
    let size = std::fs::metadata(&log).unwrap().len();
    let mut f = Follow::start(&[
        "inspect",
        "--follow",
        "--json",
        "--settle",
        "100",
        log.to_str().unwrap(),
    ]);
    f.until(20, "entry 1", |v| v["index"] == 1);
    let second = frames(&[(2, 1, "b")]);
    append(&log, &second[..14]);
    let got = f.until(20, "a problem", is("problem"));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["offset"], size);
    assert_eq!(got[0]["kind"], "torn-body");
    assert_eq!(got[0]["torn_tail"], true);
    // The writer finishes the frame after all: it is printed, and the damage not again.
    append(&log, &second[14..]);
    let got = f.until(20, "entry 2", |v| v["index"] == 2);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(f.interrupt(), Some(0));
}

#[test]
fn a_log_cut_by_a_new_leader_prints_truncated_and_the_new_entries() {
    let old: Vec<(u64, u64, &str)> = (1..=10).map(|i| (i, 1, "old")).collect();
    let (_tmp, log) = log_with(&old);
    let mut f = Follow::start(&["inspect", "--follow", "--json", log.to_str().unwrap()]);
    f.until(20, "entry 10", |v| v["index"] == 10);
    // A new leader in term 2 keeps entries 1..6 and replaces 7..10 with three of its own.
    let kept = frames(&old[..6]).len() as u64;
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(kept).unwrap();
    drop(file);
    append(
        &log,
        &frames(&[(7, 2, "new"), (8, 2, "new"), (9, 2, "new")]),
    );
    let got = f.until(20, "the new entry 9", |v| v["index"] == 9);
    assert_eq!(
        got[0],
        serde_json::json!({"type":"truncated","index":7,"offset":kept,"last_index":6,"removed":4})
    );
    let new: Vec<(u64, u64, String)> = got[1..]
        .iter()
        .map(|v| {
            (
                v["index"].as_u64().unwrap(),
                v["term"].as_u64().unwrap(),
                v["command"]["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        new,
        [
            (7, 2, "new".into()),
            (8, 2, "new".into()),
            (9, 2, "new".into())
        ]
    );
    assert_eq!(f.interrupt(), Some(0));
}

#[test]
fn a_replaced_and_a_removed_log_are_said() {
    let (tmp, log) = log_with(&[(1, 1, "a")]);
    let mut f = Follow::start(&["inspect", "--follow", "--json", log.to_str().unwrap()]);
    f.until(20, "entry 1", |v| v["index"] == 1);
    let new = tmp.path().join("log.new");
    std::fs::write(&new, frames(&[(5, 3, "compacted")])).unwrap();
    std::fs::rename(&new, &log).unwrap();
    let got = f.until(20, "entry 5", |v| v["index"] == 5);
    assert_eq!(got[0]["type"], "replaced");
    std::fs::remove_file(&log).unwrap();
    f.until(20, "removed", is("removed"));
    assert_eq!(f.interrupt(), Some(0));
}

#[test]
fn verify_follow_prints_a_new_finding_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n1");
    std::fs::create_dir(&dir).unwrap();
    let log = dir.join("log");
    std::fs::write(&log, frames(&[(1, 1, "a"), (2, 1, "b")])).unwrap();
    let mut f = Follow::start(&[
        "verify",
        "--follow",
        "--json",
        "--settle",
        "50",
        dir.to_str().unwrap(),
    ]);
    let size = std::fs::metadata(&log).unwrap().len();
    append(&log, b"     ");
    let got = f.until(20, "the torn tail", |v| v["code"] == "log-torn-tail");
    assert_eq!(got.last().unwrap()["offset"], size);
    // Another change: the next check finds the torn tail again and a bad conf; only the conf
    // is new.
    std::fs::write(dir.join("conf"), "{not json").unwrap();
    let got = f.until(20, "the bad conf", |v| v["code"] == "conf-invalid");
    assert!(got.iter().all(|v| v["code"] != "log-torn-tail"), "{got:?}");
    assert_eq!(f.interrupt(), Some(0));
    let torn = f
        .lines
        .iter()
        .filter(|l| l.contains("log-torn-tail"))
        .count();
    assert_eq!(torn, 1, "{:#?}", f.lines);
}
