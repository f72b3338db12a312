//! Deterministic multi-node tests of `node::core` over the in-memory simulator.
//!
//! Every scenario runs for several seeds; a failure names its seed, and
//! `RAFTDUMP_SIM_SEED=N cargo test --test it node_sim` reruns just that seed.

use raftdump::model::names;
use raftdump::node::core::{Rejection, Role};
use raftdump::node::sim::{Sim, SimConfig};
use raftdump::node::storage::Storage;

fn seeds() -> Vec<u64> {
    match std::env::var("RAFTDUMP_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("RAFTDUMP_SIM_SEED is a number")],
        Err(_) => (1..=12).collect(),
    }
}

fn write_ok(sim: &mut Sim, at: usize, key: &str, value: &str, seed: u64) -> u64 {
    let id = sim.write(at, key, value);
    match sim.run_until_done(at, id, 3_000) {
        Some(Ok(index)) => index,
        other => {
            for (i, n) in sim.nodes.iter().enumerate() {
                eprintln!(
                    "n{} up={} {:?} term={} commit={} last={} progress={:?} members={:?}",
                    i + 1,
                    n.up,
                    n.core.role(),
                    n.core.hard_state().term,
                    n.core.commit_index(),
                    n.core.log().last_index(),
                    n.core.progress_summary(),
                    n.core.status().members.keys().collect::<Vec<_>>()
                );
            }
            panic!("seed {seed}: write {key}={value} on n{}: {other:?}", at + 1)
        }
    }
}

/// Every live node ends with the same log and state (within 3 s of quiet network).
fn assert_converged(sim: &mut Sim, seed: u64) {
    let live: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].up).collect();
    let snapshot = |sim: &mut Sim| -> Vec<_> {
        live.iter()
            .map(|&i| {
                let n = &mut sim.nodes[i];
                let last = n.store.terms().last_index();
                (
                    last,
                    n.store.entries(1, last).unwrap(),
                    n.kv.data.clone(),
                    n.core.commit_index(),
                )
            })
            .collect()
    };
    for _ in 0..60 {
        sim.run_for(50);
        let s = snapshot(sim);
        if s.iter().all(|x| *x == s[0]) {
            return;
        }
    }
    let s = snapshot(sim);
    for (k, x) in s.iter().enumerate() {
        assert_eq!(
            (x.0, x.3),
            (s[0].0, s[0].3),
            "seed {seed}: n{} (last, commit)",
            live[k] + 1
        );
        assert_eq!(x.1, s[0].1, "seed {seed}: n{} log", live[k] + 1);
        assert_eq!(x.2, s[0].2, "seed {seed}: n{} state", live[k] + 1);
    }
}

#[test]
fn three_nodes_elect_one_leader_and_replicate() {
    for seed in seeds() {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        let l = sim
            .await_leader(2_000)
            .unwrap_or_else(|| panic!("seed {seed}: no leader"));
        assert_eq!(l, 0, "seed {seed}: the bootstrap node leads in term 0");
        assert_eq!(sim.nodes[0].core.hard_state().term, 0);
        for k in 0..20 {
            write_ok(&mut sim, l, &format!("k{k}"), &format!("v{k}"), seed);
        }
        assert_converged(&mut sim, seed);
        // raftd's layout: join n1, nop, join n2, join n3, writes; all in term 0.
        let e = sim.nodes[1].store.entries(1, 5).unwrap();
        let got: Vec<(u64, &str)> = e.iter().map(|e| (e.term, e.name.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, "raft:join"),
                (0, "raft:nop"),
                (0, "raft:join"),
                (0, "raft:join"),
                (0, "write")
            ]
        );
        for i in 0..3 {
            assert_eq!(sim.get(i, "k19").as_deref(), Some("v19"), "seed {seed}");
            assert_eq!(sim.members(i).len(), 3, "seed {seed}");
        }
    }
}

#[test]
fn reelection_after_leader_loss() {
    for seed in seeds() {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        write_ok(&mut sim, 0, "a", "1", seed);
        sim.crash(0);
        let start = sim.now;
        let l = sim
            .await_leader(3_000)
            .unwrap_or_else(|| panic!("seed {seed}: no new leader"));
        assert_ne!(l, 0);
        assert!(
            sim.now - start < 1_500,
            "seed {seed}: election took {} ms",
            sim.now - start
        );
        let term = sim.nodes[l].core.hard_state().term;
        assert!(term >= 1, "seed {seed}");
        write_ok(&mut sim, l, "b", "2", seed);
        // The new leader's first entry of its term is a nop.
        let terms = sim.nodes[l].store.terms().clone();
        let first_of_term = (1..=terms.last_index())
            .find(|&i| terms.term_at(i) == Some(term))
            .unwrap();
        let e = sim.nodes[l]
            .store
            .entries(first_of_term, first_of_term)
            .unwrap();
        assert_eq!(e[0].name, names::NOP, "seed {seed}");
        sim.restart(0);
        assert_converged(&mut sim, seed);
        assert_eq!(sim.get(0, "b").as_deref(), Some("2"), "seed {seed}");
    }
}

#[test]
fn partition_heal_truncates_the_old_leaders_tail() {
    for seed in seeds() {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        write_ok(&mut sim, 0, "a", "1", seed);
        sim.isolate(0);
        // Writes to the isolated leader cannot commit.
        let stale: Vec<u64> = (0..5)
            .map(|k| sim.write(0, &format!("lost{k}"), "x"))
            .collect();
        sim.run_for(100);
        assert!(
            stale
                .iter()
                .all(|id| !sim.nodes[0].proposals.contains_key(id)),
            "seed {seed}"
        );
        let l = loop {
            let l = sim
                .await_leader(3_000)
                .unwrap_or_else(|| panic!("seed {seed}: no leader"));
            if l != 0 {
                break l;
            }
            sim.run_for(50);
        };
        for k in 0..5 {
            write_ok(&mut sim, l, &format!("new{k}"), "y", seed);
        }
        sim.heal();
        assert_converged(&mut sim, seed);
        for id in stale {
            assert_eq!(
                sim.nodes[0].proposals.get(&id),
                Some(&Err(Rejection::Superseded)),
                "seed {seed}: an uncommitted write on the old leader"
            );
        }
        assert_eq!(sim.get(0, "lost0"), None, "seed {seed}");
        assert_eq!(sim.get(0, "new4").as_deref(), Some("y"), "seed {seed}");
        assert_eq!(sim.nodes[0].core.role(), Role::Follower, "seed {seed}");
    }
}

#[test]
fn lossy_network_keeps_safety_and_progress() {
    for seed in seeds() {
        let mut cfg = SimConfig::new(seed);
        cfg.max_inflight = 4;
        // Odd seeds use the paper's vote rule (the default), even ones goraft's.
        if seed % 2 == 0 {
            cfg.vote_rule = raftdump::node::core::VoteRule::Goraft;
        }
        let mut sim = Sim::cluster(cfg, 5);
        // The network turns lossy and slow after the joins (and reorders pipelined requests).
        sim.set_network(100, 1, 20);
        let mut acked = Vec::new();
        for k in 0..30 {
            let l = sim
                .await_leader(5_000)
                .unwrap_or_else(|| panic!("seed {seed}: no leader"));
            let id = sim.write(l, &format!("k{k}"), "v");
            if let Some(Ok(_)) = sim.run_until_done(l, id, 2_000) {
                acked.push(k);
            }
            if k % 10 == 5 {
                sim.crash(l);
                sim.run_for(50);
                sim.restart(l);
            }
        }
        assert!(
            acked.len() >= 20,
            "seed {seed}: only {} of 30 writes acknowledged",
            acked.len()
        );
        sim.set_network(0, 1, 5);
        assert_converged(&mut sim, seed);
        for k in acked {
            assert_eq!(
                sim.get(0, &format!("k{k}")).as_deref(),
                Some("v"),
                "seed {seed}: k{k}"
            );
        }
    }
}

#[test]
fn far_behind_follower_catches_up_in_batches() {
    for seed in seeds().into_iter().take(3) {
        let mut cfg = SimConfig::new(seed);
        cfg.max_batch_entries = 100;
        cfg.max_inflight = 4;
        let mut sim = Sim::cluster(cfg, 3);
        sim.crash(2);
        for k in 0..1_000 {
            sim.write(0, &format!("k{k}"), "v");
            if k % 50 == 0 {
                sim.run_for(2);
            }
        }
        sim.run_for(500);
        assert_eq!(sim.nodes[0].core.commit_index(), 1_004, "seed {seed}");
        sim.restart(2);
        assert_converged(&mut sim, seed);
        assert_eq!(sim.nodes[2].core.commit_index(), 1_004, "seed {seed}");
        assert_eq!(sim.get(2, "k999").as_deref(), Some("v"), "seed {seed}");
    }
}

#[test]
fn behind_a_compacted_log_a_follower_gets_the_snapshot() {
    for seed in seeds().into_iter().take(3) {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        sim.crash(2);
        for k in 0..50 {
            write_ok(&mut sim, 0, &format!("k{k}"), "v", seed);
        }
        sim.run_for(100);
        sim.crash(1);
        sim.compact(0);
        assert_eq!(sim.nodes[0].store.terms().start_index, 54);
        // n1 alone holds the log (n2 is down): with n3 back it leads and must send its snapshot.
        sim.restart(2);
        let l = sim.await_leader(3_000);
        assert_eq!(l, Some(0), "seed {seed}");
        sim.run_for(1_000);
        assert_eq!(
            sim.nodes[2].store.terms().start_index,
            54,
            "seed {seed}: snapshot installed"
        );
        assert_eq!(sim.get(2, "k49").as_deref(), Some("v"), "seed {seed}");
        assert_eq!(sim.members(2).len(), 3, "seed {seed}");
        write_ok(&mut sim, 0, "after", "yes", seed);
        sim.run_for(200);
        assert_eq!(sim.get(2, "after").as_deref(), Some("yes"), "seed {seed}");
    }
}

#[test]
fn membership_changes_by_join_and_leave() {
    for seed in seeds().into_iter().take(4) {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        let n4 = sim.add_node();
        assert!(matches!(sim.join(0, "n4"), Some(Ok(_))), "seed {seed}");
        // A second join while none is pending works; a duplicate name is refused.
        let dup = sim.propose(
            0,
            names::JOIN,
            Some(raftdump::format::command::encode_join("n4", "mem://x")),
        );
        assert_eq!(
            sim.run_until_done(0, dup, 100),
            Some(Err(Rejection::DuplicateMember("n4".into()))),
            "seed {seed}"
        );
        write_ok(&mut sim, 0, "k", "v", seed);
        sim.run_for(300);
        assert_eq!(sim.get(n4, "k").as_deref(), Some("v"), "seed {seed}");
        assert_eq!(sim.members(n4).len(), 4, "seed {seed}");
        // With 4 members the quorum is 3: two nodes down stops commits.
        sim.crash(1);
        sim.crash(2);
        let stuck = sim.write(0, "stuck", "v");
        assert_eq!(
            sim.run_until_done(0, stuck, 300),
            None,
            "seed {seed}: no quorum"
        );
        sim.restart(1);
        sim.restart(2);
        assert!(
            matches!(sim.run_until_done(0, stuck, 3_000), Some(Ok(_))),
            "seed {seed}"
        );
        // n4 leaves (proposed on whoever leads now): back to three members.
        let leave = raftdump::format::command::encode_leave("n4");
        let mut left = false;
        for _ in 0..20 {
            let l = sim.await_leader(3_000).expect("a leader");
            let id = sim.propose(l, names::LEAVE, Some(leave.clone()));
            if let Some(Ok(_)) = sim.run_until_done(l, id, 2_000) {
                left = true;
                break;
            }
            // A new leader refuses membership changes until its nop is committed.
            sim.run_for(100);
        }
        assert!(left, "seed {seed}: leave never committed");
        // goraft applies membership at commit: wait until every member has applied the leave
        // (a leader that has not would still count n4 in its quorum).
        for _ in 0..100 {
            if (0..3).all(|i| sim.members(i).len() == 3) {
                break;
            }
            sim.run_for(10);
        }
        sim.crash(n4);
        let l = sim.await_leader(3_000).expect("a leader");
        let other = (0..3).find(|&i| i != l).expect("three nodes");
        sim.crash(other);
        let l = sim.await_leader(3_000).expect("a leader");
        write_ok(&mut sim, l, "two-of-three", "ok", seed);
    }
}

#[test]
fn linearizable_reads_need_a_quorum_and_name_the_leader_elsewhere() {
    for seed in seeds() {
        let mut sim = Sim::cluster(SimConfig::new(seed), 3);
        write_ok(&mut sim, 0, "a", "1", seed);
        let id = sim.read(0);
        sim.run_for(50);
        assert!(
            matches!(sim.nodes[0].reads.get(&id), Some(Ok(i)) if *i >= 5),
            "seed {seed}"
        );
        let id = sim.read(1);
        match sim.nodes[1].reads.get(&id) {
            Some(Err(Rejection::NotLeader(Some(p)))) => {
                assert_eq!(
                    (p.name.as_str(), p.connection_string.as_str()),
                    ("n1", "mem://n1")
                )
            }
            other => panic!("seed {seed}: {other:?}"),
        }
        // An isolated leader cannot confirm a read.
        sim.isolate(0);
        let id = sim.read(0);
        sim.run_for(100);
        assert_eq!(
            sim.nodes[0].reads.get(&id),
            None,
            "seed {seed}: stale read served"
        );
    }
}
