//! `inspect`: what a goraft log holds, in one streaming summary pass, and the entry filter.
//!
//! It owns [`summarize`] (entry count, index range, term runs, counts per command name, file
//! size, non-canonical frames and every stretch of damage), the [`InspectOptions`] filter and
//! the [`entries`] iterator that applies it while streaming, and [`for_each_problem`], which
//! streams the damage again for output. Each pass reports the offset it reached through
//! [`Progress`]. Everything works over the log's bytes (a memory map) and never
//! collects the entries: the summary keeps counters and bounded lists, so memory stays flat
//! however long the log is. It must not print (that is `render::inspect`) or open files (that
//! is `datadir`).

use std::collections::HashMap;

use serde::Serialize;

use crate::format::dialect::Dialect;
use crate::format::log::{LogError, LogReader, RawEntry};
use crate::format::wire::{self, WireQuirk};
use crate::model::{names, Command, Index, Term};

/// How many non-canonical frames and problems a [`Summary`] lists (all are counted).
pub const MAX_LISTED: usize = 100;
/// How many term runs a [`Summary`] lists (later term changes are only counted).
pub const MAX_TERM_RUNS: usize = 10_000;
/// How many distinct command names a [`Summary`] counts separately.
pub const MAX_COMMAND_NAMES: usize = 1_000;

/// Which entries to show. The default shows every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InspectOptions {
    /// Only entries with index >= this.
    pub from: Option<Index>,
    /// Only entries with index <= this.
    pub to: Option<Index>,
    /// Only entries of this term.
    pub term: Option<Term>,
    /// Only entries with one of these command names (empty: any name).
    pub commands: Vec<String>,
    /// Only `write` entries whose decoded key equals this.
    pub key: Option<String>,
    /// At most this many entries (counted after the other filters).
    pub limit: Option<u64>,
}

impl InspectOptions {
    /// Whether no filter is set: every entry is shown.
    pub fn is_unfiltered(&self) -> bool {
        *self == InspectOptions::default()
    }

    /// Whether `e` passes every filter but the limit.
    pub fn matches(&self, e: &RawEntry<'_>) -> bool {
        let index = e.index();
        if self.from.is_some_and(|f| index < f)
            || self.to.is_some_and(|t| index > t)
            || self.term.is_some_and(|t| e.term() != t)
        {
            return false;
        }
        if !self.commands.is_empty() && !self.commands.iter().any(|c| c.as_bytes() == e.wire.name) {
            return false;
        }
        match &self.key {
            None => true,
            Some(k) => {
                e.wire.name == names::WRITE.as_bytes()
                    && matches!(e.command(), Command::Write { key, .. } if key == *k)
            }
        }
    }

    /// The filters as command-line options, e.g. `--from 10 --command write`, for headers.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.from {
            parts.push(format!("--from {f}"));
        }
        if let Some(t) = self.to {
            parts.push(format!("--to {t}"));
        }
        if let Some(t) = self.term {
            parts.push(format!("--term {t}"));
        }
        for c in &self.commands {
            parts.push(format!("--command {c}"));
        }
        if let Some(k) = &self.key {
            parts.push(format!("--key {k}"));
        }
        if let Some(l) = self.limit {
            parts.push(format!("--limit {l}"));
        }
        parts.join(" ")
    }
}

/// How far apart (in bytes of log) [`Summary::resume_points`] are.
pub const RESUME_STEP: u64 = 1 << 19;

/// A good entry where a later pass can start reading (see [`LogReader::resume`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint {
    /// Its byte offset.
    pub offset: u64,
    /// How many good entries precede it.
    pub ordinal: u64,
}

/// How often (in bytes of log) the passes report progress.
pub const PROGRESS_STEP: u64 = 1 << 20;

/// Calls a callback with the byte offset reached, about every [`PROGRESS_STEP`] bytes. The CLI
/// uses it for its progress bar and to let go of the pages of the log it has read.
pub struct Progress<'p> {
    f: Option<&'p mut dyn FnMut(u64)>,
    next: u64,
}

impl<'p> Progress<'p> {
    /// Reports to `f`.
    pub fn new(f: &'p mut dyn FnMut(u64)) -> Self {
        Progress {
            f: Some(f),
            next: 0,
        }
    }

    /// Reports nowhere.
    pub fn none() -> Self {
        Progress {
            f: None,
            next: u64::MAX,
        }
    }

    /// Notes that `pos` was reached.
    #[inline]
    pub fn at(&mut self, pos: u64) {
        if pos >= self.next {
            self.next = pos.saturating_add(PROGRESS_STEP);
            if let Some(f) = &mut self.f {
                f(pos);
            }
        }
    }

    /// Notes the end of a pass at `pos`.
    pub fn done(&mut self, pos: u64) {
        if let Some(f) = &mut self.f {
            f(pos);
        }
    }
}

impl std::fmt::Debug for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("next", &self.next)
            .finish()
    }
}

/// The good entries of `log` that pass `opts`, in file order; damage is skipped (see
/// [`for_each_problem`]). Stops reading once the limit is reached.
pub fn entries<'a>(log: &'a [u8], opts: &'a InspectOptions) -> Entries<'a, 'static> {
    Entries {
        reader: LogReader::new(log),
        opts,
        remaining: opts.limit,
        end: u64::MAX,
        progress: Progress::none(),
    }
}

/// The good entries that pass `opts` from the resume point `from` up to (not including) the
/// byte offset `end`, which must be a resume point too (or the log's end); `opts.limit` is not
/// applied. The stretches between consecutive [`Summary::resume_points`] together give exactly
/// what [`entries`] gives without a limit.
pub fn entries_between<'a>(
    log: &'a [u8],
    opts: &'a InspectOptions,
    from: ResumePoint,
    end: u64,
) -> Entries<'a, 'static> {
    Entries {
        reader: LogReader::resume(log, from.offset, from.ordinal),
        opts,
        remaining: None,
        end,
        progress: Progress::none(),
    }
}

/// The iterator returned by [`entries`].
#[derive(Debug)]
pub struct Entries<'a, 'p> {
    reader: LogReader<'a>,
    opts: &'a InspectOptions,
    remaining: Option<u64>,
    /// Stop at this byte offset.
    end: u64,
    progress: Progress<'p>,
}

impl<'a> Entries<'a, '_> {
    /// Reports the byte offset reached to `progress` as the pass goes (and at its end).
    pub fn with_progress<'p>(self, progress: Progress<'p>) -> Entries<'a, 'p> {
        Entries {
            reader: self.reader,
            opts: self.opts,
            remaining: self.remaining,
            end: self.end,
            progress,
        }
    }

    /// Byte offset reached so far.
    pub fn position(&self) -> u64 {
        self.reader.position()
    }

    /// Reads the entries under `dialect` (goraft's unless told).
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.reader = self.reader.dialect(dialect);
        self
    }
}

impl<'a> Iterator for Entries<'a, '_> {
    type Item = RawEntry<'a>;

    #[inline]
    fn next(&mut self) -> Option<RawEntry<'a>> {
        if self.remaining != Some(0) {
            while self.reader.position() < self.end {
                let Some(r) = self.reader.next() else {
                    break;
                };
                self.progress.at(self.reader.position());
                if let Ok(e) = r {
                    if self.opts.matches(&e) {
                        if let Some(n) = &mut self.remaining {
                            *n -= 1;
                        }
                        return Some(e);
                    }
                }
            }
        }
        self.progress.done(self.reader.position());
        None
    }
}

/// Calls `f` with every stretch of damage in `log`, in file order, each with the index of the
/// last good entry before it; stops at the first error `f` returns.
pub fn for_each_problem<E>(
    log: &[u8],
    dialect: Dialect,
    mut progress: Progress<'_>,
    mut f: impl FnMut(LogError, Option<Index>) -> Result<(), E>,
) -> Result<(), E> {
    let mut last = None;
    let mut reader = LogReader::with_dialect(log, dialect);
    while let Some(r) = reader.next() {
        progress.at(reader.position());
        match r {
            Ok(e) => last = Some(e.index()),
            Err(err) => f(err, last)?,
        }
    }
    progress.done(reader.position());
    Ok(())
}

/// One way a frame differs from what goraft writes, though goraft reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quirk {
    /// Stable short name: a header quirk (`unpadded`, `extra-spaces`, `uppercase`,
    /// `leading-zeros`) or a body quirk (`unknown-field`, `duplicate-field`, `out-of-order`,
    /// `invalid-utf8`, `non-canonical-body`).
    pub kind: &'static str,
    /// What exactly, with the byte offset within the body where there is one.
    pub message: String,
}

fn wire_quirk_kind(q: &WireQuirk) -> &'static str {
    match q {
        WireQuirk::UnknownField { .. } => "unknown-field",
        WireQuirk::DuplicateField { .. } => "duplicate-field",
        WireQuirk::OutOfOrder { .. } => "out-of-order",
        WireQuirk::InvalidUtf8 { .. } => "invalid-utf8",
        WireQuirk::ZeroWritten { .. } => "zero-written",
    }
}

/// How `e`'s frame differs from the canonical bytes of `dialect`'s writer (empty when
/// canonical).
pub fn entry_quirks(e: &RawEntry<'_>, dialect: Dialect) -> Vec<Quirk> {
    let mut out: Vec<Quirk> = e
        .header
        .quirks
        .names()
        .zip(e.header.quirks.descriptions())
        .map(|(kind, d)| Quirk {
            kind,
            message: format!("header: {d}"),
        })
        .collect();
    if !e.wire.canonical {
        let before = out.len();
        if let Ok(quirks) = wire::check_as(e.body, &wire::LOG_ENTRY, dialect.syntax()) {
            out.extend(quirks.iter().map(|q| Quirk {
                kind: wire_quirk_kind(q),
                message: format!("body: {q}"),
            }));
        }
        if out.len() == before {
            out.push(Quirk {
                kind: "non-canonical-body",
                message: format!(
                    "body: fields are not laid out as {} writes them",
                    dialect.implementation()
                ),
            });
        }
    }
    out
}

/// A run of consecutive entries with the same term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermRun {
    /// The term.
    pub term: Term,
    /// Index of the run's first entry.
    pub start_index: Index,
    /// Byte offset of the run's first entry.
    pub start_offset: u64,
    /// Entries in the run.
    pub count: u64,
}

/// How many entries carry one command name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCount {
    /// The name's bytes (normally UTF-8).
    pub name: Vec<u8>,
    /// Entries with that name.
    pub count: u64,
}

/// A frame goraft reads but would not have written this way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NonCanonical {
    /// Byte offset of the frame.
    pub offset: u64,
    /// Its entry index.
    pub index: Index,
    /// What differs.
    pub quirks: Vec<Quirk>,
}

/// What one pass over a log found; see [`summarize`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The log's size in bytes.
    pub file_size: u64,
    /// Good entries.
    pub entries: u64,
    /// Index of the first good entry.
    pub first_index: Option<Index>,
    /// Index of the last good entry.
    pub last_index: Option<Index>,
    /// The largest index seen (equals `last_index` unless indexes go backwards).
    pub max_index: Index,
    /// The largest term seen.
    pub max_term: Term,
    /// Runs of equal terms in file order (the first [`MAX_TERM_RUNS`]).
    pub terms: Vec<TermRun>,
    /// Term changes after the listed runs (0 unless the list is full).
    pub terms_unlisted: u64,
    /// Entries per command name, sorted by name (the first [`MAX_COMMAND_NAMES`] names).
    pub commands: Vec<CommandCount>,
    /// Entries whose name is beyond the first [`MAX_COMMAND_NAMES`] distinct names.
    pub commands_unlisted: u64,
    /// Good entries whose frame is not canonical.
    pub non_canonical: u64,
    /// How many frames show each quirk, sorted by kind.
    pub quirk_counts: Vec<(&'static str, u64)>,
    /// The first [`MAX_LISTED`] non-canonical frames.
    pub non_canonical_listed: Vec<NonCanonical>,
    /// Stretches of damage.
    pub problem_count: u64,
    /// Bytes covered by damage.
    pub problem_bytes: u64,
    /// The first [`MAX_LISTED`] problems (all of them: [`for_each_problem`]).
    pub problems_listed: Vec<LogError>,
    /// Problems per kind (`torn-body`, ...), sorted by kind.
    pub problem_kinds: Vec<(&'static str, u64)>,
    /// The first good entry at or after every [`RESUME_STEP`] bytes, starting with the first
    /// good entry: where passes over stretches of the log can start side by side.
    pub resume_points: Vec<ResumePoint>,
}

impl Summary {
    /// Whether the log has any damage (the exit code of `inspect` is 1 then).
    pub fn is_damaged(&self) -> bool {
        self.problem_count > 0
    }
}

fn bump(counts: &mut Vec<(&'static str, u64)>, kind: &'static str) {
    match counts.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, n)) => *n += 1,
        None => counts.push((kind, 1)),
    }
}

/// Reads the whole log once and counts what is in it, keeping only bounded lists.
pub fn summarize(log: &[u8], dialect: Dialect, mut progress: Progress<'_>) -> Summary {
    let mut s = Summary {
        file_size: log.len() as u64,
        ..Summary::default()
    };
    // Command names borrow from the log during the pass; the last hit is checked first because
    // consecutive entries nearly always share a name.
    let mut names: Vec<(&[u8], u64)> = Vec::new();
    let mut by_name: HashMap<&[u8], usize> = HashMap::new();
    let mut last_name = usize::MAX;
    let mut next_resume = 0;
    let mut reader = LogReader::with_dialect(log, dialect);
    while let Some(r) = reader.next() {
        progress.at(reader.position());
        let e = match r {
            Ok(e) => e,
            Err(err) => {
                s.problem_count += 1;
                s.problem_bytes += err.len;
                bump(&mut s.problem_kinds, err.kind.code());
                if s.problems_listed.len() < MAX_LISTED {
                    s.problems_listed.push(err);
                }
                continue;
            }
        };
        let (index, term) = (e.index(), e.term());
        if e.offset >= next_resume {
            next_resume = e.offset.saturating_add(RESUME_STEP);
            s.resume_points.push(ResumePoint {
                offset: e.offset,
                ordinal: e.ordinal,
            });
        }
        s.entries += 1;
        s.first_index.get_or_insert(index);
        s.last_index = Some(index);
        s.max_index = s.max_index.max(index);
        s.max_term = s.max_term.max(term);
        let full = s.terms.len() >= MAX_TERM_RUNS;
        match s.terms.last_mut() {
            Some(run) if run.term == term => run.count += 1,
            _ if full => s.terms_unlisted += 1,
            _ => s.terms.push(TermRun {
                term,
                start_index: index,
                start_offset: e.offset,
                count: 1,
            }),
        }
        let name = e.wire.name;
        if names.get(last_name).is_some_and(|(n, _)| *n == name) {
            names[last_name].1 += 1;
        } else if let Some(&i) = by_name.get(name) {
            names[i].1 += 1;
            last_name = i;
        } else if names.len() < MAX_COMMAND_NAMES {
            by_name.insert(name, names.len());
            last_name = names.len();
            names.push((name, 1));
        } else {
            s.commands_unlisted += 1;
        }
        if !e.is_canonical() {
            s.non_canonical += 1;
            let quirks = entry_quirks(&e, dialect);
            for q in &quirks {
                bump(&mut s.quirk_counts, q.kind);
            }
            if s.non_canonical_listed.len() < MAX_LISTED {
                s.non_canonical_listed.push(NonCanonical {
                    offset: e.offset,
                    index,
                    quirks,
                });
            }
        }
    }
    progress.done(reader.position());
    s.commands = names
        .into_iter()
        .map(|(name, count)| CommandCount {
            name: name.to_vec(),
            count,
        })
        .collect();
    s.commands.sort_by(|a, b| a.name.cmp(&b.name));
    s.quirk_counts.sort();
    s.problem_kinds.sort();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::log::LogWriter;

    fn write(key: &str) -> Command {
        Command::Write {
            key: key.into(),
            value: "v".into(),
        }
    }

    /// join@1 t0, nop@2 t0, write a@3 t0, nop@4 t1, write b@5 t1, write a@6 t1.
    fn log() -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        let join = Command::Join {
            name: "n1".into(),
            connection_string: "http://x".into(),
        };
        w.append(1, 0, &join).unwrap();
        w.append(2, 0, &Command::Nop).unwrap();
        w.append(3, 0, &write("a")).unwrap();
        w.append(4, 1, &Command::Nop).unwrap();
        w.append(5, 1, &write("b")).unwrap();
        w.append(6, 1, &write("a")).unwrap();
        w.into_inner()
    }

    fn shown(log: &[u8], opts: &InspectOptions) -> Vec<u64> {
        entries(log, opts).map(|e| e.index()).collect()
    }

    #[test]
    fn summary_counts_terms_and_commands() {
        let log = log();
        let s = summarize(&log, Dialect::Goraft, Progress::none());
        assert_eq!(
            (s.entries, s.first_index, s.last_index),
            (6, Some(1), Some(6))
        );
        assert_eq!(s.file_size, log.len() as u64);
        let runs: Vec<_> = s
            .terms
            .iter()
            .map(|r| (r.term, r.start_index, r.count))
            .collect();
        assert_eq!(runs, [(0, 1, 3), (1, 4, 3)]);
        let cmds: Vec<_> = s
            .commands
            .iter()
            .map(|c| (String::from_utf8_lossy(&c.name).into_owned(), c.count))
            .collect();
        assert_eq!(
            cmds,
            [
                ("raft:join".into(), 1),
                ("raft:nop".into(), 2),
                ("write".into(), 3)
            ]
        );
        assert_eq!((s.non_canonical, s.problem_count), (0, 0));
        assert!(!s.is_damaged());
    }

    #[test]
    fn filters_combine() {
        let log = log();
        let all = InspectOptions::default();
        assert!(all.is_unfiltered());
        assert_eq!(shown(&log, &all), [1, 2, 3, 4, 5, 6]);
        let range = InspectOptions {
            from: Some(2),
            to: Some(4),
            ..all.clone()
        };
        assert_eq!(shown(&log, &range), [2, 3, 4]);
        let term = InspectOptions {
            term: Some(1),
            ..all.clone()
        };
        assert_eq!(shown(&log, &term), [4, 5, 6]);
        let cmds = InspectOptions {
            commands: vec!["raft:nop".into(), "raft:join".into()],
            ..all.clone()
        };
        assert_eq!(shown(&log, &cmds), [1, 2, 4]);
        let key = InspectOptions {
            key: Some("a".into()),
            ..all.clone()
        };
        assert_eq!(shown(&log, &key), [3, 6]);
        let limit = InspectOptions {
            limit: Some(2),
            term: Some(1),
            ..all.clone()
        };
        assert_eq!(shown(&log, &limit), [4, 5]);
        assert_eq!(limit.describe(), "--term 1 --limit 2");
        let none = InspectOptions {
            limit: Some(0),
            ..all
        };
        assert_eq!(shown(&log, &none), Vec::<u64>::new());
    }

    #[test]
    fn damage_is_counted_listed_and_streamed() {
        let mut log = log();
        let cut = log.len() - 5;
        log.truncate(cut);
        let second = entries(&log, &InspectOptions::default())
            .nth(1)
            .unwrap()
            .offset as usize;
        log.splice(second..second, [0u8; 7]);
        let s = summarize(&log, Dialect::Goraft, Progress::none());
        assert_eq!(s.entries, 5);
        assert_eq!(s.problem_count, 2);
        assert_eq!(s.problem_kinds, [("nul-run", 1), ("torn-body", 1)]);
        let mut got = Vec::new();
        let mut seen = Vec::new();
        let mut note = |pos| seen.push(pos);
        for_each_problem(
            &log,
            Dialect::Goraft,
            Progress::new(&mut note),
            |e, last| {
                got.push((e.offset, e.kind.code(), last));
                Ok::<_, ()>(())
            },
        )
        .unwrap();
        assert_eq!((seen.len(), seen.last()), (2, Some(&(log.len() as u64))));
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            (s.problems_listed[0].offset, "nul-run", s.first_index)
        );
        assert_eq!((got[1].1, got[1].2), ("torn-body", Some(5)));
        assert_eq!(s.problem_bytes, 7 + s.problems_listed[1].len);
    }

    #[test]
    fn non_canonical_frames_are_counted_with_their_quirks() {
        let mut w = LogWriter::new(Vec::new());
        w.append(1, 0, &Command::Nop).unwrap();
        let mut log = w.into_inner();
        // The 2013 unpadded header: "e\n" instead of "       e\n".
        let mut old = b"e\n".to_vec();
        old.extend_from_slice(&log[9..]);
        log.extend_from_slice(&old);
        // An unknown field 5 appended to a canonical body: length 14 + 2.
        let mut body = log[9..23].to_vec();
        body[1] = 3;
        body.extend_from_slice(&[0x28, 0x01]);
        log.extend_from_slice(b"      10\n");
        log.extend_from_slice(&body);
        let s = summarize(&log, Dialect::Goraft, Progress::none());
        assert_eq!((s.entries, s.non_canonical, s.problem_count), (3, 2, 0));
        assert_eq!(s.quirk_counts, [("unknown-field", 1), ("unpadded", 1)]);
        let listed: Vec<_> = s
            .non_canonical_listed
            .iter()
            .map(|n| (n.offset, n.index, n.quirks[0].kind))
            .collect();
        assert_eq!(listed, [(23, 1, "unpadded"), (39, 3, "unknown-field")]);
        assert_eq!(
            s.non_canonical_listed[1].quirks[0].message,
            "body: unknown field 5 at body offset 14"
        );
    }
}
