//! The quota stage: the buckets of `aigw_core::quota` kept in shared data (one key per scope
//! holding all of its buckets, updated with compare-and-swap, so every worker sees the same
//! numbers). On the listener
//! ([`QuotaCall`]) it charges the tenant, feature and model buckets, concurrency and budgets, refuses
//! what does not fit, and reconciles each call once what it costs is known; per attempt
//! ([`ProviderAttempt`]) it charges the provider's buckets.

use std::rc::Rc;

use super::{
    decode_estimate, encode_estimate, estimate, ms_to_period_end, past_soft, period_id, reserve, Billing, BucketKind,
    BudgetDecision, BudgetState, CallEnd, Estimate, Limits, Period, Quota, RequestFacts, Scope, ScopeKind, Settled,
};
use crate::audit::price::format_usd;
use crate::audit::{parse_attempts, ErrorClass};
use crate::error::GatewayError;
use crate::headers;
use crate::host::{messages_door, Flow, Host, SharedSetError};
use crate::quota::bucket::{retry_after_secs, Decision, Limit, State, UNITS_PER_TOKEN};
use crate::quota::fleet::{self, Ask, Unavailable};
use crate::text::{Put, PutBytes, Text};
use crate::wire::usage::{self, StreamScanner, Usage};

/// How often a worker retries after losing a compare-and-swap race before giving up.
const CAS_ATTEMPTS: usize = 64;
/// The largest non-streamed answer copied to read its usage; a larger one is charged its estimate.
const MAX_SCANNED_BODY: usize = 4 << 20;
const CHAT_PATH: &str = "/v1/chat/completions";
/// Serialises the creation of new bucket keys across workers (see `ensure_key`).
pub const CREATE_LOCK: &str = "aigw.q.create";

/// Creates the key-creation lock (once per worker, before any traffic: writing the same zero
/// twice is harmless); after that it only ever changes by compare-and-swap.
pub fn init_store(h: &impl Host) {
    if matches!(h.shared_get(CREATE_LOCK), Ok((None, _))) {
        let _ = h.shared_set(CREATE_LOCK, &0u64.to_le_bytes(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared data

enum CasStep<T> {
    Write(Vec<u8>, T),
    Refuse(T),
}

/// Makes sure `key` exists before it is updated by compare-and-swap.
///
/// Envoy's shared data cannot compare-and-swap a key that does not exist yet: two workers that
/// both find it missing would both write, and one update would be lost. So creating a key is
/// serialised through one lock key, itself only ever updated by compare-and-swap.
fn ensure_key(h: &impl Host, key: &str, initial: &[u8]) -> Option<()> {
    for _ in 0..CAS_ATTEMPTS {
        if h.shared_get(key).ok()?.0.is_some() {
            return Some(());
        }
        let (lock, cas) = h.shared_get(CREATE_LOCK).ok()?;
        if h.shared_get(key).ok()?.0.is_some() {
            return Some(());
        }
        let n = lock.as_deref().and_then(|b| b.get(..8)).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let next = n.unwrap_or(0).wrapping_add(1).to_le_bytes();
        match h.shared_set(CREATE_LOCK, &next, cas) {
            Ok(()) => return h.shared_set(key, initial, None).ok(),
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Reads `key`, lets `f` decide, and writes its answer back by compare-and-swap, retrying a
/// bounded number of times when another worker got there first. `None`: the store failed.
fn update<T>(h: &impl Host, key: &str, initial: &[u8], mut f: impl FnMut(&[u8]) -> CasStep<T>) -> Option<Result<T, T>> {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = h.shared_get(key).ok()?;
        let Some(bytes) = bytes else {
            ensure_key(h, key, initial)?;
            continue;
        };
        match f(&bytes) {
            CasStep::Refuse(t) => return Some(Err(t)),
            CasStep::Write(v, t) => match h.shared_set(key, &v, cas) {
                Ok(()) => return Some(Ok(t)),
                Err(SharedSetError::CasMismatch) => continue,
                Err(_) => return None,
            },
        }
    }
    None
}

/// A bucket never used is stored as this marker, so its first take finds it full.
const NEW_BUCKET: State = State { units: i64::MIN, updated_ms: 0 };

fn counter(bytes: &[u8]) -> u64 {
    bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Everything one scope's buckets hold, under one shared-data key (`aigw.q.<scope>`): the
/// request and token buckets, the calls in flight, and the day's and the month's budget. One
/// read and one compare-and-swap write charge or correct all of them together, and a refusal by
/// any of them writes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ScopeRecord {
    requests: Option<State>,
    tokens: Option<State>,
    in_flight: u64,
    day: BudgetState,
    month: BudgetState,
    /// Fleet mode: the calls-in-flight slots this replica holds (the fleet's limit shared), and
    /// how many calls took one (the ticker sees the scope busy by it).
    slots: u64,
    admits: u64,
    /// Fleet mode: the day and the month (period ids) in which the fleet's spend passed the
    /// budget's soft threshold, as Redis last said (0: not known to).
    soft_day: u64,
    soft_month: u64,
}

impl ScopeRecord {
    const LEN: usize = 16 + 16 + 8 + 24 + 24 + 8 + 8 + 16;

    /// A record that is short or damaged reads as a new one (full buckets, nothing spent).
    fn decode(b: &[u8]) -> ScopeRecord {
        let bucket = |at: usize| b.get(at..at + 16).and_then(State::decode).filter(|s| *s != NEW_BUCKET);
        let budget = |at: usize| b.get(at..at + 24).and_then(BudgetState::decode).unwrap_or_default();
        ScopeRecord {
            requests: bucket(0),
            tokens: bucket(16),
            in_flight: b.get(32..40).map(counter).unwrap_or(0),
            day: budget(40),
            month: budget(64),
            slots: b.get(88..96).map(counter).unwrap_or(0),
            admits: b.get(96..104).map(counter).unwrap_or(0),
            soft_day: b.get(104..112).map(counter).unwrap_or(0),
            soft_month: b.get(112..120).map(counter).unwrap_or(0),
        }
    }

    // (Fixed-size pieces, appended inline: each is a few stores, and a call writes the records
    // back eight times.)
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.extend_from_slice(&self.requests.unwrap_or(NEW_BUCKET).encode());
        out.extend_from_slice(&self.tokens.unwrap_or(NEW_BUCKET).encode());
        out.extend_from_slice(&self.in_flight.to_le_bytes());
        out.extend_from_slice(&self.day.encode());
        out.extend_from_slice(&self.month.encode());
        out.extend_from_slice(&self.slots.to_le_bytes());
        out.extend_from_slice(&self.admits.to_le_bytes());
        out.extend_from_slice(&self.soft_day.to_le_bytes());
        out.extend_from_slice(&self.soft_month.to_le_bytes());
        out
    }

    fn soft(&mut self, period: Period) -> &mut u64 {
        match period {
            Period::Day => &mut self.soft_day,
            Period::Month => &mut self.soft_month,
        }
    }

    fn budget(&mut self, period: Period) -> &mut BudgetState {
        match period {
            Period::Day => &mut self.day,
            Period::Month => &mut self.month,
        }
    }
}

/// A scope's record as stored (a missing or unreadable one reads as new).
fn read_record(h: &impl Host, key: &str) -> ScopeRecord {
    h.shared_get(key).ok().and_then(|(b, _)| b).map(|b| ScopeRecord::decode(&b)).unwrap_or_default()
}

fn scope_key(scope: &Scope) -> String {
    let mut k = String::with_capacity(7 + scope.key.len());
    k.put("aigw.q.");
    k.put(&scope.key);
    k
}

/// Reads a scope's record, lets `f` change it (`Ok`) or refuse (`Err`: nothing is written), and
/// writes it back by compare-and-swap. `None`: the store failed.
fn update_scope<T>(
    h: &impl Host,
    key: &str,
    mut f: impl FnMut(&mut ScopeRecord) -> Result<T, T>,
) -> Option<Result<T, T>> {
    update(h, key, &ScopeRecord::default().encode(), |bytes| {
        let mut rec = ScopeRecord::decode(bytes);
        match f(&mut rec) {
            Ok(t) => CasStep::Write(rec.encode(), t),
            Err(t) => CasStep::Refuse(t),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// What a call holds, so it can be corrected or given back

/// What a call took from one scope.
struct Charge {
    key: String,
    limits: Limits,
    /// Its request and token levels are a fleet lease (fleet mode): they never refill locally.
    fleet: bool,
    /// Tokens taken from the token bucket (when the scope has one).
    tokens: u64,
    /// The day and month (period ids) a budget reservation was made in, and its amount.
    day: Option<u64>,
    month: Option<u64>,
    reserved: u128,
}

impl Charge {
    fn reserved_budget(&self) -> bool {
        self.day.is_some() || self.month.is_some()
    }

    /// Corrects what was taken, in one write: a request given back (`refund_request`), the
    /// tokens moved by `token_delta`, the in-flight slot released, and the budget reservations
    /// replaced by `cost`.
    fn correct(&self, h: &impl Host, now: u64, refund_request: bool, token_delta: i64, cost: u128) {
        let l = self.limits;
        let requests = l.requests.filter(|_| refund_request);
        let tokens = l.tokens.filter(|_| token_delta != 0);
        if requests.is_none() && tokens.is_none() && l.concurrent.is_none() && !self.reserved_budget() {
            return;
        }
        let done = update_scope(h, &self.key, |rec| {
            if let Some(limit) = requests {
                rec.requests = Some(if self.fleet {
                    lease_adjust(rec.requests, now, -1)
                } else {
                    limit.adjust(rec.requests, now, -1)
                });
            }
            if let Some(limit) = tokens {
                rec.tokens = Some(if self.fleet {
                    lease_adjust(rec.tokens, now, token_delta)
                } else {
                    limit.adjust(rec.tokens, now, token_delta)
                });
            }
            if l.concurrent.is_some() {
                rec.in_flight = rec.in_flight.saturating_sub(1);
            }
            for (pid, state) in [(self.day, &mut rec.day), (self.month, &mut rec.month)] {
                let Some(pid) = pid else { continue };
                *state = if !self.fleet {
                    state.settled(pid, self.reserved, cost)
                } else if state.period == pid {
                    // A fleet lease: what the reservation did not use comes back to it (a call
                    // that cost more than its upper bound leaves it at zero).
                    BudgetState { period: pid, spent: (state.spent + self.reserved).saturating_sub(cost) }
                } else {
                    *state
                };
            }
            Ok(())
        });
        if done.is_none() {
            h.warn(&format!("quota: could not correct {}", self.key));
        }
    }
}

/// Gives back everything `charges` took (a later scope refused the call).
fn undo(h: &impl Host, charges: &[Charge], now: u64) {
    for c in charges.iter().rev() {
        c.correct(h, now, true, -i64::try_from(c.tokens).unwrap_or(i64::MAX), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Fleet mode: leases (see `quota::fleet`)

const UNITS: i64 = UNITS_PER_TOKEN as i64;

/// A lease's level in units (a bucket never used holds no lease).
fn lease(s: Option<State>) -> i64 {
    s.map_or(0, |s| s.units)
}

/// A lease charged `delta` more tokens (given back when negative); it may go into debt, which
/// the next lease pays.
fn lease_adjust(s: Option<State>, now: u64, delta: i64) -> State {
    State { units: lease(s).saturating_sub(delta.saturating_mul(UNITS)), updated_ms: now }
}

/// How the fleet's buckets serve a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FleetMode {
    /// No fleet mode: local buckets.
    Off,
    /// Leases from Redis.
    Lease,
    /// Redis cannot be reached: the configured mode.
    Unavailable(Unavailable),
}

/// A scope as it is charged while Redis cannot be reached: `local`, its request and token
/// limits divided among the expected replicas (buckets of its own); `open`, without them.
fn unavailable_scope(s: &Scope, mode: Unavailable, replicas: u64) -> Scope {
    let mut s = s.clone();
    match mode {
        Unavailable::Open => {
            s.limits.requests = None;
            s.limits.tokens = None;
            s.limits.budget = None;
            s.limits.concurrent = None;
        }
        _ => {
            let share = |l: Limit| Limit {
                rate_per_minute: (l.rate_per_minute / replicas).max(1),
                burst: (l.burst / replicas).max(1),
            };
            s.limits.requests = s.limits.requests.map(share);
            s.limits.tokens = s.limits.tokens.map(share);
            s.limits.concurrent = s.limits.concurrent.map(|c| (c / replicas).max(1));
            let r = u128::from(replicas);
            s.limits.budget = s.limits.budget.map(|b| super::Budget {
                daily: b.daily.map(|c| (c / r).max(1)),
                monthly: b.monthly.map(|c| (c / r).max(1)),
                ..b
            });
            s.key.put(".solo");
        }
    }
    s
}

/// Which of a scope's leases a fleet bucket backs: the request or token bucket, or the budget
/// of a day or a month (by period id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leased {
    Requests,
    Tokens,
    Budget(Period, u64),
    /// Calls-in-flight slots: what Redis answers is the holding itself, not an amount to add.
    Slots,
}

impl Leased {
    /// Adds `units` to this lease in `rec` (a budget lease of another period starts empty).
    fn credit(self, rec: &mut ScopeRecord, units: i64, now: u64) {
        match self {
            Leased::Requests => {
                rec.requests = Some(State { units: lease(rec.requests).saturating_add(units), updated_ms: now })
            }
            Leased::Tokens => {
                rec.tokens = Some(State { units: lease(rec.tokens).saturating_add(units), updated_ms: now })
            }
            Leased::Slots => rec.slots = u64::try_from(units.max(0)).unwrap_or(0),
            Leased::Budget(period, pid) => {
                let b = rec.budget(period);
                let left = b.spent_in(pid);
                *b = BudgetState { period: pid, spent: left.saturating_add(u128::try_from(units.max(0)).unwrap_or(0)) };
            }
        }
    }
}

/// Whether the lease of `which` in `rec` holds `need` units now.
fn lease_covers(rec: &mut ScopeRecord, which: Leased, need: u64) -> bool {
    let need_units = i64::try_from(need).unwrap_or(i64::MAX);
    match which {
        Leased::Requests => lease(rec.requests) >= need_units,
        Leased::Tokens => lease(rec.tokens) >= need_units,
        Leased::Budget(period, pid) => rec.budget(period).spent_in(pid) >= u128::from(need),
        // (Slots are asked for by their own function, never by `aigw_take`.)
        Leased::Slots => false,
    }
}

/// A top-up's asks for a scope's request and token leases (a call's or an attempt's), each with
/// the lease it backs and its entry in the ticker's active list. A short lease asks for the
/// whole need, which the grant alone covers (other calls may spend what the lease holds while
/// this one waits); a short or low one asks for a lease within this replica's share of the
/// burst.
fn rate_asks(f: &fleet::Fleet, s: &Scope, rec: &ScopeRecord, tokens: u64) -> Vec<(Ask, Leased, ticker::Active)> {
    let key = scope_key(s);
    let buckets = [
        (s.limits.requests, rec.requests, 1, f.lease_requests, 'r', Leased::Requests),
        (s.limits.tokens, rec.tokens, tokens, f.lease_tokens, 't', Leased::Tokens),
    ];
    let mut out = Vec::new();
    for (limit, state, cost, lease_tokens, tag, leased) in buckets {
        let Some(limit) = limit else { continue };
        let have = lease(state);
        let need = if have < i64::try_from(fleet::units(cost)).unwrap_or(i64::MAX) { fleet::units(cost) } else { 0 };
        let share = (limit.burst / f.expected_replicas).max(1);
        let want = fleet::units(lease_tokens.min(share)).max(need);
        if need == 0 && have >= i64::try_from(want / 4).unwrap_or(i64::MAX) {
            continue;
        }
        let ask = Ask {
            key: f.key(&s.key, tag),
            rate_per_minute: limit.rate_per_minute,
            cap_units: fleet::units(limit.burst),
            need_units: need,
            want_units: want,
            ttl_ms: 0,
        };
        let active = ticker::Active {
            record: key.own(),
            kind: if leased == Leased::Tokens { ticker::Kind::Tokens } else { ticker::Kind::Requests },
            redis_key: ask.key.own(),
            rate_per_minute: limit.rate_per_minute,
            burst: limit.burst,
        };
        out.push((ask, leased, active));
    }
    out
}

/// A top-up in flight: the call's HTTP call to Webdis, and what it asked for (per ask, its
/// scope's record key and which lease).
struct TopUp {
    token: u32,
    asks: Vec<Ask>,
    targets: Vec<(String, Leased)>,
    /// `aigw_slots` (calls in flight) rather than `aigw_take`.
    slots: bool,
}

/// Top-ups a call may make before it is refused as contended (a first call may need one for
/// its calls-in-flight slot and one for its other leases).
const MAX_TOP_UPS: u8 = 6;

/// The figures for one `x-ratelimit-*` family: the caller's tightest bucket of that kind.
#[derive(Clone, Copy)]
struct Tightest {
    limit: u64,
    remaining: u64,
    reset_ms: u64,
}

fn tighter(cur: Option<Tightest>, next: Tightest) -> Option<Tightest> {
    match cur {
        Some(c) if c.remaining <= next.remaining => Some(c),
        _ => Some(next),
    }
}

fn tighter_of(cur: Option<Tightest>, next: Option<Tightest>) -> Option<Tightest> {
    match next {
        Some(n) => tighter(cur, n),
        None => cur,
    }
}

/// What one scope's record gave a call: the figures of its request and token buckets, and the
/// budget period whose soft threshold it passed.
#[derive(Clone, Copy, Default)]
struct Took {
    requests: Option<Tightest>,
    tokens: Option<Tightest>,
    soft: Option<Period>,
}

/// What one scope's record decided (`None`: nothing refused).
enum Refusal {
    None(Took),
    /// A fleet lease is short: the call waits for a top-up.
    Short,
    Rate(BucketKind, Limit, u64, Took),
    Concurrent(u64, Took),
    Budget(Period, u128, u128, Took),
}

fn rate_headers(requests: Option<Tightest>, tokens: Option<Tightest>) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    for (t, [limit, remaining, reset]) in [
        (requests, ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]),
        (tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
    ] {
        if let Some(t) = t {
            h.push((limit, headers::decimal(t.limit)));
            h.push((remaining, headers::decimal(t.remaining)));
            // A call that can never fit has no reset time: the header is left out.
            if t.reset_ms != u64::MAX {
                let mut secs = headers::decimal(retry_after_secs(t.reset_ms));
                secs.push('s');
                h.push((reset, secs));
            }
        }
    }
    h
}

fn refuse(h: &impl Host, err: &GatewayError, extra: &[(&str, String)]) -> Flow {
    h.set_property(headers::PROP_REFUSAL, "quota");
    let hdrs: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.send_error(err, messages_door(h), &hdrs);
    Flow::Refused
}

fn fleet_unavailable() -> GatewayError {
    GatewayError::new(
        503,
        "server_error",
        "quota_unavailable",
        "The fleet's quota store cannot be reached; retry shortly.",
    )
}

fn store_busy() -> GatewayError {
    GatewayError::new(429, "rate_limit_exceeded", "quota_unavailable", "The quota store is busy; retry shortly.")
}

// ---------------------------------------------------------------------------------------------
// Listener: tenant, feature and model buckets

enum Seen {
    None,
    Json(Vec<u8>),
    Sse(Box<StreamScanner<false>>),
}

pub struct QuotaCall {
    quota: Rc<Quota>,
    /// Waiting for the request body to estimate the call.
    reading: bool,
    admitted: bool,
    estimate: Estimate,
    candidates: Vec<String>,
    charges: Vec<Charge>,
    requests: Option<Tightest>,
    tokens: Option<Tightest>,
    budget_warning: Option<String>,
    answered: bool,
    /// The status the caller got (`None`: the caller left before any answer).
    status: Option<u16>,
    ok: bool,
    served_model: Option<String>,
    body: Seen,
    /// Fleet mode: a top-up the call waits for, and how many it made; what its last one
    /// granted (per scope record and bucket), until the admission merges it into the leases.
    top_up: Option<TopUp>,
    top_ups: u8,
    grants: Vec<(String, Leased, i64)>,
    /// What its last top-up said the fleet has spent of each budget it leased from (scope
    /// record, period and period id, pico-USD spent or held in leases).
    fleet_spent: Vec<(String, Period, u64, u128)>,
    /// Its last calls-in-flight ask: what it asked per scope, and the scopes Redis capped.
    slot_wants: Vec<u64>,
    slots_capped: Vec<String>,
}

impl QuotaCall {
    pub fn new(quota: Rc<Quota>) -> QuotaCall {
        QuotaCall {
            quota,
            reading: false,
            admitted: false,
            estimate: Estimate::default(),
            candidates: Vec::new(),
            charges: Vec::new(),
            requests: None,
            tokens: None,
            budget_warning: None,
            answered: false,
            status: None,
            ok: false,
            served_model: None,
            body: Seen::None,
            top_up: None,
            top_ups: 0,
            grants: Vec::new(),
            fleet_spent: Vec::new(),
            slot_wants: Vec::new(),
            slots_capped: Vec::new(),
        }
    }

    /// Charges the call to every bucket and budget of its scopes, or refuses it having charged
    /// nothing.
    fn admit(&mut self, h: &impl Host) -> Flow {
        let flow = self.admit_scopes(h);
        // Grants the admission did not merge (a scope refused first, or the call waits again)
        // go into the leases: what Redis granted is never lost.
        let now = h.now_ms();
        for (key, leased, g) in std::mem::take(&mut self.grants).into_iter().filter(|(_, _, g)| *g > 0) {
            let credited = update_scope(h, &key, |rec| {
                leased.credit(rec, g, now);
                Ok(())
            });
            if credited.is_none() {
                h.warn(&format!("quota: a fleet lease for {key} could not be stored"));
            }
        }
        flow
    }

    fn admit_scopes(&mut self, h: &impl Host) -> Flow {
        let id = h.call_identity();
        let tenant = id.as_ref().map(|i| i.tenant.own()).unwrap_or_else(|| "_anonymous".own());
        let feature = id.as_ref().and_then(|i| i.feature.clone());
        let alias = self.estimate.model.clone().or_else(|| h.property_string(&[headers::PROP_ALIAS]));
        let scopes = self.quota.scopes(&tenant, feature.as_deref(), alias.as_deref());
        let now = h.now_ms();
        let tokens = self.estimate.tokens();
        // For the per-attempt provider buckets, and for audit-emit to settle a call that
        // reports no usage.
        h.set_property(headers::PROP_QUOTA_ESTIMATE, &encode_estimate(&self.estimate));
        // Fleet mode spends its leases with no read of whether Redis is down: that is asked
        // only when a lease is short (then the call is served in the unavailable mode).
        let mode = if self.quota.fleet.is_some() { FleetMode::Lease } else { FleetMode::Off };
        self.admit_in(h, &scopes, now, tokens, mode)
    }

    fn admit_in(&mut self, h: &impl Host, scopes: &[Scope], now: u64, tokens: u64, mode: FleetMode) -> Flow {
        let mut cost: Option<u128> = None;
        let fleet_flag = match mode {
            FleetMode::Unavailable(m) => Some(format!("fleet_unavailable:{}", m.as_str())),
            _ => None,
        };
        if let (Some(flag), FleetMode::Unavailable(m)) = (&fleet_flag, mode) {
            h.set_property(headers::PROP_QUOTA_FLAGS, flag);
            h.counter_add(&format!("aigw_fleet_unavailable_total.mode.{}", m.as_str()), 1);
        }
        if let (FleetMode::Unavailable(m), Some(f)) = (mode, &self.quota.fleet) {
            if m == Unavailable::Closed {
                let secs = crate::headers::decimal(retry_after_secs(f.retry_ms));
                return refuse(h, &fleet_unavailable(), &[("retry-after", secs)]);
            }
        }
        for scope in scopes {
            let (charged, fleet) = match (mode, &self.quota.fleet) {
                (FleetMode::Unavailable(m), Some(f)) => (unavailable_scope(scope, m, f.expected_replicas), false),
                (m, _) => (scope.clone(), m == FleetMode::Lease),
            };
            match self.charge_scope(h, &charged, now, tokens, &mut cost, fleet) {
                Ok(()) => {}
                Err(stop) => {
                    undo(h, &self.charges, now);
                    self.charges.clear();
                    return match (stop, fleet_mode(&self.quota, h, now)) {
                        (Some(action), _) => action,
                        (None, FleetMode::Unavailable(m)) => {
                            self.admit_in(h, scopes, now, tokens, FleetMode::Unavailable(m))
                        }
                        (None, _) => self.start_top_up(h, scopes, tokens, now),
                    };
                }
            }
        }
        self.admitted = true;
        if self.budget_warning.is_some() {
            let flags = match &fleet_flag {
                Some(f) => format!("{f},budget_soft_limit"),
                None => "budget_soft_limit".own(),
            };
            h.set_property(headers::PROP_QUOTA_FLAGS, &flags);
        }
        Flow::Continue
    }

    fn charge_scope(
        &mut self,
        h: &impl Host,
        s: &Scope,
        now: u64,
        tokens: u64,
        cost: &mut Option<u128>,
        fleet: bool,
    ) -> Result<(), Option<Flow>> {
        let l = s.limits;
        let reserve_cost = l.budget.map(|_| {
            *cost.get_or_insert_with(|| {
                let cands: Vec<&str> = self.candidates.iter().map(String::as_str).collect();
                self.quota.upper_bound_cost(&self.estimate, &cands).unwrap_or(0)
            })
        });
        let (day, month) = (period_id(Period::Day, now), period_id(Period::Month, now));
        let key = scope_key(s);
        // This call's grants for the scope's request and token leases (fleet mode).
        let grant = |which: Leased| {
            self.grants.iter().filter(|(k, l, _)| *k == key && *l == which).map(|(_, _, g)| *g).sum::<i64>()
        };
        let granted = if fleet { (grant(Leased::Requests), grant(Leased::Tokens)) } else { (0, 0) };
        let capped = self.slots_capped.contains(&key);
        let granted_slots = match self.grants.iter().find(|(k, l, _)| *k == key && *l == Leased::Slots) {
            Some((_, _, g)) if fleet => (true, u64::try_from(*g).unwrap_or(0)),
            _ => (false, 0),
        };
        let granted_budget = |period: Period, pid: u64| {
            u128::try_from(if fleet { grant(Leased::Budget(period, pid)) } else { 0 }).unwrap_or(0)
        };
        let fleet_spent = |period: Period, pid: u64| {
            self.fleet_spent.iter().find(|(k, p, id, _)| *k == key && *p == period && *id == pid).map(|f| f.3)
        };
        let outcome = update_scope(h, &key, |rec| {
            let mut took = Took::default();
            if fleet {
                // The lease left (and this call's grant), spent exactly; short: the call waits
                // for a top-up.
                let need = i64::try_from(tokens).unwrap_or(i64::MAX).saturating_mul(UNITS);
                let remaining = |u: i64| u64::try_from(u.max(0) / UNITS).unwrap_or(0);
                if let Some(limit) = l.requests {
                    let have = lease(rec.requests).saturating_add(granted.0);
                    if have < UNITS {
                        return Err(Refusal::Short);
                    }
                    rec.requests = Some(State { units: have - UNITS, updated_ms: now });
                    took.requests =
                        Some(Tightest { limit: limit.burst, remaining: remaining(have - UNITS), reset_ms: 0 });
                }
                if let Some(limit) = l.tokens {
                    let have = lease(rec.tokens).saturating_add(granted.1);
                    if have < need {
                        return Err(Refusal::Short);
                    }
                    rec.tokens = Some(State { units: have - need, updated_ms: now });
                    took.tokens = Some(Tightest { limit: limit.burst, remaining: remaining(have - need), reset_ms: 0 });
                }
            }
            if let Some(limit) = l.requests.filter(|_| !fleet) {
                match limit.take(rec.requests, now, 1) {
                    Decision::Allowed { state, remaining, reset_ms } => {
                        rec.requests = Some(state);
                        took.requests = Some(Tightest { limit: limit.burst, remaining, reset_ms });
                    }
                    Decision::Refused { retry_after_ms, .. } => {
                        let t = Tightest { limit: limit.burst, remaining: 0, reset_ms: retry_after_ms };
                        return Err(Refusal::Rate(
                            BucketKind::Requests,
                            limit,
                            retry_after_ms,
                            Took { requests: Some(t), ..took },
                        ));
                    }
                }
            }
            if let Some(limit) = l.tokens.filter(|_| !fleet) {
                match limit.take(rec.tokens, now, tokens) {
                    Decision::Allowed { state, remaining, reset_ms } => {
                        rec.tokens = Some(state);
                        took.tokens = Some(Tightest { limit: limit.burst, remaining, reset_ms });
                    }
                    Decision::Refused { state, retry_after_ms } => {
                        let (remaining, _) = limit.peek(Some(state), now);
                        let t = Tightest { limit: limit.burst, remaining, reset_ms: retry_after_ms };
                        return Err(Refusal::Rate(
                            BucketKind::Tokens,
                            limit,
                            retry_after_ms,
                            Took { tokens: Some(t), ..took },
                        ));
                    }
                }
            }
            if let Some(max) = l.concurrent {
                if fleet {
                    // The slots this replica holds of the fleet's limit (and this call's answer).
                    let held = if granted_slots.0 { granted_slots.1 } else { rec.slots };
                    rec.slots = held;
                    if rec.in_flight >= held {
                        if granted_slots.0 && capped {
                            // Redis had no slot to spare: the fleet is full.
                            return Err(Refusal::Concurrent(max, took));
                        }
                        // Other calls here took them: ask again.
                        return Err(Refusal::Short);
                    }
                    rec.admits = rec.admits.wrapping_add(1);
                } else if rec.in_flight >= max {
                    return Err(Refusal::Concurrent(max, took));
                }
                rec.in_flight += 1;
            }
            if let (Some(b), Some(c)) = (l.budget, reserve_cost) {
                for (period, cap, pid) in [(Period::Day, b.daily, day), (Period::Month, b.monthly, month)] {
                    let Some(cap) = cap else { continue };
                    let state = rec.budget(period);
                    if fleet {
                        // The period's lease left (and this call's grant), spent exactly.
                        let left = state.spent_in(pid).saturating_add(granted_budget(period, pid));
                        if left < c {
                            return Err(Refusal::Short);
                        }
                        *state = BudgetState { period: pid, spent: left - c };
                        // Past the soft threshold, fleet-wide, as the last top-up said.
                        if fleet_spent(period, pid).is_some_and(|spent| past_soft(spent, cap, b.soft_percent)) {
                            *rec.soft(period) = pid;
                        }
                        if *rec.soft(period) == pid && took.soft.is_none() {
                            took.soft = Some(period);
                        }
                        continue;
                    }
                    let before = state.spent_in(pid);
                    match reserve(before, c, cap, b.soft_percent) {
                        BudgetDecision::Reserved { spent, soft } => {
                            *state = BudgetState { period: pid, spent };
                            if soft && took.soft.is_none() {
                                took.soft = Some(period);
                            }
                        }
                        BudgetDecision::Refused => return Err(Refusal::Budget(period, cap, before, took)),
                    }
                }
            }
            Ok(Refusal::None(took))
        });
        let took = match outcome {
            Some(Ok(Refusal::None(took))) => took,
            Some(Ok(_)) => return Ok(()),
            None => return Err(Some(refuse(h, &store_busy(), &[("retry-after", "1".own())]))),
            Some(Err(Refusal::Short)) => return Err(None),
            Some(Err(refusal)) => return Err(Some(self.refuse_scope(h, s, now, reserve_cost.unwrap_or(0), refusal))),
        };
        self.requests = tighter_of(self.requests, took.requests);
        self.tokens = tighter_of(self.tokens, took.tokens);
        // The scope's record now holds this call's grants.
        self.grants.retain(|(k, _, _)| *k != key);
        let budget = l.budget.filter(|_| reserve_cost.is_some());
        self.charges.push(Charge {
            key,
            limits: l,
            fleet,
            tokens: if l.tokens.is_some() { tokens } else { 0 },
            day: budget.and_then(|b| b.daily).map(|_| day),
            month: budget.and_then(|b| b.monthly).map(|_| month),
            reserved: reserve_cost.unwrap_or(0),
        });
        if let (Some(period), Some(b), None) = (took.soft, l.budget, &self.budget_warning) {
            self.budget_warning = Some(format!(
                "{} {} budget is {}% used or more",
                {
                    let d = s.kind.describe();
                    d.strip_prefix("this ").or_else(|| d.strip_prefix("the ")).unwrap_or(d)
                },
                period_name(period),
                b.soft_percent
            ));
        }
        Ok(())
    }

    /// A lease is short: asks Redis, in one call, for what the call needs from each of its fleet
    /// buckets plus a new lease for each bucket that is short or low, and waits for the answer.
    fn start_top_up(&mut self, h: &impl Host, scopes: &[Scope], tokens: u64, now: u64) -> Flow {
        let Some(f) = self.quota.fleet.clone() else { return Flow::Continue };
        if self.top_ups >= MAX_TOP_UPS {
            // Other calls on this replica took every lease this call waited for: when they are
            // calls-in-flight slots, the fleet is full; otherwise, contended.
            for s in scopes {
                let Some(max) = s.limits.concurrent else { continue };
                let rec = read_record(h, &scope_key(s));
                if rec.in_flight >= rec.slots {
                    return self.refuse_scope(h, s, now, 0, Refusal::Concurrent(max, Took::default()));
                }
            }
            return refuse(h, &store_busy(), &[("retry-after", "1".own())]);
        }
        self.top_ups += 1;
        let mut asks = Vec::new();
        let mut targets = Vec::new();
        let mut active = Vec::new();
        let (day, month) = (period_id(Period::Day, now), period_id(Period::Month, now));
        // Calls in flight first (their own function): a scope whose slots are all in use asks
        // Redis to hold one more than it has in flight, and a few to spare.
        let mut short_slots = Vec::new();
        for s in scopes {
            let Some(max) = s.limits.concurrent else { continue };
            let rec = read_record(h, &scope_key(s));
            if rec.in_flight >= rec.slots {
                // This replica's share of the limit at once (a burst of calls is served in one
                // round), or beyond it only what it needs now.
                let need = rec.in_flight + 1 + f.lease_slots;
                short_slots.push((s, max, (max / f.expected_replicas).max(need)));
            }
        }
        if !short_slots.is_empty() {
            let replica = ticker::replica_id(h);
            let mut path = format!("/FCALL/aigw_slots/{}", short_slots.len());
            for (s, _, _) in &short_slots {
                path.push('/');
                path.put(&fleet::encode(&f.key(&s.key, 'f')));
            }
            path.put(&format!("/{replica}/{}/grow", f.slots_ttl_ms()));
            for (_, max, want) in &short_slots {
                path.put(&format!("/{want}/{max}"));
            }
            let active: Vec<ticker::Active> = short_slots
                .iter()
                .map(|(s, max, _)| ticker::Active {
                    record: scope_key(s),
                    kind: ticker::Kind::Slots,
                    redis_key: f.key(&s.key, 'f'),
                    rate_per_minute: 0,
                    burst: *max,
                })
                .collect();
            ticker::mark_active(h, &active);
            let targets = short_slots.iter().map(|(s, _, _)| (scope_key(s), Leased::Slots)).collect();
            self.slot_wants = short_slots.iter().map(|(_, _, want)| *want).collect();
            return self.send_top_up(h, &f, &path, Vec::new(), targets, true, now);
        }
        let mut cost: Option<u128> = None;
        for s in scopes {
            let rec = read_record(h, &scope_key(s));
            for (ask, leased, act) in rate_asks(&f, s, &rec, tokens) {
                asks.push(ask);
                targets.push((scope_key(s), leased));
                active.push(act);
            }
            // Budgets: a lease of the period's budget, in pico-USD (called for by the call; the
            // ticker does not top budgets up).
            let Some(b) = s.limits.budget else { continue };
            let c = *cost.get_or_insert_with(|| {
                let cands: Vec<&str> = self.candidates.iter().map(String::as_str).collect();
                self.quota.upper_bound_cost(&self.estimate, &cands).unwrap_or(0)
            });
            let c = u64::try_from(c).unwrap_or(u64::MAX);
            for (period, cap, pid, tag) in [(Period::Day, b.daily, day, 'd'), (Period::Month, b.monthly, month, 'm')] {
                // (A budget beyond u64 pico-USD, USD 18 million, is taken as that much.)
                let Some(cap) = cap.map(|c| u64::try_from(c).unwrap_or(u64::MAX)) else { continue };
                let state = if period == Period::Day { rec.day } else { rec.month };
                let have = u64::try_from(state.spent_in(pid)).unwrap_or(u64::MAX);
                if have >= c {
                    continue;
                }
                let want = f.lease_pico.min((cap / f.expected_replicas).max(1)).max(c);
                asks.push(Ask {
                    key: format!("{}{tag}{pid}", f.key(&s.key, 'b')),
                    rate_per_minute: 0,
                    cap_units: cap,
                    need_units: c,
                    want_units: want,
                    ttl_ms: ms_to_period_end(period, now).saturating_add(86_400_000),
                });
                targets.push((scope_key(s), Leased::Budget(period, pid)));
            }
        }
        if asks.is_empty() {
            // Another call topped the leases up meanwhile.
            return self.admit(h);
        }
        // From now on the ticker keeps these leases topped up ahead of need.
        if !active.is_empty() {
            ticker::mark_active(h, &active);
        }
        let path = fleet::take_path(&asks);
        self.send_top_up(h, &f, &path, asks, targets, false, now)
    }

    /// Sends a top-up (`path`, to Webdis) and pauses the call until it is answered.
    #[allow(clippy::too_many_arguments)]
    fn send_top_up(
        &mut self,
        h: &impl Host,
        f: &fleet::Fleet,
        path: &str,
        asks: Vec<Ask>,
        targets: Vec<(String, Leased)>,
        slots: bool,
        now: u64,
    ) -> Flow {
        h.counter_add("aigw_fleet_top_ups_total.by.call", 1);
        match f.call(h, path) {
            Some(token) => {
                self.top_up = Some(TopUp { token, asks, targets, slots });
                Flow::Pause
            }
            None => {
                fleet_down(h, f, now, "the call to Webdis could not be made");
                self.admit(h)
            }
        }
    }

    /// Whether the call waits for a top-up.
    pub fn waits(&self) -> bool {
        self.top_up.is_some()
    }

    /// The answer to a top-up: the grants are added to the leases and the call is admitted (or
    /// tops up again, or is refused). `None`: not this call's top-up.
    pub fn on_http_call_response(
        &mut self,
        h: &impl Host,
        token: u32,
        answer: &crate::host::HttpAnswer,
    ) -> Option<Flow> {
        if self.top_up.as_ref().is_none_or(|t| t.token != token) {
            return None;
        }
        let t = self.top_up.take()?;
        let f = self.quota.fleet.clone()?;
        let now = h.now_ms();
        if t.slots {
            return Some(match fleet::read_slots(answer.status, &answer.body, t.targets.len()) {
                Some(held) => {
                    // A holding less than asked: Redis capped it (the fleet is full for now).
                    let wants = std::mem::take(&mut self.slot_wants);
                    self.slots_capped = t
                        .targets
                        .iter()
                        .zip(held.iter().zip(wants))
                        .filter(|(_, (held, want))| **held < *want)
                        .map(|((key, _), _)| key.own())
                        .collect();
                    self.grants = t
                        .targets
                        .into_iter()
                        .zip(held)
                        .map(|((key, leased), n)| (key, leased, i64::try_from(n).unwrap_or(i64::MAX)))
                        .collect();
                    self.admit(h)
                }
                None => {
                    let why = format!("Webdis answered {}", answer.status);
                    fleet_down(h, &f, now, &why);
                    self.admit(h)
                }
            });
        }
        match fleet::read_answer(answer.status, &answer.body, t.asks.len()) {
            Some(fleet::Answer::Granted(granted, left)) => {
                // A budget's soft threshold is the fleet's: what Redis no longer holds is spent
                // or held in some replica's lease.
                self.fleet_spent = t
                    .targets
                    .iter()
                    .zip(t.asks.iter().zip(left))
                    // (Redis says at most 2^53: beyond, what is left is not known exactly.)
                    .filter(|(_, (_, left))| *left < 1 << 53)
                    .filter_map(|((key, leased), (ask, left))| match leased {
                        Leased::Budget(period, pid) => {
                            Some((key.own(), *period, *pid, u128::from(ask.cap_units.saturating_sub(left))))
                        }
                        _ => None,
                    })
                    .collect();
                // Merged into the leases by the admission itself, in the same write that charges
                // the call: no other call can spend this call's grant in between.
                self.grants = t
                    .targets
                    .into_iter()
                    .zip(granted)
                    .map(|((key, leased), g)| (key, leased, i64::try_from(g).unwrap_or(i64::MAX)))
                    .collect();
                Some(self.admit(h))
            }
            Some(fleet::Answer::Short { index, retry_after_ms, level }) => {
                let (Some((key, leased)), Some(ask)) = (t.targets.get(index).cloned(), t.asks.get(index)) else {
                    return Some(refuse(h, &store_busy(), &[("retry-after", "1".own())]));
                };
                // While this call's ask was in flight, the ticker (or a call on another worker)
                // may have taken what Redis had left into this replica's lease: when the lease
                // now holds what this call lacked, the call is served from it, not refused.
                if lease_covers(&mut read_record(h, &key), leased, ask.need_units) {
                    return Some(self.admit(h));
                }
                let id = h.call_identity();
                let tenant = id.as_ref().map(|i| i.tenant.own()).unwrap_or_else(|| "_anonymous".own());
                let feature = id.as_ref().and_then(|i| i.feature.clone());
                let alias = self.estimate.model.clone().or_else(|| h.property_string(&[headers::PROP_ALIAS]));
                let scope = self
                    .quota
                    .scopes(&tenant, feature.as_deref(), alias.as_deref())
                    .into_iter()
                    .find(|s| scope_key(s) == key);
                let Some(s) = scope else {
                    return Some(refuse(h, &store_busy(), &[("retry-after", "1".own())]));
                };
                let burst = ask.cap_units / UNITS_PER_TOKEN;
                let refusal = match leased {
                    Leased::Budget(period, _) => {
                        // The fleet's budget: spent or reserved is all but what Redis holds.
                        let cap = u128::from(ask.cap_units);
                        Refusal::Budget(period, cap, cap.saturating_sub(u128::from(level)), Took::default())
                    }
                    // Slots are asked for by their own function, never by `aigw_take`.
                    Leased::Requests | Leased::Tokens | Leased::Slots => {
                        let limit = Limit { rate_per_minute: ask.rate_per_minute, burst };
                        let kind = if leased == Leased::Tokens { BucketKind::Tokens } else { BucketKind::Requests };
                        let retry = retry_after_ms.unwrap_or(u64::MAX);
                        let fig = Tightest { limit: burst, remaining: level / UNITS_PER_TOKEN, reset_ms: retry };
                        let took = if leased == Leased::Tokens {
                            Took { tokens: Some(fig), ..Took::default() }
                        } else {
                            Took { requests: Some(fig), ..Took::default() }
                        };
                        Refusal::Rate(kind, limit, retry, took)
                    }
                };
                Some(self.refuse_scope(h, &s, now, u128::from(ask.need_units), refusal))
            }
            None => {
                let why = format!("Webdis answered {}", answer.status);
                fleet_down(h, &f, now, &why);
                Some(self.admit(h))
            }
        }
    }

    /// Refuses the call for what one scope's record refused (nothing of that scope was taken).
    fn refuse_scope(&self, h: &impl Host, s: &Scope, now: u64, cost: u128, refusal: Refusal) -> Flow {
        match refusal {
            Refusal::None(_) | Refusal::Short => Flow::Continue,
            Refusal::Rate(kind, limit, retry_after_ms, took) => {
                let (requests, tokens) = match kind {
                    BucketKind::Tokens => (tighter_of(self.requests, took.requests), took.tokens),
                    _ => (took.requests, None),
                };
                self.refuse_rate(h, s, kind, limit, retry_after_ms, requests, tokens)
            }
            Refusal::Concurrent(max, took) => {
                let err = GatewayError::new(
                    429,
                    "rate_limit_exceeded",
                    s.kind.code(BucketKind::Concurrent),
                    format!(
                        "Too many calls in flight for {}: at most {max} at once. Retry when one has finished.",
                        s.kind.describe()
                    ),
                );
                let mut hdrs =
                    rate_headers(tighter_of(self.requests, took.requests), tighter_of(self.tokens, took.tokens));
                hdrs.push(("retry-after", "1".own()));
                refuse(h, &err, &hdrs)
            }
            Refusal::Budget(period, cap, before, took) => {
                let err = GatewayError::new(
                    402,
                    "budget_exceeded",
                    s.kind.budget_code(period),
                    format!(
                        "The {} budget of {} is USD {} ({} USD spent or reserved). This call could cost up to \
                         USD {}, so it was not sent. The budget renews in {} s (UTC {}).",
                        period_name(period),
                        s.kind.describe(),
                        format_usd(cap),
                        format_usd(before),
                        format_usd(cost),
                        retry_after_secs(ms_to_period_end(period, now)),
                        if period == Period::Day { "midnight" } else { "start of next month" }
                    ),
                );
                let hdrs = rate_headers(tighter_of(self.requests, took.requests), tighter_of(self.tokens, took.tokens));
                refuse(h, &err, &hdrs)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn refuse_rate(
        &self,
        h: &impl Host,
        s: &Scope,
        kind: BucketKind,
        limit: Limit,
        retry_after_ms: u64,
        requests: Option<Tightest>,
        tokens: Option<Tightest>,
    ) -> Flow {
        let what = if kind == BucketKind::Tokens { "tokens" } else { "requests" };
        let message = if retry_after_ms == u64::MAX {
            format!(
                "This call needs more {what} than {} may ever use at once (burst {}). Lower `max_tokens` or the prompt size.",
                s.kind.describe(),
                limit.burst
            )
        } else {
            format!(
                "Rate limit reached for {}: {} {what} per minute (burst {}). Retry after {} s.",
                s.kind.describe(),
                limit.rate_per_minute,
                limit.burst,
                retry_after_secs(retry_after_ms)
            )
        };
        let err = GatewayError::new(429, "rate_limit_exceeded", s.kind.code(kind), message);
        let mut hdrs = rate_headers(requests.or(self.requests), tokens.or(self.tokens));
        if retry_after_ms != u64::MAX {
            hdrs.push(("retry-after", crate::headers::decimal(retry_after_secs(retry_after_ms))));
        }
        refuse(h, &err, &hdrs)
    }

    /// What the call is charged (`None`: nothing), by the rule in `quota::Billing`: as
    /// audit-emit settled it when it runs (so the audit record and the budget agree), else from
    /// what this filter saw of the answer.
    fn charged(&self, h: &impl Host, attempted: bool) -> (Option<Usage>, Option<u128>) {
        if let Some(s) = h.property_string(&[headers::PROP_SETTLED]).and_then(|s| Settled::decode(&s)) {
            return (s.usage, s.cost_pico);
        }
        let (usage, stream, unreadable) = match &self.body {
            Seen::Sse(s) => (s.usage, Some((s.content_events, s.saw_end && !s.saw_error)), false),
            Seen::Json(b) if self.ok => match usage::from_openai_body(b) {
                Ok(u) => (u, None, false),
                Err(_) => (None, None, true),
            },
            _ => (None, None, false),
        };
        let end = CallEnd { usage, status: self.status, unreadable, stream, attempted };
        (Billing::of(&end).charged(&self.estimate).map(|(u, _)| u), None)
    }

    fn cost_of(&self, u: &Usage) -> u128 {
        let Some(book) = self.quota.prices.as_ref() else { return 0 };
        let model = self.served_model.clone().or_else(|| match &self.body {
            Seen::Json(b) => served_model_in(b),
            _ => None,
        });
        if let Some(c) = model.as_deref().and_then(|m| book.cost_pico(m, u)) {
            return c;
        }
        // The serving model is unknown or unpriced: charge as its dearest candidate.
        let est = Estimate { prompt_tokens: u.input, output_tokens: u.output, model: None };
        let cands: Vec<&str> = self.candidates.iter().map(String::as_str).collect();
        self.quota.upper_bound_cost(&est, &cands).unwrap_or(0)
    }
}

/// The models the call may be served by: the chain's (from route-select), else the one named.
fn candidates(h: &impl Host, est: &Estimate) -> Vec<String> {
    match h.property_string(&[headers::PROP_CANDIDATES]) {
        Some(list) => list.list(),
        None => est.model.iter().cloned().collect(),
    }
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Day => "daily",
        Period::Month => "monthly",
    }
}

fn served_model_in(body: &[u8]) -> Option<String> {
    struct M {
        model: Option<String>,
    }
    crate::wire::object::from_object!(M {
        model: "model" [],
    });
    crate::wire::from_slice::<M>(body).ok()?.model
}

impl QuotaCall {
    /// Charges the call to the request buckets only (a call answered from the cache, whose
    /// policy charges its requests): nothing to estimate, so no token or budget is taken.
    pub fn admit_requests_only(&mut self, h: &impl Host) -> Flow {
        self.estimate = Estimate::default();
        self.candidates = Vec::new();
        self.admit(h)
    }

    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if let Some(facts) = h.property_string(&[headers::PROP_REQUEST]).and_then(|f| RequestFacts::decode(&f)) {
            // route-select already read the body: no need to hold the call or read it again.
            self.estimate = facts.estimate(&self.quota.estimate);
            self.candidates = candidates(h, &self.estimate);
            return self.admit(h);
        }
        let path = h.request_header(":path").unwrap_or_default();
        if !eos && path.before(b'?') == CHAT_PATH {
            // The estimate needs the body: hold the headers until it is here.
            self.reading = true;
            return Flow::Pause;
        }
        self.admit(h)
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        if self.top_up.is_some() {
            return Flow::Pause;
        }
        if !self.reading {
            return Flow::Continue;
        }
        if !eos {
            return Flow::Pause;
        }
        self.reading = false;
        // A body that is not JSON is estimated as nothing; route-select (or the provider)
        // refuses it with a clear 400.
        self.estimate = estimate(&h.request_body(size), &self.quota.estimate).unwrap_or_default();
        self.candidates = candidates(h, &self.estimate);
        self.admit(h)
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        let status: u16 = h.response_header(":status").and_then(|s| s.int_as()).unwrap_or(0);
        self.answered = true;
        self.status = Some(status);
        self.ok = (200..300).contains(&status);
        self.served_model = h.response_header(headers::MODEL);
        if !self.admitted {
            // Our own refusal, which carries the figures of the bucket that refused.
            return Flow::Continue;
        }
        for (k, v) in rate_headers(self.requests, self.tokens) {
            h.set_response_header(k, Some(&v));
        }
        if let Some(w) = &self.budget_warning {
            h.set_response_header("x-aigw-budget-warning", Some(w));
        }
        if !eos {
            let ct = h.response_header("content-type").unwrap_or_default();
            if ct.starts_with("text/event-stream") {
                self.body = Seen::Sse(Box::default());
            } else if ct.starts_with("application/json") && self.ok {
                self.body = Seen::Json(Vec::new());
            }
        }
        Flow::Continue
    }

    pub fn on_response_body(&mut self, h: &impl Host, size: usize) -> Flow {
        match &mut self.body {
            Seen::None => {}
            Seen::Sse(s) => s.push(&h.response_body(size)),
            Seen::Json(b) => {
                if b.len() + size > MAX_SCANNED_BODY {
                    self.body = Seen::None;
                } else if size > 0 {
                    // Each call sees only the chunk that has not yet been passed on.
                    b.put(&h.response_body(size));
                }
            }
        }
        Flow::Continue
    }

    pub fn on_log(&mut self, h: &impl Host) {
        if !self.admitted {
            return;
        }
        let now = h.now_ms();
        let providers: Vec<String> =
            h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).map(|s| s.list()).unwrap_or_default();
        let attempted = !providers.is_empty()
            || h.property(&[headers::PROP_ATTEMPTS]).is_some()
            || h.property(&["upstream", "address"]).is_some();
        let (charged, settled_cost) = self.charged(h, attempted);
        let used = charged.unwrap_or_default();
        let actual = used.input.saturating_add(used.output);
        let mut cost: Option<u128> = settled_cost.or(if charged.is_none() { Some(0) } else { None });
        let actual = i64::try_from(actual).unwrap_or(i64::MAX);
        for c in std::mem::take(&mut self.charges) {
            let delta = actual - i64::try_from(c.tokens).unwrap_or(i64::MAX);
            let spent = if c.reserved_budget() { *cost.get_or_insert_with(|| self.cost_of(&used)) } else { 0 };
            c.correct(h, now, false, delta, spent);
        }
        // Providers: the one that answered is charged what the call used; the attempts that
        // failed before it get their estimate back.
        let taken = i64::try_from(self.estimate.tokens()).unwrap_or(i64::MAX);
        let last = providers.len().saturating_sub(1);
        for (i, p) in providers.iter().enumerate() {
            let Some((scope, fleet)) = charged_provider_scope(&self.quota, p) else { continue };
            let Some(limit) = scope.limits.tokens else { continue };
            let delta = if i == last && self.ok { actual - taken } else { -taken };
            if delta == 0 {
                continue;
            }
            if update_scope(h, &scope_key(&scope), |rec| {
                rec.tokens = Some(if fleet {
                    lease_adjust(rec.tokens, now, delta)
                } else {
                    limit.adjust(rec.tokens, now, delta)
                });
                Ok(())
            })
            .is_none()
            {
                h.warn(&format!("quota: could not correct {}", scope_key(&scope)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per attempt: provider buckets

pub struct ProviderAttempt {
    pub quota: Rc<Quota>,
    /// The provider this attempt goes to, once its buckets are known to apply.
    provider: Option<String>,
    /// Fleet mode: the top-up the attempt waits for (its token, and what each ask leases).
    top_up: Option<(u32, Vec<Ask>, Vec<Leased>)>,
    /// Fleet mode: what Redis granted the attempt (request and token units), merged into the
    /// leases in the write that charges the attempt.
    grants: (i64, i64),
    top_ups: u8,
}

/// How the attempt's provider entry names the way its buckets were charged (for the listener to
/// settle them): `provider` (its buckets or its fleet leases), `provider~local` (its share while
/// Redis is unavailable), `provider~open` (nothing charged).
const MODE_SEP: char = '~';

/// The provider scope an entry of the charged-providers list was charged in, or `None` when
/// nothing was charged; and whether it is a fleet lease.
fn charged_provider_scope(q: &Quota, entry: &str) -> Option<(Scope, bool)> {
    let (provider, mode) = entry.split_once(MODE_SEP).unwrap_or((entry, ""));
    let scope = q.provider(provider)?;
    match (mode, &q.fleet) {
        ("", f) => Some((scope, f.is_some())),
        ("local", Some(f)) => Some((unavailable_scope(&scope, Unavailable::Local, f.expected_replicas), false)),
        _ => None,
    }
}

impl ProviderAttempt {
    pub fn new(quota: Rc<Quota>) -> ProviderAttempt {
        ProviderAttempt { quota, provider: None, top_up: None, grants: (0, 0), top_ups: 0 }
    }

    pub fn on_request_headers(&mut self, h: &impl Host) -> Flow {
        let Some(provider) = h.upstream_metadata(headers::METADATA_PROVIDER) else { return Flow::Continue };
        if self.quota.provider(&provider).is_none() {
            return Flow::Continue;
        }
        self.provider = Some(provider);
        // As on the listener, a lease is spent with no read of whether Redis is down.
        let mode = if self.quota.fleet.is_some() { FleetMode::Lease } else { FleetMode::Off };
        self.admit(h, mode)
    }

    /// Whether the attempt waits for a top-up.
    pub fn waits(&self) -> bool {
        self.top_up.is_some()
    }

    fn admit(&mut self, h: &impl Host, mode: FleetMode) -> Flow {
        let Some(provider) = self.provider.clone() else { return Flow::Continue };
        let Some(scope) = self.quota.provider(&provider) else { return Flow::Continue };
        let tokens: u64 = h
            .property_string(&[headers::PROP_QUOTA_ESTIMATE])
            .and_then(|s| decode_estimate(&s))
            .map(|e| e.tokens())
            .unwrap_or(0);
        let now = h.now_ms();
        let mut entry = provider.own();
        let (scope, fleet) = match (mode, &self.quota.fleet) {
            (FleetMode::Unavailable(m), Some(f)) => {
                h.counter_add(&format!("aigw_fleet_unavailable_total.mode.{}", m.as_str()), 1);
                let mut flags = h.property_string(&[headers::PROP_QUOTA_FLAGS]).unwrap_or_default();
                let flag = format!("fleet_unavailable:{}", m.as_str());
                if !flags.parts(b',').any(|x| x == flag) {
                    if !flags.is_empty() {
                        flags.push(',');
                    }
                    flags.put(&flag);
                    h.set_property(headers::PROP_QUOTA_FLAGS, &flags);
                }
                if m == Unavailable::Closed {
                    mark_last_attempt(h, &provider);
                    h.set_property(headers::PROP_REFUSAL, "quota");
                    let secs = crate::headers::decimal(retry_after_secs(f.retry_ms));
                    h.send_error(&fleet_unavailable(), messages_door(h), &[("retry-after", &secs)]);
                    return Flow::Refused;
                }
                entry.push(MODE_SEP);
                entry.put(m.as_str());
                (unavailable_scope(&scope, m, f.expected_replicas), false)
            }
            (m, _) => (scope, m == FleetMode::Lease),
        };
        let l = scope.limits;
        let key = scope_key(&scope);
        let granted = std::mem::take(&mut self.grants);
        let mut outcome = None;
        if l.requests.is_some() || l.tokens.is_some() {
            // Both buckets in one write: a refusal by either takes nothing from the other.
            outcome = update_scope(h, &key, |rec| {
                if fleet {
                    // The lease left (and this attempt's grant), spent exactly; short: the
                    // attempt waits for a top-up.
                    let need = i64::try_from(tokens).unwrap_or(i64::MAX).saturating_mul(UNITS);
                    let requests = lease(rec.requests).saturating_add(granted.0);
                    let toks = lease(rec.tokens).saturating_add(granted.1);
                    if (l.requests.is_some() && requests < UNITS) || (l.tokens.is_some() && toks < need) {
                        return Err(Some((None, 0)));
                    }
                    if l.requests.is_some() {
                        rec.requests = Some(State { units: requests - UNITS, updated_ms: now });
                    }
                    if l.tokens.is_some() {
                        rec.tokens = Some(State { units: toks - need, updated_ms: now });
                    }
                    return Ok(None);
                }
                if let Some(limit) = l.requests {
                    match limit.take(rec.requests, now, 1) {
                        Decision::Allowed { state, .. } => rec.requests = Some(state),
                        Decision::Refused { retry_after_ms, .. } => {
                            return Err(Some((Some(BucketKind::Requests), retry_after_ms)))
                        }
                    }
                }
                if let Some(limit) = l.tokens {
                    match limit.take(rec.tokens, now, tokens) {
                        Decision::Allowed { state, .. } => rec.tokens = Some(state),
                        Decision::Refused { retry_after_ms, .. } => {
                            return Err(Some((Some(BucketKind::Tokens), retry_after_ms)))
                        }
                    }
                }
                Ok(None)
            });
        }
        match outcome {
            None if l.requests.is_some() || l.tokens.is_some() => self.refuse(h, &provider, BucketKind::Requests, 1000),
            None | Some(Ok(_)) => {
                let mut list = h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).unwrap_or_default();
                if !list.is_empty() {
                    list.push(',');
                }
                list.put(&entry);
                h.set_property(headers::PROP_QUOTA_PROVIDERS, &list);
                Flow::Continue
            }
            Some(Err(Some((Some(kind), retry_ms)))) => self.refuse(h, &provider, kind, retry_ms),
            Some(Err(_)) => {
                // Short: what Redis granted stays in the leases, never lost.
                if granted != (0, 0) {
                    let credited = update_scope(h, &key, |rec| {
                        Leased::Requests.credit(rec, granted.0, now);
                        Leased::Tokens.credit(rec, granted.1, now);
                        Ok(())
                    });
                    if credited.is_none() {
                        h.warn(&format!("quota: a fleet lease for {key} could not be stored"));
                    }
                }
                match (fleet_mode(&self.quota, h, now), &self.quota.fleet) {
                    (FleetMode::Unavailable(m), _) => self.admit(h, FleetMode::Unavailable(m)),
                    (_, Some(f)) => {
                        let f = f.clone();
                        self.start_top_up(h, &f, &scope, tokens, now)
                    }
                    (_, None) => Flow::Continue,
                }
            }
        }
    }

    /// The provider's lease is short: asks Redis for what the attempt needs plus a new lease,
    /// and waits for the answer.
    fn start_top_up(&mut self, h: &impl Host, f: &fleet::Fleet, scope: &Scope, tokens: u64, now: u64) -> Flow {
        let provider = self.provider.clone().unwrap_or_default();
        if self.top_ups >= MAX_TOP_UPS {
            // Other attempts on this replica took every lease this one waited for.
            return self.refuse(h, &provider, BucketKind::Requests, 1000);
        }
        self.top_ups += 1;
        let key = scope_key(scope);
        let rec = read_record(h, &key);
        let mut asks = Vec::new();
        let mut leased = Vec::new();
        let mut active = Vec::new();
        for (ask, which, act) in rate_asks(f, scope, &rec, tokens) {
            asks.push(ask);
            leased.push(which);
            active.push(act);
        }
        if asks.is_empty() {
            // Another attempt topped the lease up meanwhile.
            return self.admit(h, FleetMode::Lease);
        }
        // From now on the listener's ticker keeps this lease topped up ahead of need.
        ticker::mark_active(h, &active);
        h.counter_add("aigw_fleet_top_ups_total.by.attempt", 1);
        match f.call(h, &fleet::take_path(&asks)) {
            Some(token) => {
                self.top_up = Some((token, asks, leased));
                Flow::Pause
            }
            None => {
                fleet_down(h, f, now, "the call to Webdis could not be made");
                self.admit(h, FleetMode::Unavailable(f.unavailable))
            }
        }
    }

    /// The answer to a top-up: the attempt is charged (or tops up again, or is refused). `None`:
    /// not this attempt's top-up.
    pub fn on_http_call_response(
        &mut self,
        h: &impl Host,
        token: u32,
        answer: &crate::host::HttpAnswer,
    ) -> Option<Flow> {
        if self.top_up.as_ref().is_none_or(|t| t.0 != token) {
            return None;
        }
        let (_, asks, leased) = self.top_up.take()?;
        let f = self.quota.fleet.clone()?;
        Some(match fleet::read_answer(answer.status, &answer.body, asks.len()) {
            Some(fleet::Answer::Granted(granted, _)) => {
                for (which, g) in leased.into_iter().zip(granted) {
                    let g = i64::try_from(g).unwrap_or(i64::MAX);
                    match which {
                        Leased::Tokens => self.grants.1 = g,
                        _ => self.grants.0 = g,
                    }
                }
                self.admit(h, FleetMode::Lease)
            }
            Some(fleet::Answer::Short { index, retry_after_ms, .. }) => {
                let kind =
                    if leased.get(index) == Some(&Leased::Tokens) { BucketKind::Tokens } else { BucketKind::Requests };
                let provider = self.provider.clone().unwrap_or_default();
                // As for a call's scopes: the lease may hold what this attempt lacked by now.
                let key = self.quota.provider(&provider).map(|s| scope_key(&s));
                if let (Some(key), Some(which), Some(ask)) = (key, leased.get(index), asks.get(index)) {
                    if lease_covers(&mut read_record(h, &key), *which, ask.need_units) {
                        return Some(self.admit(h, FleetMode::Lease));
                    }
                }
                self.refuse(h, &provider, kind, retry_after_ms.unwrap_or(u64::MAX))
            }
            None => {
                fleet_down(h, &f, h.now_ms(), &format!("Webdis answered {}", answer.status));
                self.admit(h, FleetMode::Unavailable(f.unavailable))
            }
        })
    }

    fn refuse(&self, h: &impl Host, provider: &str, kind: BucketKind, retry_ms: u64) -> Flow {
        // Not sent. Envoy does not retry an upstream filter's own answer (nor a reset from it,
        // which ends the caller's stream), so this refusal is final: the call is not moved to
        // the chain's next provider. It names no figures: the bucket is shared by every tenant.
        let secs = if retry_ms == u64::MAX { 60 } else { retry_after_secs(retry_ms) };
        mark_last_attempt(h, provider);
        h.set_property(headers::PROP_REFUSAL, "quota");
        let err = GatewayError::new(
            429,
            "rate_limit_exceeded",
            ScopeKind::Provider.code(kind),
            format!("The gateway's share of the provider's capacity is in use. Retry after {secs} s."),
        );
        h.send_error(&err, messages_door(h), &[("retry-after", &crate::headers::decimal(secs))]);
        Flow::Refused
    }
}

/// Whether the fleet's buckets serve by lease, or Redis is taken as unavailable (until the time a
/// failed top-up set).
fn fleet_mode(q: &Quota, h: &impl Host, now: u64) -> FleetMode {
    let Some(f) = &q.fleet else { return FleetMode::Off };
    let down_until = h.shared_get(fleet::DOWN_KEY).ok().and_then(|(b, _)| b).map_or(0, |b| counter(&b));
    if now < down_until {
        FleetMode::Unavailable(f.unavailable)
    } else {
        FleetMode::Lease
    }
}

/// Takes Redis as unavailable for `retry_ms`, and says why.
fn fleet_down(h: &impl Host, f: &fleet::Fleet, now: u64, why: &str) {
    let until = now.saturating_add(f.retry_ms);
    let _ = h.shared_set(fleet::DOWN_KEY, &until.to_le_bytes(), None);
    h.warn(&format!(
        "quota: fleet store unavailable ({why}); serving in `{}` mode for {} ms",
        f.unavailable.as_str(),
        f.retry_ms
    ));
}

/// Marks this attempt in the call's record (route-select, before this filter, opened it) as
/// stopped by the gateway before it reached the provider.
fn mark_last_attempt(h: &impl Host, provider: &str) {
    let Some(raw) = h.property(&[headers::PROP_ATTEMPTS]) else { return };
    let mut attempts = parse_attempts(Some(&raw));
    if let Some(a) = attempts.last_mut().filter(|a| a.provider == provider) {
        a.error_class = Some(ErrorClass::ProviderLimit);
        h.set_property_bytes(headers::PROP_ATTEMPTS, &crate::audit::encode_attempts(&attempts));
    }
}

impl crate::host::Callbacks for QuotaCall {
    fn on_request_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        QuotaCall::on_request_headers(self, h, eos)
    }
    fn on_request_body<H: Host>(&mut self, h: &H, size: usize, eos: bool) -> Flow {
        QuotaCall::on_request_body(self, h, size, eos)
    }
    fn on_response_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        QuotaCall::on_response_headers(self, h, eos)
    }
    fn on_response_body<H: Host>(&mut self, h: &H, size: usize, _eos: bool) -> Flow {
        QuotaCall::on_response_body(self, h, size)
    }
    fn on_log<H: Host>(&mut self, h: &H) {
        QuotaCall::on_log(self, h)
    }
    fn on_http_call_response<H: Host>(&mut self, h: &H, token: u32, answer: &crate::host::HttpAnswer) {
        if QuotaCall::on_http_call_response(self, h, token, answer) == Some(Flow::Continue) {
            h.resume_request();
        }
    }
}

impl crate::host::Callbacks for ProviderAttempt {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        ProviderAttempt::on_request_headers(self, h)
    }
    fn on_request_body<H: Host>(&mut self, _h: &H, _size: usize, _eos: bool) -> Flow {
        // The body waits with the headers for a top-up's answer.
        if self.waits() {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }
    fn on_http_call_response<H: Host>(&mut self, h: &H, token: u32, answer: &crate::host::HttpAnswer) {
        if ProviderAttempt::on_http_call_response(self, h, token, answer) == Some(Flow::Continue) {
            h.resume_request();
        }
    }
}

pub mod ticker;

#[cfg(test)]
mod tests;
