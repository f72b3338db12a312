//! Rules across nodes: Log Matching, agreement of the committed prefix (State Machine Safety),
//! Election Safety, membership and name agreement.
//!
//! Built on the index-aligned comparison in `crate::diff` (one streaming pass over all logs side
//! by side). Pure: it takes opened data dirs and returns findings.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

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
/// threads as there are cores, each taking the next task when it is done. Nodes whose log
/// passes follow the same rules (the same snapshots' and conf's bearing on the log) share
/// them: the first one's pass reads the others' logs side by side with its own, and each of
/// them goes on, as a task of its own, from where its bytes part from the first's (a fork of
/// the first's pass there; see [`node::LogPass::run_forking`]). Identical logs are decoded
/// once. With one core, each log is read once: the comparison's lockstep feeds each node's log
/// pass ([`check_all_in_one_pass`]).
pub fn check_all(nodes: &[DataDir]) -> (Vec<NodeReport>, Vec<Finding>) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
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
    let queue = Queue {
        state: Mutex::new((tasks, 0)),
        wake: Condvar::new(),
    };
    let reports: Mutex<Vec<Option<NodeReport>>> = Mutex::new(vec![None; nodes.len()]);
    let across: Mutex<Vec<Finding>> = Mutex::new(Vec::new());
    // The comparison and the leaders' passes both compare the logs' bytes: what one has
    // compared, the other skips.
    let same = Arc::new(diff::SameBytes::default());
    let run = |task: Task<'_>| match task {
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
    };
    let work = || {
        while let Some(task) = queue.pop() {
            // Counted as done even when it panics, so that no worker waits for it.
            let _done = Done(&queue);
            run(task);
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads.min(nodes.len() + 1))
            .map(|_| s.spawn(work))
            .collect();
        work();
        for h in helpers {
            // A panic there is a bug; show it as the panic it is.
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
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

/// [`check_all`]'s tasks, and how many are being run: a worker waits while the queue is empty
/// but a running task may still add one, and stops when neither is left.
struct Queue<'d> {
    state: Mutex<(VecDeque<Task<'d>>, usize)>,
    wake: Condvar,
}

impl<'d> Queue<'d> {
    fn push(&self, t: Task<'d>) {
        lock(&self.state).0.push_back(t);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Task<'d>> {
        let mut s = lock(&self.state);
        loop {
            if let Some(t) = s.0.pop_front() {
                s.1 += 1;
                return Some(t);
            }
            if s.1 == 0 {
                return None;
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done(&self) {
        lock(&self.state).1 -= 1;
        self.wake.notify_all();
    }
}

/// Marks a task as done when dropped.
struct Done<'q, 'd>(&'q Queue<'d>);

impl Drop for Done<'_, '_> {
    fn drop(&mut self) {
        self.0.done();
    }
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
    let label = |k: usize| {
        nodes
            .get(k)
            .map_or_else(|| format!("node {k}"), DataDir::label)
    };
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
        &mut out,
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
        &mut out,
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
        &mut out,
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
        &mut out,
        "cluster-committed-conflict",
        d.committed_conflicts.total,
        d.committed_conflicts.items.len(),
    );

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

    membership(nodes, d, &label, &mut out);
    out
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
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;
    use std::path::{Path, PathBuf};

    fn fixture(rel: &str) -> DataDir {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/goraft")
            .join(rel);
        crate::datadir::open(&p).unwrap()
    }

    fn codes(f: &[Finding]) -> Vec<(&'static str, Option<u64>)> {
        f.iter().map(|f| (f.code, f.index)).collect()
    }

    fn three(rel: &str) -> Vec<DataDir> {
        ["node1", "node2", "node3"]
            .iter()
            .map(|n| fixture(&format!("{rel}/{n}")))
            .collect()
    }

    /// What `check_all` must give: each node checked on its own, then the cluster.
    fn separately(nodes: &[DataDir]) -> (Vec<NodeReport>, Vec<Finding>) {
        (
            nodes.iter().map(crate::check::node::check).collect(),
            check(nodes),
        )
    }

    #[test]
    fn the_single_pass_gives_what_the_separate_passes_give() {
        let dirs = crate::datadir::testing::fixture_dirs();
        assert!(dirs.len() > 60, "{} fixture dirs", dirs.len());
        let open = |d: &DataDir| crate::datadir::open(&d.path).unwrap();
        // Each fixture alone, next to a clean node, and twice (the same dir given twice).
        let clean = fixture("three-node-leader-kill/node1");
        for d in &dirs {
            let at = d.path.display();
            let one = [open(d)];
            assert_eq!(check_all(&one), separately(&one), "{at}");
            let two = [open(d), open(&clean)];
            assert_eq!(check_all(&two), separately(&two), "{at}");
            assert_eq!(check_all_in_one_pass(&two), separately(&two), "{at}");
            let twice = [open(d), open(d)];
            assert_eq!(check_all_in_one_pass(&twice), separately(&twice), "{at}");
            assert_eq!(check_all_on(&twice, 2), separately(&twice), "{at}");
            assert_eq!(check_all_on(&twice, 1), separately(&twice), "{at}");
        }
        // Every group of sibling node dirs (the cluster fixtures).
        let mut groups: BTreeMap<PathBuf, Vec<&DataDir>> = BTreeMap::new();
        for d in &dirs {
            if let Some(parent) = d.path.parent() {
                groups.entry(parent.to_path_buf()).or_default().push(d);
            }
        }
        let mut clusters = 0;
        for (parent, members) in groups.iter().filter(|(_, m)| m.len() > 1) {
            let nodes: Vec<DataDir> = members.iter().map(|d| open(d)).collect();
            let want = separately(&nodes);
            assert_eq!(check_all_in_one_pass(&nodes), want, "{}", parent.display());
            assert_eq!(check_all(&nodes), want, "{}", parent.display());
            clusters += 1;
        }
        assert!(clusters >= 10, "{clusters} clusters");
    }

    /// Long logs that share megabytes and then part, inside a frame or between two, with
    /// findings before the parting (which the followers' passes take over under their own
    /// names), damage before it (no fork then) or after it, and a context that differs (no
    /// shared pass): each node's report is what its own check gives.
    #[test]
    fn shared_passes_give_what_the_separate_passes_give() {
        use crate::format::log::LogWriter;
        use crate::model::Command;
        let tmp = tempfile::tempdir().unwrap();
        let mut lw = LogWriter::new(Vec::new());
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let join = Command::Join {
                name: (*name).into(),
                connection_string: format!("http://127.0.0.1:{}", 4001 + i),
            };
            lw.append(i as u64 + 1, 0, &join).unwrap();
        }
        for i in 4..12_000u64 {
            let w = Command::Write {
                key: format!("k{}", i % 977),
                value: if i == 1_000 {
                    "lost \u{fffd}".into()
                } else {
                    format!("v{i}")
                },
            };
            if i == 1_500 {
                lw.append_raw(i, i / 3_000, "etcd:set", Some(b"{}"))
                    .unwrap();
            } else {
                lw.append(i, i / 3_000, &w).unwrap();
            }
        }
        let bytes = lw.into_inner();
        let frame_at = |index: u64| crate::datadir::testing::frame_span(&bytes, index);
        let make = |name: &str, f: &dyn Fn(&mut Vec<u8>), conf: Option<&str>| {
            let mut b = bytes.clone();
            f(&mut b);
            crate::datadir::testing::write_node(tmp.path(), name, &b, conf)
        };
        // The first frame from index 2,000 on whose length has a hex letter.
        let upper = (2_000..)
            .map(|i| frame_at(i).0)
            .find(|&at| bytes[at..at + 8].iter().any(u8::is_ascii_lowercase))
            .unwrap();
        let odd = move |b: &mut Vec<u8>| {
            let h = std::str::from_utf8(&b[upper..upper + 8])
                .unwrap()
                .to_uppercase();
            b[upper..upper + 8].copy_from_slice(h.as_bytes());
        };
        let (mid, mid_end) = frame_at(6_000);
        let (hole, hole_end) = frame_at(3_000);
        let conf = r#"{"commitIndex":3,"peers":[]}"#;
        let dirs = [
            make("a", &odd, None),
            make("b", &odd, None),
            make(
                "inside",
                &|b| {
                    odd(b);
                    b[mid_end - 4] = b'X';
                },
                None,
            ),
            make(
                "torn",
                &|b| {
                    odd(b);
                    b.truncate(mid + 20);
                },
                None,
            ),
            make(
                "shorter",
                &|b| {
                    odd(b);
                    b.truncate(mid);
                },
                None,
            ),
            make(
                "hole",
                &|b| {
                    odd(b);
                    b[hole..hole_end].fill(0);
                },
                None,
            ),
            make("conf", &odd, Some(conf)),
            make(
                "longer",
                &|b| {
                    odd(b);
                    let more = b[mid..mid_end].to_vec();
                    b.extend_from_slice(&more);
                },
                None,
            ),
        ];
        let open = |names: &[&str]| -> Vec<DataDir> {
            names
                .iter()
                .map(|n| {
                    let d = dirs.iter().find(|d| d.ends_with(n)).unwrap();
                    crate::datadir::open(d).unwrap()
                })
                .collect()
        };
        let sets: [&[&str]; 8] = [
            &["a", "b"],
            &["a", "b", "inside"],
            &["torn", "a", "shorter"],
            &["shorter", "a", "longer"],
            &["a", "hole", "b"],
            &["hole", "a"],
            &["a", "conf", "b"],
            &["inside", "torn", "shorter", "hole", "a", "longer"],
        ];
        for set in sets {
            let nodes = open(set);
            let want = separately(&nodes);
            // The findings made before the parting are there, under each node's name.
            assert!(want
                .0
                .iter()
                .all(|r| r.findings.iter().any(|f| f.code == "header-uppercase")));
            assert_eq!(check_all_on(&nodes, 2), want, "{set:?}");
            assert_eq!(check_all_on(&nodes, 3), want, "{set:?}");
        }
    }

    #[test]
    fn codes_are_unique_and_prefixed() {
        let mut seen = BTreeSet::new();
        for (code, _, what) in CODES {
            assert!(code.starts_with("cluster-") && !what.is_empty());
            assert!(seen.insert(*code), "{code}");
        }
    }

    #[test]
    fn clean_clusters_have_only_the_committed_prefix() {
        let f = check(&three("three-node-leader-kill"));
        assert_eq!(codes(&f), [("cluster-committed-prefix", Some(80))]);
        assert_eq!(
            f[0].message,
            format!(
                "entries up to index 80 are proven committed: entry 80 (term 1) is on 3 of 3 nodes ({}), and by Log Matching so is every entry before it; no two nodes hold different entries that are both proven committed",
                ["node1 (1fd2a74)", "node2 (b61c9ea)", "node3 (611fff3)"]
                    .map(|n| format!("{}/fixtures/goraft/three-node-leader-kill/{n}", env!("CARGO_MANIFEST_DIR")))
                    .join(", ")
            )
        );
        let f = check(&three(
            "diverged-old-leader-tail/t3-final-after-old-leader-rejoined",
        ));
        assert_eq!(codes(&f), [("cluster-committed-prefix", Some(36))]);
    }

    #[test]
    fn t1_old_leader_tail_may_still_commit() {
        let f = check(&three(
            "diverged-old-leader-tail/t1-old-leader-stopped-uncommitted-tail",
        ));
        assert_eq!(
            codes(&f),
            [
                ("cluster-committed-prefix", Some(24)),
                ("cluster-uncommitted-tail", Some(25))
            ]
        );
        let t = &f[1];
        assert_eq!(t.severity, Severity::Info);
        assert!(t
            .node
            .as_deref()
            .unwrap()
            .ends_with("t1-old-leader-stopped-uncommitted-tail/node1 (2dabb76)"));
        assert_eq!(t.offset, Some(1570), "node1's first 1570 bytes are shared");
        assert!(
            t.message.ends_with(
                "node1 (2dabb76) holds entries 25..29 (term 0) that are not on a majority (1 of 3 nodes) and not contradicted by one: they may still be committed, or be overwritten"
            ),
            "{}",
            t.message
        );
    }

    #[test]
    fn t2_old_leader_tail_is_uncommitted_without_a_safety_violation() {
        let f = check(&three(
            "diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped",
        ));
        assert_eq!(
            codes(&f),
            [
                ("cluster-committed-prefix", Some(33)),
                ("cluster-uncommitted-tail", Some(25))
            ]
        );
        assert!(f.iter().all(|f| f.severity == Severity::Info));
        let t2 = format!(
            "{}/fixtures/goraft/diverged-old-leader-tail/t2-new-leader-committed-old-leader-still-stopped",
            env!("CARGO_MANIFEST_DIR")
        );
        assert_eq!(
            f[1].message,
            format!("{t2}/node1 (2dabb76) holds entries 25..29 (term 0) that must be uncommitted: other entries hold these indexes on a majority, in the later term 1: {t2}/node2 (4560135), {t2}/node3 (6209dd4) hold entries 25..33 (term 1)")
        );
        assert!(f[1].node.as_deref().unwrap().ends_with("node1 (2dabb76)"));
    }

    fn write_node(root: &Path, name: &str, entries: &[(u64, u64, Command)]) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut lw = LogWriter::new(Vec::new());
        for (i, t, c) in entries {
            lw.append(*i, *t, c).unwrap();
        }
        std::fs::write(dir.join("log"), lw.into_inner()).unwrap();
        std::fs::write(dir.join("name"), name).unwrap();
        dir
    }

    #[test]
    fn synthetic_election_safety_violation() {
        let tmp = tempfile::tempdir().unwrap();
        let join = |n: &str| Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let w = |v: &str| Command::Write {
            key: "k".into(),
            value: v.into(),
        };
        let prefix = vec![
            (1, 0, join("aa")),
            (2, 0, Command::Nop),
            (3, 0, join("bb")),
            (4, 0, join("cc")),
        ];
        let mut a = prefix.clone();
        a.extend([(5, 1, Command::Nop), (6, 1, w("from-a"))]);
        let mut b = prefix.clone();
        b.extend([(5, 1, Command::Nop), (6, 1, w("from-b"))]);
        let dirs: Vec<DataDir> = [("aa", &a), ("bb", &b), ("cc", &prefix)]
            .iter()
            .map(|(n, e)| crate::datadir::open(&write_node(tmp.path(), n, e)).unwrap())
            .collect();
        let f = check(&dirs);
        let es: Vec<_> = f
            .iter()
            .filter(|f| f.code == "cluster-election-safety")
            .collect();
        assert_eq!(es.len(), 1);
        assert_eq!((es[0].severity, es[0].index), (Severity::Error, Some(6)));
        let a_offset = crate::format::log::LogReader::new(dirs[0].log.bytes())
            .nth(5)
            .unwrap()
            .unwrap()
            .offset;
        assert_eq!(es[0].offset, Some(a_offset));
        assert!(es[0]
            .message
            .contains("hold different entries at index 6 in the same term 1"));
        // Both entries at 6 are on 1 of 3 nodes: no commit evidence, so no safety finding.
        assert!(f.iter().all(|f| f.code != "cluster-committed-conflict"));
    }

    fn conf(dir: &Path, commit_index: u64, peers: &[&str]) {
        let c = crate::model::Conf {
            commit_index,
            peers: peers
                .iter()
                .map(|n| crate::model::Peer {
                    name: (*n).into(),
                    connection_string: format!("http://{n}"),
                })
                .collect(),
        };
        std::fs::write(dir.join("conf"), crate::format::conf::encode(&c)).unwrap();
    }

    /// cc was down while dd joined (goraft commits a join with a quorum of the old members: aa,
    /// bb); its log and its conf stop at index 4. A follower that is behind is not a membership
    /// or conf disagreement: at index 4 every log makes the same members.
    #[test]
    fn a_follower_behind_a_join_disagrees_on_neither_membership_nor_conf() {
        let tmp = tempfile::tempdir().unwrap();
        let join = |n: &str| Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let before = vec![
            (1, 0, join("aa")),
            (2, 0, Command::Nop),
            (3, 0, join("bb")),
            (4, 0, join("cc")),
        ];
        let mut after = before.clone();
        after.push((5, 0, join("dd")));
        let mut dirs = Vec::new();
        for (name, log) in [
            ("aa", &after),
            ("bb", &after),
            ("cc", &before),
            ("dd", &after),
        ] {
            let p = write_node(tmp.path(), name, log);
            let (commit, members): (u64, &[&str]) = if name == "cc" {
                (4, &["aa", "bb", "cc"])
            } else {
                (5, &["aa", "bb", "cc", "dd"])
            };
            let peers: Vec<&str> = members.iter().copied().filter(|m| *m != name).collect();
            conf(&p, commit, &peers);
            let dir = crate::datadir::open(&p).unwrap();
            assert_eq!(crate::check::node::check(&dir).findings, [], "{name}");
            dirs.push(dir);
        }
        let f = check(&dirs);
        assert_eq!(codes(&f), [("cluster-committed-prefix", Some(5))]);
        assert!(
            f[0].message.contains("is on 3 of 4 nodes"),
            "{}",
            f[0].message
        );
    }

    /// The same membership history, but aa's snapshot at index 4 forgets cc: at index 4 the
    /// logs make different members, and two confs with the same commitIndex list different ones.
    #[test]
    fn memberships_and_confs_that_differ_at_the_same_index_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let join = |n: &str| Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let log = vec![
            (1, 0, join("aa")),
            (2, 0, Command::Nop),
            (3, 0, join("bb")),
            (4, 0, join("cc")),
        ];
        let mut paths = Vec::new();
        for name in ["aa", "bb", "cc"] {
            let p = write_node(tmp.path(), name, &log);
            let peers: Vec<&str> = ["aa", "bb", "cc"]
                .into_iter()
                .filter(|m| *m != name)
                .collect();
            conf(&p, 4, &peers);
            paths.push(p);
        }
        conf(&paths[0], 4, &["bb"]);
        std::fs::create_dir_all(paths[0].join("snapshot")).unwrap();
        let peer = |n: &str| crate::model::Peer {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let snap = crate::model::Snapshot {
            last_index: 4,
            last_term: 0,
            peers: Some(vec![peer("aa"), peer("bb")]),
            state: Some(b"{}".to_vec()),
            path: String::new(),
        };
        std::fs::write(
            paths[0].join("snapshot/0_4.ss"),
            crate::format::snapshot::encode(&snap),
        )
        .unwrap();
        let dirs: Vec<DataDir> = paths
            .iter()
            .map(|p| crate::datadir::open(p).unwrap())
            .collect();
        let f = check(&dirs);
        let got: Vec<_> = f
            .iter()
            .filter(|f| f.code != "cluster-committed-prefix")
            .map(|f| f.code)
            .collect();
        assert_eq!(got, ["cluster-conf-peers", "cluster-membership"]);
        let m = f.iter().find(|f| f.code == "cluster-membership").unwrap();
        assert!(
            m.message
                .starts_with("the membership replayed from the logs differs: at index 4, ")
                && m.message.contains("/aa (aa) has {aa, bb} and ")
                && m.message
                    .ends_with("/bb (bb) has {aa, bb, cc} (1 more pair of nodes differs)"),
            "{}",
            m.message
        );
        let c = f.iter().find(|f| f.code == "cluster-conf-peers").unwrap();
        assert!(
            c.message.starts_with(
                "the conf files with commitIndex 4 disagree on the members (peers plus self): "
            ),
            "{}",
            c.message
        );
    }

    /// A data dir without a name file: its conf lists the other members, but without the name
    /// the comparison cannot add the node itself; that is no disagreement.
    #[test]
    fn a_conf_without_a_name_is_not_compared() {
        let tmp = tempfile::tempdir().unwrap();
        let join = |n: &str| Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let log = vec![(1, 0, join("aa")), (2, 0, Command::Nop), (3, 0, join("bb"))];
        let a = write_node(tmp.path(), "aa", &log);
        conf(&a, 3, &["bb"]);
        let b = write_node(tmp.path(), "bb", &log);
        conf(&b, 3, &["aa"]);
        std::fs::remove_file(b.join("name")).unwrap();
        let dirs: Vec<DataDir> = [a, b]
            .iter()
            .map(|p| crate::datadir::open(p).unwrap())
            .collect();
        assert_eq!(
            codes(&check(&dirs)),
            [("cluster-committed-prefix", Some(3))]
        );
    }

    #[test]
    fn names_duplicate_and_not_member() {
        let tmp = tempfile::tempdir().unwrap();
        let join = |n: &str| Command::Join {
            name: n.into(),
            connection_string: format!("http://{n}"),
        };
        let log = vec![(1, 0, join("aa")), (2, 0, Command::Nop), (3, 0, join("bb"))];
        let a = write_node(tmp.path(), "aa", &log);
        let b = write_node(tmp.path(), "bb", &log);
        let c = write_node(tmp.path(), "cc", &log);
        std::fs::write(c.join("name"), "aa").unwrap();
        let d = write_node(tmp.path(), "dd", &log);
        let dirs: Vec<DataDir> = [a, b, c, d]
            .iter()
            .map(|p| crate::datadir::open(p).unwrap())
            .collect();
        let f = check(&dirs);
        let got: Vec<_> = f
            .iter()
            .filter(|f| f.code.contains("name"))
            .map(|f| (f.code, f.severity))
            .collect();
        assert_eq!(
            got,
            [
                ("cluster-duplicate-name", Severity::Error),
                ("cluster-name-not-member", Severity::Warning)
            ]
        );
    }
}
