//! Findings and reports: the one model for what `verify` (one node, or a cluster) and `repair`
//! find wrong, shared with `diff` where the two meet.
//!
//! It owns the finding model and the rule sets (`node`: one node's files, `cluster`: invariants
//! across nodes). It must not print (that is `render`) or write files (repair plans are applied by
//! `datadir`-level code in `repair`).

use std::path::PathBuf;

use serde::Serialize;

pub mod cluster;
pub mod codes;
pub mod node;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never affects the exit code.
    Info,
    /// Suspicious or non-canonical; fails only with `--strict`.
    Warning,
    /// An invariant is broken or goraft will lose or refuse data.
    Error,
}

/// One thing found, with everything needed to locate it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// Stable code, e.g. `log-torn-tail`; documented in the man page; never renamed.
    pub code: &'static str,
    /// The node's label (name, else path); `None` for findings about the whole cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The file concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Byte offset in that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Log index concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What goraft will do about it (truncate, panic, ignore ...), when that matters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goraft: Option<String>,
    /// Whose behaviour `goraft` describes, when it is not goraft alone: `seaweedfs/raft`, or
    /// `goraft and seaweedfs/raft` where the fork does the same (see
    /// [`Finding::implementation`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub implementation: Option<&'static str>,
}

impl Finding {
    /// A finding with only the required parts; fill the rest with the builder methods.
    pub fn new(severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Finding {
            severity,
            code,
            node: None,
            file: None,
            offset: None,
            index: None,
            message: message.into(),
            goraft: None,
            implementation: None,
        }
    }

    /// Sets the node label.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Sets the file.
    pub fn file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// Sets the byte offset.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Sets the log index.
    pub fn index(mut self, index: u64) -> Self {
        self.index = Some(index);
        self
    }

    /// Says what goraft will do.
    pub fn goraft(mut self, what: impl Into<String>) -> Self {
        self.goraft = Some(what.into());
        self
    }

    /// Says whose behaviour the consequence describes (goraft's when never set).
    pub fn implementation(mut self, who: &'static str) -> Self {
        self.implementation = Some(who);
        self
    }

    /// Who the consequence line names: `goraft` unless set.
    pub fn implementation_name(&self) -> &'static str {
        self.implementation.unwrap_or("goraft")
    }
}

/// Names `dialect`'s implementation on every finding of a log read under it whose consequence
/// does not name one yet: under the seaweedfs dialect the shared code of goraft and the fork
/// (`goraft and seaweedfs/raft`); goraft's findings stay as they are.
pub fn name_implementation(findings: &mut [Finding], dialect: crate::format::dialect::Dialect) {
    if dialect == crate::format::dialect::Dialect::Goraft {
        return;
    }
    for f in findings.iter_mut().filter(|f| f.goraft.is_some()) {
        f.implementation
            .get_or_insert(dialect.shared_implementation());
    }
}

/// All findings of a run, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Adds a finding.
    pub fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }

    /// How many findings have each severity: (errors, warnings, infos).
    pub fn counts(&self) -> (usize, usize, usize) {
        self.findings
            .iter()
            .fold((0, 0, 0), |(e, w, i), f| match f.severity {
                Severity::Error => (e + 1, w, i),
                Severity::Warning => (e, w + 1, i),
                Severity::Info => (e, w, i + 1),
            })
    }

    /// Whether the run fails: any error, or any warning when `strict`.
    pub fn fails(&self, strict: bool) -> bool {
        let (e, w, _) = self.counts();
        e > 0 || (strict && w > 0)
    }
}
