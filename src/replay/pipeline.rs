//! The write path's second stage: batches of writes applied to the state as sorted runs, on a
//! worker thread beside the reader.

use super::*;

/// The write path's second stage when no history is kept: each full batch of writes is applied
/// to the state on a worker thread while the replayer decodes the next one. One batch is in
/// flight at a time and batches are applied in log order, so the state ends as applying the
/// writes one by one would leave it. Why: applying cost as much as decoding, and a replay of a
/// large log left the second core idle. Without a thread (spawning failed) batches are applied
/// in place.
///
/// The state is kept as sorted runs ([`runs`]) from the first batch on (the snapshot's pairs
/// move there) and becomes the map again, in its sorted form, at [`Pipeline::finish`].
///
/// The reader's thread applies the partitions below `split` of each batch itself, after it has
/// handed the batch to the worker (both read it), and the worker the rest. Why: applying cost
/// more than reading, so the reader waited on the worker for a third of the read. `split`
/// follows the load: it grows by one partition when the reader had to wait for the worker, and
/// shrinks by one when the worker was done first. Which thread applies a partition never
/// changes the result: each partition still takes every batch once, in log order.
#[derive(Debug)]
pub(super) struct Pipeline {
    /// The batch being filled.
    batch: RunBatch,
    /// An empty batch with capacity, returned by the worker.
    spare: RunBatch,
    /// The state, from the first hand-off on (with a worker, only the reader's partitions);
    /// `None` before it.
    runs: Option<Runs>,
    /// The worker's partitions, while the worker does not hold them.
    theirs: Option<Runs>,
    /// The reader applies the partitions below this one.
    split: usize,
    /// Whether the state has moved into runs.
    started: bool,
    /// The key hash, seeded per process (keys sent to `serve` cannot be chosen to collide).
    hasher: runs::KeyHasher,
    /// Writes per batch.
    pub(super) limit: usize,
    pub(super) worker: Option<Worker>,
    /// Whether spawning the worker failed (then it is not tried again).
    pub(super) no_worker: bool,
    /// Whether the worker holds its partitions.
    in_flight: bool,
    /// The longest key or value the runs take ([`runs::LONGEST`]; less in tests).
    pub(super) longest: usize,
    /// Whether the runs are left: a key or value longer than `longest` came (in a write or in
    /// the snapshot's state), so every write from then on goes to the map one by one.
    off: bool,
}

/// The partitions the reader's thread applies at first (of [`runs::PARTS`]).
pub(super) const READER_PARTS: usize = 12;

/// A job of the worker: its partitions, the batch, and which partitions to apply.
pub(super) type Job = (Runs, Arc<RunBatch>, Range<usize>);

/// The lane ([`crate::par::Beside`]) that applies batches to the partitions it is sent with, and
/// sends them back with the overwrites it counted.
pub(super) type Worker = crate::par::Beside<Job, (Runs, Arc<RunBatch>, u64)>;

/// Starts the worker; `None` when no thread can be started.
fn start_worker() -> Option<Worker> {
    Worker::start("replay-apply", |(mut runs, batch, parts): Job| {
        let overwrites = runs.absorb(&batch, parts);
        (runs, batch, overwrites)
    })
}

impl Pipeline {
    pub(super) fn new() -> Self {
        Pipeline {
            batch: RunBatch::default(),
            spare: RunBatch::default(),
            runs: None,
            theirs: None,
            split: READER_PARTS,
            started: false,
            hasher: runs::KeyHasher::default(),
            limit: kv::BATCH,
            worker: None,
            no_worker: false,
            in_flight: false,
            longest: runs::LONGEST,
            off: false,
        }
    }

    /// Queues a write; hands the batch off when it is full. A key or value too long for the
    /// runs turns them off: what is queued is applied, and from then on writes go to the map.
    #[inline]
    pub(super) fn push(
        &mut self,
        key: &[u8],
        value: &[u8],
        data: &mut KvMap,
        overwrites: &mut u64,
    ) {
        let fits = key.len() <= self.longest && value.len() <= self.longest;
        if !self.off && fits && self.batch.push(&self.hasher, key, value) {
            if self.batch.len() >= self.limit {
                self.hand_off(data, overwrites);
            }
            return;
        }
        if !self.off {
            self.finish(data, overwrites);
            self.off = true;
        }
        put(data, key, value, overwrites);
    }

    /// Moves the state into runs on first use; `false` when the runs are off (then or before:
    /// a pair of the state is too long for them).
    pub(super) fn start(&mut self, data: &mut KvMap) -> bool {
        if !self.started && !self.off {
            let pairs = std::mem::take(data).into_pairs();
            match Runs::new(pairs, self.hasher.clone(), self.longest) {
                Ok(runs) => {
                    self.started = true;
                    self.runs = Some(runs);
                }
                Err(pairs) => {
                    *data = pairs.into_iter().collect();
                    self.off = true;
                }
            }
        }
        !self.off
    }

    /// Applies the batch to the map one by one (the runs are off).
    pub(super) fn apply_here(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.batch.each(|k, v| put(data, k, v, overwrites));
        self.batch.clear();
    }

    /// Waits for the batch in flight and takes the worker's partitions back; moves one
    /// partition to whichever thread was done first.
    pub(super) fn collect(&mut self, overwrites: &mut u64) {
        if !self.in_flight {
            return;
        }
        self.in_flight = false;
        match self.worker.as_ref().and_then(Worker::answer) {
            Some(((mut theirs, batch, n), waited)) => {
                *overwrites += n;
                if let Some(mine) = self.runs.as_mut() {
                    if waited && self.split < runs::PARTS / 2 {
                        mine.take_part(&mut theirs, self.split);
                        self.split += 1;
                    } else if !waited && self.split > 0 {
                        self.split -= 1;
                        theirs.take_part(mine, self.split);
                    }
                }
                self.theirs = Some(theirs);
                // The reader let go of its handle when it had applied its partitions.
                if let Ok(mut batch) = Arc::try_unwrap(batch) {
                    batch.clear();
                    self.spare = batch;
                }
            }
            None => {
                // The worker panicked while it held the state: a bug; surface its panic.
                if let Some(worker) = self.worker.take() {
                    worker.end();
                }
                unreachable!("the replay worker stopped without answering");
            }
        }
    }

    /// Puts the worker's partitions (when it has some) back with the reader's.
    pub(super) fn rejoin(&mut self) {
        if let (Some(mine), Some(mut theirs)) = (self.runs.as_mut(), self.theirs.take()) {
            for p in self.split..runs::PARTS {
                mine.take_part(&mut theirs, p);
            }
        }
    }

    pub(super) fn hand_off(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.collect(overwrites);
        if !self.start(data) {
            self.apply_here(data, overwrites);
            return;
        }
        if self.worker.is_none() && !self.no_worker {
            self.worker = start_worker();
            self.no_worker = self.worker.is_none();
            if let (Some(_), Some(mine)) = (&self.worker, self.runs.as_mut()) {
                let mut theirs = Runs::empty(self.hasher.clone());
                for p in self.split..runs::PARTS {
                    theirs.take_part(mine, p);
                }
                self.theirs = Some(theirs);
            }
        }
        let batch = Arc::new(std::mem::replace(
            &mut self.batch,
            std::mem::take(&mut self.spare),
        ));
        let mine = self.split;
        if let (Some(w), Some(theirs)) = (&self.worker, self.theirs.take()) {
            match w.send((theirs, Arc::clone(&batch), mine..runs::PARTS)) {
                Ok(()) => self.in_flight = true,
                Err((mut theirs, batch, parts)) => {
                    // No worker after all: its partitions are applied here from now on.
                    *overwrites += theirs.absorb(&batch, parts);
                    self.theirs = Some(theirs);
                    self.rejoin();
                    self.worker = None;
                    self.no_worker = true;
                }
            }
        }
        let Some(runs) = self.runs.as_mut() else {
            unreachable!("the state is here once started");
        };
        let parts = if self.worker.is_some() {
            0..mine
        } else {
            0..runs::PARTS
        };
        *overwrites += runs.absorb(&batch, parts);
        if let Ok(mut batch) = Arc::try_unwrap(batch) {
            // The worker was not sent this batch.
            batch.clear();
            self.spare = batch;
        }
    }

    /// Applies everything queued and puts the state back in `data` (sorted); the worker
    /// thread ends. Nothing changes when no write was queued.
    pub(super) fn finish(&mut self, data: &mut KvMap, overwrites: &mut u64) {
        self.collect(overwrites);
        self.worker = None;
        if !self.started && self.batch.len() == 0 {
            return;
        }
        if !self.start(data) {
            self.apply_here(data, overwrites);
            return;
        }
        self.rejoin();
        if let Some(mut runs) = self.runs.take() {
            *overwrites += runs.absorb(&self.batch, 0..runs::PARTS);
            self.batch.clear();
            let (packed, n) = runs.finish();
            *overwrites += n;
            *data = KvMap::from_packed(packed);
        }
    }
}

/// Sets `key` in the map (UTF-8 bytes), counting an overwrite.
pub(super) fn put(data: &mut KvMap, key: &[u8], value: &[u8], overwrites: &mut u64) {
    let string = |b: &[u8]| {
        CompactString::from_utf8(b)
            .unwrap_or_else(|_| CompactString::from(String::from_utf8_lossy(b).as_ref()))
    };
    if data.insert(string(key), string(value)).is_some() {
        *overwrites += 1;
    }
}
