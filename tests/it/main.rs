//! The one integration test crate (see house-style.md rule 14).

mod chaos;
mod cli;
mod diff;
mod durability;
mod format;
mod inspect;
mod man;
mod node;
mod node_sim;
mod raft_paper;
mod regressions;
mod repair;
mod replay;
mod secure;
mod sim_chaos;
mod store_crash;
mod sweeps;
mod synthetic;
mod synthetic_cluster;
mod synthetic_verify;
mod verify;

use std::path::{Path, PathBuf};

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
