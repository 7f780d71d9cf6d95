//! Live provider health for latency-aware order (`prefer: fastest` on an alias): per provider,
//! an exponentially weighted moving average of its attempts' latency (to response headers) and
//! error rate, in shared data (one key per provider, so every worker sees the same figures).
//! Each attempt adds its sample; the listener reads the chain's providers and picks the order
//! that starts with the best one.

use crate::host::{Host, SharedSetError};

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
        out.extend_from_slice(&self.latency_ms.to_le_bytes());
        out.extend_from_slice(&self.error_rate.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
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

/// Adds an attempt's sample to its provider's figures.
pub fn record(h: &impl Host, provider: &str, latency_ms: u64, failed: bool) {
    let key = format!("{KEY_PREFIX}{provider}");
    let now = h.now_ms();
    for _ in 0..8 {
        let Ok((cur, cas)) = h.shared_get(&key) else { return };
        let before = cur.as_deref().and_then(Health::decode).unwrap_or_default();
        let next = before.with(latency_ms, failed, now).encode();
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
