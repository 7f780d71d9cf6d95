//! The quota stage: the buckets of `aigw_core::quota` kept in shared data (one key per bucket,
//! updated with compare-and-swap, so every worker sees the same numbers). On the listener
//! ([`QuotaCall`]) it charges the tenant, feature and model buckets, concurrency and budgets, refuses
//! what does not fit, and reconciles each call once what it costs is known; per attempt
//! ([`ProviderAttempt`]) it charges the provider's buckets.

use std::rc::Rc;

use super::{
    decode_estimate, encode_estimate, estimate, ms_to_period_end, period_id, reserve, Billing, BucketKind,
    BudgetDecision, BudgetState, CallEnd, Estimate, Period, Quota, RequestFacts, Scope, ScopeKind, Settled,
};
use crate::audit::price::format_usd;
use crate::audit::{parse_attempts, ErrorClass};
use crate::error::GatewayError;
use crate::headers;
use crate::host::{messages_door, Flow, Host, SharedSetError};
use crate::quota::bucket::{retry_after_secs, Decision, Limit, State};
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

/// A bucket key is created holding this marker: "never used", so its first take finds it full.
const NEW_BUCKET: State = State { units: i64::MIN, updated_ms: 0 };

fn bucket_state(bytes: &[u8]) -> Option<State> {
    State::decode(bytes).filter(|s| *s != NEW_BUCKET)
}

fn take_bucket(h: &impl Host, key: &str, limit: Limit, now: u64, cost: u64) -> Option<Decision> {
    update(h, key, &NEW_BUCKET.encode(), |b| match limit.take(bucket_state(b), now, cost) {
        d @ Decision::Allowed { state, .. } => CasStep::Write(state.encode().to_vec(), d),
        d => CasStep::Refuse(d),
    })
    .map(|r| r.unwrap_or_else(|d| d))
}

fn adjust_bucket(h: &impl Host, key: &str, limit: Limit, now: u64, delta: i64) {
    if delta == 0 {
        return;
    }
    let r = update(h, key, &NEW_BUCKET.encode(), |b| {
        CasStep::Write(limit.adjust(bucket_state(b), now, delta).encode().to_vec(), ())
    });
    if r.is_none() {
        h.warn(&format!("quota: could not correct bucket {key} by {delta}"));
    }
}

fn counter(bytes: &[u8]) -> u64 {
    bytes.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes).unwrap_or(0)
}

/// Takes one of `max` in-flight slots.
fn acquire(h: &impl Host, key: &str, max: u64) -> Option<bool> {
    update(h, key, &0u64.to_le_bytes(), |b| {
        let n = counter(b);
        if n >= max {
            CasStep::Refuse(())
        } else {
            CasStep::Write((n + 1).to_le_bytes().to_vec(), ())
        }
    })
    .map(|r| r.is_ok())
}

fn release(h: &impl Host, key: &str) {
    if update(h, key, &0u64.to_le_bytes(), |b| CasStep::Write(counter(b).saturating_sub(1).to_le_bytes().to_vec(), ()))
        .is_none()
    {
        h.warn(&format!("quota: could not release in-flight slot {key}"));
    }
}

fn budget_state(bytes: &[u8]) -> BudgetState {
    BudgetState::decode(bytes).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// What a call holds, so it can be corrected or given back

enum Charge {
    Requests { key: String, limit: Limit },
    Tokens { key: String, limit: Limit, taken: u64 },
    Concurrent { key: String },
    Budget { key: String, period: u64, reserved: u128 },
}

fn undo(h: &impl Host, charges: &[Charge], now: u64) {
    for c in charges.iter().rev() {
        match c {
            Charge::Requests { key, limit } => adjust_bucket(h, key, *limit, now, -1),
            Charge::Tokens { key, limit, taken } => {
                adjust_bucket(h, key, *limit, now, -i64::try_from(*taken).unwrap_or(0))
            }
            Charge::Concurrent { key } => release(h, key),
            Charge::Budget { key, period, reserved } => settle_budget(h, key, *period, *reserved, 0),
        }
    }
}

fn settle_budget(h: &impl Host, key: &str, period: u64, reserved: u128, actual: u128) {
    let initial = BudgetState::default().encode();
    if update(h, key, &initial, |b| {
        CasStep::Write(budget_state(b).settled(period, reserved, actual).encode().to_vec(), ())
    })
    .is_none()
    {
        h.warn(&format!("quota: could not settle budget {key}"));
    }
}

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

fn rate_headers(requests: Option<Tightest>, tokens: Option<Tightest>) -> Vec<(&'static str, String)> {
    let mut h = Vec::new();
    for (t, [limit, remaining, reset]) in [
        (requests, ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"]),
        (tokens, ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"]),
    ] {
        if let Some(t) = t {
            h.push((limit, t.limit.to_string()));
            h.push((remaining, t.remaining.to_string()));
            // A call that can never fit has no reset time: the header is left out.
            if t.reset_ms != u64::MAX {
                h.push((reset, format!("{}s", retry_after_secs(t.reset_ms))));
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

fn store_busy() -> GatewayError {
    GatewayError::new(429, "rate_limit_exceeded", "quota_unavailable", "The quota store is busy; retry shortly.")
}

// ---------------------------------------------------------------------------------------------
// Listener: tenant, feature and model buckets

enum Seen {
    None,
    Json(Vec<u8>),
    Sse(Box<StreamScanner>),
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
        }
    }

    /// Charges the call to every bucket and budget of its scopes, or refuses it having charged
    /// nothing.
    fn admit(&mut self, h: &impl Host) -> Flow {
        let id = h.call_identity();
        let tenant = id.as_ref().map(|i| i.tenant.clone()).unwrap_or_else(|| "_anonymous".into());
        let feature = id.as_ref().and_then(|i| i.feature.clone());
        let alias = self.estimate.model.clone().or_else(|| h.property_string(&[headers::PROP_ALIAS]));
        let scopes = self.quota.scopes(&tenant, feature.as_deref(), alias.as_deref());
        let now = h.now_ms();
        let tokens = self.estimate.tokens();
        // For the per-attempt provider buckets, and for audit-emit to settle a call that
        // reports no usage.
        h.set_property(headers::PROP_QUOTA_ESTIMATE, &encode_estimate(&self.estimate));
        let mut cost: Option<u128> = None;
        for scope in &scopes {
            if let Err(action) = self.charge_scope(h, scope, now, tokens, &mut cost) {
                undo(h, &self.charges, now);
                self.charges.clear();
                return action;
            }
        }
        self.admitted = true;
        if self.budget_warning.is_some() {
            h.set_property(headers::PROP_QUOTA_FLAGS, "budget_soft_limit");
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
    ) -> Result<(), Flow> {
        let l = s.limits;
        if let Some(limit) = l.requests {
            let key = format!("aigw.q.rpm.{}", s.key);
            match take_bucket(h, &key, limit, now, 1) {
                Some(Decision::Allowed { remaining, reset_ms, .. }) => {
                    self.requests = tighter(self.requests, Tightest { limit: limit.burst, remaining, reset_ms });
                    self.charges.push(Charge::Requests { key, limit });
                }
                Some(Decision::Refused { retry_after_ms, .. }) => {
                    let t = Tightest { limit: limit.burst, remaining: 0, reset_ms: retry_after_ms };
                    return Err(self.refuse_rate(h, s, BucketKind::Requests, limit, retry_after_ms, Some(t), None));
                }
                None => return Err(refuse(h, &store_busy(), &[("retry-after", "1".into())])),
            }
        }
        if let Some(limit) = l.tokens {
            let key = format!("aigw.q.tpm.{}", s.key);
            match take_bucket(h, &key, limit, now, tokens) {
                Some(Decision::Allowed { remaining, reset_ms, .. }) => {
                    self.tokens = tighter(self.tokens, Tightest { limit: limit.burst, remaining, reset_ms });
                    self.charges.push(Charge::Tokens { key, limit, taken: tokens });
                }
                Some(Decision::Refused { state, retry_after_ms }) => {
                    let (remaining, _) = limit.peek(Some(state), now);
                    let t = Tightest { limit: limit.burst, remaining, reset_ms: retry_after_ms };
                    return Err(self.refuse_rate(h, s, BucketKind::Tokens, limit, retry_after_ms, None, Some(t)));
                }
                None => return Err(refuse(h, &store_busy(), &[("retry-after", "1".into())])),
            }
        }
        if let Some(max) = l.concurrent {
            let key = format!("aigw.q.conc.{}", s.key);
            match acquire(h, &key, max) {
                Some(true) => self.charges.push(Charge::Concurrent { key }),
                Some(false) => {
                    let err = GatewayError::new(
                        429,
                        "rate_limit_exceeded",
                        s.kind.code(BucketKind::Concurrent),
                        format!(
                            "Too many calls in flight for {}: at most {max} at once. Retry when one has finished.",
                            s.kind.describe()
                        ),
                    );
                    let mut hdrs = rate_headers(self.requests, self.tokens);
                    hdrs.push(("retry-after", "1".into()));
                    return Err(refuse(h, &err, &hdrs));
                }
                None => return Err(refuse(h, &store_busy(), &[("retry-after", "1".into())])),
            }
        }
        if let Some(b) = l.budget {
            let c = *cost.get_or_insert_with(|| {
                let cands: Vec<&str> = self.candidates.iter().map(String::as_str).collect();
                self.quota.upper_bound_cost(&self.estimate, &cands).unwrap_or(0)
            });
            for (period, cap) in [(Period::Day, b.daily), (Period::Month, b.monthly)] {
                let Some(cap) = cap else { continue };
                let kind = if period == Period::Day { "day" } else { "month" };
                let key = format!("aigw.q.budget.{}.{kind}", s.key);
                let pid = period_id(period, now);
                match update(h, &key, &BudgetState::default().encode(), |bytes| {
                    let before = budget_state(bytes).spent_in(pid);
                    match reserve(before, c, cap, b.soft_percent) {
                        BudgetDecision::Reserved { spent, soft } => {
                            CasStep::Write(BudgetState { period: pid, spent }.encode().to_vec(), (before, soft))
                        }
                        BudgetDecision::Refused => CasStep::Refuse((before, false)),
                    }
                }) {
                    Some(Ok((_, soft))) => {
                        self.charges.push(Charge::Budget { key, period: pid, reserved: c });
                        if soft && self.budget_warning.is_none() {
                            self.budget_warning = Some(format!(
                                "{} {} budget is {}% used or more",
                                s.kind.describe().trim_start_matches("this ").trim_start_matches("the "),
                                period_name(period),
                                b.soft_percent
                            ));
                        }
                    }
                    Some(Err((before, _))) => {
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
                                format_usd(c),
                                retry_after_secs(ms_to_period_end(period, now)),
                                if period == Period::Day { "midnight" } else { "start of next month" }
                            ),
                        );
                        return Err(refuse(h, &err, &rate_headers(self.requests, self.tokens)));
                    }
                    None => return Err(refuse(h, &store_busy(), &[("retry-after", "1".into())])),
                }
            }
        }
        Ok(())
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
            hdrs.push(("retry-after", retry_after_secs(retry_after_ms).to_string()));
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
        Some(list) => list.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
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
    #[derive(serde::Deserialize)]
    struct M {
        model: Option<String>,
    }
    serde_json::from_slice::<M>(body).ok()?.model
}

impl QuotaCall {
    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if let Some(facts) = h.property_string(&[headers::PROP_REQUEST]).and_then(|f| RequestFacts::decode(&f)) {
            // route-select already read the body: no need to hold the call or read it again.
            self.estimate = facts.estimate(&self.quota.estimate);
            self.candidates = candidates(h, &self.estimate);
            return self.admit(h);
        }
        let path = h.request_header(":path").unwrap_or_default();
        if !eos && path.split('?').next() == Some(CHAT_PATH) {
            // The estimate needs the body: hold the headers until it is here.
            self.reading = true;
            return Flow::Pause;
        }
        self.admit(h)
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
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
        let status: u16 = h.response_header(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
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
                    b.extend_from_slice(&h.response_body(size));
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
        let providers: Vec<String> = h
            .property_string(&[headers::PROP_QUOTA_PROVIDERS])
            .map(|s| s.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect())
            .unwrap_or_default();
        let attempted = !providers.is_empty()
            || h.property(&[headers::PROP_ATTEMPTS]).is_some()
            || h.property(&["upstream", "address"]).is_some();
        let (charged, settled_cost) = self.charged(h, attempted);
        let used = charged.unwrap_or_default();
        let actual = used.input.saturating_add(used.output);
        let mut cost: Option<u128> = settled_cost.or(if charged.is_none() { Some(0) } else { None });
        for c in std::mem::take(&mut self.charges) {
            match c {
                Charge::Requests { .. } => {}
                Charge::Tokens { key, limit, taken } => {
                    let delta = i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(taken).unwrap_or(i64::MAX);
                    adjust_bucket(h, &key, limit, now, delta);
                }
                Charge::Concurrent { key } => release(h, &key),
                Charge::Budget { key, period, reserved } => {
                    let c = *cost.get_or_insert_with(|| self.cost_of(&used));
                    settle_budget(h, &key, period, reserved, c);
                }
            }
        }
        // Providers: the one that answered is charged what the call used; the attempts that
        // failed before it get their estimate back.
        let taken = self.estimate.tokens();
        let last = providers.len().saturating_sub(1);
        for (i, p) in providers.iter().enumerate() {
            let Some(scope) = self.quota.provider(p) else { continue };
            let Some(limit) = scope.limits.tokens else { continue };
            let served = i == last && self.ok;
            let delta = if served {
                i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(taken).unwrap_or(i64::MAX)
            } else {
                -i64::try_from(taken).unwrap_or(i64::MAX)
            };
            adjust_bucket(h, &format!("aigw.q.tpm.{}", scope.key), limit, now, delta);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per attempt: provider buckets

pub struct ProviderAttempt {
    pub quota: Rc<Quota>,
}

impl ProviderAttempt {
    pub fn on_request_headers(&mut self, h: &impl Host) -> Flow {
        let Some(provider) = h.upstream_metadata(headers::METADATA_PROVIDER) else { return Flow::Continue };
        let Some(scope) = self.quota.provider(&provider) else { return Flow::Continue };
        let tokens: u64 = h
            .property_string(&[headers::PROP_QUOTA_ESTIMATE])
            .and_then(|s| decode_estimate(&s))
            .map(|e| e.tokens())
            .unwrap_or(0);
        let now = h.now_ms();
        let mut refused: Option<(BucketKind, u64)> = None;
        let mut took_request: Option<(String, Limit)> = None;
        if let Some(limit) = scope.limits.requests {
            let key = format!("aigw.q.rpm.{}", scope.key);
            match take_bucket(h, &key, limit, now, 1) {
                Some(Decision::Allowed { .. }) => took_request = Some((key, limit)),
                Some(Decision::Refused { retry_after_ms, .. }) => {
                    refused = Some((BucketKind::Requests, retry_after_ms))
                }
                None => refused = Some((BucketKind::Requests, 1000)),
            }
        }
        if refused.is_none() {
            if let Some(limit) = scope.limits.tokens {
                let key = format!("aigw.q.tpm.{}", scope.key);
                match take_bucket(h, &key, limit, now, tokens) {
                    Some(Decision::Allowed { .. }) => {}
                    Some(Decision::Refused { retry_after_ms, .. }) => {
                        refused = Some((BucketKind::Tokens, retry_after_ms))
                    }
                    None => refused = Some((BucketKind::Tokens, 1000)),
                }
                if refused.is_some() {
                    if let Some((key, limit)) = &took_request {
                        adjust_bucket(h, key, *limit, now, -1);
                    }
                }
            }
        }
        let Some((kind, retry_ms)) = refused else {
            let mut list = h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).unwrap_or_default();
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(&provider);
            h.set_property(headers::PROP_QUOTA_PROVIDERS, &list);
            return Flow::Continue;
        };
        // Not sent. Envoy does not retry an upstream filter's own answer (nor a reset from it,
        // which ends the caller's stream), so this refusal is final: the call is not moved to
        // the chain's next provider. It names no figures: the bucket is shared by every tenant.
        let secs = if retry_ms == u64::MAX { 60 } else { retry_after_secs(retry_ms) };
        mark_last_attempt(h, &provider);
        h.set_property(headers::PROP_REFUSAL, "quota");
        let err = GatewayError::new(
            429,
            "rate_limit_exceeded",
            ScopeKind::Provider.code(kind),
            format!("The gateway's share of the provider's capacity is in use. Retry after {secs} s."),
        );
        h.send_error(&err, messages_door(h), &[("retry-after", &secs.to_string())]);
        Flow::Refused
    }
}

/// Marks this attempt in the call's record (route-select, before this filter, opened it) as
/// stopped by the gateway before it reached the provider.
fn mark_last_attempt(h: &impl Host, provider: &str) {
    let Some(raw) = h.property(&[headers::PROP_ATTEMPTS]) else { return };
    let mut attempts = parse_attempts(Some(&raw));
    if let Some(a) = attempts.last_mut().filter(|a| a.provider == provider) {
        a.error_class = Some(ErrorClass::ProviderLimit);
        if let Ok(json) = serde_json::to_string(&attempts) {
            h.set_property(headers::PROP_ATTEMPTS, &json);
        }
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
}

impl crate::host::Callbacks for ProviderAttempt {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        ProviderAttempt::on_request_headers(self, h)
    }
}

#[cfg(test)]
mod tests;
