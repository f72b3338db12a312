//! The one integration test crate: every integration test is a module here, so the tests build
//! as one binary (unit tests stay at the bottom of each source file).

mod chaos;
mod cli;
mod diff;
mod dir_lock;
mod durability;
mod follow;
mod format;
mod hostile;
mod hostile_files;
mod inspect;
mod man;
mod membership;
mod node;
mod node_sim;
mod raft_paper;
mod raftd_lines;
mod readonly;
mod regressions;
mod repair;
mod replay;
mod replay_seaweedfs;
mod replay_seaweedfs_fixture;
mod secure;
mod sim_chaos;
mod snapshots;
mod store_crash;
mod sweeps;
mod synthetic;
mod synthetic_cluster;
mod synthetic_seaweedfs;
mod synthetic_verify;
mod verify;
mod vote_rule;

use std::path::{Path, PathBuf};

/// Polls `f` every 20 ms until it returns `Some`, at most `secs` seconds; then fails saying
/// what did not happen. The tests' one way to wait for a condition.
pub(crate) fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Every real goraft log shipped in `fixtures/goraft`.
pub fn real_logs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![fixtures().join("goraft")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "log") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 20,
        "expected the real fixture logs, found {}",
        out.len()
    );
    out
}

/// A port that was free a moment ago: bind port 0 on 127.0.0.1, note it, let it go (for
/// clusters whose nodes must know each other's ports before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `cmd` (a `raftdump serve` command whose stderr goes to the file `stderr`) and waits, 20 s
/// at most, for its complete "Listening at: URL" line (stderr is unbuffered, so the line can be
/// read half-written). Returns the child and the URL, or kills and reaps the child and returns
/// what it printed when it exits or the deadline passes first.
pub fn start_serve(
    cmd: &mut std::process::Command,
    stderr: &Path,
) -> Result<(std::process::Child, String), String> {
    let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        if let Some(line) = text
            .split_inclusive('\n')
            .find(|l| l.starts_with("Listening at: ") && l.ends_with('\n'))
        {
            let url = line["Listening at: ".len()..].trim_end().to_string();
            return Ok((child, url));
        }
        if child.try_wait().ok().flatten().is_some() || std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::fs::read_to_string(stderr).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asserts that `raftdump verify DIR` exits 0, printing its report when it does not.
pub(crate) fn verify_clean(dir: &Path) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raftdump"))
        .arg("verify")
        .arg(dir)
        .env("RAFTDUMP_LOG", "off")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}
