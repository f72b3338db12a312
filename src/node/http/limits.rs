//! Limits on what one request may take: free disk space for a write, the length of a request's
//! head, and the node's budget of RPC bodies in flight.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::node::budget::Reservation;

use super::{Answer, HttpOptions};

/// `/raft/*` bodies up to this size skip [`HttpOptions::rpc_budget`]: heartbeats and votes never
/// wait behind big bodies, and all open connections together hold at most
/// `max_connections` x this much of them.
pub const SMALL_RPC_BODY: usize = 64 << 10;

/// Refuses a write before it is appended when the file system holding the log would keep
/// less than `reserve` bytes free: the node then stays up and keeps serving reads, instead of
/// meeting `ENOSPC` in the middle of an append (which stops it, never answering 200).
///
/// The file system is asked at most every [`SpaceGuard::REFRESH`]; in between, the bytes
/// admitted are subtracted from the free space it last reported, so the guard never admits
/// more than a fresh query would (writes of other processes aside, which the reserve covers).
#[derive(Debug, Clone)]
pub struct SpaceGuard {
    dir: std::path::PathBuf,
    reserve: u64,
    pub(super) refresh: Duration,
    /// When the file system was last asked, and the free bytes known since.
    pub(super) known: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl SpaceGuard {
    /// How long a free-space figure is used (with the admitted bytes subtracted).
    pub const REFRESH: Duration = Duration::from_millis(20);

    /// A guard keeping `reserve` bytes free on the file system of `dir`.
    pub fn new(dir: std::path::PathBuf, reserve: u64) -> SpaceGuard {
        SpaceGuard {
            dir,
            reserve,
            refresh: Self::REFRESH,
            known: Arc::new(Mutex::new(None)),
        }
    }

    /// Whether a command of `payload` bytes may be appended. A file system that cannot be
    /// queried admits it (the append itself then reports any error).
    pub fn admits(&self, payload: usize) -> bool {
        // The frame adds a header, the index, term and command name: 256 bytes covers it.
        let need = payload as u64 + 256;
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (at, free) = match *known {
            Some((at, free)) if now.duration_since(at) < self.refresh => (at, free),
            _ => match rustix::fs::statvfs(&self.dir) {
                Ok(st) => (now, st.f_bavail.saturating_mul(st.f_frsize)),
                Err(_) => {
                    *known = None;
                    return true;
                }
            },
        };
        let ok = free >= self.reserve.saturating_add(need);
        *known = Some((at, if ok { free - need } else { free }));
        ok
    }
}

pub(super) fn no_space() -> Answer {
    Answer::text(
        507,
        "raftdump: not enough free disk space for this write; reads are still served\n",
    )
}

/// Longest request line (method, target, version): 414 over it. A key of the documented 8 KiB
/// limit percent-encoded is up to 24 KiB of target, so it fits.
pub const MAX_REQUEST_LINE: usize = 32 << 10;
/// Longest header line: 431 over it.
pub const MAX_HEADER_LINE: usize = 8 << 10;
/// Most headers in one request: 431 over it.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of all header lines of one request: 431 over it.
pub const MAX_HEADER_BYTES: usize = 32 << 10;

/// Room in the node's RPC budget for `rq`'s body and what decoding it adds (twice its length:
/// a decoded AppendEntries keeps the body and adds at most half of it, see `node::budget`),
/// unless it is small or not an RPC; 503 when none comes within the timeout. An
/// AppendEntries keeps its reservation until it is answered, after its entries are written.
pub(super) fn rpc_reservation(
    rq: &tiny_http::Request,
    is_rpc: bool,
    opts: &HttpOptions,
) -> Result<Option<Reservation>, Answer> {
    let len = match rq.body_length() {
        Some(n) => n.min(opts.max_rpc_body.saturating_add(1)),
        None => opts.max_rpc_body,
    };
    if !is_rpc || len <= SMALL_RPC_BODY {
        return Ok(None);
    }
    match opts.rpc_budget.reserve(len.saturating_mul(2), opts.timeout) {
        Some(r) => Ok(Some(r)),
        None => Err(Answer::text(
            503,
            format!(
                "raftdump: over {} bytes of RPC bodies in flight; retry\n",
                opts.rpc_budget.cap()
            ),
        )),
    }
}
