//! The SeaweedFS master's state machine: the highest volume id handed out and the cluster's
//! topology id, as the master's `MaxVolumeId` command and its snapshot state hold them.
//!
//! A master appends `MaxVolumeId` with the JSON `{"maxVolumeId":N,"topologyId":"..."}` (older
//! versions: `{"maxVolumeId":N}`) each time it creates a volume. Applying it raises the max volume
//! id and never lowers it (the master's `UpAdjustMaxVolumeId`), and sets the topology id when the
//! command carries a non-empty one. The master's snapshot state is the same JSON, and loading a
//! snapshot applies it the same way. See docs/format.md, 'SeaweedFS masters'.
//!
//! Pure: bytes in, state out. Decoding follows Go's `encoding/json` ([`gojson::decode_fields`]):
//! a payload Go would refuse is an error here, counted by the replay as an invalid command.

use std::borrow::Cow;

use crate::format::gojson::{self, GoValue, JsonError, Kind};

/// The command name SeaweedFS registers with goraft.
pub const COMMAND: &[u8] = b"MaxVolumeId";

/// What a `MaxVolumeId` command or a snapshot state carries (the topology id borrowed from the
/// payload when it has no escape).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeIdCommand<'a> {
    /// `maxVolumeId` (0 when absent or null, as Go leaves it).
    pub max_volume_id: u32,
    /// `topologyId` (empty when absent or null).
    pub topology_id: Cow<'a, str>,
}

/// Decodes a `MaxVolumeId` payload (or a snapshot state) as the master's Go code does.
///
/// # Errors
/// The payload is not JSON Go decodes into the command: a syntax error, or a field of the wrong
/// type (a `maxVolumeId` that is negative, fractional or beyond 32 bits, or not a number).
pub fn decode(payload: &[u8]) -> Result<VolumeIdCommand<'_>, JsonError> {
    let [id, topology] = gojson::decode_fields(
        payload,
        [("maxVolumeId", Kind::Uint32), ("topologyId", Kind::String)],
    )?;
    Ok(VolumeIdCommand {
        max_volume_id: match id {
            Some(GoValue::Uint32(n)) => n,
            _ => 0,
        },
        topology_id: match topology {
            Some(GoValue::String(s)) => s,
            _ => Cow::Borrowed(""),
        },
    })
}

pub use crate::format::dialect::is_master_state;

/// The master's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Master {
    /// The highest volume id handed out.
    pub max_volume_id: u32,
    /// The cluster's topology id (empty until one is set).
    pub topology_id: String,
}

/// What applying a command changed: the previous value of each field that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// The max volume id before it went up.
    pub max_volume_id: Option<u32>,
    /// The topology id before it changed (empty when none was set).
    pub topology_id: Option<String>,
}

impl Master {
    /// Applies a decoded command: the max volume id only goes up; a non-empty topology id
    /// replaces the current one.
    /// Allocates only when the topology id changes (rarely: once per cluster in practice).
    pub fn apply(&mut self, c: VolumeIdCommand<'_>) -> Changed {
        let mut changed = Changed::default();
        if c.max_volume_id > self.max_volume_id {
            changed.max_volume_id = Some(self.max_volume_id);
            self.max_volume_id = c.max_volume_id;
        }
        if !c.topology_id.is_empty() && *c.topology_id != *self.topology_id {
            changed.topology_id = Some(std::mem::replace(
                &mut self.topology_id,
                c.topology_id.into_owned(),
            ));
        }
        changed
    }

    /// The state as the master's `Save()` writes it (Go's `json.Marshal` of the command).
    pub fn to_json(&self) -> String {
        let mut topology = Vec::new();
        gojson::write_string(self.topology_id.as_bytes(), &mut topology);
        format!(
            "{{\"maxVolumeId\":{},\"topologyId\":{}}}",
            self.max_volume_id,
            String::from_utf8_lossy(&topology)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(n: u32, t: &str) -> VolumeIdCommand<'_> {
        VolumeIdCommand {
            max_volume_id: n,
            topology_id: t.into(),
        }
    }

    #[test]
    fn decodes_both_versions_of_the_payload() {
        assert_eq!(
            decode(b"{\"maxVolumeId\":12,\"topologyId\":\"a1b2c3d4-topology\"}\n"),
            Ok(cmd(12, "a1b2c3d4-topology"))
        );
        assert_eq!(decode(b"{\"maxVolumeId\":7}\n"), Ok(cmd(7, "")));
        // Go: keys match case-insensitively, unknown keys and what follows the value are ignored,
        // null leaves the zero value.
        assert_eq!(
            decode(b"{\"MAXVOLUMEID\":3,\"x\":[1],\"topologyId\":null} trailing"),
            Ok(cmd(3, ""))
        );
        assert_eq!(decode(b"null\n"), Ok(cmd(0, "")));
        assert_eq!(
            decode(b"{\"maxVolumeId\":4294967295}"),
            Ok(cmd(u32::MAX, ""))
        );
    }

    #[test]
    fn refuses_what_go_refuses() {
        for bad in [
            &b""[..],
            b"{",
            b"[1]",
            b"{\"maxVolumeId\":-1}",
            b"{\"maxVolumeId\":1.5}",
            b"{\"maxVolumeId\":1e3}",
            b"{\"maxVolumeId\":4294967296}",
            b"{\"maxVolumeId\":\"12\"}",
            b"{\"maxVolumeId\":12,\"topologyId\":5}",
            b"{\"maxVolumeId\":012}",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_max_volume_id_only_goes_up_and_an_empty_topology_id_keeps_the_old_one() {
        let mut m = Master::default();
        assert_eq!(
            m.apply(cmd(5, "t1")),
            Changed {
                max_volume_id: Some(0),
                topology_id: Some(String::new())
            }
        );
        assert_eq!(m.apply(cmd(3, "")), Changed::default());
        assert_eq!(m.apply(cmd(5, "t1")), Changed::default());
        assert_eq!((m.max_volume_id, m.topology_id.as_str()), (5, "t1"));
        assert_eq!(
            m.apply(cmd(6, "t2")),
            Changed {
                max_volume_id: Some(5),
                topology_id: Some("t1".into())
            }
        );
        assert_eq!(m.to_json(), "{\"maxVolumeId\":6,\"topologyId\":\"t2\"}");
    }

    #[test]
    fn master_state_is_told_from_raftd_state() {
        assert!(is_master_state(
            b"{\"maxVolumeId\":12,\"topologyId\":\"x\"}"
        ));
        assert!(is_master_state(b"{\"maxVolumeId\":0}"));
        assert!(!is_master_state(b"{}"));
        assert!(!is_master_state(b"{\"maxVolumeId\":\"12\"}"));
        assert!(!is_master_state(b"{\"maxVolumeId\":1,\"key\":\"v\"}"));
        assert!(!is_master_state(b"null"));
    }

    proptest! {
        #[test]
        fn the_saved_state_decodes_back(n in any::<u32>(), t in "\\PC{0,20}") {
            let m = Master { max_volume_id: n, topology_id: t };
            let json = m.to_json();
            let back = decode(json.as_bytes()).unwrap();
            prop_assert_eq!((back.max_volume_id, back.topology_id.as_ref()), (m.max_volume_id, m.topology_id.as_str()));
        }

        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
            let _ = is_master_state(&bytes);
        }
    }
}
