//! The JSON Lines form of a diff (schema in the parent module's docs).

use super::*;

#[derive(Serialize)]
struct NodeJson<'a> {
    id: String,
    path: String,
    at: Option<Index>,
    name: Option<&'a str>,
    first_index: Option<Index>,
    last_index: Option<Index>,
    last_term: Option<u64>,
    entries: u64,
    out_of_order: u64,
    damage: Option<DamageJson>,
    snapshot: Option<SnapJson<'a>>,
    conf: Option<ConfJson<'a>>,
    conf_error: Option<&'a str>,
    members: Vec<PeerJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    removed: Vec<RemovedJson<'a>>,
    replayed_to: Index,
}

#[derive(Serialize)]
struct RemovedJson<'a> {
    name: &'a str,
    index: Index,
}

#[derive(Serialize)]
struct DamageJson {
    offset: u64,
    kind: &'static str,
    message: String,
}

#[derive(Serialize)]
struct SnapJson<'a> {
    file: &'a str,
    last_index: Index,
    last_term: u64,
}

#[derive(Serialize)]
struct ConfJson<'a> {
    commit_index: Index,
    members: Vec<&'a str>,
}

#[derive(Serialize)]
struct PeerJson<'a> {
    name: &'a str,
    connection_string: &'a str,
}

#[derive(Serialize)]
struct CellJson<'a> {
    node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    absent: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_string: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

fn cell_json(k: usize, c: &Cell) -> CellJson<'_> {
    let mut j = CellJson {
        node: node_id(k),
        absent: None,
        term: None,
        command: None,
        key: None,
        value: None,
        name: None,
        connection_string: None,
        payload: None,
        payload_base64: None,
        offset: None,
    };
    match c {
        Cell::Absent(a) => {
            j.absent = Some(match a {
                Absent::Covered => "covered",
                Absent::Missing => "missing",
                Absent::Beyond => "beyond",
            });
        }
        Cell::Entry(e, offset) => {
            j.term = Some(e.term);
            j.command = Some(&e.name);
            j.offset = Some(*offset);
            match command::decode(e.name.as_bytes(), e.payload.as_deref()) {
                Command::Write { key, value } => {
                    j.key = Some(key);
                    j.value = Some(value);
                }
                Command::Join {
                    name,
                    connection_string,
                } => {
                    j.name = Some(name);
                    j.connection_string = Some(connection_string);
                }
                Command::Leave { name } => j.name = Some(name),
                Command::Nop => {}
                Command::Other { .. } | Command::Invalid { .. } => {
                    if let Some(p) = &e.payload {
                        j.payload = Some(String::from_utf8_lossy(p).into_owned());
                        j.payload_base64 = b64_if_not_utf8(p);
                    }
                }
            }
        }
    }
    j
}

/// Writes the JSON Lines form.
pub fn json(out: &mut dyn Write, d: &Divergence, findings: &[Finding]) -> io::Result<()> {
    json_nodes(out, d)?;
    json_pairs(out, d)?;
    json_rows(out, d)?;
    json_tails(out, d)?;
    json_commit(out, d)?;
    json_findings_and_state(out, d, findings)?;
    #[derive(Serialize)]
    struct Summary {
        identical: bool,
        conflicting_indexes: u64,
        conf_differs: bool,
        snapshots_differ: bool,
        membership_differs: bool,
        state_keys_differ: Option<usize>,
        state_keys_same: Option<u64>,
    }
    line(
        out,
        "summary",
        &Summary {
            identical: d.identical(),
            conflicting_indexes: d.conflicting_indexes,
            conf_differs: d.conf_differs,
            snapshots_differ: d.snapshots_differ,
            membership_differs: d.membership_differs,
            state_keys_differ: d.state.as_ref().map(|s| s.rows.len()),
            state_keys_same: d.state.as_ref().map(|s| s.same),
        },
    )
}

/// A `node` line per node.
fn json_nodes(out: &mut dyn Write, d: &Divergence) -> io::Result<()> {
    for (k, n) in d.nodes.iter().enumerate() {
        line(
            out,
            "node",
            &NodeJson {
                id: node_id(k),
                path: n.path.to_string_lossy().into_owned(),
                at: n.at,
                name: n.name.as_deref(),
                first_index: n.first_index,
                last_index: n.last_index,
                last_term: n.last_term,
                entries: n.entries,
                out_of_order: n.out_of_order,
                damage: n.damage.as_ref().map(|e| DamageJson {
                    offset: e.offset,
                    kind: e.kind.code(),
                    message: e.to_string(),
                }),
                snapshot: n.snapshot.as_ref().map(|s| SnapJson {
                    file: &s.file,
                    last_index: s.last_index,
                    last_term: s.last_term,
                }),
                conf: n.conf.as_ref().map(|c| ConfJson {
                    commit_index: c.commit_index,
                    members: c.members.iter().map(String::as_str).collect(),
                }),
                conf_error: n.conf_error.as_deref(),
                members: n
                    .replay
                    .kv
                    .members
                    .iter()
                    .map(|(name, cs)| PeerJson {
                        name,
                        connection_string: cs,
                    })
                    .collect(),
                removed: (n.replay.kv.removed.iter())
                    .map(|(name, &index)| RemovedJson { name, index })
                    .collect(),
                replayed_to: n.replay.last_applied(),
            },
        )?;
    }
    Ok(())
}

/// The `common` line and a `pair` line per pair of nodes.
fn json_pairs(out: &mut dyn Write, d: &Divergence) -> io::Result<()> {
    #[derive(Serialize)]
    struct Common {
        from: Option<Index>,
        to: Option<Index>,
    }
    line(
        out,
        "common",
        &Common {
            from: d.common.map(|c| c.0),
            to: d.common.map(|c| c.1),
        },
    )?;
    #[derive(Serialize)]
    struct PairJson {
        a: String,
        b: String,
        status: &'static str,
        index: Option<Index>,
        node: Option<String>,
    }
    for pair in &d.pairs {
        let (status, node) = match pair.diff {
            PairDiff::Identical => ("identical", None),
            PairDiff::Conflict(_) => ("conflict", None),
            PairDiff::Ends { shorter, .. } => ("ends", Some(node_id(shorter))),
            PairDiff::Missing { missing, .. } => ("missing", Some(node_id(missing))),
        };
        line(
            out,
            "pair",
            &PairJson {
                a: node_id(pair.a),
                b: node_id(pair.b),
                status,
                index: pair.diff.index(),
                node,
            },
        )?;
    }
    Ok(())
}

/// A `conflict` line per conflicting index listed.
fn json_rows(out: &mut dyn Write, d: &Divergence) -> io::Result<()> {
    #[derive(Serialize)]
    struct RowJson<'a> {
        index: Index,
        cells: Vec<CellJson<'a>>,
    }
    for row in &d.rows {
        line(
            out,
            "conflict",
            &RowJson {
                index: row.index,
                cells: row
                    .cells
                    .iter()
                    .enumerate()
                    .map(|(k, c)| cell_json(k, c))
                    .collect(),
            },
        )?;
    }
    Ok(())
}

/// A `tail` line per tail segment.
fn json_tails(out: &mut dyn Write, d: &Divergence) -> io::Result<()> {
    #[derive(Serialize)]
    struct TailJson {
        nodes: Vec<String>,
        from: Index,
        to: Index,
        min_term: u64,
        max_term: u64,
        holders: usize,
        status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        by_term: Option<u64>,
    }
    for t in &d.tails {
        let (status, by_term) = match t.status {
            TailStatus::OnMajority => ("on-majority", None),
            TailStatus::Claimed { evidence } => (
                match evidence {
                    Evidence::Snapshot => "covered-by-snapshot",
                    _ => "covered-by-conf-commit-index",
                },
                None,
            ),
            TailStatus::NotOnMajority => ("not-on-majority", None),
            TailStatus::Overwritten { by_term } => ("overwritten", Some(by_term)),
        };
        line(
            out,
            "tail",
            &TailJson {
                nodes: members_of(t.nodes).map(node_id).collect(),
                from: t.from,
                to: t.to,
                min_term: t.min_term,
                max_term: t.max_term,
                holders: t.holders,
                status,
                by_term,
            },
        )?;
    }
    Ok(())
}

/// The `commit` line.
fn json_commit(out: &mut dyn Write, d: &Divergence) -> io::Result<()> {
    #[derive(Serialize)]
    struct Majority {
        index: Index,
        term: u64,
        nodes: Vec<String>,
        holders: usize,
        cluster_size: usize,
    }
    #[derive(Serialize)]
    struct Bound {
        index: Index,
        node: String,
    }
    #[derive(Serialize)]
    struct CommitJson {
        index: Option<Index>,
        evidence: Option<&'static str>,
        node: Option<String>,
        cluster_size: usize,
        majority: Option<Majority>,
        conf: Option<Bound>,
        snapshot: Option<Bound>,
    }
    let c = d.committed();
    line(
        out,
        "commit",
        &CommitJson {
            index: c.map(|c| c.0),
            evidence: c.map(|c| c.1.code()),
            node: c.map(|c| node_id(c.2)),
            cluster_size: d.commit.cluster_size,
            majority: d.commit.majority.map(|m| Majority {
                index: m.index,
                term: m.term,
                nodes: members_of(m.nodes).map(node_id).collect(),
                holders: m.holders,
                cluster_size: m.cluster_size,
            }),
            conf: d.commit.conf.map(|b| Bound {
                index: b.index,
                node: node_id(b.node),
            }),
            snapshot: d.commit.snapshot.map(|b| Bound {
                index: b.index,
                node: node_id(b.node),
            }),
        },
    )?;
    Ok(())
}

/// A `finding` line per broken invariant, and the `state` lines (`--state`).
fn json_findings_and_state(
    out: &mut dyn Write,
    d: &Divergence,
    findings: &[Finding],
) -> io::Result<()> {
    for f in findings {
        line(out, "finding", f)?;
    }
    if let Some(s) = &d.state {
        #[derive(Serialize)]
        struct V<'a> {
            node: String,
            value: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            value_base64: Option<String>,
        }
        #[derive(Serialize)]
        struct StateJson<'a> {
            key: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            key_base64: Option<String>,
            values: Vec<V<'a>>,
        }
        for r in &s.rows {
            line(
                out,
                "state",
                &StateJson {
                    key: &r.key,
                    key_base64: b64_if_not_utf8(r.key.as_bytes()),
                    values: r
                        .values
                        .iter()
                        .enumerate()
                        .map(|(k, v)| V {
                            node: node_id(k),
                            value: v.as_deref(),
                            value_base64: v.as_deref().and_then(|v| b64_if_not_utf8(v.as_bytes())),
                        })
                        .collect(),
                },
            )?;
        }
    }
    Ok(())
}
