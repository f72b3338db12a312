//! raftd's key-value state machine (`write` -> put) plus goraft's membership (`raft:join` /
//! `raft:leave`), as goraft applies committed entries.
//!
//! Pure and deterministic: no I/O. Unknown command names are counted, never fatal.

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
    /// The key-value map (raftd's `map[string]string`). A hash map of inline strings: a long log
    /// overwrites keys millions of times, and ordered search plus one heap string per key and
    /// value cost more than everything else in replay (cache misses). [`Kv::sorted`] gives key
    /// order for output. The hasher is seeded per process, so keys sent to `serve` cannot be
    /// chosen to collide.
    pub data: HashMap<CompactString, CompactString, foldhash::fast::RandomState>,
    /// Every member that joined and did not leave, by name (goraft's peers plus self).
    pub members: BTreeMap<String, String>,
    /// The index of the last applied entry.
    pub applied: Index,
    /// Entries with unknown command names, skipped.
    pub unknown: u64,
    /// Entries with known names whose payload did not decode, skipped.
    pub invalid: u64,
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
                    v.insert(connection_string);
                    Applied::Joined(true)
                }
            },
            Command::Leave { name } => Applied::Left(self.members.remove(&name).is_some()),
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

    /// The pairs in key order.
    pub fn sorted(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        v
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
        self.data.get(key).map(CompactString::as_str)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
