//! Token-bucket arithmetic, exact in integers.
//!
//! A bucket's level is kept in "units": one token is 60,000 units, and a rate of R tokens per
//! minute refills exactly R units per millisecond, so refill never rounds and never drifts.

pub const UNITS_PER_TOKEN: u64 = 60_000;

/// A bucket's limit: `rate` tokens per minute, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate_per_minute: u64,
    pub burst: u64,
}

/// A bucket's stored state: its level and when it was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub units: u64,
    pub updated_ms: u64,
}

/// What taking from a bucket decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Taken; `remaining` whole tokens are left; the bucket is full again after `reset_ms`.
    Allowed { state: State, remaining: u64, reset_ms: u64 },
    /// Not enough; enough will have refilled after `retry_after_ms`.
    Refused { state: State, retry_after_ms: u64 },
}

impl State {
    pub fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.units.to_le_bytes());
        out[8..].copy_from_slice(&self.updated_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<State> {
        let units = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let updated_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(State { units, updated_ms })
    }
}

impl Limit {
    fn capacity(&self) -> u64 {
        self.burst.saturating_mul(UNITS_PER_TOKEN)
    }

    /// The state at `now_ms`, refilled from `prev` (a missing bucket starts full). A clock that
    /// went backwards refills nothing and keeps the later timestamp.
    pub fn refill(&self, prev: Option<State>, now_ms: u64) -> State {
        match prev {
            None => State { units: self.capacity(), updated_ms: now_ms },
            Some(s) if now_ms <= s.updated_ms => State { units: s.units.min(self.capacity()), ..s },
            Some(s) => {
                let added = (now_ms - s.updated_ms).saturating_mul(self.rate_per_minute);
                State { units: s.units.saturating_add(added).min(self.capacity()), updated_ms: now_ms }
            }
        }
    }

    /// Takes `cost` tokens at `now_ms`.
    pub fn take(&self, prev: Option<State>, now_ms: u64, cost: u64) -> Decision {
        let state = self.refill(prev, now_ms);
        let need = cost.saturating_mul(UNITS_PER_TOKEN);
        if state.units >= need {
            let left = State { units: state.units - need, ..state };
            Decision::Allowed {
                state: left,
                remaining: left.units / UNITS_PER_TOKEN,
                reset_ms: self.ms_to_refill(self.capacity().saturating_sub(left.units)),
            }
        } else if need > self.capacity() || self.rate_per_minute == 0 {
            Decision::Refused { state, retry_after_ms: u64::MAX }
        } else {
            Decision::Refused { state, retry_after_ms: self.ms_to_refill(need - state.units) }
        }
    }

    fn ms_to_refill(&self, units: u64) -> u64 {
        if self.rate_per_minute == 0 {
            return u64::MAX;
        }
        units.div_ceil(self.rate_per_minute)
    }
}

/// Whole seconds for a `Retry-After` header: rounded up, at least 1.
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limit = Limit { rate_per_minute: 60, burst: 3 };

    fn allowed(d: Decision) -> Option<State> {
        match d {
            Decision::Allowed { state, .. } => Some(state),
            Decision::Refused { .. } => None,
        }
    }

    #[test]
    fn new_bucket_starts_full_and_empties_at_burst() {
        let mut s = None;
        for _ in 0..3 {
            s = allowed(L.take(s, 1_000, 1));
            assert!(s.is_some());
        }
        match L.take(s, 1_000, 1) {
            Decision::Refused { retry_after_ms, .. } => assert_eq!(retry_after_ms, 1_000),
            d => assert!(matches!(d, Decision::Refused { .. }), "{d:?}"),
        }
    }

    #[test]
    fn refill_is_exact_over_many_small_steps() {
        // 7 per minute: after 60,000 ms in 1 ms steps exactly 7 tokens are back.
        let lim = Limit { rate_per_minute: 7, burst: 100 };
        let mut s = State { units: 0, updated_ms: 0 };
        for t in 1..=60_000 {
            s = lim.refill(Some(s), t);
        }
        assert_eq!(s.units, 7 * UNITS_PER_TOKEN);
    }

    #[test]
    fn refill_caps_at_burst() {
        let s = L.refill(Some(State { units: 0, updated_ms: 0 }), 10_000_000);
        assert_eq!(s.units, 3 * UNITS_PER_TOKEN);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let s = State { units: UNITS_PER_TOKEN / 2, updated_ms: 5_000 };
        let r = L.refill(Some(s), 4_000);
        assert_eq!(r, s);
    }

    #[test]
    fn partial_token_waits_for_the_rest() {
        // Half a token present at 60/min: the other half takes 500 ms.
        let s = State { units: UNITS_PER_TOKEN / 2, updated_ms: 0 };
        match L.take(Some(s), 0, 1) {
            Decision::Refused { retry_after_ms, .. } => assert_eq!(retry_after_ms, 500),
            d => assert!(matches!(d, Decision::Refused { .. }), "{d:?}"),
        }
        assert!(allowed(L.take(Some(s), 500, 1)).is_some());
    }

    #[test]
    fn cost_above_burst_never_fits() {
        assert!(matches!(L.take(None, 0, 4), Decision::Refused { retry_after_ms: u64::MAX, .. }));
    }

    #[test]
    fn state_roundtrips_and_rejects_short_input() {
        let s = State { units: 123_456_789, updated_ms: 987_654_321 };
        assert_eq!(State::decode(&s.encode()), Some(s));
        assert_eq!(State::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
        assert_eq!(retry_after_secs(0), 1);
    }

    #[test]
    fn reset_reports_time_to_full() {
        match L.take(None, 0, 1) {
            Decision::Allowed { remaining, reset_ms, .. } => {
                assert_eq!(remaining, 2);
                assert_eq!(reset_ms, 1_000);
            }
            d => assert!(matches!(d, Decision::Allowed { .. }), "{d:?}"),
        }
    }
}
