//! The simulator's side of the executor: a node's actions, carried out by
//! [`exec::execute`] as the runtime's are, take effect on the
//! simulated network, and are checked against what every other node did (Log Matching, no
//! truncation of applied entries, committed entries never changed).

use super::{Packet, Pending, Sim, SimNode};
use crate::model::Index;
use crate::node::core::{Action, EntryBatch, RequestId};
use crate::node::exec;
use crate::node::runtime::Reply;
use crate::node::storage::{MemStore, Storage, StoreError};
use crate::node::transport::{Outbound, Transport};
use crate::replay::kv::Kv;

/// One node of the simulation as the executor sees it: its actions take effect on the
/// simulated network and are checked against what every other node did.
pub(super) struct NodeFx<'a> {
    pub(super) sim: &'a mut Sim,
    pub(super) i: usize,
    /// Answers to send once the writes before them are synced.
    pub(super) held: Vec<Packet>,
    /// The log was written (an fsync is due).
    pub(super) wrote: bool,
}

impl NodeFx<'_> {
    fn node(&mut self) -> &mut SimNode {
        &mut self.sim.nodes[self.i]
    }

    /// Log Matching: every `(index, term)` appended anywhere names one entry after one term.
    fn check_append(&mut self, es: &EntryBatch) {
        let Some(first) = es.first() else { return };
        let seed = self.sim.cfg.seed;
        let node = &self.sim.nodes[self.i];
        let terms = node.store.terms();
        let mut prev = terms.term_at(first.index - 1).unwrap_or_else(|| {
            panic!(
                "seed {seed}: {} appends {} after {}",
                node.name,
                first.index,
                terms.last_index()
            )
        });
        for e in es.iter() {
            let e = e.to_entry();
            let rec = self
                .sim
                .checked
                .seen
                .entry((e.index, e.term))
                .or_insert_with(|| (prev, e.clone()));
            assert!(
                rec.0 == prev && rec.1 == e,
                "seed {seed}: Log Matching: {} appends {e:?} after term {prev}; \
                 elsewhere ({}, {}) is {:?} after term {}",
                node.name,
                e.index,
                e.term,
                rec.1,
                rec.0
            );
            prev = e.term;
        }
        self.sim.checked.appends += es.len() as u64;
    }
}

impl exec::Effects for NodeFx<'_> {
    type Store = MemStore;

    fn parts(&mut self) -> (&mut MemStore, &str) {
        let node = &mut self.sim.nodes[self.i];
        (&mut node.store, &node.name)
    }

    fn before(&mut self, action: &Action) {
        let seed = self.sim.cfg.seed;
        let node = &self.sim.nodes[self.i];
        match action {
            Action::Truncate(x) => {
                assert!(
                    *x >= node.kv.applied,
                    "seed {seed}: {} truncates after {x} but applied {}",
                    node.name,
                    node.kv.applied
                );
                self.wrote = true;
            }
            Action::Append(es) => {
                self.check_append(es);
                self.wrote = true;
            }
            Action::Commit(n) => assert!(
                *n <= node.store.terms().last_index(),
                "seed {seed}: {} commits {n} past its last entry {}",
                node.name,
                node.store.terms().last_index()
            ),
            _ => {}
        }
    }

    fn send(&mut self, msg: Outbound) {
        self.node().transport.send(msg);
        self.sim.flush_outbox(self.i);
    }

    fn reply(&mut self, id: RequestId, reply: Reply) {
        let i = self.i;
        let pending = match reply {
            Reply::Proposal(result) => {
                self.node().proposals.insert(id, result);
                return;
            }
            Reply::Read(result) => {
                if let Ok(ix) = result {
                    assert!(self.node().kv.applied >= ix, "read served before apply");
                }
                self.node().reads.insert(id, result);
                return;
            }
            // Accepted: the install follows and answers.
            Reply::SnapshotOffer(Some(true)) => return,
            _ => self.node().pending.remove(&id),
        };
        let packet = match (reply, pending) {
            (Reply::Append(resp), Some(Pending::Append { from, sent })) => Packet::AppendResp {
                from: i,
                to: from,
                sent,
                resp,
            },
            // A refused request gets no usable answer (over HTTP a 4xx): for its sender, as
            // if lost.
            (Reply::Refused(_), Some(Pending::Append { from, sent })) => {
                self.sim.seq += 1;
                let lost = Packet::Lost {
                    peer: i,
                    to: from,
                    sent,
                };
                self.sim.queue.insert((self.sim.now, self.sim.seq), lost);
                return;
            }
            (Reply::Vote(resp), Some(Pending::Vote { from, term })) => Packet::VoteResp {
                from: i,
                to: from,
                term,
                resp,
            },
            (Reply::SnapshotOffer(accept), Some(Pending::Snapshot { from, last_index })) => {
                Packet::SnapshotResp {
                    from: i,
                    to: from,
                    last_index,
                    ok: accept == Some(false),
                }
            }
            (Reply::SnapshotInstall(resp), Some(Pending::Snapshot { from, last_index })) => {
                Packet::SnapshotResp {
                    from: i,
                    to: from,
                    last_index,
                    ok: resp.is_some_and(|r| r.1),
                }
            }
            _ => return,
        };
        self.held.push(packet);
    }

    fn installed(&mut self, kv: Kv, _last: Index) {
        self.node().kv = kv;
    }

    /// Applies, and records every entry applied: a later application anywhere must equal it.
    fn commit(&mut self, to: Index) -> Result<(), StoreError> {
        let seed = self.sim.cfg.seed;
        let node = &mut self.sim.nodes[self.i];
        let before = node.kv.applied;
        exec::apply_to(&mut node.store, &mut node.kv, to, &node.name, true)?;
        if node.kv.applied > before {
            for e in node.store.entries(before + 1, node.kv.applied)? {
                let rec = self
                    .sim
                    .checked
                    .committed
                    .entry(e.index)
                    .or_insert_with(|| e.clone());
                assert!(
                    *rec == e,
                    "seed {seed}: committed entry {} changed: {} applied {e:?}, before {rec:?}",
                    e.index,
                    node.name
                );
            }
        }
        Ok(())
    }
}
