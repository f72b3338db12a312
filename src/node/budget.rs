//! The node's memory budget for request bodies in flight.
//!
//! It owns one count of bytes reserved and the wait for room; it must not read sockets or
//! decide answers (the HTTP layer answers 503 when a reservation does not come in time).
//! Without it, every open connection could hold a body of the largest size at once: 48
//! parallel 64 MiB AppendEntries took a node to 2 GB.
//!
//! # Why twice the body is an honest bound
//! A body is reserved at twice its length (`http::limits::rpc_reservation`): once for its bytes,
//! once for what decoding it adds. An AppendEntries, the only big RPC in a running cluster, is
//! decoded into a `format::batch::EntryBatch` that keeps the body itself (moved, never copied)
//! plus 4 bytes per entry, and every entry takes at least 8 bytes of the body (its tag, its
//! length and the three required fields): the decoded request never holds more than 1.5
//! bodies. Entries encoded otherwise than goraft does are re-encoded over their own bytes,
//! through a scratch buffer of the largest such entry's size (the entry's own bytes bound it and
//! the locations together: at most 2 bodies while decoding). The store writes the batch through
//! a write buffer of about 1 MiB, so no second copy of the entries exists on the way to the
//! log. The reservation lives until the request is answered,
//! after its entries are written. (Decoded into owned entries, 64 bytes each, one 63 MB body of
//! 5.4 million tiny entries took a node to 680 MB; as a batch, 130 MB.)

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The default budget: 256 MiB of RPC bodies (and what decoding them adds) in flight.
pub const DEFAULT_RPC_MEMORY: usize = 256 << 20;

/// A count of bytes in flight with a cap; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Budget {
    inner: Arc<(Mutex<usize>, Condvar)>,
    cap: usize,
}

/// Bytes reserved from a [`Budget`]; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    bytes: usize,
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Budget {
        Budget {
            inner: Arc::new((Mutex::new(0), Condvar::new())),
            cap,
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Reserves `bytes` (at most the cap), waiting up to `wait` for room; `None` if none came.
    pub fn reserve(&self, bytes: usize, wait: Duration) -> Option<Reservation> {
        let bytes = bytes.min(self.cap);
        let deadline = Instant::now() + wait;
        let (used, freed) = &*self.inner;
        let mut u = used.lock().unwrap_or_else(|e| e.into_inner());
        while *u + bytes > self.cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            u = freed
                .wait_timeout(u, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *u += bytes;
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        *self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Allocations from this size up are always mapped on their own and unmapped when freed.
pub const BIG_ALLOCATION: usize = 4 << 20;

/// Makes memory freed from big buffers (RPC bodies, their decoded entries) go back to the OS at
/// once. glibc's malloc otherwise raises its mapping threshold after the first big buffer is
/// freed, and later ones stay in its per-thread arenas: the node's resident size then follows
/// the sum of every thread's largest bodies, not the budget (48 parallel 24 MiB bodies under a
/// 256 MiB budget peaked at 900 MB, and at 280 MB with the threshold fixed). Small allocations,
/// all of the hot path, are not affected. Does nothing on other C libraries.
pub fn return_big_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets a tuning parameter of the allocator; it is called once at
        // start-up, and any value is valid for M_MMAP_THRESHOLD up to HEAP_MAX (32 MiB).
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, BIG_ALLOCATION as libc::c_int) };
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(DEFAULT_RPC_MEMORY)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (used, freed) = &*self.budget.inner;
        let mut u = used.lock().unwrap_or_else(|e| e.into_inner());
        *u -= self.bytes;
        freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_wait_for_room_and_give_it_back() {
        let b = Budget::new(100);
        let r1 = b.reserve(60, Duration::ZERO).unwrap();
        assert!(b.reserve(50, Duration::ZERO).is_none());
        let r2 = b.reserve(40, Duration::ZERO).unwrap();
        assert_eq!(b.used(), 100);
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || b.reserve(50, Duration::from_secs(30)).map(|r| r.bytes))
        };
        drop(r1);
        assert_eq!(waiter.join().unwrap(), Some(50));
        drop(r2);
        assert_eq!(b.used(), 0);
        // More than the cap is capped: it waits for an empty budget, never forever.
        assert_eq!(b.reserve(1000, Duration::ZERO).map(|r| r.bytes), Some(100));
    }
}
