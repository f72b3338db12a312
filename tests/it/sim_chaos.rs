//! Seeded chaos simulation of `node::core` ([`raftdump::node::sim::chaos`]): 3-5 nodes, message
//! loss, delay, duplication and reordering, partitions, crash-restarts that drop unsynced
//! writes; safety checked at every event (one leader per term, Log Matching, committed entries
//! never lost or changed) and recovery checked at the end.
//!
//! `RAFTDUMP_SIM_SEEDS=N` (default 200) seeds of `RAFTDUMP_SIM_STEPS` (default 300) steps;
//! `RAFTDUMP_SIM_SEED=N` reruns one seed. The long run (10,000 seeds) is ignored by default:
//! `cargo test --release --test it sim_chaos_long -- --ignored --nocapture`.

use std::time::Instant;

use raftdump::node::sim::{chaos, ChaosReport};

fn env(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {s:?}")),
        Err(_) => default,
    }
}

/// Runs the seeds, printing the one that fails (and how to rerun it) before its panic goes on.
fn run(seeds: impl Iterator<Item = u64>, steps: u32) -> Vec<ChaosReport> {
    let mut out = Vec::new();
    for seed in seeds {
        match std::panic::catch_unwind(|| chaos(seed, steps)) {
            Ok(r) => out.push(r),
            Err(e) => {
                eprintln!(
                    "sim_chaos: seed {seed} failed; rerun with \
                     RAFTDUMP_SIM_SEED={seed} RAFTDUMP_SIM_STEPS={steps} cargo test --test it sim_chaos"
                );
                std::panic::resume_unwind(e)
            }
        }
    }
    out
}

fn summary(reports: &[ChaosReport], secs: f64) -> String {
    let sum = |f: &dyn Fn(&ChaosReport) -> u64| reports.iter().map(f).sum::<u64>();
    format!(
        "{} seeds in {secs:.1} s: {} events checked, {} appends, {} committed entries, \
         writes {} proposed / {} acknowledged, {} crashes dropping {} unsynced entries, \
         {} partitions, {} leader terms",
        reports.len(),
        sum(&|r| r.events),
        sum(&|r| r.appends),
        sum(&|r| r.committed),
        sum(&|r| r.writes.0),
        sum(&|r| r.writes.1),
        sum(&|r| r.crashes.0),
        sum(&|r| r.crashes.1),
        sum(&|r| r.partitions),
        sum(&|r| r.terms),
    )
}

#[test]
fn sim_chaos_seeds() {
    let steps = env("RAFTDUMP_SIM_STEPS", 300) as u32;
    let t = Instant::now();
    let reports = match std::env::var("RAFTDUMP_SIM_SEED") {
        Ok(_) => run(std::iter::once(env("RAFTDUMP_SIM_SEED", 1)), steps),
        Err(_) => run(1..=env("RAFTDUMP_SIM_SEEDS", 200), steps),
    };
    eprintln!("{}", summary(&reports, t.elapsed().as_secs_f64()));
    // The runs must exercise what they claim to.
    let all = |f: &dyn Fn(&ChaosReport) -> u64| reports.iter().map(f).sum::<u64>();
    if reports.len() >= 20 {
        assert!(all(&|r| r.crashes.0) > 0 && all(&|r| r.crashes.1) > 0);
        assert!(all(&|r| r.partitions) > 0 && all(&|r| r.writes.1) > 0);
    }
}

#[test]
fn sim_chaos_is_deterministic() {
    assert_eq!(chaos(7, 80), chaos(7, 80));
}

#[test]
#[ignore = "long: 10,000 seeds; run in release"]
fn sim_chaos_long() {
    let steps = env("RAFTDUMP_SIM_STEPS", 300) as u32;
    let n = env("RAFTDUMP_SIM_SEEDS", 10_000);
    let t = Instant::now();
    let reports = run(1..=n, steps);
    eprintln!("{}", summary(&reports, t.elapsed().as_secs_f64()));
}
