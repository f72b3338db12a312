//! The key-value state of a replay's bulk write path, kept as sorted runs instead of hash maps.
//!
//! Why: a long log writes keys in an order with no locality, so every insert into a hash map
//! of a large state waited on a cache miss (a third of a large replay, on the thread that
//! applied writes). Here each write is appended to a queue; a queue is sorted (by key hash, in
//! the cache) and merged into its run of distinct keys once it is as long as that run, so
//! every step reads and writes memory in order. The state is partitioned by key hash, so a
//! sort or merge works on a 64th of it. Memory stays within about twice the state: a
//! partition's queue never grows past its run (or a small floor).
//!
//! The result is what applying the writes one by one to a map would give: within a queue a
//! stable sort keeps the writes to one key in log order and the last one wins; a queue always
//! holds writes later than its run. Keys whose hashes are equal but which differ are kept apart.
//! Pure.

use compact_str::CompactString;

/// A queued write or a state pair: the key's hash, the key, the value.
pub(crate) type Item = (u64, CompactString, CompactString);

/// Partitions of the state (by the top bits of the key hash).
const PARTS: usize = 64;

/// A queue is merged once it is as long as its run, and never while it is shorter than this.
const MIN_QUEUE: usize = 1024;

/// The partition of a key hash.
#[inline]
pub(crate) fn part_of(hash: u64) -> usize {
    (hash >> 58) as usize
}

/// Writes queued per partition, in log order within each (filled by the reader's thread).
#[derive(Debug, Default)]
pub(crate) struct RunBatch {
    parts: Vec<Vec<Item>>,
    len: usize,
}

impl RunBatch {
    /// Queues a write whose key hashes to `hash`.
    #[inline]
    pub(crate) fn push(&mut self, hash: u64, key: &str, value: &str) {
        if self.parts.is_empty() {
            self.parts = (0..PARTS).map(|_| Vec::new()).collect();
        }
        self.parts[part_of(hash)].push((hash, CompactString::new(key), CompactString::new(value)));
        self.len += 1;
    }

    /// The number of queued writes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// One partition: its distinct keys sorted by hash, and the writes queued after them.
#[derive(Debug, Default)]
struct Part {
    run: Vec<Item>,
    queue: Vec<Item>,
}

/// The state as sorted runs; see the module docs.
#[derive(Debug)]
pub(crate) struct Runs {
    parts: Vec<Part>,
    /// Buffers reused by every merge: the deduplicated queue, and the merged run.
    dedup: Vec<Item>,
    merged: Vec<Item>,
}

impl Runs {
    /// The state holding `pairs` (distinct keys), each hashed by `hash`.
    pub(crate) fn new(
        pairs: impl IntoIterator<Item = (CompactString, CompactString)>,
        hash: impl Fn(&str) -> u64,
    ) -> Self {
        let mut runs = Runs {
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            dedup: Vec::new(),
            merged: Vec::new(),
        };
        for (k, v) in pairs {
            let h = hash(&k);
            runs.parts[part_of(h)].run.push((h, k, v));
        }
        for part in &mut runs.parts {
            // Distinct keys: only their order is needed.
            part.run.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        runs
    }

    /// Takes the writes of `batch` (left empty, its capacity kept); returns how many writes
    /// were found to replace a value by the merges this ran.
    pub(crate) fn absorb(&mut self, batch: &mut RunBatch) -> u64 {
        let mut overwrites = 0;
        for (part, queue) in self.parts.iter_mut().zip(&mut batch.parts) {
            if queue.is_empty() {
                continue;
            }
            part.queue.append(queue);
            if part.queue.len() >= part.run.len().max(MIN_QUEUE) {
                overwrites += part.merge(&mut self.dedup, &mut self.merged);
            }
        }
        batch.len = 0;
        overwrites
    }

    /// Merges every queue; returns the pairs (distinct keys, in no particular order) and how
    /// many writes replaced a value in these last merges.
    pub(crate) fn finish(mut self) -> (Vec<(CompactString, CompactString)>, u64) {
        let mut overwrites = 0;
        for part in &mut self.parts {
            if !part.queue.is_empty() {
                overwrites += part.merge(&mut self.dedup, &mut self.merged);
            }
        }
        drop((self.dedup, self.merged));
        let mut pairs = Vec::with_capacity(self.parts.iter().map(|p| p.run.len()).sum());
        for part in self.parts {
            pairs.extend(part.run.into_iter().map(|(_, k, v)| (k, v)));
        }
        (pairs, overwrites)
    }
}

impl Part {
    /// Merges the queue into the run; returns how many queued writes replaced a value (of the
    /// run, or of an earlier write in the queue).
    fn merge(&mut self, dedup: &mut Vec<Item>, merged: &mut Vec<Item>) -> u64 {
        let mut overwrites = 0;
        // Stable: the writes to one key stay in log order.
        self.queue.sort_by_key(|e| e.0);
        // The last write of each key, sorted by hash.
        dedup.clear();
        let q = &mut self.queue;
        let mut i = 0;
        while i < q.len() {
            let mut j = i + 1;
            while j < q.len() && q[j].0 == q[i].0 {
                j += 1;
            }
            if j == i + 1 {
                dedup.push(std::mem::take(&mut q[i]));
            } else {
                // Equal hashes: from the last write back, keep the first seen of each key.
                let from = dedup.len();
                for k in (i..j).rev() {
                    if dedup[from..].iter().any(|d| d.1 == q[k].1) {
                        overwrites += 1;
                    } else {
                        dedup.push(std::mem::take(&mut q[k]));
                    }
                }
            }
            i = j;
        }
        q.clear();
        // Merge with the run; a queued write replaces the run's pair of its key.
        merged.clear();
        merged.reserve(self.run.len() + dedup.len());
        let run = &mut self.run;
        let (mut a, mut b) = (0, 0);
        while a < run.len() && b < dedup.len() {
            let (ha, hb) = (run[a].0, dedup[b].0);
            if ha < hb {
                merged.push(std::mem::take(&mut run[a]));
                a += 1;
            } else if hb < ha {
                merged.push(std::mem::take(&mut dedup[b]));
                b += 1;
            } else {
                let a_end = a + run[a..].iter().take_while(|e| e.0 == ha).count();
                let b_end = b + dedup[b..].iter().take_while(|e| e.0 == hb).count();
                for k in a..a_end {
                    if dedup[b..b_end].iter().any(|d| d.1 == run[k].1) {
                        overwrites += 1;
                    } else {
                        merged.push(std::mem::take(&mut run[k]));
                    }
                }
                merged.extend(dedup[b..b_end].iter_mut().map(std::mem::take));
                (a, b) = (a_end, b_end);
            }
        }
        merged.extend(run.drain(a..));
        merged.extend(dedup.drain(b..));
        run.clear();
        dedup.clear();
        std::mem::swap(run, merged);
        overwrites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Applies `writes` (key, value) through runs with the given hash, against a map.
    fn check(initial: &[(&str, &str)], writes: &[(String, String)], hash: &dyn Fn(&str) -> u64) {
        let mut want: BTreeMap<String, String> = initial
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut want_overwrites = 0;
        for (k, v) in writes {
            want_overwrites += u64::from(want.insert(k.clone(), v.clone()).is_some());
        }
        for batch_len in [1, 7, 1000, 5000] {
            let mut runs = Runs::new(
                initial
                    .iter()
                    .map(|(k, v)| (CompactString::new(k), CompactString::new(v))),
                hash,
            );
            let mut batch = RunBatch::default();
            let mut overwrites = 0;
            for (k, v) in writes {
                batch.push(hash(k), k, v);
                if batch.len() >= batch_len {
                    overwrites += runs.absorb(&mut batch);
                    assert_eq!(batch.len(), 0);
                }
            }
            overwrites += runs.absorb(&mut batch);
            let (pairs, n) = runs.finish();
            overwrites += n;
            let got: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got.len(), pairs.len(), "keys are distinct");
            assert_eq!(got, want, "batch {batch_len}");
            assert_eq!(overwrites, want_overwrites, "batch {batch_len}");
        }
    }

    fn writes(n: u64, keys: u64) -> Vec<(String, String)> {
        (0..n)
            .map(|i| {
                let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % keys;
                (format!("k{k}"), format!("v{i}"))
            })
            .collect()
    }

    #[test]
    fn runs_give_the_map_of_one_by_one_writes() {
        let seeded = foldhash::fast::FixedState::with_seed(7);
        let hash = |k: &str| std::hash::BuildHasher::hash_one(&seeded, k);
        // Many merges, hot keys written many times inside one queue, a snapshot's pairs.
        check(&[], &writes(20_000, 3_000), &hash);
        check(&[("k1", "snap"), ("zz", "kept")], &writes(9_000, 40), &hash);
        check(&[("a", "b")], &[], &hash);
    }

    #[test]
    fn keys_with_equal_hashes_stay_apart() {
        // Few distinct hashes for many keys: groups of equal hashes in queues and runs.
        let hash = |k: &str| {
            let h = k.bytes().fold(0u64, |h, b| h.wrapping_add(u64::from(b)));
            (h % 5) << 58 | (h % 3)
        };
        check(&[("k1", "snap"), ("k17", "s")], &writes(6_000, 500), &hash);
        let same = |_: &str| 42;
        check(&[("k3", "snap")], &writes(3_000, 30), &same);
    }
}
