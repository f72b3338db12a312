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
//! of the queue was a sixth of the applying thread's time. Its text is read in order first
//! (into the cache), then in hash order by the merge. A pair of up to 32 bytes is copied as one
//! block. At the end two threads merge the last queues, cut the keys into ranges at sampled
//! sort prefixes, copy every pair into its range and sort each range on its own: the state is
//! handed over packed in key order ([`kv::Packed`]).
//!
//! The result is what applying the writes one by one to a map would give: within a queue the
//! writes to one key keep their log order and the last one wins; a queue always holds writes
//! later than its run. Keys whose hashes are equal but which differ are kept apart. Pure.

use std::hash::BuildHasher;
use std::ops::Range;

use compact_str::CompactString;

use super::kv::{self, Packed, PackedPair};

/// A write or a state pair: its key's hash, and where its key and value sit in their text
/// buffer (the key at `at`, then the value). 24 bytes: the lengths are 32-bit (see
/// [`LONGEST`]); the refs are a third of the memory a replay moves.
#[derive(Debug, Clone, Copy, Default)]
struct Ref {
    hash: u64,
    at: usize,
    key: u32,
    value: u32,
}

/// The longest key or value the runs hold (their lengths are 32-bit). A write's always fits,
/// unless decoding made it more than three times its 4 GiB frame; a pair of a snapshot may
/// not.
pub(crate) const LONGEST: usize = u32::MAX as usize;

impl Ref {
    #[inline]
    fn key<'t>(&self, text: &'t [u8]) -> &'t [u8] {
        text.get(self.at..self.at + self.key as usize)
            .unwrap_or_default()
    }

    /// The length of its key and value.
    #[inline]
    fn len(&self) -> usize {
        self.key as usize + self.value as usize
    }

    /// Copies the pair from `text` to the end of `to`; the copy's reference.
    #[inline]
    fn copy(&self, text: &[u8], to: &mut Vec<u8>) -> Ref {
        let at = to.len();
        copy_bytes(text, self.at, self.len(), to);
        Ref { at, ..*self }
    }
}

/// Reads one byte of every cache line of `text`, in order, so that it is in the cache before
/// it is read in another order.
///
/// Why: a queue's text was written batch by batch among 63 other queues, so by its merge it
/// has left the core's cache; reading it in hash order then waited on a miss for every write
/// (in a key comparison, or in a copy into hash order: a fifth of the merge). Read in order
/// first, it streams in at the memory's speed, and a partition's queue fits in the cache.
#[inline]
fn warm(text: &[u8]) {
    std::hint::black_box(text.iter().step_by(64).fold(0u8, |a, &b| a ^ b));
}

/// Appends `text[at..at + len]` to `to`.
///
/// Why not `extend_from_slice` alone: a pair is a few dozen bytes, and copying it called
/// `memcpy` for each (millions of calls, a tenth of a large replay). When the 32 bytes from
/// `at` are in `text`, they are copied as one block (inline, two vector moves) and the excess
/// is cut off again.
#[inline]
fn copy_bytes(text: &[u8], at: usize, len: usize, to: &mut Vec<u8>) {
    const BLOCK: usize = 32;
    if len <= BLOCK {
        if let Some(block) = text
            .get(at..at + BLOCK)
            .and_then(|b| <&[u8; BLOCK]>::try_from(b).ok())
        {
            let end = to.len() + len;
            to.extend_from_slice(block);
            to.truncate(end);
            return;
        }
    }
    to.extend_from_slice(text.get(at..at + len).unwrap_or_default());
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
    writes: Vec<(u64, u32, u32)>,
}

impl RunBatch {
    /// Queues a write whose key `hasher` hashes; `key` and `value` are UTF-8. `false` (and
    /// nothing queued) when either is longer than [`LONGEST`].
    #[inline]
    #[must_use]
    pub(crate) fn push(&mut self, hasher: &impl BuildHasher, key: &[u8], value: &[u8]) -> bool {
        let (Ok(k), Ok(v)) = (u32::try_from(key.len()), u32::try_from(value.len())) else {
            return false;
        };
        let hash = hasher.hash_one(key);
        self.text.extend_from_slice(key);
        self.text.extend_from_slice(value);
        self.writes.push((hash, k, v));
        true
    }

    /// Every queued write, key and value, in order.
    pub(crate) fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        let mut at = 0;
        for &(_, key, value) in &self.writes {
            let (k, v) = (key as usize, value as usize);
            f(
                self.text.get(at..at + k).unwrap_or_default(),
                self.text.get(at + k..at + k + v).unwrap_or_default(),
            );
            at += k + v;
        }
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
    /// The queue sorted by hash, writes to one hash in log order (their text stays in the
    /// queue).
    sorted: Vec<Ref>,
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

    /// The state holding `pairs` (distinct keys), whose keys `hasher` hashes; `pairs` back
    /// when a key or value is longer than `longest` (at most [`LONGEST`]).
    pub(crate) fn new(
        pairs: Vec<(CompactString, CompactString)>,
        hasher: S,
        longest: usize,
    ) -> Result<Self, Vec<(CompactString, CompactString)>> {
        let longest = longest.min(LONGEST);
        if pairs
            .iter()
            .any(|(k, v)| k.len() > longest || v.len() > longest)
        {
            return Err(pairs);
        }
        let mut runs = Runs {
            hasher,
            parts: (0..PARTS).map(|_| Part::default()).collect(),
            scratch: Scratch::default(),
        };
        for (k, v) in pairs {
            // Always 32-bit: checked above.
            let (Ok(key), Ok(value)) = (u32::try_from(k.len()), u32::try_from(v.len())) else {
                continue;
            };
            let hash = runs.hasher.hash_one(k.as_bytes());
            let part = &mut runs.parts[part_of(hash)];
            part.run.push(Ref {
                hash,
                at: part.run_text.len(),
                key,
                value,
            });
            part.run_text.extend_from_slice(k.as_bytes());
            part.run_text.extend_from_slice(v.as_bytes());
        }
        for part in &mut runs.parts {
            // Distinct keys: only their order is needed.
            part.run.sort_unstable_by_key(|r| r.hash);
        }
        Ok(runs)
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
            at += key as usize + value as usize;
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

    /// Merges every queue; returns the pairs (distinct keys) packed in key order (by bytes),
    /// and how many writes replaced a value in these last merges. Two threads share every step:
    /// - each merges the last queues of half the partitions into their runs;
    /// - the keys are cut into ranges of about [`RANGE_PAIRS`] pairs, at sort prefixes sampled
    ///   from the runs ([`splitters`]);
    /// - each thread counts the pairs and bytes its partitions give every range, then copies
    ///   each pair, key and value, to the next place of its range: the ranges follow each other
    ///   in one text and one vector of pairs, each thread filling its own share of every range;
    /// - each thread sorts half the ranges, each on its own (about a thousand pairs, in the
    ///   cache).
    ///
    /// Why ranges: the runs hold their pairs in hash order. Sorting all the keys' positions and
    /// then reading the pairs in key order waited on a cache miss for every pair, and making a
    /// string for every key and value in hash order, then again in key order, was most of the
    /// end of a large replay (a third of it page faults for that memory). Here the runs are read
    /// in order, every range is written in order, and nothing else is built: the packed text is
    /// the state handed over.
    pub(crate) fn finish(self) -> (Packed, u64) {
        let Runs {
            hasher: _,
            mut parts,
            scratch,
        } = self;
        let (low, high) = parts.split_at_mut(PARTS / 2);
        let mut halves = [(low, scratch), (high, Scratch::default())];
        let [a, b] = &mut halves;
        let overwrites = two_threads(a, b, |(parts, scratch)| {
            let mut overwrites = 0;
            for part in parts.iter_mut() {
                if !part.queue.refs.is_empty() {
                    overwrites += part.merge(scratch);
                }
                // Freed now: the packed copy below is the next large buffer.
                part.queue = Queue::default();
            }
            overwrites
        });
        drop(halves);
        let packed = pack(&parts, &splitters(&parts));
        (packed, overwrites)
    }
}

/// A key's sort prefix (`kv::sort_prefix_bytes`).
type Prefix = (u64, u64);

/// About this many pairs per key range in [`Runs::finish`].
const RANGE_PAIRS: usize = 1024;

/// The sort prefixes that cut the keys of `parts` into ranges of about [`RANGE_PAIRS`] pairs
/// (distinct and ascending; a key belongs to the range of the first splitter above its
/// prefix). Taken from an even sample of the runs, which hold their keys in hash order, so the
/// sample is as good as random.
fn splitters(parts: &[Part]) -> Vec<Prefix> {
    let n: usize = parts.iter().map(|p| p.run.len()).sum();
    let ranges = (n / RANGE_PAIRS).clamp(1, 4096);
    if ranges == 1 {
        return Vec::new();
    }
    const PER_RANGE: usize = 16;
    let step = (n / (ranges * PER_RANGE)).max(1);
    let mut sample: Vec<Prefix> = parts
        .iter()
        .flat_map(|p| {
            p.run
                .iter()
                .map(|r| kv::sort_prefix_bytes(r.key(&p.run_text)))
        })
        .step_by(step)
        .collect();
    sample.sort_unstable();
    let mut cut: Vec<Prefix> = sample
        .iter()
        .copied()
        .skip(PER_RANGE)
        .step_by(PER_RANGE)
        .collect();
    cut.dedup();
    cut
}

/// The range of a sort prefix (see [`splitters`]). Equal prefixes share a range.
#[inline]
fn range_of(splitters: &[Prefix], prefix: Prefix) -> usize {
    splitters.partition_point(|s| *s <= prefix)
}

/// How many pairs and bytes some partitions give each key range, and each pair's range in run
/// order.
#[derive(Debug, Default)]
struct Tally {
    ranges: Vec<u32>,
    pairs: Vec<usize>,
    bytes: Vec<usize>,
}

impl Tally {
    fn new(parts: &[Part], splitters: &[Prefix]) -> Self {
        let n: usize = parts.iter().map(|p| p.run.len()).sum();
        let mut t = Tally {
            ranges: Vec::with_capacity(n),
            pairs: vec![0; splitters.len() + 1],
            bytes: vec![0; splitters.len() + 1],
        };
        for part in parts {
            for r in &part.run {
                let range = range_of(splitters, kv::sort_prefix_bytes(r.key(&part.run_text)));
                if let (Some(p), Some(b)) = (t.pairs.get_mut(range), t.bytes.get_mut(range)) {
                    *p += 1;
                    *b += r.len();
                }
                t.ranges.push(range as u32);
            }
        }
        t
    }
}

/// One thread's share of every key range: where it starts in the packed pairs and text, and
/// the slices it fills.
struct Share<'a> {
    pairs: Vec<&'a mut [PackedPair]>,
    text: Vec<(usize, &'a mut [u8])>,
}

/// The pairs of the runs packed in key order: see [`Runs::finish`].
fn pack(parts: &[Part], splitters: &[Prefix]) -> Packed {
    let ranges = splitters.len() + 1;
    let (low, high) = parts.split_at(PARTS / 2);
    let mut halves = [(low, Tally::default()), (high, Tally::default())];
    let [a, b] = &mut halves;
    two_threads(a, b, |(parts, tally)| {
        *tally = Tally::new(parts, splitters);
        0
    });
    let [(low, ta), (high, tb)] = halves;
    let n = ta.ranges.len() + tb.ranges.len();
    let bytes = ta.bytes.iter().chain(&tb.bytes).sum();
    let mut pairs = vec![PackedPair::default(); n];
    let mut text = vec![0u8; bytes];
    // Range by range: the low half's share, then the high half's.
    let mut shares = [
        Share {
            pairs: Vec::with_capacity(ranges),
            text: Vec::with_capacity(ranges),
        },
        Share {
            pairs: Vec::with_capacity(ranges),
            text: Vec::with_capacity(ranges),
        },
    ];
    let mut starts = Vec::with_capacity(ranges + 1);
    {
        let (mut rest, mut rest_text) = (pairs.as_mut_slice(), text.as_mut_slice());
        let (mut at_pair, mut at_text) = (0, 0);
        for r in 0..ranges {
            starts.push(at_pair);
            for (share, tally) in shares.iter_mut().zip([&ta, &tb]) {
                let (np, nb) = (tally.pairs[r], tally.bytes[r]);
                let (p, more) = std::mem::take(&mut rest).split_at_mut(np);
                let (t, more_text) = std::mem::take(&mut rest_text).split_at_mut(nb);
                (rest, rest_text) = (more, more_text);
                share.pairs.push(p);
                share.text.push((at_text, t));
                at_pair += np;
                at_text += nb;
            }
        }
        starts.push(at_pair);
        let [sa, sb] = &mut shares;
        let mut jobs = [(low, &ta, sa), (high, &tb, sb)];
        let [a, b] = &mut jobs;
        two_threads(a, b, |(parts, tally, share)| {
            fill(parts, tally, share);
            0
        });
    }
    // Each range sorted on its own; the ranges cut where half the pairs are on each side.
    let mut slices = Vec::with_capacity(ranges);
    let mut rest = pairs.as_mut_slice();
    for w in starts.windows(2) {
        let (range, more) = std::mem::take(&mut rest).split_at_mut(w[1] - w[0]);
        slices.push(range);
        rest = more;
    }
    let mid = starts.partition_point(|&s| 2 * s < n).min(slices.len());
    let (first, second) = slices.split_at_mut(mid);
    let text_ref = &text;
    let key = |p: &PackedPair| text_ref.get(p.at..p.at + p.key).unwrap_or_default();
    let mut halves = [first, second];
    let [a, b] = &mut halves;
    two_threads(a, b, |ranges| {
        for range in ranges.iter_mut() {
            sort_range(range, &key);
        }
        0
    });
    Packed::new(text, pairs)
}

/// Copies each pair of `parts` to the next place of its range in `share`.
fn fill(parts: &[Part], tally: &Tally, share: &mut Share<'_>) {
    let mut next_pair = vec![0usize; share.pairs.len()];
    let mut next_text = vec![0usize; share.text.len()];
    let mut ranges = tally.ranges.iter();
    for part in parts {
        for r in &part.run {
            let range = ranges.next().map_or(0, |&x| x as usize);
            let len = r.len();
            let (Some(slot), Some(at)) = (next_pair.get_mut(range), next_text.get_mut(range))
            else {
                continue;
            };
            let (Some(pairs), Some((base, text))) =
                (share.pairs.get_mut(range), share.text.get_mut(range))
            else {
                continue;
            };
            if let (Some(p), Some(to), Some(from)) = (
                pairs.get_mut(*slot),
                text.get_mut(*at..*at + len),
                part.run_text.get(r.at..r.at + len),
            ) {
                to.copy_from_slice(from);
                *p = PackedPair {
                    prefix: kv::sort_prefix_bytes(r.key(&part.run_text)),
                    at: *base + *at,
                    key: r.key as usize,
                    value: r.value as usize,
                };
            }
            *slot += 1;
            *at += len;
        }
    }
}

/// Sorts one range's pairs by key (by bytes): by sort prefix, then by the whole key among equal
/// prefixes.
fn sort_range<'t>(range: &mut [PackedPair], key: &impl Fn(&PackedPair) -> &'t [u8]) {
    range.sort_unstable_by_key(|p| p.prefix);
    let mut i = 0;
    while i < range.len() {
        let mut j = i + 1;
        while j < range.len() && range[j].prefix == range[i].prefix {
            j += 1;
        }
        if j > i + 1 {
            range[i..j].sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
        i = j;
    }
}

/// `f(a)` and `f(b)` side by side ([`crate::par::join`]); the sum of their answers.
fn two_threads<T: Send>(mut a: T, mut b: T, f: impl Fn(&mut T) -> u64 + Sync) -> u64 {
    let (there, here) = crate::par::join(|| f(&mut a), || f(&mut b));
    here + there
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
        // The comparisons and copies below read the queue's text in hash order: brought into
        // the cache first (see `warm`). Why not a copy of it in hash order, as before: the copy
        // cost more than the few misses left.
        warm(&self.queue.text);
        // The last write of each key, sorted by hash.
        let (q, qt) = (&s.sorted, self.queue.text.as_slice());
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
                    .map(|(k, v)| (CompactString::new(k), CompactString::new(v)))
                    .collect(),
                hasher.clone(),
                LONGEST,
            )
            .unwrap();
            let mut batch = RunBatch::default();
            let mut overwrites = 0;
            // A second state that takes the partitions from `split` on, moved back and forth
            // as the replay's two threads move them.
            let mut other = Runs::empty(hasher.clone());
            let mut split = PARTS;
            for (i, (k, v)) in writes.iter().enumerate() {
                assert!(batch.push(hasher, k.as_bytes(), v.as_bytes()));
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
            let (packed, n) = runs.finish();
            overwrites += n;
            let pairs: Vec<(&str, &str)> = packed.iter().collect();
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
    fn copy_bytes_appends_exactly_the_range_with_a_block_or_without() {
        let text: Vec<u8> = (0..100u8).collect();
        for at in [0, 1, 50, 67, 68, 69, 90, 99, 100] {
            for len in [0, 1, 15, 16, 31, 32, 33, 40] {
                if at + len > text.len() {
                    continue;
                }
                let mut to = b"xy".to_vec();
                copy_bytes(&text, at, len, &mut to);
                let mut want = b"xy".to_vec();
                want.extend_from_slice(&text[at..at + len]);
                assert_eq!(to, want, "at {at}, len {len}");
            }
        }
    }

    #[test]
    fn finish_orders_keys_as_bytes_in_one_range_or_many() {
        // One key range and many; keys sharing their 16-byte prefix (long and with zero bytes),
        // a prefix that pads like a shorter key, many equal prefixes (so ranges with runs of
        // them), and non-ASCII keys.
        for n in [1_000usize, 40_000] {
            let keys: Vec<String> = (0..n)
                .map(|i| {
                    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                    match i % 5 {
                        0 => format!("k{x}"),
                        1 => format!("a-shared-prefix-16/{x}"),
                        2 => {
                            let mut k = format!("k{}", x % 50);
                            k.extend(std::iter::repeat_n('\0', (x % 3) as usize));
                            k
                        }
                        3 => format!("\u{e9}{x}\u{2028}"),
                        _ => format!("{x:016}{}", "z".repeat((x % 5) as usize)),
                    }
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let pairs: Vec<_> = keys
                .iter()
                .map(|k| (CompactString::new(k), CompactString::new(format!("v{k}"))))
                .collect();
            let runs = Runs::new(pairs.clone(), KeyHasher::default(), LONGEST).unwrap();
            let longest = keys.iter().map(|k| k.len() + 1).max().unwrap_or(0);
            assert_eq!(
                Runs::new(pairs.clone(), KeyHasher::default(), longest - 1).err(),
                Some(pairs),
                "a pair too long is handed back"
            );
            if n > RANGE_PAIRS * 2 {
                assert!(splitters(&runs.parts).len() > 8, "{n} keys: several ranges");
            }
            let (packed, overwrites) = runs.finish();
            let got: Vec<(&str, &str)> = packed.iter().collect();
            let want: Vec<(String, String)> =
                keys.iter().map(|k| (k.clone(), format!("v{k}"))).collect();
            let want: Vec<(&str, &str)> =
                want.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(got, want, "{n} keys");
            assert_eq!(overwrites, 0);
            for (k, v) in want.iter().step_by(37) {
                assert_eq!(packed.get(k), Some(*v), "{k:?}");
            }
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
