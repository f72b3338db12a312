//! raftd's key-value state machine (`write` -> put) plus goraft's membership (`raft:join` /
//! `raft:leave`), as goraft applies committed entries.
//!
//! Pure and deterministic: no I/O. Unknown command names are counted, never fatal.

use std::collections::BTreeMap;

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
    /// The key-value map (raftd's `map[string]string`).
    pub data: BTreeMap<String, String>,
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
                let previous = self.data.insert(key.clone(), value);
                Applied::Put { key, previous }
            }
            Command::Join {
                name,
                connection_string,
            } => {
                if self.members.contains_key(&name) {
                    Applied::Joined(false)
                } else {
                    self.members.insert(name, connection_string);
                    Applied::Joined(true)
                }
            }
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

    /// The value of `key` (raftd answers an empty body for a missing key).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
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
        assert_eq!(kv.apply(7, Command::Leave { name: "a".into() }), Applied::Left(true));
        assert!(kv.peers().is_empty());
    }
}
