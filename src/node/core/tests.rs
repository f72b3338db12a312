use std::collections::BTreeMap;

use crate::format::command;
use crate::format::rpc::{AppendRequest, AppendResponse, VoteRequest, VoteResponse};
use crate::model::{names, Entry, Index, Peer, Term, MAX_TERM_STEP};

use super::*;

fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        name: "write".into(),
        payload: Some(format!("{{\"key\":\"k{index}\",\"value\":\"v\"}}\n").into_bytes()),
    }
}

fn follower(terms: &[Term]) -> Core {
    let mut log = LogTerms::new(0, 0);
    for (i, t) in terms.iter().enumerate() {
        log.push(i as u64 + 1, *t);
    }
    let mut members = BTreeMap::new();
    for n in ["a", "b", "c"] {
        members.insert(n.to_string(), format!("http://{n}"));
    }
    Core::new(
        Config::new("a", "http://a"),
        InitialState {
            log,
            members,
            ..Default::default()
        },
        0,
    )
}

#[test]
fn a_denied_newer_candidate_does_not_hold_back_our_election() {
    let mut c = follower(&[1, 1, 1]);
    c.step(Event::Tick(10));
    let deadline = c.next_deadline();
    assert!(deadline > 10);
    // A candidate with a shorter log in a newer term: denied, and our timer runs on.
    let acts = c.step(Event::Vote {
        id: 7,
        req: VoteRequest {
            term: 5,
            last_index: 1,
            last_term: 1,
            candidate: "b".into(),
        },
    });
    assert!(acts.contains(&Action::ReplyVote {
        id: 7,
        resp: VoteResponse {
            term: 5,
            granted: false
        }
    }));
    assert_eq!(c.next_deadline(), deadline);
    c.step(Event::Tick(deadline));
    assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, 6));
}

#[test]
fn update_status_in_place_matches_status() {
    let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
    let mut s = follower(&[1, 1]).status();
    c.update_status(&mut s);
    assert_eq!(s, c.status());
    c.step(Event::Bootstrap);
    c.step(Event::Persisted(2));
    c.update_status(&mut s);
    assert_eq!(s, c.status());
    assert_eq!(
        (s.role, s.commit, s.last_index, s.members.len()),
        (Role::Leader, 2, 2, 1)
    );
    assert_eq!(s.leader.as_deref(), Some("n1"));
}

#[test]
fn log_terms_runs() {
    let mut l = LogTerms::new(10, 2);
    assert_eq!(
        (l.term_at(10), l.term_at(11), l.last_term()),
        (Some(2), None, 2)
    );
    for (i, t) in [(11, 2), (12, 3), (13, 3), (14, 5)] {
        l.push(i, t);
    }
    assert_eq!(
        (11..=14).map(|i| l.term_at(i).unwrap()).collect::<Vec<_>>(),
        [2, 3, 3, 5]
    );
    assert_eq!(l.term_at(9), None);
    l.truncate_after(12);
    assert_eq!(
        (l.last_index(), l.last_term(), l.term_at(13)),
        (12, 3, None)
    );
    l.truncate_after(3);
    assert_eq!((l.last_index(), l.is_empty()), (10, true));
}

#[test]
fn bootstrap_is_term_zero_join_then_nop() {
    let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
    let acts = c.step(Event::Bootstrap);
    let appended: Vec<(Index, Term, String)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Append(es) => Some(es.iter().map(|e| (e.index, e.term, e.name.to_string()))),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        appended,
        [
            (1, 0, "raft:join".to_string()),
            (2, 0, "raft:nop".to_string())
        ]
    );
    assert_eq!(c.role(), Role::Leader);
    // Nothing is committed before the log is durable.
    assert_eq!(c.commit_index(), 0);
    let acts = c.step(Event::Persisted(2));
    assert_eq!(acts, [Action::Commit(1), Action::Commit(2)]);
    assert_eq!(c.status().members.len(), 1);
}

#[test]
fn empty_log_never_campaigns() {
    let mut c = Core::new(Config::new("n1", "http://h:1"), InitialState::default(), 0);
    assert!(c.step(Event::Tick(10_000)).is_empty());
    assert_eq!(c.role(), Role::Follower);
}

#[test]
fn a_joined_node_that_applied_nothing_never_campaigns_alone() {
    let mut log = LogTerms::new(0, 0);
    for i in 1..=3 {
        log.push(i, 0);
    }
    let join = |n: &str| {
        ConfigChange::Join(Peer {
            name: n.into(),
            connection_string: format!("http://{n}"),
        })
    };
    let mut pending = BTreeMap::new();
    pending.insert(1, join("n1"));
    pending.insert(3, join("n2"));
    let init = InitialState {
        log: log.clone(),
        pending_config: pending,
        ..Default::default()
    };
    let mut c = Core::new(Config::new("n2", "http://n2"), init, 0);
    assert!(c.step(Event::Tick(10_000)).is_empty());
    assert_eq!(c.role(), Role::Follower);
    // A lone node whose conf was lost (only its own self-join in the log) does campaign.
    let mut pending = BTreeMap::new();
    pending.insert(1, join("n1"));
    let init = InitialState {
        log,
        pending_config: pending,
        ..Default::default()
    };
    let mut c = Core::new(Config::new("n1", "http://n1"), init, 0);
    c.step(Event::Tick(0));
    assert_eq!(c.role(), Role::Leader);
}

#[test]
fn goraft_vote_rule() {
    // Mine: (index 3, term 2).
    for (li, lt, granted) in [(3, 2, true), (4, 2, true), (2, 3, false), (5, 1, false)] {
        let mut c = follower(&[1, 2, 2]);
        c.cfg.vote_rule = VoteRule::Goraft;
        let acts = c.step(Event::Vote {
            id: 7,
            req: VoteRequest {
                term: 5,
                last_index: li,
                last_term: lt,
                candidate: "b".into(),
            },
        });
        let save = Action::SaveHardState(HardState {
            term: 5,
            voted_for: None,
        });
        assert_eq!(acts[0], save);
        assert_eq!(
            acts.last(),
            Some(&Action::ReplyVote {
                id: 7,
                resp: VoteResponse { term: 5, granted }
            }),
            "{li}/{lt}"
        );
        if granted {
            assert_eq!(c.hard_state().voted_for.as_deref(), Some("b"));
        }
    }
}

#[test]
fn the_paper_rule_breaks_goraft_s_stalemate() {
    // Mine: (index 10, term 1); the candidate's: (index 8, term 2).
    for (rule, granted) in [(VoteRule::Goraft, false), (VoteRule::Paper, true)] {
        let mut c = follower(&[1; 10]);
        c.cfg.vote_rule = rule;
        let acts = c.step(Event::Vote {
            id: 1,
            req: VoteRequest {
                term: 3,
                last_index: 8,
                last_term: 2,
                candidate: "b".into(),
            },
        });
        assert!(
            matches!(acts.last(), Some(Action::ReplyVote { resp, .. }) if resp.granted == granted),
            "{rule:?}"
        );
    }
}

#[test]
fn goraft_s_votes_are_a_subset_of_the_paper_s() {
    // Every pair of log ends over small terms and indexes: what goraft's rule grants, the
    // paper's grants too, and the paper's grants some that goraft's refuses.
    let ends: Vec<(Term, Index)> = (0..4).flat_map(|t| (0..6).map(move |i| (t, i))).collect();
    let mut wider = 0;
    for &mine in &ends {
        for &theirs in &ends {
            let (g, p) = (
                VoteRule::Goraft.up_to_date(mine, theirs),
                VoteRule::Paper.up_to_date(mine, theirs),
            );
            assert!(!g || p, "mine {mine:?}, theirs {theirs:?}");
            wider += usize::from(p && !g);
        }
    }
    assert!(wider > 0);
    assert_eq!(VoteRule::default(), VoteRule::Paper);
}

#[test]
fn one_vote_per_term() {
    let mut c = follower(&[1]);
    let vote = |c: &mut Core, who: &str| {
        c.step(Event::Vote {
            id: 1,
            req: VoteRequest {
                term: 2,
                last_index: 1,
                last_term: 1,
                candidate: who.into(),
            },
        })
    };
    assert!(
        matches!(vote(&mut c, "b").last(), Some(Action::ReplyVote { resp, .. }) if resp.granted)
    );
    assert!(
        matches!(vote(&mut c, "c").last(), Some(Action::ReplyVote { resp, .. }) if !resp.granted)
    );
    assert!(
        matches!(vote(&mut c, "b").last(), Some(Action::ReplyVote { resp, .. }) if resp.granted)
    );
}

#[test]
fn conflicting_tail_is_truncated_not_holed() {
    let mut c = follower(&[1, 1, 1, 1]);
    let acts = c.step(Event::Append {
        id: 3,
        req: AppendRequest {
            term: 2,
            prev_index: 2,
            prev_term: 1,
            commit: 0,
            leader: "b".into(),
            entries: vec![entry(3, 1), entry(4, 2), entry(5, 2)],
        }
        .into(),
    });
    let kinds: Vec<String> = acts
        .iter()
        .map(|a| match a {
            Action::SaveHardState(h) => format!("save {}", h.term),
            Action::Truncate(i) => format!("truncate {i}"),
            Action::Append(es) => {
                format!("append {}..{}", es.get(0).index, es.get(es.len() - 1).index)
            }
            Action::ReplyAppend { resp, .. } => {
                format!("reply {} {}", resp.index, resp.success)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        ["save 2", "truncate 3", "append 4..5", "reply 5 true"]
    );
    assert_eq!(c.log().term_at(4), Some(2));
}

#[test]
fn mismatched_prev_is_refused_with_last_index() {
    let mut c = follower(&[1, 1]);
    let acts = c.step(Event::Append {
        id: 3,
        req: AppendRequest {
            term: 1,
            prev_index: 2,
            prev_term: 2,
            commit: 0,
            leader: "b".into(),
            entries: vec![],
        }
        .into(),
    });
    assert_eq!(
        acts,
        [Action::ReplyAppend {
            id: 3,
            resp: AppendResponse {
                term: 1,
                index: 2,
                commit: 0,
                success: false
            }
        }]
    );
}

#[test]
fn leader_commits_only_current_term_by_majority() {
    let mut c = follower(&[1, 1]);
    c.step(Event::Tick(1_000));
    assert_eq!(c.role(), Role::Candidate);
    let acts = c.step(Event::VoteResult {
        peer: "b".into(),
        term: 2,
        resp: Some(VoteResponse {
            term: 2,
            granted: true,
        }),
    });
    assert_eq!(c.role(), Role::Leader);
    // The nop at 3 went out to both peers at once.
    let sends: Vec<(String, Index, Index)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::SendAppend {
                to,
                prev_index,
                last,
                ..
            } => Some((to.name.clone(), *prev_index, *last)),
            _ => None,
        })
        .collect();
    assert_eq!(sends, [("b".into(), 2, 3), ("c".into(), 2, 3)]);
    // The nop is not durable here yet, but no follower holds it either: the end of the
    // leader's fsync would change nothing now (its runtime need not be woken for it).
    assert!(!c.waits_on_own_log());
    let sent = SentAppend {
        term: 2,
        epoch: 0,
        round: 0,
        prev: 2,
        last: 3,
    };
    let ok = Some(AppendResponse {
        term: 2,
        index: 3,
        commit: 0,
        success: true,
    });
    // b has it but the leader's own log is not durable yet: b + nothing = 1 < 2? No: the
    // leader has persisted the old entries (1..2) only, so the quorum-th match is 2, of
    // term 1: not committed by counting.
    let acts = c.step(Event::AppendResult {
        peer: "b".into(),
        sent,
        resp: ok,
        raftdump: true,
    });
    assert!(!acts.iter().any(|a| matches!(a, Action::Commit(_))));
    // Now the commit waits for the leader's own fsync.
    assert!(c.waits_on_own_log());
    let acts = c.step(Event::Persisted(3));
    assert_eq!(acts.first(), Some(&Action::Commit(3)));
    assert!(!c.waits_on_own_log());
    // A follower's answers always wait for its fsync.
    assert!(follower(&[1, 1]).waits_on_own_log());
}

fn append_from(leader: &str, term: Term, prev: Index, prev_term: Term) -> Event {
    Event::Append {
        id: 9,
        req: AppendRequest {
            term,
            prev_index: prev,
            prev_term,
            commit: 0,
            leader: leader.into(),
            entries: vec![entry(prev + 1, term)],
        }
        .into(),
    }
}

#[test]
fn rpcs_from_non_members_and_out_of_bound_terms_change_nothing() {
    let mut c = follower(&[1, 1]);
    let before = (c.hard_state().clone(), c.log().clone(), c.role());
    let forged = [
        append_from("evil", 2, 2, 1),
        append_from("a", 2, 2, 1),
        append_from("b", u64::MAX, 2, 1),
        append_from("b", 1 + MAX_TERM_STEP + 1, 2, 1),
        Event::Vote {
            id: 9,
            req: VoteRequest {
                term: 5,
                last_index: 9,
                last_term: 5,
                candidate: "evil".into(),
            },
        },
        Event::SnapshotOffer {
            id: 9,
            leader: "x".repeat(1000),
            last_index: 9,
            last_term: 1,
        },
    ];
    for e in forged {
        let acts = c.step(e);
        assert!(
            matches!(acts.as_slice(), [Action::Refuse { id: 9, reason }] if reason.to_string().len() < 300),
            "{acts:?}"
        );
    }
    assert_eq!((c.hard_state().clone(), c.log().clone(), c.role()), before);
    // A member within the bound is heard: exactly 2^32 up.
    let acts = c.step(append_from("b", 1 + MAX_TERM_STEP, 2, 1));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::ReplyAppend { resp, .. } if resp.success)));
    assert_eq!(c.hard_state().term, 1 + MAX_TERM_STEP);
}

#[test]
fn a_node_that_has_not_seen_its_own_join_hears_the_leader_it_joined() {
    let mut c = Core::new(Config::new("new", "http://new"), Default::default(), 0);
    assert!(c.knows("anyone"));
    let join = |n: &str, i: Index| Entry {
        index: i,
        term: 3,
        name: names::JOIN.into(),
        payload: Some(command::encode_join(n, &format!("http://{n}"))),
    };
    let ok = |acts: &[Action]| {
        acts.iter()
            .any(|a| matches!(a, Action::ReplyAppend { resp, .. } if resp.success))
    };
    // The start of the log (a partial first batch): still anyone.
    let mut first = append_from("leader", 3, 0, 0);
    if let Event::Append { req, .. } = &mut first {
        req.entries = vec![join("leader", 1)].into();
    }
    assert!(ok(&c.step(first)));
    assert!(c.knows("anyone"));
    // Once its own join is in its log, only members (or joins in its log) are known.
    let mut second = append_from("leader", 3, 1, 3);
    if let Event::Append { req, .. } = &mut second {
        req.entries = vec![join("new", 2)].into();
    }
    assert!(ok(&c.step(second)));
    assert!(!c.knows("anyone"));
    assert!(c.knows("leader") && c.knows("new"));
}

#[test]
fn a_poisoned_term_never_wraps_and_never_campaigns() {
    let mut c = follower(&[1]);
    c.hs.term = u64::MAX - 1;
    c.step(Event::Tick(1_000_000));
    assert_eq!(
        (c.role(), c.hard_state().term),
        (Role::Follower, u64::MAX - 1)
    );
    // Answers with an impossible term are ignored, not adopted.
    let mut c = follower(&[1]);
    c.step(Event::Tick(1_000_000));
    assert_eq!(c.role(), Role::Candidate);
    let term = c.hard_state().term;
    c.step(Event::VoteResult {
        peer: "b".into(),
        term,
        resp: Some(VoteResponse {
            term: u64::MAX,
            granted: false,
        }),
    });
    assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, term));
}

/// Leader `a` of {a, b, c} in term 2, its nop at 3 committed with b's answer at `now`.
fn leader_abc(now: Millis) -> Core {
    let mut c = follower(&[1, 1]);
    c.step(Event::Tick(1_000));
    c.step(Event::VoteResult {
        peer: "b".into(),
        term: 2,
        resp: Some(VoteResponse {
            term: 2,
            granted: true,
        }),
    });
    c.step(Event::Persisted(3));
    c.step(Event::Tick(now));
    ack(&mut c, "b", 2, 3);
    assert_eq!(c.status().commit, 3);
    c
}

/// `peer` answers success to an AppendEntries of `prev+1..=last` in term 2.
fn ack(c: &mut Core, peer: &str, prev: Index, last: Index) -> Vec<Action> {
    let sent = SentAppend {
        term: 2,
        epoch: 0,
        round: 0,
        prev,
        last,
    };
    let resp = Some(AppendResponse {
        term: 2,
        index: last,
        commit: 0,
        success: true,
    });
    c.step(Event::AppendResult {
        peer: peer.into(),
        sent,
        resp,
        raftdump: true,
    })
}

fn outcome(acts: &[Action], want: RequestId) -> Option<Result<Index, Rejection>> {
    acts.iter().find_map(|a| match a {
        Action::ProposalDone { id, result } if *id == want => Some(result.clone()),
        _ => None,
    })
}

fn propose_join(c: &mut Core, id: RequestId, name: &str) -> Vec<Action> {
    c.step(Event::Propose {
        id,
        name: names::JOIN.into(),
        payload: Some(command::encode_join(name, &format!("http://{name}"))),
    })
}

#[test]
fn strict_reconfig_refuses_joins_and_removals_that_would_lose_the_quorum() {
    let mut c = leader_abc(2_000);
    // Only b was heard: with d not yet live, 2 of 4 members are no quorum.
    let acts = propose_join(&mut c, 1, "d");
    assert!(
        matches!(outcome(&acts, 1), Some(Err(Rejection::Unsafe(ref why))) if why.contains("2 of the 3 members")),
        "{acts:?}"
    );
    assert_eq!(c.status().last_index, 3, "nothing appended");
    // c answers too: 3 of 4 is a quorum, the join is appended.
    ack(&mut c, "c", 2, 3);
    let acts = propose_join(&mut c, 2, "d");
    assert_eq!(outcome(&acts, 2), None);
    assert_eq!(c.status().last_index, 4);
    c.step(Event::Persisted(4));
    let acts = ack(&mut c, "b", 3, 4);
    assert_eq!(outcome(&acts, 2), Some(Ok(4)));
    assert!(c.status().members.contains_key("d"));
    // d has not caught up with its own join: a second join waits.
    let acts = propose_join(&mut c, 3, "e");
    assert!(
        matches!(outcome(&acts, 3), Some(Err(Rejection::Unsafe(ref why))) if why.contains("has not caught up")),
        "{acts:?}"
    );
    // Without the check, goraft's behaviour: appended.
    let mut lax = leader_abc(2_000);
    lax.cfg.strict_reconfig = false;
    let acts = propose_join(&mut lax, 4, "d");
    assert_eq!(outcome(&acts, 4), None);
    assert_eq!(lax.status().last_index, 4);
}

#[test]
fn removal_is_checked_unless_forced_and_a_removed_follower_takes_no_writes() {
    let mut c = leader_abc(2_000);
    // c is silent: removing b would leave a alone of {a, c}, short of a quorum of 2.
    let acts = c.step(Event::Remove {
        id: 1,
        name: "b".into(),
        force: false,
    });
    assert!(
        matches!(outcome(&acts, 1), Some(Err(Rejection::Unsafe(ref why))) if why.contains("force=true")),
        "{acts:?}"
    );
    let acts = c.step(Event::Remove {
        id: 2,
        name: "zz".into(),
        force: false,
    });
    assert_eq!(
        outcome(&acts, 2),
        Some(Err(Rejection::NoSuchMember("zz".into())))
    );
    // Removing the silent c leaves {a, b}, both live: allowed, and committed by a and b.
    let acts = c.step(Event::Remove {
        id: 3,
        name: "c".into(),
        force: false,
    });
    assert_eq!(outcome(&acts, 3), None);
    c.step(Event::Persisted(4));
    let acts = ack(&mut c, "b", 3, 4);
    assert_eq!(outcome(&acts, 3), Some(Ok(4)));
    assert!(!c.status().members.contains_key("c"));
    // The removed member is told the commit of its removal.
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::SendAppend { to, .. } if to.name == "c")));
    // Forced, a removal that loses the quorum goes through.
    let mut f = leader_abc(2_000);
    let acts = f.step(Event::Remove {
        id: 4,
        name: "b".into(),
        force: true,
    });
    assert_eq!(outcome(&acts, 4), None);
    // A follower that applies its own removal takes no writes and never campaigns.
    let mut x = follower(&[1, 1, 1]);
    let leave = Entry {
        index: 4,
        term: 1,
        name: names::LEAVE.into(),
        payload: Some(command::encode_leave("a")),
    };
    x.step(Event::Append {
        id: 9,
        req: AppendRequest {
            term: 1,
            prev_index: 3,
            prev_term: 1,
            commit: 4,
            leader: "b".into(),
            entries: vec![leave],
        }
        .into(),
    });
    let acts = x.step(Event::Propose {
        id: 5,
        name: names::WRITE.into(),
        payload: Some(b"{\"key\":\"k\",\"value\":\"v\"}\n".to_vec()),
    });
    assert_eq!(outcome(&acts, 5), Some(Err(Rejection::Removed(4))));
    x.step(Event::Tick(100_000));
    assert_eq!(x.role(), Role::Follower);
}
