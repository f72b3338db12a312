//! Output of `inspect --follow`: the node's header, then one line per [`Event`] as it happens.
//!
//! Human form: the header block of `inspect` (without the summary lines, which a growing log
//! makes stale at once), a heading line, then one line per entry with the columns of the
//! `inspect` table (index, term, offset, command, decoded) at fixed widths and without the box,
//! since a table cannot be measured before its rows exist; events are lines of their own:
//! `problem: …`, `truncated: …`, `replaced: …`, `removed: …`.
//!
//! JSON form: the `node`, `conf` and `snapshot` lines of `inspect --json` (no `summary`), then
//! `entry` and `problem` lines in the same schema, and three more types:
//! `{"type":"truncated","index","offset","last_index","removed"}` (the first index removed, the
//! byte offset of the cut, the last index kept or null, how many entries printed before are
//! gone), `{"type":"replaced","path"}` (the path names a new file, read from its start) and
//! `{"type":"removed","path"}` (the path is gone; raftdump waits for it).

use std::io::{self, Write};

use super::escape_terminal;
use super::inspect::{self as inspect_render, HumanStyle};
use super::jsonl::Obj;
use crate::cli::Format;
use crate::datadir::DataDir;
use crate::follow::Event;
use crate::format::dialect::Dialect;
use crate::inspect::InspectOptions;

/// Column widths of the human rows: index, term, offset, command.
const WIDTHS: [usize; 4] = [10, 6, 12, 12];

/// Writes the events of one followed log.
#[derive(Debug)]
pub struct FollowRender {
    format: Format,
    dialect: Dialect,
    path: String,
    opts: InspectOptions,
    buf: Vec<u8>,
    cell: String,
}

impl FollowRender {
    /// A renderer for `dd`'s log in `format`, showing the entries `opts` lets through.
    pub fn new(format: Format, dd: &DataDir, opts: InspectOptions) -> Self {
        FollowRender {
            format,
            dialect: dd.dialect(),
            path: dd.log_path.to_string_lossy().into_owned(),
            opts,
            buf: Vec::with_capacity(4096),
            cell: String::new(),
        }
    }

    /// The header: the node's files, then (human) the column headings.
    pub fn header(
        &mut self,
        out: &mut dyn Write,
        dd: &DataDir,
        style: &HumanStyle,
    ) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.buf.clear();
                inspect_render::follow_header(&mut self.buf, dd);
                out.write_all(&self.buf)
            }
            Format::Human => {
                let size = std::fs::metadata(&dd.log_path).map_or(0, |m| m.len());
                inspect_render::header_files(out, dd, size, style)?;
                writeln!(
                    out,
                    "following   {} (Ctrl-C to stop)",
                    escape_terminal(&self.path)
                )?;
                writeln!(out)?;
                let [a, b, c, d] = WIDTHS;
                writeln!(
                    out,
                    "{:>a$} {:>b$} {:>c$}  {:<d$}  decoded",
                    "index", "term", "offset", "command"
                )
            }
        }
    }

    /// Writes one event (an entry only when the filters let it through).
    pub fn event(&mut self, out: &mut dyn Write, ev: &Event<'_>) -> io::Result<()> {
        if let Event::Entry(e) = ev {
            if !self.opts.matches(e) {
                return Ok(());
            }
        }
        self.buf.clear();
        match self.format {
            Format::Json => self.json(ev),
            Format::Human => self.human(ev),
        }
        out.write_all(&self.buf)
    }

    fn json(&mut self, ev: &Event<'_>) {
        let buf = &mut self.buf;
        match ev {
            Event::Entry(e) => inspect_render::entry_line(buf, e, self.dialect),
            Event::Problem { error, last_index } => {
                inspect_render::json_problem(buf, error, *last_index);
            }
            Event::Truncated {
                index,
                offset,
                last_index,
                removed,
            } => {
                let mut o = Obj::new(buf, "truncated");
                o.u64("index", *index);
                o.u64("offset", *offset);
                o.opt_u64("last_index", *last_index);
                o.u64("removed", *removed);
                o.end();
            }
            Event::Replaced | Event::Removed => {
                let ty = if matches!(ev, Event::Replaced) {
                    "replaced"
                } else {
                    "removed"
                };
                let mut o = Obj::new(buf, ty);
                o.str("path", &self.path);
                o.end();
            }
        }
    }

    fn human(&mut self, ev: &Event<'_>) {
        use std::io::Write as _;
        let path = escape_terminal(&self.path);
        let buf = &mut self.buf;
        let _ = match ev {
            Event::Entry(e) => {
                inspect_render::decoded_cell(e, &mut self.cell);
                let name = super::escape_bytes(e.wire.name);
                let [a, b, c, d] = WIDTHS;
                let row = format!(
                    "{:>a$} {:>b$} {:>c$}  {name:<d$}  {}",
                    e.index(),
                    e.term(),
                    e.offset,
                    self.cell
                );
                writeln!(buf, "{}", row.trim_end())
            }
            Event::Problem { error, .. } => {
                writeln!(buf, "problem: {}", escape_terminal(&error.to_string()))
            }
            Event::Truncated {
                index,
                offset,
                last_index,
                removed,
            } => {
                let kept = last_index.map_or("none".to_string(), |i| i.to_string());
                let gone = if *removed == 1 {
                    "1 entry printed above is gone".to_string()
                } else {
                    format!("{removed} entries printed above are gone")
                };
                writeln!(
                    buf,
                    "truncated: the log was cut at byte {offset}: {gone}, from index {index} on; last index kept: {kept}"
                )
            }
            Event::Replaced => writeln!(
                buf,
                "replaced: {path} is a new file; reading it from its start"
            ),
            Event::Removed => writeln!(buf, "removed: {path} is gone; waiting for it to come back"),
        };
    }
}
