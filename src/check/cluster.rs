//! Rules across nodes: Log Matching, agreement of the committed prefix (State Machine Safety),
//! Election Safety, membership and name agreement.
//!
//! Built on the index-aligned comparison in `crate::diff` (one streaming pass over all logs side
//! by side). Pure: it takes opened data dirs and returns findings.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use super::codes::finding;
use super::node::{self, LogPass, NodeCheck, NodeReport};
use super::{Finding, Severity};
use crate::datadir::DataDir;
use crate::diff::{
    self, Claim, DiffOptions, Divergence, EntryPair, Evidence, Observer, TailStatus, Target,
};
use crate::model::Index;
use crate::replay::{MemberChangeKind, Replay, Start};

/// Every code this module emits: (code, severity, what it means). Stable: codes are never
/// renamed. `check::codes::all` lists them after one node's codes, for the man page, the
/// severities the rules give (through `codes::finding`) and the golden test of each code.
pub const CODES: &[(&str, Severity, &str)] = &[
    (
        "cluster-election-safety",
        Severity::Error,
        "two nodes hold different entries with the same index and term: two leaders wrote in one term (Election Safety broken)",
    ),
    (
        "cluster-log-matching",
        Severity::Error,
        "two nodes hold the same entry (index and term) on different prefixes (Log Matching broken)",
    ),
    (
        "cluster-entry-bytes",
        Severity::Warning,
        "two nodes hold the same index, term and command encoded as different protobuf bytes",
    ),
    (
        "cluster-committed-conflict",
        Severity::Error,
        "two different entries at one index are each proven committed (State Machine Safety broken); the evidence is named",
    ),
    (
        "cluster-committed-prefix",
        Severity::Info,
        "how far the files prove the log committed, and by which evidence",
    ),
    (
        "cluster-uncommitted-tail",
        Severity::Info,
        "a node holds entries that are not on a majority: overwritten on a majority (never committed) or not yet replicated",
    ),
    (
        "cluster-conf-peers",
        Severity::Warning,
        "conf files written at the same commitIndex disagree on the membership (peers plus the node itself)",
    ),
    (
        "cluster-membership",
        Severity::Warning,
        "two nodes' logs (with their snapshots' peers) give different members at an index both reached",
    ),
    (
        "cluster-duplicate-name",
        Severity::Error,
        "two different data dirs have the same node name",
    ),
    (
        "cluster-name-not-member",
        Severity::Warning,
        "a node's name is not in the membership replayed from the logs",
    ),
    (
        "cluster-not-compared",
        Severity::Warning,
        "the nodes could not be compared (more than 64 given): the cross-node rules did not run",
    ),
];

/// Checks the invariants that involve more than one node. With fewer than two nodes there is
/// nothing to compare and the result is empty.
pub fn check(nodes: &[DataDir]) -> Vec<Finding> {
    check_sharing(nodes, None)
}

/// [`check`], sharing with the node passes what it learns of the logs' bytes (see
/// [`node::LogPass::sharing`]).
fn check_sharing(nodes: &[DataDir], same: Option<Arc<diff::SameBytes>>) -> Vec<Finding> {
    if nodes.len() < 2 {
        return Vec::new();
    }
    let targets: Vec<Target<'_>> = nodes.iter().map(|dir| Target { dir, at: None }).collect();
    let opts = DiffOptions {
        same_bytes: same,
        ..DiffOptions::default()
    };
    match diff::compare(&targets, &opts) {
        Ok(d) => findings(nodes, &d),
        Err(e) => vec![finding(
            "cluster-not-compared",
            format!("the nodes were not compared: {e}"),
        )],
    }
}

/// Checks every node on its own ([`node::check`]) and the invariants across them ([`check`]).
/// The results are those of the separate checks: the node reports in the order given, then the
/// cluster findings.
///
/// With two cores or more, the comparison and the node checks are tasks shared by as many
/// threads as there are cores, each taking the next task when it is done
/// ([`crate::par::queue`]). Nodes whose log passes follow the same rules (the same snapshots'
/// and conf's bearing on the log) share them: the first one's pass reads the others' logs side by side with its own, and each of
/// them goes on, as a task of its own, from where its bytes part from the first's (a fork of
/// the first's pass there; see [`node::LogPass::run_forking`]). Identical logs are decoded
/// once. With one core, each log is read once: the comparison's lockstep feeds each node's log
/// pass ([`check_all_in_one_pass`]).
pub fn check_all(nodes: &[DataDir]) -> (Vec<NodeReport>, Vec<Finding>) {
    let cores = crate::par::cores();
    if nodes.len() < 2 {
        // Nothing to compare: the node's own check (in parts on a large log).
        return (nodes.iter().map(node::check).collect(), Vec::new());
    }
    if cores < 2 {
        return check_all_in_one_pass(nodes);
    }
    check_all_on(nodes, cores)
}

/// [`check_all`] with its tasks on `threads` threads (the caller's and `threads - 1` more).
fn check_all_on(nodes: &[DataDir], threads: usize) -> (Vec<NodeReport>, Vec<Finding>) {
    let checks: Vec<NodeCheck<'_>> = nodes.iter().map(NodeCheck::new).collect();
    // Each node's leader: the first node with the same rules, whose pass it can share.
    let mut followers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    let mut led = vec![false; nodes.len()];
    for k in 0..nodes.len() {
        if checks[k].log_pass().needs_own_reader() {
            continue;
        }
        let leader = (0..k).find(|&j| {
            !led[j]
                && !checks[j].log_pass().needs_own_reader()
                && node::same_rules(checks[j].ctx(), checks[k].ctx())
        });
        if let Some(j) = leader {
            followers[j].push(k);
            led[k] = true;
        }
    }
    let mut tasks: VecDeque<Task<'_>> = VecDeque::new();
    for k in 0..nodes.len() {
        if !led[k] {
            tasks.push_back(Task::Lead {
                k,
                followers: std::mem::take(&mut followers[k]),
            });
        }
    }
    tasks.insert(1.min(tasks.len()), Task::Compare);
    let reports: Mutex<Vec<Option<NodeReport>>> = Mutex::new(vec![None; nodes.len()]);
    let across: Mutex<Vec<Finding>> = Mutex::new(Vec::new());
    // The comparison and the leaders' passes both compare the logs' bytes: what one has
    // compared, the other skips.
    let same = Arc::new(diff::SameBytes::default());
    let lanes = threads.min(nodes.len() + 1);
    crate::par::queue(lanes, tasks, |task, queue| match task {
        Task::Compare => *lock(&across) = check_sharing(nodes, Some(same.clone())),
        Task::Lead { k, followers } => {
            // One thread: the comparison keeps the other core busy.
            let all = followers.len() + 1 == nodes.len();
            let mut pass = checks[k].log_pass().sharing(same.clone(), all);
            let others: Vec<&[u8]> = followers.iter().map(|&j| nodes[j].log.bytes()).collect();
            pass.run_forking(
                &|r| nodes[k].log.release(r),
                &others,
                &|i, r| nodes[followers[i]].log.release(r),
                &mut |i, fork| {
                    queue.push(Task::Resume {
                        k: followers[i],
                        fork: fork.map(Box::new),
                    });
                },
            );
            lock(&reports)[k] = Some(checks[k].finish(pass));
        }
        Task::Resume { k, fork } => {
            let mut pass = checks[k].resumed_pass(fork.map(|f| *f));
            pass.run(&|r| nodes[k].log.release(r));
            lock(&reports)[k] = Some(checks[k].finish(pass));
        }
    });
    let reports = reports
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(nodes)
        .map(|(r, dir)| r.unwrap_or_else(|| node::check(dir)))
        .collect();
    let across = across.into_inner().unwrap_or_else(|p| p.into_inner());
    (reports, across)
}

/// A piece of [`check_all`]'s work.
enum Task<'d> {
    /// The cluster rules.
    Compare,
    /// Node `k`'s check, reading the logs of `followers` side by side with its own.
    Lead { k: usize, followers: Vec<usize> },
    /// Node `k`'s check, going on from a fork of its leader's pass (from the start without).
    Resume {
        k: usize,
        fork: Option<Box<node::Fork<'d>>>,
    },
}

/// The lock, also after a panic elsewhere (which `check_all` passes on).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// [`check_all`] on one thread, reading each log once: the comparison's lockstep feeds each
/// node's log pass.
pub fn check_all_in_one_pass(nodes: &[DataDir]) -> (Vec<NodeReport>, Vec<Finding>) {
    let checks: Vec<NodeCheck<'_>> = nodes.iter().map(NodeCheck::new).collect();
    let mut passes: Vec<LogPass<'_>> = checks.iter().map(NodeCheck::log_pass).collect();
    let compared = if nodes.len() < 2 {
        None
    } else {
        let targets: Vec<Target<'_>> = nodes.iter().map(|dir| Target { dir, at: None }).collect();
        let mut observers: Vec<Option<&mut dyn Observer>> = passes
            .iter_mut()
            .map(|p| {
                if p.needs_own_reader() {
                    None
                } else {
                    Some(p as &mut dyn Observer)
                }
            })
            .collect();
        Some(diff::compare_observed(
            &targets,
            &DiffOptions::default(),
            &mut observers,
        ))
    };
    // The passes the comparison did not feed: all of them when it did not run (it fails before
    // reading anything), and those of logs with a commit-index prefix.
    let fed = matches!(compared, Some(Ok(_)));
    for (p, dir) in passes.iter_mut().zip(nodes) {
        if !fed || p.needs_own_reader() {
            p.run(&|r| dir.log.release(r));
        }
    }
    let reports = checks
        .iter()
        .zip(passes)
        .map(|(c, p)| c.finish(p))
        .collect();
    let cluster = match compared {
        None => Vec::new(),
        Some(Ok(d)) => findings(nodes, &d),
        Some(Err(e)) => vec![finding(
            "cluster-not-compared",
            format!("the nodes were not compared: {e}"),
        )],
    };
    (reports, cluster)
}

/// The findings a comparison gives; `nodes` are the data dirs it compared, in the same order.
/// Their consequences are the shared code's (`goraft and seaweedfs/raft`) when every node is a
/// SeaweedFS master.
pub fn findings(nodes: &[DataDir], d: &Divergence) -> Vec<Finding> {
    let mut out = compared(nodes, d);
    if let Some(first) = nodes.first() {
        if nodes.iter().all(|n| n.dialect() == first.dialect()) {
            super::name_implementation(&mut out, first.dialect());
        }
    }
    out
}

fn compared(nodes: &[DataDir], d: &Divergence) -> Vec<Finding> {
    let mut out = Vec::new();
    let label = |k: usize| node_label(nodes, k);
    safety_findings(nodes, d, &mut out);
    committed_prefix(nodes, d, &mut out);
    tail_findings(nodes, d, &mut out);
    membership(nodes, d, &label, &mut out);
    out
}

/// Election Safety, Log Matching, encoding differences and committed conflicts, each capped.
fn safety_findings(nodes: &[DataDir], d: &Divergence, out: &mut Vec<Finding>) {
    let label = |k: usize| node_label(nodes, k);
    let on = |k: usize, f: Finding| match nodes.get(k) {
        Some(dir) => f.node(dir.label()).file(dir.log_path.clone()),
        None => f,
    };

    let pair_finding = |code: &'static str, e: &EntryPair, message: String, goraft: &str| {
        on(e.a, finding(code, message))
            .offset(e.a_offset)
            .index(e.index)
            .goraft(goraft)
    };
    for e in &d.election_safety.items {
        out.push(pair_finding(
            "cluster-election-safety",
            e,
            format!(
                "{} and {} (byte {}) hold different entries at index {} in the same term {}: two leaders wrote in term {}",
                label(e.a),
                label(e.b),
                e.b_offset,
                e.index,
                e.term,
                e.term
            ),
            "persists neither its term nor its vote, so a restarted node can vote twice in one term; the next leader's entry overwrites the other on its followers",
        ));
    }
    more(
        out,
        "cluster-election-safety",
        d.election_safety.total,
        d.election_safety.items.len(),
    );
    for e in &d.log_matching.items {
        out.push(pair_finding(
            "cluster-log-matching",
            e,
            format!(
                "{} and {} (byte {}) hold the same entry at index {} term {}, but their logs differ earlier, at index {}",
                label(e.a),
                label(e.b),
                e.b_offset,
                e.index,
                e.term,
                e.prefix_differs_at.unwrap_or(0)
            ),
            "checks only the term of the previous entry when appending, so it keeps both prefixes",
        ));
    }
    more(
        out,
        "cluster-log-matching",
        d.log_matching.total,
        d.log_matching.items.len(),
    );
    for e in &d.encoding.items {
        out.push(pair_finding(
            "cluster-entry-bytes",
            e,
            format!(
                "{} and {} (byte {}) hold the same command at index {} term {}, encoded as different protobuf bytes",
                label(e.a),
                label(e.b),
                e.b_offset,
                e.index,
                e.term
            ),
            "compares only index and term, so it treats them as the same entry",
        ));
    }
    more(
        out,
        "cluster-entry-bytes",
        d.encoding.total,
        d.encoding.items.len(),
    );

    for c in &d.committed_conflicts.items {
        let versions: Vec<String> = c
            .versions
            .iter()
            .map(|v| {
                let holders: Vec<String> = diff::members_of(v.nodes).map(label).collect();
                let claims: Vec<String> =
                    v.claims.iter().map(|cl| claim_text(cl, &label)).collect();
                format!(
                    "term {} on {} ({})",
                    v.term,
                    holders.join(", "),
                    claims.join("; ")
                )
            })
            .collect();
        let first = diff::members_of(c.versions[0].nodes).next().unwrap_or(0);
        let mut f = on(
            first,
            finding(
                "cluster-committed-conflict",
                format!(
                    "index {} holds different entries that are each proven committed: {}",
                    c.index,
                    versions.join(" vs ")
                ),
            ),
        )
        .index(c.index)
        .goraft("never revisits applied entries: the nodes' states have diverged for good");
        if let Some(o) = c.versions[0].offset {
            f = f.offset(o);
        }
        out.push(f);
    }
    more(
        out,
        "cluster-committed-conflict",
        d.committed_conflicts.total,
        d.committed_conflicts.items.len(),
    );
}

/// How far the entries are proven committed, and by what.
fn committed_prefix(nodes: &[DataDir], d: &Divergence, out: &mut Vec<Finding>) {
    let label = |k: usize| node_label(nodes, k);
    if let Some((index, evidence, node)) = d.committed() {
        let how = match (evidence, d.commit.majority) {
            (Evidence::Majority, Some(m)) => {
                let before = if d.log_matching.total == 0 {
                    "and by Log Matching so is every entry before it"
                } else {
                    "but Log Matching is broken (see cluster-log-matching): the entries before it are committed only where a majority holds the same ones"
                };
                format!(
                    "entry {index} (term {}) is on {} of {} nodes ({}), {before}",
                    m.term,
                    m.holders,
                    m.cluster_size,
                    diff::members_of(m.nodes).map(label).collect::<Vec<_>>().join(", ")
                )
            }
            (Evidence::Snapshot, _) => format!("the snapshot of {}", label(node)),
            _ => format!(
                "the conf commitIndex of {} (a stale lower bound: goraft writes conf only at membership changes)",
                label(node)
            ),
        };
        let agree = if d.committed_conflicts.total == 0 {
            "no two nodes hold different entries that are both proven committed"
        } else {
            "see cluster-committed-conflict"
        };
        out.push(
            finding(
                "cluster-committed-prefix",
                format!("entries up to index {index} are proven committed: {how}; {agree}"),
            )
            .index(index),
        );
    }
}

/// The tails that are not committed: overwritten, or not on a majority.
fn tail_findings(nodes: &[DataDir], d: &Divergence, out: &mut Vec<Finding>) {
    let label = |k: usize| node_label(nodes, k);
    let on = |k: usize, f: Finding| match nodes.get(k) {
        Some(dir) => f.node(dir.label()).file(dir.log_path.clone()),
        None => f,
    };
    let terms = |t: &diff::Tail| {
        if t.min_term == t.max_term {
            format!("term {}", t.min_term)
        } else {
            format!("terms {}..{}", t.min_term, t.max_term)
        }
    };
    let entries = |from: Index, to: Index| {
        let noun = if from == to { "entry" } else { "entries" };
        format!("{noun} {}", diff::span(from, to))
    };
    for t in &d.tails {
        let one = t.from == t.to;
        let (text, goraft) = match t.status {
            TailStatus::OnMajority | TailStatus::Claimed { .. } => continue,
            TailStatus::Overwritten { by_term } => {
                // The majority's own run at these indexes, to say what overwrites the tail.
                let majority = d
                    .tails
                    .iter()
                    .find(|m| m.status == TailStatus::OnMajority && m.from <= t.to && t.from <= m.to)
                    .map(|m| {
                        let holders: Vec<String> = diff::members_of(m.nodes).map(label).collect();
                        format!(
                            ": {} {} {} ({})",
                            holders.join(", "),
                            if holders.len() == 1 { "holds" } else { "hold" },
                            entries(m.from, m.to),
                            terms(m)
                        )
                    });
                let when = if by_term > t.max_term {
                    format!(", in the later term {by_term}")
                } else if majority.is_some() {
                    String::new()
                } else {
                    format!(" (term {by_term})")
                };
                (
                    format!(
                        "must be uncommitted: other entries hold {} on a majority{when}{}",
                        if one { "this index" } else { "these indexes" },
                        majority.unwrap_or_default()
                    ),
                    "truncates these entries when the node follows the leader; their writes never take effect",
                )
            }
            TailStatus::NotOnMajority => (
                format!(
                    "{} not on a majority ({} of {} nodes) and not contradicted by one: {} may still be committed, or be overwritten",
                    if one { "is" } else { "are" },
                    t.holders,
                    d.commit.cluster_size,
                    if one { "it" } else { "they" }
                ),
                "a leader holding these entries can still replicate them; another leader overwrites them",
            ),
        };
        for (k, offset) in diff::members_of(t.nodes).zip(&t.offsets) {
            out.push(
                on(
                    k,
                    finding(
                        "cluster-uncommitted-tail",
                        format!(
                            "{} holds {} ({}) that {text}",
                            label(k),
                            entries(t.from, t.to),
                            terms(t)
                        ),
                    ),
                )
                .offset(*offset)
                .index(t.from)
                .goraft(goraft),
            );
        }
    }
}

/// Node `k`'s label (its position when there is no such node).
fn node_label(nodes: &[DataDir], k: usize) -> String {
    nodes
        .get(k)
        .map_or_else(|| format!("node {k}"), DataDir::label)
}

fn more(out: &mut Vec<Finding>, code: &'static str, total: u64, listed: usize) {
    if total > listed as u64 {
        out.push(finding(
            code,
            format!("{} more occurrences not listed", total - listed as u64),
        ));
    }
}

fn claim_text(c: &Claim, label: &dyn Fn(usize) -> String) -> String {
    match *c {
        Claim::Majority {
            holders,
            cluster_size,
        } => format!("on {holders} of {cluster_size} nodes"),
        Claim::ConfCommitIndex { node, commit_index } => {
            format!("conf commitIndex {commit_index} of {}", label(node))
        }
        Claim::Snapshot { node, last_index } => {
            format!("snapshot of {} up to index {last_index}", label(node))
        }
    }
}

fn set(s: &BTreeSet<String>) -> String {
    format!("{{{}}}", s.iter().cloned().collect::<Vec<_>>().join(", "))
}

/// The members a replay had after applying index `at`; `None` when `at` is outside what it
/// replayed (before its snapshot, or after its last entry).
fn members_at(r: &Replay, at: Index) -> Option<BTreeSet<String>> {
    let start = match &r.start {
        Start::Snapshot(s) => s.last_index,
        Start::Empty => 0,
    };
    if at < start || at > r.last_applied() {
        return None;
    }
    let mut members = BTreeSet::new();
    for c in r.membership.iter().filter(|c| c.index <= at) {
        match c.kind {
            MemberChangeKind::Join | MemberChangeKind::Snapshot => {
                members.insert(c.name.clone());
            }
            MemberChangeKind::Leave => {
                members.remove(&c.name);
            }
        }
    }
    Some(members)
}

fn membership(
    nodes: &[DataDir],
    d: &Divergence,
    label: &dyn Fn(usize) -> String,
    out: &mut Vec<Finding>,
) {
    let distinct: Vec<usize> = (0..d.nodes.len())
        .filter(|&k| d.nodes[k].identity == k)
        .collect();

    // goraft writes conf when it applies a join or leave, with the commitIndex of that moment:
    // confs with different commitIndexes come from different points of one history (a node
    // that is behind has an older conf). Only confs of the same point must agree. A conf lists
    // the other members only: without the node's name its members are not known.
    let mut confs: BTreeMap<Index, Vec<(usize, &BTreeSet<String>)>> = BTreeMap::new();
    for &k in &distinct {
        if let (Some(c), Some(_)) = (&d.nodes[k].conf, &d.nodes[k].name) {
            confs
                .entry(c.commit_index)
                .or_default()
                .push((k, &c.members));
        }
    }
    for (commit, confs) in &confs {
        if confs.windows(2).any(|w| w[0].1 != w[1].1) {
            let each: Vec<String> = confs
                .iter()
                .map(|(k, m)| format!("{}: {}", label(*k), set(m)))
                .collect();
            out.push(
                finding(
                    "cluster-conf-peers",
                    format!(
                        "the conf files with commitIndex {commit} disagree on the members (peers plus self): {}",
                        each.join("; ")
                    ),
                )
                .goraft("reads only commitIndex back from conf and rebuilds the peers from the log, so one of these confs was edited or written by another history"),
            );
        }
    }

    // Memberships are compared at the last index both nodes replayed: a node that is behind
    // has the membership the others had at its last index, not theirs at their end.
    let mut differ = Vec::new();
    for (x, &j) in distinct.iter().enumerate() {
        for &k in &distinct[x + 1..] {
            let (rj, rk) = (&d.nodes[j].replay, &d.nodes[k].replay);
            let at = rj.last_applied().min(rk.last_applied());
            if let (Some(mj), Some(mk)) = (members_at(rj, at), members_at(rk, at)) {
                if mj != mk {
                    differ.push((j, k, at, mj, mk));
                }
            }
        }
    }
    if let Some((j, k, at, mj, mk)) = differ.first() {
        let more = match differ.len() - 1 {
            0 => String::new(),
            1 => " (1 more pair of nodes differs)".to_string(),
            n => format!(" ({n} more pairs of nodes differ)"),
        };
        out.push(finding(
            "cluster-membership",
            format!(
                "the membership replayed from the logs differs: at index {at}, {} has {} and {} has {}{more}",
                label(*j),
                set(mj),
                label(*k),
                set(mk)
            ),
        ));
    }

    let replayed: Vec<(usize, BTreeSet<String>)> = distinct
        .iter()
        .map(|&k| (k, d.nodes[k].replay.kv.members.keys().cloned().collect()))
        .collect();

    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &k in &distinct {
        if let Some(name) = d.nodes[k].name.as_deref() {
            by_name.entry(name).or_default().push(k);
        }
    }
    for (name, ks) in &by_name {
        if ks.len() > 1 {
            let dirs: Vec<String> = ks
                .iter()
                .map(|&k| nodes[k].path.display().to_string())
                .collect();
            out.push(
                finding(
                    "cluster-duplicate-name",
                    format!(
                        "{} data dirs are named {name:?}: {}",
                        ks.len(),
                        dirs.join(", ")
                    ),
                )
                .goraft(
                    "identifies peers by name: two nodes with one name collide in every peer map",
                ),
            );
        }
    }

    let all: BTreeSet<&str> = replayed
        .iter()
        .flat_map(|(_, m)| m.iter().map(String::as_str))
        .collect();
    if all.is_empty() {
        return;
    }
    for &k in &distinct {
        if let Some(name) = d.nodes[k].name.as_deref() {
            if !all.contains(name) {
                let mut f = finding(
                    "cluster-name-not-member",
                    format!(
                        "{} is named {name:?}, which no log makes a member (members: {})",
                        label(k),
                        all.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                )
                .node(label(k));
                if let Some(n) = &nodes[k].name {
                    f = f.file(n.path.clone());
                }
                out.push(f.goraft(
                    "raftd takes its name from this file, and no leader replicates to a name it does not know: the node idles (or, if the file was changed, its peers know it under the old name)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests;
