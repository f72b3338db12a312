//! The rules on a node's files beside its log: snapshots, conf and name, each against the log.

use super::*;

pub(super) fn valid_snapshot(s: &SnapshotFile) -> Option<&Snapshot> {
    s.name_key?;
    match &s.parsed {
        Ok(p) if p.crc_ok() => p.snapshot.as_ref().ok(),
        _ => None,
    }
}

pub(super) fn snapshot_rules(
    dir: &DataDir,
    log: &LogOutcome,
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let best = dir.best_snapshot();
    let pick = dir.goraft_snapshot();
    for s in &dir.snapshots {
        let picked = pick.is_some_and(|p| p.file_name == s.file_name);
        one_snapshot_rules(dir, log, s, (best, picked), sink, out);
    }
    if let Some(p) = pick {
        let differs = best.is_none_or(|b| b.file_name != p.file_name);
        let stray = p.name_key.is_none();
        if differs && (best.is_some() || stray) && sink.want("snapshot-goraft-choice") {
            let newest = match best.and_then(valid_snapshot) {
                Some(b) => format!("the newest valid snapshot has lastIndex {}", b.last_index),
                None => "there is no valid snapshot".to_string(),
            };
            let what = match valid_snapshot(p) {
                Some(v) => format!(
                    "loads the older state at index {} and replays the log from there",
                    v.last_index
                ),
                None => "fails to load it (it is not a valid snapshot): the node cannot start"
                    .to_string(),
            };
            out.push(
                finding(
                    "snapshot-goraft-choice",
                    format!("goraft's LoadSnapshot picks {} (the last name in string order, goraft issue #235); {newest}", p.file_name),
                )
                .file(p.path.clone())
                .goraft(what),
            );
        }
    }
}

/// The rules on one snapshot file `s`: its name, CRC and contents, and how it stands against
/// the log and `best` (the newest valid snapshot); `picked`: whether goraft's loader picks it.
fn one_snapshot_rules(
    dir: &DataDir,
    log: &LogOutcome,
    s: &SnapshotFile,
    (best, picked): (Option<&SnapshotFile>, bool),
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let at = |f: Finding| f.file(s.path.clone());
    if s.name_key.is_none() {
        if sink.want("snapshot-stray-file") {
            let goraft = if picked {
                "LoadSnapshot lists every name and picks the last in string order: it picks this file and fails"
            } else {
                "LoadSnapshot lists it too; harmless while a snapshot name sorts after it"
            };
            out.push(
                at(finding(
                    "snapshot-stray-file",
                    format!("snapshot/{} is not named <term>_<index>.ss", s.file_name),
                ))
                .goraft(goraft),
            );
        }
        return;
    }
    let load_fails = if picked {
        "LoadSnapshot picks this file (it sorts last) and fails: bad snapshot file"
    } else {
        "not the file LoadSnapshot picks, so it is never loaded"
    };
    let parsed = match &s.parsed {
        Ok(p) => p,
        Err(e) => {
            if sink.want("snapshot-invalid") {
                let (msg, off) = match e {
                    SnapshotLoadError::Io(e) => (format!("cannot read it: {e}"), None),
                    SnapshotLoadError::Format(e) => {
                        ("not a snapshot: it does not start with a CRC-32 of 8 hex digits and a newline".to_string(), e.offset)
                    }
                };
                let f = at(finding("snapshot-invalid", msg)).goraft(load_fails);
                out.push(match off {
                    Some(o) => f.offset(o as u64),
                    None => f,
                });
            }
            return;
        }
    };
    if !parsed.crc_ok() && sink.want("snapshot-crc") {
        out.push(
            at(finding(
                "snapshot-crc",
                format!(
                    "the header declares CRC-32 {:08x} but the {} bytes after it have {:08x} (goraft writes snapshots in place without O_TRUNC: a shorter rewrite keeps an older file's last bytes)",
                    parsed.declared_crc,
                    s.size.saturating_sub(parsed.header_len as u64),
                    parsed.actual_crc
                ),
            ))
            .offset(0)
            .goraft(load_fails),
        );
    }
    let snap = match &parsed.snapshot {
        Ok(v) => v,
        Err(e) => {
            if sink.want("snapshot-invalid") {
                let f = at(finding(
                    "snapshot-invalid",
                    format!("snapshot JSON: {}", e.message),
                ))
                .goraft(load_fails);
                out.push(match e.offset {
                    Some(o) => f.offset(o as u64),
                    None => f,
                });
            }
            return;
        }
    };
    if let Some((term, index)) = s.name_key {
        if (term, index) != (snap.last_term, snap.last_index) && sink.want("snapshot-name-mismatch")
        {
            out.push(
                at(finding(
                    "snapshot-name-mismatch",
                    format!(
                        "the file name says term {term}, index {index}; the JSON says lastTerm {}, lastIndex {}",
                        snap.last_term, snap.last_index
                    ),
                ))
                .goraft("trusts the JSON; the name only decides which file LoadSnapshot picks"),
            );
        }
    }
    snapshot_path_rules(s, snap, sink, out);
    if let Some((_, term)) = log.watched.iter().find(|(i, _)| *i == snap.last_index) {
        if *term != snap.last_term && sink.want("snapshot-log-mismatch") {
            out.push(
                at(finding(
                    "snapshot-log-mismatch",
                    format!(
                        "the snapshot ends at index {} with term {}, but the log's entry at that index has term {term}",
                        snap.last_index, snap.last_term
                    ),
                ))
                .index(snap.last_index)
                .goraft("starts from the snapshot and keeps log entries above its lastIndex: the state and the log then come from different histories"),
            );
        }
    }
    // The fork snapshots by itself and leaves the older files: its normal state.
    if best.is_some_and(|b| b.file_name != s.file_name)
        && !dir.dialect().snapshots_by_itself()
        && sink.want("snapshot-orphan")
    {
        out.push(
            at(finding(
                "snapshot-orphan",
                format!(
                    "an older snapshot (lastIndex {}) next to the newest one",
                    snap.last_index
                ),
            ))
            .goraft(
                "never deletes a snapshot it did not take itself in this run: old files pile up",
            ),
        );
    }
}

/// Whether the path recorded in snapshot `s` (`snap`) names the file where it is.
fn snapshot_path_rules(s: &SnapshotFile, snap: &Snapshot, sink: &mut Sink, out: &mut Vec<Finding>) {
    let at = |f: Finding| f.file(s.path.clone());
    let recorded = Path::new(&snap.path);
    if recorded
        .file_name()
        .is_some_and(|n| n.to_string_lossy() != s.file_name)
        || snap.path.is_empty()
    {
        if sink.want("snapshot-path-mismatch") {
            out.push(
                at(finding(
                    "snapshot-path-mismatch",
                    format!(
                        "its recorded path \"{}\" names another file than {}",
                        snap.path, s.file_name
                    ),
                ))
                .goraft(
                    "deletes the recorded path, not this file, when a newer snapshot replaces it",
                ),
            );
        }
    } else if std::path::absolute(&s.path).ok() != std::path::absolute(recorded).ok()
        && sink.want("snapshot-path-moved")
    {
        out.push(
            at(finding(
                "snapshot-path-moved",
                format!("its recorded path \"{}\" is not where the file is now (the data dir was moved or copied)", snap.path),
            ))
            .goraft("deletes the recorded path, not this file, when a newer snapshot replaces it, so this file would be left behind"),
        );
    }
}

pub(super) fn conf_rules(
    dir: &DataDir,
    log: &LogOutcome,
    best: Option<&Snapshot>,
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let Some(loaded) = &dir.conf else {
        return;
    };
    let at = |f: Finding| f.file(loaded.path.clone());
    let conf = match &loaded.parsed {
        Ok(c) => c,
        Err(e) => {
            if sink.want("conf-invalid") {
                let f = at(finding("conf-invalid", e.message.clone()))
                    .goraft("Init fails (raft: Initialization error); raftd ignores the error and dies with `raft: Has been stopped`");
                out.push(match e.offset {
                    Some(o) => f.offset(o as u64),
                    None => f,
                });
            }
            return;
        }
    };
    let last = log
        .kept_last_index
        .unwrap_or(0)
        .max(best.map_or(0, |s| s.last_index));
    if conf.commit_index > last && sink.want("conf-commit-beyond-log") {
        let kept = if log.first_damage.is_some() {
            " once it has cut the damage"
        } else {
            ""
        };
        let f = at(finding(
            "conf-commit-beyond-log",
            format!(
                "conf commitIndex {} is above {last}, the last index goraft keeps{kept}",
                conf.commit_index
            ),
        ));
        // The fork reaches TakeSnapshot by itself, once more than 400 entries are in memory.
        out.push(match dir.dialect() {
            Dialect::Goraft => f.goraft(format!(
                "commitInfo() panics with index out of range (reached through TakeSnapshot), and setCommitIndex ignores every commit below {}, so later entries are not applied until then",
                conf.commit_index
            )),
            Dialect::Seaweedfs => f.goraft(format!(
                "commitInfo() panics with index out of range when its automatic snapshot runs (more than 400 entries in memory), and setCommitIndex ignores every commit below {}, so later entries are not applied until then",
                conf.commit_index
            ))
            .implementation("seaweedfs/raft"),
        });
    }
    let m = &log.membership;
    // The trimmed name: a newline added to the name file is reported on its own.
    let Some(me) = dir
        .node_name()
        .map(|n| n.trim_end_matches(['\n', '\r', ' ', '\t']))
        .filter(|n| !n.is_empty())
    else {
        return;
    };
    if !m.known || log.kept_entries == 0 && dir.best_snapshot().is_none() {
        return;
    }
    let mut expected = if conf.commit_index > last {
        m.members.clone()
    } else {
        m.at_conf.clone()
    };
    expected.remove(me);
    let mut listed: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for p in &conf.peers {
        if listed
            .insert(p.name.clone(), p.connection_string.clone())
            .is_some()
        {
            problems.push(format!("lists \"{}\" twice", p.name));
        }
    }
    if listed.contains_key(me) {
        problems.push(format!(
            "lists the node itself (\"{me}\"); goraft's conf holds only the other members"
        ));
        listed.remove(me);
    }
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !listed.contains_key(*k))
        .collect();
    let extra: Vec<_> = listed
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("lacks {}", names(&missing)));
    }
    if !extra.is_empty() {
        problems.push(format!(
            "lists {}, which the log does not make members",
            names(&extra)
        ));
    }
    for (name, cs) in &listed {
        if let Some(want) = expected.get(name) {
            if want != cs {
                problems.push(format!(
                    "gives \"{name}\" connectionString \"{cs}\", the log \"{want}\""
                ));
            }
        }
    }
    if !problems.is_empty() && sink.want("conf-peers-mismatch") {
        let upto = if conf.commit_index > last {
            "all joins and leaves".to_string()
        } else {
            format!(
                "the joins and leaves up to conf commitIndex {}",
                conf.commit_index
            )
        };
        out.push(
            at(finding(
                "conf-peers-mismatch",
                format!("conf peers disagree with {upto}: conf {}", problems.join("; ")),
            ))
            .goraft("never reads peers back (it replays the joins and leaves instead), so conf was edited, or written by another history"),
        );
    }
}

pub(super) fn names(list: &[&String]) -> String {
    list.iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `raftdump-state`'s term against the log's: a node's term rises one per election, so a term
/// far beyond the log's last term (or near overflow) was forged or corrupted.
pub(super) fn state_rules(
    dir: &DataDir,
    log: &LogOutcome,
    best: Option<&Snapshot>,
    sink: &mut Sink,
    out: &mut Vec<Finding>,
) {
    let Some((path, term)) = &dir.state_term else {
        return;
    };
    let last = log
        .last_term
        .unwrap_or(0)
        .max(best.map_or(0, |s| s.last_term));
    let far = term.saturating_sub(last) > crate::model::MAX_TERM_STEP;
    if (far || crate::model::term_is_poisoned(*term)) && sink.want("state-term-beyond-log") {
        out.push(
            finding(
                "state-term-beyond-log",
                format!(
                    "currentTerm {term} is far beyond the log's last term {last}: a forged or \
                     corrupt term that leaves no room for elections"
                ),
            )
            .file(path.clone())
            .offset(0),
        );
    }
}

pub(super) fn name_rules(dir: &DataDir, log: &LogOutcome, sink: &mut Sink, out: &mut Vec<Finding>) {
    if dir.kind != InputKind::Dir {
        return;
    }
    let Some(loaded) = &dir.name else {
        return;
    };
    let at = |f: Finding| f.file(loaded.path.clone());
    let raw = &loaded.raw;
    let Ok(name) = &loaded.parsed else {
        if sink.want("name-invalid") {
            out.push(at(finding("name-invalid", format!("the name file ({} bytes) is not UTF-8", raw.len())))
                .goraft("raftd uses the raw bytes as the node name anyway; they cannot match a JSON join"));
        }
        return;
    };
    if name.is_empty() {
        if sink.want("name-invalid") {
            out.push(
                at(finding("name-invalid", "the name file is empty")).goraft(
                    "raftd reads it successfully and uses the empty string as the node name",
                ),
            );
        }
        return;
    }
    let m = &log.membership;
    let trimmed = name.trim_end_matches(['\n', '\r', ' ', '\t']);
    if trimmed.len() != name.len() {
        if sink.want("name-trailing-newline") {
            let joined = match m.joined.get(trimmed) {
                Some(i) => {
                    format!(
                        ", so this node no longer matches its join of \"{trimmed}\" at index {i}"
                    )
                }
                None => String::new(),
            };
            out.push(
                at(finding(
                    "name-trailing-newline",
                    format!("the name file holds \"{name}\": whitespace follows \"{trimmed}\""),
                ))
                .goraft(format!(
                    "raftd uses the whole content, whitespace included, as the node name{joined}"
                )),
            );
        }
        if m.joined.contains_key(trimmed) {
            return;
        }
    }
    if !m.known || log.kept_entries == 0 || m.members.contains_key(name.as_str()) {
        return;
    }
    if sink.want("name-not-joined") {
        let why = match (m.joined.get(name.as_str()), m.left.get(name.as_str())) {
            (Some(_), Some(l)) => format!("it left at index {l}"),
            _ => {
                let mut s = String::from("no raft:join for it in the log");
                if !m.members.is_empty() {
                    let members: Vec<_> = m.members.keys().collect();
                    let _ = write!(s, " (members: {})", names(&members));
                }
                s
            }
        };
        out.push(at(finding("name-not-joined", format!("node name \"{name}\" is not a member: {why}")))
            .goraft("restarts from this log as a node its cluster does not know: no leader replicates to it"));
    }
}
