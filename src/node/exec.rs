//! The executor of the core's actions, one for the threaded runtime and the simulator:
//! [`execute`] carries out a step's actions in order over an [`Effects`] (the node's storage,
//! its outgoing messages, its answers, its state machine). Also what starting a node takes:
//! building the start state from storage, and applying committed entries to [`Kv`] (writing
//! `conf` when membership changes, as goraft does).
//!
//! No threads, no sockets: storage calls and the [`Effects`] only.

use super::core::{Action, AppendRequest, ConfigChange, InitialState, RequestId, SnapshotInstall};
use super::ratelog;
use super::runtime::Reply;
use super::storage::{Storage, StoreError};
use super::transport::Outbound;
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
            let pairs = serde_json::from_slice::<Pairs>(state).map_err(|e| {
                format!(
                    "snapshot {}_{}: state is not a JSON object of strings ({e})",
                    s.last_term, s.last_index
                )
            })?;
            // A key given twice keeps its last value, as Go's json.Unmarshal does.
            kv.data = pairs.0.into_iter().collect();
        }
    }
    for p in s.peers.iter().flatten() {
        kv.members
            .insert(p.name.clone(), p.connection_string.clone());
    }
    kv.applied = s.last_index;
    Ok(kv)
}

/// A JSON object of strings as its pairs in file order, without building a map first (start-up
/// on a large snapshot spends its time here).
struct Pairs(Vec<(compact_str::CompactString, compact_str::CompactString)>);

impl<'de> serde::Deserialize<'de> for Pairs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Pairs;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.push((k.into(), v.into()));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(Visit)
    }
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

/// Where the actions of a node's core take effect: the threaded runtime (a [`FileStore`], HTTP
/// peers, callers waiting on channels) and the simulator (a `MemStore`, a seeded network).
///
/// [`FileStore`]: super::storage::FileStore
pub trait Effects {
    /// The node's storage.
    type Store: Storage;
    /// The storage and the node's name.
    fn parts(&mut self) -> (&mut Self::Store, &str);
    /// Called before each action is carried out (the simulator checks safety here).
    fn before(&mut self, _action: &Action) {}
    /// Sends a message to a peer.
    fn send(&mut self, msg: Outbound);
    /// Answers request `id`. An answer may be held until the log is durable.
    fn reply(&mut self, id: RequestId, reply: Reply);
    /// The log was truncated after `to`.
    fn truncated(&mut self, _to: Index) {}
    /// A snapshot up to `last` replaced the log, and `kv` is its state machine.
    fn installed(&mut self, kv: Kv, last: Index);
    /// Applies the committed entries up to `to` to the state machine.
    fn commit(&mut self, to: Index) -> Result<(), StoreError>;
}

/// Carries out the core's actions in order.
pub fn execute<E: Effects + ?Sized>(fx: &mut E, actions: Vec<Action>) -> Result<(), StoreError> {
    for a in actions {
        fx.before(&a);
        match a {
            Action::SaveHardState(h) => fx.parts().0.save_hard_state(&h)?,
            Action::Truncate(i) => {
                fx.parts().0.truncate_after(i)?;
                fx.truncated(i);
            }
            Action::Append(es) => fx.parts().0.append(&es)?,
            Action::SendAppend {
                to,
                term,
                prev_index,
                prev_term,
                last,
                commit,
                sent,
            } => {
                let (store, name) = fx.parts();
                let req = append_request(store, term, name, prev_index, prev_term, last, commit)?;
                fx.send(Outbound::Append { to, req, sent });
            }
            Action::SendVote { to, req } => fx.send(Outbound::Vote { to, req }),
            Action::SendSnapshot { to, last_index } => {
                let (store, name) = fx.parts();
                match store.snapshot() {
                    Some(s) if s.last_index == last_index => {
                        let install = SnapshotInstall {
                            leader: name.to_string(),
                            last_index: s.last_index,
                            last_term: s.last_term,
                            peers: s.peers.clone().unwrap_or_default(),
                            state: s.state.clone().unwrap_or_default(),
                        };
                        fx.send(Outbound::Snapshot { to, install });
                    }
                    _ => ratelog::log(
                        (log::Level::Error, module_path!()),
                        &format!("no snapshot for {}", to.name),
                        || format!("no snapshot at {last_index} to send to {}", to.name),
                    ),
                }
            }
            Action::ReplyAppend { id, resp } => fx.reply(id, Reply::Append(resp)),
            Action::ReplyVote { id, resp } => fx.reply(id, Reply::Vote(resp)),
            Action::Refuse { id, reason } => fx.reply(id, Reply::Refused(reason)),
            Action::ReplySnapshotOffer { id, accept } => fx.reply(id, Reply::SnapshotOffer(accept)),
            Action::ReplySnapshotInstall { id, resp } => fx.reply(id, Reply::SnapshotInstall(resp)),
            Action::InstallSnapshot { id, snapshot, term } => {
                let result = install_snapshot(fx, snapshot)?.map(|last| (term, true, last));
                fx.reply(id, Reply::SnapshotInstall(result));
            }
            Action::Commit(n) => fx.commit(n)?,
            Action::ProposalDone { id, result } => fx.reply(id, Reply::Proposal(result)),
            Action::ReadDone { id, result } => fx.reply(id, Reply::Read(result)),
        }
    }
    Ok(())
}

/// Replaces the log and the state machine with a leader's snapshot; returns its last index,
/// or `None` when its state does not decode (the node refuses it and keeps what it has).
fn install_snapshot<E: Effects + ?Sized>(
    fx: &mut E,
    snapshot: SnapshotInstall,
) -> Result<Option<Index>, StoreError> {
    let snap = Snapshot {
        last_index: snapshot.last_index,
        last_term: snapshot.last_term,
        peers: Some(snapshot.peers),
        state: Some(snapshot.state),
        path: String::new(),
    };
    let kv = match kv_from_snapshot(&snap) {
        Ok(kv) => kv,
        Err(e) => {
            ratelog::log((log::Level::Error, module_path!()), "bad snapshot", || {
                format!("refusing a snapshot from the leader: {e}")
            });
            return Ok(None);
        }
    };
    let last = snap.last_index;
    let (store, name) = fx.parts();
    let conf = conf_of(&kv, name, last);
    store.install_snapshot(snap, &conf)?;
    fx.installed(kv, last);
    Ok(Some(last))
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
