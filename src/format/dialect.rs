//! The dialects of the goraft family, and how a log's dialect is told from evidence.
//!
//! Two living implementations write goraft's files: goraft itself (raftd, etcd 0.2-0.4), whose
//! `LogEntry` is gogo proto2 with every required field written, and the seaweedfs/raft fork
//! (SeaweedFS masters), whose `LogEntry` is proto3: a field holding zero or empty is not written
//! and reads back as zero or empty. The framing, conf and snapshot files are the same. Every
//! command reads a log under one [`Dialect`]; [`detect`] picks it from the log's own frames and
//! command names, the snapshot's state and the data dir's shape, and [`Detection`] keeps the
//! evidence so that `inspect` can show it and `verify` can report evidence that conflicts.
//!
//! What the fork does differently, read in its `log.go`, `server.go` and `snapshot.go` (and what
//! raftdump therefore says in its consequences, naming `seaweedfs/raft`, or `goraft and
//! seaweedfs/raft` where the code is still goraft's):
//!
//! - Loading is goraft's: frames are read until the first one that does not decode, and the file
//!   is truncated there (the hole bug included). What does not decode differs: an absent field
//!   is fine under proto3, but a CommandName that is not UTF-8 is an error there (gogo proto2
//!   accepts it).
//! - It snapshots by itself: once more than 400 entries are in memory it saves a snapshot at
//!   the commit index and compacts the log to keep the 200 entries before it. Older `.ss` files
//!   stay in `snapshot/` across restarts; `LoadSnapshot` still picks the last name in string
//!   order, as goraft does.
//! - `compact` below the current start index is a no-op (it sliced out of range before), and a
//!   `prevLogIndex` beyond the end of a compacted log makes the leader send its snapshot
//!   instead of panicking ("Index is beyond end of log" in goraft).
//! - RPCs travel over gRPC (the same proto3 messages) or HTTP.
//!
//! Pure: it sees bytes and names handed to it, never a path.

use std::fmt;

use super::frame;
use super::wire::{self, Syntax, WireEntry, WireError};

/// How a log's entries are encoded, and whose code reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// goraft/raft: gogo proto2, every required field written (raftd, etcd 0.2-0.4).
    #[default]
    Goraft,
    /// seaweedfs/raft: proto3, zero and empty fields left out (SeaweedFS masters).
    Seaweedfs,
}

impl Dialect {
    /// The name used on the command line and in JSON: `goraft` or `seaweedfs`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Goraft => "goraft",
            Dialect::Seaweedfs => "seaweedfs",
        }
    }

    /// The implementation whose behaviour the consequences describe: `goraft` or
    /// `seaweedfs/raft`.
    pub fn implementation(self) -> &'static str {
        match self {
            Dialect::Goraft => "goraft",
            Dialect::Seaweedfs => "seaweedfs/raft",
        }
    }

    /// Who does what a consequence describes when both implementations behave alike: `goraft`
    /// for a goraft log, `goraft and seaweedfs/raft` for a seaweedfs one.
    pub fn shared_implementation(self) -> &'static str {
        match self {
            Dialect::Goraft => "goraft",
            Dialect::Seaweedfs => "goraft and seaweedfs/raft",
        }
    }

    /// The protobuf rules its `LogEntry` and RPC messages follow.
    pub fn syntax(self) -> Syntax {
        match self {
            Dialect::Goraft => Syntax::Proto2,
            Dialect::Seaweedfs => Syntax::Proto3,
        }
    }

    /// Decodes a `LogEntry` body as this dialect's Go code does.
    #[inline]
    pub fn decode_entry(self, body: &[u8]) -> Result<WireEntry<'_>, WireError> {
        match self {
            Dialect::Goraft => wire::decode_entry(body),
            Dialect::Seaweedfs => wire::decode_entry_proto3(body),
        }
    }

    /// Whether the implementation snapshots and compacts by itself (seaweedfs/raft does when
    /// more than 400 entries are in memory, and leaves older `.ss` files in `snapshot/`).
    pub fn snapshots_by_itself(self) -> bool {
        self == Dialect::Seaweedfs
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a dialect, or detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// Detect it per log from evidence ([`detect`]).
    #[default]
    Auto,
    /// Read every log under this dialect, whatever the evidence says.
    Force(Dialect),
}

/// What a piece of evidence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clue {
    /// Frames without a field proto2 requires: only proto3 writes them.
    Proto3Frames,
    /// Frames with a zero Term written: only proto2 writes them.
    ZeroTermWritten,
    /// SeaweedFS's `MaxVolumeId` commands.
    MaxVolumeId,
    /// raftd's `write` or etcd's `etcd:*` commands.
    RaftdOrEtcdCommands,
    /// A `raft:join` of a `host:port` server name.
    HostPortJoin,
    /// A snapshot whose state holds `maxVolumeId`.
    SnapshotState,
    /// A data dir named `m<port>` with no `name` file.
    MasterDir,
    /// A `name` file.
    NameFile,
}

impl Clue {
    /// Whether it is the bytes of the frames themselves (only one encoding writes them so),
    /// which outweighs every other clue.
    pub fn is_decisive(self) -> bool {
        matches!(self, Clue::Proto3Frames | Clue::ZeroTermWritten)
    }

    /// Whether it shows SeaweedFS's state machine (its commands or snapshot state).
    pub fn is_seaweedfs_machine(self) -> bool {
        matches!(self, Clue::MaxVolumeId | Clue::SnapshotState)
    }
}

/// One piece of evidence for a dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// What kind of clue.
    pub clue: Clue,
    /// The dialect it points to.
    pub points_to: Dialect,
    /// What was seen, in one phrase.
    pub what: String,
    /// How many frames show it (0 for a clue outside the frames' encoding).
    pub frames: u64,
}

/// How a log's dialect was decided, with the evidence seen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Detection {
    /// The dialect the log is read under.
    pub dialect: Dialect,
    /// Whether `--dialect` chose it (else it was detected, or is the default for lack of
    /// evidence).
    pub forced: bool,
    /// Everything that points to one dialect or the other.
    pub evidence: Vec<Evidence>,
    /// The `host:port` server names of the joins among the first frames (a SeaweedFS master
    /// names its raft server so; see [`master_name`]).
    pub joined: Vec<String>,
}

impl Detection {
    /// Whether some evidence points to each dialect. Frames of the other encoding that are
    /// outnumbered by the log's own do not count: they are reported frame by frame (as damage
    /// under goraft, as a zero written under seaweedfs).
    pub fn conflicts(&self) -> bool {
        let counts =
            |e: &&Evidence| !(e.clue.is_decisive() && e.points_to != decide(&self.evidence));
        let to = |d| {
            self.evidence
                .iter()
                .filter(counts)
                .any(|e| e.points_to == d)
        };
        to(Dialect::Goraft) && to(Dialect::Seaweedfs)
    }

    /// How it was decided: `forced by --dialect`, `detected`, or `default, no evidence`.
    pub fn how(&self) -> &'static str {
        if self.forced {
            "forced by --dialect"
        } else if self.evidence.is_empty() {
            "default, no evidence"
        } else {
            "detected"
        }
    }

    /// Whether the log is a SeaweedFS master's: its dialect, or its commands or snapshot state.
    pub fn is_seaweedfs_master(&self) -> bool {
        self.dialect == Dialect::Seaweedfs
            || self.evidence.iter().any(|e| e.clue.is_seaweedfs_machine())
    }

    /// The evidence as one line: `a; b; c`, or `none`; an item that points to the other
    /// dialect says so.
    pub fn evidence_line(&self) -> String {
        if self.evidence.is_empty() {
            return "none".into();
        }
        let parts: Vec<String> = self
            .evidence
            .iter()
            .map(|e| match e.points_to == self.dialect {
                true => e.what.clone(),
                false => format!("{} (points to {})", e.what, e.points_to),
            })
            .collect();
        parts.join("; ")
    }
}

/// What the data dir around a log shows, gathered by the filesystem edge.
#[derive(Debug, Clone, Default)]
pub struct DirClues<'a> {
    /// The directory's own name, when the input is a data dir.
    pub dir_name: Option<&'a str>,
    /// Whether the input is a data dir (not a bare log file).
    pub is_dir: bool,
    /// Whether it has a `name` file.
    pub has_name_file: bool,
    /// The state bytes of its snapshots.
    pub snapshot_states: Vec<&'a [u8]>,
}

/// How many frames from the start of the log [`detect`] reads.
const SAMPLE_FRAMES: usize = 256;

/// What the first frames of a log show, frame by frame.
#[derive(Debug, Default)]
struct LogClues {
    /// Frames that only proto3 accepts (a required field absent).
    proto3_only: u64,
    first_proto3_only: Option<usize>,
    /// Frames with a zero Term written (gogo proto2 writes it; proto3 never does).
    zero_written: u64,
    first_zero_written: Option<usize>,
    /// SeaweedFS's own command.
    max_volume_id: u64,
    /// raftd's and etcd's commands.
    raftd_or_etcd: u64,
    /// A join whose name is `host:port`.
    host_port_join: Option<String>,
    /// Every such name, in order, without repeats.
    joined: Vec<String>,
    /// Whether the log has more frames than were read.
    capped: bool,
}

fn sample(log: &[u8]) -> LogClues {
    let mut c = LogClues::default();
    let mut pos = 0;
    for n in 0..=SAMPLE_FRAMES {
        if n == SAMPLE_FRAMES {
            c.capped = pos < log.len();
            break;
        }
        let Ok(h) = frame::parse_header(&log[pos..]) else {
            break;
        };
        let start = pos + h.len;
        let Some(body) = start
            .checked_add(h.body_len as usize)
            .and_then(|end| log.get(start..end))
        else {
            break;
        };
        let Ok(e) = wire::decode_entry_proto3(body) else {
            break;
        };
        if wire::decode_entry(body).is_err() {
            c.proto3_only += 1;
            c.first_proto3_only.get_or_insert(pos);
        } else if e.term == 0 {
            c.zero_written += 1;
            c.first_zero_written.get_or_insert(pos);
        }
        match e.name {
            b"MaxVolumeId" => c.max_volume_id += 1,
            b"write" => c.raftd_or_etcd += 1,
            n if n.starts_with(b"etcd:") => c.raftd_or_etcd += 1,
            b"raft:join" => {
                if let crate::model::Command::Join { name, .. } =
                    super::command::decode(e.name, e.command)
                {
                    if is_host_port(&name) && !c.joined.contains(&name) {
                        c.host_port_join.get_or_insert_with(|| name.clone());
                        c.joined.push(name);
                    }
                }
            }
            _ => {}
        }
        pos = start + body.len();
    }
    c
}

/// Whether `name` is `host:port` (a SeaweedFS master's raft name), not raftd's hex name.
fn is_host_port(name: &str) -> bool {
    name.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Whether a directory name is SeaweedFS's `m<port>`.
fn is_master_dir(name: &str) -> bool {
    name.strip_prefix('m').is_some_and(|port| {
        !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
    })
}

/// `N frames`, or `N of the first 256 frames` when the sample stopped before the log's end.
fn frames(n: u64, capped: bool) -> String {
    if capped {
        format!("{n} of the first {SAMPLE_FRAMES} frames")
    } else {
        plural(n, "frame")
    }
}

fn plural(n: u64, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The name a SeaweedFS master gives its raft server, `host:port`, found from its data dir
/// `m<port>`: the one name among `names` (the joins of its log, the peers of its snapshots)
/// with that port. `None` when the dir is not so named, or no name or several fit.
pub fn master_name<'a>(dir_name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    if !is_master_dir(dir_name) {
        return None;
    }
    let port = &dir_name[1..];
    let mut fits = names
        .into_iter()
        .filter(|n| is_host_port(n) && n.rsplit_once(':').is_some_and(|(_, p)| p == port));
    let first = fits.next()?;
    fits.all(|n| n == first).then(|| first.to_string())
}

/// The evidence in a log's first frames and its data dir, in a fixed order.
pub fn evidence(log: &[u8], dir: &DirClues<'_>) -> Vec<Evidence> {
    evidence_of(&sample(log), dir)
}

fn evidence_of(c: &LogClues, dir: &DirClues<'_>) -> Vec<Evidence> {
    let mut out = Vec::new();
    let mut push = |clue, points_to, what: String| {
        let frames = match clue {
            Clue::Proto3Frames => c.proto3_only,
            Clue::ZeroTermWritten => c.zero_written,
            _ => 0,
        };
        out.push(Evidence {
            clue,
            points_to,
            what,
            frames,
        })
    };
    if let Some(at) = c.first_proto3_only {
        push(
            Clue::Proto3Frames,
            Dialect::Seaweedfs,
            format!(
                "{} without a field proto2 requires (proto3 leaves zero and empty fields out), the first at byte {at}",
                frames(c.proto3_only, c.capped)
            ),
        );
    }
    if let Some(at) = c.first_zero_written {
        push(
            Clue::ZeroTermWritten,
            Dialect::Goraft,
            format!(
                "{} with a zero Term written (proto2), the first at byte {at}",
                frames(c.zero_written, c.capped)
            ),
        );
    }
    if c.max_volume_id > 0 {
        push(
            Clue::MaxVolumeId,
            Dialect::Seaweedfs,
            format!(
                "MaxVolumeId commands in {}",
                frames(c.max_volume_id, c.capped)
            ),
        );
    }
    if c.raftd_or_etcd > 0 {
        push(
            Clue::RaftdOrEtcdCommands,
            Dialect::Goraft,
            format!(
                "write or etcd:* commands in {}",
                frames(c.raftd_or_etcd, c.capped)
            ),
        );
    }
    if let Some(name) = &c.host_port_join {
        push(
            Clue::HostPortJoin,
            Dialect::Seaweedfs,
            format!("a join of server {name:?} (host:port)"),
        );
    }
    if dir.snapshot_states.iter().any(|s| is_master_state(s)) {
        push(
            Clue::SnapshotState,
            Dialect::Seaweedfs,
            "a snapshot state with maxVolumeId".into(),
        );
    }
    if dir.is_dir {
        match dir.dir_name {
            Some(n) if is_master_dir(n) && !dir.has_name_file => push(
                Clue::MasterDir,
                Dialect::Seaweedfs,
                format!("data dir {n} with no name file (a SeaweedFS master's m<port>)"),
            ),
            _ if dir.has_name_file => push(
                Clue::NameFile,
                Dialect::Goraft,
                "a name file (raftd)".into(),
            ),
            _ => {}
        }
    }
    out
}

/// Decides a log's dialect: `choice` when forced, else from [`evidence`]. Frames that only one
/// encoding writes decide first (the bytes say how they were written; the more frames win, and
/// goraft on a tie, since damage drops fields more often than it adds a zero one); then the
/// majority of the other evidence; goraft when nothing points either way or the count is even.
pub fn detect(log: &[u8], dir: &DirClues<'_>, choice: Choice) -> Detection {
    let clues = sample(log);
    let evidence = evidence_of(&clues, dir);
    let dialect = match choice {
        Choice::Force(d) => d,
        Choice::Auto => decide(&evidence),
    };
    Detection {
        dialect,
        forced: matches!(choice, Choice::Force(_)),
        evidence,
        joined: clues.joined,
    }
}

fn decide(evidence: &[Evidence]) -> Dialect {
    let frames = |d| {
        evidence
            .iter()
            .filter(|e| e.clue.is_decisive() && e.points_to == d)
            .map(|e| e.frames)
            .sum::<u64>()
    };
    let (sea, go) = (frames(Dialect::Seaweedfs), frames(Dialect::Goraft));
    if sea + go > 0 {
        return if sea > go {
            Dialect::Seaweedfs
        } else {
            Dialect::Goraft
        };
    }
    let sea = evidence
        .iter()
        .filter(|e| e.points_to == Dialect::Seaweedfs)
        .count();
    if sea * 2 > evidence.len() {
        Dialect::Seaweedfs
    } else {
        Dialect::Goraft
    }
}

/// The largest state [`is_master_state`] looks at: a master's (a number and a UUID) is under 100
/// bytes.
const MASTER_STATE_MAX: usize = 64 << 10;

/// Whether a snapshot's state is the master's: a JSON object with a numeric `maxVolumeId` and no
/// key other than `maxVolumeId` and `topologyId`. Why this strict: an empty object or a map of
/// strings is raftd's state, and the two must not be confused.
pub fn is_master_state(state: &[u8]) -> bool {
    // Two short fields: a large state is a map (not worth parsing whole as a JSON value).
    if state.len() > MASTER_STATE_MAX {
        return false;
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(state)
    else {
        return false;
    };
    let numeric = map
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("maxVolumeId") && v.is_number());
    numeric
        && map
            .keys()
            .all(|k| k.eq_ignore_ascii_case("maxVolumeId") || k.eq_ignore_ascii_case("topologyId"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;
    use crate::model::Command;

    fn log(dialect: Dialect, term: u64) -> Vec<u8> {
        let mut w = LogWriter::with_dialect(Vec::new(), dialect);
        w.append(
            1,
            term,
            &Command::Join {
                name: "127.0.0.1:9333".into(),
                connection_string: "http://127.0.0.1:9333".into(),
            },
        )
        .unwrap();
        w.append(2, term, &Command::Nop).unwrap();
        w.append_raw(3, term, "MaxVolumeId", Some(b"{\"maxVolumeId\":1}\n"))
            .unwrap();
        w.into_inner()
    }

    #[test]
    fn term_zero_frames_decide_by_their_bytes() {
        let d = detect(
            &log(Dialect::Seaweedfs, 0),
            &DirClues::default(),
            Choice::Auto,
        );
        assert_eq!(d.dialect, Dialect::Seaweedfs);
        assert!(!d.conflicts(), "{d:?}");
        assert!(
            d.evidence_line()
                .starts_with("3 frames without a field proto2 requires"),
            "{}",
            d.evidence_line()
        );
        // The same entries written by goraft: Term 0 is written, and the command names conflict.
        let d = detect(&log(Dialect::Goraft, 0), &DirClues::default(), Choice::Auto);
        assert_eq!(d.dialect, Dialect::Goraft);
        assert!(d.conflicts(), "{d:?}");
    }

    #[test]
    fn later_terms_are_told_by_names_and_the_dir() {
        // In term 2 both encodings write the same bytes: the commands and the dir decide.
        let bytes = log(Dialect::Seaweedfs, 2);
        assert_eq!(
            bytes,
            log(Dialect::Goraft, 2).into_iter().collect::<Vec<_>>()
        );
        let d = detect(&bytes, &DirClues::default(), Choice::Auto);
        assert_eq!(d.dialect, Dialect::Seaweedfs, "{d:?}");
        let raftd = DirClues {
            dir_name: Some("node1"),
            is_dir: true,
            has_name_file: true,
            snapshot_states: vec![],
        };
        let d = detect(b"", &raftd, Choice::Auto);
        assert_eq!((d.dialect, d.how()), (Dialect::Goraft, "detected"));
        let master = DirClues {
            dir_name: Some("m9333"),
            is_dir: true,
            has_name_file: false,
            snapshot_states: vec![b"{\"maxVolumeId\":3}"],
        };
        let d = detect(b"", &master, Choice::Auto);
        assert_eq!(d.dialect, Dialect::Seaweedfs);
        assert_eq!(d.evidence.len(), 2);
        let d = detect(b"", &master, Choice::Force(Dialect::Goraft));
        assert_eq!(
            (d.dialect, d.how()),
            (Dialect::Goraft, "forced by --dialect")
        );
        let d = detect(b"", &DirClues::default(), Choice::Auto);
        assert_eq!(
            (d.dialect, d.how(), d.evidence_line().as_str()),
            (Dialect::Goraft, "default, no evidence", "none")
        );
    }

    #[test]
    fn names_and_dirs() {
        assert!(is_host_port("127.0.0.1:9333"));
        assert!(is_host_port("[::1]:9333"));
        assert!(!is_host_port("2832bfa"));
        assert!(!is_host_port("host:"));
        assert!(is_master_dir("m9333"));
        assert!(!is_master_dir("m"));
        assert!(!is_master_dir("master"));
        let names = ["127.0.0.1:9333", "127.0.0.1:9334", "127.0.0.1:9333"];
        assert_eq!(master_name("m9334", names), Some("127.0.0.1:9334".into()));
        assert_eq!(master_name("m9333", names), Some("127.0.0.1:9333".into()));
        assert_eq!(master_name("m9335", names), None);
        assert_eq!(master_name("m9333", ["a:9333", "b:9333"]), None);
        assert_eq!(master_name("node1", names), None);
    }
}
