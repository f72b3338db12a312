//! The `verify` report: findings as aligned text for people, or JSON Lines.
//!
//! Human form: one line per node with what its log holds, then per finding a line
//! `severity[code]: file:offset (index N)`, the message and what goraft (or the seaweedfs/raft
//! fork) does, indented below it,
//! then a summary line with the counts. Untrusted text (messages quote names and payloads, paths
//! come from the user) is escaped for the terminal.
//!
//! JSON Lines schema (fields are only ever added):
//! - `{"type":"node","node","path","log_bytes","entries","first_index","last_index","last_term",
//!   "kept_entries","first_damage","goraft_truncate_at","dialect"}` once per node (absent values
//!   are `null`; `dialect`, `seaweedfs`, only for a log not read as goraft's: the truncation
//!   point is then the fork's, which loads the log with goraft's code);
//! - `{"type":"finding","severity","code","node","file","offset","index","message","goraft",
//!   "implementation"}` per finding (`node`, `file`, `offset`, `index`, `goraft` only when they
//!   apply; `implementation`, whose behaviour `goraft` describes, only when it is not goraft
//!   alone: `seaweedfs/raft` or `goraft and seaweedfs/raft`);
//! - `{"type":"summary","nodes","errors","warnings","infos","findings","strict","failed"}` last.

use std::io::{self, Write};

use serde::Serialize;

use super::escape_terminal;
use crate::check::node::NodeReport;
use crate::check::{Finding, Report, Severity};
use crate::format::dialect::Dialect;

/// How the run is judged, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// `--strict`: warnings fail too.
    pub strict: bool,
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn style(s: Severity) -> anstyle::Style {
    let color = match s {
        Severity::Error => anstyle::AnsiColor::Red,
        Severity::Warning => anstyle::AnsiColor::Yellow,
        Severity::Info => anstyle::AnsiColor::Cyan,
    };
    anstyle::Style::new().bold().fg_color(Some(color.into()))
}

fn plural(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Where a finding is: `file:offset (index N)`, else the node, else `cluster`.
fn location(f: &Finding) -> String {
    let mut s = match (&f.file, &f.node) {
        (Some(file), _) => {
            let mut s = file.display().to_string();
            if let Some(o) = f.offset {
                s.push_str(&format!(":{o}"));
            }
            s
        }
        (None, Some(node)) => node.clone(),
        (None, None) => "cluster".to_string(),
    };
    if let Some(i) = f.index {
        s.push_str(&format!(" (index {i})"));
    }
    s
}

fn node_line(n: &NodeReport) -> String {
    let l = &n.log;
    let mut s = format!("node {}: log {}", n.node, plural(l.bytes, "byte", "bytes"));
    s.push_str(&format!(", {}", plural(l.entries, "entry", "entries")));
    if let (Some(a), Some(b), Some(t)) = (l.first_index, l.last_index, l.last_term) {
        s.push_str(&format!(" (index {a} to {b}, last term {t})"));
    }
    if let Some(d) = l.first_damage {
        s.push_str(&format!(
            "; damage from byte {d}: {} keeps {}",
            n.dialect.implementation(),
            plural(l.kept_entries, "entry", "entries")
        ));
        if let Some(i) = l.kept_last_index {
            s.push_str(&format!(" (up to index {i})"));
        }
    }
    s
}

/// Writes one finding in the human form: `severity[code]: location`, the message and what
/// goraft does, indented.
pub fn finding_human(out: &mut dyn Write, f: &Finding, color: bool) -> io::Result<()> {
    let sev = severity_name(f.severity);
    let head = if color {
        let st = style(f.severity);
        format!("{st}{sev}[{}]{st:#}", f.code)
    } else {
        format!("{sev}[{}]", f.code)
    };
    writeln!(out, "{head}: {}", escape_terminal(&location(f)))?;
    writeln!(out, "  {}", escape_terminal(&f.message))?;
    if let Some(g) = &f.goraft {
        writeln!(out, "  {}: {}", f.implementation_name(), escape_terminal(g))?;
    }
    Ok(())
}

/// Writes the human report.
pub fn human(
    out: &mut dyn Write,
    nodes: &[NodeReport],
    report: &Report,
    verdict: Verdict,
    color: bool,
) -> io::Result<()> {
    for n in nodes {
        writeln!(out, "{}", escape_terminal(&node_line(n)))?;
    }
    if !report.findings.is_empty() {
        writeln!(out)?;
    }
    for f in &report.findings {
        finding_human(out, f, color)?;
    }
    let (e, w, i) = report.counts();
    if !report.findings.is_empty() {
        writeln!(out)?;
    }
    let verdict_text = if report.fails(verdict.strict) {
        "FAILED"
    } else {
        "ok"
    };
    writeln!(
        out,
        "{}: {}, {}, {}, {}{}",
        plural(nodes.len() as u64, "node", "nodes"),
        plural(e as u64, "error", "errors"),
        plural(w as u64, "warning", "warnings"),
        plural(i as u64, "info", "infos"),
        verdict_text,
        if verdict.strict { " (strict)" } else { "" }
    )
}

#[derive(Serialize)]
struct NodeLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    node: &'a str,
    path: String,
    log_bytes: u64,
    entries: u64,
    first_index: Option<u64>,
    last_index: Option<u64>,
    last_term: Option<u64>,
    kept_entries: u64,
    first_damage: Option<u64>,
    goraft_truncate_at: Option<u64>,
    #[serde(skip_serializing_if = "is_goraft")]
    dialect: Dialect,
}

fn is_goraft(d: &Dialect) -> bool {
    *d == Dialect::Goraft
}

#[derive(Serialize)]
struct FindingLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    severity: &'static str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    goraft: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    implementation: Option<&'a str>,
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    nodes: usize,
    errors: usize,
    warnings: usize,
    infos: usize,
    findings: usize,
    strict: bool,
    failed: bool,
}

fn line(out: &mut dyn Write, v: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)
}

/// Writes one finding as a JSON line.
pub fn finding_json(out: &mut dyn Write, f: &Finding) -> io::Result<()> {
    line(
        out,
        &FindingLine {
            kind: "finding",
            severity: severity_name(f.severity),
            code: f.code,
            node: f.node.as_deref(),
            file: f.file.as_ref().map(|p| p.to_string_lossy().into_owned()),
            offset: f.offset,
            index: f.index,
            message: &f.message,
            goraft: f.goraft.as_deref(),
            implementation: f.implementation,
        },
    )
}

/// Writes the JSON Lines report.
pub fn json(
    out: &mut dyn Write,
    nodes: &[NodeReport],
    report: &Report,
    verdict: Verdict,
) -> io::Result<()> {
    for n in nodes {
        let l = &n.log;
        line(
            out,
            &NodeLine {
                kind: "node",
                node: &n.node,
                path: n.path.to_string_lossy().into_owned(),
                log_bytes: l.bytes,
                entries: l.entries,
                first_index: l.first_index,
                last_index: l.last_index,
                last_term: l.last_term,
                kept_entries: l.kept_entries,
                first_damage: l.first_damage,
                goraft_truncate_at: l.goraft_truncate_at,
                dialect: n.dialect,
            },
        )?;
    }
    for f in &report.findings {
        finding_json(out, f)?;
    }
    let (errors, warnings, infos) = report.counts();
    line(
        out,
        &SummaryLine {
            kind: "summary",
            nodes: nodes.len(),
            errors,
            warnings,
            infos,
            findings: report.findings.len(),
            strict: verdict.strict,
            failed: report.fails(verdict.strict),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::codes::finding;
    use serde_json::{json, Value};

    fn sample() -> Report {
        let mut r = Report::default();
        r.push(
            finding("log-torn-tail", "cut\x1b[2J short")
                .node("n1")
                .file("d/log")
                .offset(850)
                .index(15)
                .goraft("truncates"),
        );
        r.push(finding("unknown-command", "odd").node("n1"));
        r
    }

    #[test]
    fn human_lines_are_escaped_and_summarised() {
        let mut out = Vec::new();
        human(&mut out, &[], &sample(), Verdict { strict: false }, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\nerror[log-torn-tail]: d/log:850 (index 15)\n  cut\\u{1b}[2J short\n  goraft: truncates\ninfo[unknown-command]: n1\n  odd\n\n0 nodes: 1 error, 0 warnings, 1 info, FAILED\n"
        );
    }

    #[test]
    fn json_lines_end_with_a_summary() {
        let mut out = Vec::new();
        json(&mut out, &[], &sample(), Verdict { strict: true }).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("{\"type\":\"finding\",\"severity\":\"error\",\"code\":\"log-torn-tail\",\"node\":\"n1\""), "{text}");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["offset"], 850);
        assert_eq!(lines[1].get("offset"), None);
        assert_eq!(
            lines[2],
            json!({"type":"summary","nodes":0,"errors":1,"warnings":0,"infos":1,"findings":2,"strict":true,"failed":true})
        );
    }
}
