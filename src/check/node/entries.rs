//! The log pass's per-entry rules: framing, protobuf, headers, index and term order, commands,
//! membership, and the damage summary.

use super::*;

impl<'c> Pass<'c> {
    /// A fork at `at` (the position and good frames before the next item), when no damage
    /// came before it.
    /// Takes over `part`, a pass over the frames that follow this pass's last one, started on
    /// its own from a copy of the initial pass whose previous entry was set to `(first index -
    /// 1, first term)` (see [`LogPass::run_split`]), when that is what reading those frames
    /// here would have done: this pass saw no damage and its last entry is the one `part`
    /// assumed (or an older term), and `part` found nothing at all (no finding, no count, no
    /// damage, no unknown name, no membership entry, which is all that depends on the state
    /// before it). Then only counts and the last entry carry over. Returns whether it took it;
    /// if not, nothing changed and the frames must be read here.
    pub(super) fn absorb(&mut self, part: &Pass<'c>, first: (u64, u64)) -> bool {
        let plain = part.findings.is_empty()
            && part.sink.counts.is_empty()
            && part.damage.is_empty()
            && part.out.first_damage.is_none()
            && !part.pending_next
            && part.unknown.is_empty()
            && part.unknown_more == 0
            && part.membership_cmds == 0;
        let follows = self.damage.is_empty()
            && self.out.first_damage.is_none()
            && !self.pending_next
            && self
                .prev
                .is_some_and(|(i, t)| i.checked_add(1) == Some(first.0) && t <= first.1);
        if !(plain && follows) {
            return false;
        }
        let (o, p) = (&mut self.out, &part.out);
        o.entries += p.entries;
        o.kept_entries += p.kept_entries;
        o.kept_last_index = p.kept_last_index.or(o.kept_last_index);
        o.last_index = p.last_index.or(o.last_index);
        o.last_term = p.last_term.or(o.last_term);
        for &(index, term) in &p.watched {
            if !o.watched.iter().any(|(i, _)| *i == index) {
                o.watched.push((index, term));
            }
        }
        self.goraft_bytes += part.goraft_bytes;
        self.prev = part.prev;
        true
    }

    pub(super) fn fork(&self, at: (usize, u64)) -> Option<Fork<'c>> {
        (self.out.first_damage.is_none() && self.damage.is_empty()).then(|| Fork {
            pass: self.clone(),
            at,
        })
    }

    pub(super) fn emit(&mut self, f: Finding) {
        let f = f.file(self.ctx.file.clone());
        self.findings.push(match &self.ctx.node {
            Some(n) => f.node(n.clone()),
            None => f,
        });
    }

    #[inline]
    pub(super) fn entry(&mut self, e: &RawEntry<'_>, base: u64) {
        let off = base + e.offset;
        let (index, term) = (e.wire.index, e.wire.term);
        let in_prefix = self.out.first_damage.is_none();
        self.out.entries += 1;
        if self.pending_next {
            for d in self.damage.iter_mut().filter(|d| d.next_index.is_none()) {
                d.next_index = Some(index);
            }
            self.pending_next = false;
        }
        if !e.header.quirks.is_canonical() {
            self.header_quirks(e, off);
        }
        if !e.wire.canonical {
            self.wire_quirks(e, off);
        }
        match self.prev {
            None => {
                self.out.first_index = Some(index);
                self.first_index(index, off);
                self.out.membership.known |= index == 1;
            }
            Some((pi, pt)) => {
                if Some(index) != pi.checked_add(1) {
                    self.index_step(pi, index, off);
                }
                if term < pt && self.sink.want("term-decrease") {
                    self.emit(
                        finding(
                            "term-decrease",
                            format!("term {term} at index {index} is lower than the previous entry's term {pt} (index {pi})"),
                        )
                        .offset(off)
                        .index(index)
                        .goraft("loads it without checking; terms must never decrease along a Raft log, so this log was damaged or mixed with another node's"),
                    );
                }
            }
        }
        self.prev = Some((index, term));
        let undecodable = self.command(e, off, in_prefix);
        if in_prefix {
            self.out.kept_entries += 1;
            self.out.kept_last_index = Some(index);
            // goraft's loader `continue`s before counting a frame whose command it cannot
            // decode, when it applies it during load (index <= conf commitIndex).
            let uncounted =
                undecodable && index <= self.ctx.conf_commit && index > self.ctx.start_index;
            if !uncounted {
                self.goraft_bytes += e.body.len() as u64 + frame::CANONICAL_HEADER_LEN as u64;
            }
        }
        if !self.ctx.watch.is_empty()
            && self.ctx.watch.contains(&index)
            && !self.out.watched.iter().any(|(i, _)| *i == index)
        {
            self.out.watched.push((index, term));
        }
        self.out.last_index = Some(index);
        self.out.last_term = Some(term);
    }

    pub(super) fn first_index(&mut self, index: u64, off: u64) {
        let covered = match self.ctx.snapshot_last_index {
            Some(last) => index >= 1 && index <= last.saturating_add(1),
            None => index == 1,
        };
        if covered {
            return;
        }
        let why = match self.ctx.snapshot_last_index {
            Some(last) => format!("the newest snapshot covers only up to index {last}"),
            None if index == 0 => "goraft's indexes start at 1".to_string(),
            None => "no snapshot covers the indexes before it".to_string(),
        };
        let missing = if index > 1 {
            format!(
                "; entries {}..{} are missing",
                self.ctx.snapshot_last_index.map_or(1, |l| l + 1),
                index - 1
            )
        } else {
            String::new()
        };
        if self.sink.want("log-first-index") {
            self.emit(
                finding("log-first-index", format!("the log starts at index {index}, but {why}{missing}"))
                    .offset(off)
                    .index(index)
                    .goraft("loads the entries at the wrong positions (it places index i at i - startIndex - 1), so lookups by index return the wrong entries"),
            );
        }
    }

    pub(super) fn index_step(&mut self, prev: u64, index: u64, off: u64) {
        if index > prev {
            if self.sink.want("index-gap") {
                self.emit(
                    finding(
                        "index-gap",
                        format!(
                            "index {index} follows index {prev}: {} missing",
                            plural(index - prev - 1, "entry is", "entries are")
                        ),
                    )
                    .offset(off)
                    .index(index)
                    .goraft("loads it without a continuity check; its in-memory positions then no longer match the indexes, so lookups return the wrong entries"),
                );
            }
        } else if self.sink.want("index-duplicate") {
            let what = if index == prev {
                format!("index {index} repeats the previous entry's index")
            } else {
                format!("index {index} follows index {prev}: the log goes back")
            };
            self.emit(
                finding("index-duplicate", what)
                    .offset(off)
                    .index(index)
                    .goraft("loads both copies without checking; stale entries can be resurrected this way (the compaction position bug; docs/format.md, 'Compaction') and replace what the leader wrote"),
            );
        }
    }

    pub(super) fn header_quirks(&mut self, e: &RawEntry<'_>, off: u64) {
        let q = e.header.quirks;
        let start = off as usize;
        let found = String::from_utf8_lossy(
            self.buf
                .get(start..start + e.header.len)
                .unwrap_or_default(),
        );
        let mut canonical = Vec::new();
        frame::write_header(e.header.body_len, &mut canonical);
        let skew = e.header.len as i64 - frame::CANONICAL_HEADER_LEN as i64;
        let goraft = match skew {
            0 => "Go's reader accepts it; goraft never writes it".to_string(),
            1.. => format!(
                "Go's reader accepts it but counts 9 bytes for this {}-byte header, so goraft's byte count falls {skew} short from here on (a later truncation would cut in the wrong place)",
                e.header.len
            ),
            _ => format!(
                "Go's reader accepts it but counts 9 bytes for this {}-byte header, so goraft's byte count is {} too high from here on (a later truncation would cut in the wrong place)",
                e.header.len,
                -skew
            ),
        };
        for (quirk, code) in [
            (HeaderQuirks::EXTRA_SPACES, "header-extra-spaces"),
            (HeaderQuirks::UNPADDED, "header-unpadded"),
            (HeaderQuirks::UPPERCASE, "header-uppercase"),
            (HeaderQuirks::LEADING_ZEROS, "header-leading-zeros"),
        ] {
            if q.contains(quirk) && self.sink.want(code) {
                let desc = match code {
                    "header-extra-spaces" => "more than 8 characters of padding",
                    "header-unpadded" => "fewer than 8 characters (the unpadded July-2013 form)",
                    "header-uppercase" => "uppercase hex digits",
                    _ => "zero padding instead of spaces",
                };
                let msg = format!(
                    "frame header \"{}\" + newline ({} bytes) has {desc}; goraft writes \"{}\"",
                    found.trim_end_matches('\n'),
                    e.header.len,
                    String::from_utf8_lossy(&canonical).trim_end_matches('\n')
                );
                self.emit(
                    finding(code, msg)
                        .offset(off)
                        .index(e.wire.index)
                        .goraft(goraft.clone()),
                );
            }
        }
    }

    pub(super) fn wire_quirks(&mut self, e: &RawEntry<'_>, off: u64) {
        let syntax = self.ctx.dialect.syntax();
        let Ok(quirks) = wire::check_as(e.body, &wire::LOG_ENTRY, syntax) else {
            return;
        };
        let body_at = off + e.header.len as u64;
        for q in quirks {
            let (code, goraft) = match q {
                WireQuirk::UnknownField { .. } => (
                    "wire-unknown-field",
                    "Go keeps the unknown field and sends it on when it replicates the entry",
                ),
                WireQuirk::DuplicateField { .. } => (
                    "wire-duplicate-field",
                    "Go keeps the last value; goraft writes every field once",
                ),
                WireQuirk::OutOfOrder { .. } => (
                    "wire-out-of-order",
                    "Go accepts any order; goraft writes fields 1, 2, 3, 4",
                ),
                WireQuirk::InvalidUtf8 { .. } => (
                    "wire-invalid-utf8",
                    "Go's proto2 decoder accepts it; the name matches no registered command",
                ),
                WireQuirk::ZeroWritten { .. } => (
                    "wire-zero-written",
                    "proto3 reads it as the zero it holds; the fork's own writer leaves such a field out",
                ),
            };
            if self.sink.want(code) {
                let msg = format!(
                    "entry body: {q} (file byte {})",
                    body_at + q.offset() as u64
                );
                let f = finding(code, msg)
                    .offset(off)
                    .index(e.wire.index)
                    .goraft(goraft);
                self.emit(match q {
                    WireQuirk::ZeroWritten { .. } => f.implementation("seaweedfs/raft"),
                    _ => f,
                });
            }
        }
    }

    /// Checks the command; returns whether goraft's `newCommand` would fail on it.
    #[inline]
    pub(super) fn command(&mut self, e: &RawEntry<'_>, off: u64, in_prefix: bool) -> bool {
        let payload = e.wire.command;
        match e.wire.name {
            b"write" => match e.wire.command.and_then(payload::canonical_write) {
                Some(c) => {
                    if c.fffd_escape || c.fffd_raw {
                        self.replacement_char(e, off, "value", c.fffd_escape);
                    }
                    false
                }
                None => self.write_slow(e, off),
            },
            b"raft:nop" => {
                if payload.is_some() && self.sink.want("command-non-canonical") {
                    self.emit(
                        finding(
                            "command-non-canonical",
                            format!(
                                "raft:nop entry carries a {}-byte payload; goraft writes none",
                                payload.map_or(0, <[u8]>::len)
                            ),
                        )
                        .offset(off)
                        .index(e.wire.index)
                        .goraft("ignores the payload (the NOP decoder reads nothing)"),
                    );
                }
                false
            }
            b"raft:join" | b"raft:leave" => {
                self.membership_cmds += 1;
                self.membership(e, off, in_prefix)
            }
            name => {
                // SeaweedFS registers it with the fork (its master's one command).
                if name == b"MaxVolumeId" && self.ctx.dialect == Dialect::Seaweedfs {
                    return false;
                }
                // A canonical body skips `wire::check`, which is where invalid UTF-8 is found.
                if e.wire.canonical
                    && std::str::from_utf8(name).is_err()
                    && self.sink.want("wire-invalid-utf8")
                {
                    let msg = format!(
                        "entry body: field CommandName at body offset {} is not valid UTF-8",
                        // The tag after `08 <index> 10 <term>`.
                        2 + wire::varint_len(e.wire.index) + wire::varint_len(e.wire.term)
                    );
                    self.emit(
                        finding("wire-invalid-utf8", msg)
                            .offset(off)
                            .index(e.wire.index)
                            .goraft("Go's proto2 decoder accepts it; the name matches no registered command"),
                    );
                }
                self.unknown(name, e.wire.index, off);
                true
            }
        }
    }

    pub(super) fn write_slow(&mut self, e: &RawEntry<'_>, off: u64) -> bool {
        match command::decode(e.wire.name, e.wire.command) {
            Command::Write { key, value } => {
                self.non_canonical(e, off);
                let escape = e
                    .wire
                    .command
                    .is_some_and(|p| p.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\ufffd")));
                if value.contains('\u{fffd}') {
                    self.replacement_char(e, off, "value", escape);
                } else if key.contains('\u{fffd}') {
                    self.replacement_char(e, off, "key", escape);
                }
                false
            }
            Command::Invalid { reason } => {
                self.invalid(e, off, &reason);
                true
            }
            _ => false,
        }
    }

    pub(super) fn invalid(&mut self, e: &RawEntry<'_>, off: u64, reason: &str) {
        if self.sink.want("command-invalid") {
            let name = String::from_utf8_lossy(e.wire.name);
            self.emit(
                finding(
                    "command-invalid",
                    format!("{name} payload at index {} does not decode: {reason}", e.wire.index),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("newCommand fails: the entry is skipped when loaded and never applied once committed (setCommitIndex returns the error)"),
            );
        }
    }

    pub(super) fn non_canonical(&mut self, e: &RawEntry<'_>, off: u64) {
        if self.sink.want("command-non-canonical") {
            let name = String::from_utf8_lossy(e.wire.name);
            self.emit(
                finding(
                    "command-non-canonical",
                    format!(
                        "{name} payload at index {} decodes, but is not the bytes goraft writes (Go's JSON encoder output: compact, fixed key order, Go's escaping, one trailing newline)",
                        e.wire.index
                    ),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("decodes it leniently (case-insensitive keys, bytes after the first JSON value ignored); the payload was altered or written by another encoder"),
            );
        }
    }

    pub(super) fn replacement_char(
        &mut self,
        e: &RawEntry<'_>,
        off: u64,
        which: &str,
        escape: bool,
    ) {
        if self.sink.want("write-replacement-char") {
            let how = if escape {
                "written as a JSON escape, which Go's encoder writes in place of invalid UTF-8: the bytes the client sent are lost"
            } else {
                "a raw U+FFFD character (sent by the client, or already lossy before it reached raftd)"
            };
            self.emit(
                finding(
                    "write-replacement-char",
                    format!(
                        "write at index {} has a {which} containing U+FFFD: {how}",
                        e.wire.index
                    ),
                )
                .offset(off)
                .index(e.wire.index)
                .goraft("applies it as it is: GET returns ef bf bd where the original bytes were"),
            );
        }
    }

    pub(super) fn unknown(&mut self, name: &[u8], index: u64, off: u64) {
        if let Some(u) = self.unknown.iter_mut().find(|u| u.name == name) {
            u.count += 1;
        } else if self.unknown.len() < MAX_UNKNOWN_NAMES {
            self.unknown.push(Unknown {
                name: name.to_vec(),
                count: 1,
                index,
                offset: off,
            });
        } else {
            self.unknown_more += 1;
        }
    }

    pub(super) fn membership(&mut self, e: &RawEntry<'_>, off: u64, in_prefix: bool) -> bool {
        let index = e.wire.index;
        let cmd = command::decode(e.wire.name, e.wire.command);
        let keys: &[&str] = if e.wire.name == b"raft:join" {
            &["name", "connectionString"]
        } else {
            &["name"]
        };
        let canonical = e
            .wire
            .command
            .and_then(|p| payload::canonical(p, keys))
            .is_some();
        let apply = in_prefix && self.out.membership.known && index > self.membership_from;
        let at_conf = index <= self.ctx.conf_commit;
        match cmd {
            Command::Invalid { reason } => {
                self.invalid(e, off, &reason);
                return true;
            }
            Command::Join {
                name,
                connection_string,
            } => {
                if name.is_empty() {
                    if self.sink.want("join-empty-name") {
                        let what = if e.wire.command.is_some_and(|p| p.trim_ascii() == b"null") {
                            "a null payload"
                        } else {
                            "an empty name"
                        };
                        self.emit(
                            finding("join-empty-name", format!("raft:join at index {index} has {what}"))
                                .offset(off)
                                .index(index)
                                .goraft("adds a member with an empty name and connectionString when it applies it: the cluster then counts a member that does not exist, and commits that need it hang"),
                        );
                    }
                } else if !canonical {
                    self.non_canonical(e, off);
                }
                if apply {
                    let m = &mut self.out.membership;
                    if let Some(old) = m.members.get(&name) {
                        let old = old.clone();
                        if self.sink.want("join-duplicate") {
                            let detail = if old == connection_string {
                                String::new()
                            } else {
                                format!(" (it keeps connectionString \"{old}\", not \"{connection_string}\")")
                            };
                            self.emit(
                                finding("join-duplicate", format!("raft:join at index {index} for \"{name}\", which is already a member"))
                                    .offset(off)
                                    .index(index)
                                    .goraft(format!("ignores it at apply: AddPeer returns early{detail}")),
                            );
                        }
                    } else {
                        m.members.insert(name.clone(), connection_string.clone());
                        if at_conf {
                            m.at_conf.insert(name.clone(), connection_string);
                        }
                    }
                    self.out.membership.joined.entry(name).or_insert(index);
                }
            }
            Command::Leave { name } => {
                if !canonical {
                    self.non_canonical(e, off);
                }
                if apply {
                    let m = &mut self.out.membership;
                    m.members.remove(&name);
                    if at_conf {
                        m.at_conf.remove(&name);
                    }
                    m.left.insert(name, index);
                }
            }
            _ => {}
        }
        false
    }

    pub(super) fn damage(&mut self, e: LogError) {
        if self.out.first_damage.is_none() {
            self.out.first_damage = Some(e.offset);
            self.out.goraft_truncate_at = Some(self.goraft_bytes);
        }
        let code = damage_code(&Damage::Reader(e.kind.clone()));
        if self.sink.want(code) {
            self.damage.push(DamageRec {
                offset: e.offset,
                len: e.len,
                text: e.to_string(),
                kind: Damage::Reader(e.kind),
                before: e.entry,
                next_index: None,
            });
            self.pending_next = true;
        }
    }

    pub(super) fn finish(&mut self) {
        for d in std::mem::take(&mut self.damage) {
            let f = self.damage_finding(&d);
            self.emit(f);
        }
        for u in std::mem::take(&mut self.unknown) {
            if !self.sink.want("unknown-command") {
                continue;
            }
            let name = String::from_utf8_lossy(&u.name);
            let count = if u.count == 1 {
                String::new()
            } else {
                format!(" ({} entries, the first at index {})", u.count, u.index)
            };
            let (app, never) = match self.ctx.dialect {
                Dialect::Goraft => ("raftd", "raftd never applies it"),
                Dialect::Seaweedfs => ("SeaweedFS", "the master never applies it"),
            };
            self.emit(
                finding(
                    "unknown-command",
                    format!("command name \"{name}\" is registered by neither goraft nor {app}{count}"),
                )
                .offset(u.offset)
                .index(u.index)
                .goraft(format!("skips it while loading (and does not count its bytes when it is at or below conf commitIndex, so a later truncation would cut too early); {never}")),
            );
        }
        if self.unknown_more > 0 && self.sink.want("unknown-command") {
            let n = self.unknown_more;
            self.emit(finding(
                "unknown-command",
                format!("{} with further unregistered command names (more than {MAX_UNKNOWN_NAMES} distinct names)", plural(n, "entry", "entries")),
            ));
        }
    }

    pub(super) fn damage_finding(&self, d: &DamageRec) -> Finding {
        let o = &self.out;
        let total = o.entries;
        let after = total - d.before.min(total);
        let first = o.first_damage == Some(d.offset);
        let t = o.goraft_truncate_at.unwrap_or(0);
        let found_after = match (after, d.next_index, o.last_index) {
            (0, _, _) => String::new(),
            (n, Some(a), Some(b)) => format!(
                "; {} it (index {a} to {b})",
                plural(n, "good frame follows", "good frames follow")
            ),
            (n, _, _) => format!(
                "; {} it",
                plural(n, "good frame follows", "good frames follow")
            ),
        };
        let lost = o.bytes.saturating_sub(t);
        let skew = if first && t != d.offset {
            format!(
                " (goraft's own count puts the cut at byte {t}, not at the damage at byte {}: it counts 9 header bytes per frame and skips entries it cannot decode at or below conf commitIndex)",
                d.offset
            )
        } else {
            String::new()
        };
        let discard = format!(
            "truncates the log to {t} bytes at its next start{skew}, discarding the {lost} bytes from there on{}; its write offset is not reset, so the next append leaves a hole of zero bytes (hole bug)",
            if after == 0 {
                String::new()
            } else {
                format!(" ({} among them)", plural(after, "good frame", "good frames"))
            }
        );
        let later = format!("inside the part goraft discards (it truncates the log to {t} bytes)");
        let (code, msg, goraft) = match &d.kind {
            Damage::Prefix { commit } => (
                "log-commit-index-prefix",
                format!(
                    "the log starts with a 9-byte commit-index prefix (commit index {commit}), the format goraft wrote between 2013-07-20 and 2013-07-23{found_after}"
                ),
                format!(
                    "reads the prefix as a header declaring a {commit}-byte body, fails to decode it and truncates the log to 0 bytes: all {} entries are lost",
                    after
                ),
            ),
            Damage::Reader(kind) => {
                let code = damage_code(&d.kind);
                match kind {
                    DamageKind::TornHeader { has_digits: false } => (
                        code,
                        format!("the log ends with {} after the last frame: a length header cut short in its padding (a write cut short)", plural(d.len, "space byte", "space bytes")),
                        if first {
                            format!("takes them as a clean end of file and keeps them; the next frame is appended after them and still parses, but goraft's byte count is off by {} from then on (a later truncation would cut in the wrong place)", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornHeader { has_digits: true } => (
                        code,
                        format!("the log ends inside a frame header: {} with no newline (a write cut short)", plural(d.len, "byte", "bytes")),
                        if first {
                            format!("takes this as a clean end of file and keeps the {} stale bytes; the next appended frame is glued to them, fails to decode at the following start and is lost when goraft truncates the log to {t} bytes", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornBody { declared, available: 0, .. } => (
                        code,
                        format!("the log ends with a complete header declaring a {declared}-byte body, and no body bytes (a write cut short)"),
                        if first {
                            format!("takes this as a clean end of file (io.EOF) and keeps the {}-byte stale header; it swallows the next appended frame, which is lost when goraft truncates the log to {t} bytes at the following start", d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::TornBody { declared, available, .. } => (
                        code,
                        format!("the last frame is cut short: its header declares a {declared}-byte body but only {available} bytes remain"),
                        if first {
                            format!("truncates the log to {t} bytes at its next start{skew} (the partial entry, {} bytes, is lost) without resetting its write offset: its next append leaves a hole of {} zero bytes, and that entry and every later one are lost at the following start (hole bug)", d.len, d.len)
                        } else {
                            later
                        },
                    ),
                    DamageKind::NulRun => (
                        code,
                        format!("{} at a frame boundary (goraft's hole bug){found_after}", plural(d.len, "zero byte", "zero bytes")),
                        if first { discard } else { later },
                    ),
                    _ => (
                        code,
                        format!("{}{found_after}", d.text),
                        if first { discard } else { later },
                    ),
                }
            }
        };
        let f = finding(code, msg).offset(d.offset).goraft(goraft);
        // Only proto3 rejects a CommandName that is not UTF-8: goraft would load the entry.
        match &d.kind {
            Damage::Reader(DamageKind::BadEntry {
                error: wire::WireError::InvalidUtf8 { .. },
                ..
            }) => f.implementation("seaweedfs/raft"),
            _ => f,
        }
    }
}

pub(super) fn damage_code(kind: &Damage) -> &'static str {
    match kind {
        Damage::Prefix { .. } => "log-commit-index-prefix",
        Damage::Reader(DamageKind::TornHeader { .. } | DamageKind::TornBody { .. }) => {
            "log-torn-tail"
        }
        Damage::Reader(DamageKind::NulRun) => "log-nul-hole",
        Damage::Reader(DamageKind::Garbage { .. }) => "log-garbage",
        Damage::Reader(_) => "log-bad-entry",
    }
}
