//! The key-value state of a replay's bulk write path, kept as sorted runs instead of hash maps.
//!
//! Why: a long log writes keys in an order with no locality, so every insert into a hash map
//! of a large state waited on a cache miss (a third of a large replay, on the thread that
//! applied writes). Here each write is appended to a queue; a queue is sorted (by key hash, in
//! the cache) and merged into its run of distinct keys once it is as long as that run, so
//! every step reads and writes memory in order. The state is partitioned by key hash, so a
//! sort or merge works on a 64th of it. Keys and values are kept as text in one buffer per
//! queue and per run, copied along at each merge, and become strings only at the end: building
//! a string for each of millions of writes cost more than all the rest. Memory stays within
//! about twice the state: a partition's queue never grows past its run (or a small floor).
//!
//! The result is what applying the writes one by one to a map would give: within a queue the
//! writes to one key keep their log order and the last one wins; a queue always holds writes
//! later than its run. Keys whose hashes are equal but which differ are kept apart. Pure.

use std::hash::BuildHasher;

use compact_str::CompactString;

use super::kv;

/// A write or a state pair: its key's hash, and where its key and value sit in their text
/// buffer (the key at `at`, then the value).
#[derive(Debug, Clone, Copy, Default)]
struct Ref {
    hash: u64,
    at: usize,
    key: usize,
    value: usize,
}

impl Ref {
    #[inline]
    fn key<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.at..self.at + self.key).unwrap_or_default()
    }

    #[inline]
    fn value<'t>(&self, text: &'t str) -> &'t str {
        let from = self.at + self.key;
        text.get(from..from + self.value).unwrap_or_default()
    }

    /// Copies the pair from `text` to the end of `to`; the copy's reference.
    #[inline]
    fn copy(&self, text: &str, to: &mut String) -> Ref {
        let at = to.len();
        to.push_str(
            text.get(self.at..self.at + self.key + self.value)
                .unwrap_or_default(),
        );
        Ref { at, ..*self }
    }
}

/// Partitions of the state (by the top bits of the key hash).
const PARTS: usize = 64;

/// A queue is merged once it is as long as its run, and never while it is shorter than this.
const MIN_QUEUE: usize = 1024;

/// The partition of a key hash.
#[inline]
fn part_of(hash: u64) -> usize {
    (hash >> 58) as usize
}

/// The key hash: foldhash over the key's bytes, seeded per process (keys sent to `serve` cannot
/// be chosen to collide).
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Writes in log order (filled by the reader's thread).
///
/// Why this shape: the reader's thread only hashes each key and copies the key and value after
/// each other into one buffer; spreading them over the partitions is left to the thread that
/// applies the batch.
#[derive(Debug, Default)]
pub(crate) struct RunBatch {
    /// Every key followed by its value.
    text: String,
    /// Each write's key hash and the lengths of its key and value, in order.
    writes: Vec<(u64, usize, usize)>,
}

impl RunBatch {
    /// Queues a write whose key `hasher` hashes.
    #[inline]
    pub(crate) fn push(&mut self, hasher: &impl BuildHasher, key: &str, value: &str) {
        let hash = hasher.hash_one(key.as_bytes());
        self.text.push_str(key);
        self.text.push_str(value);
        self.writes.push((hash, key.len(), value.len()));
    }

    /// The number of queued writes.
    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }
}

/// One partition: its distinct keys sorted by hash, and the writes queued after them, each
/// with its text.
#[derive(Debug, Default)]
struct Part {
    run: Vec<Ref>,
    run_text: String,
    queue: Vec<Ref>,
    queue_text: String,
}

/// Buffers reused by every merge.
#[derive(Debug, Default)]
struct Scratch {
    /// The queue's positions by hash, then by position.
    order: Vec<(u64, usize)>,
    /// The last write of each key of the queue, sorted by hash (references into the queue).
    dedup: Vec<Ref>,
    /// The merged run and its text.
    merged: Vec<Ref>,
    merged_text: String,
}

/// The state as sorted runs; see the module docs.
#[derive(Debug)]
pub(crate) struct Runs<S = KeyHasher> {
    hasher: S,
    parts: Vec<Part>,
    scratch: Scratch,
}

impl<S: BuildHasher> Runs<S> {
    /// The state holding `pairs` (distinct keys), whose keys `hasher` hashes.
    pub(crate) fn new(
        pairs: impl IntoIterator<Item = (CompactString, CompactString)>,
        hasher: S,
    ) -> Self {
        let mut runs = Runs {
            hasher,
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            scratch: Scratch::default(),
        };
        for (k, v) in pairs {
            let hash = runs.hasher.hash_one(k.as_bytes());
            let part = &mut runs.parts[part_of(hash)];
            part.run.push(Ref {
                hash,
                at: part.run_text.len(),
                key: k.len(),
                value: v.len(),
            });
            part.run_text.push_str(&k);
            part.run_text.push_str(&v);
        }
        for part in &mut runs.parts {
            // Distinct keys: only their order is needed.
            part.run.sort_unstable_by_key(|r| r.hash);
        }
        runs
    }

    /// Takes the writes of `batch` (left empty, its capacity kept); returns how many writes
    /// were found to replace a value by the merges this ran.
    pub(crate) fn absorb(&mut self, batch: &mut RunBatch) -> u64 {
        let mut at = 0;
        for &(hash, key, value) in &batch.writes {
            let part = &mut self.parts[part_of(hash)];
            let r = Ref {
                hash,
                at,
                key,
                value,
            };
            at += key + value;
            part.queue.push(r.copy(&batch.text, &mut part.queue_text));
        }
        batch.text.clear();
        batch.writes.clear();
        let mut overwrites = 0;
        for part in &mut self.parts {
            if !part.queue.is_empty() && part.queue.len() >= part.run.len().max(MIN_QUEUE) {
                overwrites += part.merge(&mut self.scratch);
            }
        }
        overwrites
    }

    /// Merges every queue; returns the pairs (distinct keys) in key order (by bytes), and how
    /// many writes replaced a value in these last merges. Two threads share the work, each
    /// taking half the partitions to a sorted vector; the two are then merged.
    pub(crate) fn finish(self) -> (Vec<(CompactString, CompactString)>, u64) {
        let mut parts = self.parts;
        let (low, high) = parts.split_at_mut(PARTS / 2);
        let (a, b) = std::thread::scope(|s| {
            let t = std::thread::Builder::new().spawn_scoped(s, || finish_parts(high));
            let a = finish_parts(low);
            match t.map(|t| t.join()) {
                Ok(Ok(b)) => (a, Some(b)),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => (a, None),
            }
        });
        let ((a, n), (b, m)) = (a, b.unwrap_or_else(|| finish_parts(high)));
        (kv::merge_sorted(a, b), n + m)
    }
}

/// Merges the queues of `parts` and returns their pairs in key order, and how many writes
/// replaced a value in these merges. The parts are left empty.
fn finish_parts(parts: &mut [Part]) -> (Vec<(CompactString, CompactString)>, u64) {
    let mut scratch = Scratch::default();
    let mut overwrites = 0;
    for part in parts.iter_mut() {
        if !part.queue.is_empty() {
            overwrites += part.merge(&mut scratch);
        }
    }
    drop(scratch);
    let mut pairs = Vec::with_capacity(parts.iter().map(|p| p.run.len()).sum());
    for part in parts.iter_mut() {
        let part = std::mem::take(part);
        let text = part.run_text.as_str();
        pairs.extend(part.run.iter().map(|r| {
            (
                CompactString::new(r.key(text)),
                CompactString::new(r.value(text)),
            )
        }));
    }
    (kv::sort_distinct(pairs, kv::Threads::One), overwrites)
}

impl Part {
    /// Merges the queue into the run; returns how many queued writes replaced a value (of the
    /// run, or of an earlier write in the queue).
    fn merge(&mut self, s: &mut Scratch) -> u64 {
        let mut overwrites = 0;
        // The queue's positions by hash, and by position among equal hashes (log order).
        let order = &mut s.order;
        order.clear();
        order.extend(self.queue.iter().enumerate().map(|(i, r)| (r.hash, i)));
        order.sort_unstable();
        // The last write of each key, sorted by hash.
        let (q, qt) = (&self.queue, self.queue_text.as_str());
        let dedup = &mut s.dedup;
        dedup.clear();
        let mut i = 0;
        while i < order.len() {
            let mut j = i + 1;
            while j < order.len() && order[j].0 == order[i].0 {
                j += 1;
            }
            if j == i + 1 {
                dedup.push(q[order[i].1]);
            } else {
                // Equal hashes: from the last write back, keep the first seen of each key.
                let from = dedup.len();
                for &(_, k) in order[i..j].iter().rev() {
                    let key = q[k].key(qt);
                    if dedup[from..].iter().any(|d| d.key(qt) == key) {
                        overwrites += 1;
                    } else {
                        dedup.push(q[k]);
                    }
                }
            }
            i = j;
        }
        // Merge with the run; a queued write replaces the run's pair of its key.
        let (run, rt) = (&self.run, self.run_text.as_str());
        let (merged, mt) = (&mut s.merged, &mut s.merged_text);
        merged.clear();
        mt.clear();
        merged.reserve(run.len() + dedup.len());
        mt.reserve(rt.len() + qt.len());
        let (mut a, mut b) = (0, 0);
        while a < run.len() && b < dedup.len() {
            let (ha, hb) = (run[a].hash, dedup[b].hash);
            if ha < hb {
                merged.push(run[a].copy(rt, mt));
                a += 1;
            } else if hb < ha {
                merged.push(dedup[b].copy(qt, mt));
                b += 1;
            } else {
                let a_end = a + run[a..].iter().take_while(|r| r.hash == ha).count();
                let b_end = b + dedup[b..].iter().take_while(|r| r.hash == hb).count();
                for r in &run[a..a_end] {
                    let key = r.key(rt);
                    if dedup[b..b_end].iter().any(|d| d.key(qt) == key) {
                        overwrites += 1;
                    } else {
                        merged.push(r.copy(rt, mt));
                    }
                }
                for d in &dedup[b..b_end] {
                    merged.push(d.copy(qt, mt));
                }
                (a, b) = (a_end, b_end);
            }
        }
        for r in &run[a..] {
            merged.push(r.copy(rt, mt));
        }
        for d in &dedup[b..] {
            merged.push(d.copy(qt, mt));
        }
        std::mem::swap(&mut self.run, merged);
        std::mem::swap(&mut self.run_text, mt);
        self.queue.clear();
        self.queue_text.clear();
        overwrites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::hash::Hasher;

    /// Applies `writes` (key, value) through runs hashing with `hasher`, against a map.
    fn check<S: BuildHasher + Clone>(
        initial: &[(&str, &str)],
        writes: &[(String, String)],
        hasher: &S,
    ) {
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
                hasher.clone(),
            );
            let mut batch = RunBatch::default();
            let mut overwrites = 0;
            for (k, v) in writes {
                batch.push(hasher, k, v);
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
            assert!(
                pairs
                    .windows(2)
                    .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()),
                "in key order"
            );
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
        let hasher = KeyHasher::default();
        // Many merges, hot keys written many times inside one queue, a snapshot's pairs.
        check(&[], &writes(20_000, 3_000), &hasher);
        check(
            &[("k1", "snap"), ("zz", "kept")],
            &writes(9_000, 40),
            &hasher,
        );
        check(&[("a", "b")], &[], &hasher);
        // Values of every length, non-ASCII and long (heap) strings.
        let odd: Vec<(String, String)> = (0..3000u32)
            .map(|i| {
                (
                    format!("\u{e9}{}", i % 97),
                    "\u{1F389}x".repeat(i as usize % 13),
                )
            })
            .collect();
        check(&[("\u{e9}1", "")], &odd, &hasher);
    }

    /// A hash with few distinct values: `modulo` of them, spread over `parts` partitions.
    #[derive(Clone)]
    struct Few {
        modulo: u64,
        parts: u64,
    }

    struct FewHasher(u64, u64, u64);

    impl Hasher for FewHasher {
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(b));
            }
        }
        fn finish(&self) -> u64 {
            (self.0 % self.2) << 58 | (self.0 % self.1)
        }
    }

    impl BuildHasher for Few {
        type Hasher = FewHasher;
        fn build_hasher(&self) -> FewHasher {
            FewHasher(0, self.modulo, self.parts)
        }
    }

    #[test]
    fn keys_with_equal_hashes_stay_apart() {
        // Groups of equal hashes in queues and runs, and one hash for every key.
        let few = Few {
            modulo: 3,
            parts: 5,
        };
        check(&[("k1", "snap"), ("k17", "s")], &writes(6_000, 500), &few);
        let one = Few {
            modulo: 1,
            parts: 1,
        };
        check(&[("k3", "snap")], &writes(3_000, 30), &one);
    }
}
