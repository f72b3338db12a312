//! What every executor of the core's actions shares (the threaded runtime and the simulator):
//! building the start state from storage, reading a range for an AppendEntries, and applying
//! committed entries to [`Kv`] (writing `conf` when membership changes, as goraft does).
//!
//! No threads, no sockets: storage calls only.

use std::collections::BTreeMap;

use super::core::{AppendRequest, ConfigChange, InitialState};
use super::storage::{Storage, StoreError};
use crate::format::command;
use crate::model::{Conf, Index, Peer, Snapshot, Term};
use crate::replay::kv::{Applied, Kv};

/// Most entries read from storage at once while applying.
const APPLY_CHUNK: u64 = 4096;

/// The state machine restored from a snapshot: goraft's raftd-style state is the JSON object of
/// the key-value map (`json.Marshal(map[string]string)`), `null` or absent for none.
pub fn kv_from_snapshot(s: &Snapshot) -> Result<Kv, String> {
    let mut kv = Kv::new();
    if let Some(state) = &s.state {
        let trimmed = state.trim_ascii();
        if !trimmed.is_empty() && trimmed != b"null" {
            let map = serde_json::from_slice::<BTreeMap<String, String>>(state).map_err(|e| {
                format!(
                    "snapshot {}_{}: state is not a JSON object of strings ({e})",
                    s.last_term, s.last_index
                )
            })?;
            kv.data = map.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        }
    }
    for p in s.peers.iter().flatten() {
        kv.members
            .insert(p.name.clone(), p.connection_string.clone());
    }
    kv.applied = s.last_index;
    Ok(kv)
}

/// The state bytes raftdump sends in a snapshot: the JSON object of the map.
pub fn snapshot_state(kv: &Kv) -> Vec<u8> {
    // Sorted, as Go's json.Marshal of a map writes it.
    serde_json::to_vec(&kv.to_btree()).unwrap_or_else(|_| b"{}".to_vec())
}

/// Restores the state machine (snapshot + entries up to the known commit point) and the core's
/// start state. `conf_commit` is conf's commitIndex; `config` the membership entries found.
pub fn startup<S: Storage + ?Sized>(
    store: &mut S,
    conf_commit: Index,
    config: Vec<(Index, ConfigChange)>,
    self_name: &str,
) -> Result<(Kv, InitialState), StoreError> {
    let mut kv = match store.snapshot() {
        Some(s) => kv_from_snapshot(s).map_err(|detail| StoreError::Invalid {
            path: "snapshot".into(),
            detail,
        })?,
        None => Kv::new(),
    };
    let terms = store.terms().clone();
    let commit = conf_commit.min(terms.last_index()).max(terms.start_index);
    apply_to(store, &mut kv, commit, self_name, false)?;
    let init = InitialState {
        hard_state: store.hard_state(),
        log: terms,
        commit,
        members: kv.members.clone(),
        pending_config: config.into_iter().filter(|(i, _)| *i > commit).collect(),
    };
    Ok((kv, init))
}

/// Reads the entries `prev_index+1..=last` and builds the AppendEntries request.
#[allow(clippy::too_many_arguments)]
pub fn append_request<S: Storage + ?Sized>(
    store: &mut S,
    term: Term,
    leader: &str,
    prev_index: Index,
    prev_term: Term,
    last: Index,
    commit: Index,
) -> Result<AppendRequest, StoreError> {
    let entries = if last > prev_index {
        store.entries(prev_index + 1, last)?
    } else {
        Vec::new()
    };
    Ok(AppendRequest {
        term,
        prev_index,
        prev_term,
        commit,
        leader: leader.to_string(),
        entries,
    })
}

/// Applies committed entries `kv.applied+1..=to`. With `write_conf`, rewrites `conf` when a
/// join or leave changes the members (or on a self-join), as goraft's AddPeer/RemovePeer do.
pub fn apply_to<S: Storage + ?Sized>(
    store: &mut S,
    kv: &mut Kv,
    to: Index,
    self_name: &str,
    write_conf: bool,
) -> Result<(), StoreError> {
    let to = to.min(store.terms().last_index());
    while kv.applied < to {
        let from = kv.applied + 1;
        let upto = to.min(from + APPLY_CHUNK - 1);
        for e in store.entries(from, upto)? {
            let cmd = command::decode(e.name.as_bytes(), e.payload.as_deref());
            let self_join =
                matches!(&cmd, crate::model::Command::Join { name, .. } if name == self_name);
            let applied = kv.apply(e.index, cmd);
            let changed =
                matches!(applied, Applied::Joined(true) | Applied::Left(true)) || self_join;
            if write_conf && changed {
                store.write_conf(&conf_of(kv, self_name, e.index))?;
            }
        }
    }
    Ok(())
}

/// goraft's conf: the commit index and the other members.
pub fn conf_of(kv: &Kv, self_name: &str, commit: Index) -> Conf {
    Conf {
        commit_index: commit,
        peers: kv
            .members
            .iter()
            .filter(|(n, _)| *n != self_name)
            .map(|(n, c)| Peer {
                name: n.clone(),
                connection_string: c.clone(),
            })
            .collect(),
    }
}
