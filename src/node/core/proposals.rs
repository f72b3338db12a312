//! Client proposals (writes, joins, removals) on the leader, and the checks membership changes
//! pass first: one change at a time, and with [`Config::strict_reconfig`] none that would leave
//! the members this leader hears from short of a quorum (etcd's strict reconfiguration check).

use super::*;

impl Core {
    pub(super) fn propose(&mut self, id: RequestId, name: String, payload: Option<Vec<u8>>) {
        let change = ConfigChange::of(&name, payload.as_deref());
        let refused = self.proposal_refusal().or_else(|| match &change {
            Some(ConfigChange::Join(p)) => self.join_refusal(&p.name),
            Some(ConfigChange::Leave(n)) => self.removal_refusal(n, false),
            None => None,
        });
        match refused {
            Some(why) => self.out.push(Action::ProposalDone {
                id,
                result: Err(why),
            }),
            None => self.append_proposal(id, name, payload),
        }
    }

    /// Removes member `name` (a `raft:leave`), checked as [`Core::removal_refusal`] says.
    pub(super) fn remove(&mut self, id: RequestId, name: String, force: bool) {
        let refused = self
            .proposal_refusal()
            .or_else(|| self.removal_refusal(&name, force));
        match refused {
            Some(why) => self.out.push(Action::ProposalDone {
                id,
                result: Err(why),
            }),
            None => {
                let payload = command::encode_leave(&name);
                self.append_proposal(id, names::LEAVE.to_string(), Some(payload));
            }
        }
    }

    fn append_proposal(&mut self, id: RequestId, name: String, payload: Option<Vec<u8>>) {
        let index = self.append_local(name, payload);
        self.proposals.insert(index, (id, self.hs.term));
        if self.quorum() == 1 {
            self.advance_commit();
        }
    }

    /// Why this node takes no proposal now: it was removed, or it is not the leader.
    fn proposal_refusal(&self) -> Option<Rejection> {
        if let Some(at) = self.removed_at {
            return Some(Rejection::Removed(at));
        }
        (self.role != Role::Leader).then(|| Rejection::NotLeader(self.leader_peer()))
    }

    /// Why a membership change cannot start now: one at a time, and none before this leader's
    /// nop is committed (the single-server change rule: a new leader first commits an entry
    /// of its term).
    fn change_pending(&self) -> Option<Rejection> {
        let pending = self
            .pending_config
            .range(self.commit.saturating_add(1)..)
            .next()
            .is_some();
        (pending || self.commit < self.term_start).then_some(Rejection::ConfigChangePending)
    }

    /// Why a join of `name` is refused: a change in progress, a duplicate name, or (with
    /// [`Config::strict_reconfig`]) the members heard from would not be a quorum of the
    /// cluster with the newcomer counted as not yet live (a second member of a one-member
    /// cluster excepted), or the last member to join has not caught up with its own join.
    fn join_refusal(&self, name: &str) -> Option<Rejection> {
        if let Some(r) = self.change_pending() {
            return Some(r);
        }
        if self.members.contains_key(name) {
            return Some(Rejection::DuplicateMember(name.to_string()));
        }
        if !self.cfg.strict_reconfig {
            return None;
        }
        let after = self.members.len() + 1;
        let live = self.live_members(None);
        // A lone member may always take a second: there is no other way to grow (etcd's
        // strict check makes the same exception).
        if live < after / 2 + 1 && after > 2 {
            return Some(Rejection::Unsafe(format!(
                "{live} of the {} members answered within the last {} ms; with {name:?} not yet \
                 live, {} of {after} are needed for a quorum",
                self.members.len(),
                self.live_window(),
                after / 2 + 1,
            )));
        }
        let (last, at) = self.last_join.as_ref()?;
        let matched = self.progress.get(last).map_or(0, |p| p.matched);
        (last != &self.cfg.name && self.members.contains_key(last) && matched < *at).then(|| {
            Rejection::Unsafe(format!(
                "{last:?} joined at index {at} and has not caught up yet (it holds the log to \
                 index {matched}); retry once it has"
            ))
        })
    }

    /// Why a removal of `name` is refused: a change in progress, not a member, or (unless
    /// `force`, and with [`Config::strict_reconfig`]) the members heard from, without it, would
    /// not be a quorum of the cluster without it.
    fn removal_refusal(&self, name: &str, force: bool) -> Option<Rejection> {
        if let Some(r) = self.change_pending() {
            return Some(r);
        }
        if !self.members.contains_key(name) {
            return Some(Rejection::NoSuchMember(name.to_string()));
        }
        let after = self.members.len() - 1;
        if after == 0 {
            return Some(Rejection::Unsafe(format!(
                "{name:?} is the only member; removing it would leave no cluster"
            )));
        }
        if force || !self.cfg.strict_reconfig {
            return None;
        }
        let live = self.live_members(Some(name));
        (live < after / 2 + 1).then(|| {
            Rejection::Unsafe(format!(
                "without {name:?}, {live} of the {after} remaining members answered within the \
                 last {} ms, and {} are needed for a quorum; add ?force=true to remove it anyway",
                self.live_window(),
                after / 2 + 1,
            ))
        })
    }

    /// How recent an answer counts a member as live: the longest election timeout.
    fn live_window(&self) -> Millis {
        self.cfg.election_timeout_ms.saturating_mul(2)
    }

    /// The members this leader heard from within [`Core::live_window`] (itself included),
    /// leaving `except` out.
    fn live_members(&self, except: Option<&str>) -> usize {
        let since = self.now.saturating_sub(self.live_window());
        self.members
            .keys()
            .filter(|m| Some(m.as_str()) != except)
            .filter(|m| {
                **m == self.cfg.name
                    || self
                        .progress
                        .get(*m)
                        .and_then(|p| p.heard_at)
                        .is_some_and(|t| t >= since)
            })
            .count()
    }
}
