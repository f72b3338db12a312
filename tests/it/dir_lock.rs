//! One writer per data dir, on real processes: a second `serve` on a served dir exits 2 naming
//! the first one's pid while the first keeps serving; `repair --apply` on a served dir is refused
//! and changes nothing; a node killed with SIGKILL leaves no lock behind; `serve --read-only`
//! runs beside a node. Every wait has a deadline; only processes started here are killed, by pid.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::synthetic_verify::tree;

const BIN: &str = env!("CARGO_BIN_EXE_raftdump");

/// A `raftdump serve` started here, killed and reaped when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_cmd(dir: &Path, extra: &[&str], stderr: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "-p", "0"])
        .args(extra)
        .arg(dir)
        .env("RAFTDUMP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(stderr).unwrap());
    cmd
}

fn serve(dir: &Path, extra: &[&str], stderr: &Path) -> Served {
    let (child, url) = crate::start_serve(&mut serve_cmd(dir, extra, stderr), stderr)
        .unwrap_or_else(|text| panic!("serve {} did not start: {text}", dir.display()));
    Served { child, url }
}

/// Runs `cmd` to its end, `secs` seconds at most (a process still running then is killed and
/// the test fails): `(exit code, stdout, stderr)`.
pub(crate) fn run_bounded(cmd: &mut Command, secs: u64) -> (Option<i32>, String, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (out, err) = (tmp.path().join("out"), tmp.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still runs after {secs} s; stderr: {}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        fs::read_to_string(&out).unwrap(),
        fs::read_to_string(&err).unwrap(),
    )
}

fn get(url: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    match agent.get(url).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn post(url: &str, body: &str) -> u16 {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    match agent.post(url).send_string(body) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r.status(),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

#[test]
fn a_second_serve_on_a_served_dir_exits_2_naming_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let first = serve(&dir, &[], &tmp.path().join("first.err"));
    assert_eq!(post(&format!("{}/db/k", first.url), "v1"), 200);
    let lock = fs::read_to_string(dir.join("raftdump.lock")).unwrap();
    assert_eq!(lock, format!("{}\n", first.child.id()));

    let (code, _, err) = run_bounded(&mut serve_cmd(&dir, &[], &tmp.path().join("unused")), 60);
    assert_eq!(code, Some(2), "{err}");
    let want = format!(
        "raftdump: error: {} is in use: raftdump process {} holds the lock {} (one process per \
         data dir: stop it first)\n",
        dir.display(),
        first.child.id(),
        dir.join("raftdump.lock").display()
    );
    assert_eq!(err, want);

    // The first one is untouched and keeps serving.
    assert_eq!(post(&format!("{}/db/k", first.url), "v2"), 200);
    assert_eq!(get(&format!("{}/db/k", first.url)), (200, "v2".into()));
    // A read-only serve reads beside it: it takes no lock.
    let ro = serve(&dir, &["--read-only"], &tmp.path().join("ro.err"));
    assert_eq!(get(&format!("{}/db/k", ro.url)).0, 200);
}

#[test]
fn repair_apply_on_a_served_dir_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let node = serve(&dir, &[], &tmp.path().join("node.err"));
    assert_eq!(post(&format!("{}/db/k", node.url), "v"), 200);
    // A leftover that repair would back up and remove.
    fs::write(dir.join("log.new"), b"half-written compaction").unwrap();
    let before = tree(&dir);

    let (code, out, err) = run_bounded(Command::new(BIN).args(["repair", "--apply"]).arg(&dir), 60);
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    let want = format!(
        "raftdump: error: {} is in use: raftdump process {} holds the lock {} (one process per \
         data dir: stop it first) (nothing was changed)\n",
        dir.display(),
        node.child.id(),
        dir.join("raftdump.lock").display()
    );
    assert_eq!(err, want);
    assert_eq!(tree(&dir), before);

    // Once the node is gone the same repair goes through.
    drop(node);
    let (code, _, err) = run_bounded(Command::new(BIN).args(["repair", "--apply"]).arg(&dir), 60);
    assert_eq!(code, Some(0), "{err}");
    assert!(!dir.join("log.new").exists());
}

#[test]
fn a_node_killed_with_sigkill_leaves_no_lock_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("n");
    let mut first = serve(&dir, &[], &tmp.path().join("first.err"));
    assert_eq!(post(&format!("{}/db/k", first.url), "kept"), 200);
    first.child.kill().unwrap(); // SIGKILL: no destructor, no unlock of its own.
    first.child.wait().unwrap();
    assert!(dir.join("raftdump.lock").exists(), "the lock file stays");

    let second = serve(&dir, &[], &tmp.path().join("second.err"));
    assert_eq!(get(&format!("{}/db/k", second.url)), (200, "kept".into()));
    let lock = fs::read_to_string(dir.join("raftdump.lock")).unwrap();
    assert_eq!(lock, format!("{}\n", second.child.id()));
}
