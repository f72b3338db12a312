//! The leader's side of log replication (AppendEntries out, their results, commit) and the
//! follower's (AppendEntries in).

use crate::format::rpc::{AppendResponse, ReceivedAppend};
use crate::model::{term_in_bounds, Index, Peer, Term};

use super::{
    Action, ConfigChange, Core, Progress, Rejection, RequestId, Role, SentAppend, COMMIT_NOTIFY_MS,
};

impl Core {
    pub(super) fn replicate_all(&mut self, force: bool) {
        let names: Vec<String> = self.progress.keys().cloned().collect();
        for n in names {
            self.send_append(&n, force);
        }
    }

    /// Sends the next batch to `name`; `force` sends even with nothing new or a full window
    /// (heartbeats and read rounds).
    pub(super) fn send_append(&mut self, name: &str, force: bool) {
        if let Some(conn) = self.members.get(name).cloned() {
            self.send_append_to(name, conn, force);
        }
    }

    /// [`Core::send_append`] to `name` at `conn` (a member, or one whose removal was just
    /// committed).
    fn send_append_to(&mut self, name: &str, conn: String, force: bool) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let (commit, term, round, start) =
            (self.commit, self.hs.term, self.round, self.log.start_index);
        let max_batch = self.cfg.max_batch_entries.max(1);
        let max_inflight = self.cfg.max_inflight.max(1);
        let Some(p) = self.progress.get_mut(name) else {
            return;
        };
        if p.snapshot_inflight {
            return;
        }
        if p.next <= start {
            // The entries this peer needs were compacted into our snapshot.
            if p.raftdump {
                p.snapshot_inflight = true;
                self.out.push(Action::SendSnapshot {
                    to: Peer {
                        name: name.to_string(),
                        connection_string: conn,
                    },
                    last_index: start,
                });
                return;
            }
            // Never send snapshot RPCs to a goraft node (docs/format.md, 'RPCs'): probe from the snapshot point;
            // a raftdump peer reveals itself in its answer.
            p.next = start.saturating_add(1);
        }
        if !force && (p.inflight >= max_inflight || p.next > last_index) {
            return;
        }
        let prev = p.next.saturating_sub(1);
        let Some(prev_term) = self.log.term_at(prev) else {
            return;
        };
        let last = last_index.min(prev.saturating_add(max_batch));
        p.inflight = p.inflight.saturating_add(1);
        p.next = last.saturating_add(1);
        let sent = SentAppend {
            term,
            epoch: p.epoch,
            round,
            prev,
            last,
        };
        self.out.push(Action::SendAppend {
            to: Peer {
                name: name.to_string(),
                connection_string: conn,
            },
            term,
            prev_index: prev,
            prev_term,
            last,
            commit,
            sent,
        });
    }

    pub(super) fn on_append_result(
        &mut self,
        peer: &str,
        sent: SentAppend,
        resp: Option<AppendResponse>,
        raftdump: bool,
    ) {
        let resp = resp.filter(|r| term_in_bounds(self.hs.term, r.term));
        if let Some(r) = resp {
            if r.term > self.hs.term {
                self.become_follower(r.term, None);
                return;
            }
        }
        if self.role != Role::Leader || sent.term != self.hs.term {
            return;
        }
        let last_index = self.log.last_index();
        let Some(p) = self.progress.get_mut(peer) else {
            return;
        };
        let Some(r) = resp else {
            if sent.epoch == p.epoch {
                // The request may be lost: resend it (a new epoch; later answers to the old
                // one still count as matches).
                p.epoch = p.epoch.wrapping_add(1);
                p.inflight = 0;
                p.next = sent.prev.saturating_add(1).max(p.matched.saturating_add(1));
            }
            return;
        };
        p.raftdump |= raftdump;
        p.heard_at = Some(self.now);
        p.acked_round = p.acked_round.max(sent.round);
        if r.success {
            p.matched = p.matched.max(sent.last);
            if sent.epoch == p.epoch {
                p.inflight = p.inflight.saturating_sub(1);
            }
            p.next = p.next.max(p.matched.saturating_add(1));
            self.advance_commit();
            self.send_append(peer, false);
        } else if sent.epoch == p.epoch {
            p.epoch = p.epoch.wrapping_add(1);
            p.inflight = 0;
            // Step back: the peer's log is shorter, or its entry at `prev` differs. Entries it
            // has committed match ours (Log Matching), so never go below its commit index.
            let mut next = sent.prev.min(r.index.saturating_add(1));
            next = next
                .max(r.commit.saturating_add(1))
                .max(p.matched.saturating_add(1));
            next = next.clamp(1, last_index.saturating_add(1));
            let progressed = next <= sent.prev;
            p.next = next;
            if progressed {
                self.send_append(peer, false);
            }
        }
        self.check_reads();
    }

    pub(super) fn advance_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        loop {
            let mut m: Vec<Index> = self
                .peers()
                .iter()
                .map(|p| self.progress.get(&p.name).map_or(0, |x| x.matched))
                .collect();
            m.push(self.persisted.min(self.log.last_index()));
            m.sort_unstable_by(|a, b| b.cmp(a));
            let Some(&n) = m.get(self.quorum() - 1) else {
                return;
            };
            // Only entries of the current term are committed by counting (Raft §5.4.2).
            if n <= self.commit || self.log.term_at(n) != Some(self.hs.term) {
                return;
            }
            // Apply one membership change at a time: the quorum changes with it.
            let n = match self
                .pending_config
                .range(self.commit.saturating_add(1)..=n)
                .next()
            {
                Some((&c, _)) => c,
                None => n,
            };
            let before = self.members.clone();
            self.set_commit(n);
            if self.members == before {
                return;
            }
        }
    }

    pub(super) fn set_commit(&mut self, n: Index) {
        if n <= self.commit {
            return;
        }
        self.commit = n;
        self.out.push(Action::Commit(n));
        let applied: Vec<(Index, ConfigChange)> = self
            .pending_config
            .range(..=n)
            .map(|(i, c)| (*i, c.clone()))
            .collect();
        let mut left = Vec::new();
        for (i, c) in applied {
            self.pending_config.remove(&i);
            match c {
                ConfigChange::Join(p) => {
                    if p.name == self.cfg.name {
                        self.removed_at = None;
                    }
                    self.last_join = Some((p.name.clone(), i));
                    self.members.entry(p.name).or_insert(p.connection_string);
                }
                ConfigChange::Leave(name) => {
                    if name == self.cfg.name {
                        log::warn!(
                            "this node was removed from the cluster (raft:leave at index {i})"
                        );
                        self.removed_at = Some(i);
                    }
                    if let Some(conn) = self.members.remove(&name) {
                        left.push((name, conn));
                    }
                }
            }
        }
        if self.role == Role::Leader {
            let next = self.log.last_index().saturating_add(1);
            let peers = self.peers();
            for (name, conn) in left {
                // A removed member learns that its removal is committed, and stops.
                self.send_append_to(&name, conn, true);
            }
            self.progress
                .retain(|n, _| peers.iter().any(|p| &p.name == n));
            for p in peers {
                if !self.progress.contains_key(&p.name) {
                    self.progress.insert(p.name.clone(), Progress::new(next));
                    self.send_append(&p.name, true);
                }
            }
            if !self.members.is_empty() && !self.members.contains_key(&self.cfg.name) {
                // This leader committed its own removal: the members learn the commit before
                // it steps down (else they would wait for an election to learn it).
                for p in self.peers() {
                    self.send_append(&p.name, true);
                }
                self.become_follower(self.hs.term, None);
            }
        }
        let done: Vec<(Index, (RequestId, Term))> =
            self.proposals.range(..=n).map(|(i, v)| (*i, *v)).collect();
        for (i, (id, term)) in done {
            self.proposals.remove(&i);
            let result = if self.log.term_at(i) == Some(term) {
                Ok(i)
            } else {
                Err(Rejection::Superseded)
            };
            self.out.push(Action::ProposalDone { id, result });
        }
        if self.role == Role::Leader {
            // Followers learn the new commit index soon even when idle, but not with an extra
            // request per commit: under load the next batch carries it anyway.
            if self.commit_notify_at.is_none() {
                self.commit_notify_at = Some(self.now.saturating_add(COMMIT_NOTIFY_MS));
            }
        }
        self.check_reads();
    }

    pub(super) fn reply_append(&mut self, id: RequestId, index: Index, success: bool) {
        self.out.push(Action::ReplyAppend {
            id,
            resp: AppendResponse {
                term: self.hs.term,
                index,
                commit: self.commit,
                success,
            },
        });
    }

    /// A leader's AppendEntries: its entries are checked and the new ones handed on as the
    /// request's own batch (never copied).
    pub(super) fn on_append(&mut self, id: RequestId, req: ReceivedAppend) {
        if req.term < self.hs.term {
            let last = self.log.last_index();
            self.reply_append(id, last, false);
            return;
        }
        if req.term == self.hs.term && self.role == Role::Leader {
            // Two leaders in one term cannot happen with persisted votes; refuse, never crash.
            let key = format!("own term {}", req.leader);
            self.ratelog.log(self.now, super::ERROR, &key, || {
                format!(
                    "AppendEntries from {} in my own leader term {}: refused",
                    req.leader, req.term
                )
            });
            let last = self.log.last_index();
            self.reply_append(id, last, false);
            return;
        }
        if req.term > self.hs.term || self.role != Role::Follower {
            self.become_follower(req.term, Some(req.leader.clone()));
        }
        self.leader = Some(req.leader.clone());
        self.reset_election_timer();

        let last = self.log.last_index();
        if req.prev_index > last {
            self.reply_append(id, last, false);
            return;
        }
        let mut prev = req.prev_index;
        let mut entries = req.entries;
        let leader = req.leader;
        // Entries at or below our snapshot point or commit index are committed: they match the
        // leader's (Log Matching), so they are skipped rather than checked.
        let known = self.commit.max(self.log.start_index);
        if prev < known {
            let skip = entries.iter().take_while(|e| e.index <= known).count();
            let matched_to = prev.saturating_add(skip as u64);
            entries.drop_front(skip);
            if entries.is_empty() {
                let commit_to = req.commit.min(matched_to);
                self.follower_commit(commit_to);
                self.reply_append(id, matched_to, true);
                return;
            }
            prev = matched_to;
        } else if self.log.term_at(prev) != Some(req.prev_term) {
            self.reply_append(id, last, false);
            return;
        }
        // Validate the batch before touching the log.
        let mut expect = prev;
        let mut term_floor = self.log.term_at(prev).unwrap_or(0);
        for e in entries.iter() {
            if Some(e.index) != expect.checked_add(1) || e.term < term_floor || e.term > req.term {
                let key = format!("out of order {}", leader);
                self.ratelog.log(self.now, super::WARN, &key, || {
                    format!(
                        "AppendEntries from {}: entry {} (term {}) does not follow {} (term {})",
                        leader, e.index, e.term, expect, term_floor
                    )
                });
                self.reply_append(id, last, false);
                return;
            }
            expect = e.index;
            term_floor = e.term;
        }
        let last_new = expect;
        let mut first_new = entries.len();
        for (k, e) in entries.iter().enumerate() {
            match self.log.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.commit {
                        let key = format!("conflict {}", leader);
                        self.ratelog.log(self.now, super::ERROR, &key, || {
                            format!(
                                "leader {} conflicts with committed entry {}",
                                leader, e.index
                            )
                        });
                        let last = self.log.last_index();
                        self.reply_append(id, last, false);
                        return;
                    }
                    self.truncate_after(e.index.saturating_sub(1));
                    first_new = k;
                    break;
                }
                None => {
                    first_new = k;
                    break;
                }
            }
        }
        entries.drop_front(first_new);
        if !entries.is_empty() {
            for e in entries.iter() {
                if let Some(c) = ConfigChange::of(e.name, e.payload) {
                    self.pending_config.insert(e.index, c);
                }
                self.log.push(e.index, e.term);
            }
            self.out.push(Action::Append(entries));
        }
        self.follower_commit(req.commit.min(last_new));
        self.reply_append(id, last_new, true);
    }

    pub(super) fn truncate_after(&mut self, index: Index) {
        self.log.truncate_after(index);
        self.pending_config.retain(|&i, _| i <= index);
        self.persisted = self.persisted.min(index);
        self.out.push(Action::Truncate(index));
        let dropped: Vec<Index> = self
            .proposals
            .range(index.saturating_add(1)..)
            .map(|(i, _)| *i)
            .collect();
        for i in dropped {
            if let Some((id, _)) = self.proposals.remove(&i) {
                self.out.push(Action::ProposalDone {
                    id,
                    result: Err(Rejection::Superseded),
                });
            }
        }
    }

    pub(super) fn follower_commit(&mut self, to: Index) {
        if to > self.commit {
            self.set_commit(to);
        }
    }
}
