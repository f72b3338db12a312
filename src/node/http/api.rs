//! [`Api`] for a running node and for a read-only one, and the RPC glue they share.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::node::core::{Event, Rejection, RequestId, Role};
use crate::node::runtime::{CallError, Handle, ReadOnlyNode, Reply};
use crate::node::transport::{self};

use super::{Api, ApiError, Done, Rpc, RpcAnswer, RpcDone};

fn proposal_outcome(r: Result<Reply, CallError>) -> Result<(), ApiError> {
    match r.map_err(call_error)? {
        Reply::Proposal(Ok(_)) => Ok(()),
        Reply::Proposal(Err(r)) => Err(r.into()),
        _ => Err(ApiError::Stopped),
    }
}

/// The HTTP layer's error for the core's refusal of a proposal or read.
impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> ApiError {
        match r {
            Rejection::NotLeader(p) => ApiError::NotLeader(p),
            Rejection::ConfigChangePending => ApiError::ConfigChangePending,
            Rejection::DuplicateMember(n) => ApiError::Duplicate(n),
            Rejection::Superseded => ApiError::Superseded,
            Rejection::Unsafe(why) => ApiError::Unsafe(why),
            Rejection::NoSuchMember(n) => ApiError::NoSuchMember(n),
            Rejection::Removed(at) => ApiError::Removed(at),
        }
    }
}

fn call_error(e: CallError) -> ApiError {
    match e {
        CallError::Timeout => ApiError::Timeout,
        CallError::Stopped => ApiError::Stopped,
    }
}

impl Api for Handle {
    fn read_barrier(&self, timeout: Duration) -> Result<(), ApiError> {
        match self
            .call(|id| Event::Read { id }, timeout)
            .map_err(call_error)?
        {
            Reply::Read(Ok(_)) => Ok(()),
            Reply::Read(Err(r)) => Err(r.into()),
            _ => Err(ApiError::Stopped),
        }
    }

    fn lookup(&self, key: &str) -> Option<String> {
        self.kv().get(key).map(str::to_string)
    }

    fn propose(&self, name: &str, payload: Vec<u8>, timeout: Duration) -> Result<(), ApiError> {
        let ev = |id| Event::Propose {
            id,
            name: name.to_string(),
            payload: Some(payload),
        };
        proposal_outcome(self.call(ev, timeout))
    }

    fn remove_member(&self, name: &str, force: bool, timeout: Duration) -> Result<(), ApiError> {
        let ev = |id| Event::Remove {
            id,
            name: name.to_string(),
            force,
        };
        proposal_outcome(self.call(ev, timeout))
    }

    fn propose_async(&self, name: &str, payload: Vec<u8>, timeout: Duration, done: Done) {
        let ev = |id| Event::Propose {
            id,
            name: name.to_string(),
            payload: Some(payload),
        };
        self.call_async(ev, timeout, Box::new(move |r| done(proposal_outcome(r))));
    }

    fn status(&self) -> (String, String, u64, u64, String) {
        let s = self.status();
        let state = if self.failure().is_some() {
            "stopped"
        } else {
            s.role.as_str()
        };
        (
            s.name,
            state.to_string(),
            s.term,
            s.commit,
            s.leader.unwrap_or_default(),
        )
    }

    fn peers(&self) -> BTreeMap<String, String> {
        let s = self.status();
        s.members
            .into_iter()
            .filter(|(n, _)| *n != s.name)
            .collect()
    }

    fn leader_url(&self) -> Option<String> {
        let s = self.status();
        if s.role == Role::Leader {
            return None;
        }
        s.leader
            .and_then(|l| s.members.get(&l).cloned())
            .filter(|u| !u.is_empty())
    }

    fn rpc(&self, rpc: Rpc, body: &[u8], timeout: Duration) -> RpcAnswer {
        rpc_call(rpc, body, |make| self.call(make, timeout))
    }

    fn on_batch_done(&self, f: Box<dyn Fn() + Send + Sync>) -> bool {
        Handle::on_batch_done(self, f)
    }

    fn rpc_async(&self, rpc: Rpc, body: Vec<u8>, timeout: Duration, done: RpcDone) {
        match rpc_event(rpc, body) {
            Ok(make) => self.call_async(make, timeout, Box::new(move |r| done(rpc_answer(r)))),
            Err(a) => done(a),
        }
    }
}

/// The core's event for an RPC, built once the call has its id.
pub type MakeEvent = Box<dyn FnOnce(RequestId) -> Event + Send>;

/// Decodes an RPC body (400 if it does not decode), hands the core's event to `call` and turns
/// its reply into the protobuf answer (500 when the node does not handle it in this state).
/// Shared by every [`Api`] that runs a core, so they all answer RPCs alike. The body is copied
/// (this is the path of RPCs that are not POSTed, and of tests); see [`rpc_event`].
pub fn rpc_call(
    rpc: Rpc,
    body: &[u8],
    call: impl FnOnce(MakeEvent) -> Result<Reply, CallError>,
) -> RpcAnswer {
    match rpc_event(rpc, body.to_vec()) {
        Ok(make) => rpc_answer(call(make)),
        Err(a) => a,
    }
}

/// The core's event for an RPC body, or the answer to a body that does not decode (400). An
/// AppendEntries body moves into the event: its entries are read and written from it.
pub fn rpc_event(rpc: Rpc, body: Vec<u8>) -> Result<MakeEvent, RpcAnswer> {
    let bad = |_| RpcAnswer::BadRequest;
    Ok(match rpc {
        Rpc::AppendEntries => {
            let req = transport::decode_append_request(body).map_err(bad)?;
            Box::new(move |id| Event::Append { id, req })
        }
        Rpc::RequestVote => {
            let req = transport::decode_vote_request(&body).map_err(bad)?;
            Box::new(move |id| Event::Vote { id, req })
        }
        Rpc::Snapshot => {
            let (leader, last_index, last_term) =
                transport::decode_snapshot_request(&body).map_err(bad)?;
            Box::new(move |id| Event::SnapshotOffer {
                id,
                leader,
                last_index,
                last_term,
            })
        }
        Rpc::SnapshotRecovery => {
            let req = transport::decode_snapshot_install(&body).map_err(bad)?;
            Box::new(move |id| Event::SnapshotInstall { id, req })
        }
    })
}

/// The protobuf answer to an RPC's reply (500 when the node does not handle it in this state).
pub fn rpc_answer(reply: Result<Reply, CallError>) -> RpcAnswer {
    match reply {
        Ok(Reply::Append(r)) => RpcAnswer::Ok(transport::encode_append_response(&r)),
        Ok(Reply::Vote(r)) => RpcAnswer::Ok(transport::encode_vote_response(&r)),
        Ok(Reply::SnapshotOffer(Some(a))) => RpcAnswer::Ok(transport::encode_snapshot_response(a)),
        Ok(Reply::SnapshotInstall(Some((t, s, c)))) => {
            RpcAnswer::Ok(transport::encode_snapshot_install_response(t, s, c))
        }
        Ok(Reply::Refused(r)) => RpcAnswer::Refused(r.to_string()),
        _ => RpcAnswer::Failed,
    }
}

impl Api for ReadOnlyNode {
    fn read_barrier(&self, _: Duration) -> Result<(), ApiError> {
        Ok(())
    }
    fn lookup(&self, key: &str) -> Option<String> {
        self.kv.get(key).map(str::to_string)
    }
    fn propose(&self, _: &str, _: Vec<u8>, _: Duration) -> Result<(), ApiError> {
        Err(ApiError::ReadOnly)
    }
    fn status(&self) -> (String, String, u64, u64, String) {
        (
            self.name.clone(),
            "read-only".into(),
            0,
            self.at,
            String::new(),
        )
    }
    fn peers(&self) -> BTreeMap<String, String> {
        self.kv
            .members
            .iter()
            .filter(|(n, _)| **n != self.name)
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect()
    }
    fn leader_url(&self) -> Option<String> {
        None
    }
    fn rpc(&self, rpc: Rpc, body: &[u8], _: Duration) -> RpcAnswer {
        // goraft decodes first (400), then finds the server not running (500).
        let decodes = match rpc {
            Rpc::AppendEntries => transport::decode_append_request(body.to_vec()).is_ok(),
            Rpc::RequestVote => transport::decode_vote_request(body).is_ok(),
            Rpc::Snapshot => transport::decode_snapshot_request(body).is_ok(),
            Rpc::SnapshotRecovery => transport::decode_snapshot_install(body).is_ok(),
        };
        if decodes {
            RpcAnswer::Failed
        } else {
            RpcAnswer::BadRequest
        }
    }
}
