//! The runtime's side of `--snapshot-every` (see [`crate::node::compaction`]): when a snapshot
//! is due, the clone of the state handed to the snapshot thread, and the swap of the compacted
//! log when that thread is done.

use std::sync::mpsc::Sender;
use std::time::Instant;

use super::{exec, Input, Worker};
use crate::model::{Index, Term};
use crate::node::storage::StoreError;

/// `--snapshot-every`: when the next snapshot is due, and the one in the background.
pub(super) struct Snapshots {
    pub(super) every: Option<u64>,
    /// The last snapshot point.
    pub(super) last: Index,
    /// A snapshot is being prepared on its thread.
    pub(super) running: bool,
    pub(super) tx: Sender<Input>,
}

impl Worker {
    /// Starts a snapshot when `--snapshot-every` entries were applied since the last one: the
    /// state is cloned here, the rest runs on a thread (see [`super::compaction`]).
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), StoreError> {
        let Some(every) = self.snapshots.every else {
            return Ok(());
        };
        if self.snapshots.running {
            return Ok(());
        }
        let kv = {
            let kv = self.shared.kv.read().unwrap_or_else(|e| e.into_inner());
            if kv.applied < self.snapshots.last.saturating_add(every) {
                return Ok(());
            }
            kv.clone()
        };
        let peers = kv
            .members
            .iter()
            .map(|(n, c)| crate::model::Peer {
                name: n.clone(),
                connection_string: c.clone(),
            })
            .collect();
        let Some(mut plan) = self.store.plan_snapshot(kv.applied, peers)? else {
            return Ok(());
        };
        self.snapshots.last = kv.applied;
        self.snapshots.running = true;
        let tx = self.snapshots.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                plan.snapshot.state = Some(exec::snapshot_state(&kv));
                drop(kv);
                let r = crate::node::compaction::prepare(
                    plan,
                    &mut crate::node::compaction::Steps::all(),
                );
                let _ = tx.send(Input::Snapshot(r));
            });
        if let Err(e) = spawned {
            self.snapshots.running = false;
            log::error!("cannot start the snapshot thread: {e}");
        }
        Ok(())
    }

    /// Ends a snapshot whose file is durable: compacts the log. A failure of the background
    /// part is logged and leaves the log as it was (the next snapshot tries again).
    pub(super) fn finish_snapshot(
        &mut self,
        r: Result<crate::node::compaction::Prepared, StoreError>,
    ) -> Result<Option<(Index, Term)>, StoreError> {
        let p = match r {
            Ok(p) => p,
            Err(e) => {
                log::error!("snapshot failed: {e}");
                return Ok(None);
            }
        };
        let t = Instant::now();
        let done = self
            .store
            .finish_compaction(p, &mut crate::node::compaction::Steps::all())?;
        if let Some((index, _)) = done {
            log::info!("snapshot at {index}; log compacted in {:?}", t.elapsed());
        }
        Ok(done)
    }
}
