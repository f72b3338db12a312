//! raftd's key-value state machine (`write` -> put) plus goraft's membership (`raft:join` /
//! `raft:leave`), as goraft applies committed entries.
//!
//! Pure and deterministic: no I/O. Unknown command names are counted, never fatal.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use compact_str::CompactString;

use crate::model::{Command, Index, Peer};

/// What applying one entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A key was set; `previous` is its old value.
    Put {
        /// The key.
        key: String,
        /// The value before, if any.
        previous: Option<String>,
    },
    /// A member was added (`false` when it was already known: goraft ignores a duplicate join).
    Joined(bool),
    /// A member was removed (`false` when it was unknown).
    Left(bool),
    /// Nothing (nop).
    Nothing,
    /// A command name raftd does not register; goraft would not apply it.
    Unknown,
    /// A known name whose payload goraft cannot decode; never applied.
    Invalid,
}

/// The state of a raftd node: its key-value map and the members it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    /// The key-value map (raftd's `map[string]string`); see [`KvMap`]. [`Kv::sorted`] gives key
    /// order for output.
    pub data: KvMap,
    /// Every member that joined and did not leave, by name (goraft's peers plus self).
    pub members: BTreeMap<String, String>,
    /// Every member removed by a `raft:leave`, with the leave's index (a later join of the
    /// name takes it out again).
    pub removed: BTreeMap<String, Index>,
    /// The index of the last applied entry.
    pub applied: Index,
    /// Entries with unknown command names, skipped.
    pub unknown: u64,
    /// Entries with known names whose payload did not decode, skipped.
    pub invalid: u64,
    /// Writes queued by [`Kv::put_batched`], not yet in `data`.
    pending: Batch,
    /// Overwrites found while applying queued writes, not yet taken by [`Kv::flush`].
    pending_overwrites: u64,
}

/// How many partitions [`KvMap`] splits the keys into.
const PARTS: usize = 64;
/// How many queued writes [`Kv::put_batched`] holds before it applies them.
pub const BATCH: usize = 1 << 16;
/// The hasher that sends a key to its partition. Fixed, so that the partition of a key does not
/// depend on the process (equal maps compare equal, and a [`Batch`] can be filled without its
/// map); each partition's own hasher is seeded per process.
const ROUTER: foldhash::fast::FixedState =
    foldhash::fast::FixedState::with_seed(0x5261_6674_6475_6d70);

/// The partition of `key`.
#[inline]
fn part_of(key: &str) -> usize {
    use std::hash::BuildHasher as _;
    (ROUTER.hash_one(key) >> 58) as usize
}

/// raftd's key-value map, as 64 hash maps of inline strings partitioned by key hash; or, once
/// [`KvMap::sort`] has run (or as a bulk replay hands it over) and until the next write, every
/// pair in key order in one [`Packed`] text.
///
/// Why partitions: a long log overwrites keys millions of times in an order with no locality,
/// and one big map turns every write into cache misses (a heap string per key and value made it
/// worse). Writes queued per partition and applied partition by partition touch one small map at
/// a time, which stays in the CPU cache. The hasher is seeded per process, so keys sent to
/// `serve` cannot be chosen to collide.
///
/// Why the packed form: writing a large state out in key order through references into the hash
/// maps waited on a cache miss per pair (three quarters of that output's time); the pairs laid
/// out in key order are read in order. One text instead of a string per key and value: making
/// those strings, and the memory for them, was most of the end of a large replay.
#[derive(Debug, Clone)]
pub struct KvMap {
    parts: Vec<HashMap<CompactString, CompactString, foldhash::fast::RandomState>>,
    /// The pairs in key order (by bytes), when packed; then every partition is empty.
    packed: Packed,
}

impl Default for KvMap {
    fn default() -> Self {
        KvMap {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
            packed: Packed::default(),
        }
    }
}

/// Pairs with distinct keys in key order (by bytes), their keys and values in one text.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    text: String,
    pairs: Vec<PackedPair>,
}

/// A pair of a [`Packed`]: its key's sort prefix ([`sort_prefix_bytes`]) and where its key and
/// value sit in the text (the key at `at`, then the value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PackedPair {
    pub(crate) prefix: (u64, u64),
    pub(crate) at: usize,
    pub(crate) key: usize,
    pub(crate) value: usize,
}

impl Packed {
    /// The pairs `pairs` (distinct keys, in key order) whose keys and values are in `text`. A
    /// text that is not UTF-8 (no caller builds one) is packed again with each key and value
    /// made valid on its own, as `String::from_utf8_lossy` does.
    pub(crate) fn new(text: Vec<u8>, pairs: Vec<PackedPair>) -> Self {
        match String::from_utf8(text) {
            Ok(text) => Packed { text, pairs },
            Err(e) => {
                let text = e.into_bytes();
                let bytes =
                    |from: usize, len: usize| text.get(from..from + len).unwrap_or_default();
                let lossy: Vec<(String, String)> = pairs
                    .iter()
                    .map(|p| {
                        let (k, v) = (bytes(p.at, p.key), bytes(p.at + p.key, p.value));
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                Packed::from_pairs(&lossy)
            }
        }
    }

    /// `pairs` (distinct keys, in no particular order) packed in key order.
    fn from_pairs<K: AsRef<str> + Sync, V: AsRef<str> + Sync>(all: &[(K, V)]) -> Self {
        let mut order: Vec<SortPos> = all
            .iter()
            .enumerate()
            .map(|(i, (k, _))| {
                let (hi, lo) = sort_prefix(k.as_ref());
                (hi, lo, i)
            })
            .collect();
        let cmp = |a: &SortPos, b: &SortPos| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| all[a.2].0.as_ref().cmp(all[b.2].0.as_ref()))
        };
        sort_by_in_halves(&mut order, cmp);
        let bytes = all
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(bytes);
        let mut pairs = Vec::with_capacity(all.len());
        for (hi, lo, i) in order {
            let (k, v) = (all[i].0.as_ref(), all[i].1.as_ref());
            pairs.push(PackedPair {
                prefix: (hi, lo),
                at: text.len(),
                key: k.len(),
                value: v.len(),
            });
            text.push_str(k);
            text.push_str(v);
        }
        Packed { text, pairs }
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Pair `i` (in key order), empty strings past the end.
    #[inline]
    pub fn pair(&self, i: usize) -> (&str, &str) {
        self.pairs.get(i).map_or(("", ""), |p| self.strs(p))
    }

    #[inline]
    fn strs(&self, p: &PackedPair) -> (&str, &str) {
        let key_end = p.at + p.key;
        (
            self.text.get(p.at..key_end).unwrap_or_default(),
            self.text
                .get(key_end..key_end + p.value)
                .unwrap_or_default(),
        )
    }

    /// Every pair, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|p| self.strs(p))
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        let prefix = sort_prefix(key);
        self.pairs
            .binary_search_by(|p| p.prefix.cmp(&prefix).then_with(|| self.strs(p).0.cmp(key)))
            .ok()
            .map(|i| self.pair(i).1)
    }
}

impl KvMap {
    #[inline]
    fn part(&self, key: &str) -> usize {
        part_of(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        if !self.packed.is_empty() {
            return self.packed.get(key);
        }
        self.parts[self.part(key)]
            .get(key)
            .map(CompactString::as_str)
    }

    /// The value of `key`, mutable (the pairs move back into the hash maps first).
    pub fn get_mut(&mut self, key: &str) -> Option<&mut CompactString> {
        self.unpack();
        let p = self.part(key);
        self.parts[p].get_mut(key)
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: CompactString, value: CompactString) -> Option<CompactString> {
        self.unpack();
        let p = self.part(&key);
        self.parts[p].insert(key, value)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.parts.iter().map(HashMap::len).sum::<usize>() + self.packed.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty() && self.parts.iter().all(HashMap::is_empty)
    }

    /// Every pair, in no particular order (in key order when packed).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.parts
            .iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .chain(self.packed.iter())
    }

    /// Packs every pair in key order (by bytes), for reading the whole state out in order; the
    /// hash maps are freed as they are emptied. Lookups still work (by binary search); the next
    /// write puts the pairs back into the hash maps.
    pub fn sort(&mut self) {
        if self.parts.iter().all(HashMap::is_empty) {
            return;
        }
        let mut all = self.packed_pairs();
        for part in &mut self.parts {
            all.extend(std::mem::take(part));
        }
        self.packed = Packed::from_pairs(&all);
    }

    /// The map holding `packed`, in its packed form.
    pub(crate) fn from_packed(packed: Packed) -> Self {
        KvMap {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
            packed,
        }
    }

    /// Every pair, in no particular order.
    pub(crate) fn into_pairs(mut self) -> Vec<(CompactString, CompactString)> {
        let mut all = self.packed_pairs();
        for part in &mut self.parts {
            all.extend(std::mem::take(part));
        }
        all
    }

    /// The packed pairs as strings (the packed form is left empty).
    fn packed_pairs(&mut self) -> Vec<(CompactString, CompactString)> {
        let packed = std::mem::take(&mut self.packed);
        packed
            .iter()
            .map(|(k, v)| (CompactString::new(k), CompactString::new(v)))
            .collect()
    }

    /// Whether the pairs are held in key order (see [`KvMap::sort`]).
    pub fn is_sorted(&self) -> bool {
        self.parts.iter().all(HashMap::is_empty)
    }

    /// The pairs in key order, when they are held so (see [`KvMap::sort`]): for writing a large
    /// state out without a vector of references to it.
    pub fn packed(&self) -> Option<&Packed> {
        self.is_sorted().then_some(&self.packed)
    }

    /// Puts the packed pairs back into the hash maps.
    fn unpack(&mut self) {
        if self.packed.is_empty() {
            return;
        }
        for (k, v) in self.packed_pairs() {
            let p = self.part(&k);
            self.parts[p].insert(k, v);
        }
    }
}

impl PartialEq for KvMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Eq for KvMap {}

impl FromIterator<(CompactString, CompactString)> for KvMap {
    fn from_iter<I: IntoIterator<Item = (CompactString, CompactString)>>(iter: I) -> Self {
        let mut m = KvMap::default();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

/// Writes queued by partition of a [`KvMap`], applied to it later in one pass, partition by
/// partition (see [`KvMap`] for why). Writes to one key keep their order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    parts: Vec<Vec<(CompactString, CompactString)>>,
    len: usize,
}

/// Equal when the same writes are queued per partition: an empty batch whose partition
/// queues were allocated equals one never used.
impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        fn queue(b: &Batch, p: usize) -> &[(CompactString, CompactString)] {
            b.parts.get(p).map_or(&[], Vec::as_slice)
        }
        self.len == other.len && (0..PARTS).all(|p| queue(self, p) == queue(other, p))
    }
}

impl Eq for Batch {}

impl Batch {
    /// Queues a write.
    #[inline]
    pub fn push(&mut self, key: &str, value: &str) {
        if self.parts.is_empty() {
            self.parts = (0..PARTS).map(|_| Vec::new()).collect();
        }
        self.parts[part_of(key)].push((CompactString::new(key), CompactString::new(value)));
        self.len += 1;
    }

    /// The number of queued writes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no write is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Applies the queued writes to `map`, as [`Kv::put_str`] would one by one; returns how many
    /// replaced a value. The batch is left empty, its capacity kept for the next one.
    pub fn apply_to(&mut self, map: &mut KvMap) -> u64 {
        if self.len == 0 {
            return 0;
        }
        map.unpack();
        let mut overwrites = 0;
        for (p, queue) in self.parts.iter_mut().enumerate() {
            let map = &mut map.parts[p];
            for (k, v) in queue.drain(..) {
                // One probe for a new key too (get_mut then insert probed twice).
                match map.entry(k) {
                    Entry::Occupied(mut old) => {
                        *old.get_mut() = v;
                        overwrites += 1;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(v);
                    }
                }
            }
        }
        self.len = 0;
        overwrites
    }
}

impl Kv {
    /// An empty state.
    pub fn new() -> Self {
        Kv::default()
    }

    /// Applies one committed entry's command at `index`.
    pub fn apply(&mut self, index: Index, command: Command) -> Applied {
        self.applied = index;
        match command {
            Command::Write { key, value } => {
                let previous = self.put_str(index, &key, &value).map(String::from);
                Applied::Put { key, previous }
            }
            Command::Join {
                name,
                connection_string,
            } => match self.members.entry(name) {
                std::collections::btree_map::Entry::Occupied(_) => Applied::Joined(false),
                std::collections::btree_map::Entry::Vacant(v) => {
                    self.removed.remove(v.key());
                    v.insert(connection_string);
                    Applied::Joined(true)
                }
            },
            Command::Leave { name } => {
                let left = self.members.remove(&name).is_some();
                if left {
                    self.removed.insert(name, index);
                }
                Applied::Left(left)
            }
            Command::Nop => Applied::Nothing,
            Command::Other { .. } => {
                self.unknown += 1;
                Applied::Unknown
            }
            Command::Invalid { .. } => {
                self.invalid += 1;
                Applied::Invalid
            }
        }
    }

    /// Applies a `write` at `index` without building a [`Command`]: the same effect as
    /// `apply(index, Command::Write { key, value })`, returning the previous value. An overwrite
    /// replaces the value in place. Replay's per-entry path uses it.
    pub fn put_str(&mut self, index: Index, key: &str, value: &str) -> Option<CompactString> {
        self.applied = index;
        match self.data.get_mut(key) {
            Some(v) => Some(std::mem::replace(v, CompactString::new(value))),
            None => {
                self.data
                    .insert(CompactString::new(key), CompactString::new(value));
                None
            }
        }
    }

    /// Queues a `write` at `index`: the same effect as [`Kv::put_str`] once [`Kv::flush`] has run
    /// (queued writes to one key keep their order). For streaming a long log; `get`, `sorted`
    /// and `data` do not see queued writes until the flush.
    pub fn put_batched(&mut self, index: Index, key: &str, value: &str) {
        self.applied = index;
        self.pending.push(key, value);
        if self.pending.len() >= BATCH {
            self.apply_pending();
        }
    }

    fn apply_pending(&mut self) {
        self.pending_overwrites += self.pending.apply_to(&mut self.data);
    }

    /// Applies every queued write; returns how many of the writes queued since the last flush
    /// replaced an existing value.
    pub fn flush(&mut self) -> u64 {
        self.apply_pending();
        std::mem::take(&mut self.pending_overwrites)
    }

    /// The pairs in key order (by bytes).
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        if let Some(packed) = self.data.packed() {
            // Already in order (see `KvMap::sort`): no reference into a hash map.
            return packed.iter().collect();
        }
        // Each key's first 16 bytes as two big-endian integers decide almost every comparison
        // without a call to memcmp (sorting the 250,000 keys of a large state spent most of its
        // time there); equal prefixes fall back to comparing the whole keys. The sorted vector
        // is then narrowed in place (same alignment), so the sort costs no second allocation.
        let mut v: Vec<SortItem<'_>> = self
            .data
            .iter()
            .map(|(k, v)| {
                let (hi, lo) = sort_prefix(k);
                (hi, lo, k, v)
            })
            .collect();
        let cmp = |a: &SortItem<'_>, b: &SortItem<'_>| {
            (a.0, a.1).cmp(&(b.0, b.1)).then_with(|| a.2.cmp(b.2))
        };
        sort_by_in_halves(&mut v, cmp);
        v.into_iter().map(|(_, _, k, v)| (k, v)).collect()
    }

    /// The total size of the keys and values held, in bytes.
    pub fn state_bytes(&self) -> u64 {
        self.data
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// The map as owned, ordered strings (for comparing with an expected state).
    pub fn to_btree(&self) -> BTreeMap<String, String> {
        self.data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The value of `key` (raftd answers an empty body for a missing key).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key)
    }

    /// The members as peers, sorted by name.
    pub fn peers(&self) -> Vec<Peer> {
        self.members
            .iter()
            .map(|(name, cs)| Peer {
                name: name.clone(),
                connection_string: cs.clone(),
            })
            .collect()
    }
}

/// Sorts `v` with `cmp`; a large `v` is split around its median (linear) and the halves are
/// sorted on two threads.
fn sort_by_in_halves<T: Send>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering + Sync) {
    if v.len() < PARALLEL_SORT_MIN {
        v.sort_unstable_by(&cmp);
        return;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, &cmp);
    let (low, high) = v.split_at_mut(mid);
    let cmp = &cmp;
    crate::par::join(|| high.sort_unstable_by(cmp), || low.sort_unstable_by(cmp));
}

/// A key's sort prefix (see [`sort_prefix`]) and the position of its pair.
type SortPos = (u64, u64, usize);

/// A pair with its key's sort prefix (see [`sort_prefix`]).
type SortItem<'a> = (u64, u64, &'a str, &'a str);

/// From how many keys [`Kv::sorted`] (and [`KvMap::sort`]) sorts on two threads.
const PARALLEL_SORT_MIN: usize = 1 << 15;

/// The first 16 bytes of `s` (zero-padded) as two big-endian integers: when two of them differ,
/// they order as the strings do (a zero pad sorts like the end of a shorter string).
#[inline]
fn sort_prefix(s: &str) -> (u64, u64) {
    sort_prefix_bytes(s.as_bytes())
}

/// [`sort_prefix`] of bytes.
#[inline]
pub(crate) fn sort_prefix_bytes(b: &[u8]) -> (u64, u64) {
    let mut buf = [0u8; 16];
    let n = b.len().min(16);
    buf[..n].copy_from_slice(&b[..n]);
    let [a0, a1, a2, a3, a4, a5, a6, a7, b0, b1, b2, b3, b4, b5, b6, b7] = buf;
    (
        u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]),
        u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sorted_orders_keys_as_bytes(
            keys in proptest::collection::btree_set("[a\\x00-\\x02\u{e9}]{0,20}", 0..40)
        ) {
            let kv = Kv {
                data: keys.iter().map(|k| (k.into(), CompactString::new("v"))).collect(),
                ..Kv::default()
            };
            let got: Vec<&str> = kv.sorted().into_iter().map(|(k, _)| k).collect();
            let want: Vec<&str> = keys.iter().map(String::as_str).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_large_state_sorts_on_two_threads_in_byte_order() {
        // Above PARALLEL_SORT_MIN; keys sharing their first 16 bytes, keys shorter than 16,
        // and a key with a zero byte.
        let n = PARALLEL_SORT_MIN as u64 + 1001;
        let mut keys: Vec<String> = (0..n)
            .map(|i| match i % 3 {
                0 => format!(
                    "shared-prefix-16{:x}",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ),
                1 => format!("{}", i.wrapping_mul(0x2545_f491_4f6c_dd1d) % 100_000_000),
                _ => format!("k\0{i}"),
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert!(keys.len() >= PARALLEL_SORT_MIN);
        let kv = Kv {
            data: keys
                .iter()
                .map(|k| (CompactString::new(k), CompactString::new("v")))
                .collect(),
            ..Kv::default()
        };
        let got: Vec<&str> = kv.sorted().into_iter().map(|(k, _)| k).collect();
        assert_eq!(got.len(), keys.len());
        assert!(got.iter().eq(keys.iter()), "not in byte order");
    }

    #[test]
    fn sorted_handles_shared_prefixes_and_zero_bytes() {
        let keys = [
            "",
            "\0",
            "a",
            "a\0",
            "a\0\0",
            "aaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaa\0",
            "aaaaaaaaaaaaaaaab",
            "aaaaaaaaaaaaaaab",
            "b",
            "\u{e9}",
        ];
        let kv = Kv {
            data: keys
                .iter()
                .rev()
                .map(|k| (CompactString::new(k), CompactString::new(*k)))
                .collect(),
            ..Kv::default()
        };
        let got: Vec<(&str, &str)> = kv.sorted();
        let mut want: Vec<(&str, &str)> = keys.iter().map(|k| (*k, *k)).collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(
            got[7].0, "aaaaaaaaaaaaaaaab",
            "a 17-byte key sorts by its whole bytes"
        );
    }

    #[test]
    fn the_sorted_form_answers_as_the_hash_maps_do() {
        // Keys sharing their first 16 bytes, keys with zero bytes, long (heap) keys and values,
        // the empty key; enough of them for the two-thread sort.
        let mut keys: Vec<String> = (0..PARALLEL_SORT_MIN as u64 + 777)
            .map(|i| match i % 4 {
                0 => format!("shared-prefix-16{}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                1 => format!("k\0{i}"),
                2 => format!("{}{i}", "long".repeat(10)),
                _ => format!("{i}"),
            })
            .collect();
        keys.extend(
            [
                "",
                "\0",
                "a",
                "a\0",
                "\u{e9}",
                "aaaaaaaaaaaaaaaa",
                "aaaaaaaaaaaaaaaa\0",
            ]
            .map(String::from),
        );
        let pairs = || {
            keys.iter().enumerate().map(|(i, k)| {
                (
                    CompactString::new(k),
                    CompactString::new(format!("{i}").repeat(i % 9)),
                )
            })
        };
        let hashed = Kv {
            data: pairs().collect(),
            ..Kv::default()
        };
        let mut sorted = hashed.clone();
        sorted.data.sort();
        assert!(sorted.data.is_sorted() && !hashed.data.is_sorted());
        assert_eq!(sorted.data.len(), keys.len());
        assert_eq!(sorted.data, hashed.data);
        assert_eq!(sorted.sorted(), hashed.sorted());
        assert!(hashed.data.packed().is_none());
        let packed = sorted.data.packed().unwrap();
        let by_index: Vec<_> = (0..packed.len()).map(|i| packed.pair(i)).collect();
        assert_eq!(by_index, hashed.sorted());
        assert_eq!(packed.pair(packed.len()), ("", ""), "past the end");
        let mut want: Vec<&str> = keys.iter().map(String::as_str).collect();
        want.sort();
        let got: Vec<&str> = sorted.data.iter().map(|(k, _)| k).collect();
        assert_eq!(got, want, "iter walks the packed form in key order");
        for k in keys.iter().step_by(97).chain(&keys[keys.len() - 7..]) {
            assert_eq!(sorted.get(k), hashed.get(k), "{k:?}");
        }
        assert_eq!((sorted.get("missing"), sorted.get("a\0\0")), (None, None));
        // A write in place (back to the hash maps), then an insert: nothing lost.
        *sorted.data.get_mut("a").unwrap() = "changed".into();
        assert_eq!(sorted.get("a"), Some("changed"));
        assert!(!sorted.data.is_sorted());
        assert_eq!(sorted.data.len(), keys.len());
        sorted.data.sort();
        assert_eq!(sorted.get("a"), Some("changed"));
        assert_eq!(sorted.put_str(9, "new", "n"), None);
        assert!(!sorted.data.is_sorted());
        assert_eq!(sorted.data.len(), keys.len() + 1);
        assert_eq!(
            (sorted.get("a"), sorted.get("new")),
            (Some("changed"), Some("n"))
        );
        // Queued writes after a sort land in the hash maps too.
        sorted.data.sort();
        sorted.put_batched(10, "a", "again");
        assert_eq!(sorted.flush(), 1);
        assert_eq!(sorted.get("a"), Some("again"));
        // An empty map stays empty.
        let mut empty = KvMap::default();
        empty.sort();
        assert!(empty.is_empty() && empty.iter().next().is_none());
    }

    #[test]
    fn a_packed_text_that_is_not_utf8_is_made_valid_pair_by_pair() {
        let text = b"k1\xffv1k2v2".to_vec();
        let pairs = vec![
            PackedPair {
                prefix: sort_prefix_bytes(b"k1\xff"),
                at: 0,
                key: 3,
                value: 2,
            },
            PackedPair {
                prefix: sort_prefix("k2"),
                at: 5,
                key: 2,
                value: 2,
            },
        ];
        let packed = Packed::new(text, pairs);
        let got: Vec<_> = packed.iter().collect();
        assert_eq!(got, [("k1\u{fffd}", "v1"), ("k2", "v2")]);
        assert_eq!(
            (packed.get("k2"), packed.get("k1\u{fffd}"), packed.get("k1")),
            (Some("v2"), Some("v1"), None)
        );
    }

    #[test]
    fn batched_puts_equal_direct_puts() {
        let (mut a, mut b) = (Kv::new(), Kv::new());
        let mut overwrites = 0;
        for i in 0..200_000u64 {
            let (k, v) = (format!("k{}", i % 70_001), format!("v{i}"));
            overwrites += u64::from(a.put_str(i + 1, &k, &v).is_some());
            b.put_batched(i + 1, &k, &v);
        }
        assert_eq!(b.flush(), overwrites);
        assert_eq!(b.flush(), 0);
        assert_eq!((a.to_btree(), a.applied), (b.to_btree(), b.applied));
        assert_eq!(a.data.len(), 70_001);
        assert_eq!(b.get("k5"), Some("v140007"));
    }

    #[test]
    fn writes_joins_and_unknowns() {
        let mut kv = Kv::new();
        let join = Command::Join {
            name: "a".into(),
            connection_string: "http://x".into(),
        };
        assert_eq!(kv.apply(1, join.clone()), Applied::Joined(true));
        assert_eq!(kv.apply(2, join), Applied::Joined(false));
        assert_eq!(kv.apply(3, Command::Nop), Applied::Nothing);
        let w = |v: &str| Command::Write {
            key: "k".into(),
            value: v.into(),
        };
        assert_eq!(
            kv.apply(4, w("1")),
            Applied::Put {
                key: "k".into(),
                previous: None
            }
        );
        assert_eq!(
            kv.apply(5, w("2")),
            Applied::Put {
                key: "k".into(),
                previous: Some("1".into())
            }
        );
        assert_eq!(kv.apply(6, Command::Other { json: None }), Applied::Unknown);
        assert_eq!((kv.get("k"), kv.applied, kv.unknown), (Some("2"), 6, 1));
        assert_eq!(
            kv.apply(7, Command::Leave { name: "a".into() }),
            Applied::Left(true)
        );
        assert!(kv.peers().is_empty());
        assert_eq!(kv.removed.get("a"), Some(&7));
        // A leave of a non-member removes nothing; a join again takes the name out.
        assert_eq!(
            kv.apply(8, Command::Leave { name: "b".into() }),
            Applied::Left(false)
        );
        let rejoin = Command::Join {
            name: "a".into(),
            connection_string: "http://y".into(),
        };
        assert_eq!(kv.apply(9, rejoin), Applied::Joined(true));
        assert!(kv.removed.is_empty());
    }
}
