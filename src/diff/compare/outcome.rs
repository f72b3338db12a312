//! What the walk leaves: the pairs, each node's summary, the commit's local bounds and the
//! divergence.

use super::*;

/// Every pair of nodes and how they differ (from the walk's first differences, and their ends).
pub(super) fn pairs_of(pair_diff: &[Option<PairDiff>], cursors: &[Cursor<'_, '_>]) -> Vec<Pair> {
    let n = cursors.len();
    let mut pairs = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let diff = match pair_diff[a * n + b] {
                Some(d) => d,
                None if cursors[a].end() != cursors[b].end() => {
                    // Nothing differs where both hold entries, yet they end differently: one
                    // holds no entries at all, or a snapshot covers more than the other's log.
                    let shorter = if cursors[a].end() < cursors[b].end() {
                        a
                    } else {
                        b
                    };
                    let index = cursors[shorter].end().map_or(1, |l| l.saturating_add(1));
                    PairDiff::Ends { index, shorter }
                }
                None => PairDiff::Identical,
            };
            pairs.push(Pair { a, b, diff });
        }
    }
    pairs
}

/// Each node's summary: what its cursor saw, its snapshot, conf and replayed state.
pub(super) fn summaries(
    targets: &[Target<'_>],
    cursors: Vec<Cursor<'_, '_>>,
    identity: &[usize],
) -> Vec<NodeSummary> {
    let mut nodes = Vec::with_capacity(targets.len());
    for ((t, c), id) in targets.iter().zip(cursors).zip(identity.iter().copied()) {
        let snapshot = t.dir.best_snapshot().and_then(|s| {
            let snap = s.parsed.as_ref().ok()?.snapshot.as_ref().ok()?;
            Some(SnapshotInfo {
                file: s.file_name.clone(),
                last_index: snap.last_index,
                last_term: snap.last_term,
            })
        });
        let name = t.dir.node_name().map(str::to_string);
        let conf = t.dir.conf().map(|c| ConfInfo {
            commit_index: c.commit_index,
            members: c
                .peers
                .iter()
                .map(|p| p.name.clone())
                .chain(name.clone())
                .collect(),
        });
        let conf_error = t
            .dir
            .conf
            .as_ref()
            .and_then(|c| c.parsed.as_ref().err())
            .map(|e| e.to_string());
        nodes.push(NodeSummary {
            path: t.dir.path.clone(),
            at: t.at,
            name,
            identity: id,
            first_index: c.first,
            last_index: c.last,
            last_term: c.last_term,
            entries: c.entries,
            out_of_order: c.out_of_order,
            damage: c.damage,
            snapshot,
            conf,
            conf_error,
            replay: c.replayer.finish(),
            dialect: t.dir.dialect(),
        });
    }
    nodes
}

/// Node-local bounds on the commit: conf commitIndex (capped at what the node holds) and
/// snapshots.
pub(super) fn local_bounds(nodes: &[NodeSummary], commit: &mut Commit) {
    for (k, node) in nodes.iter().enumerate() {
        let held = node
            .last_index
            .max(node.snapshot.as_ref().map(|s| s.last_index));
        if let (Some(conf), Some(held)) = (&node.conf, held) {
            let index = conf.commit_index.min(held);
            if index > 0 && commit.conf.is_none_or(|c| index > c.index) {
                commit.conf = Some(NodeBound { index, node: k });
            }
        }
        if let Some(s) = &node.snapshot {
            if commit.snapshot.is_none_or(|c| s.last_index > c.index) {
                commit.snapshot = Some(NodeBound {
                    index: s.last_index,
                    node: k,
                });
            }
        }
    }
}

/// The divergence: the walk's findings, the pairs and the nodes, and what differs beside the
/// logs.
pub(super) fn divergence(
    walk: Walk<'_>,
    pairs: Vec<Pair>,
    nodes: Vec<NodeSummary>,
    opts: &DiffOptions,
) -> Divergence {
    let differ =
        |f: &dyn Fn(&NodeSummary) -> String| nodes.windows(2).any(|w| f(&w[0]) != f(&w[1]));
    let conf_differs = nodes
        .windows(2)
        .any(|w| w[0].conf != w[1].conf || w[0].conf_error.is_some() != w[1].conf_error.is_some());
    let snapshots_differ = nodes.windows(2).any(|w| w[0].snapshot != w[1].snapshot);
    let membership_differs = differ(&|s| format!("{:?}", s.replay.kv.members));
    let state = opts.state.then(|| state_diff(&nodes));

    Divergence {
        common: walk.common_from.zip(walk.common_to),
        pairs,
        rows: walk.rows,
        conflicting_indexes: walk.conflicting_indexes,
        tails: walk.tails,
        tails_dropped: walk.tails_dropped,
        commit: walk.commit,
        election_safety: walk.election_safety,
        log_matching: walk.log_matching,
        encoding: walk.encoding,
        committed_conflicts: walk.committed_conflicts,
        conf_differs,
        snapshots_differ,
        membership_differs,
        state,
        nodes,
    }
}

pub(super) fn absent_diff(index: Index, node: usize, why: Absent) -> Option<PairDiff> {
    match why {
        Absent::Covered => None,
        Absent::Beyond => Some(PairDiff::Ends {
            index,
            shorter: node,
        }),
        Absent::Missing => Some(PairDiff::Missing {
            index,
            missing: node,
        }),
    }
}

/// Merges the nodes' sorted maps key by key.
pub(super) fn state_diff(nodes: &[NodeSummary]) -> StateDiff {
    let sorted: Vec<_> = nodes.iter().map(|s| s.replay.kv.sorted()).collect();
    let mut iters: Vec<_> = sorted
        .iter()
        .map(|v| v.iter().copied().peekable())
        .collect();
    let mut out = StateDiff::default();
    while let Some(key) = iters
        .iter_mut()
        .filter_map(|it| it.peek().map(|(k, _)| *k))
        .min()
    {
        let values: Vec<Option<&str>> = iters
            .iter_mut()
            .map(|it| it.next_if(|(k, _)| *k == key).map(|(_, v)| v))
            .collect();
        if values.iter().all(|v| *v == values[0]) {
            out.same += 1;
        } else {
            out.rows.push(StateRow {
                key: key.to_owned(),
                values: values.into_iter().map(|v| v.map(str::to_owned)).collect(),
            });
        }
    }
    out
}
