//! How a log pass is run: over its own reader, in parts on several cores, side by side with
//! other logs that share its bytes (forking where they part), or fed by the comparison of `diff`.

use super::*;

/// Whether two contexts give the same log pass over the same bytes: all but the label and file.
pub fn same_rules(a: &LogContext, b: &LogContext) -> bool {
    a.start_index == b.start_index
        && a.snapshot_last_index == b.snapshot_last_index
        && a.base_members == b.base_members
        && a.conf_commit == b.conf_commit
        && a.watch == b.watch
        && a.dialect == b.dialect
}

impl<'c> LogPass<'c> {
    /// A pass over `bytes` (the whole log file) with `ctx`.
    pub fn new(bytes: &'c [u8], ctx: &'c LogContext) -> Self {
        let mut pass = Pass {
            ctx,
            buf: bytes,
            sink: Sink::default(),
            findings: Vec::new(),
            out: LogOutcome {
                bytes: bytes.len() as u64,
                ..LogOutcome::default()
            },
            prev: None,
            goraft_bytes: 0,
            damage: Vec::new(),
            pending_next: false,
            unknown: Vec::new(),
            unknown_more: 0,
            membership_from: 0,
            membership_cmds: 0,
        };
        if let Some(peers) = &ctx.base_members {
            pass.out.membership.known = true;
            pass.membership_from = ctx.snapshot_last_index.unwrap_or(0);
            for p in peers {
                pass.out
                    .membership
                    .members
                    .insert(p.name.clone(), p.connection_string.clone());
                pass.out
                    .membership
                    .at_conf
                    .insert(p.name.clone(), p.connection_string.clone());
            }
        }
        let base = match commit_index_prefix(bytes, ctx.dialect) {
            Some(commit) => {
                pass.out.commit_index_prefix = true;
                pass.out.first_damage = Some(0);
                pass.out.goraft_truncate_at = Some(0);
                pass.damage.push(DamageRec {
                    offset: 0,
                    len: 9,
                    kind: Damage::Prefix { commit },
                    before: 0,
                    next_index: None,
                    text: String::new(),
                });
                pass.sink.want("log-commit-index-prefix");
                pass.pending_next = true;
                9
            }
            None => 0,
        };
        LogPass {
            pass,
            base,
            from: (0, 0),
            share: None,
        }
    }

    /// The pass of `bytes` with `ctx` going on from `fork`, which another pass took at a frame
    /// boundary up to which `bytes` hold the same bytes as its log, with the same rules
    /// ([`same_rules`]). The findings it had made take this node's label and file.
    pub fn resume(fork: Fork<'_>, bytes: &'c [u8], ctx: &'c LogContext) -> Self {
        let Fork { pass: p, at } = fork;
        let mut findings = p.findings;
        for f in &mut findings {
            f.node.clone_from(&ctx.node);
            f.file = Some(ctx.file.clone());
        }
        let pass = Pass {
            ctx,
            buf: bytes,
            sink: p.sink,
            findings,
            out: LogOutcome {
                bytes: bytes.len() as u64,
                ..p.out
            },
            prev: p.prev,
            goraft_bytes: p.goraft_bytes,
            damage: p.damage,
            pending_next: p.pending_next,
            unknown: p.unknown,
            unknown_more: p.unknown_more,
            membership_from: p.membership_from,
            membership_cmds: p.membership_cmds,
        };
        LogPass {
            pass,
            base: 0,
            from: at,
            share: None,
        }
    }

    /// Makes [`LogPass::run_forking`] share what it learns of the other logs' bytes with another
    /// reader of the same logs (`verify`'s cross-node comparison): it skips comparing the
    /// prefix `same` says every log holds alike, and, when `all` (its others are every other
    /// log of that comparison), raises `same` as it compares. The findings are the same.
    pub fn sharing(mut self, same: std::sync::Arc<crate::diff::SameBytes>, all: bool) -> Self {
        self.share = Some((same, all));
        self
    }

    /// Whether the frames must be read by [`LogPass::run`]: the file starts with a commit-index
    /// prefix, so they start at byte 9, not where a reader of the whole file finds them.
    pub fn needs_own_reader(&self) -> bool {
        self.base != 0
    }

    /// Reads the frames itself. `release` is told the byte ranges the pass has left behind, so
    /// that a memory-mapped log of many GB can give those pages back (see
    /// `datadir::LogBytes::release`).
    pub fn run(&mut self, release: &dyn Fn(std::ops::Range<usize>)) {
        self.run_forking(release, &[], &|_, _| {}, &mut |_, _| {});
    }

    /// [`LogPass::run`], also comparing the pass's log with each of `others` (other nodes'
    /// logs, read side by side with it) and handing `fork(k, …)` a fork of the pass for
    /// `others[k]` as soon as it is known: the pass as it stood before the first frame that is
    /// damaged or does not end where `others[k]` still holds the same bytes (or at the end).
    /// `None` when it had seen damage before that point, or when the log starts with a
    /// commit-index prefix. `release_other(k, range)` is told the ranges of `others[k]` it has
    /// left behind.
    pub fn run_forking(
        &mut self,
        release: &dyn Fn(std::ops::Range<usize>),
        others: &[&[u8]],
        release_other: &dyn Fn(usize, std::ops::Range<usize>),
        fork: &mut dyn FnMut(usize, Option<Fork<'c>>),
    ) {
        const STEP: usize = 4 << 20;
        let base = self.base;
        let bytes = self.pass.buf;
        let mut released = 0usize;
        let (from, from_ordinal) = self.from;
        let mut reader = match bytes.get(base as usize..) {
            Some(b) if from == 0 => crate::format::log::Frames::new(b),
            Some(b) => crate::format::log::Frames::resume(b, from, from_ordinal),
            None => crate::format::log::Frames::new(&[]),
        }
        .dialect(self.pass.ctx.dialect);
        let mut sides: Vec<Side> = others
            .iter()
            .map(|_| Side {
                same_to: 0,
                limit: None,
                done: base != 0,
                released: 0,
            })
            .collect();
        if base != 0 {
            for k in 0..others.len() {
                fork(k, None);
            }
        }
        // A frame that ends beyond this, or damage, may decide a fork.
        let mut horizon = if sides.iter().all(|s| s.done) {
            usize::MAX
        } else {
            0
        };
        let mut last = (from, from_ordinal);
        let share = self.share.as_ref().map(|(s, all)| (&**s, *all));
        let pass = &mut self.pass;
        let mut step = |item: Result<&RawEntry<'_>, LogError>, pos: usize| {
            let pos = base as usize + pos;
            if pos > horizon || (item.is_err() && horizon != usize::MAX) {
                horizon = usize::MAX;
                let mut copy: Option<Option<Fork<'c>>> = None;
                for (k, side) in sides.iter_mut().enumerate() {
                    if side.done {
                        continue;
                    }
                    let known = share.map_or(0, |(s, _)| s.get());
                    side.compare(bytes, others[k], pos, known, &|r| release_other(k, r));
                    let passed = side.limit.is_some_and(|l| pos > l);
                    if passed || item.is_err() {
                        side.done = true;
                        fork(k, copy.get_or_insert_with(|| pass.fork(last)).clone());
                    } else {
                        horizon = horizon.min(side.limit.unwrap_or(side.same_to));
                    }
                }
                if let Some((s, true)) = share {
                    s.raise(
                        sides
                            .iter()
                            .map(|s| s.limit.unwrap_or(s.same_to))
                            .min()
                            .unwrap_or(0),
                    );
                }
            }
            match item {
                Ok(e) => {
                    last = (pos, e.ordinal + 1);
                    pass.entry(e, base);
                }
                Err(e) => {
                    last = (pos, e.entry);
                    pass.damage(rebase(e, base));
                }
            }
            if pos >= released + 2 * STEP {
                release(released..pos - STEP);
                released = pos - STEP;
            }
        };
        reader.each(&mut step);
        // The others that hold at least all of this log: their passes go on from its end.
        let mut copy: Option<Option<Fork<'c>>> = None;
        for (k, side) in sides.iter_mut().enumerate() {
            if !side.done {
                fork(k, copy.get_or_insert_with(|| pass.fork(last)).clone());
            }
        }
    }

    /// [`LogPass::run`] in `parts` parts checked at once, one per thread: the log is cut at
    /// likely frame boundaries ([`crate::format::log::boundary_after`]); each later part is checked
    /// from a copy of the initial pass, as if its first frame followed an entry of the index
    /// before and the same term, and this thread checks the first part. Then, in order, each
    /// part is taken over (`Pass::absorb`) when this pass stopped exactly at its first frame
    /// and the part found nothing that depends on what came before; any other part (damage, a
    /// finding, a membership entry, a false boundary) is read again here, frame by frame. So
    /// the findings are always those of [`LogPass::run`], and a clean log is checked in about
    /// `1 / parts` of its time. `parts` below 2, a commit-index prefix or a resumed pass: the
    /// plain run. Returns how many parts were taken over.
    pub fn run_split(
        &mut self,
        parts: usize,
        release: &(dyn Fn(std::ops::Range<usize>) + Sync),
    ) -> usize {
        const STEP: usize = 4 << 20;
        let bytes = self.pass.buf;
        let dialect = self.pass.ctx.dialect;
        let mut starts: Vec<(usize, u64, u64)> = Vec::new();
        if parts >= 2 && self.base == 0 && self.from == (0, 0) {
            for k in 1..parts {
                let from = (bytes.len() / parts * k).max(starts.last().map_or(0, |s| s.0 + 1));
                if let Some(b) = crate::format::log::boundary_after(bytes, from, dialect) {
                    if b.1 >= 1 {
                        starts.push(b);
                    }
                }
            }
        }
        if starts.is_empty() {
            self.run(release);
            return 0;
        }
        let initial = self.pass.clone();
        // Reads `reader` up to `end` into `pass`, giving back the pages left behind.
        let read =
            |reader: &mut crate::format::log::Frames<'c>, end: usize, pass: &mut Pass<'c>| {
                let mut released = crate::format::log::Frames::position(reader) as usize;
                reader.each_before(end, |item, pos| {
                    match item {
                        Ok(e) => pass.entry(e, 0),
                        Err(e) => pass.damage(e),
                    }
                    if pos >= released + 2 * STEP {
                        release(released..pos - STEP);
                        released = pos - STEP;
                    }
                });
            };
        // Part 0 goes on from this pass; each later part starts from a copy of it.
        let bounds: Vec<(usize, usize)> = std::iter::once(0)
            .chain(starts.iter().map(|s| s.0))
            .zip(starts.iter().map(|s| s.0).chain([usize::MAX]))
            .collect();
        let initial = &initial;
        let work = |i: usize| {
            let (start, end) = bounds[i];
            let mut pass = initial.clone();
            let mut reader = if i == 0 {
                crate::format::log::Frames::new(bytes).dialect(dialect)
            } else {
                let (_, index, term) = starts[i - 1];
                pass.prev = Some((index - 1, term));
                crate::format::log::Frames::resume(bytes, start, 0).dialect(dialect)
            };
            read(&mut reader, end, &mut pass);
            // Where the part's reader stopped, and its frames (a reader is not `Send`).
            (pass, reader.position() as usize, reader.ordinal())
        };
        let mut taken_over = 0;
        let mut reader = crate::format::log::Frames::new(bytes).dialect(dialect);
        let pass = &mut self.pass;
        let merged: Result<(), std::convert::Infallible> = crate::par::in_order(
            bounds.len(),
            bounds.len(),
            work,
            |i, (part, part_end, part_frames)| {
                if i == 0 {
                    *pass = part;
                    reader = crate::format::log::Frames::resume(bytes, part_end, part_frames)
                        .dialect(dialect);
                    return Ok(());
                }
                let (start, index, term) = starts[i - 1];
                if reader.position() as usize == start && pass.absorb(&part, (index, term)) {
                    let ordinal = reader.ordinal() + part.out.entries;
                    reader = crate::format::log::Frames::resume(bytes, part_end, ordinal)
                        .dialect(dialect);
                    taken_over += 1;
                } else {
                    read(&mut reader, bounds[i].1, pass);
                }
                Ok(())
            },
        );
        let Ok(()) = merged;
        taken_over
    }

    /// Ends the pass: what it learned, its findings in file order, and the per-code counts (the
    /// rest of the node's rules go on counting in them).
    pub(super) fn finish(self) -> (LogOutcome, Vec<Finding>, Sink) {
        let mut pass = self.pass;
        pass.finish();
        let Pass {
            mut findings,
            out,
            sink,
            ..
        } = pass;
        findings.sort_by_key(|f| f.offset.unwrap_or(u64::MAX));
        (out, findings, sink)
    }
}

impl crate::diff::Observer for LogPass<'_> {
    #[inline]
    fn entry(&mut self, e: &RawEntry<'_>) {
        // Only used without a prefix (`needs_own_reader`), where `base` is 0.
        self.pass.entry(e, self.base);
    }

    fn damage(&mut self, e: &LogError) {
        self.pass.damage(rebase(e.clone(), self.base));
    }
}

/// In how many parts [`LogPass::run_split`] checks a log of `len` bytes: one per core, up to
/// four, each of at least 8 MiB (below, starting a thread costs more than it saves).
pub fn split_parts(len: usize) -> usize {
    let cores = crate::par::cores();
    cores.min(4).min(len / (8 << 20)).max(1)
}

/// One other log read side by side with a pass, for [`LogPass::run_forking`].
struct Side {
    /// The bytes known to be the same in both logs: `..same_to`.
    same_to: usize,
    /// Where they differ (or the shorter log ends), once found.
    limit: Option<usize>,
    /// Whether its fork was handed out.
    done: bool,
    /// How much of it was given back.
    released: usize,
}

impl Side {
    /// Compares a block at a time, until the same bytes reach `pos` or a difference is found.
    /// The first `known` bytes of both are known to be the same (see [`LogPass::sharing`]).
    pub(super) fn compare(
        &mut self,
        mine: &[u8],
        other: &[u8],
        pos: usize,
        known: usize,
        release: &dyn Fn(std::ops::Range<usize>),
    ) {
        const BLOCK: usize = 1 << 20;
        const STEP: usize = 4 << 20;
        let known = known.min(mine.len()).min(other.len());
        if self.limit.is_none() && known > self.same_to {
            self.same_to = known;
            if known == mine.len() || known == other.len() {
                self.limit = Some(known);
            }
        }
        while self.limit.is_none() && self.same_to < pos {
            let end = (self.same_to + BLOCK).min(mine.len()).min(other.len());
            let (a, b) = (&mine[self.same_to..end], &other[self.same_to..end]);
            if a == b {
                self.same_to = end;
                if end == mine.len() || end == other.len() {
                    self.limit = Some(end);
                }
            } else {
                let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
                self.limit = Some(self.same_to + at);
            }
            if self.same_to >= self.released + 2 * STEP {
                release(self.released..self.same_to - STEP);
                self.released = self.same_to - STEP;
            }
        }
    }
}

pub(super) fn rebase(mut e: LogError, base: u64) -> LogError {
    e.offset += base;
    if let DamageKind::Garbage { at, .. } = &mut e.kind {
        *at += base;
    }
    e
}

/// Whether the file starts with the July-2013 `"%8x\n"` commit index before its first frame:
/// a 9-byte header whose "frame" does not decode, followed by a frame that does.
pub(super) fn commit_index_prefix(bytes: &[u8], dialect: Dialect) -> Option<u32> {
    let h = frame::parse_header(bytes).ok()?;
    if h.len != 9 || frame_decodes_at(bytes, 0, dialect) || !frame_decodes_at(bytes, 9, dialect) {
        return None;
    }
    Some(h.body_len)
}

/// Whether a frame with any header Go accepts starts at `p` and its body decodes.
pub(super) fn frame_decodes_at(bytes: &[u8], p: usize, dialect: Dialect) -> bool {
    let Some(rest) = bytes.get(p..) else {
        return false;
    };
    let Ok(h) = frame::parse_header(rest) else {
        return false;
    };
    rest.get(h.len..h.len + h.body_len as usize)
        .is_some_and(|body| dialect.decode_entry(body).is_ok())
}

pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
