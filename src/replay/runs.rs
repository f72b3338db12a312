//! The key-value state of a replay's bulk write path, kept as sorted runs instead of hash maps.
//!
//! Why: a long log writes keys in an order with no locality, so every insert into a hash map
//! of a large state waited on a cache miss (a third of a large replay, on the thread that
//! applied writes). Here each write is appended to a queue; a queue is sorted (by key hash, in
//! the cache) and merged into its run of distinct keys once it is as long as that run, so
//! every step reads and writes memory in order. The state is partitioned by key hash, so a
//! sort or merge works on a 64th of it. Keys and values are kept as UTF-8 bytes in one buffer
//! per queue and per run, copied along at each merge, and become strings only at the end:
//! building a string for each of millions of writes cost more than all the rest. Memory stays
//! within about twice the state: a partition's queue never grows past its run (or a small
//! floor).
//!
//! A batch ([`RunBatch`]) holds writes in log order; [`Runs::absorb`] takes the writes of a range
//! of partitions from it, so that two threads can apply one batch at once, each to its own
//! partitions ([`Runs::take_part`] moves a partition between them). A queue is sorted by a
//! counting pass on the hash bits below the partition's, which leaves a few writes per bucket
//! (the hashes are uniform), then a stable sort of each bucket: linear, where a comparison sort
//! of the queue was a sixth of the applying thread's time. Its text is then copied into that
//! order, so that the merge reads both texts in order. At the end two threads merge the last
//! queues straight into the final pairs, and every key's sort prefix is sorted once, on two
//! threads, to give the pairs in key order.
//!
//! The result is what applying the writes one by one to a map would give: within a queue the
//! writes to one key keep their log order and the last one wins; a queue always holds writes
//! later than its run. Keys whose hashes are equal but which differ are kept apart. Pure.

use std::hash::BuildHasher;
use std::ops::Range;

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
    fn key<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        text.get(self.at..self.at + self.key).unwrap_or_default()
    }

    #[inline]
    fn value<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        let from = self.at + self.key;
        text.get(from..from + self.value).unwrap_or_default()
    }

    /// Copies the pair from `text` to the end of `to`; the copy's reference.
    #[inline]
    fn copy(&self, text: &[u8], to: &mut Vec<u8>) -> Ref {
        let at = to.len();
        to.extend_from_slice(
            text.get(self.at..self.at + self.key + self.value)
                .unwrap_or_default(),
        );
        Ref { at, ..*self }
    }
}

/// Partitions of the state (by the top bits of the key hash).
pub(crate) const PARTS: usize = 64;

/// The bits of the hash that choose the partition.
const PART_BITS: u32 = 6;

/// A queue is merged once it is as long as its run, and never while it is shorter than this.
const MIN_QUEUE: usize = 1024;

/// The partition of a key hash.
#[inline]
fn part_of(hash: u64) -> usize {
    (hash >> (64 - PART_BITS)) as usize
}

/// The key hash: foldhash over the key's bytes, seeded per process (keys sent to `serve` cannot
/// be chosen to collide).
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Writes of one partition in log order, each with its text.
#[derive(Debug, Default)]
struct Queue {
    refs: Vec<Ref>,
    text: Vec<u8>,
}

impl Queue {
    fn clear(&mut self) {
        self.refs.clear();
        self.text.clear();
    }
}

/// Writes in log order (filled by the reader's thread).
///
/// Why this shape: the reader's thread only hashes each key and copies the key and value after
/// each other into one buffer; spreading them over the partitions is left to the thread that
/// applies the batch (the reader is the busier of the two).
#[derive(Debug, Default)]
pub(crate) struct RunBatch {
    /// Every key followed by its value (UTF-8).
    text: Vec<u8>,
    /// Each write's key hash and the lengths of its key and value, in order.
    writes: Vec<(u64, usize, usize)>,
}

impl RunBatch {
    /// Queues a write whose key `hasher` hashes; `key` and `value` are UTF-8.
    #[inline]
    pub(crate) fn push(&mut self, hasher: &impl BuildHasher, key: &[u8], value: &[u8]) {
        let hash = hasher.hash_one(key);
        self.text.extend_from_slice(key);
        self.text.extend_from_slice(value);
        self.writes.push((hash, key.len(), value.len()));
    }

    /// The number of queued writes.
    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }

    /// Empties the batch, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.writes.clear();
    }
}

/// One partition: its distinct keys sorted by hash, and the writes queued after them.
#[derive(Debug, Default)]
struct Part {
    run: Vec<Ref>,
    run_text: Vec<u8>,
    queue: Queue,
}

/// Buffers reused by every merge.
#[derive(Debug, Default)]
struct Scratch {
    sort: Sorting,
    /// The merged run and its text.
    merged: Vec<Ref>,
    merged_text: Vec<u8>,
}

/// Buffers reused to sort and deduplicate a queue.
#[derive(Debug, Default)]
struct Sorting {
    /// The queue sorted by hash, writes to one hash in log order, and their text in that
    /// order.
    sorted: Vec<Ref>,
    sorted_text: Vec<u8>,
    /// Bucket bounds of the counting pass.
    counts: Vec<usize>,
    /// The last write of each key of the queue, sorted by hash (references into the sorted
    /// text).
    dedup: Vec<Ref>,
}

/// The state as sorted runs; see the module docs.
#[derive(Debug)]
pub(crate) struct Runs<S = KeyHasher> {
    hasher: S,
    parts: Vec<Part>,
    scratch: Scratch,
}

impl<S: BuildHasher> Runs<S> {
    /// An empty state (no pair in any partition), for partitions moved in by
    /// [`Runs::take_part`].
    pub(crate) fn empty(hasher: S) -> Self {
        Runs {
            hasher,
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            scratch: Scratch::default(),
        }
    }

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
            part.run_text.extend_from_slice(k.as_bytes());
            part.run_text.extend_from_slice(v.as_bytes());
        }
        for part in &mut runs.parts {
            // Distinct keys: only their order is needed.
            part.run.sort_unstable_by_key(|r| r.hash);
        }
        runs
    }

    /// Takes the writes of `batch` whose keys fall in the partitions `parts` (the batch is
    /// left as it is); returns how many writes were found to replace a value by the merges this
    /// ran. Why a range: the reader's thread takes a few partitions of each batch itself, so
    /// that both threads stay busy (see `Pipeline` in the replay module); which thread merges a
    /// partition never changes the result.
    pub(crate) fn absorb(&mut self, batch: &RunBatch, parts: Range<usize>) -> u64 {
        let mut at = 0;
        for &(hash, key, value) in &batch.writes {
            let p = part_of(hash);
            if parts.contains(&p) {
                let queue = &mut self.parts[p].queue;
                let r = Ref {
                    hash,
                    at,
                    key,
                    value,
                };
                queue.refs.push(r.copy(&batch.text, &mut queue.text));
            }
            at += key + value;
        }
        let mut overwrites = 0;
        for part in self.parts.get_mut(parts).unwrap_or_default() {
            if !part.queue.refs.is_empty() && part.queue.refs.len() >= part.run.len().max(MIN_QUEUE)
            {
                overwrites += part.merge(&mut self.scratch);
            }
        }
        overwrites
    }

    /// Moves partition `p` (its run and queue) from `other` to this state; nothing when `p`
    /// is not a partition.
    pub(crate) fn take_part(&mut self, other: &mut Runs<S>, p: usize) {
        if let (Some(to), Some(from)) = (self.parts.get_mut(p), other.parts.get_mut(p)) {
            *to = std::mem::take(from);
        }
    }

    /// Merges every queue; returns the pairs (distinct keys) in key order (by bytes), and how
    /// many writes replaced a value in these last merges. Two threads share the work: each
    /// merges the queues of half the partitions straight into their pairs' strings (reading
    /// the runs in order, and freeing them); the keys' sort prefixes are then sorted once, in
    /// two halves ([`sort_positions`]), and each thread copies half the pairs into that order.
    pub(crate) fn finish(self) -> (Vec<(CompactString, CompactString)>, u64) {
        let Runs {
            hasher: _,
            mut parts,
            scratch,
        } = self;
        drop(scratch);
        let (low, high) = parts.split_at_mut(PARTS / 2);
        let mut halves = [
            (low, Vec::new(), Vec::new()),
            (high, Vec::new(), Vec::new()),
        ];
        let [a, b] = &mut halves;
        let overwrites = two_threads(a, b, |h| finish_parts(&mut *h.0, &mut h.1, &mut h.2));
        let [(_, low_pairs, mut order), (_, high_pairs, high_order)] = halves;
        drop(parts);
        // Positions from `base` on are in the high half's pairs.
        let base = low_pairs.len();
        order.extend(high_order.into_iter().map(|(hi, lo, i)| (hi, lo, i + base)));
        let pair = |i: usize| match i.checked_sub(base) {
            None => low_pairs.get(i),
            Some(j) => high_pairs.get(j),
        };
        sort_positions(&mut order, |i| pair(i).map_or(&b""[..], |p| p.0.as_bytes()));
        // Each thread copies half the pairs into their order. Why copies: two threads cannot
        // both move pairs out of one vector; a string of up to 24 bytes is copied as it would
        // be moved, and the moves alone were a quarter of this function on one thread.
        let (first, second) = order.split_at(order.len() / 2);
        let mut halves = [
            (first, Vec::with_capacity(order.len())),
            (second, Vec::new()),
        ];
        let [a, b] = &mut halves;
        two_threads(a, b, |(order, sorted)| {
            sorted.reserve_exact(order.len());
            sorted.extend(order.iter().filter_map(|&(_, _, i)| pair(i).cloned()));
            0
        });
        let [(_, mut sorted), (_, rest)] = halves;
        sorted.extend(rest);
        (sorted, overwrites)
    }
}

/// Merges the queues of `parts` and appends their pairs to `pairs` (in partition and run
/// order) and each key's sort prefix with the pair's position to `order`; the parts are left
/// empty. How many writes replaced a value in these merges.
fn finish_parts(
    parts: &mut [Part],
    pairs: &mut Vec<(CompactString, CompactString)>,
    order: &mut Vec<SortPos>,
) -> u64 {
    let mut sorting = Sorting::default();
    let mut overwrites = 0;
    // At most this many pairs (a queue's writes are fewer once deduplicated).
    let n = parts.iter().map(|p| p.run.len() + p.queue.refs.len()).sum();
    pairs.reserve_exact(n);
    order.reserve_exact(n);
    for part in parts.iter_mut() {
        let mut part = std::mem::take(part);
        overwrites += part.merge_with(&mut sorting, |r, text| {
            let key = r.key(text);
            let (hi, lo) = kv::sort_prefix_bytes(key);
            order.push((hi, lo, pairs.len()));
            pairs.push((to_string(key), to_string(r.value(text))));
        });
    }
    overwrites
}

/// A key's sort prefix (`kv::sort_prefix_bytes`) and the position of its pair.
type SortPos = (u64, u64, usize);

/// Sorts `order` by key: by sort prefix, then, among equal prefixes, by the whole key (`key`
/// of the position). A large `order` is split at the median of a sample of its prefixes and
/// the two sides are sorted on two threads.
///
/// Why not a comparison sort with the whole key as tie-break, split at the exact median: the
/// comparisons went through a closure call each (the split, on one thread, was a sixth of the
/// end of a large replay). Prefixes alone compare inline; the rare runs of equal prefixes are
/// sorted by the whole key afterwards.
fn sort_positions<'k>(order: &mut [SortPos], key: impl Fn(usize) -> &'k [u8] + Sync) {
    let sort = |v: &mut [SortPos]| -> u64 {
        v.sort_unstable_by_key(|p| (p.0, p.1));
        let mut i = 0;
        while i < v.len() {
            let mut j = i + 1;
            while j < v.len() && (v[j].0, v[j].1) == (v[i].0, v[i].1) {
                j += 1;
            }
            if j > i + 1 {
                v[i..j].sort_unstable_by(|a, b| key(a.2).cmp(key(b.2)));
            }
            i = j;
        }
        0
    };
    const PARALLEL_MIN: usize = 1 << 15;
    if order.len() < PARALLEL_MIN {
        sort(order);
        return;
    }
    let mut sample: Vec<(u64, u64)> = order
        .iter()
        .step_by(order.len() / 1024)
        .map(|p| (p.0, p.1))
        .collect();
    sample.sort_unstable();
    let pivot = sample[sample.len() / 2];
    // Below the pivot first; every position of one prefix lands on the same side.
    let mut mid = 0;
    for i in 0..order.len() {
        if (order[i].0, order[i].1) < pivot {
            order.swap(i, mid);
            mid += 1;
        }
    }
    let (mut low, mut high) = order.split_at_mut(mid);
    two_threads(&mut low, &mut high, |v| sort(v));
}

/// UTF-8 bytes as a string. Every text the runs hold came from a `str` or from ASCII the
/// payload scan checked, so the lossy branch is never taken.
fn to_string(b: &[u8]) -> CompactString {
    CompactString::from_utf8(b)
        .unwrap_or_else(|_| CompactString::from(String::from_utf8_lossy(b).as_ref()))
}

/// Runs `f(a)` on a second thread and `f(b)` on this one (both here when no thread can be
/// started); the sum of their answers.
fn two_threads<T: Send>(mut a: T, mut b: T, f: impl Fn(&mut T) -> u64 + Sync) -> u64 {
    let (here, there) = std::thread::scope(|s| {
        let t = std::thread::Builder::new().spawn_scoped(s, || f(&mut a));
        let here = f(&mut b);
        match t.map(|t| t.join()) {
            Ok(Ok(n)) => (here, Some(n)),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => (here, None),
        }
    });
    here + there.unwrap_or_else(|| f(&mut a))
}

/// `queue` (writes of one partition: their hashes' top bits are equal) sorted by hash into
/// `out`, writes with equal hashes in their order in `queue`.
///
/// A counting pass on the hash bits below the partition's spreads the writes over about half
/// as many buckets as there are writes (a bucket's range of hashes is contiguous, and buckets
/// come in hash order), then each bucket is sorted on its own: a few writes with uniform hashes,
/// so the whole is linear. Every bucket sort is stable, so skewed hashes stay correct, only
/// slower.
fn sort_by_hash(queue: &[Ref], out: &mut Vec<Ref>, counts: &mut Vec<usize>) {
    out.clear();
    out.resize(queue.len(), Ref::default());
    let bits = (usize::BITS - queue.len().leading_zeros())
        .saturating_sub(1)
        .min(16);
    let shift = 64 - PART_BITS - bits;
    let mask = (1usize << bits) - 1;
    let bucket = |h: u64| (h >> shift) as usize & mask;
    counts.clear();
    counts.resize(mask + 2, 0);
    for r in queue {
        counts[bucket(r.hash) + 1] += 1;
    }
    for i in 1..counts.len() {
        counts[i] += counts[i - 1];
    }
    // counts[b] is where bucket b starts; it ends where b + 1 starts.
    for r in queue {
        let b = bucket(r.hash);
        out[counts[b]] = *r;
        counts[b] += 1;
    }
    // Now counts[b] is where bucket b ends.
    let mut from = 0;
    for &to in &counts[..=mask] {
        let slice = &mut out[from..to];
        if slice.len() > 16 {
            slice.sort_by_key(|r| r.hash);
        } else {
            insertion_sort_by_hash(slice);
        }
        from = to;
    }
}

/// A stable insertion sort by hash, for the few writes of a bucket.
#[inline]
fn insertion_sort_by_hash(v: &mut [Ref]) {
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1].hash > x.hash {
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

impl Part {
    /// Merges the queue into the run; returns how many queued writes replaced a value (of the
    /// run, or of an earlier write in the queue).
    fn merge(&mut self, s: &mut Scratch) -> u64 {
        let (merged, mt) = (&mut s.merged, &mut s.merged_text);
        merged.clear();
        mt.clear();
        merged.reserve(self.run.len() + self.queue.refs.len());
        mt.reserve(self.run_text.len() + self.queue.text.len());
        let overwrites = self.merge_with(&mut s.sort, |r, text| merged.push(r.copy(text, mt)));
        std::mem::swap(&mut self.run, merged);
        std::mem::swap(&mut self.run_text, mt);
        overwrites
    }

    /// Hands each pair of the run with the queue merged into it to `emit`, in hash order, with
    /// the text it refers to, and empties the queue (the run is left as it was); returns how
    /// many queued writes replaced a value (of the run, or of an earlier write in the queue).
    fn merge_with(&mut self, s: &mut Sorting, mut emit: impl FnMut(&Ref, &[u8])) -> u64 {
        let mut overwrites = 0;
        sort_by_hash(&self.queue.refs, &mut s.sorted, &mut s.counts);
        // The queue's text in the same order, so that the key comparisons and copies below read
        // both texts in order. Why: in log order, each comparison of a queued key with its
        // run's waited on a cache miss (a tenth of a large replay); here the loads are
        // independent, and overlap.
        let st = &mut s.sorted_text;
        st.clear();
        st.reserve(self.queue.text.len());
        for r in &mut s.sorted {
            *r = r.copy(&self.queue.text, st);
        }
        // The last write of each key, sorted by hash.
        let (q, qt) = (&s.sorted, s.sorted_text.as_slice());
        let dedup = &mut s.dedup;
        dedup.clear();
        let mut i = 0;
        while i < q.len() {
            let mut j = i + 1;
            while j < q.len() && q[j].hash == q[i].hash {
                j += 1;
            }
            if j == i + 1 {
                dedup.push(q[i]);
            } else {
                // Equal hashes: from the last write back, keep the first seen of each key.
                let from = dedup.len();
                for r in q[i..j].iter().rev() {
                    let key = r.key(qt);
                    if dedup[from..].iter().any(|d| d.key(qt) == key) {
                        overwrites += 1;
                    } else {
                        dedup.push(*r);
                    }
                }
            }
            i = j;
        }
        // Merge with the run; a queued write replaces the run's pair of its key.
        let (run, rt) = (&self.run, self.run_text.as_slice());
        let (mut a, mut b) = (0, 0);
        while a < run.len() && b < dedup.len() {
            let (ha, hb) = (run[a].hash, dedup[b].hash);
            if ha < hb {
                emit(&run[a], rt);
                a += 1;
            } else if hb < ha {
                emit(&dedup[b], qt);
                b += 1;
            } else {
                let a_end = a + run[a..].iter().take_while(|r| r.hash == ha).count();
                let b_end = b + dedup[b..].iter().take_while(|r| r.hash == hb).count();
                for r in &run[a..a_end] {
                    let key = r.key(rt);
                    if dedup[b..b_end].iter().any(|d| d.key(qt) == key) {
                        overwrites += 1;
                    } else {
                        emit(r, rt);
                    }
                }
                for d in &dedup[b..b_end] {
                    emit(d, qt);
                }
                (a, b) = (a_end, b_end);
            }
        }
        for r in &run[a..] {
            emit(r, rt);
        }
        for d in &dedup[b..] {
            emit(d, qt);
        }
        self.queue.clear();
        overwrites
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::hash::Hasher;

    proptest! {
        #[test]
        fn sort_by_hash_is_a_stable_sort_by_hash(
            part in 0u64..64,
            hashes in proptest::collection::vec(
                prop_oneof![any::<u64>(), 0u64..4, Just(u64::MAX), (0u64..8).prop_map(|h| h << 40)],
                0..1500),
        ) {
            // One partition's writes; few distinct hashes make large buckets.
            let queue: Vec<Ref> = hashes
                .iter()
                .enumerate()
                .map(|(at, &h)| Ref {
                    hash: part << (64 - PART_BITS) | h >> PART_BITS,
                    at,
                    key: 0,
                    value: 0,
                })
                .collect();
            let mut want = queue.clone();
            want.sort_by_key(|r| r.hash);
            let (mut out, mut counts) = (vec![Ref::default(); 5], Vec::new());
            sort_by_hash(&queue, &mut out, &mut counts);
            let pairs = |v: &[Ref]| v.iter().map(|r| (r.hash, r.at)).collect::<Vec<_>>();
            prop_assert_eq!(pairs(&out), pairs(&want));
        }
    }

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
            // A second state that takes the partitions from `split` on, moved back and forth
            // as the replay's two threads move them.
            let mut other = Runs::empty(hasher.clone());
            let mut split = PARTS;
            for (i, (k, v)) in writes.iter().enumerate() {
                batch.push(hasher, k.as_bytes(), v.as_bytes());
                if batch.len() >= batch_len {
                    overwrites += runs.absorb(&batch, 0..split);
                    overwrites += other.absorb(&batch, split..PARTS);
                    batch.clear();
                    assert_eq!(batch.len(), 0);
                    if i % 3 == 0 && split > 0 {
                        split -= 1;
                        other.take_part(&mut runs, split);
                    } else if i % 5 == 0 && split < PARTS {
                        runs.take_part(&mut other, split);
                        split += 1;
                    }
                }
            }
            for p in split..PARTS {
                runs.take_part(&mut other, p);
            }
            overwrites += runs.absorb(&batch, 0..PARTS);
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

    #[test]
    fn sort_positions_orders_keys_as_bytes_on_both_paths() {
        // Above and below the parallel threshold; keys sharing their 16-byte prefix (long and
        // with zero bytes), a prefix that pads like a shorter key, and many equal prefixes on
        // one side of the split.
        for n in [1_000usize, 40_000] {
            let keys: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                    match i % 4 {
                        0 => format!("k{x}").into_bytes(),
                        1 => format!("a-shared-prefix-16/{x}").into_bytes(),
                        2 => {
                            let mut k = format!("k{}", x % 50).into_bytes();
                            k.resize(k.len() + (x % 3) as usize, 0);
                            k
                        }
                        _ => format!("{x:016}{}", "z".repeat((x % 5) as usize)).into_bytes(),
                    }
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .rev()
                .collect();
            let mut order: Vec<SortPos> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (hi, lo) = kv::sort_prefix_bytes(k);
                    (hi, lo, i)
                })
                .collect();
            sort_positions(&mut order, |i| keys[i].as_slice());
            let got: Vec<&[u8]> = order.iter().map(|p| keys[p.2].as_slice()).collect();
            let mut want: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            want.sort();
            assert_eq!(got, want, "{n} keys");
        }
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
