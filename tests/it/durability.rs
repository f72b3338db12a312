//! Crash durability of `raftdump serve` on real processes bound to 127.0.0.1
//! free ports: SIGKILL in a loop under writes, fsync failing (fiu-run), a full disk (a small
//! tmpfs). The invariant everywhere: a write answered 200 is durable; 0 acknowledged writes
//! lost. Every wait has a deadline; only the processes started here are killed, by pid.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::secure::{agent, eventually, http, request, spawn, try_spawn, Node};

/// Waits (10 s at most) until the single node leads.
fn leads(n: &Node) {
    let url = format!("{}/state", n.url);
    eventually(10, "the node to lead", || {
        let (s, b) = http("GET", &url, &[], b"");
        (s == 200 && b.contains("State: leader")).then_some(())
    });
}

/// Writes `{prefix}{i}` = `value {prefix}{i}` until `stop`; the writes answered 200, and the
/// statuses of the others (`0` for a transport error).
fn writer(
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<BTreeMap<u16, usize>> {
    std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(500))
            .timeout(Duration::from_secs(5))
            .build();
        let mut others = BTreeMap::new();
        let mut i = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let key = format!("{prefix}{i}");
            i += 1;
            let r = request(
                &agent,
                "POST",
                &format!("{url}/db/{key}"),
                &[],
                format!("value {key}").as_bytes(),
            );
            match r {
                Ok((200, _)) => acked.lock().unwrap().push(key),
                Ok((s, _)) => *others.entry(s).or_insert(0) += 1,
                Err(_) => {
                    *others.entry(0).or_insert(0) += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        others
    })
}

/// Every key of `keys` reads back as `value {key}`.
fn all_readable(n: &Node, keys: &[String]) {
    let a = agent();
    for k in keys {
        let (s, b) = request(&a, "GET", &format!("{}/db/{k}", n.url), &[], b"").unwrap();
        assert_eq!(
            (s, String::from_utf8_lossy(&b).into_owned()),
            (200, format!("value {k}")),
            "acknowledged write {k} lost"
        );
    }
}

#[test]
fn sigkill_in_a_loop_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("RAFTDUMP_KILL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let fast = ["--heartbeat", "10", "--election-timeout", "40"];
    let mut all: Vec<String> = Vec::new();
    let mut last_cycle: Vec<String> = Vec::new();
    let start = Instant::now();
    for cycle in 0..cycles {
        let mut n = spawn(&dir, &fast);
        leads(&n);
        // What the previous cycle had acknowledged before its kill is all here.
        all_readable(&n, &last_cycle);
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let w = writer(
            n.url.clone(),
            format!("c{cycle}-"),
            stop.clone(),
            acked.clone(),
        );
        // A varied point: 0 to 209 ms after the first acknowledged write (however slow the
        // machine is, every cycle kills a node that has acknowledged writes).
        eventually(10, "a first acknowledged write", || {
            (!acked.lock().unwrap().is_empty()).then_some(())
        });
        std::thread::sleep(Duration::from_millis((cycle as u64 * 37) % 210));
        n.kill9();
        stop.store(true, Ordering::SeqCst);
        let others = w.join().unwrap();
        last_cycle = std::mem::take(&mut *acked.lock().unwrap());
        assert!(!last_cycle.is_empty(), "cycle {cycle}: {others:?}");
        all.extend(last_cycle.iter().cloned());
    }
    let n = spawn(&dir, &fast);
    leads(&n);
    all_readable(&n, &all);
    eprintln!(
        "{cycles} SIGKILL cycles, {} acknowledged writes, 0 lost, {:.1} s",
        all.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        all.len() >= cycles,
        "too few writes acknowledged: {}",
        all.len()
    );
}

#[test]
fn a_failing_fsync_never_answers_200() {
    assert!(
        Command::new("fiu-run").arg("-h").output().is_ok(),
        "this test makes fsync fail with fiu-run, which is not installed (apt-get install \
         fiu-utils; .ci/run installs it)"
    );
    let tmp = tempfile::tempdir().unwrap();
    // A node whose every fsync fails from the start (libfiu's POSIX preload).
    let wrap = ["fiu-run", "-x", "-c", "enable name=posix/io/sync/*"];
    let n = match try_spawn(&tmp.path().join("a"), &[], &wrap) {
        // Start-up itself fsyncs (the new log, raftdump-state): refusing to start is an
        // answer too, as long as it is an error.
        Err(text) => {
            assert!(text.contains("raftdump: error:"), "{text}");
            eprintln!("fsync failing from the start: the node refused to start");
            None
        }
        Ok(n) => Some(n),
    };
    if let Some(n) = &n {
        for i in 0..5 {
            let r = request(&agent(), "POST", &format!("{}/db/k{i}", n.url), &[], b"v");
            assert!(!matches!(r, Ok((200, _))), "write {i} answered 200: {r:?}");
        }
    }
    // The failure enabled (fiu-ctrl) once the node serves and took a write: that write is
    // durable; later ones are never 200.
    let dir = tmp.path().join("b");
    let n = try_spawn(&dir, &[], &["fiu-run", "-x"]).unwrap_or_else(|e| panic!("{e}"));
    leads(&n);
    assert_eq!(
        http("POST", &format!("{}/db/first", n.url), &[], b"ok").0,
        200
    );
    let ctl = Command::new("fiu-ctrl")
        .args(["-c", "enable name=posix/io/sync/*"])
        .arg(n.child.id().to_string())
        .output()
        .unwrap();
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let mut errors = BTreeMap::new();
    for i in 0..5 {
        let r = request(&agent(), "POST", &format!("{}/db/k{i}", n.url), &[], b"v");
        assert!(!matches!(r, Ok((200, _))), "write {i} answered 200: {r:?}");
        *errors.entry(r.map(|(s, _)| s).unwrap_or(0)).or_insert(0) += 1;
    }
    eprintln!("fsync failing: answers {errors:?} (0: connection closed)");
    drop(n);
    // The acknowledged write is in the log (the others may be too: they were written, never
    // acknowledged).
    let n = spawn(&dir, &[]);
    leads(&n);
    all_readable_as(&n, "first", "ok");
}

fn all_readable_as(n: &Node, key: &str, value: &str) {
    assert_eq!(
        http("GET", &format!("{}/db/{key}", n.url), &[], b""),
        (200, value.to_string())
    );
}

/// A tmpfs of `size` mounted on `dir`, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the 1 MiB tmpfs with writes; returns the acknowledged keys and the other statuses.
fn fill(n: &Node, value: &[u8]) -> (Vec<String>, BTreeMap<u16, usize>) {
    let a = agent();
    let mut acked = Vec::new();
    let mut others = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0..400 {
        if Instant::now() > deadline {
            break;
        }
        let key = format!("k{i}");
        match request(&a, "POST", &format!("{}/db/{key}", n.url), &[], value) {
            Ok((200, _)) => acked.push(key),
            Ok((s, _)) => *others.entry(s).or_insert(0) += 1,
            Err(_) => *others.entry(0).or_insert(0) += 1,
        }
        // Past the first refusals, a few more are enough.
        if others.values().sum::<usize>() >= 20 {
            break;
        }
    }
    (acked, others)
}

#[test]
fn a_full_disk_refuses_writes_and_keeps_serving_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    let _fs = match Tmpfs::mount(&mnt, "1m") {
        Ok(fs) => fs,
        Err(e) => panic!(
            "this test fills a 1 MiB tmpfs, which cannot be mounted here ({e}): run it as root, \
             as .ci/run does"
        ),
    };
    let value = vec![b'x'; 20 << 10];

    // With the free-space guard: refusals (507) before ENOSPC; the node stays up and leads.
    let dir = mnt.join("guarded");
    let n = spawn(&dir, &["--min-free", "200000"]);
    leads(&n);
    let (acked, others) = fill(&n, &value);
    assert!(!acked.is_empty(), "{others:?}");
    assert_eq!(
        others.keys().copied().collect::<Vec<_>>(),
        [507],
        "{others:?}"
    );
    eprintln!(
        "guarded full disk: {} acknowledged, then {others:?}",
        acked.len()
    );
    let v = String::from_utf8(value.clone()).unwrap();
    for k in &acked {
        all_readable_as(&n, k, &v);
    }
    assert!(http("GET", &format!("{}/state", n.url), &[], b"")
        .1
        .contains("State: leader"));
    drop(n);
    std::fs::remove_dir_all(&dir).unwrap();

    // Without it, ENOSPC itself: the write that meets it is never answered 200 and the node
    // stops; every acknowledged write is in the log after a restart.
    let dir = mnt.join("raw");
    let n = spawn(&dir, &["--min-free", "0"]);
    leads(&n);
    let (acked, others) = fill(&n, &value);
    assert!(!acked.is_empty(), "{others:?}");
    assert!(
        !others.is_empty(),
        "the disk never filled: {} acknowledged",
        acked.len()
    );
    assert!(!others.contains_key(&200));
    eprintln!(
        "raw ENOSPC: {} acknowledged, then {others:?} (0: no answer)",
        acked.len()
    );
    drop(n);
    // Restart from a copy of the dir (the full tmpfs has no room for a new term's entries).
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let n = spawn(&copy, &[]);
    leads(&n);
    for k in &acked {
        all_readable_as(&n, k, &v);
    }
}
