//! The table of one node's finding codes, and [`all`], the one list of every code of every rule
//! set (this table, then `check::cluster::CODES`): each code with its severity and a one-line
//! description.
//!
//! Each rule set owns its table; [`SETS`] and [`all`] are the single source for the man page
//! (`raftdump verify --help`), for the severity a rule gives its finding (rules call [`finding`],
//! never `Finding::new` with a literal severity) and for the test that every code has a golden
//! case under `tests/cmd/verify/`. Codes are stable: they are only added, never renamed. Pure data.

use super::{cluster, Finding, Severity};
use Severity::{Error as E, Info as I, Warning as W};

/// Every code one node's rules produce: `(code, severity, description)`.
pub const CODES: &[(&str, Severity, &str)] = &[
    // The log's framing.
    ("log-torn-tail", E, "the log ends inside a frame or its length header, even one of spaces only (a write cut short); goraft keeps or truncates it and loses the next append or miscounts its bytes"),
    ("log-nul-hole", E, "a run of zero bytes at a frame boundary (goraft's hole bug); goraft discards every frame after it"),
    ("log-garbage", E, "bytes that are not a frame header; goraft truncates there and discards every frame after it"),
    ("log-bad-entry", E, "an intact header whose protobuf body Go cannot decode; goraft truncates there"),
    ("log-commit-index-prefix", E, "the log starts with the July-2013 9-byte commit-index prefix; goraft today truncates the whole log"),
    ("header-extra-spaces", W, "a frame header with more than 8 characters of padding (goraft never writes it; its byte count goes wrong)"),
    ("header-unpadded", W, "a frame header shorter than 8 characters (the unpadded July-2013 form)"),
    ("header-uppercase", W, "a frame header with uppercase hex digits (goraft writes lowercase)"),
    ("header-leading-zeros", W, "a frame header padded with zeros instead of spaces"),
    ("wire-unknown-field", W, "a LogEntry field goraft does not declare (Go keeps it and re-sends it)"),
    ("wire-duplicate-field", W, "a LogEntry field that appears twice (Go keeps the last)"),
    ("wire-out-of-order", W, "LogEntry fields not in ascending order (goraft always writes 1, 2, 3, 4)"),
    ("wire-invalid-utf8", W, "a CommandName that is not valid UTF-8"),
    ("wire-zero-written", W, "under proto3 (seaweedfs), a LogEntry field written although it holds zero or empty (the fork leaves it out)"),
    ("dialect-conflict", W, "evidence for both dialects (goraft's proto2 and seaweedfs/raft's proto3): check it was read as the right one (--dialect)"),
    // Index and term order.
    ("index-gap", E, "an index that skips ahead of previous index + 1"),
    ("index-duplicate", E, "an index not above the previous one (a duplicate, or stale entries resurrected)"),
    ("term-decrease", E, "a term lower than the previous entry's term"),
    ("log-first-index", E, "the first index is neither 1 nor covered by a snapshot (at most its lastIndex + 1)"),
    // Commands.
    ("unknown-command", I, "a command name neither goraft nor raftd registers (skipped at load, never applied by raftd)"),
    ("command-invalid", E, "a write, raft:join or raft:leave payload Go's JSON decoder rejects; never applied"),
    ("command-non-canonical", W, "a payload Go decodes but goraft never writes (other spacing, key order, escaping or trailing bytes)"),
    ("write-replacement-char", W, "a key or value containing U+FFFD (Go's JSON encoder replaced invalid UTF-8: bytes lost)"),
    ("join-empty-name", E, "a raft:join with an empty name (or a null payload): goraft adds a nameless member"),
    ("join-duplicate", W, "a raft:join for a name that is already a member (goraft ignores it at apply)"),
    // Snapshots.
    ("snapshot-crc", E, "a snapshot whose CRC-32 does not match its JSON (goraft: bad snapshot file)"),
    ("snapshot-invalid", E, "a snapshot file with a broken header or JSON, or that cannot be read"),
    ("snapshot-name-mismatch", W, "a snapshot file name whose (term, index) differs from its JSON's lastTerm, lastIndex"),
    ("snapshot-path-mismatch", W, "a snapshot's recorded path names another file than the one it is in"),
    ("snapshot-path-moved", I, "a snapshot's recorded path points to another directory (the data dir was moved)"),
    ("snapshot-goraft-choice", E, "goraft's lexicographic pick (issue #235) is not the newest valid snapshot"),
    ("snapshot-orphan", I, "an older snapshot goraft will never load nor delete"),
    ("snapshot-stray-file", W, "a file in snapshot/ that is not <term>_<index>.ss (goraft's loader lists it too)"),
    ("snapshot-log-mismatch", E, "a snapshot's (lastIndex, lastTerm) disagrees with the log's entry at that index"),
    // conf, name, leftovers.
    ("conf-invalid", E, "a conf file that is not {\"commitIndex\":N,\"peers\":[...]} (goraft's Init fails)"),
    ("conf-commit-beyond-log", E, "conf commitIndex above the last index goraft keeps (commitInfo panics)"),
    ("conf-peers-mismatch", W, "conf peers differ from the membership replayed from the log's joins and leaves"),
    ("name-not-joined", W, "the node's name never joined according to its log (or it left)"),
    ("name-trailing-newline", W, "the name file ends with a newline or space, which raftd keeps as part of the name"),
    ("name-invalid", W, "the name file is empty or not UTF-8"),
    ("state-term-beyond-log", E, "raftdump-state's term is over 2^32 above the log's last term or near the largest term (forged or corrupt; no election can follow it)"),
    ("leftover-conf-tmp", W, "conf.tmp left by a crash while conf was being rewritten"),
    ("leftover-log-new", W, "log.new left by a crashed compaction (goraft would reuse it without truncating)"),
    ("file-unreadable", E, "a file of the data dir exists but cannot be read"),
    ("findings-suppressed", I, "more findings with one code on one node than are listed individually"),
];

/// The error codes on which `serve` refuses to start a node (without `--force`): committed data
/// is missing (conf commits beyond the log, a snapshot that cannot be loaded) or the log
/// contradicts itself (an index or term that goes back or skips, a frame goraft stops at).
/// Other errors (a torn tail, which start-up cuts as goraft does; a forged saved term, which
/// start-up explains) and every warning are printed and start-up goes on.
pub const BLOCKS_START: &[&str] = &[
    "log-nul-hole",
    "log-garbage",
    "log-bad-entry",
    "log-commit-index-prefix",
    "index-gap",
    "index-duplicate",
    "term-decrease",
    "log-first-index",
    "snapshot-crc",
    "snapshot-invalid",
    "snapshot-log-mismatch",
    "conf-invalid",
    "conf-commit-beyond-log",
];

/// One rule set's codes, with the heading the man page lists them under.
#[derive(Debug, Clone, Copy)]
pub struct CodeSet {
    /// The heading, e.g. `Cluster codes`.
    pub title: &'static str,
    /// When the rule set runs.
    pub when: &'static str,
    /// `(code, severity, description)`, in the rule set's order.
    pub codes: &'static [(&'static str, Severity, &'static str)],
}

/// Every rule set's codes, in the order the man page lists them.
pub const SETS: &[CodeSet] = &[
    CodeSet {
        title: "Finding codes",
        when: "each node's files",
        codes: CODES,
    },
    CodeSet {
        title: "Cluster codes",
        when: "across the nodes, when two or more are given",
        codes: cluster::CODES,
    },
];

/// Every code of every rule set: one node's, then the cluster's.
pub fn all() -> impl Iterator<Item = &'static (&'static str, Severity, &'static str)> {
    SETS.iter().flat_map(|s| s.codes.iter())
}

/// The severity of `code`, from [`all`].
pub fn severity(code: &str) -> Option<Severity> {
    all().find(|(c, _, _)| *c == code).map(|(_, s, _)| *s)
}

/// A finding for `code` with the severity the table gives it.
///
/// An unknown code is a programming error: debug builds panic (tests catch it), release builds
/// report it as an error rather than lose it.
pub fn finding(code: &'static str, message: impl Into<String>) -> Finding {
    let sev = severity(code);
    debug_assert!(sev.is_some(), "finding code {code} is in no code table");
    Finding::new(sev.unwrap_or(Severity::Error), code, message)
}

/// The man-page text listing every code of [`SETS`], one section per rule set, grouped by
/// severity, for `after_long_help`: the code on one line, its description indented below (so
/// that wrapped lines keep the indent).
pub fn help_text() -> String {
    let mut out = String::new();
    for (n, set) in SETS.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "{} (stable; {}), by severity:\n",
            set.title, set.when
        ));
        for sev in [Severity::Error, Severity::Warning, Severity::Info] {
            let label = match sev {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            };
            for (code, _, desc) in set.codes.iter().filter(|(_, s, _)| *s == sev) {
                out.push_str(&format!("  {code} ({label})\n      {desc}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_kebab_case_and_described() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, _, desc) in all() {
            assert!(seen.insert(*code), "{code} twice");
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{code}"
            );
            assert!(!desc.is_empty() && !desc.ends_with('.'), "{code}");
        }
        assert_eq!(severity("log-torn-tail"), Some(Severity::Error));
        assert_eq!(severity("unknown-command"), Some(Severity::Info));
        assert_eq!(severity("cluster-election-safety"), Some(Severity::Error));
        assert_eq!(severity("nope"), None);
        assert_eq!(all().count(), CODES.len() + cluster::CODES.len());
        assert!(CODES.iter().all(|(c, _, _)| !c.starts_with("cluster-")));
    }

    #[test]
    fn start_blockers_are_one_node_errors() {
        for code in BLOCKS_START {
            assert_eq!(severity(code), Some(Severity::Error), "{code}");
            assert!(CODES.iter().any(|(c, _, _)| c == code), "{code}");
        }
        assert!(!BLOCKS_START.contains(&"log-torn-tail"));
        assert!(!BLOCKS_START.contains(&"state-term-beyond-log"));
    }

    #[test]
    fn help_lists_every_code_once_in_its_section() {
        let text = help_text();
        for (code, _, _) in all() {
            assert_eq!(text.matches(&format!("  {code} (")).count(), 1, "{code}");
        }
        let cluster_section = text
            .find("Cluster codes (stable; across the nodes")
            .unwrap();
        assert!(text.starts_with("Finding codes (stable; each node's files), by severity:\n"));
        for (code, _, _) in CODES {
            assert!(text.find(&format!("  {code} (")).unwrap() < cluster_section);
        }
        for (code, _, _) in cluster::CODES {
            assert!(text.find(&format!("  {code} (")).unwrap() > cluster_section);
        }
    }
}
