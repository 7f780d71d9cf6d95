use super::*;
use crate::host::FakeHost;
use crate::quota::QuotaConfig;

const BOOK: &str = include_str!("../../../../../envoy/price-book.json");
const BODY: &[u8] = br#"{"model":"chat","max_tokens":100,"messages":[{"role":"user","content":"qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"}]}"#;
/// The estimate of BODY: 40 letters (10 pieces) + 4 for the message, + 100 output.
const EST: u64 = 114;

fn quota(tenants: &str, providers: &str) -> Rc<Quota> {
    let cfg: QuotaConfig = crate::config::from_str(&format!(
        r#"{{"tenants": {tenants}, "providers": {providers}, "price_book": {BOOK}}}"#
    ))
    .unwrap();
    Rc::new(Quota::compile(&cfg).unwrap())
}

/// A call of tenant `acme` whose request route-select has read, on a worker sharing `store`.
fn call_on(store: &FakeHost) -> FakeHost {
    let h = store.worker();
    h.set_property_bytes(
        headers::PROP_IDENTITY,
        &crate::handed::identity(r#"{"tenant":"acme","key_id":"k","key_fingerprint":"f","alias_scope":"*"}"#),
    );
    h.set_property(headers::PROP_REQUEST, &RequestFacts::read(BODY).unwrap().encode());
    h.set_property(headers::PROP_CANDIDATES, "claude-haiku-4-5-20251001");
    h.request_headers.borrow_mut().push((":path".into(), "/v1/chat/completions".into()));
    h
}

fn code(h: &FakeHost) -> (u16, String) {
    let r = h.reply().unwrap();
    let v: crate::wire::tree::Value = crate::wire::from_slice(&r.body).unwrap();
    (r.status, v["error"]["code"].as_str().unwrap_or_default().to_string())
}

fn reply_header(h: &FakeHost, name: &str) -> Option<String> {
    h.reply()?.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn exactly_the_burst_is_admitted_across_workers_then_a_429_with_the_figures() {
    let q = quota(r#"{"acme": {"requests_per_minute": 1, "requests_burst": 3}}"#, "{}");
    let store = FakeHost::new();
    store.now.set(1_000_000);
    init_store(&store);
    let mut admitted = 0;
    for _ in 0..5 {
        let h = call_on(&store);
        let mut c = QuotaCall::new(q.clone());
        if c.on_request_headers(&h, false) == Flow::Continue {
            admitted += 1;
        } else {
            assert_eq!(code(&h), (429, "tenant_requests_per_minute".to_string()));
            assert_eq!(reply_header(&h, "x-ratelimit-limit-requests").as_deref(), Some("3"));
            assert_eq!(reply_header(&h, "x-ratelimit-remaining-requests").as_deref(), Some("0"));
            assert_eq!(reply_header(&h, "retry-after").as_deref(), Some("60"));
            assert_eq!(h.property_string(&[headers::PROP_REFUSAL]).as_deref(), Some("quota"));
        }
    }
    assert_eq!(admitted, 3);
}

#[test]
fn a_call_that_can_never_fit_says_so_without_a_reset_time() {
    let q = quota(r#"{"acme": {"tokens_per_minute": 1, "tokens_burst": 50}}"#, "{}");
    let store = FakeHost::new();
    let h = call_on(&store);
    assert_eq!(QuotaCall::new(q).on_request_headers(&h, false), Flow::Refused);
    assert_eq!(code(&h), (429, "tenant_tokens_per_minute".to_string()));
    assert!(reply_header(&h, "retry-after").is_none());
    assert!(reply_header(&h, "x-ratelimit-reset-tokens").is_none());
    assert_eq!(reply_header(&h, "x-ratelimit-limit-tokens").as_deref(), Some("50"));
}

#[test]
fn tokens_are_reconciled_to_what_the_audit_stage_settled() {
    let q = quota(r#"{"acme": {"tokens_per_minute": 1, "tokens_burst": 10000}}"#, "{}");
    let store = FakeHost::new();
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Continue);
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_ESTIMATE]).as_deref(), Some("14 100"));
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c.on_response_headers(&h, true);
    assert_eq!(h.response_header("x-ratelimit-remaining-tokens"), Some((10000 - EST).to_string()));
    // audit-emit settled 30 tokens.
    let used = Usage { input: 20, cached_input: 0, output: 10, reasoning: 0, cache_write: 0, cache_write_1h: 0 };
    h.set_property(
        headers::PROP_SETTLED,
        &Settled { usage: Some(used), estimated: false, cost_pico: Some(1) }.encode(),
    );
    c.on_log(&h);
    let next = call_on(&store);
    let mut c2 = QuotaCall::new(q);
    c2.on_request_headers(&next, false);
    next.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c2.on_response_headers(&next, true);
    assert_eq!(next.response_header("x-ratelimit-remaining-tokens"), Some((10000 - 30 - EST).to_string()));
}

#[test]
fn concurrency_slots_are_given_back_when_calls_end() {
    let q = quota(r#"{"acme": {"concurrent": 1}}"#, "{}");
    let store = FakeHost::new();
    let (h1, h2) = (call_on(&store), call_on(&store));
    let mut c1 = QuotaCall::new(q.clone());
    assert_eq!(c1.on_request_headers(&h1, false), Flow::Continue);
    assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h2, false), Flow::Refused);
    assert_eq!(code(&h2), (429, "tenant_concurrent_requests".to_string()));
    c1.on_log(&h1);
    let h3 = call_on(&store);
    assert_eq!(QuotaCall::new(q).on_request_headers(&h3, false), Flow::Continue);
}

#[test]
fn a_budget_refuses_on_the_upper_bound_and_is_settled_to_the_real_cost() {
    // Haiku: 1 USD / 5 USD per million; the upper bound of BODY is 14 * 1 + 100 * 5 = 514 micro-USD.
    let q = quota(r#"{"acme": {"budget": {"daily_usd": "0.001"}}}"#, "{}");
    let store = FakeHost::new();
    store.now.set(1_800_000_000_000);
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Continue);
    // A second call while the first is in flight would pass the cap: 402 before it is sent.
    let h2 = call_on(&store);
    assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h2, false), Flow::Refused);
    assert_eq!(code(&h2), (402, "tenant_daily_budget".to_string()));
    // The first call cost nothing (the provider billed nothing): its reservation is released.
    h.set_property(headers::PROP_SETTLED, &Settled { usage: None, estimated: false, cost_pico: None }.encode());
    c.on_log(&h);
    let h3 = call_on(&store);
    assert_eq!(QuotaCall::new(q).on_request_headers(&h3, false), Flow::Continue);
}

#[test]
fn an_empty_provider_bucket_refuses_the_attempt_and_marks_it() {
    let q = quota("{}", r#"{"anthropic": {"requests_per_minute": 1, "requests_burst": 1}}"#);
    let store = FakeHost::new();
    let attempt = |store: &FakeHost| {
        let h = store.worker();
        h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "anthropic");
        h.set_property(headers::PROP_QUOTA_ESTIMATE, "14 100");
        h.set_property_bytes(
            headers::PROP_ATTEMPTS,
            &crate::handed::attempts(
                r#"[{"provider":"anthropic","region":null,"model":"m","status":null,"latency_ms":null,"error_class":"no_response"}]"#,
            ),
        );
        let flow = ProviderAttempt::new(q.clone()).on_request_headers(&h);
        (flow, h)
    };
    let (first, h1) = attempt(&store);
    assert_eq!(first, Flow::Continue);
    assert_eq!(h1.property_string(&[headers::PROP_QUOTA_PROVIDERS]).as_deref(), Some("anthropic"));
    let (second, h2) = attempt(&store);
    assert_eq!(second, Flow::Refused);
    let (status, c) = code(&h2);
    assert_eq!((status, c.as_str()), (429, "provider_requests_per_minute"));
    // A provider bucket's refusal names no figures: the bucket is shared by every tenant.
    assert!(reply_header(&h2, "x-ratelimit-limit-requests").is_none());
    let a = parse_attempts(h2.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!(a[0].error_class, Some(ErrorClass::ProviderLimit));
}

/// The shared-data reads and writes `f` makes.
fn store_calls(store: &FakeHost, f: impl FnOnce()) -> (u32, u32) {
    let (r, w) = (store.shared_reads.get(), store.shared_writes.get());
    f();
    (store.shared_reads.get() - r, store.shared_writes.get() - w)
}

#[test]
fn one_read_and_one_write_charge_every_bucket_of_a_scope_and_one_of_each_corrects_them() {
    let q = quota(
        r#"{"acme": {"requests_per_minute": 60, "tokens_per_minute": 100000, "concurrent": 5,
                     "budget": {"daily_usd": "10", "monthly_usd": "100"}}}"#,
        "{}",
    );
    // The first call creates the scope's key.
    let (store, first, mut c, flow) = first_call(&q, 1_800_000_000_000);
    assert_eq!(flow, Flow::Continue);
    c.on_log(&first);
    let keys: Vec<String> = store.shared.borrow().keys().cloned().collect();
    assert_eq!(keys.len(), 2, "one key for the scope, one for the creation lock: {keys:?}");

    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    let admit = store_calls(&store, || assert_eq!(c.on_request_headers(&h, false), Flow::Continue));
    assert_eq!(admit, (1, 1), "requests, tokens, in flight, day and month budgets in one read and one write");
    h.set_property(
        headers::PROP_SETTLED,
        &Settled {
            usage: Some(Usage {
                input: 20,
                cached_input: 0,
                output: 10,
                reasoning: 0,
                cache_write: 0,
                cache_write_1h: 0,
            }),
            estimated: false,
            cost_pico: Some(7),
        }
        .encode(),
    );
    assert_eq!(store_calls(&store, || c.on_log(&h)), (1, 1));
    // What the two calls left: two requests taken, no call in flight, and the same spend in the
    // day's and the month's budget of this day.
    let rec = ScopeRecord::decode(&store.shared.borrow()["aigw.q.t.acme"].0);
    assert_eq!(rec.in_flight, 0);
    let limit = q.scopes("acme", None, None)[0].limits.requests.unwrap();
    assert_eq!(limit.peek(rec.requests, store.now.get()).0, 58);
    assert_eq!(rec.day.period, period_id(Period::Day, store.now.get()));
    assert_eq!(rec.day.spent, rec.month.spent);
}

#[test]
fn a_scope_that_refuses_writes_nothing_and_takes_nothing_from_its_other_buckets() {
    let q = quota(r#"{"acme": {"requests_per_minute": 1, "requests_burst": 10, "concurrent": 1}}"#, "{}");
    let store = FakeHost::new();
    store.now.set(1_000_000);
    init_store(&store);
    let h1 = call_on(&store);
    let mut c1 = QuotaCall::new(q.clone());
    assert_eq!(c1.on_request_headers(&h1, false), Flow::Continue);
    // In flight: the next call is refused by the concurrency bucket, in one read and no write.
    let h2 = call_on(&store);
    let refused =
        store_calls(&store, || assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h2, false), Flow::Refused));
    assert_eq!(code(&h2), (429, "tenant_concurrent_requests".to_string()));
    assert_eq!(refused, (1, 0));
    // It shows what its request bucket would have held after it.
    assert_eq!(reply_header(&h2, "x-ratelimit-remaining-requests").as_deref(), Some("8"));
    c1.on_log(&h1);
    // The refused call took no request: two calls admitted, two requests used.
    let h3 = call_on(&store);
    let mut c3 = QuotaCall::new(q);
    assert_eq!(c3.on_request_headers(&h3, false), Flow::Continue);
    h3.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c3.on_response_headers(&h3, true);
    assert_eq!(h3.response_header("x-ratelimit-remaining-requests").as_deref(), Some("8"));
}

#[test]
fn a_provider_whose_token_bucket_refuses_keeps_its_request_bucket() {
    // The estimate of BODY is 114 tokens: a burst of 150 fits one call.
    let q = quota(
        "{}",
        r#"{"anthropic": {"requests_per_minute": 1, "requests_burst": 5, "tokens_per_minute": 1, "tokens_burst": 150}}"#,
    );
    let store = FakeHost::new();
    store.now.set(1_000_000);
    init_store(&store);
    let attempt = || {
        let h = store.worker();
        h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "anthropic");
        h.set_property(headers::PROP_QUOTA_ESTIMATE, "14 100");
        let flow = ProviderAttempt::new(q.clone()).on_request_headers(&h);
        (flow, h)
    };
    assert_eq!(attempt().0, Flow::Continue);
    let (mut flow, mut h) = (Flow::Continue, store.worker());
    let calls = store_calls(&store, || (flow, h) = attempt());
    assert_eq!(flow, Flow::Refused);
    assert_eq!(code(&h), (429, "provider_tokens_per_minute".to_string()));
    assert_eq!(calls, (1, 0));
    let rec = ScopeRecord::decode(&store.shared.borrow()["aigw.q.p.anthropic"].0);
    let limit = q.provider("anthropic").unwrap().limits.requests.unwrap();
    assert_eq!(limit.peek(rec.requests, 1_000_000).0, 4, "only the admitted attempt took a request");
}

#[test]
fn a_scope_record_round_trips_and_a_damaged_one_reads_as_new() {
    let rec = ScopeRecord {
        requests: Some(State { units: -5, updated_ms: 7 }),
        tokens: None,
        in_flight: 3,
        day: BudgetState { period: 20000, spent: 1 << 70 },
        month: BudgetState { period: 24000, spent: 9 },
        slots: 4,
        admits: 9,
        soft_day: 20000,
        soft_month: 0,
    };
    let bytes = rec.encode();
    assert_eq!(bytes.len(), ScopeRecord::LEN);
    assert_eq!(ScopeRecord::decode(&bytes), rec);
    assert_eq!(ScopeRecord::decode(&bytes[..10]), ScopeRecord { in_flight: 0, ..ScopeRecord::default() });
    assert_eq!(ScopeRecord::decode(b""), ScopeRecord::default());
    // A record written before calls-in-flight slots (88 bytes) reads with none held.
    assert_eq!(ScopeRecord::decode(&bytes[..88]), ScopeRecord { slots: 0, admits: 0, soft_day: 0, ..rec });
    // One written before the fleet's soft thresholds (104 bytes), with none passed.
    assert_eq!(ScopeRecord::decode(&bytes[..104]), ScopeRecord { soft_day: 0, ..rec });
}

fn fleet_quota(tenants: &str, fleet: &str) -> Rc<Quota> {
    let cfg: QuotaConfig =
        crate::config::from_str(&format!(r#"{{"tenants": {tenants}, "fleet": {fleet}, "price_book": {BOOK}}}"#))
            .unwrap();
    Rc::new(Quota::compile(&cfg).unwrap())
}

/// A fleet-mode quota over a fresh store (at 1,000,000 ms), and a first call, which finds no
/// lease and waits for its top-up: (quota, store, the call's host, the call).
fn waiting_fleet_call(tenants: &str, fleet: &str) -> (Rc<Quota>, FakeHost, FakeHost, QuotaCall) {
    let q = fleet_quota(tenants, fleet);
    let (store, h, c, flow) = first_call(&q, 1_000_000);
    assert_eq!(flow, Flow::Pause);
    (q, store, h, c)
}

/// A fresh store at `now` ms, and a first call's headers through `q`: (store, the call's host,
/// the call, what its headers did).
fn first_call(q: &Rc<Quota>, now: u64) -> (FakeHost, FakeHost, QuotaCall, Flow) {
    let store = FakeHost::new();
    store.now.set(now);
    init_store(&store);
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    let flow = c.on_request_headers(&h, false);
    (store, h, c, flow)
}

/// The one HTTP call `h` made (the top-up), and its `FCALL` arguments after the keys.
fn top_up_of(h: &FakeHost) -> (String, Vec<String>) {
    let calls = h.http_calls.borrow();
    assert_eq!(calls.len(), 1, "one top-up");
    let path = calls[0].headers.iter().find(|(k, _)| k == ":path").unwrap().1.clone();
    assert_eq!(calls[0].cluster, "aigw_fleet");
    let parts: Vec<String> = path.split('/').map(str::to_string).collect();
    (path, parts)
}

fn webdis(body: &str) -> crate::host::HttpAnswer {
    crate::host::HttpAnswer { status: 200, headers: vec![], body: body.as_bytes().to_vec() }
}

#[test]
fn a_fleet_lease_is_taken_in_one_call_spent_exactly_and_topped_up_when_short() {
    // The first call finds no lease: it waits for one top-up over both buckets.
    let (q, store, h, mut c) = waiting_fleet_call(
        r#"{"acme": {"requests_per_minute": 60, "requests_burst": 100, "tokens_per_minute": 60000, "tokens_burst": 100000}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"requests": 3, "tokens": 1000}}"#,
    );
    assert!(c.waits());
    let (path, parts) = top_up_of(&h);
    assert!(path.starts_with("/FCALL/aigw_take/2/aigw:t%2eacme:r/aigw:t%2eacme:t/"), "{path}");
    let units = |t: u64| (t * 60_000).to_string();
    assert_eq!(parts[6..11], ["60", &units(100), &units(1), &units(3), "0"], "requests: need 1, want the lease");
    assert_eq!(parts[11..16], ["60000", &units(100000), &units(EST), &units(1000), "0"], "tokens: need the estimate");
    // Redis grants 3 calls and 1000 tokens: admitted, and the body need not wait.
    let answer = webdis(&format!(r#"{{"FCALL":[1,{},{}]}}"#, units(3), units(1000)));
    assert_eq!(c.on_http_call_response(&h, 7, &answer), None, "not its call");
    let token = 1;
    assert_eq!(c.on_http_call_response(&h, token, &answer), Some(Flow::Continue));
    assert!(!c.waits() && h.reply().is_none());
    // Two more calls spend the lease locally, with no call to Redis.
    for _ in 0..2 {
        let h = call_on(&store);
        assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h, false), Flow::Continue);
        assert!(h.http_calls.borrow().is_empty());
    }
    // The fourth finds the request lease empty: another top-up, for what it needs.
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    let (_, parts) = top_up_of(&h);
    assert_eq!(parts[3], "1", "the token lease (1000 - 3 x {EST}) is not low: only the request bucket");
    assert!(parts[4].ends_with(":r"));
    // Redis's bucket is empty: a 429 with Redis's own time to refill.
    let short = webdis(r#"{"FCALL":[0,1,2500]}"#);
    assert_eq!(c.on_http_call_response(&h, 1, &short), Some(Flow::Refused));
    assert_eq!(code(&h), (429, "tenant_requests_per_minute".to_string()));
    assert_eq!(reply_header(&h, "retry-after").as_deref(), Some("3"));
}

#[test]
fn a_call_told_short_is_served_from_a_lease_the_ticker_topped_up_meanwhile() {
    // The lease is empty: the call asks Redis for its need and a lease.
    let (q, store, h, mut c) = waiting_fleet_call(
        r#"{"acme": {"requests_per_minute": 60, "requests_burst": 100}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"requests": 3}}"#,
    );
    // Meanwhile the ticker's own ask took Redis's last 2 calls into this replica's lease, so
    // the call's ask finds Redis short: it is served from the lease, which keeps 1.
    update_scope(&store, "aigw.q.t.acme", |rec| {
        Leased::Requests.credit(rec, 2 * UNITS, 1_000_000);
        Ok(())
    });
    let short = webdis(r#"{"FCALL":[0,1,2500]}"#);
    assert_eq!(c.on_http_call_response(&h, 1, &short), Some(Flow::Continue));
    assert!(h.reply().is_none());
    let left = || lease(read_record(&store, "aigw.q.t.acme").requests);
    assert_eq!(left(), UNITS);
    // The next call spends the last one; the one after asks again and, Redis still short and the
    // lease empty, is refused with Redis's time to refill.
    assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&call_on(&store), false), Flow::Continue);
    assert_eq!(left(), 0);
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(c.on_http_call_response(&h, 1, &short), Some(Flow::Refused));
    assert_eq!(code(&h), (429, "tenant_requests_per_minute".to_string()));
}

#[test]
fn a_fleet_store_that_cannot_be_reached_serves_in_the_configured_mode() {
    let tenants = r#"{"acme": {"requests_per_minute": 6, "requests_burst": 6}}"#;
    for (mode, admitted) in [("local", 2), ("open", 5), ("closed", 0)] {
        let q = fleet_quota(
            tenants,
            &format!(r#"{{"cluster": "aigw_fleet", "unavailable": "{mode}", "expected_replicas": 3}}"#),
        );
        let store = FakeHost::new();
        store.now.set(1_000_000);
        init_store(&store);
        let h = call_on(&store);
        let mut c = QuotaCall::new(q.clone());
        assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
        // Webdis's error (an ACL refusal, Redis down) is never a grant.
        let flow = c.on_http_call_response(&h, 1, &webdis(r#"{"FCALL":[false,"ERR Connection refused"]}"#)).unwrap();
        let mut n = u32::from(flow == Flow::Continue);
        assert_eq!(h.property_string(&[headers::PROP_QUOTA_FLAGS]), Some(format!("fleet_unavailable:{mode}")));
        if mode == "closed" {
            assert_eq!(code(&h), (503, "quota_unavailable".to_string()));
            assert_eq!(reply_header(&h, "retry-after").as_deref(), Some("1"));
        }
        // Until the retry time, calls make no call to Redis: local gives each replica 6 / 3.
        for _ in 0..4 {
            let h = call_on(&store);
            if QuotaCall::new(q.clone()).on_request_headers(&h, false) == Flow::Continue {
                n += 1;
            }
            assert!(h.http_calls.borrow().is_empty(), "{mode}");
        }
        assert_eq!(n, admitted, "{mode}");
        // After it, the fleet is tried again.
        store.now.set(1_001_001);
        let h = call_on(&store);
        assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h, false), Flow::Pause, "{mode}");
    }
}

#[test]
fn a_fleet_lease_takes_back_a_refund_and_pays_a_debt() {
    let (_, store, h, mut c) = waiting_fleet_call(
        r#"{"acme": {"tokens_per_minute": 60000, "tokens_burst": 100000}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"tokens": 1000}}"#,
    );
    assert_eq!(
        c.on_http_call_response(&h, 1, &webdis(&format!(r#"{{"FCALL":[1,{}]}}"#, 1000 * 60_000))),
        Some(Flow::Continue)
    );
    let level = || {
        let b = store.shared_get("aigw.q.t.acme").unwrap().0.unwrap();
        lease(ScopeRecord::decode(&b).tokens) / UNITS
    };
    assert_eq!(level(), 1000 - EST as i64);
    // The call used 2000 tokens more than estimated: the lease is in debt, paid by the next grant.
    c.charges[0].correct(&h, 0, false, 2000, 0);
    assert_eq!(level(), 1000 - EST as i64 - 2000);
    c.charges[0].correct(&h, 0, false, -500, 0);
    assert_eq!(level(), 1000 - EST as i64 - 1500);
}

#[test]
fn a_waiting_call_is_admitted_on_its_own_grant_which_no_other_call_can_spend_first() {
    let q = fleet_quota(
        r#"{"acme": {"tokens_per_minute": 60000, "tokens_burst": 100000}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"tokens": 1}}"#,
    );
    let store = FakeHost::new();
    init_store(&store);
    // The lease holds half a call.
    update_scope(&store, "aigw.q.t.acme", |rec| {
        rec.tokens = Some(State { units: (EST as i64 / 2) * UNITS, updated_ms: 0 });
        Ok::<(), ()>(())
    });
    // Two calls find it short and both wait, each asking Redis for its whole cost.
    let (ha, hb) = (call_on(&store), call_on(&store));
    let (mut a, mut b) = (QuotaCall::new(q.clone()), QuotaCall::new(q.clone()));
    assert_eq!(a.on_request_headers(&ha, false), Flow::Pause);
    assert_eq!(b.on_request_headers(&hb, false), Flow::Pause);
    for h in [&ha, &hb] {
        let (_, parts) = top_up_of(h);
        assert_eq!(parts[7], (EST * 60_000).to_string(), "need: the whole cost");
        assert_eq!(parts[6], (100_000u64 * 60_000).to_string(), "the capacity, in units");
    }
    let grant = webdis(&format!(r#"{{"FCALL":[1,{}]}}"#, EST * 60_000));
    // Each is admitted on its own grant, in one top-up: neither spends the other's.
    assert_eq!(a.on_http_call_response(&ha, 1, &grant), Some(Flow::Continue));
    assert_eq!(b.on_http_call_response(&hb, 1, &grant), Some(Flow::Continue));
    let level = lease(ScopeRecord::decode(&store.shared_get("aigw.q.t.acme").unwrap().0.unwrap()).tokens);
    assert_eq!(level, (EST as i64 / 2) * UNITS, "the half call's worth is still there");
}

#[test]
fn a_fleet_budget_is_leased_in_pico_usd_refunded_at_settlement_and_refused_with_the_fleets_figures() {
    let q = fleet_quota(
        r#"{"acme": {"budget": {"daily_usd": "10.00", "monthly_usd": "100.00"}}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"usd": "0.50"}, "expected_replicas": 2}"#,
    );
    let store = FakeHost::new();
    store.now.set(1_767_225_600_000 + 3_600_000); // 2026-01-01 01:00 UTC
    init_store(&store);
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    let (path, parts) = top_up_of(&h);
    let (day, month) = (period_id(Period::Day, store.now.get()), period_id(Period::Month, store.now.get()));
    assert!(path.contains(&format!("/aigw:t%2eacme:bd{day}/aigw:t%2eacme:bm{month}/")), "{path}");
    let cost = q.upper_bound_cost(&c.estimate, &["claude-haiku-4-5-20251001"]).unwrap();
    let pico = |usd: u64| usd * 1_000_000_000_000;
    // The day's budget: no refill, its capacity in pico-USD, the call's upper bound needed, a
    // lease of USD 0.50 wanted, kept past the day's end.
    assert_eq!(parts[6..10], ["0", &pico(10).to_string(), &cost.to_string(), &(pico(1) / 2).to_string()]);
    assert!(parts[10].parse::<u64>().unwrap() > 23 * 3_600_000);
    let grant = webdis(&format!(r#"{{"FCALL":[1,{},{}]}}"#, pico(1) / 2, pico(1) / 2));
    assert_eq!(c.on_http_call_response(&h, 1, &grant), Some(Flow::Continue));
    let left = || {
        let r = ScopeRecord::decode(&store.shared_get("aigw.q.t.acme").unwrap().0.unwrap());
        (r.day.spent_in(day), r.month.spent_in(month))
    };
    let lease = u128::from(pico(1) / 2);
    assert_eq!(left(), (lease - cost, lease - cost));
    // Settled to its real cost: the rest of the reservation goes back to the lease.
    c.charges[0].correct(&h, store.now.get(), false, 0, 1_000);
    assert_eq!(left(), (lease - 1_000, lease - 1_000));
    // The fleet's day budget is spent: Redis holds USD 0.000001; a 402 with the fleet's figures.
    update_scope(&store, "aigw.q.t.acme", |rec| {
        rec.day = BudgetState { period: day, spent: 0 };
        Ok::<(), ()>(())
    });
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    let short = webdis(r#"{"FCALL":[0,1,-1,1000000]}"#);
    assert_eq!(c.on_http_call_response(&h, 1, &short), Some(Flow::Refused));
    assert_eq!(code(&h), (402, "tenant_daily_budget".to_string()));
    let msg = String::from_utf8_lossy(&h.reply().unwrap().body).into_owned();
    assert!(msg.contains("USD 10.0 (9.999999 USD spent or reserved)"), "{msg}");
}

#[test]
fn calls_in_flight_are_slots_held_in_the_fleet_and_a_full_fleet_refuses() {
    let q = fleet_quota(r#"{"acme": {"concurrent": 3}}"#, r#"{"cluster": "aigw_fleet", "expected_replicas": 2}"#);
    let store = FakeHost::new();
    store.now.set(1_000_000);
    init_store(&store);
    let slots = |body: &str| webdis(body);
    // The first call holds no slot: it asks Redis to hold one, and two to spare (of 3).
    let h = call_on(&store);
    let mut first = QuotaCall::new(q.clone());
    assert_eq!(first.on_request_headers(&h, false), Flow::Pause);
    let (path, parts) = top_up_of(&h);
    assert!(path.starts_with("/FCALL/aigw_slots/1/aigw:t%2eacme:f/"), "{path}");
    let replica = parts[5].clone();
    assert_eq!(replica.len(), 16, "the replica's id");
    assert_eq!(parts[6..10], ["1600", "grow", "3", "3"], "ttl, mode, want (1 + 2 spare), the limit");
    assert_eq!(first.on_http_call_response(&h, 1, &slots(r#"{"FCALL":[1,3]}"#)), Some(Flow::Continue));
    // Two more run on the slots held, with no call to Redis.
    let mut running = vec![first];
    for _ in 0..2 {
        let h = call_on(&store);
        let mut c = QuotaCall::new(q.clone());
        assert_eq!(c.on_request_headers(&h, false), Flow::Continue);
        assert!(h.http_calls.borrow().is_empty());
        running.push(c);
    }
    // A fourth asks for more; the other replicas hold the rest: refused, 429.
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    let (_, parts) = top_up_of(&h);
    assert_eq!(parts[5], replica, "the same replica id");
    assert_eq!(parts[8..10], ["6", "3"], "what it needs: beyond its share (3 / 2) it asks no more");
    assert_eq!(c.on_http_call_response(&h, 1, &slots(r#"{"FCALL":[1,3]}"#)), Some(Flow::Refused));
    assert_eq!(code(&h), (429, "tenant_concurrent_requests".to_string()));
    // One ends: its slot is this replica's to reuse, with no call to Redis.
    let done = running.remove(0);
    done.charges[0].correct(&h, 0, false, 0, 0);
    let h = call_on(&store);
    assert_eq!(QuotaCall::new(q.clone()).on_request_headers(&h, false), Flow::Continue);
    assert!(h.http_calls.borrow().is_empty());
}

fn fleet_providers(providers: &str, fleet: &str) -> Rc<Quota> {
    let cfg: QuotaConfig = crate::config::from_str(&format!(
        r#"{{"tenants": {{}}, "providers": {providers}, "fleet": {fleet}, "price_book": {BOOK}}}"#
    ))
    .unwrap();
    Rc::new(Quota::compile(&cfg).unwrap())
}

/// An attempt to `anthropic` on a worker sharing `store`, with the listener's estimate.
fn provider_attempt(store: &FakeHost) -> FakeHost {
    let h = store.worker();
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "anthropic");
    h.set_property(headers::PROP_QUOTA_ESTIMATE, "14 100");
    h
}

/// `anthropic`'s buckets as fleet leases (requests 60 a minute, burst 60; tokens 60,000, burst
/// 100,000; leases of 2 and 1,000) over a fresh store at 1,000,000 ms, and a first attempt,
/// which finds no lease and waits for its top-up: (quota, store, its host, the attempt).
fn waiting_provider_attempt() -> (Rc<Quota>, FakeHost, FakeHost, ProviderAttempt) {
    let q = fleet_providers(
        r#"{"anthropic": {"requests_per_minute": 60, "requests_burst": 60, "tokens_per_minute": 60000, "tokens_burst": 100000}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"requests": 2, "tokens": 1000}}"#,
    );
    let store = FakeHost::new();
    store.now.set(1_000_000);
    init_store(&store);
    let h = provider_attempt(&store);
    let mut a = ProviderAttempt::new(q.clone());
    assert_eq!(a.on_request_headers(&h), Flow::Pause);
    (q, store, h, a)
}

#[test]
fn provider_buckets_are_fleet_leases_topped_up_by_an_attempt_that_waits_and_settled_by_the_listener() {
    // The first attempt finds no lease: one top-up over both of the provider's buckets.
    let (q, store, h, mut a) = waiting_provider_attempt();
    let record = || ScopeRecord::decode(&store.shared_get("aigw.q.p.anthropic").unwrap().0.unwrap());
    assert!(a.waits());
    let (path, parts) = top_up_of(&h);
    assert!(path.starts_with("/FCALL/aigw_take/2/aigw:p%2eanthropic:r/aigw:p%2eanthropic:t/"), "{path}");
    let units = |t: u64| (t * 60_000).to_string();
    assert_eq!(parts[6..11], ["60", &units(60), &units(1), &units(2), "0"]);
    assert_eq!(parts[11..16], ["60000", &units(100000), &units(EST), &units(1000), "0"]);
    // From now on the ticker keeps the provider's lease topped up too.
    let active = String::from_utf8(store.shared_get(fleet::ACTIVE_KEY).unwrap().0.unwrap()).unwrap();
    assert!(active.contains("p.anthropic\tr\taigw:p.anthropic:r\t60\t60"), "{active}");
    let grant = webdis(&format!(r#"{{"FCALL":[1,{},{}]}}"#, units(2), units(1000)));
    assert_eq!(a.on_http_call_response(&h, 9, &grant), None, "not its call");
    assert_eq!(a.on_http_call_response(&h, 1, &grant), Some(Flow::Continue));
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).as_deref(), Some("anthropic"));
    assert_eq!((lease(record().requests) / UNITS, lease(record().tokens) / UNITS), (1, 1000 - EST as i64));
    // The listener settles the attempt that answered to its usage (30 tokens), in the lease.
    let l = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&l, false), Flow::Continue);
    l.set_property(headers::PROP_QUOTA_PROVIDERS, "anthropic");
    l.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c.on_response_headers(&l, true);
    let used = Usage { input: 20, cached_input: 0, output: 10, reasoning: 0, cache_write: 0, cache_write_1h: 0 };
    l.set_property(
        headers::PROP_SETTLED,
        &Settled { usage: Some(used), estimated: false, cost_pico: Some(1) }.encode(),
    );
    c.on_log(&l);
    assert_eq!(lease(record().tokens) / UNITS, 1000 - 30);
    // The second attempt spends the lease with no call out.
    let h = provider_attempt(&store);
    assert_eq!(ProviderAttempt::new(q.clone()).on_request_headers(&h), Flow::Continue);
    assert!(h.http_calls.borrow().is_empty());
    // The third tops up, and Redis's bucket is empty: a final 429 with Redis's time to refill.
    let h = provider_attempt(&store);
    let mut a = ProviderAttempt::new(q.clone());
    assert_eq!(a.on_request_headers(&h), Flow::Pause);
    assert_eq!(a.on_http_call_response(&h, 1, &webdis(r#"{"FCALL":[0,1,2500]}"#)), Some(Flow::Refused));
    assert_eq!(code(&h), (429, "provider_requests_per_minute".to_string()));
    assert_eq!(reply_header(&h, "retry-after").as_deref(), Some("3"));
    assert!(reply_header(&h, "x-ratelimit-limit-requests").is_none(), "no figures for a shared bucket");
    // Webdis refusing (an ACL, Redis down) is never a grant: the configured mode serves, and the
    // listener settles the attempt in that mode's own bucket.
    let h = provider_attempt(&store);
    let mut a = ProviderAttempt::new(q.clone());
    assert_eq!(a.on_request_headers(&h), Flow::Pause);
    let down = crate::host::HttpAnswer { status: 401, headers: vec![], body: vec![] };
    assert_eq!(a.on_http_call_response(&h, 1, &down), Some(Flow::Continue));
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).as_deref(), Some("anthropic~local"));
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_FLAGS]).as_deref(), Some("fleet_unavailable:local"));
    let solo = |s: &FakeHost| ScopeRecord::decode(&s.shared_get("aigw.q.p.anthropic.solo").unwrap().0.unwrap());
    let replicas = q.fleet.as_ref().unwrap().expected_replicas;
    let share =
        unavailable_scope(&q.provider("anthropic").unwrap(), Unavailable::Local, replicas).limits.tokens.unwrap();
    let level = |s: &FakeHost| share.peek(solo(s).tokens, 1_000_000).0;
    assert_eq!(level(&store), 100000 / replicas - EST, "the replica's own share was charged its estimate");
    let l = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&l, false), Flow::Continue);
    l.set_property(headers::PROP_QUOTA_PROVIDERS, "anthropic~local");
    l.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c.on_response_headers(&l, true);
    l.set_property(
        headers::PROP_SETTLED,
        &Settled { usage: Some(used), estimated: false, cost_pico: Some(1) }.encode(),
    );
    c.on_log(&l);
    assert_eq!(level(&store), 100000 / replicas - 30, "settled in that share");
    assert!(charged_provider_scope(&q, "anthropic~open").is_none(), "nothing to settle");
}

#[test]
fn an_attempt_told_short_is_served_from_a_provider_lease_the_ticker_topped_up_meanwhile() {
    let (_, store, h, mut a) = waiting_provider_attempt();
    // The ticker's ask took Redis's last call (and tokens) into the lease meanwhile.
    update_scope(&store, "aigw.q.p.anthropic", |rec| {
        Leased::Requests.credit(rec, UNITS, 1_000_000);
        Leased::Tokens.credit(rec, 1000 * UNITS, 1_000_000);
        Ok(())
    });
    assert_eq!(a.on_http_call_response(&h, 1, &webdis(r#"{"FCALL":[0,1,2500]}"#)), Some(Flow::Continue));
    assert!(h.reply().is_none());
    let rec = ScopeRecord::decode(&store.shared_get("aigw.q.p.anthropic").unwrap().0.unwrap());
    assert_eq!((lease(rec.requests), lease(rec.tokens) / UNITS), (0, 1000 - EST as i64));
}

#[test]
fn a_closed_fleet_refuses_a_provider_attempt_and_an_open_one_admits_it() {
    for (mode, flow) in [("closed", Flow::Refused), ("open", Flow::Continue)] {
        let q = fleet_providers(
            r#"{"anthropic": {"requests_per_minute": 60}}"#,
            &format!(r#"{{"cluster": "aigw_fleet", "unavailable": "{mode}"}}"#),
        );
        let store = FakeHost::new();
        store.now.set(1_000_000);
        init_store(&store);
        store.shared_set(fleet::DOWN_KEY, &2_000_000u64.to_le_bytes(), None).unwrap();
        let h = provider_attempt(&store);
        assert_eq!(ProviderAttempt::new(q).on_request_headers(&h), flow, "{mode}");
        assert!(h.http_calls.borrow().is_empty(), "Redis is down: no call out");
        if mode == "closed" {
            assert_eq!(code(&h), (503, "quota_unavailable".to_string()));
        } else {
            assert_eq!(h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).as_deref(), Some("anthropic~open"));
        }
    }
}

#[test]
fn a_fleet_budget_past_its_soft_threshold_fleet_wide_warns_every_call_spending_that_periods_lease() {
    let q = fleet_quota(
        r#"{"acme": {"budget": {"daily_usd": "10.00", "soft_percent": 80}}}"#,
        r#"{"cluster": "aigw_fleet", "lease": {"usd": "0.50"}}"#,
    );
    let store = FakeHost::new();
    store.now.set(1_767_225_600_000 + 3_600_000);
    init_store(&store);
    let pico = |usd: u64| usd * 1_000_000_000_000;
    let run = |left_in_redis: u64| {
        let h = call_on(&store);
        let mut c = QuotaCall::new(q.clone());
        assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
        let grant = webdis(&format!(r#"{{"FCALL":[1,{},{left_in_redis}]}}"#, pico(1) / 2));
        assert_eq!(c.on_http_call_response(&h, 1, &grant), Some(Flow::Continue));
        h.response_headers.borrow_mut().push((":status".into(), "200".into()));
        c.on_response_headers(&h, true);
        h.response_header("x-aigw-budget-warning")
    };
    // Redis holds USD 5 of 10 after the grant: half spent (or held), no warning.
    assert_eq!(run(pico(5)), None);
    // Spend the lease; the next grant leaves USD 1.50 in Redis: 85% spent fleet-wide.
    update_scope(&store, "aigw.q.t.acme", |rec| {
        rec.day.spent = 0;
        Ok::<(), ()>(())
    });
    let warned = run(pico(3) / 2).expect("a warning");
    assert!(warned.contains("daily budget is 80% used or more"), "{warned}");
    // The calls that spend this lease after it warn too, with no call to Redis.
    let h = call_on(&store);
    let mut c = QuotaCall::new(q.clone());
    assert_eq!(c.on_request_headers(&h, false), Flow::Continue);
    assert!(h.http_calls.borrow().is_empty());
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    c.on_response_headers(&h, true);
    assert!(h.response_header("x-aigw-budget-warning").is_some());
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_FLAGS]).as_deref(), Some("budget_soft_limit"));
    // The next day starts without it.
    store.now.set(store.now.get() + 86_400_000);
    update_scope(&store, "aigw.q.t.acme", |rec| {
        rec.day.spent = 0;
        Ok::<(), ()>(())
    });
    assert_eq!(run(pico(9)), None);
}
