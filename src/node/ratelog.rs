//! Log lines that can repeat once per request or per peer, rate-limited: the first occurrence
//! of a kind (its key: the site and what repeats, e.g. the sender's name) is logged at once; the
//! ones after it within [`WINDOW_MS`] are only counted, and the count is logged when the window
//! ends ("... (24 more in the last 5 s)"), so a flood of refused RPCs or a peer that keeps
//! failing writes one line every few seconds, not one per request.
//!
//! [`RateLog`] takes the time as an argument (milliseconds on any monotonic clock): the core
//! owns one and feeds it its own clock, so its decisions stay deterministic under the
//! simulator. Code that has no clock of its own (transport, HTTP) uses the process-wide one
//! through [`log`] and [`flush`], timed by a monotonic clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use log::Level;

/// How long after a line the same key is only counted.
pub const WINDOW_MS: u64 = 5_000;

/// Most keys tracked at once; later keys share one overflow slot (a flood of forged sender
/// names cannot grow the table).
const MAX_KEYS: usize = 64;

/// The key that keys beyond [`MAX_KEYS`] share.
const OVERFLOW: &str = "\u{0}overflow";

#[derive(Debug)]
struct Slot {
    level: Level,
    target: &'static str,
    /// When the current window began (the time of the last line written).
    since: u64,
    /// Occurrences counted, not logged, since then.
    more: u64,
    /// The latest occurrence's text (the count line repeats it).
    text: String,
}

/// Rate-limited log lines, by key. See the module docs.
#[derive(Debug)]
pub struct RateLog {
    window_ms: u64,
    slots: HashMap<String, Slot>,
}

impl Default for RateLog {
    fn default() -> Self {
        RateLog::new(WINDOW_MS)
    }
}

impl RateLog {
    /// A rate limiter that logs a key at most once per `window_ms`, plus counts.
    pub fn new(window_ms: u64) -> Self {
        RateLog {
            window_ms: window_ms.max(1),
            slots: HashMap::new(),
        }
    }

    /// One occurrence of `key` at `now_ms`: the line to write now, if any: the text when the
    /// key is new, the text and the count of the ones not logged when its window has ended,
    /// nothing within the window (`text` is kept for the count line).
    pub fn hit(
        &mut self,
        now_ms: u64,
        (level, target): (Level, &'static str),
        key: &str,
        text: impl FnOnce() -> String,
    ) -> Option<String> {
        let key = if self.slots.len() >= MAX_KEYS && !self.slots.contains_key(key) {
            OVERFLOW
        } else {
            key
        };
        let Some(slot) = self.slots.get_mut(key) else {
            let text = text();
            let slot = Slot {
                level,
                target,
                since: now_ms,
                more: 0,
                text: text.clone(),
            };
            self.slots.insert(key.to_string(), slot);
            return Some(text);
        };
        slot.text = text();
        if now_ms.saturating_sub(slot.since) < self.window_ms {
            slot.more += 1;
            return None;
        }
        let line = with_count(&slot.text, slot.more, self.window_ms);
        slot.since = now_ms;
        slot.more = 0;
        Some(line)
    }

    /// The count lines of windows that ended by `now_ms` with occurrences not logged, as
    /// `(level, target, line)`; keys whose window ended with none are forgotten (their next
    /// occurrence is logged at once again).
    pub fn due(&mut self, now_ms: u64) -> Vec<(Level, &'static str, String)> {
        let window = self.window_ms;
        let mut lines = Vec::new();
        self.slots.retain(|_, s| {
            if now_ms.saturating_sub(s.since) < window {
                return true;
            }
            if s.more == 0 {
                return false;
            }
            lines.push((s.level, s.target, with_count(&s.text, s.more, window)));
            s.since = now_ms;
            s.more = 0;
            true
        });
        lines
    }

    /// Logs an occurrence of `key` (see [`RateLog::hit`]) unless its level is off.
    pub fn log(
        &mut self,
        now_ms: u64,
        site: (Level, &'static str),
        key: &str,
        text: impl FnOnce() -> String,
    ) {
        if !log::log_enabled!(target: site.1, site.0) {
            return;
        }
        if let Some(line) = self.hit(now_ms, site, key, text) {
            log::log!(target: site.1, site.0, "{line}");
        }
    }

    /// Logs the count lines that are due (see [`RateLog::due`]).
    pub fn flush(&mut self, now_ms: u64) {
        if self.slots.is_empty() {
            return;
        }
        for (level, target, line) in self.due(now_ms) {
            log::log!(target: target, level, "{line}");
        }
    }
}

fn with_count(text: &str, more: u64, window_ms: u64) -> String {
    if more == 0 {
        return text.to_string();
    }
    let secs = window_ms.div_ceil(1000);
    format!("{text} ({more} more in the last {secs} s)")
}

fn global() -> &'static (Instant, Mutex<RateLog>) {
    static GLOBAL: OnceLock<(Instant, Mutex<RateLog>)> = OnceLock::new();
    GLOBAL.get_or_init(|| (Instant::now(), Mutex::new(RateLog::default())))
}

/// Logs an occurrence of `key` through the process-wide [`RateLog`] (for code without a clock
/// of its own). `site` is the level and the log target (`module_path!()`).
pub fn log(site: (Level, &'static str), key: &str, text: impl FnOnce() -> String) {
    if !log::log_enabled!(target: site.1, site.0) {
        return;
    }
    let (start, rl) = global();
    let now = start.elapsed().as_millis() as u64;
    let line = rl
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .hit(now, site, key, text);
    if let Some(line) = line {
        log::log!(target: site.1, site.0, "{line}");
    }
}

/// Logs the process-wide count lines that are due (the runtime calls it as it ticks; it looks
/// at most every 250 ms).
pub fn flush() {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let (start, rl) = global();
    let now = start.elapsed().as_millis() as u64;
    if now.saturating_sub(LAST.load(Ordering::Relaxed)) < 250 {
        return;
    }
    LAST.store(now, Ordering::Relaxed);
    let lines = rl.lock().unwrap_or_else(|e| e.into_inner()).due(now);
    for (level, target, line) in lines {
        log::log!(target: target, level, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: (Level, &str) = (Level::Warn, "t");

    fn hit(rl: &mut RateLog, now: u64, key: &str, text: &str) -> Option<String> {
        rl.hit(now, W, key, || text.to_string())
    }

    fn lines(due: Vec<(Level, &'static str, String)>) -> Vec<String> {
        due.into_iter().map(|(_, _, l)| l).collect()
    }

    #[test]
    fn a_flood_writes_the_first_line_then_one_count_a_window() {
        let mut rl = RateLog::new(5_000);
        assert_eq!(hit(&mut rl, 0, "a", "refused x"), Some("refused x".into()));
        // 25 more within 1.5 s: counted, not logged.
        for t in 1..=25 {
            assert_eq!(hit(&mut rl, t * 60, "a", "refused x"), None);
        }
        assert!(rl.due(4_999).is_empty());
        assert_eq!(
            lines(rl.due(5_000)),
            vec!["refused x (25 more in the last 5 s)".to_string()]
        );
        // The flood goes on: counted in the next window, one line at its end.
        for t in 0..100 {
            assert_eq!(hit(&mut rl, 5_001 + t, "a", "refused x"), None);
        }
        assert_eq!(
            lines(rl.due(10_000)),
            vec!["refused x (100 more in the last 5 s)".to_string()]
        );
        // It stopped: an empty window forgets the key, and the next one is logged at once.
        assert!(rl.due(15_000).is_empty());
        assert!(rl.slots.is_empty());
        assert_eq!(hit(&mut rl, 15_001, "a", "again"), Some("again".into()));
    }

    #[test]
    fn keys_are_limited_apart_and_a_late_hit_carries_the_count() {
        let mut rl = RateLog::new(1_000);
        assert!(hit(&mut rl, 0, "a", "a1").is_some());
        assert!(hit(&mut rl, 0, "b", "b1").is_some());
        assert!(hit(&mut rl, 10, "a", "a2").is_none());
        assert!(hit(&mut rl, 20, "a", "a3").is_none());
        // No flush ran: the first hit after the window writes its text and the count.
        assert_eq!(
            hit(&mut rl, 1_500, "a", "a4"),
            Some("a4 (2 more in the last 1 s)".into())
        );
        assert!(hit(&mut rl, 1_600, "a", "a5").is_none());
        // b had no repeats: nothing to count.
        assert_eq!(
            lines(rl.due(2_600)),
            vec!["a5 (1 more in the last 1 s)".to_string()]
        );
    }

    #[test]
    fn a_clock_going_back_counts_and_never_panics() {
        let mut rl = RateLog::new(1_000);
        assert!(hit(&mut rl, 5_000, "a", "x").is_some());
        assert!(hit(&mut rl, 10, "a", "x").is_none());
        assert!(rl.due(0).is_empty());
    }

    #[test]
    fn forged_keys_share_one_slot_beyond_the_cap() {
        let mut rl = RateLog::new(1_000);
        let mut written = 0;
        for i in 0..10_000 {
            let k = format!("sender-{i}");
            written += usize::from(hit(&mut rl, 0, &k, &k).is_some());
        }
        assert_eq!(written, MAX_KEYS + 1);
        assert_eq!(rl.slots.len(), MAX_KEYS + 1);
        assert_eq!(
            lines(rl.due(1_000)),
            vec![format!(
                "sender-9999 ({} more in the last 1 s)",
                10_000 - MAX_KEYS - 1
            )]
        );
    }
}
