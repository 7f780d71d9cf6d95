//! Live provider health for latency-aware order (`prefer: fastest` on an alias): per provider,
//! an exponentially weighted moving average of its attempts' latency (to response headers) and
//! error rate, in shared data (one key per provider, so every worker sees the same figures).
//! Each attempt adds its sample; the listener reads the chain's providers and picks the order
//! that starts with the best one.

use crate::host::{Host, SharedSetError};
use crate::text::{PutBytes, Text};

const KEY_PREFIX: &str = "aigw.health.";
/// The weight of a new sample.
const ALPHA: f64 = 0.2;
/// How much an error rate weighs against latency: a provider failing half its attempts scores
/// as three times slower.
const ERROR_WEIGHT: f64 = 4.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Health {
    pub latency_ms: f64,
    pub error_rate: f64,
    /// When it last had a sample (ms).
    pub last_ms: u64,
}

impl Health {
    fn decode(b: &[u8]) -> Option<Health> {
        let f = |i: usize| b.get(i..i + 8).and_then(|x| x.try_into().ok()).map(f64::from_le_bytes);
        let u = |i: usize| b.get(i..i + 8).and_then(|x| x.try_into().ok()).map(u64::from_le_bytes);
        Some(Health { latency_ms: f(0)?, error_rate: f(8)?, last_ms: u(16)? })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.put(&self.latency_ms.to_le_bytes());
        out.put(&self.error_rate.to_le_bytes());
        out.put(&self.last_ms.to_le_bytes());
        out
    }

    /// With one more sample (the first one is taken as it is).
    pub fn with(self, latency_ms: u64, failed: bool, now: u64) -> Health {
        let (l, e) = (latency_ms as f64, if failed { 1.0 } else { 0.0 });
        if self.last_ms == 0 {
            return Health { latency_ms: l, error_rate: e, last_ms: now.max(1) };
        }
        Health {
            latency_ms: self.latency_ms + ALPHA * (l - self.latency_ms),
            error_rate: self.error_rate + ALPHA * (e - self.error_rate),
            last_ms: now.max(1),
        }
    }

    /// Lower is better.
    pub fn score(&self) -> f64 {
        self.latency_ms * (1.0 + ERROR_WEIGHT * self.error_rate)
    }
}

/// A provider's figures (`None`: never sampled).
pub fn read(h: &impl Host, provider: &str) -> Option<Health> {
    h.shared_get(&format!("{KEY_PREFIX}{provider}")).ok().and_then(|(b, _)| b).and_then(|b| Health::decode(&b))
}

/// How long a worker may keep a provider's successful samples before writing them: each write
/// is a shared-data read and write (about 14,000 instructions), and under load most attempts
/// would make one. A failure is written at once, with what is pending.
pub const WRITE_EVERY_MS: u64 = 100;
/// At most this many samples wait per provider (the oldest are dropped past it; their weight in
/// the average is (1 - ALPHA)^32 of a new one's by then anyway).
const MAX_PENDING: usize = 32;

/// One worker's samples not yet in shared data, per provider, and when it last wrote each.
#[derive(Debug, Clone, Default)]
pub struct Live(std::cell::RefCell<Vec<LiveProvider>>);

#[derive(Debug, Clone, Default)]
struct LiveProvider {
    provider: String,
    written_ms: Option<u64>,
    /// (latency ms, failed, when) in the order they came.
    pending: Vec<(u64, bool, u64)>,
}

impl Live {
    /// Adds an attempt's sample: written to the provider's figures (with what is pending) when
    /// it failed, when this worker has not written them yet, or when it last did
    /// [`WRITE_EVERY_MS`] ago or more; else kept for the next write.
    pub fn record(&self, h: &impl Host, provider: &str, latency_ms: u64, failed: bool) {
        let now = h.now_ms();
        let samples = {
            let mut all = self.0.borrow_mut();
            let i = match all.iter().position(|p| p.provider == provider) {
                Some(i) => i,
                None => {
                    all.push(LiveProvider { provider: provider.own(), ..LiveProvider::default() });
                    all.len() - 1
                }
            };
            let Some(p) = all.get_mut(i) else { return };
            if p.pending.len() >= MAX_PENDING {
                p.pending.remove(0);
            }
            p.pending.push((latency_ms, failed, now));
            let due = failed || p.written_ms.is_none_or(|w| now.saturating_sub(w) >= WRITE_EVERY_MS);
            if !due {
                return;
            }
            p.written_ms = Some(now);
            std::mem::take(&mut p.pending)
        };
        write(h, provider, &samples);
    }
}

/// Adds an attempt's sample to its provider's figures at once.
pub fn record(h: &impl Host, provider: &str, latency_ms: u64, failed: bool) {
    let now = h.now_ms();
    write(h, provider, &[(latency_ms, failed, now)]);
}

/// Adds `samples` (in order) to the provider's figures in shared data.
fn write(h: &impl Host, provider: &str, samples: &[(u64, bool, u64)]) {
    let key = format!("{KEY_PREFIX}{provider}");
    for _ in 0..8 {
        let Ok((cur, cas)) = h.shared_get(&key) else { return };
        let before = cur.as_deref().and_then(Health::decode).unwrap_or_default();
        let next = samples.iter().fold(before, |f, &(l, failed, at)| f.with(l, failed, at)).encode();
        // (A key that does not exist yet cannot be compare-and-swapped: it is created; two
        // workers creating it at once keep one sample of the two.)
        match h.shared_set(&key, &next, cas) {
            Ok(()) => return,
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return,
        }
    }
}

/// Which of `providers` (a chain's, in its order) to try first: one with no sample for
/// `probe_ms` (or none yet), the earliest in the chain, so a provider avoided as slow is seen
/// again when it recovers; otherwise the best score (ties: the chain's order).
pub fn fastest(h: &impl Host, providers: &[&str], now: u64, probe_ms: u64) -> usize {
    let figures: Vec<Option<Health>> = providers.iter().map(|p| read(h, p)).collect();
    if let Some(i) = figures.iter().position(|f| f.is_none_or(|f| now.saturating_sub(f.last_ms) >= probe_ms)) {
        return i;
    }
    let mut best = 0;
    for (i, f) in figures.iter().enumerate() {
        let score = |i: usize| figures.get(i).copied().flatten().map_or(f64::MAX, |f| f.score());
        if f.is_some() && score(i) < score(best) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    #[test]
    fn a_worker_writes_its_successes_at_most_every_100_ms_and_a_failure_at_once() {
        let h = FakeHost::new();
        let live = Live::default();
        // The exact figures, each sample written at once.
        let exact = FakeHost::new();
        let sample = |at: u64, latency: u64, failed: bool| {
            h.now.set(at);
            exact.now.set(at);
            live.record(&h, "openai", latency, failed);
            record(&exact, "openai", latency, failed);
        };
        sample(1_000, 400, false);
        assert_eq!(h.shared_writes.get(), 1, "the first sample is written at once");
        assert_eq!(read(&h, "openai"), read(&exact, "openai"));
        sample(1_040, 200, false);
        sample(1_090, 100, false);
        assert_eq!(h.shared_writes.get(), 1, "kept: written 90 ms ago");
        sample(1_100, 300, false);
        assert_eq!(h.shared_writes.get(), 2, "100 ms on: the three pending go in one write");
        assert_eq!(read(&h, "openai"), read(&exact, "openai"), "the same figures as one write each");
        sample(1_120, 100, false);
        sample(1_130, 900, true);
        assert_eq!(h.shared_writes.get(), 3, "a failure is written at once, with what waits");
        assert_eq!(read(&h, "openai"), read(&exact, "openai"));
        // Each provider keeps its own time.
        sample(1_140, 50, false);
        h.now.set(1_140);
        live.record(&h, "anthropic", 70, false);
        assert_eq!(h.shared_writes.get(), 4, "anthropic's first sample");
        assert!(read(&h, "anthropic").is_some());
    }

    #[test]
    fn the_fastest_provider_is_chosen_and_a_stale_one_is_probed() {
        let h = FakeHost::new();
        h.now.set(1_000);
        let chain = ["anthropic", "openai"];
        // Nothing known: the chain's first, then the one never tried.
        assert_eq!(fastest(&h, &chain, 1_000, 10_000), 0);
        record(&h, "anthropic", 400, false);
        assert_eq!(fastest(&h, &chain, 1_000, 10_000), 1);
        record(&h, "openai", 100, false);
        assert_eq!(fastest(&h, &chain, 1_000, 10_000), 1, "OpenAI answers faster");
        // Anthropic gets faster: the average follows (0.2 a sample).
        for _ in 0..12 {
            record(&h, "anthropic", 50, false);
        }
        let a = read(&h, "anthropic").unwrap();
        assert!(a.latency_ms < 100.0 && a.latency_ms > 50.0, "{a:?}");
        assert_eq!(fastest(&h, &chain, 1_000, 10_000), 0);
        // Errors weigh: failing half the time scores it as three times slower.
        for i in 0..12 {
            record(&h, "anthropic", 50, i % 2 == 0);
        }
        assert_eq!(fastest(&h, &chain, 1_000, 10_000), 1);
        // No sample of Anthropic for the probe time: one call goes to it first.
        h.now.set(9_000);
        record(&h, "openai", 100, false);
        assert_eq!(fastest(&h, &chain, 11_500, 10_000), 0);
        // A damaged value reads as never sampled.
        h.shared_set("aigw.health.openai", b"x", None).unwrap();
        assert!(read(&h, "openai").is_none());
    }
}
