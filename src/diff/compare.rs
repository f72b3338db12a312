//! The comparison itself: a cursor per node reading its log in index order, the lockstep that
//! steps them together (skipping stretches of identical bytes in bulk), and the divergence it finds.

use super::*;

mod outcome;
use outcome::*;

/// Sees every frame and every stretch of damage of one node's log, in file order, as the
/// comparison reads them: `verify` of several nodes runs each node's own rules
/// (`check::node::LogPass`) this way, so each log is read and decoded once for both.
pub trait Observer {
    /// A good frame.
    fn entry(&mut self, e: &RawEntry<'_>);
    /// A stretch of damage.
    fn damage(&mut self, e: &LogError);
}

/// One node's stream: the next entry in index order, its replayer, and what it has seen.
struct Cursor<'a, 'o> {
    reader: crate::format::log::Frames<'a>,
    bytes: &'a [u8],
    obs: Option<&'o mut dyn Observer>,
    len: u64,
    at: Option<Index>,
    next: Option<RawEntry<'a>>,
    /// Whether `next` was taken over from the lead given to the latest `fill` (so it holds the
    /// same bytes at the same index as the lead's `next`).
    same_as_lead: bool,
    ended: bool,
    replayer: Replayer,
    first: Option<Index>,
    last: Option<Index>,
    last_term: Option<Term>,
    entries: u64,
    out_of_order: u64,
    damage: Option<LogError>,
    covered_to: Index,
    covered_term: Term,
    claim_to: Index,
}

impl<'a> Cursor<'a, '_> {
    /// Reads up to the next entry to compare. `lead` is another log's bytes and the entry it
    /// has just read: when this log holds the same bytes at the same offset, that entry is taken
    /// over without decoding it again (identical logs are the common case).
    #[inline]
    pub(super) fn fill(&mut self, mut lead: Option<(&[u8], &RawEntry<'_>)>) {
        self.same_as_lead = false;
        while self.next.is_none() && !self.ended {
            let same = lead
                .take()
                .and_then(|(bytes, e)| self.reader.next_if_same(bytes, e));
            self.same_as_lead = same.is_some();
            let item = match same {
                Some(e) => Some(Ok(e)),
                None => self.reader.next(),
            };
            match item {
                None => self.ended = true,
                Some(Ok(e)) => {
                    if let Some(o) = self.obs.as_deref_mut() {
                        o.entry(&e);
                    }
                    self.replayer.feed(&e);
                    if self.at.is_some_and(|at| e.index() > at) {
                        self.ended = true;
                    } else if self.last.is_some_and(|l| e.index() <= l) {
                        self.out_of_order += 1;
                        self.same_as_lead = false;
                    } else {
                        self.next = Some(e);
                    }
                }
                Some(Err(err)) => {
                    // goraft truncates here: nothing after it is compared, but the replayer
                    // counts what it would discard.
                    if let Some(o) = self.obs.as_deref_mut() {
                        o.damage(&err);
                    }
                    self.replayer.feed_damage(&err, self.len);
                    self.damage = Some(err);
                    self.ended = true;
                    for item in self.reader.by_ref() {
                        match item {
                            Ok(e) => {
                                if let Some(o) = self.obs.as_deref_mut() {
                                    o.entry(&e);
                                }
                                self.replayer.feed(&e);
                            }
                            Err(err) => {
                                if let Some(o) = self.obs.as_deref_mut() {
                                    o.damage(&err);
                                }
                                self.replayer.feed_damage(&err, self.len);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Takes `e` as the entry this node holds next: what [`Cursor::fill`] and [`Cursor::take`]
    /// do with a good frame in order, inside the common prefix.
    /// `replay`: whether to feed the replayer (not when it mirrors the first node's).
    #[inline]
    pub(super) fn took(&mut self, e: &RawEntry<'_>, replay: bool) {
        if let Some(o) = self.obs.as_deref_mut() {
            o.entry(e);
        }
        if replay {
            self.replayer.feed(e);
        }
        self.first.get_or_insert(e.index());
        self.last = Some(e.index());
        self.last_term = Some(e.term());
        self.entries += 1;
    }

    pub(super) fn peek_index(&self) -> Option<Index> {
        self.next.as_ref().map(RawEntry::index)
    }

    pub(super) fn take(&mut self) -> Option<RawEntry<'a>> {
        let e = self.next.take()?;
        self.first.get_or_insert(e.index());
        self.last = Some(e.index());
        self.last_term = Some(e.term());
        self.entries += 1;
        Some(e)
    }

    pub(super) fn absent(&self, i: Index) -> Absent {
        if i <= self.covered_to {
            Absent::Covered
        } else if self.next.is_none() {
            Absent::Beyond
        } else {
            Absent::Missing
        }
    }

    /// The last index this node vouches for: its last entry, or its snapshot's.
    pub(super) fn end(&self) -> Option<Index> {
        self.last
            .max((self.covered_to > 0).then_some(self.covered_to))
    }
}

/// A distinct entry at one index and who holds it.
struct Version<'a> {
    entry: RawEntry<'a>,
    nodes: Nodes,
    holders: usize,
}

pub(super) fn same_entry(a: &RawEntry<'_>, b: &RawEntry<'_>) -> bool {
    a.body == b.body
        || (a.wire.term == b.wire.term
            && a.wire.name == b.wire.name
            && a.wire.command == b.wire.command)
}

/// How many bytes from `pos` on every log holds the same as the first, looking at `window`
/// bytes at most (fewer where a log ends).
pub(super) fn same_bytes(logs: &[&[u8]], pos: usize, window: usize) -> usize {
    let Some((lead, rest)) = logs.split_first() else {
        return 0;
    };
    let end = logs
        .iter()
        .map(|l| l.len())
        .min()
        .unwrap_or(0)
        .min(pos.saturating_add(window));
    let Some(lead) = lead.get(pos..end) else {
        return 0;
    };
    const BLOCK: usize = 4096;
    let mut same = lead.len();
    for other in rest {
        let other = &other[pos..pos + same];
        let mut at = 0;
        while at < same {
            let to = (at + BLOCK).min(same);
            if lead[at..to] != other[at..to] {
                at += lead[at..to]
                    .iter()
                    .zip(&other[at..to])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                break;
            }
            at = to;
        }
        same = at;
    }
    same
}

/// The bulk path's first and largest comparison window, and its longest wait after a miss.
pub(super) const BULK_WINDOW_MIN: usize = 64 << 10;
pub(super) const BULK_WINDOW_MAX: usize = 2 << 20;
pub(super) const BULK_BACKOFF_MAX: u32 = 1024;

/// The next entry of every node, when all are at the same index with the same bytes.
#[inline]
fn unanimous<'a>(cursors: &[Cursor<'a, '_>]) -> Option<RawEntry<'a>> {
    let (first, rest) = cursors.split_first()?;
    let e = first.next?;
    rest.iter()
        .all(|c| {
            c.next.is_some_and(|f| {
                c.same_as_lead || (f.wire.index == e.wire.index && f.body == e.body)
            })
        })
        .then_some(e)
}

pub(super) fn normalize(p: &Path) -> PathBuf {
    p.components().collect()
}

/// Compares the targets' logs side by side; see the module docs.
///
/// # Errors
/// [`DiffError`] when there is nothing to compare, too much, or a cut is before a snapshot of a
/// compacted log.
pub fn compare(targets: &[Target<'_>], opts: &DiffOptions) -> Result<Divergence, DiffError> {
    compare_observed(targets, opts, &mut [])
}

/// [`compare`], also showing every frame and damage of node k's log, in file order, to
/// `observers[k]` (an observer for each target, or none at all; `None` for a node nobody
/// watches; the observers are taken out of the slice). Each log is read to its end, past a cut
/// (`DIR@INDEX`) too, for its observer.
///
/// # Errors
/// As [`compare`]; an error comes before any observer has seen anything.
pub fn compare_observed(
    targets: &[Target<'_>],
    opts: &DiffOptions,
    observers: &mut [Option<&mut dyn Observer>],
) -> Result<Divergence, DiffError> {
    compare_impl(targets, opts, observers, true)
}

/// `shortcut`: take the short path for unanimous entries (off only in tests, which check that
/// both paths give the same comparison).
pub(super) fn compare_impl(
    targets: &[Target<'_>],
    opts: &DiffOptions,
    observers: &mut [Option<&mut dyn Observer>],
    shortcut: bool,
) -> Result<Divergence, DiffError> {
    let n = targets.len();
    if n == 0 {
        return Err(DiffError::NoNodes);
    }
    if n > MAX_NODES {
        return Err(DiffError::TooManyNodes(n));
    }
    let identity = identities(targets);
    let mut cursors = open_cursors(targets, opts, observers)?;
    let mut walk = Walk::new(n, opts, &identity);
    let mut at = AtIndex {
        slots: Vec::with_capacity(n),
        versions: Vec::with_capacity(n),
        slot_version: vec![usize::MAX; n],
    };
    let mut bulk = Bulk::default();
    let logs: Vec<&[u8]> = cursors.iter().map(|c| c.bytes).collect();
    // The nodes whose replayers stand where the first node's does and only replay membership:
    // the bulk path feeds the first one alone and copies its state into them when it ends
    // (`lagging`). Once the general path has run, each is fed on its own.
    let mut mirrored: Vec<bool> = cursors
        .iter()
        .enumerate()
        .map(|(k, c)| k > 0 && shortcut && cursors[0].replayer.mirrors(&c.replayer))
        .collect();
    let mut lagging = false;

    loop {
        // The common case, in bulk: inside the common prefix, every log holds the same bytes at
        // the same offsets, one block after another. Then the first log's frames are decoded
        // once and every node takes the same entries, as the unanimous step below would one by
        // one, while the other logs are only compared byte for byte.
        if walk.in_common
            && shortcut
            && n > 1
            && bulk.wait == 0
            && bulk_step(&mut cursors, &mirrored, &logs, opts, &mut bulk, &mut walk)
        {
            lagging |= mirrored.iter().any(|&m| m);
            continue;
        }
        bulk.wait = bulk.wait.saturating_sub(1);
        if mirrored.iter().any(|&m| m) {
            // The general path feeds every node's replayer: bring the mirrored ones up to date.
            if lagging {
                catch_up_mirrored(&mut cursors, &mirrored);
                lagging = false;
            }
            mirrored.fill(false);
        }
        if let Some((first, rest)) = cursors.split_first_mut() {
            first.fill(None);
            let lead = first.next.as_ref().map(|e| (first.bytes, e));
            for c in rest {
                c.fill(lead);
            }
        }
        // The common case, in short: inside the common prefix every node holds the same bytes
        // at the same index. The general path below would find one version held by everyone,
        // leave every pair undecided and extend the common prefix: do just that.
        if walk.in_common && shortcut {
            if let Some(e) = unanimous(&cursors) {
                let mut members = 0;
                for c in cursors.iter_mut() {
                    c.take();
                    members = members.max(c.replayer.kv().members.len());
                }
                walk.held_by_everyone(e.index(), e.term(), members);
                continue;
            }
        }
        let Some(i) = cursors.iter().filter_map(Cursor::peek_index).min() else {
            break;
        };
        walk.general_step(&mut cursors, i, &mut at);
    }
    walk.commit.cluster_size = walk.cluster_size;
    // A cut (`DIR@INDEX`) stops the comparison early; observers see the whole log.
    for c in cursors.iter_mut() {
        if let Some(o) = c.obs.as_deref_mut() {
            for item in c.reader.by_ref() {
                match item {
                    Ok(e) => o.entry(&e),
                    Err(err) => o.damage(&err),
                }
            }
        }
    }
    let pairs = pairs_of(&walk.pair_diff, &cursors);
    let nodes = summaries(targets, cursors, &identity);
    local_bounds(&nodes, &mut walk.commit);
    Ok(divergence(walk, pairs, nodes, opts))
}

/// For each target, the first target with the same (normalised) path: the same node named twice.
fn identities(targets: &[Target<'_>]) -> Vec<usize> {
    targets
        .iter()
        .map(|t| {
            let p = normalize(&t.dir.path);
            targets
                .iter()
                .position(|u| normalize(&u.dir.path) == p)
                .unwrap_or(0)
        })
        .collect()
}

/// A cursor at the start of each target's log, with its replayer and what its snapshot and conf
/// vouch for.
fn open_cursors<'a, 'o>(
    targets: &[Target<'a>],
    opts: &DiffOptions,
    observers: &mut [Option<&'o mut (dyn Observer + 'o)>],
) -> Result<Vec<Cursor<'a, 'o>>, DiffError> {
    let mut cursors = Vec::with_capacity(targets.len());
    let mut observers = observers.iter_mut();
    for t in targets {
        let ropts = ReplayOptions {
            at: t.at,
            history: None,
            membership_only: !opts.state,
            machine: replay::MachineChoice::Auto,
        };
        let replayer = replay::replayer_for(t.dir, &ropts)?;
        let (covered_to, covered_term) = t
            .dir
            .best_snapshot()
            .and_then(|s| s.parsed.as_ref().ok())
            .and_then(|p| p.snapshot.as_ref().ok())
            .map_or((0, 0), |s| (s.last_index, s.last_term));
        let conf_commit = t.dir.conf().map_or(0, |c| c.commit_index);
        cursors.push(Cursor {
            reader: t.dir.frames(),
            bytes: t.dir.log.bytes(),
            obs: observers.next().and_then(Option::take),
            len: t.dir.log.bytes().len() as u64,
            at: t.at,
            next: None,
            same_as_lead: false,
            ended: false,
            replayer,
            first: None,
            last: None,
            last_term: None,
            entries: 0,
            out_of_order: 0,
            damage: None,
            covered_to,
            covered_term,
            claim_to: conf_commit.max(covered_to),
        });
    }
    Ok(cursors)
}

/// The bulk path through the common prefix: how many bytes it compares at once, and how many
/// steps it waits after finding nothing to take.
struct Bulk {
    window: usize,
    wait: u32,
    backoff: u32,
}

impl Default for Bulk {
    fn default() -> Self {
        Bulk {
            window: BULK_WINDOW_MIN,
            wait: 0,
            backoff: 1,
        }
    }
}

/// One step of the bulk path: when every log stands at the same offset and holds the same bytes
/// from there, the first log's canonical frames in those bytes are taken by every node. Whether
/// any entry was taken (else the path backs off).
fn bulk_step(
    cursors: &mut [Cursor<'_, '_>],
    mirrored: &[bool],
    logs: &[&[u8]],
    opts: &DiffOptions,
    bulk: &mut Bulk,
    walk: &mut Walk<'_>,
) -> bool {
    let pos = cursors[0].reader.position();
    let ready = cursors
        .iter()
        .all(|c| c.next.is_none() && !c.ended && c.at.is_none() && c.reader.position() == pos);
    let same = if ready {
        let pos = pos as usize;
        let known = opts.same_bytes.as_ref().map_or(0, |s| s.get());
        let end = logs.iter().map(|l| l.len()).min().unwrap_or(0);
        let window_end = end.min(pos.saturating_add(bulk.window));
        if known >= window_end {
            window_end.saturating_sub(pos)
        } else {
            let same = same_bytes(logs, pos, bulk.window);
            if let Some(s) = &opts.same_bytes {
                s.raise(pos + same);
            }
            same
        }
    } else {
        0
    };
    let mut read = 0;
    if let (true, Some((first, rest))) = (same > 0, cursors.split_first_mut()) {
        let mut reader = first.reader.clone();
        read = reader.each_canonical_before(pos as usize + same, |e| {
            let i = e.index();
            if first.last.is_some_and(|l| i <= l) {
                // Out of order: the general path says what that means.
                return false;
            }
            first.took(e, true);
            let mut members = first.replayer.kv().members.len();
            for (c, &m) in rest.iter_mut().zip(&mirrored[1..]) {
                c.took(e, !m);
                if !m {
                    members = members.max(c.replayer.kv().members.len());
                }
            }
            walk.held_by_everyone(i, e.term(), members);
            true
        });
        let to = reader.position();
        first.reader = reader;
        for c in rest.iter_mut() {
            c.reader.skip_same(to, read);
        }
    }
    if read > 0 {
        bulk.window = (bulk.window * 2).min(BULK_WINDOW_MAX);
        bulk.backoff = 1;
        return true;
    }
    bulk.window = BULK_WINDOW_MIN;
    bulk.wait = bulk.backoff;
    bulk.backoff = (bulk.backoff * 2).min(BULK_BACKOFF_MAX);
    false
}

/// Copies the first node's replayer into the mirrored ones the bulk path left behind.
fn catch_up_mirrored(cursors: &mut [Cursor<'_, '_>], mirrored: &[bool]) {
    if let Some((first, rest)) = cursors.split_first_mut() {
        for (c, &m) in rest.iter_mut().zip(&mirrored[1..]) {
            if m {
                let copied = first.replayer.copy_to(&mut c.replayer);
                debug_assert!(copied, "mirrored replayers apply no writes");
            }
        }
    }
}

/// The entries at one index: one slot per node, grouped into versions (buffers reused from one
/// index to the next).
struct AtIndex<'a> {
    slots: Vec<Option<RawEntry<'a>>>,
    versions: Vec<Version<'a>>,
    /// Each node's version in `versions` (`usize::MAX`: none).
    slot_version: Vec<usize>,
}

/// What the walk over the logs has found so far.
struct Walk<'i> {
    n: usize,
    opts_max_rows: usize,
    opts_max_tails: usize,
    /// Each target's identity (see [`identities`]).
    identity: &'i [usize],
    in_common: bool,
    common_from: Option<Index>,
    common_to: Option<Index>,
    pair_diff: Vec<Option<PairDiff>>,
    pair_lm_reported: Vec<bool>,
    rows: Vec<Row>,
    conflicting_indexes: u64,
    tails: Vec<Tail>,
    tails_dropped: u64,
    active: Vec<usize>,
    next_active: Vec<usize>,
    commit: Commit,
    election_safety: Capped<EntryPair>,
    log_matching: Capped<EntryPair>,
    encoding: Capped<EntryPair>,
    committed_conflicts: Capped<CommittedConflict>,
    cluster_size: usize,
    everyone: Nodes,
    everyone_holders: usize,
}

impl<'i> Walk<'i> {
    fn new(n: usize, opts: &DiffOptions, identity: &'i [usize]) -> Self {
        let distinct = identity
            .iter()
            .enumerate()
            .filter(|(k, id)| *k == **id)
            .count();
        let everyone: Nodes = if n == MAX_NODES {
            Nodes::MAX
        } else {
            (1 << n) - 1
        };
        let mut walk = Walk {
            n,
            opts_max_rows: opts.max_rows,
            opts_max_tails: opts.max_tails,
            identity,
            in_common: true,
            common_from: None,
            common_to: None,
            pair_diff: vec![None; n * n],
            pair_lm_reported: vec![false; n * n],
            rows: Vec::new(),
            conflicting_indexes: 0,
            tails: Vec::new(),
            tails_dropped: 0,
            active: Vec::new(),
            next_active: Vec::new(),
            commit: Commit::default(),
            election_safety: Capped::new(opts.max_events),
            log_matching: Capped::new(opts.max_events),
            encoding: Capped::new(opts.max_events),
            committed_conflicts: Capped::new(opts.max_events),
            cluster_size: distinct,
            everyone,
            everyone_holders: 0,
        };
        walk.everyone_holders = walk.count(everyone);
        walk
    }

    /// How many distinct nodes (by identity) are among `nodes`.
    fn count(&self, nodes: Nodes) -> usize {
        let mut ids: Nodes = 0;
        for k in members_of(nodes) {
            ids |= 1 << self.identity[k];
        }
        ids.count_ones() as usize
    }

    /// Every node took the same entry `i` of `term` (the short and bulk paths): the common
    /// prefix grows, and the entry is on a majority when everyone is one.
    #[inline]
    fn held_by_everyone(&mut self, i: Index, term: Term, members: usize) {
        self.cluster_size = self.cluster_size.max(members);
        if self.everyone_holders > self.cluster_size / 2 {
            self.commit.majority = Some(MajorityBound {
                index: i,
                term,
                nodes: self.everyone,
                holders: self.everyone_holders,
                cluster_size: self.cluster_size,
            });
        }
        self.common_from.get_or_insert(i);
        self.common_to = Some(i);
    }

    /// The general path at index `i`: every node's entry there, its versions, the
    /// safety properties, the pairs, the common prefix, and past it the rows and tails.
    fn general_step<'a>(&mut self, cursors: &mut [Cursor<'a, '_>], i: Index, at: &mut AtIndex<'a>) {
        self.gather(cursors, i, at);
        let AtIndex {
            slots,
            versions,
            slot_version,
        } = at;
        let members = cursors
            .iter()
            .map(|c| c.replayer.kv().members.len())
            .max()
            .unwrap_or(0);
        self.cluster_size = self.cluster_size.max(members);
        let majority = self.cluster_size / 2 + 1;
        for v in versions.iter_mut() {
            v.holders = self.count(v.nodes);
        }
        let on_majority = versions.iter().position(|v| v.holders >= majority);
        if let Some(m) = on_majority {
            let v = &versions[m];
            self.commit.majority = Some(MajorityBound {
                index: i,
                term: v.entry.term(),
                nodes: v.nodes,
                holders: v.holders,
                cluster_size: self.cluster_size,
            });
        }
        self.committed_conflict(cursors, i, slots, versions, majority);
        if versions.len() > 1 {
            self.election_safety(i, versions);
        }
        self.pairs_at(cursors, i, slots, slot_version);

        // The common prefix.
        if self.in_common {
            let unanimous = versions.len() == 1
                && (0..self.n)
                    .all(|k| slots[k].is_some() || cursors[k].absent(i) == Absent::Covered);
            if unanimous {
                self.common_from.get_or_insert(i);
                self.common_to = Some(i);
            } else {
                self.in_common = false;
            }
        }
        if self.in_common {
            return;
        }

        // Beyond the common prefix: conflicting rows and tails.
        if versions.len() > 1 {
            self.conflicting_indexes += 1;
            if self.rows.len() < self.opts_max_rows {
                let cells = (0..self.n)
                    .map(|k| match &slots[k] {
                        Some(e) => Cell::Entry(e.to_entry(), e.offset),
                        None => Cell::Absent(cursors[k].absent(i)),
                    })
                    .collect();
                self.rows.push(Row { index: i, cells });
            }
        }
        self.extend_tails(cursors, i, slots, versions, majority);
    }

    /// Takes each node's entry at `i` into its slot and groups the slots into versions (an
    /// encoding difference where the same entry has different bytes).
    fn gather<'a>(&mut self, cursors: &mut [Cursor<'a, '_>], i: Index, at: &mut AtIndex<'a>) {
        let AtIndex {
            slots,
            versions,
            slot_version,
        } = at;
        slots.clear();
        versions.clear();
        for (k, c) in cursors.iter_mut().enumerate() {
            let e = if c.peek_index() == Some(i) {
                c.take()
            } else {
                None
            };
            slot_version[k] = usize::MAX;
            if let Some(e) = &e {
                match versions.iter_mut().position(|v| same_entry(&v.entry, e)) {
                    Some(v) => {
                        let first = members_of(versions[v].nodes).next().unwrap_or(k);
                        if versions[v].entry.body != e.body {
                            self.encoding.push(EntryPair {
                                index: i,
                                term: e.term(),
                                a: first,
                                a_offset: versions[v].entry.offset,
                                b: k,
                                b_offset: e.offset,
                                prefix_differs_at: None,
                            });
                        }
                        versions[v].nodes |= 1 << k;
                        slot_version[k] = v;
                    }
                    None => {
                        slot_version[k] = versions.len();
                        versions.push(Version {
                            entry: *e,
                            nodes: 1 << k,
                            holders: 0,
                        });
                    }
                }
            }
            slots.push(e);
        }
    }

    /// State Machine Safety: two different versions, each proven committed. A snapshot that
    /// ends here (its log no longer holds the entry) vouches for an entry of its lastTerm.
    fn committed_conflict(
        &mut self,
        cursors: &[Cursor<'_, '_>],
        i: Index,
        slots: &[Option<RawEntry<'_>>],
        versions: &[Version<'_>],
        majority: usize,
    ) {
        let n = self.n;
        let snapshots_here = (0..n).any(|k| slots[k].is_none() && cursors[k].covered_to == i);
        let contested = versions.len() > 1 || (snapshots_here && !versions.is_empty());
        if !contested {
            return;
        }
        let cluster_size = self.cluster_size;
        let mut proven: Vec<ProvenVersion> = versions
            .iter()
            .map(|v| {
                let mut claims = Vec::new();
                if v.holders >= majority {
                    claims.push(Claim::Majority {
                        holders: v.holders,
                        cluster_size,
                    });
                }
                for k in members_of(v.nodes) {
                    let c = &cursors[k];
                    if c.covered_to >= i {
                        claims.push(Claim::Snapshot {
                            node: k,
                            last_index: c.covered_to,
                        });
                    } else if c.claim_to >= i {
                        claims.push(Claim::ConfCommitIndex {
                            node: k,
                            commit_index: c.claim_to,
                        });
                    }
                }
                ProvenVersion {
                    term: v.entry.term(),
                    nodes: v.nodes,
                    offset: Some(v.entry.offset),
                    claims,
                }
            })
            .collect();
        for k in (0..n).filter(|&k| slots[k].is_none() && cursors[k].covered_to == i) {
            let claim = Claim::Snapshot {
                node: k,
                last_index: i,
            };
            let term = cursors[k].covered_term;
            match proven.iter_mut().find(|p| p.term == term) {
                Some(p) => p.claims.push(claim),
                None => proven.push(ProvenVersion {
                    term,
                    nodes: 1 << k,
                    offset: None,
                    claims: vec![claim],
                }),
            }
        }
        proven.retain(|p| !p.claims.is_empty());
        if proven.len() > 1 {
            self.committed_conflicts.push(CommittedConflict {
                index: i,
                versions: proven,
            });
        }
    }

    /// Election Safety: the same term, different entries.
    fn election_safety(&mut self, i: Index, versions: &[Version<'_>]) {
        for (x, vx) in versions.iter().enumerate() {
            for vy in &versions[x + 1..] {
                if vx.entry.term() == vy.entry.term() {
                    self.election_safety.push(EntryPair {
                        index: i,
                        term: vx.entry.term(),
                        a: members_of(vx.nodes).next().unwrap_or(0),
                        a_offset: vx.entry.offset,
                        b: members_of(vy.nodes).next().unwrap_or(0),
                        b_offset: vy.entry.offset,
                        prefix_differs_at: None,
                    });
                }
            }
        }
    }

    /// Pairs: the first difference, and Log Matching after it.
    fn pairs_at(
        &mut self,
        cursors: &[Cursor<'_, '_>],
        i: Index,
        slots: &[Option<RawEntry<'_>>],
        slot_version: &[usize],
    ) {
        let n = self.n;
        for a in 0..n {
            for b in a + 1..n {
                let slot = a * n + b;
                match self.pair_diff[slot] {
                    None => {
                        self.pair_diff[slot] = match (&slots[a], &slots[b]) {
                            (Some(_), Some(_)) if slot_version[a] == slot_version[b] => None,
                            (Some(_), Some(_)) => Some(PairDiff::Conflict(i)),
                            (Some(_), None) => absent_diff(i, b, cursors[b].absent(i)),
                            (None, Some(_)) => absent_diff(i, a, cursors[a].absent(i)),
                            (None, None) => None,
                        };
                    }
                    Some(PairDiff::Conflict(j)) | Some(PairDiff::Missing { index: j, .. })
                        if !self.pair_lm_reported[slot]
                            && slot_version[a] != usize::MAX
                            && slot_version[a] == slot_version[b] =>
                    {
                        self.pair_lm_reported[slot] = true;
                        if let (Some(ea), Some(eb)) = (&slots[a], &slots[b]) {
                            self.log_matching.push(EntryPair {
                                index: i,
                                term: ea.term(),
                                a,
                                a_offset: ea.offset,
                                b,
                                b_offset: eb.offset,
                                prefix_differs_at: Some(j),
                            });
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Past the common prefix: each version at `i` extends the open tail of the same nodes and
    /// status, or opens one.
    fn extend_tails(
        &mut self,
        cursors: &[Cursor<'_, '_>],
        i: Index,
        slots: &[Option<RawEntry<'_>>],
        versions: &[Version<'_>],
        majority: usize,
    ) {
        self.next_active.clear();
        for (x, v) in versions.iter().enumerate() {
            let claimed = members_of(v.nodes)
                .map(|k| &cursors[k])
                .fold(None, |acc, c| {
                    if c.covered_to >= i {
                        Some(Evidence::Snapshot)
                    } else if c.claim_to >= i {
                        acc.or(Some(Evidence::ConfCommitIndex))
                    } else {
                        acc
                    }
                });
            let status = if v.holders >= majority {
                TailStatus::OnMajority
            } else if let Some(evidence) = claimed {
                TailStatus::Claimed { evidence }
            } else {
                match versions
                    .iter()
                    .enumerate()
                    .find(|(y, w)| *y != x && w.holders >= majority)
                {
                    Some((_, w)) => TailStatus::Overwritten {
                        by_term: w.entry.term(),
                    },
                    None => TailStatus::NotOnMajority,
                }
            };
            let term = v.entry.term();
            let tails = &mut self.tails;
            let open = self.active.iter().copied().find(|&t| {
                tails[t].nodes == v.nodes
                    && tails[t].status == status
                    && tails[t].to.checked_add(1) == Some(i)
            });
            match open {
                Some(t) => {
                    let tail = &mut tails[t];
                    tail.to = i;
                    tail.min_term = tail.min_term.min(term);
                    tail.max_term = tail.max_term.max(term);
                    self.next_active.push(t);
                }
                None if tails.len() < self.opts_max_tails => {
                    self.next_active.push(tails.len());
                    tails.push(Tail {
                        nodes: v.nodes,
                        offsets: members_of(v.nodes)
                            .filter_map(|k| slots[k].as_ref().map(|e| e.offset))
                            .collect(),
                        holders: v.holders,
                        from: i,
                        to: i,
                        min_term: term,
                        max_term: term,
                        status,
                    });
                }
                None => self.tails_dropped += 1,
            }
        }
        std::mem::swap(&mut self.active, &mut self.next_active);
    }
}
