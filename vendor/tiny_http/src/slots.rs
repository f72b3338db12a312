//! raftdump: the open connections and who gets a slot when they are all taken.
//!
//! A client address holds at most half of `Limits::max_connections`. When a new connection
//! finds no free slot (overall, or in its address's share), the connection that has waited
//! longest for its next request head is closed to make room: an idle keep-alive connection
//! costs its client a reconnect, while refusing the new one would lock every client out for
//! as long as someone keeps idle sockets open. The victim is taken from the new connection's
//! own address when that address is at its share, otherwise from the address holding the most
//! slots. A connection that is reading or answering a request is never closed; with no idle
//! connection to close, the new one is refused (closed at once). With a request handler on the
//! connection's thread (`Server::from_listener_with_handler`), "waits for a request head" means
//! exactly that; with `recv`, a connection counts as waiting from the moment its thread reads
//! the next head, which may be while a worker still handles its previous request.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Whether a connection waits for a request head, and since when.
#[derive(Clone)]
pub(crate) struct IdleMark {
    epoch: Instant,
    /// Milliseconds since `epoch`, plus one, at which the wait began; 0 while a request is
    /// read or handled.
    at: Arc<AtomicU64>,
}

impl IdleMark {
    /// The connection waits for its next request head.
    pub(crate) fn idle(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.at.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// The first byte of a request head arrived.
    pub(crate) fn busy(&self) {
        self.at.store(0, Ordering::Relaxed);
    }
}

struct Slot {
    ip: Option<IpAddr>,
    idle: Arc<AtomicU64>,
    /// A handle to close the connection (TCP only).
    stream: Option<TcpStream>,
}

struct Inner {
    next_id: u64,
    conns: HashMap<u64, Slot>,
}

/// The open connections of one server.
#[derive(Clone)]
pub(crate) struct Slots {
    epoch: Instant,
    max: usize,
    inner: Arc<Mutex<Inner>>,
}

/// Frees its slot when the connection's task ends.
pub(crate) struct SlotGuard {
    slots: Slots,
    id: u64,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.lock().conns.remove(&self.id);
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Slots {
        Slots {
            epoch: Instant::now(),
            max,
            inner: Arc::new(Mutex::new(Inner {
                next_id: 0,
                conns: HashMap::new(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip` (`stream`: a handle to close it later), closing
    /// an idle connection if that is what it takes; `None`: refuse the new connection.
    pub(crate) fn admit(
        &self,
        ip: Option<IpAddr>,
        stream: Option<TcpStream>,
    ) -> Option<(SlotGuard, IdleMark)> {
        let share = (self.max / 2).max(1);
        let mut inner = self.lock();
        let mine = inner.conns.values().filter(|s| s.ip == ip).count();
        if inner.conns.len() >= self.max || mine >= share {
            let victim = pick_victim(&inner.conns, ip, mine >= share)?;
            if let Some(s) = inner.conns.remove(&victim) {
                if let Some(st) = s.stream {
                    let _ = st.shutdown(Shutdown::Both);
                }
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let at = Arc::new(AtomicU64::new(0));
        inner.conns.insert(
            id,
            Slot {
                ip,
                idle: at.clone(),
                stream,
            },
        );
        drop(inner);
        let mark = IdleMark {
            epoch: self.epoch,
            at,
        };
        mark.idle();
        Some((
            SlotGuard {
                slots: self.clone(),
                id,
            },
            mark,
        ))
    }
}

/// The idle connection to close: from `ip` when `own` (its address is at its share), else from
/// the address holding the most slots; the one idle longest first.
fn pick_victim(conns: &HashMap<u64, Slot>, ip: Option<IpAddr>, own: bool) -> Option<u64> {
    let mut per: HashMap<Option<IpAddr>, usize> = HashMap::new();
    for s in conns.values() {
        *per.entry(s.ip).or_default() += 1;
    }
    conns
        .iter()
        .filter(|(_, s)| s.stream.is_some() && (!own || s.ip == ip))
        .filter_map(|(id, s)| {
            let at = s.idle.load(Ordering::Relaxed);
            (at != 0).then(|| (per[&s.ip], std::cmp::Reverse(at), *id))
        })
        .max()
        .map(|(_, _, id)| id)
}
