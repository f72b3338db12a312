//! The `repair` output: the plan (what is cut, salvaged, dropped, removed, kept), and after
//! `--apply` what was done and what `verify` says about the result.
//!
//! JSON Lines schema (fields are only ever added):
//! - `{"type":"plan","node","dir","log_bytes","keep_frames","keep_bytes","keep_last_index",
//!   "cut_offset","cut_bytes","cut_code","salvage_frames","salvage_bytes","salvageable",
//!   "dropped_frames","dropped_duplicates","remove":[paths],"untouched":[codes]}`;
//! - after `--apply`: `{"type":"applied","backups":[{"file","backup"}],"cut_to","appended_frames",
//!   "appended_bytes","removed":[paths]}`, then the `verify` finding lines of the result (see
//!   `render::report`) and `{"type":"summary","errors","warnings","infos","dry_run","applied"}`.

use std::io::{self, Write};

use serde::Serialize;

use super::escape_terminal;
use super::report::finding_json;
use crate::check::Report;
use crate::repair::{Applied, Plan, Span};

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn span(s: &Span) -> String {
    let mut out = plural(s.frames, "frame", "frames");
    if let (Some(a), Some(b)) = (s.first_index, s.last_index) {
        if a == b {
            out.push_str(&format!(" (index {a})"));
        } else {
            out.push_str(&format!(" (index {a} to {b})"));
        }
    }
    out
}

/// Writes the plan for people.
pub fn plan_human(out: &mut dyn Write, plan: &Plan) -> io::Result<()> {
    let log = plan.log_path.display().to_string();
    writeln!(
        out,
        "{}",
        escape_terminal(&format!("repair plan for {}:", plan.node))
    )?;
    if let Some(cut) = &plan.cut {
        let line = format!(
            "  cut      {log} at byte {}: {} removed, because of {} ({})",
            cut.offset,
            plural(cut.bytes, "byte", "bytes"),
            cut.reason.code,
            cut.reason.message
        );
        writeln!(out, "{}", escape_terminal(&line))?;
        if plan.salvage.is_empty() {
            writeln!(out, "  salvage  nothing")?;
        } else {
            let s = plan.salvage.first().zip(plan.salvage.last());
            let range = s.map_or(String::new(), |(a, b)| {
                format!(" (index {} to {})", a.index, b.index)
            });
            writeln!(
                out,
                "  salvage  {}{range} re-appended after the cut, {}",
                plural(plan.salvage.len() as u64, "good frame", "good frames"),
                plural(plan.salvage_bytes(), "byte", "bytes")
            )?;
        }
        if plan.dropped.frames > 0 {
            let mut line = format!("  drop     {} found after the damage", span(&plan.dropped));
            if plan.duplicates > 0 {
                line.push_str(&format!(
                    ", {} of them exact copies of entries that stay",
                    plan.duplicates
                ));
            }
            if plan.salvage.is_empty() && plan.salvageable > 0 {
                line.push_str(&format!(
                    " (--salvage would keep {}, which continue the index sequence)",
                    plan.salvageable
                ));
            }
            writeln!(out, "{line}")?;
        }
    }
    for p in &plan.remove {
        writeln!(
            out,
            "  remove   {}",
            escape_terminal(&p.display().to_string())
        )?;
    }
    let kept = format!(
        "  keep     {}, {} of {log}",
        span(&plan.keep),
        plural(plan.keep.bytes, "byte", "bytes")
    );
    writeln!(out, "{}", escape_terminal(&kept))?;
    if !plan.untouched.is_empty() {
        let mut codes: Vec<&str> = plan.untouched.iter().map(|f| f.code).collect();
        codes.dedup();
        writeln!(
            out,
            "  leave    {} repair does not change: {}",
            plural(plan.untouched.len() as u64, "finding", "findings"),
            codes.join(", ")
        )?;
    }
    writeln!(out, "  backup   every changed or removed file is first copied to <file>.raftdump-backup-<unix-seconds>[-<n>]")
}

/// Writes what an applied repair did, for people.
pub fn applied_human(out: &mut dyn Write, applied: &Applied) -> io::Result<()> {
    writeln!(out, "done:")?;
    for (file, backup) in &applied.backups {
        let line = format!("  backed up {} to {}", file.display(), backup.display());
        writeln!(out, "{}", escape_terminal(&line))?;
    }
    if let Some(c) = applied.cut_to {
        writeln!(out, "  cut the log to {}", plural(c, "byte", "bytes"))?;
    }
    if applied.appended.0 > 0 {
        writeln!(
            out,
            "  re-appended {} ({})",
            plural(applied.appended.0, "frame", "frames"),
            plural(applied.appended.1, "byte", "bytes")
        )?;
    }
    for p in &applied.removed {
        writeln!(
            out,
            "  removed {}",
            escape_terminal(&p.display().to_string())
        )?;
    }
    writeln!(out, "  synced the files and the directory")?;
    let report = Report {
        findings: applied.after.findings.clone(),
    };
    let (e, w, i) = report.counts();
    writeln!(
        out,
        "verify after repair: {}, {}, {}",
        plural(e as u64, "error", "errors"),
        plural(w as u64, "warning", "warnings"),
        plural(i as u64, "info", "infos")
    )?;
    for f in &report.findings {
        let line = format!("  {}[{}]: {}", sev(f.severity), f.code, f.message);
        writeln!(out, "{}", escape_terminal(&line))?;
    }
    Ok(())
}

fn sev(s: crate::check::Severity) -> &'static str {
    match s {
        crate::check::Severity::Error => "error",
        crate::check::Severity::Warning => "warning",
        crate::check::Severity::Info => "info",
    }
}

#[derive(Serialize)]
struct PlanLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    node: &'a str,
    dir: String,
    log_bytes: u64,
    keep_frames: u64,
    keep_bytes: u64,
    keep_last_index: Option<u64>,
    cut_offset: Option<u64>,
    cut_bytes: Option<u64>,
    cut_code: Option<&'a str>,
    salvage_frames: u64,
    salvage_bytes: u64,
    salvageable: u64,
    dropped_frames: u64,
    dropped_duplicates: u64,
    remove: Vec<String>,
    untouched: Vec<&'a str>,
}

#[derive(Serialize)]
struct BackupLine {
    file: String,
    backup: String,
}

#[derive(Serialize)]
struct AppliedLine {
    #[serde(rename = "type")]
    kind: &'static str,
    backups: Vec<BackupLine>,
    cut_to: Option<u64>,
    appended_frames: u64,
    appended_bytes: u64,
    removed: Vec<String>,
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    errors: usize,
    warnings: usize,
    infos: usize,
    dry_run: bool,
    applied: bool,
}

fn line(out: &mut dyn Write, v: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    writeln!(out)
}

/// Writes the plan, and what was done when it was applied, as JSON Lines.
pub fn json(out: &mut dyn Write, plan: &Plan, applied: Option<&Applied>) -> io::Result<()> {
    line(
        out,
        &PlanLine {
            kind: "plan",
            node: &plan.node,
            dir: plan.dir.to_string_lossy().into_owned(),
            log_bytes: plan.log_len,
            keep_frames: plan.keep.frames,
            keep_bytes: plan.keep.bytes,
            keep_last_index: plan.keep.last_index,
            cut_offset: plan.cut.as_ref().map(|c| c.offset),
            cut_bytes: plan.cut.as_ref().map(|c| c.bytes),
            cut_code: plan.cut.as_ref().map(|c| c.reason.code),
            salvage_frames: plan.salvage.len() as u64,
            salvage_bytes: plan.salvage_bytes(),
            salvageable: plan.salvageable,
            dropped_frames: plan.dropped.frames,
            dropped_duplicates: plan.duplicates,
            remove: plan
                .remove
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            untouched: plan.untouched.iter().map(|f| f.code).collect(),
        },
    )?;
    let (mut e, mut w, mut i) = (0, 0, 0);
    if let Some(a) = applied {
        line(
            out,
            &AppliedLine {
                kind: "applied",
                backups: a
                    .backups
                    .iter()
                    .map(|(f, b)| BackupLine {
                        file: f.to_string_lossy().into_owned(),
                        backup: b.to_string_lossy().into_owned(),
                    })
                    .collect(),
                cut_to: a.cut_to,
                appended_frames: a.appended.0,
                appended_bytes: a.appended.1,
                removed: a
                    .removed
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            },
        )?;
        for f in &a.after.findings {
            finding_json(out, f)?;
        }
        (e, w, i) = Report {
            findings: a.after.findings.clone(),
        }
        .counts();
    }
    line(
        out,
        &SummaryLine {
            kind: "summary",
            errors: e,
            warnings: w,
            infos: i,
            dry_run: applied.is_none(),
            applied: applied.is_some(),
        },
    )
}
