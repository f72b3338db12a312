//! Which state machine a log's commands belong to, and the replay of SeaweedFS masters beside
//! raftd's key-value map.
//!
//! A replay applies `write` entries to the key-value map and `MaxVolumeId` entries to the
//! master's state in the same pass, so one pass serves either machine; what the state is, is
//! decided at the end ([`Replayer::machine`]) from `--machine` and the evidence: `MaxVolumeId`
//! commands or a master snapshot state mean a SeaweedFS master, `write` commands or a raftd
//! snapshot state mean raftd; a log with neither is a master's when it is in seaweedfs/raft's
//! dialect, else it has raftd's empty state (or an unknown one, when it holds other commands). With `--machine` forced, the other
//! machine's commands are unknown commands (as that application would find them unregistered).

use super::seaweedfs;
use super::{Change, Machine, MachineChoice, Replayer, SnapshotState, Stats};
use crate::model::{Command, Index, Snapshot, Term};

/// The keys `--history` takes for a SeaweedFS master.
pub const MAX_VOLUME_ID: &str = "maxVolumeId";
/// See [`MAX_VOLUME_ID`].
pub const TOPOLOGY_ID: &str = "topologyId";

impl Replayer {
    /// Applies a `MaxVolumeId` entry to the master's state; a payload Go would not decode is
    /// counted as invalid and changes nothing.
    pub(super) fn volume_id(&mut self, index: Index, term: Term, payload: &[u8]) {
        if !self.r.writes_applied {
            // Membership only: counted, not decoded (as writes are).
            self.r.stats.volume_ids += 1;
            self.r.kv.applied = index;
            return;
        }
        let c = match seaweedfs::decode(payload) {
            Ok(c) => c,
            Err(e) => {
                self.r.stats.invalid += 1;
                self.r.stats.volume_ids += 1;
                self.r.kv.apply(
                    index,
                    Command::Invalid {
                        reason: e.to_string(),
                    },
                );
                return;
            }
        };
        self.r.stats.volume_ids += 1;
        self.r.kv.apply(index, Command::Other { json: None });
        let changed = self.r.master.apply(c);
        self.record(changed, index, term, false);
    }

    /// Records a change of the tracked master field (`maxVolumeId` or `topologyId`).
    fn record(
        &mut self,
        changed: seaweedfs::Changed,
        index: Index,
        term: Term,
        from_snapshot: bool,
    ) {
        let Some(h) = &mut self.r.history else {
            return;
        };
        let m = &self.r.master;
        let (old, new) = match (h.key.as_str(), changed) {
            (
                MAX_VOLUME_ID,
                seaweedfs::Changed {
                    max_volume_id: Some(old),
                    ..
                },
            ) => (Some(old.to_string()), m.max_volume_id.to_string()),
            (
                TOPOLOGY_ID,
                seaweedfs::Changed {
                    topology_id: Some(old),
                    ..
                },
            ) => (Some(old).filter(|t| !t.is_empty()), m.topology_id.clone()),
            _ => return,
        };
        h.changes.push(Change {
            index,
            term,
            old,
            new,
            from_snapshot,
        });
    }

    /// A `write` entry when the machine is forced to SeaweedFS's: an unknown command there.
    pub(super) fn foreign_write(&mut self, index: Index) {
        self.r.stats.unknown += 1;
        self.r.kv.apply(index, Command::Other { json: None });
    }

    /// Whether a snapshot's state is loaded as the master's.
    pub(super) fn is_master_state(&self, state: &[u8]) -> bool {
        match self.choice {
            MachineChoice::Auto => seaweedfs::is_master_state(state),
            MachineChoice::Seaweedfs => seaweedfs::decode(state).is_ok(),
            MachineChoice::Raftd => false,
        }
    }

    /// Loads a master snapshot's state (applied as the master's `Recovery` does).
    pub(super) fn master_snapshot(&mut self, snap: &Snapshot, state: &[u8]) -> SnapshotState {
        let c = seaweedfs::decode(state).unwrap_or_default();
        let changed = self.r.master.apply(c);
        self.record(changed, snap.last_index, snap.last_term, true);
        SnapshotState::Master {
            max_volume_id: self.r.master.max_volume_id,
            topology_id: self.r.master.topology_id.clone(),
        }
    }

    /// The machine the replayed state belongs to: see the module docs.
    pub(super) fn machine(&self) -> Machine {
        let snapshot = match &self.r.start {
            super::Start::Snapshot(s) => Some(&s.state),
            super::Start::Empty => None,
        };
        choose(
            self.choice,
            &Evidence {
                stats: &self.r.stats,
                invalid_writes: self.invalid_writes,
                snapshot,
                seaweedfs_dialect: self.r.dialect == crate::format::dialect::Dialect::Seaweedfs,
            },
        )
    }
}

/// What the replay saw that tells the machines apart.
pub(super) struct Evidence<'a> {
    /// The counts.
    pub stats: &'a Stats,
    /// `write` entries whose payload did not decode.
    pub invalid_writes: u64,
    /// The state of the snapshot the replay started from.
    pub snapshot: Option<&'a SnapshotState>,
    /// Whether the log is in seaweedfs/raft's dialect.
    pub seaweedfs_dialect: bool,
}

/// Chooses the machine: see the module docs.
pub(super) fn choose(choice: MachineChoice, e: &Evidence<'_>) -> Machine {
    match choice {
        MachineChoice::Raftd => return Machine::Raftd,
        MachineChoice::Seaweedfs => return Machine::Seaweedfs,
        MachineChoice::Auto => {}
    }
    let writes = e.stats.writes + e.invalid_writes;
    let volume_ids = e.stats.volume_ids;
    let master_snapshot = matches!(e.snapshot, Some(SnapshotState::Master { .. }));
    let raftd_snapshot = matches!(e.snapshot, Some(SnapshotState::Loaded { keys }) if *keys > 0);
    let seaweedfs = volume_ids > 0 || master_snapshot;
    let raftd = writes > 0 || raftd_snapshot;
    match (raftd, seaweedfs) {
        (true, true) => Machine::Unknown {
            reason: format!(
                "the log holds both raftd writes ({writes}) and SeaweedFS MaxVolumeId commands ({volume_ids}){}: choose one with --machine",
                if master_snapshot { " or a SeaweedFS snapshot state" } else { "" }
            ),
        },
        (true, false) => Machine::Raftd,
        (false, true) => Machine::Seaweedfs,
        // Only SeaweedFS masters write seaweedfs/raft's dialect: a master with no volume yet.
        (false, false) if e.seaweedfs_dialect => Machine::Seaweedfs,
        (false, false) if e.stats.unknown > 0 => Machine::Unknown {
            reason: format!(
                "its {} application commands are neither raftd's write nor SeaweedFS's MaxVolumeId",
                e.stats.unknown
            ),
        },
        (false, false) if matches!(e.snapshot, Some(SnapshotState::Opaque { .. })) => {
            Machine::Unknown {
                reason: "the snapshot's state belongs to neither raftd nor a SeaweedFS master"
                    .into(),
            }
        }
        // Only raft:* entries (or none): the empty state, which raftd's reads the same as any.
        (false, false) => Machine::Raftd,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Fed, ReplayOptions, Stop};
    use super::*;
    use crate::format::log::{LogReader, LogWriter};
    use crate::model::Peer;
    use std::path::PathBuf;

    /// A master's log in terms >= 1 (valid under both encodings): join, nop, then the
    /// `MaxVolumeId` payloads given, from index 3.
    fn master_log(payloads: &[&str]) -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        let join = Command::Join {
            name: "127.0.0.1:9333".into(),
            connection_string: "http://127.0.0.1:9333".into(),
        };
        w.append(1, 1, &join).unwrap();
        w.append(2, 1, &Command::Nop).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            w.append_raw(3 + i as u64, 2, "MaxVolumeId", Some(p.as_bytes()))
                .unwrap();
        }
        w.into_inner()
    }

    fn vid(n: u32, t: &str) -> String {
        format!("{{\"maxVolumeId\":{n},\"topologyId\":\"{t}\"}}\n")
    }

    fn run(bytes: &[u8], opts: &ReplayOptions, snap: Option<&Snapshot>) -> super::super::Replay {
        let mut r = Replayer::new(PathBuf::from("mem"), None, opts);
        if let Some(s) = snap {
            r.load_snapshot("1_5.ss", s);
        }
        for e in LogReader::new(bytes) {
            if r.feed(&e.unwrap()) == Fed::Done {
                break;
            }
        }
        r.finish()
    }

    fn opts(machine: MachineChoice) -> ReplayOptions {
        ReplayOptions {
            machine,
            ..Default::default()
        }
    }

    #[test]
    fn a_master_log_replays_to_its_max_volume_id_and_topology_id() {
        let p: Vec<String> = (1..=12).map(|n| vid(n, "a1b2c3d4-topology")).collect();
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        let r = run(&master_log(&p), &opts(MachineChoice::Auto), None);
        assert_eq!(r.machine, Machine::Seaweedfs);
        assert_eq!(
            (r.master.max_volume_id, r.master.topology_id.as_str()),
            (12, "a1b2c3d4-topology")
        );
        assert_eq!(
            (r.stats.volume_ids, r.stats.unknown, r.stats.invalid),
            (12, 0, 0)
        );
        assert_eq!((r.last_applied(), r.stats.joins, r.stats.nops), (14, 1, 1));
        assert_eq!(r.kv.members.keys().collect::<Vec<_>>(), ["127.0.0.1:9333"]);
    }

    #[test]
    fn lower_ids_old_payloads_and_empty_topology_ids_apply_as_the_master_does() {
        let log = master_log(&[
            "{\"maxVolumeId\":5}\n",
            &vid(3, "t1"),
            &vid(4, ""),
            &vid(7, "t2"),
            "null\n",
        ]);
        let r = run(&log, &opts(MachineChoice::Auto), None);
        assert_eq!(
            (r.master.max_volume_id, r.master.topology_id.as_str()),
            (7, "t2")
        );
        let at = ReplayOptions {
            at: Some(5),
            ..opts(MachineChoice::Auto)
        };
        let r = run(&log, &at, None);
        assert_eq!(
            (r.master.max_volume_id, r.master.topology_id.as_str()),
            (5, "t1")
        );
        assert_eq!(r.stop, Stop::At);
    }

    #[test]
    fn a_malformed_payload_is_counted_invalid_and_changes_nothing() {
        let log = master_log(&[
            &vid(2, "t"),
            "{\"maxVolumeId\":-1}\n",
            "{\"maxVolumeId\":99",
            "{\"maxVolumeId\":\"9\"}\n",
            "",
        ]);
        let r = run(&log, &opts(MachineChoice::Auto), None);
        assert_eq!(
            (r.master.max_volume_id, r.machine.clone()),
            (2, Machine::Seaweedfs)
        );
        assert_eq!((r.stats.volume_ids, r.stats.invalid), (5, 4));
    }

    #[test]
    fn history_of_max_volume_id_and_topology_id() {
        let log = master_log(&[&vid(1, "t1"), &vid(1, "t1"), &vid(3, "t2")]);
        let changes = |key: &str| {
            let o = ReplayOptions {
                history: Some(key.into()),
                ..opts(MachineChoice::Auto)
            };
            run(&log, &o, None)
                .history
                .unwrap()
                .changes
                .into_iter()
                .map(|c| (c.index, c.old, c.new))
                .collect::<Vec<_>>()
        };
        let s = |v: &str| Some(v.to_string());
        assert_eq!(
            changes(MAX_VOLUME_ID),
            [(3, s("0"), "1".into()), (5, s("1"), "3".into())]
        );
        assert_eq!(
            changes(TOPOLOGY_ID),
            [(3, None, "t1".into()), (5, s("t1"), "t2".into())]
        );
    }

    #[test]
    fn a_master_snapshot_is_the_starting_state() {
        let snap = Snapshot {
            last_index: 5,
            last_term: 2,
            peers: Some(vec![Peer {
                name: "127.0.0.1:9333".into(),
                connection_string: "http://127.0.0.1:9333".into(),
            }]),
            state: Some(b"{\"maxVolumeId\":9,\"topologyId\":\"t9\"}".to_vec()),
            path: "snapshot/2_5.ss".into(),
        };
        // Entries 3..5 are covered by the snapshot; 6 and 7 apply on top (7 is below 9).
        let log = master_log(&[
            &vid(3, "t9"),
            &vid(4, "t9"),
            &vid(5, "t9"),
            &vid(10, ""),
            &vid(8, ""),
        ]);
        let r = run(&log, &opts(MachineChoice::Auto), Some(&snap));
        assert_eq!(r.machine, Machine::Seaweedfs);
        assert_eq!(
            (r.master.max_volume_id, r.master.topology_id.as_str()),
            (10, "t9")
        );
        assert_eq!((r.skipped, r.stats.volume_ids), (5, 2));
        // A snapshot alone says SeaweedFS.
        let r = run(&master_log(&[]), &opts(MachineChoice::Auto), Some(&snap));
        assert_eq!((r.machine, r.master.max_volume_id), (Machine::Seaweedfs, 9));
        // Forced to raftd, the state is opaque to it.
        let r = run(&log, &opts(MachineChoice::Raftd), Some(&snap));
        assert!(r.opaque());
    }

    #[test]
    fn the_machine_is_chosen_from_the_commands_or_forced() {
        let mut w = LogWriter::new(Vec::new());
        w.append(1, 1, &Command::Nop).unwrap();
        w.append(
            2,
            1,
            &Command::Write {
                key: "k".into(),
                value: "v".into(),
            },
        )
        .unwrap();
        let raftd = w.into_inner();
        let master = master_log(&[&vid(4, "t")]);
        let mut both = raftd.clone();
        let mut w = LogWriter::new(&mut both);
        w.append_raw(3, 1, "MaxVolumeId", Some(vid(4, "t").as_bytes()))
            .unwrap();
        let mut other = Vec::new();
        LogWriter::new(&mut other)
            .append_raw(1, 1, "etcd:set", Some(b"{}"))
            .unwrap();
        let machine = |b: &[u8], m| run(b, &opts(m), None).machine;
        assert_eq!(machine(&raftd, MachineChoice::Auto), Machine::Raftd);
        assert_eq!(machine(&master, MachineChoice::Auto), Machine::Seaweedfs);
        assert!(
            matches!(machine(&both, MachineChoice::Auto), Machine::Unknown { reason } if reason.contains("--machine"))
        );
        assert!(matches!(
            machine(&other, MachineChoice::Auto),
            Machine::Unknown { .. }
        ));
        assert_eq!(machine(&both, MachineChoice::Raftd), Machine::Raftd);
        // Forced, the other machine's commands are unknown to it.
        let r = run(&both, &opts(MachineChoice::Raftd), None);
        assert_eq!(
            (r.stats.unknown, r.stats.writes, r.master.max_volume_id),
            (1, 1, 0)
        );
        let r = run(&both, &opts(MachineChoice::Seaweedfs), None);
        assert_eq!(
            (r.stats.unknown, r.stats.writes, r.master.max_volume_id),
            (1, 0, 4)
        );
        assert_eq!(r.kv.get("k"), None);
        // A master with no volume yet: only the dialect tells.
        let none = Stats::default();
        let e = |seaweedfs_dialect| Evidence {
            stats: &none,
            invalid_writes: 0,
            snapshot: None,
            seaweedfs_dialect,
        };
        assert_eq!(choose(MachineChoice::Auto, &e(true)), Machine::Seaweedfs);
        assert_eq!(choose(MachineChoice::Auto, &e(false)), Machine::Raftd);
        // Membership only: counted, not decoded.
        let o = ReplayOptions {
            membership_only: true,
            ..Default::default()
        };
        let r = run(&master, &o, None);
        assert_eq!(
            (r.stats.volume_ids, r.master.max_volume_id, r.last_applied()),
            (1, 0, 3)
        );
    }
}
