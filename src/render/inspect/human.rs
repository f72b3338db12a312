//! The human report: header block, entry table in fixed-width chunks, problems.

use std::io::{self, Write};

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};
use unicode_width::UnicodeWidthStr;

use super::{
    esc_path, escape_bytes, escape_terminal, is_json, json_terminal_safe, push_bytes_quoted,
    push_quoted, relayout_json, HumanStyle, View,
};
use crate::datadir::{DataDir, InputKind};
use crate::format::log::{DamageKind, RawEntry};
use crate::inspect::{self, Progress};
use crate::model::Command;

/// Rows per comfy-table chunk: bounds the memory a long log's table needs.
pub const CHUNK_ROWS: usize = 256;

/// Box drawing like comfy-table's `UTF8_FULL_CONDENSED`, with solid inner lines.
const TABLE_PRESET: &str = "││──╞═╪╡│    ┬┴┌┐└┘";

/// The "decoded" cell: the command with its values quoted and escaped for a terminal.
pub(crate) fn decoded_cell(e: &RawEntry<'_>, out: &mut String) {
    out.clear();
    match e.command() {
        Command::Write { key, value } => {
            out.push_str("key=");
            push_quoted(out, &key);
            out.push_str(" value=");
            push_quoted(out, &value);
        }
        Command::Join {
            name,
            connection_string,
        } => {
            out.push_str("name=");
            push_quoted(out, &name);
            out.push_str(" connectionString=");
            push_quoted(out, &connection_string);
        }
        Command::Leave { name } => {
            out.push_str("name=");
            push_quoted(out, &name);
        }
        Command::Nop => {
            if let Some(p) = e.payload() {
                out.push_str("(unexpected payload) ");
                push_bytes_quoted(out, p);
            }
        }
        Command::Other { .. } => match e.payload() {
            None => out.push_str("(no payload)"),
            Some(p) if is_json(p) => {
                let mut buf = Vec::with_capacity(p.len());
                relayout_json(p, None, &mut buf);
                out.push_str(&json_terminal_safe(&String::from_utf8_lossy(&buf)));
            }
            Some(p) => {
                out.push_str("(not JSON) ");
                push_bytes_quoted(out, p);
            }
        },
        Command::Invalid { reason } => {
            out.push_str("(invalid: ");
            out.push_str(&escape_terminal(&reason));
            out.push_str(") ");
            match e.payload() {
                Some(p) => push_bytes_quoted(out, p),
                None => out.push_str("(no payload)"),
            }
        }
    }
}

/// Widths of the five columns, measured over the shown entries.
#[derive(Debug, Clone, Copy)]
struct Layout {
    widths: [usize; 5],
    shown: u64,
}

const HEADERS: [&str; 5] = ["index", "term", "offset", "command", "decoded"];

const RAW_HEADERS: [&str; 5] = ["index", "term", "offset", "command", "raw"];

fn digits(n: u64) -> usize {
    itoa::Buffer::new().format(n).len()
}

fn measure(
    view: &View<'_>,
    log: &[u8],
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> Layout {
    let heads = if view.raw { RAW_HEADERS } else { HEADERS };
    let mut w = heads.map(str::len);
    let mut shown = 0;
    let mut cell = String::new();
    for e in inspect::entries(log, view.opts)
        .dialect(view.dd.dialect())
        .with_progress(Progress::new(progress))
    {
        shown += 1;
        w[0] = w[0].max(digits(e.index()));
        w[1] = w[1].max(digits(e.term()));
        w[2] = w[2].max(digits(e.offset));
        w[3] = w[3].max(escape_bytes(e.wire.name).width());
        if view.raw {
            raw_text(log, &e, &mut cell);
            w[4] = w[4].max(cell.lines().map(UnicodeWidthStr::width).max().unwrap_or(0));
        } else {
            decoded_cell(&e, &mut cell);
            w[4] = w[4].max(cell.width());
        }
    }
    // Borders: 6 vertical lines and one space of padding on each side of 5 cells.
    let fixed: usize = w[..4].iter().sum::<usize>() + 6 + 10;
    let avail = style.width.saturating_sub(fixed).max(20);
    w[4] = w[4].min(avail);
    Layout { widths: w, shown }
}

/// The raw cell, with the header bytes taken from the log.
fn raw_text(log: &[u8], e: &RawEntry<'_>, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let start = e.offset as usize;
    let header = log.get(start..start + e.header.len).unwrap_or(&[]);
    let digits = format!("{:x}", e.body.len().max(1)).len().max(4);
    let line = |out: &mut String, label: &str, bytes: &[u8]| {
        let _ = write!(out, "{label:<digits$}  ");
        for b in bytes {
            let _ = write!(out, "{b:02x} ");
        }
        for _ in bytes.len()..16 {
            out.push_str("   ");
        }
        out.push(' ');
        out.extend(bytes.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
    };
    for (n, chunk) in header.chunks(16).enumerate() {
        if n > 0 {
            out.push('\n');
        }
        line(out, "hdr", chunk);
    }
    for (n, chunk) in e.body.chunks(16).enumerate() {
        out.push('\n');
        line(out, &format!("{:0digits$x}", n * 16), chunk);
    }
}

/// Writes one chunk of rows as a comfy-table with fixed column widths, leaving out the top border
/// of every chunk but the first and keeping the bottom border for the caller (so that chunks join
/// into one table).
fn write_chunk(
    out: &mut dyn Write,
    rows: &mut Vec<[String; 5]>,
    layout: &Layout,
    heads: Option<[&str; 5]>,
    bottom: &mut Option<String>,
) -> io::Result<()> {
    let mut t = Table::new();
    t.load_preset(TABLE_PRESET);
    t.set_content_arrangement(ContentArrangement::Disabled);
    if let Some(h) = heads {
        t.set_header(h);
    }
    for r in rows.drain(..) {
        t.add_row(r);
    }
    for (i, w) in layout.widths.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            let w = u16::try_from(*w + 2).unwrap_or(u16::MAX);
            col.set_constraint(ColumnConstraint::Absolute(Width::Fixed(w)));
            if i < 3 {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    let mut lines = t.lines().peekable();
    if heads.is_none() {
        lines.next();
    }
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            *bottom = Some(line);
        } else {
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

pub(super) fn key(out: &mut dyn Write, style: &HumanStyle, k: &str, v: &str) -> io::Result<()> {
    let mut lines = v.split('\n');
    let first = lines.next().unwrap_or("");
    if style.color {
        let b = anstyle::Style::new().bold();
        writeln!(out, "{}{k:<11}{} {first}", b.render(), b.render_reset())?;
    } else {
        writeln!(out, "{k:<11} {first}")?;
    }
    for l in lines {
        writeln!(out, "{:<11} {l}", "")?;
    }
    Ok(())
}

fn counts(list: &[(&'static str, u64)]) -> String {
    list.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn snapshot_line(dd: &DataDir, s: &crate::datadir::SnapshotFile) -> String {
    let mut parts = vec![match s.name_key {
        Some((t, i)) => format!("term {t}, index {i}"),
        None => "name is not <term>_<index>.ss".to_string(),
    }];
    parts.push(format!("{} bytes", s.size));
    match &s.parsed {
        Ok(p) if p.crc_ok() => parts.push("CRC ok".into()),
        Ok(p) => parts.push(format!(
            "CRC bad (header says {:08x}, content has {:08x})",
            p.declared_crc, p.actual_crc
        )),
        Err(e) => parts.push(format!("unreadable: {}", escape_terminal(&e.to_string()))),
    }
    if let Ok(Err(e)) = s.parsed.as_ref().map(|p| &p.snapshot) {
        parts.push(format!("bad JSON: {}", escape_terminal(&e.to_string())));
    }
    if dd
        .best_snapshot()
        .is_some_and(|b| b.file_name == s.file_name)
    {
        parts.push("raftdump loads this one (highest index)".into());
    }
    if dd
        .goraft_snapshot()
        .is_some_and(|b| b.file_name == s.file_name)
    {
        parts.push(format!(
            "{} loads this one (last name)",
            dd.dialect().implementation()
        ));
    }
    format!("{}: {}", escape_terminal(&s.file_name), parts.join(", "))
}

/// `seaweedfs (detected: ...)`: the dialect, how it was decided and the evidence.
fn dialect_line(d: &crate::format::dialect::Detection) -> String {
    let conflict = if d.conflicts() && !d.forced {
        "; the evidence conflicts"
    } else {
        ""
    };
    let evidence = escape_terminal(&d.evidence_line()).into_owned();
    format!("{} ({}: {evidence}{conflict})", d.dialect, d.how())
}

fn write_header(
    out: &mut dyn Write,
    view: &View<'_>,
    style: &HumanStyle,
    shown: Option<u64>,
) -> io::Result<()> {
    write_header_files(out, view, style)?;
    write_header_log(out, view, style, shown)?;
    Ok(())
}

/// The header's lines on the node's files: path, log, dialect, name, conf and snapshots.
fn write_header_files(out: &mut dyn Write, view: &View<'_>, style: &HumanStyle) -> io::Result<()> {
    header_files(out, view.dd, view.summary.file_size, style)
}

/// [`write_header_files`] for a log of `file_size` bytes (`inspect --follow` has no summary).
pub(crate) fn header_files(
    out: &mut dyn Write,
    dd: &DataDir,
    file_size: u64,
    style: &HumanStyle,
) -> io::Result<()> {
    key(out, style, "path", &esc_path(&dd.path))?;
    key(
        out,
        style,
        "log",
        &format!("{}, {} bytes", esc_path(&dd.log_path), file_size),
    )?;
    key(out, style, "dialect", &dialect_line(&dd.dialect))?;
    if dd.kind == InputKind::Dir {
        let name = match (&dd.name, &dd.server_name) {
            (None, Some(server)) => format!(
                "{} (no name file: a SeaweedFS master's host:port, from its dir and log)",
                escape_terminal(server)
            ),
            (None, None) => "none (no name file)".to_string(),
            (Some(l), _) => match &l.parsed {
                Ok(n) => escape_terminal(n).into_owned(),
                Err(_) => format!("{} (not UTF-8)", escape_bytes(&l.raw)),
            },
        };
        key(out, style, "node name", &name)?;
        let conf = match &dd.conf {
            None => "none (no conf file)".to_string(),
            Some(l) => match &l.parsed {
                Err(e) => format!("unreadable: {}", escape_terminal(&e.to_string())),
                Ok(c) if c.peers.is_empty() => format!("commitIndex {}, no peers", c.commit_index),
                Ok(c) => {
                    let mut v = format!("commitIndex {}, {} peers", c.commit_index, c.peers.len());
                    for p in &c.peers {
                        v.push_str(&format!(
                            "\npeer {} {}",
                            escape_terminal(&p.name),
                            escape_terminal(&p.connection_string)
                        ));
                    }
                    v
                }
            },
        };
        key(out, style, "conf", &conf)?;
        let snaps = if !dd.has_snapshot_dir {
            "none (no snapshot/ directory)".to_string()
        } else if dd.snapshots.is_empty() {
            "none".to_string()
        } else {
            let l: Vec<_> = dd.snapshots.iter().map(|f| snapshot_line(dd, f)).collect();
            l.join("\n")
        };
        key(out, style, "snapshots", &snaps)?;
        if !dd.leftovers.is_empty() {
            let l: Vec<_> = dd
                .leftovers
                .iter()
                .map(|p| format!("{} (left behind by a crash)", esc_path(p)))
                .collect();
            key(out, style, "leftovers", &l.join("\n"))?;
        }
        if !dd.unreadable.is_empty() {
            let l: Vec<_> = dd
                .unreadable
                .iter()
                .map(|(p, e)| format!("{}: {}", esc_path(p), escape_terminal(&e.to_string())))
                .collect();
            key(out, style, "unreadable", &l.join("\n"))?;
        }
    }
    Ok(())
}

/// The header's lines on the log: entries, terms, commands, frames, problems and what is shown.
fn write_header_log(
    out: &mut dyn Write,
    view: &View<'_>,
    style: &HumanStyle,
    shown: Option<u64>,
) -> io::Result<()> {
    let s = view.summary;
    let entries = match (s.first_index, s.last_index) {
        (Some(f), Some(l)) => format!("{}, index {f}..{l}", s.entries),
        _ => "0".to_string(),
    };
    key(out, style, "entries", &entries)?;
    let mut terms: Vec<_> = s
        .terms
        .iter()
        .map(|r| {
            format!(
                "term {} from index {} ({} entries)",
                r.term, r.start_index, r.count
            )
        })
        .collect();
    if s.terms_unlisted > 0 {
        terms.push(format!("... and {} more term changes", s.terms_unlisted));
    }
    key(
        out,
        style,
        "terms",
        &if terms.is_empty() {
            "none".into()
        } else {
            terms.join("\n")
        },
    )?;
    let mut cmds: Vec<_> = s
        .commands
        .iter()
        .map(|c| format!("{} {}", escape_bytes(&c.name), c.count))
        .collect();
    if s.commands_unlisted > 0 {
        cmds.push(format!("other names {}", s.commands_unlisted));
    }
    key(
        out,
        style,
        "commands",
        &if cmds.is_empty() {
            "none".into()
        } else {
            cmds.join(", ")
        },
    )?;
    let frames = if s.non_canonical == 0 {
        "all canonical".to_string()
    } else {
        let mut v = format!(
            "{} non-canonical (goraft reads them, but would not write them): {}",
            s.non_canonical,
            counts(&s.quirk_counts)
        );
        const SHOW: usize = 10;
        for n in s.non_canonical_listed.iter().take(SHOW) {
            let q: Vec<_> = n.quirks.iter().map(|q| q.message.as_str()).collect();
            v.push_str(&format!(
                "\nbyte {}, index {}: {}",
                n.offset,
                n.index,
                q.join("; ")
            ));
        }
        if s.non_canonical > SHOW as u64 {
            v.push_str(&format!(
                "\n... and {} more (all are listed by --json)",
                s.non_canonical - SHOW as u64
            ));
        }
        v
    };
    key(out, style, "frames", &frames)?;
    let problems = if s.problem_count == 0 {
        "none".to_string()
    } else {
        format!(
            "{} ({}), {} bytes; listed {}",
            s.problem_count,
            counts(&s.problem_kinds),
            s.problem_bytes,
            if view.summary_only {
                "below"
            } else {
                "after the entries"
            }
        )
    };
    key(out, style, "problems", &problems)?;
    if let Some(n) = shown {
        key(
            out,
            style,
            "shown",
            &format!("{n} of {} entries ({})", s.entries, view.opts.describe()),
        )?;
    }
    Ok(())
}

fn write_problems(
    out: &mut dyn Write,
    log: &[u8],
    dialect: crate::format::dialect::Dialect,
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    writeln!(out)?;
    if style.color {
        let b = anstyle::Style::new().bold();
        writeln!(out, "{}problems:{}", b.render(), b.render_reset())?;
    } else {
        writeln!(out, "problems:")?;
    }
    inspect::for_each_problem(log, dialect, Progress::new(progress), |err, last| {
        let after = match last {
            Some(i) => format!("after index {i}"),
            None => "before any good entry".to_string(),
        };
        // NUL runs and garbage already say how many bytes they cover.
        match err.kind {
            DamageKind::NulRun | DamageKind::Garbage { .. } => writeln!(out, "  {err} ({after})"),
            _ => writeln!(out, "  {err} ({} bytes, {after})", err.len),
        }
    })
}

/// Writes the human report: header block, entry table (unless `summary_only`), problems.
///
/// `progress` is called now and then with the byte offset reached.
pub fn human(
    out: &mut dyn Write,
    view: &View<'_>,
    style: &HumanStyle,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let log = view.dd.log.bytes();
    if view.summary_only {
        write_header(out, view, style, None)?;
    } else {
        let layout = measure(view, log, style, progress);
        let shown = (!view.opts.is_unfiltered()).then_some(layout.shown);
        write_header(out, view, style, shown)?;
        writeln!(out)?;
        if layout.shown == 0 {
            writeln!(out, "(no entries to show)")?;
        } else {
            write_table(out, view, log, &layout, progress)?;
        }
    }
    if view.summary.is_damaged() {
        write_problems(out, log, view.dd.dialect(), style, progress)?;
    }
    Ok(())
}

fn write_table(
    out: &mut dyn Write,
    view: &View<'_>,
    log: &[u8],
    layout: &Layout,
    progress: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let heads = if view.raw { RAW_HEADERS } else { HEADERS };
    let mut rows: Vec<[String; 5]> = Vec::with_capacity(CHUNK_ROWS);
    let mut bottom = None;
    let mut first = true;
    let (mut cell, mut line) = (String::new(), String::with_capacity(256));
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut n = [
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    ];
    for e in inspect::entries(log, view.opts)
        .dialect(view.dd.dialect())
        .with_progress(Progress::new(progress))
    {
        if view.raw {
            raw_text(log, &e, &mut cell);
        } else {
            decoded_cell(&e, &mut cell);
        }
        let name = escape_bytes(e.wire.name);
        let [a, b, c] = &mut n;
        let cells = [
            a.format(e.index()),
            b.format(e.term()),
            c.format(e.offset),
            &*name,
            &*cell,
        ];
        // Rows that fit on one line take the fast path once the header is out, unless rows
        // are already waiting for comfy-table (their order is kept).
        if !first && rows.is_empty() && plain_row(&mut line, cells, &layout.widths) {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if buf.len() >= 1 << 16 {
                out.write_all(&buf)?;
                buf.clear();
            }
            continue;
        }
        rows.push(cells.map(str::to_owned));
        if first || rows.len() == CHUNK_ROWS || !view.raw {
            out.write_all(&buf)?;
            buf.clear();
            write_chunk(out, &mut rows, layout, first.then_some(heads), &mut bottom)?;
            first = false;
        }
    }
    out.write_all(&buf)?;
    if !rows.is_empty() {
        write_chunk(out, &mut rows, layout, first.then_some(heads), &mut bottom)?;
    }
    if let Some(b) = bottom {
        writeln!(out, "{}", b.trim_end())?;
    }
    Ok(())
}

/// Lays out a row as the one table line comfy-table writes for it, when every cell is
/// printable ASCII that fits its column (nearly every entry): `│ ` before each cell, the
/// first three right-aligned, and ` │` at the end. Returns false, leaving the row to
/// comfy-table, for anything else (wrapping, wide characters, line breaks).
fn plain_row(line: &mut String, cells: [&str; 5], widths: &[usize; 5]) -> bool {
    let plain = |c: &str| c.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !cells
        .iter()
        .zip(widths)
        .all(|(c, &w)| c.len() <= w && plain(c))
    {
        return false;
    }
    const SPACES: &str = match std::str::from_utf8(&[b' '; 256]) {
        Ok(s) => s,
        Err(_) => "",
    };
    let pad = |line: &mut String, n: usize| {
        let mut n = n;
        while n > 0 {
            let k = n.min(SPACES.len());
            line.push_str(&SPACES[..k]);
            n -= k;
        }
    };
    line.clear();
    for (i, (c, &w)) in cells.iter().zip(widths).enumerate() {
        line.push_str("│ ");
        if i < 3 {
            pad(line, w - c.len());
            line.push_str(c);
        } else {
            line.push_str(c);
            pad(line, w - c.len());
        }
        line.push(' ');
    }
    line.push('│');
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rows_are_laid_out_as_comfy_table_does() {
        let layout = Layout {
            widths: [5, 4, 6, 9, 20],
            shown: 0,
        };
        let rows: &[[&str; 5]] = &[
            ["1", "0", "0", "raft:join", "name=\"a\""],
            [
                "12345",
                "9999",
                "123456",
                "123456789",
                "12345678901234567890",
            ],
            ["7", "", "3", "write", ""],
            ["7", "1", "3", "w r", "key=\"a b\" value=\"\""],
            ["7", "1", "3", "write", " lead and trail "],
            ["7", "1", "3", "write", "~!@#$%^&*()_+{}|:<>?"],
        ];
        for r in rows {
            let mut line = String::new();
            assert!(plain_row(&mut line, *r, &layout.widths), "{r:?}");
            let mut want = Vec::new();
            let mut bottom = None;
            let mut one = vec![r.map(str::to_owned)];
            write_chunk(&mut want, &mut one, &layout, None, &mut bottom).unwrap();
            assert_eq!(
                format!("{line}\n"),
                String::from_utf8(want).unwrap(),
                "{r:?}"
            );
        }
        let mut line = String::new();
        for r in [
            ["1", "0", "0", "write", "123456789012345678901"], // wraps
            ["123456", "0", "0", "write", ""],                 // too wide
            ["1", "0", "0", "write", "caf\u{e9}"],             // not ASCII
            ["1", "0", "0", "write", "a\nb"],                  // a line break
        ] {
            assert!(!plain_row(&mut line, r, &layout.widths), "{r:?}");
        }
    }

    #[test]
    fn decoded_cells_quote_and_escape_values() {
        use crate::format::log::{LogReader, LogWriter};
        let mut w = LogWriter::new(Vec::new());
        let value = "q\"<&>\u{fffd}\u{2028}\x01\x1b[2J\\".to_string();
        w.append(
            1,
            0,
            &Command::Write {
                key: "k y".into(),
                value,
            },
        )
        .unwrap();
        w.append_raw(2, 0, "etcd:set", Some(b"{\"a\":\"\\u2028\"}\n"))
            .unwrap();
        w.append_raw(3, 0, "etcd:raw", Some(b"\xffbin\n")).unwrap();
        w.append_raw(4, 0, "write", Some(b"[]\n")).unwrap();
        w.append(5, 1, &Command::Nop).unwrap();
        let log = w.into_inner();
        let mut cell = String::new();
        let cells: Vec<String> = LogReader::new(&log)
            .map(|e| {
                decoded_cell(&e.unwrap(), &mut cell);
                cell.clone()
            })
            .collect();
        assert_eq!(
            cells,
            [
                "key=\"k y\" value=\"q\\\"<&>\u{fffd}\\u{2028}\\u{1}\\u{1b}[2J\\\\\"",
                "{\"a\":\"\\u2028\"}",
                "(not JSON) \"\\xffbin\\n\"",
                "(invalid: expected a JSON object at payload offset 0) \"[]\\n\"",
                "",
            ]
        );
    }
}
