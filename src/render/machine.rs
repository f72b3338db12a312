//! `replay` output for the machines other than raftd's key-value map: a SeaweedFS master's
//! state (its max volume id and topology id, and the line an operator keeps before a migration)
//! and a state that is unknown. raftd's output is [`super::replay`]'s own and does not change.

use std::io::{self, Write};

use serde::Serialize;

use super::escape_terminal;
use super::replay::line;
use crate::replay::{Machine, Replay};

/// The value of one of a master's keys (`maxVolumeId`, `topologyId`) for `--key`: `None` when
/// the replay is not a master's; `Some(None)` for a key a master does not have.
pub(super) fn master_key(r: &Replay, key: &str) -> Option<Option<String>> {
    if r.machine != Machine::Seaweedfs {
        return None;
    }
    Some(match key {
        "maxVolumeId" => Some(r.master.max_volume_id.to_string()),
        "topologyId" if !r.master.topology_id.is_empty() => Some(r.master.topology_id.clone()),
        _ => None,
    })
}

/// Writes the state section when the machine is not raftd's; `false` (nothing written) when it
/// is.
pub(super) fn human_state(out: &mut dyn Write, r: &Replay) -> io::Result<bool> {
    match &r.machine {
        Machine::Raftd => Ok(false),
        Machine::Seaweedfs => {
            writeln!(out)?;
            writeln!(out, "SeaweedFS master state")?;
            writeln!(out, "  maxVolumeId  {}", r.master.max_volume_id)?;
            writeln!(out, "  topologyId   {}", topology(r))?;
            Ok(true)
        }
        Machine::Unknown { reason } => {
            writeln!(out)?;
            writeln!(
                out,
                "state unknown: {}; membership and command counts are complete (--membership, --stats)",
                escape_terminal(reason)
            )?;
            Ok(true)
        }
    }
}

fn topology(r: &Replay) -> String {
    if r.master.topology_id.is_empty() {
        "(not set)".to_string()
    } else {
        escape_terminal(&r.master.topology_id).into_owned()
    }
}

/// The last line of a master's human output: what to write down before SeaweedFS's migration
/// (or a master started without `-resumeState`) deletes `log`, `conf` and `snapshot/`. Why
/// both values: a master without these files learns volume ids only from the volumes its
/// volume servers report, so an id whose volume is deleted or offline can be handed out a second
/// time; and with no topology id to recover it generates a new one, a new cluster identity.
pub(super) fn keep_line(out: &mut dyn Write, r: &Replay) -> io::Result<()> {
    if r.machine != Machine::Seaweedfs {
        return Ok(());
    }
    let m = &r.master;
    let (topology, new_id) = if m.topology_id.is_empty() {
        ("no topologyId".to_string(), "")
    } else {
        (
            format!("topologyId {}", escape_terminal(&m.topology_id)),
            ", and it generates a new topologyId",
        )
    };
    let head = format!(
        "keep: maxVolumeId {}, {topology} (the state at index {})",
        m.max_volume_id,
        r.last_applied()
    );
    writeln!(out)?;
    if m.max_volume_id == 0 {
        return writeln!(out, "{head}: no volume id was handed out through this log");
    }
    writeln!(
        out,
        "{head}: a master started without these files learns volume ids only from the volumes its volume servers report, so it can hand out ids up to {} again{new_id}",
        m.max_volume_id
    )
}

/// Writes the state line when the machine is not raftd's (`{"type":"seaweedfs", ...}`, or
/// nothing for an unknown state: the header says why); `false` when it is raftd's.
pub(super) fn json_state(out: &mut dyn Write, r: &Replay) -> io::Result<bool> {
    #[derive(Serialize)]
    struct Master<'a> {
        max_volume_id: u32,
        topology_id: &'a str,
        index: u64,
    }
    match &r.machine {
        Machine::Raftd => Ok(false),
        Machine::Seaweedfs => {
            line(
                out,
                "seaweedfs",
                &Master {
                    max_volume_id: r.master.max_volume_id,
                    topology_id: &r.master.topology_id,
                    index: r.last_applied(),
                },
            )?;
            Ok(true)
        }
        Machine::Unknown { .. } => Ok(true),
    }
}

/// The header's `machine` and `machine_reason` fields (absent for raftd, whose output predates
/// them).
pub(super) fn header_fields(r: &Replay) -> (Option<&'static str>, Option<&str>) {
    match &r.machine {
        Machine::Raftd => (None, None),
        Machine::Seaweedfs => (Some("seaweedfs"), None),
        Machine::Unknown { reason } => (Some("unknown"), Some(reason)),
    }
}
