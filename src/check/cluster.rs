//! Rules across nodes: Log Matching, agreement of the committed prefix (State Machine Safety),
//! Election Safety, membership and name agreement.
//!
//! Built on the index-aligned comparison in `crate::diff` (one streaming pass over all logs side
//! by side). Pure: it takes opened data dirs and returns findings.

use std::collections::{BTreeMap, BTreeSet};

use super::{Finding, Severity};
use crate::datadir::DataDir;
use crate::diff::{self, Claim, DiffOptions, Divergence, EntryPair, Evidence, TailStatus, Target};

/// Every code this module emits: (code, severity, what it means). Stable: codes are never
/// renamed.
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
        "the nodes' conf files disagree on the membership (peers plus the node itself)",
    ),
    (
        "cluster-membership",
        Severity::Warning,
        "the membership replayed from the nodes' logs differs",
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
        "the nodes could not be compared",
    ),
];

/// Checks the invariants that involve more than one node. With fewer than two nodes there is
/// nothing to compare and the result is empty.
pub fn check(nodes: &[DataDir]) -> Vec<Finding> {
    if nodes.len() < 2 {
        return Vec::new();
    }
    let targets: Vec<Target<'_>> = nodes.iter().map(|dir| Target { dir, at: None }).collect();
    match diff::compare(&targets, &DiffOptions::default()) {
        Ok(d) => findings(nodes, &d),
        Err(e) => vec![Finding::new(
            Severity::Warning,
            "cluster-not-compared",
            format!("the nodes were not compared: {e}"),
        )],
    }
}

/// The findings a comparison gives; `nodes` are the data dirs it compared, in the same order.
pub fn findings(nodes: &[DataDir], d: &Divergence) -> Vec<Finding> {
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
        on(e.a, Finding::new(severity(code), code, message))
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
            "goraft persists neither its term nor its vote, so a restarted node can vote twice in one term; the next leader's entry overwrites the other on its followers",
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
            "goraft checks only the term of the previous entry when appending, so it keeps both prefixes",
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
            "goraft compares only index and term, so it treats them as the same entry",
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
            Finding::new(
                Severity::Error,
                "cluster-committed-conflict",
                format!(
                    "index {} holds different entries that are each proven committed: {}",
                    c.index,
                    versions.join(" vs ")
                ),
            ),
        )
        .index(c.index)
        .goraft("goraft never revisits applied entries: the nodes' states have diverged for good");
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
                format!(
                    "entry {index} (term {}) is on {} of {} nodes ({}), and by Log Matching so is every entry before it",
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
            Finding::new(
                Severity::Info,
                "cluster-committed-prefix",
                format!("entries up to index {index} are proven committed: {how}; {agree}"),
            )
            .index(index),
        );
    }

    for t in &d.tails {
        let (text, goraft) = match t.status {
            TailStatus::OnMajority | TailStatus::Claimed { .. } => continue,
            TailStatus::Overwritten { by_term } => (
                format!(
                    "must be uncommitted: other entries hold these indexes on a majority{}",
                    if by_term > t.max_term { format!(", in the later term {by_term}") } else { format!(" (term {by_term})") }
                ),
                "goraft truncates these entries when the node follows the leader; their writes never take effect",
            ),
            TailStatus::NotOnMajority => (
                format!(
                    "are not on a majority ({} of {} nodes) and not contradicted by one: they may still be committed, or be overwritten",
                    t.holders, d.commit.cluster_size
                ),
                "a leader holding these entries can still replicate them; another leader overwrites them",
            ),
        };
        let terms = if t.min_term == t.max_term {
            format!("term {}", t.min_term)
        } else {
            format!("terms {}..{}", t.min_term, t.max_term)
        };
        for (k, offset) in diff::members_of(t.nodes).zip(&t.offsets) {
            out.push(
                on(
                    k,
                    Finding::new(
                        Severity::Info,
                        "cluster-uncommitted-tail",
                        format!(
                            "{} holds entries {} ({terms}) that {text}",
                            label(k),
                            diff::span(t.from, t.to)
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

fn severity(code: &str) -> Severity {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(Severity::Error, |(_, s, _)| *s)
}

fn more(out: &mut Vec<Finding>, code: &'static str, total: u64, listed: usize) {
    if total > listed as u64 {
        out.push(Finding::new(
            severity(code),
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

fn membership(
    nodes: &[DataDir],
    d: &Divergence,
    label: &dyn Fn(usize) -> String,
    out: &mut Vec<Finding>,
) {
    let distinct: Vec<usize> = (0..d.nodes.len())
        .filter(|&k| d.nodes[k].identity == k)
        .collect();

    let confs: Vec<(usize, &BTreeSet<String>)> = distinct
        .iter()
        .filter_map(|&k| d.nodes[k].conf.as_ref().map(|c| (k, &c.members)))
        .collect();
    if confs.windows(2).any(|w| w[0].1 != w[1].1) {
        let each: Vec<String> = confs
            .iter()
            .map(|(k, m)| format!("{}: {}", label(*k), set(m)))
            .collect();
        out.push(Finding::new(
            Severity::Warning,
            "cluster-conf-peers",
            format!(
                "the conf files disagree on the members (peers plus self): {}",
                each.join("; ")
            ),
        ));
    }

    let replayed: Vec<(usize, BTreeSet<String>)> = distinct
        .iter()
        .map(|&k| (k, d.nodes[k].replay.kv.members.keys().cloned().collect()))
        .collect();
    if replayed.windows(2).any(|w| w[0].1 != w[1].1) {
        let each: Vec<String> = replayed
            .iter()
            .map(|(k, m)| {
                format!(
                    "{} (to index {}): {}",
                    label(*k),
                    d.nodes[*k].replay.last_applied(),
                    set(m)
                )
            })
            .collect();
        out.push(Finding::new(
            Severity::Warning,
            "cluster-membership",
            format!(
                "the membership replayed from the logs differs: {}",
                each.join("; ")
            ),
        ));
    }

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
                Finding::new(
                    Severity::Error,
                    "cluster-duplicate-name",
                    format!("{} data dirs are named {name:?}: {}", ks.len(), dirs.join(", ")),
                )
                .goraft("goraft identifies peers by name: two nodes with one name collide in every peer map"),
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
                let mut f = Finding::new(
                    Severity::Warning,
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
                    "peers know this node under another name; raftd reads its name from this file",
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
        assert!(f[1].message.contains("25..29 (term 0) that must be uncommitted: other entries hold these indexes on a majority, in the later term 1"), "{}", f[1].message);
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
