//! [`route`]: one request (method, URL, headers, body) to its [`Answer`], without sockets; and
//! forwarding to the leader.

use std::io::Read;

use crate::format::command;
use crate::format::gojson::{decode_string_fields, write_string};
use crate::model::{names, Peer};
use crate::node::ratelog;
use crate::node::security::{self, TOKEN_HEADER};
use crate::node::transport::{self};

use super::{limits::no_space, Api, ApiError, HttpOptions, ReadMode, Rpc, RpcAnswer};

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Content-Type, when one is sent.
    pub content_type: Option<&'static str>,
    /// Whether to add the raftdump marker header (RPC answers).
    pub raftdump: bool,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Answer {
    pub(super) fn text(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            body: body.into(),
            content_type: Some(TEXT),
            raftdump: false,
        }
    }
    pub(super) fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: Vec::new(),
            content_type: None,
            raftdump: false,
        }
    }
    pub(super) fn not_found() -> Answer {
        Answer::text(404, "404 page not found\n")
    }
}

/// The parts of a request [`route`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Method, upper case.
    pub method: &'a str,
    /// The raw request target (path and query).
    pub url: &'a str,
    /// The body (already read, at most the limit + 1 bytes).
    pub body: &'a [u8],
    /// Whether it was forwarded by another raftdump node (never forwarded twice).
    pub forwarded: bool,
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_string(s.as_bytes(), &mut out);
    out
}

fn not_leader_text(p: &Option<Peer>) -> String {
    match p {
        Some(p) if !p.connection_string.is_empty() => format!(
            "raftdump: not the leader; the leader is {} at {}\n",
            p.name, p.connection_string
        ),
        Some(p) => format!("raftdump: not the leader; the leader is {}\n", p.name),
        None => "raftdump: not the leader; no leader is known\n".to_string(),
    }
}

/// Common answers to a write-path error (raftd's strings where raftd has one).
fn write_error(e: &ApiError, not_leader_status: u16) -> Answer {
    match e {
        ApiError::NotLeader(_) => {
            Answer::text(not_leader_status, "raft.Server: Not current leader\n")
        }
        ApiError::ReadOnly => Answer::text(403, "raftdump: this node is read-only\n"),
        ApiError::ConfigChangePending => {
            Answer::text(503, "raftdump: a membership change is in progress; retry\n")
        }
        ApiError::Duplicate(n) => Answer::text(
            409,
            format!("raftdump: a member named {n:?} already exists\n"),
        ),
        ApiError::Superseded => {
            Answer::text(500, "command failed to be committed due to node failure\n")
        }
        ApiError::Timeout => Answer::text(
            503,
            "raftdump: no quorum answered in time; the write may still commit\n",
        ),
        ApiError::Stopped => Answer::text(400, "raft: Has been stopped\n"),
        ApiError::Unsafe(why) => Answer::text(503, format!("raftdump: refused: {why}\n")),
        ApiError::NoSuchMember(n) => {
            Answer::text(404, format!("raftdump: no member named {n:?}\n"))
        }
        ApiError::Removed(at) => Answer::text(
            410,
            format!(
                "raftdump: this node was removed from the cluster (raft:leave at index {at}); \
                 it takes no writes\n"
            ),
        ),
    }
}

/// The answer to `POST /db/{key}` for the proposal's outcome.
pub fn write_answer(
    api: &dyn Api,
    opts: &HttpOptions,
    req: &Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
    r: Result<(), ApiError>,
) -> Answer {
    match r {
        Ok(()) => Answer::empty(200),
        Err(e @ ApiError::NotLeader(_)) => {
            forwarded_or(api, opts, req, forward, write_error(&e, 400))
        }
        Err(e) => write_error(&e, 400),
    }
}

/// With `--forward` (and a known leader), the leader's answer to `req`; otherwise `a`.
fn forwarded_or(
    api: &dyn Api,
    opts: &HttpOptions,
    req: &Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
    a: Answer,
) -> Answer {
    if opts.forward && !req.forwarded {
        if let Some(url) = api.leader_url() {
            if let Some(f) = forward(&url, req) {
                return f;
            }
        }
    }
    a
}

/// `DELETE /members/NAME[?force=true]`: a committed `raft:leave` of NAME (token-guarded like
/// `/join`), forwarded to the leader; 503 when the strict check refuses it.
fn remove_member(
    api: &dyn Api,
    opts: &HttpOptions,
    req: &Request<'_>,
    name: &[u8],
    try_forward: &dyn Fn(Answer) -> Answer,
) -> Answer {
    if req.method != "DELETE" {
        return Answer::empty(405);
    }
    let Ok(name) = std::str::from_utf8(name) else {
        return Answer::text(400, "raftdump: a member name is UTF-8 text\n");
    };
    if name.is_empty() || name.contains('/') {
        return Answer::not_found();
    }
    let query = req.url.split_once('?').map_or("", |(_, q)| q);
    let force = query.split('&').any(|kv| kv == "force=true");
    match api.remove_member(name, force, opts.timeout) {
        Ok(()) => Answer::empty(200),
        Err(e @ ApiError::NotLeader(_)) => try_forward(write_error(&e, 500)),
        Err(e) => write_error(&e, 500),
    }
}

/// The 400 for a write whose key (percent-decoded) or value is not UTF-8: raftd's JSON
/// command would store it changed (U+FFFD), and it could not be read back under its key.
pub(super) fn not_utf8(key: &[u8], value: &[u8]) -> Option<Answer> {
    let what = if let Err(e) = std::str::from_utf8(key) {
        format!("key is not UTF-8 at byte {}", e.valid_up_to())
    } else if let Err(e) = std::str::from_utf8(value) {
        format!("value is not UTF-8 at byte {}", e.valid_up_to())
    } else {
        return None;
    };
    Some(Answer::text(
        400,
        format!("raftdump: the {what}; keys and values are stored as UTF-8 text\n"),
    ))
}

/// The key of a `/db/{key}` path (percent-decoded), if the path is one.
pub(super) fn db_key(url: &str) -> Option<Vec<u8>> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    let key = decoded.strip_prefix(b"/db/")?;
    (!key.is_empty() && !key.contains(&b'/')).then(|| key.to_vec())
}

/// Routes one request. `forward` relays a request to the leader's URL (used with `--forward`).
pub fn route(
    api: &dyn Api,
    opts: &HttpOptions,
    req: Request<'_>,
    forward: &dyn Fn(&str, &Request<'_>) -> Option<Answer>,
) -> Answer {
    let path = req.url.split(['?', '#']).next().unwrap_or("");
    let Some(decoded) = percent_decode(path) else {
        return Answer::text(400, "400 Bad Request");
    };
    let get = req.method == "GET";
    let post = req.method == "POST";
    let try_forward = |a: Answer| forwarded_or(api, opts, &req, forward, a);
    if let Some(key) = decoded.strip_prefix(b"/db/") {
        if key.is_empty() || key.contains(&b'/') {
            return Answer::not_found();
        }
        if key.len() > opts.max_key {
            return Answer::text(413, format!("raftdump: key over {} bytes\n", opts.max_key));
        }
        if get {
            if opts.read_mode == ReadMode::Linearizable {
                if let Err(e) = api.read_barrier(opts.timeout) {
                    return match e {
                        ApiError::NotLeader(p) => {
                            try_forward(Answer::text(400, not_leader_text(&p)))
                        }
                        other => write_error(&other, 400),
                    };
                }
            }
            // raftd's map is keyed by the decoded path; a key that is not UTF-8 was stored
            // with U+FFFD and is never found under its raw bytes.
            let value = std::str::from_utf8(key).ok().and_then(|k| api.lookup(k));
            return Answer::text(200, value.unwrap_or_default());
        }
        if post {
            if req.body.len() > opts.max_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_body),
                );
            }
            if let Some(a) = not_utf8(key, req.body) {
                return a;
            }
            let payload = command::encode_write(key, req.body);
            if opts
                .space
                .as_ref()
                .is_some_and(|g| !g.admits(payload.len()))
            {
                return no_space();
            }
            let r = api.propose(names::WRITE, payload, opts.timeout);
            return write_answer(api, opts, &req, forward, r);
        }
        return Answer::empty(405);
    }
    if let Some(name) = decoded.strip_prefix(b"/members/") {
        return remove_member(api, opts, &req, name, &try_forward);
    }
    match decoded.as_slice() {
        b"/join" => {
            if !post {
                return Answer::empty(405);
            }
            if req.body.len() > opts.max_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_body),
                );
            }
            let (name, cs) = match decode_string_fields(req.body, ["name", "connectionString"]) {
                Ok([n, c]) => (n, c),
                Err(e) => return Answer::text(400, format!("raftdump: bad join body: {e}\n")),
            };
            if req.body.trim_ascii() == b"null" {
                return Answer::text(400, "raftdump: a null join is refused\n");
            }
            if name.is_empty() || cs.is_empty() {
                return Answer::text(
                    400,
                    "raftdump: a join needs a non-empty name and connectionString\n",
                );
            }
            let payload = command::encode_join(&name, &cs);
            match api.propose(names::JOIN, payload, opts.timeout) {
                Ok(()) => Answer::empty(200),
                Err(e @ ApiError::NotLeader(_)) => try_forward(write_error(&e, 500)),
                Err(e) => write_error(&e, 500),
            }
        }
        b"/peers" | b"/members" => {
            if !get {
                return Answer::empty(405);
            }
            let mut out = b"{".to_vec();
            for (i, (n, c)) in api.peers().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(n.as_bytes(), &mut out);
                out.extend_from_slice(b":{\"name\":");
                write_string(n.as_bytes(), &mut out);
                out.extend_from_slice(b",\"connectionString\":");
                write_string(c.as_bytes(), &mut out);
                out.push(b'}');
            }
            out.push(b'}');
            Answer::text(200, out)
        }
        b"/leader" => {
            if !get {
                return Answer::empty(405);
            }
            Answer::text(200, json_string(&api.status().4))
        }
        b"/state" => {
            if !get {
                return Answer::empty(405);
            }
            let (name, state, term, commit, _) = api.status();
            let s = format!("Name: {name}, State: {state}, Term: {term}, CommitedIndex: {commit} ");
            Answer::text(200, json_string(&s))
        }
        b"/raft/appendEntries"
        | b"/raft/requestVote"
        | b"/raft/snapshot"
        | b"/raft/snapshotRecovery" => {
            let rpc = match decoded.as_slice() {
                b"/raft/appendEntries" => Rpc::AppendEntries,
                b"/raft/requestVote" => Rpc::RequestVote,
                b"/raft/snapshot" => Rpc::Snapshot,
                _ => Rpc::SnapshotRecovery,
            };
            if req.body.len() > opts.max_rpc_body {
                return Answer::text(
                    413,
                    format!("raftdump: body over {} bytes\n", opts.max_rpc_body),
                );
            }
            rpc_http_answer(api.rpc(rpc, req.body, opts.timeout))
        }
        _ => Answer::not_found(),
    }
}

/// The HTTP answer to an RPC (goraft's bodies, and raftdump's marker header on a 200).
pub(super) fn rpc_http_answer(a: RpcAnswer) -> Answer {
    match a {
        RpcAnswer::Ok(b) => Answer {
            status: 200,
            body: b,
            content_type: Some("application/octet-stream"),
            raftdump: true,
        },
        RpcAnswer::BadRequest => Answer::text(400, "\n"),
        RpcAnswer::Failed => Answer::text(500, "Failed creating response.\n"),
        RpcAnswer::Refused(why) => Answer::text(403, format!("raftdump: refused: {why}\n")),
    }
}

/// Whether a request for `url` carrying `given` in [`TOKEN_HEADER`] (empty when absent) may go
/// on: its path is not guarded by `token`, or it carries the token.
pub fn authorized(token: &str, url: &str, given: &[u8]) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or("");
    // A path that does not decode is refused by `route` anyway; check it as guarded.
    let guarded = percent_decode(path).is_none_or(|p| security::guarded(&p));
    !guarded || security::token_matches(token.as_bytes(), given)
}

/// [`TOKEN_HEADER`]'s value in `rq`, empty when absent.
pub(super) fn token_header(rq: &tiny_http::Request) -> &[u8] {
    rq.headers()
        .iter()
        .find(|h| h.field.equiv(TOKEN_HEADER))
        .map_or(&b""[..], |h| h.value.as_str().as_bytes())
}

/// The header a forwarding node adds, so that a request is forwarded at most once.
pub const FORWARDED_HEADER: &str = "X-Raftdump-Forwarded";

/// Relays `req` to `leader_url` and returns its answer (`None` if the leader cannot be reached).
pub fn forward_to(agent: &ureq::Agent, leader_url: &str, req: &Request<'_>) -> Option<Answer> {
    let url = transport::url(leader_url, req.url);
    let r = agent
        .request(req.method, &url)
        .set(FORWARDED_HEADER, "1")
        .send_bytes(req.body);
    let resp = match r {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            let key = format!("forward {leader_url}");
            ratelog::log((log::Level::Warn, module_path!()), &key, || {
                format!("forwarding to {url}: {t}")
            });
            return None;
        }
    };
    let status = resp.status();
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .ok()?;
    Some(Answer {
        status,
        content_type: (!body.is_empty() || status != 200).then_some(TEXT),
        body,
        raftdump: false,
    })
}
