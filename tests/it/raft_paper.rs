//! The Raft paper's cases (as the well-known Rust and Go Raft libraries port them) against
//! `node::core`, each naming the section it covers. Adapted to goraft where it differs: a
//! cluster starts in term 0 with a bootstrap leader (no election), every new leader appends a
//! nop, a leader counts itself only up to what it persisted, and the up-to-date check is the
//! paper's by default (`--vote-rule paper`) or goraft's (`--vote-rule goraft`): both tested.

use std::collections::BTreeMap;

use raftdump::model::{Entry, Index, Term};
use raftdump::node::core::{
    Action, AppendRequest, AppendResponse, Config, Core, Event, HardState, InitialState, LogTerms,
    Role, SentAppend, VoteRequest, VoteResponse, VoteRule,
};

const RULES: [VoteRule; 2] = [VoteRule::Goraft, VoteRule::Paper];

fn entry(index: Index, term: Term) -> Entry {
    Entry {
        index,
        term,
        name: "write".into(),
        payload: Some(format!("{{\"key\":\"k{index}\",\"value\":\"t{term}\"}}\n").into_bytes()),
    }
}

/// Node "a" of a cluster `a, b, c, ...` (`n` members), log terms `terms` from index 1, term
/// and vote `hs`.
fn node(n: usize, terms: &[Term], hs: HardState, rule: VoteRule) -> Core {
    let mut log = LogTerms::new(0, 0);
    for (i, t) in terms.iter().enumerate() {
        log.push(i as u64 + 1, *t);
    }
    let mut members = BTreeMap::new();
    for name in ["a", "b", "c", "d", "e"].iter().take(n) {
        members.insert(name.to_string(), format!("http://{name}"));
    }
    let mut cfg = Config::new("a", "http://a");
    cfg.vote_rule = rule;
    Core::new(
        cfg,
        InitialState {
            hard_state: hs,
            log,
            members,
            ..Default::default()
        },
        0,
    )
}

fn hs(term: Term, voted_for: Option<&str>) -> HardState {
    HardState {
        term,
        voted_for: voted_for.map(str::to_string),
    }
}

fn vote_req(term: Term, last_index: Index, last_term: Term, who: &str) -> Event {
    Event::Vote {
        id: 9,
        req: VoteRequest {
            term,
            last_index,
            last_term,
            candidate: who.into(),
        },
    }
}

fn granted(acts: &[Action]) -> Option<(Term, bool)> {
    acts.iter().find_map(|a| match a {
        Action::ReplyVote { resp, .. } => Some((resp.term, resp.granted)),
        _ => None,
    })
}

fn append_reply(acts: &[Action]) -> Option<AppendResponse> {
    acts.iter().find_map(|a| match a {
        Action::ReplyAppend { resp, .. } => Some(*resp),
        _ => None,
    })
}

fn append(term: Term, prev_index: Index, prev_term: Term, commit: Index, es: Vec<Entry>) -> Event {
    Event::Append {
        id: 5,
        req: AppendRequest {
            term,
            prev_index,
            prev_term,
            commit,
            leader: "b".into(),
            entries: es,
        }
        .into(),
    }
}

fn vote_yes(peer: &str, term: Term) -> Event {
    Event::VoteResult {
        peer: peer.into(),
        term,
        resp: Some(VoteResponse {
            term,
            granted: true,
        }),
    }
}

/// Makes `c` (a follower with a non-empty log) win an election in the next term.
fn elect(c: &mut Core) -> Vec<Action> {
    c.step(Event::Tick(1_000));
    assert_eq!(c.role(), Role::Candidate);
    let term = c.hard_state().term;
    let mut acts = Vec::new();
    for p in ["b", "c", "d", "e"] {
        if c.role() == Role::Leader {
            break;
        }
        acts = c.step(vote_yes(p, term));
    }
    assert_eq!(c.role(), Role::Leader);
    acts
}

/// §5.1: a server that sees a higher term adopts it (persisting it, vote cleared) and becomes
/// a follower, whatever its role.
#[test]
fn s5_1_higher_term_makes_any_role_a_follower() {
    // Follower.
    let mut f = node(3, &[1], hs(1, Some("a")), VoteRule::Goraft);
    let acts = f.step(append(3, 1, 1, 0, vec![]));
    assert_eq!(acts.first(), Some(&Action::SaveHardState(hs(3, None))));
    assert_eq!((f.role(), f.hard_state().term), (Role::Follower, 3));
    // Candidate.
    let mut c = node(3, &[1], hs(1, None), VoteRule::Goraft);
    c.step(Event::Tick(1_000));
    assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, 2));
    c.step(append(4, 1, 1, 0, vec![]));
    assert_eq!((c.role(), c.hard_state().term), (Role::Follower, 4));
    // Leader, told by a vote answer.
    let mut l = node(3, &[1], hs(1, None), VoteRule::Goraft);
    elect(&mut l);
    l.step(Event::VoteResult {
        peer: "c".into(),
        term: 2,
        resp: Some(VoteResponse {
            term: 7,
            granted: false,
        }),
    });
    assert_eq!((l.role(), l.hard_state().term), (Role::Follower, 7));
    assert_eq!(l.hard_state().voted_for, None);
}

/// §5.1: requests with a stale term are rejected and change nothing.
#[test]
fn s5_1_stale_term_requests_are_rejected() {
    for rule in RULES {
        let mut f = node(3, &[1, 2], hs(3, None), rule);
        let acts = f.step(append(2, 2, 2, 2, vec![entry(3, 2)]));
        assert_eq!(
            append_reply(&acts),
            Some(AppendResponse {
                term: 3,
                index: 2,
                commit: 0,
                success: false
            })
        );
        assert!(!acts.iter().any(|a| matches!(
            a,
            Action::Append(_) | Action::Truncate(_) | Action::Commit(_)
        )));
        let acts = f.step(vote_req(2, 9, 2, "b"));
        assert_eq!(granted(&acts), Some((3, false)), "{rule:?}");
        assert_eq!(f.hard_state(), &hs(3, None));
        assert_eq!(f.log().last_index(), 2);
    }
}

/// §5.1: a stale vote answer (an earlier term's) does not count.
#[test]
fn s5_1_stale_vote_answers_are_ignored() {
    let mut c = node(3, &[1], hs(1, None), VoteRule::Goraft);
    c.step(Event::Tick(1_000));
    c.step(Event::Tick(3_000));
    assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, 3));
    c.step(vote_yes("b", 2));
    assert_eq!(c.role(), Role::Candidate);
    c.step(vote_yes("b", 3));
    assert_eq!(c.role(), Role::Leader);
}

/// §5.2: a follower that hears nothing within the election timeout starts an election: term
/// + 1, a vote for itself persisted first, then RequestVote to every peer with its last entry.
#[test]
fn s5_2_follower_times_out_and_campaigns() {
    let mut f = node(3, &[1, 1, 2], hs(2, None), VoteRule::Goraft);
    // No timeout before the shortest election timeout (raftd: 150 ms).
    assert!(f.step(Event::Tick(149)).is_empty());
    let acts = f.step(Event::Tick(1_000));
    assert_eq!(acts[0], Action::SaveHardState(hs(3, Some("a"))));
    let sent: Vec<(String, VoteRequest)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::SendVote { to, req } => Some((to.name.clone(), req.clone())),
            _ => None,
        })
        .collect();
    let req = VoteRequest {
        term: 3,
        last_index: 3,
        last_term: 2,
        candidate: "a".into(),
    };
    assert_eq!(sent, [("b".into(), req.clone()), ("c".into(), req)]);
    assert_eq!(f.role(), Role::Candidate);
}

/// §5.2: a candidate wins with votes from a majority (itself included): 3 and 5 nodes.
#[test]
fn s5_2_candidate_wins_with_a_majority() {
    for (n, needed) in [(3usize, 1usize), (5, 2)] {
        let mut c = node(n, &[1], hs(1, None), VoteRule::Goraft);
        c.step(Event::Tick(1_000));
        let peers = ["b", "c", "d", "e"];
        for (k, p) in peers.iter().take(needed).enumerate() {
            assert_eq!(c.role(), Role::Candidate, "{n} nodes, {k} votes");
            // A duplicate vote from the same peer counts once.
            c.step(vote_yes(p, 2));
            if k + 1 < needed {
                c.step(vote_yes(p, 2));
            }
        }
        assert_eq!(c.role(), Role::Leader, "{n} nodes");
    }
}

/// §5.2: refusals leave a candidate without a majority; it starts a new election (next term)
/// when its timer runs out again.
#[test]
fn s5_2_candidate_without_majority_retries_in_the_next_term() {
    let mut c = node(3, &[1], hs(1, None), VoteRule::Goraft);
    c.step(Event::Tick(1_000));
    for p in ["b", "c"] {
        c.step(Event::VoteResult {
            peer: p.into(),
            term: 2,
            resp: Some(VoteResponse {
                term: 2,
                granted: false,
            }),
        });
    }
    assert_eq!((c.role(), c.hard_state().term), (Role::Candidate, 2));
    let acts = c.step(Event::Tick(2_000));
    assert_eq!(acts[0], Action::SaveHardState(hs(3, Some("a"))));
    assert_eq!(c.role(), Role::Candidate);
}

/// §5.2: a candidate that hears AppendEntries from a leader of its own term steps down.
#[test]
fn s5_2_candidate_yields_to_a_leader_of_its_term() {
    let mut c = node(3, &[1], hs(1, None), VoteRule::Goraft);
    c.step(Event::Tick(1_000));
    let acts = c.step(append(2, 1, 1, 0, vec![]));
    assert_eq!(c.role(), Role::Follower);
    assert_eq!(c.status().leader.as_deref(), Some("b"));
    assert!(append_reply(&acts).is_some_and(|r| r.success));
}

/// §5.2: one vote per term, first come first served; asking again is answered the same; the
/// vote is persisted before the answer. Both vote rules.
#[test]
fn s5_2_one_vote_per_term() {
    for rule in RULES {
        let mut f = node(3, &[1], hs(1, None), rule);
        let acts = f.step(vote_req(2, 1, 1, "b"));
        let save = acts
            .iter()
            .position(|a| *a == Action::SaveHardState(hs(2, Some("b"))));
        let reply = acts
            .iter()
            .position(|a| matches!(a, Action::ReplyVote { .. }));
        assert!(save.is_some() && save < reply, "{rule:?}: {acts:?}");
        assert_eq!(granted(&acts), Some((2, true)));
        assert_eq!(granted(&f.step(vote_req(2, 1, 1, "c"))), Some((2, false)));
        assert_eq!(granted(&f.step(vote_req(2, 1, 1, "b"))), Some((2, true)));
        // A new term frees the vote.
        assert_eq!(granted(&f.step(vote_req(3, 1, 1, "c"))), Some((3, true)));
        // A restart keeps it (raftdump persists term and vote; goraft did not, §7.3).
        let mut r = node(3, &[1], f.hard_state().clone(), rule);
        assert_eq!(granted(&r.step(vote_req(3, 1, 1, "b"))), Some((3, false)));
    }
}

/// §5.2: a leader sends heartbeats (empty AppendEntries) to every idle peer each heartbeat
/// interval (raftd: 50 ms).
#[test]
fn s5_2_leader_sends_heartbeats() {
    let mut l = node(3, &[1], hs(1, None), VoteRule::Goraft);
    elect(&mut l);
    // The nop's AppendEntries is in flight (one at a time per peer): answered first.
    for p in ["b", "c"] {
        l.step(Event::AppendResult {
            peer: p.into(),
            sent: SentAppend {
                term: 2,
                epoch: 0,
                round: 0,
                prev: 1,
                last: 2,
            },
            resp: Some(AppendResponse {
                term: 2,
                index: 2,
                commit: 0,
                success: true,
            }),
            raftdump: true,
        });
    }
    let acts = l.step(Event::Tick(1_000 + 50));
    let to: Vec<String> = acts
        .iter()
        .filter_map(|a| match a {
            Action::SendAppend { to, term: 2, .. } => Some(to.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(to, ["b", "c"]);
}

/// §5.3: a leader appends a client's command to its log in its term, sends it, and commits
/// it once a majority (itself counted only up to what it persisted) holds it; then the client
/// hears its index.
#[test]
fn s5_3_leader_appends_and_commits_on_a_majority() {
    let mut l = node(3, &[1], hs(1, None), VoteRule::Goraft);
    elect(&mut l); // the nop of term 2 at index 2
    let acts = l.step(Event::Propose {
        id: 42,
        name: "write".into(),
        payload: Some(b"{\"key\":\"x\",\"value\":\"1\"}\n".to_vec()),
    });
    let appended: Vec<(Index, Term)> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Append(es) => Some(es.iter().map(|e| (e.index, e.term))),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(appended, [(3, 2)]);
    let acts = l.step(Event::Persisted(3));
    assert!(!acts.iter().any(|a| matches!(a, Action::Commit(_))));
    let acts = l.step(Event::AppendResult {
        peer: "b".into(),
        sent: SentAppend {
            term: 2,
            epoch: 0,
            round: 0,
            prev: 1,
            last: 3,
        },
        resp: Some(AppendResponse {
            term: 2,
            index: 3,
            commit: 0,
            success: true,
        }),
        raftdump: true,
    });
    assert_eq!(l.commit_index(), 3, "{acts:?}");
    let commit = acts.iter().position(|a| *a == Action::Commit(3));
    let done = acts.iter().position(|a| {
        matches!(
            a,
            Action::ProposalDone {
                id: 42,
                result: Ok(3)
            }
        )
    });
    assert!(commit.is_some() && commit < done, "{acts:?}");
}

/// §5.3: a follower refuses AppendEntries whose previous entry it lacks or holds in another
/// term (the Log Matching check), answering with its last index.
#[test]
fn s5_3_follower_checks_the_previous_entry() {
    // (prev_index, prev_term, success)
    for (pi, pt, ok) in [
        (0, 0, true),
        (2, 2, true),
        (1, 1, true),
        (2, 1, false),
        (3, 2, false),
    ] {
        let mut f = node(3, &[1, 2], hs(2, None), VoteRule::Goraft);
        let acts = f.step(append(2, pi, pt, 0, vec![]));
        let r = append_reply(&acts).expect("a reply");
        assert_eq!(r.success, ok, "prev ({pi}, {pt})");
        if !ok {
            assert_eq!(r.index, 2);
        }
    }
}

/// §5.3: a follower deletes a conflicting entry and all that follow it, appends the new
/// ones, and keeps entries that already match (the etcd and raft-rs table, adapted).
#[test]
fn s5_3_follower_truncates_conflicts_and_appends() {
    // (prev_index, prev_term, new entries' terms from prev+1, log terms after)
    let cases: [(Index, Term, &[Term], &[Term]); 5] = [
        (2, 2, &[3], &[1, 2, 3]),
        (1, 1, &[3, 4], &[1, 3, 4]),
        (0, 0, &[1], &[1, 2]),
        (0, 0, &[3], &[3]),
        (1, 1, &[2], &[1, 2]),
    ];
    for (pi, pt, new, want) in cases {
        let mut f = node(3, &[1, 2], hs(4, None), VoteRule::Goraft);
        let es = new
            .iter()
            .enumerate()
            .map(|(k, t)| entry(pi + 1 + k as u64, *t))
            .collect();
        let acts = f.step(append(4, pi, pt, 0, es));
        assert!(append_reply(&acts).is_some_and(|r| r.success), "{pi}/{pt}");
        let got: Vec<Term> = (1..=f.log().last_index())
            .map(|i| f.log().term_at(i).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(got, want, "prev ({pi}, {pt}) + {new:?}");
        // A truncation is never below what is kept.
        for a in &acts {
            if let Action::Truncate(x) = a {
                assert!(*x >= pi, "truncate {x} below prev {pi}");
            }
        }
    }
}

/// §5.3: a follower commits up to min(leaderCommit, last new entry), never past what this
/// request matched.
#[test]
fn s5_3_follower_commit_follows_the_leader_but_not_past_the_match() {
    let mut f = node(3, &[1, 1, 1], hs(1, None), VoteRule::Goraft);
    let acts = f.step(append(1, 1, 1, 5, vec![]));
    assert_eq!(f.commit_index(), 1, "{acts:?}");
    f.step(append(1, 2, 1, 2, vec![]));
    assert_eq!(f.commit_index(), 2);
    f.step(append(1, 3, 1, 9, vec![entry(4, 1)]));
    assert_eq!(f.commit_index(), 4);
}

/// §5.4.1: the election restriction (up-to-date check). Log (index 3, term 2). The paper
/// grants when the candidate's last term is higher, or equal with an index at least ours;
/// goraft also refuses a higher last term with a shorter log.
#[test]
fn s5_4_1_vote_goes_only_to_an_up_to_date_log() {
    // (candidate last index, last term, goraft, paper)
    let cases = [
        (3, 2, true, true),
        (4, 2, true, true),
        (2, 2, false, false),
        (5, 1, false, false),
        (1, 1, false, false),
        (2, 3, false, true),
        (9, 3, true, true),
    ];
    for (li, lt, goraft, paper) in cases {
        for (rule, want) in [(VoteRule::Goraft, goraft), (VoteRule::Paper, paper)] {
            let mut f = node(3, &[1, 2, 2], hs(2, None), rule);
            let acts = f.step(vote_req(5, li, lt, "b"));
            assert_eq!(granted(&acts), Some((5, want)), "{rule:?}: ({li}, {lt})");
            let voted = f.hard_state().voted_for.clone();
            assert_eq!(voted.is_some(), want, "{rule:?}: ({li}, {lt})");
        }
    }
}

/// §5.4.2 (Figure 8): a leader never commits an entry of an earlier term by counting replicas;
/// it commits it only with an entry of its own term (goraft's nop) on a majority.
#[test]
fn s5_4_2_figure_8_no_commit_of_old_terms_by_counting() {
    // Leader of term 4 with entries 1 (term 1) and 2 (term 2), as S1 in Figure 8 (c).
    let mut l = node(5, &[1, 2], hs(3, None), VoteRule::Goraft);
    elect(&mut l);
    assert_eq!(l.hard_state().term, 4);
    assert_eq!(l.log().term_at(3), Some(4)); // the nop
    let ack = |l: &mut Core, peer: &str, index: Index| {
        l.step(Event::AppendResult {
            peer: peer.into(),
            sent: SentAppend {
                term: 4,
                epoch: 0,
                round: 0,
                prev: 1,
                last: index,
            },
            resp: Some(AppendResponse {
                term: 4,
                index,
                commit: 0,
                success: true,
            }),
            raftdump: true,
        })
    };
    // Index 2 (term 2) on 3 of 5 (a, b, c): a majority, but of an older term.
    l.step(Event::Persisted(2));
    ack(&mut l, "b", 2);
    ack(&mut l, "c", 2);
    assert_eq!(l.commit_index(), 0);
    // The nop of term 4 on a majority commits it and everything before it.
    l.step(Event::Persisted(3));
    assert_eq!(l.commit_index(), 0);
    ack(&mut l, "b", 3);
    assert_eq!(l.commit_index(), 0);
    let acts = ack(&mut l, "c", 3);
    assert_eq!(l.commit_index(), 3);
    assert!(acts.contains(&Action::Commit(3)), "{acts:?}");
}

/// goraft's bootstrap (docs/format.md, 'Terms and bootstrap'; no election in the paper): the first node
/// leads in term 0 at once and commits its self-join and nop once they are durable.
#[test]
fn goraft_bootstrap_leads_in_term_0() {
    let mut c = Core::new(Config::new("a", "http://a"), InitialState::default(), 0);
    c.step(Event::Bootstrap);
    assert_eq!((c.role(), c.hard_state().term), (Role::Leader, 0));
    assert_eq!(c.commit_index(), 0);
    c.step(Event::Persisted(2));
    assert_eq!(c.commit_index(), 2);
}
