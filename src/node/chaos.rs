//! The seeded chaos run over the simulator ([`super::sim`]), and its verdict on liveness.
//!
//! [`chaos`] drives a cluster with random writes, reads, crashes, restarts, partitions and
//! network changes for one seed (the simulator checks safety at every event), then heals
//! everything and requires the cluster to recover: elect a leader, commit a write, converge.
//!
//! One failure to recover is not raftdump's: goraft's vote rule ([`VoteRule::Goraft`]) can leave
//! a healed cluster where no node can ever collect a majority, although the paper's rule would
//! elect one ([`goraft_stall`]). A goraft-rule run that ends that way is reported as such
//! ([`ChaosReport::goraft_stall`]); every other failure to recover fails the run. This module
//! only drives and judges the simulator: it owns no Raft rule.

use std::collections::BTreeSet;

use super::core::{RequestId, VoteRule, XorShift};
use super::sim::{Sim, SimConfig};
use super::storage::Storage;
use crate::format::command;
use crate::model::{names, Index, Term};

/// What one [`chaos`] run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The vote rule every node ran.
    pub vote_rule: VoteRule,
    /// Driver steps taken.
    pub steps: u32,
    /// Events carried out by cores (each followed by the safety checks).
    pub events: u64,
    /// Entries appended on any node (each checked against Log Matching).
    pub appends: u64,
    /// Entries recorded as committed.
    pub committed: u64,
    /// Writes proposed, and acknowledged (each checked to be committed as written).
    pub writes: (u64, u64),
    /// Crashes, and unsynced entries they dropped.
    pub crashes: (u64, u64),
    /// Partitions made.
    pub partitions: u64,
    /// Distinct leader terms.
    pub terms: u64,
    /// The healed cluster never recovered, and the reason is goraft's vote rule
    /// ([`goraft_stall`] holds); only ever true under [`VoteRule::Goraft`].
    pub goraft_stall: bool,
}

/// One node as an election sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elector {
    /// Its name.
    pub name: String,
    /// Where its log ends: `(last term, last index)`.
    pub end: (Term, Index),
    /// The members it knows (itself included once it joined): a candidate counts votes from
    /// these, and needs a majority of them.
    pub members: BTreeSet<String>,
}

impl Elector {
    /// Whether this voter answers `candidate` at all: a node refuses every RPC from a sender
    /// that is not a member it knows, votes included, unless it has not seen its own join yet
    /// (the core's `Core::knows`).
    pub fn knows(&self, candidate: &str) -> bool {
        self.members.contains(candidate) || !self.members.contains(&self.name)
    }
}

/// Whether `electors[c]` can win an election under `rule` against the current logs: it
/// campaigns (a non-empty log, and it is one of its own members) and its own vote plus the
/// votes of the other members whose logs `rule` judges no more up to date than its own make a
/// majority of its members. Votes already cast in a term do not matter: a later term frees
/// them.
pub fn can_win(rule: VoteRule, electors: &[Elector], c: usize) -> bool {
    let cand = &electors[c];
    if cand.end.1 == 0 || !cand.members.contains(&cand.name) {
        return false;
    }
    let granting = electors
        .iter()
        .filter(|v| v.name != cand.name && cand.members.contains(&v.name))
        .filter(|v| v.knows(&cand.name))
        .filter(|v| rule.up_to_date(v.end, cand.end))
        .count();
    (1 + granting) * 2 > cand.members.len()
}

/// goraft's stall: under goraft's rule no node can win ([`can_win`]): each one that campaigns
/// is refused by a majority of its members because one of its last index and last term is
/// lower than theirs (or because they do not know it as a member: [`Elector::knows`]), while under the paper's rule some node can win (the one whose log is
/// the most up to date in the order of (last term, last index) collects every vote).
///
/// Logs change only through a leader, so with every node up and no leader, a state where this
/// holds never ends: for example last (index, term) of (100, 1), (50, 2), (60, 1), (55, 2)
/// in four nodes, where each candidate gets at most two of the three votes it needs.
pub fn goraft_stall(electors: &[Elector]) -> bool {
    let any = |rule| (0..electors.len()).any(|c| can_win(rule, electors, c));
    !any(VoteRule::Goraft) && any(VoteRule::Paper)
}

/// The live nodes of `sim` as an election sees them.
pub fn electors(sim: &Sim) -> Vec<Elector> {
    sim.nodes
        .iter()
        .filter(|n| n.up)
        .map(|n| Elector {
            name: n.name.clone(),
            end: (n.core.log().last_term(), n.core.log().last_index()),
            members: n.core.status().members.into_keys().collect(),
        })
        .collect()
}

/// One seeded chaos run: a cluster of 3-5 nodes (the seed picks the size, vote rule, batching,
/// pipelining and fsync latency), then `steps` random steps (writes and reads on any node,
/// crashes that drop unsynced writes, restarts, isolations, partitions, heals, changes of loss,
/// delay and duplication), each followed by 1-60 ms of simulated time; then every node is
/// restarted and the network healed, and the cluster must elect a leader, commit a write and
/// converge, unless it ends in [`goraft_stall`] under goraft's rule. Panics naming the seed
/// when a safety check fails (see [`super::sim`]) or the cluster does not recover otherwise.
pub fn chaos(seed: u64, steps: u32) -> ChaosReport {
    run(seed, steps, None)
}

/// [`chaos`] with the vote rule forced to `rule` (everything else as the seed picks it).
pub fn chaos_with_rule(seed: u64, steps: u32, rule: VoteRule) -> ChaosReport {
    run(seed, steps, Some(rule))
}

fn run(seed: u64, steps: u32, rule: Option<VoteRule>) -> ChaosReport {
    let mut rng = XorShift::new(seed ^ 0x5EED_CA05);
    let mut sim = build(&mut rng, seed, rule);
    let n = sim.nodes.len();
    let mut report = ChaosReport {
        nodes: n,
        vote_rule: sim.vote_rule(),
        steps,
        ..ChaosReport::default()
    };
    let mut writes = Writes::default();
    for step in 0..steps {
        disturb(&mut sim, &mut rng, &mut report, &mut writes, seed, step);
        let ms = rng.range(1, 61);
        sim.run_for(ms);
        writes.collect(&sim, seed);
    }
    // The end: everything up, a quiet network; the cluster must recover and converge.
    sim.heal();
    sim.set_network(0, 1, 5);
    sim.set_duplicates(0);
    for i in 0..n {
        if !sim.nodes[i].up {
            sim.restart(i);
        }
    }
    if recover(&mut sim) {
        writes.collect(&sim, seed);
        converge(&mut sim, seed);
        writes.check_in_every_log(&mut sim, seed);
    } else {
        let electors = electors(&sim);
        let stall = report.vote_rule == VoteRule::Goraft
            && sim.leader().is_none()
            && goraft_stall(&electors);
        assert!(
            stall,
            "seed {seed}: no write committed within 120 s of healing ({:?} rule; the logs, \
             as elections see them: {electors:?})",
            report.vote_rule
        );
        report.goraft_stall = true;
    }
    check_whole_logs(&mut sim, seed);
    report.events = sim.checked.events;
    report.appends = sim.checked.appends;
    report.committed = sim.checked.committed.len() as u64;
    report.writes.1 = writes.acked.len() as u64;
    report.crashes.1 = sim.checked.lost_unsynced;
    report.terms = sim.leader_terms();
    report
}

/// The cluster the seed picks (size, vote rule unless forced, pipelining, batching, fsync).
fn build(rng: &mut XorShift, seed: u64, rule: Option<VoteRule>) -> Sim {
    let n = rng.range(3, 6) as usize;
    let mut cfg = SimConfig::new(seed);
    // Drawn even when forced, so that the rest of the run is the seed's.
    let drawn = if rng.range(0, 2) == 0 {
        VoteRule::Goraft
    } else {
        VoteRule::Paper
    };
    cfg.vote_rule = rule.unwrap_or(drawn);
    cfg.max_inflight = [1, 1, 4][rng.range(0, 3) as usize];
    cfg.max_batch_entries = [1, 3, 64, 1000][rng.range(0, 4) as usize];
    let deferred = rng.range(0, 4) != 0;
    let mut sim = Sim::cluster(cfg, n);
    if deferred {
        sim.set_fsync_delay((1, 12));
    }
    sim
}

/// One random step of the driver.
fn disturb(
    sim: &mut Sim,
    rng: &mut XorShift,
    report: &mut ChaosReport,
    writes: &mut Writes,
    seed: u64,
    step: u32,
) {
    let n = sim.nodes.len();
    let up: Vec<usize> = (0..n).filter(|&i| sim.nodes[i].up).collect();
    let down: Vec<usize> = (0..n).filter(|&i| !sim.nodes[i].up).collect();
    let pick = |rng: &mut XorShift, v: &[usize]| v[rng.range(0, v.len() as u64) as usize];
    match rng.range(0, 100) {
        0..=44 if !up.is_empty() => {
            let i = pick(rng, &up);
            let key = format!("k{}", rng.range(0, 8));
            let value = format!("s{seed}-{step}");
            let id = sim.write(i, &key, &value);
            writes
                .inflight
                .push((i, sim.nodes[i].incarnation, id, key, value));
            report.writes.0 += 1;
        }
        45..=49 if !up.is_empty() => {
            let i = pick(rng, &up);
            sim.read(i);
        }
        50..=57 if !up.is_empty() => {
            let i = pick(rng, &up);
            sim.crash(i);
            report.crashes.0 += 1;
        }
        58..=69 if !down.is_empty() => {
            let i = pick(rng, &down);
            sim.restart(i);
        }
        70..=74 => {
            let i = rng.range(0, n as u64) as usize;
            sim.isolate(i);
            report.partitions += 1;
        }
        75..=79 => {
            let group: Vec<usize> = (0..n).filter(|_| rng.range(0, 2) == 0).collect();
            sim.partition(&group);
            report.partitions += 1;
        }
        80..=89 => sim.heal(),
        90..=94 => {
            let drop = [0, 0, 50, 200, 500][rng.range(0, 5) as usize];
            let lo = rng.range(1, 10);
            let hi = lo + rng.range(0, 80);
            sim.set_network(drop, lo, hi);
            sim.set_duplicates([0, 20, 200][rng.range(0, 3) as usize]);
        }
        _ => {}
    }
}

/// The driver's writes: those not yet answered, and those acknowledged.
#[derive(Default)]
struct Writes {
    /// (node, its incarnation, proposal id, key, value).
    inflight: Vec<(usize, u64, RequestId, String, String)>,
    /// (index, key, value).
    acked: Vec<(Index, String, String)>,
}

impl Writes {
    /// Moves answered writes out of `inflight`; every acknowledged one must be committed as
    /// written.
    fn collect(&mut self, sim: &Sim, seed: u64) {
        let acked = &mut self.acked;
        self.inflight
            .retain(|(i, inc, id, k, v)| match sim.nodes[*i].proposals.get(id) {
                Some(Ok(index)) => {
                    let e = sim.checked.committed.get(index).unwrap_or_else(|| {
                        panic!("seed {seed}: write {k}={v} acknowledged at {index}, not committed")
                    });
                    let want = command::encode_write(k.as_bytes(), v.as_bytes());
                    assert!(
                        e.name == names::WRITE && e.payload.as_deref() == Some(&want[..]),
                        "seed {seed}: write {k}={v} acknowledged at {index} but {e:?} committed there"
                    );
                    acked.push((*index, k.clone(), v.clone()));
                    false
                }
                Some(Err(_)) => false,
                // A crash forgets the proposal: its client sees the connection drop.
                None => sim.nodes[*i].incarnation == *inc,
            });
    }

    /// Every acknowledged write is in every (converged) log, as written.
    fn check_in_every_log(&self, sim: &mut Sim, seed: u64) {
        for (index, k, v) in &self.acked {
            let want = command::encode_write(k.as_bytes(), v.as_bytes());
            for node in &mut sim.nodes {
                let e = node.store.entries(*index, *index).expect("converged log");
                assert!(
                    e[0].payload.as_deref() == Some(&want[..]),
                    "seed {seed}: acknowledged {k}={v} at {index} lost on {}",
                    node.name
                );
            }
        }
    }
}

/// Up to 20 rounds of: wait 3 s for a leader, then 3 s for a write on it to commit. Whether
/// one committed.
fn recover(sim: &mut Sim) -> bool {
    for attempt in 0..20 {
        let Some(l) = sim.await_leader(3_000) else {
            continue;
        };
        let id = sim.write(l, "final", &format!("{attempt}"));
        if let Some(Ok(_)) = sim.run_until_done(l, id, 3_000) {
            return true;
        }
    }
    false
}

/// Every node applies the same commit index, holds the same log and the same state, within
/// 5 s.
fn converge(sim: &mut Sim, seed: u64) {
    for _ in 0..100 {
        sim.run_for(50);
        let c = sim.nodes[0].core.commit_index();
        if sim.nodes.iter().all(|x| {
            x.kv.applied == c
                && x.store.terms() == sim.nodes[0].store.terms()
                && x.kv.data == sim.nodes[0].kv.data
        }) {
            return;
        }
    }
    let state: Vec<String> = sim
        .nodes
        .iter()
        .map(|x| {
            format!(
                "{} {:?} term {} commit {} applied {} log {:?} members {:?} progress {:?}",
                x.name,
                x.core.role(),
                x.core.hard_state().term,
                x.core.commit_index(),
                x.kv.applied,
                x.store.terms(),
                x.core.status().members.keys().collect::<Vec<_>>(),
                x.core.progress_summary()
            )
        })
        .collect();
    panic!(
        "seed {seed}: the nodes did not converge within 5 s:\n{}",
        state.join("\n")
    );
}

/// Log Matching and committed entries, over every whole log at the end.
fn check_whole_logs(sim: &mut Sim, seed: u64) {
    let Sim { nodes, checked, .. } = sim;
    for node in nodes {
        let last = node.store.terms().last_index();
        let start = node.store.terms().start_index;
        if last > start {
            for e in node.store.entries(start + 1, last).expect("log") {
                let rec = checked.committed.get(&e.index);
                assert!(
                    rec.is_none_or(|r| *r == e),
                    "seed {seed}: {} holds {e:?} where {rec:?} was committed",
                    node.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four members, each named by its letter, ending at `(last index, last term)`.
    fn four(ends: [(Index, Term); 4]) -> Vec<Elector> {
        let names = ["a", "b", "c", "d"];
        let members: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        names
            .iter()
            .zip(ends)
            .map(|(name, (index, term))| Elector {
                name: name.to_string(),
                end: (term, index),
                members: members.clone(),
            })
            .collect()
    }

    #[test]
    fn goraft_s_stall_is_recognised_on_a_hand_made_state() {
        // A (100, 1), B (50, 2), C (60, 1), D (55, 2): under goraft's rule A gets C's vote (2 of
        // 3 needed), B none, C none, D B's (2 of 3); under the paper's D gets every vote and B
        // those of A and C, whose logs end in term 1.
        let e = four([(100, 1), (50, 2), (60, 1), (55, 2)]);
        for c in 0..4 {
            assert!(!can_win(VoteRule::Goraft, &e, c), "goraft, candidate {c}");
            let paper = c == 1 || c == 3;
            assert_eq!(
                can_win(VoteRule::Paper, &e, c),
                paper,
                "paper, candidate {c}"
            );
        }
        assert!(goraft_stall(&e));
    }

    #[test]
    fn a_state_goraft_s_rule_can_leave_is_no_stall() {
        // D holds the longest log of the newest term: every rule elects it.
        let e = four([(100, 1), (50, 2), (60, 1), (101, 2)]);
        assert!(can_win(VoteRule::Goraft, &e, 3));
        assert!(!goraft_stall(&e));
        // Equal logs: anyone wins.
        let e = four([(7, 1); 4]);
        assert!((0..4).all(|c| can_win(VoteRule::Goraft, &e, c)));
        assert!(!goraft_stall(&e));
    }

    #[test]
    fn a_voter_that_does_not_know_the_candidate_refuses_it() {
        // Seed 6748 (300 steps) ends here: C missed D's join, so it refuses D's vote requests.
        // Under goraft's rule D would otherwise win with B's and C's votes; A (10, 0) is refused
        // by B and D, B (7, 1) by A and D. Under the paper's D still wins with A and B.
        let mut e = four([(10, 0), (7, 1), (4, 0), (9, 1)]);
        e[2].members.remove("d");
        assert!(!e[2].knows("d") && e[2].knows("a"));
        assert!((0..4).all(|c| !can_win(VoteRule::Goraft, &e, c)));
        assert!(can_win(VoteRule::Paper, &e, 3));
        assert!(goraft_stall(&e));
        // A node still in its join window (not one of its own members) answers anyone.
        e[2].members.remove("c");
        assert!(e[2].knows("d"));
        assert!(can_win(VoteRule::Goraft, &e, 3));
    }

    #[test]
    fn a_candidate_needs_a_majority_of_its_own_members() {
        // Only two of the four are live: no one can win under either rule, and that is a
        // partition, not goraft's stall.
        let e: Vec<Elector> = four([(100, 1), (50, 2), (60, 1), (55, 2)])
            .into_iter()
            .filter(|x| x.name == "a" || x.name == "c")
            .collect();
        assert!(!can_win(VoteRule::Paper, &e, 0));
        assert!(!goraft_stall(&e));
        // A node that is not one of its own members does not campaign.
        let mut e = four([(9, 1); 4]);
        e[0].members.remove("a");
        assert!(!can_win(VoteRule::Paper, &e, 0));
        assert!(can_win(VoteRule::Paper, &e, 1));
    }
}
