//! Token-bucket arithmetic, exact in integers.
//!
//! A bucket's level is kept in "units": one token is 60,000 units, and a rate of R tokens per
//! minute refills exactly R units per millisecond, so refill never rounds and never drifts.
//!
//! The level may go below zero: when a call turns out to have cost more than was taken for it
//! up front (see `adjust`), the difference is a debt that later refill pays off first.

pub const UNITS_PER_TOKEN: u64 = 60_000;
const UNITS: i64 = UNITS_PER_TOKEN as i64;

/// A bucket's limit: `rate` tokens per minute, holding at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate_per_minute: u64,
    pub burst: u64,
}

/// A bucket's stored state: its level and when it was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub units: i64,
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
        let units = i64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let updated_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(State { units, updated_ms })
    }
}

impl Limit {
    fn capacity(&self) -> i64 {
        i64::try_from(self.burst.saturating_mul(UNITS_PER_TOKEN)).unwrap_or(i64::MAX)
    }

    fn rate(&self) -> i64 {
        i64::try_from(self.rate_per_minute).unwrap_or(i64::MAX)
    }

    /// The state at `now_ms`, refilled from `prev` (a missing bucket starts full). A clock that
    /// went backwards refills nothing and keeps the later timestamp.
    pub fn refill(&self, prev: Option<State>, now_ms: u64) -> State {
        match prev {
            None => State { units: self.capacity(), updated_ms: now_ms },
            Some(s) if now_ms <= s.updated_ms => State { units: s.units.min(self.capacity()), ..s },
            Some(s) => {
                let elapsed = i64::try_from(now_ms - s.updated_ms).unwrap_or(i64::MAX);
                let added = elapsed.saturating_mul(self.rate());
                State { units: s.units.saturating_add(added).min(self.capacity()), updated_ms: now_ms }
            }
        }
    }

    /// Takes `cost` tokens at `now_ms`.
    pub fn take(&self, prev: Option<State>, now_ms: u64, cost: u64) -> Decision {
        let state = self.refill(prev, now_ms);
        let need = i64::try_from(cost).unwrap_or(i64::MAX).saturating_mul(UNITS);
        if state.units >= need {
            let left = State { units: state.units - need, ..state };
            Decision::Allowed { state: left, remaining: whole_tokens(left.units), reset_ms: self.ms_to_full(left) }
        } else if need > self.capacity() || self.rate_per_minute == 0 {
            Decision::Refused { state, retry_after_ms: u64::MAX }
        } else {
            Decision::Refused { state, retry_after_ms: self.ms_to_refill(need.saturating_sub(state.units)) }
        }
    }

    /// Charges `delta` more tokens (a refund when negative) at `now_ms`, without refusing: this
    /// is how a call's up-front estimate is corrected once its real cost is known. A refund never
    /// fills the bucket beyond its burst; a charge may leave it in debt.
    pub fn adjust(&self, prev: Option<State>, now_ms: u64, delta: i64) -> State {
        let state = self.refill(prev, now_ms);
        let units = state.units.saturating_sub(delta.saturating_mul(UNITS)).min(self.capacity());
        State { units, ..state }
    }

    /// Whole tokens left at `now_ms` (0 when in debt) and the ms until the bucket is full.
    pub fn peek(&self, prev: Option<State>, now_ms: u64) -> (u64, u64) {
        let s = self.refill(prev, now_ms);
        (whole_tokens(s.units), self.ms_to_full(s))
    }

    fn ms_to_full(&self, s: State) -> u64 {
        self.ms_to_refill(self.capacity().saturating_sub(s.units))
    }

    fn ms_to_refill(&self, units: i64) -> u64 {
        if self.rate_per_minute == 0 {
            return u64::MAX;
        }
        u64::try_from(units.max(0)).unwrap_or(0).div_ceil(self.rate_per_minute)
    }
}

fn whole_tokens(units: i64) -> u64 {
    u64::try_from(units.max(0) / UNITS).unwrap_or(0)
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
        assert_eq!(s.units, 7 * UNITS);
    }

    #[test]
    fn refill_caps_at_burst() {
        let s = L.refill(Some(State { units: 0, updated_ms: 0 }), 10_000_000);
        assert_eq!(s.units, 3 * UNITS);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let s = State { units: UNITS / 2, updated_ms: 5_000 };
        let r = L.refill(Some(s), 4_000);
        assert_eq!(r, s);
    }

    #[test]
    fn partial_token_waits_for_the_rest() {
        // Half a token present at 60/min: the other half takes 500 ms.
        let s = State { units: UNITS / 2, updated_ms: 0 };
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
    fn adjust_refunds_up_to_burst_and_charges_into_debt() {
        // Took 3 (empty), the call used 1: refund 2.
        let empty = State { units: 0, updated_ms: 0 };
        assert_eq!(L.adjust(Some(empty), 0, -2).units, 2 * UNITS);
        // A refund never overfills.
        assert_eq!(L.adjust(Some(empty), 0, -10).units, 3 * UNITS);
        // The call used 2 more than taken: the bucket owes 2, paid off by 2 s of refill first.
        let owed = L.adjust(Some(empty), 0, 2);
        assert_eq!(owed.units, -2 * UNITS);
        assert!(matches!(L.take(Some(owed), 2_999, 1), Decision::Refused { retry_after_ms: 1, .. }));
        assert!(matches!(L.take(Some(owed), 3_000, 1), Decision::Allowed { remaining: 0, .. }));
        assert_eq!(L.peek(Some(owed), 0), (0, 5_000));
    }

    #[test]
    fn negative_level_roundtrips() {
        let s = State { units: -5 * UNITS, updated_ms: 7 };
        assert_eq!(State::decode(&s.encode()), Some(s));
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
