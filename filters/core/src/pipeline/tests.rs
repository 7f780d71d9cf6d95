use super::*;
use crate::auth::keys::digest_hex;
use crate::host::FakeHost;

const BOOK: &str = include_str!("../../../../envoy/price-book.json");

fn config() -> GatewayConfig {
    crate::config::from_str(&format!(
        r#"{{
        "auth": {{"keys": [{{"id": "k", "tenant": "acme", "zone": "global", "sha256": "{}"}}],
                  "providers": {{"anthropic": {{"api": "anthropic", "key_env": "ANT"}},
                                 "openai": {{"api": "openai", "key_env": "OAI"}},
                                 "bedrock": {{"api": "bedrock", "key_env": "AWS_ID", "secret_env": "AWS_SECRET"}}}}}},
        "route": {{"aliases": {{"chat": {{"chain": "chain_chat", "steps": [
                      {{"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}},
                      {{"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}}]}},
                    "br": {{"chain": "chain_br", "steps": [{{"provider": "bedrock", "model": "anthropic.claude-x"}}]}}}},
                   "zones": {{"global": ["*"]}},
                   "providers": {{"anthropic": {{"api": "anthropic"}}, "openai": {{"api": "openai"}},
                                  "bedrock": {{"api": "bedrock"}}}}}},
        "quota": {{"tenants": {{"acme": {{"requests_per_minute": 1, "requests_burst": 2}}}}, "price_book": {BOOK}}},
        "audit": {{"price_book": {BOOK}}}}}"#,
        digest_hex("aigw_sk_acme")
    ))
    .unwrap()
}

fn listener() -> Rc<Listener> {
    Rc::new(Listener::compile(config()).unwrap())
}

const BODY: &str = r#"{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;

fn caller(store: &FakeHost, key: &str, body: &str) -> FakeHost {
    let h = store
        .worker()
        .with_request_header(":method", "POST")
        .with_request_header(":path", "/v1/chat/completions")
        .with_request_header("authorization", &format!("Bearer {key}"))
        .with_request_header("x-request-id", "rid");
    *h.request_body.borrow_mut() = body.as_bytes().to_vec();
    h
}

fn audit_line(h: &FakeHost) -> crate::wire::tree::Value {
    crate::wire::from_slice(&h.property(&[headers::PROP_AUDIT]).unwrap()).unwrap()
}

/// Runs a call through the listener's stages: the request, then (when it was let through) the
/// answer `status`/`body`, then the end of the call.
fn run(store: &FakeHost, key: &str, status: &str, answer: &str) -> FakeHost {
    let h = caller(store, key, BODY);
    let mut c = ListenerCall::new(&h, listener());
    let mut flow = c.on_request_headers(&h, false);
    if flow == Flow::Pause {
        flow = c.on_request_body(&h, BODY.len(), true);
    }
    if flow == Flow::Continue {
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), status.into()));
        r.push(("content-type".into(), "application/json".into()));
        r.push(("x-envoy-attempt-count".into(), "1".into()));
        r.push((headers::PROVIDER.into(), "anthropic".into()));
        r.push((headers::MODEL.into(), "claude-haiku-4-5-20251001".into()));
    } else {
        // The stage's own answer, as Envoy encodes it back through the stages before it.
        let reply = h.reply().unwrap();
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), reply.status.to_string()));
        r.extend(reply.headers.iter().cloned());
        *h.response_body.borrow_mut() = reply.body.clone();
    }
    let held = c.on_response_headers(&h, false);
    if flow == Flow::Continue {
        h.set_property_bytes(
            headers::PROP_ATTEMPTS,
            &crate::handed::attempts(
                r#"[{"provider":"anthropic","region":null,"model":"claude-haiku-4-5-20251001","status":200,"latency_ms":1,"error_class":null}]"#,
            ),
        );
        *h.response_body.borrow_mut() = answer.as_bytes().to_vec();
    }
    assert!(held == Flow::Pause || flow != Flow::Continue, "a JSON answer is held until complete");
    c.on_response_body(&h, h.response_body.borrow().len(), true);
    c.on_log(&h);
    h
}

const ANSWER: &str = r#"{"id":"x","model":"claude-haiku-4-5-20251001","usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}"#;

#[test]
fn a_call_runs_every_stage_in_one_context() {
    let store = FakeHost::new();
    let h = run(&store, "aigw_sk_acme", "200", ANSWER);
    // route chose the chain, quota admitted and told the caller, audit recorded and priced.
    assert_eq!(h.request_header(headers::CHAIN).as_deref(), Some("chain_chat"));
    assert!(h.request_header("authorization").is_none(), "the caller's key never goes upstream");
    assert_eq!(h.response_header("x-ratelimit-remaining-requests").as_deref(), Some("1"));
    assert_eq!(h.response_header("x-aigw-tokens-output").as_deref(), Some("3"));
    let rec = audit_line(&h);
    assert_eq!(
        (rec["outcome"].as_str(), rec["tenant"].as_str(), rec["alias"].as_str()),
        (Some("ok"), Some("acme"), Some("chat"))
    );
    assert!(rec["cost_usd"].as_str().is_some());
}

#[test]
fn each_refusal_stops_the_stages_after_it_and_is_still_audited() {
    let store = FakeHost::new();
    // auth: no quota charged, no routing.
    let h = run(&store, "aigw_sk_nobody", "200", ANSWER);
    assert_eq!(h.reply().map(|r| r.status), Some(401));
    assert!(h.request_header(headers::CHAIN).is_none());
    assert!(h.response_header("x-ratelimit-limit-requests").is_none());
    assert_eq!(audit_line(&h)["outcome"], "refused_auth");
    assert_eq!(audit_line(&h)["error_code"], "invalid_api_key", "the code the caller got");
    // quota: two calls fit the burst, the third is refused by quota, and audited as such.
    run(&store, "aigw_sk_acme", "200", ANSWER);
    run(&store, "aigw_sk_acme", "200", ANSWER);
    let h = run(&store, "aigw_sk_acme", "200", ANSWER);
    assert_eq!(h.reply().map(|r| r.status), Some(429));
    assert_eq!(audit_line(&h)["outcome"], "refused_quota");
    assert_eq!(audit_line(&h)["error_code"], "tenant_requests_per_minute");
    let served = run(&FakeHost::new(), "aigw_sk_acme", "200", ANSWER);
    assert_eq!(served.reply(), None);
    assert!(audit_line(&served)["error_code"].is_null(), "no error of the gateway's own");
}

#[test]
fn a_route_refusal_never_reaches_quota() {
    let store = FakeHost::new();
    let h = caller(&store, "aigw_sk_acme", r#"{"model":"nope","messages":[]}"#);
    let mut c = ListenerCall::new(&h, listener());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(c.on_request_body(&h, 31, true), Flow::Refused);
    assert_eq!(h.reply().map(|r| r.status), Some(404));
    h.response_headers.borrow_mut().push((":status".into(), "404".into()));
    c.on_response_headers(&h, false);
    // Not charged: the bucket still has its whole burst for the next call.
    assert!(h.response_header("x-ratelimit-remaining-requests").is_none());
    let next = run(&store, "aigw_sk_acme", "200", ANSWER);
    assert_eq!(next.response_header("x-ratelimit-remaining-requests").as_deref(), Some("1"));
}

fn upstream() -> Rc<Upstream> {
    let env = |n: &str| Some(format!("key-of-{n}"));
    Rc::new(Upstream::compile(config(), &env).unwrap())
}

fn attempt_host(alias: &str, provider: &str) -> FakeHost {
    let h = FakeHost::new()
        .with_request_header(":method", "POST")
        .with_request_header(":path", "/v1/chat/completions")
        .with_request_header(":authority", "provider.example")
        .with_request_header("authorization", "Bearer aigw_sk_acme")
        .with_property(&[headers::PROP_ALIAS], alias)
        .with_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "provider"], provider)
        .with_property(&["xds", "upstream_host_metadata", "filter_metadata", "aigw", "region"], "us-east-1");
    *h.request_body.borrow_mut() = BODY.replace("\"chat\"", &format!("\"{alias}\"")).into_bytes();
    h
}

#[test]
fn an_attempt_reads_its_request_headers_once_per_callback_and_replaces_any_credential() {
    // The route stage's allow-list already dropped the caller's key: the credential stage reads
    // no header list of its own.
    let h = attempt_host("chat", "anthropic").with_request_header("x-api-key", "an earlier attempt's key");
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    let before = h.header_list_reads.get();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(h.header_list_reads.get() - before, 0);
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("key-of-ANT"));
    assert!(h.request_header("authorization").is_none());

    // An operator who forwards a credential header by name still never sends the caller's.
    let mut cfg = config();
    if let Some(r) = cfg.route.as_mut() {
        r.forward_request_headers = vec!["X-Api-Key".into(), "x-fake-fault".into()];
    }
    let env = |n: &str| Some(format!("key-of-{n}"));
    let up = Rc::new(Upstream::compile(cfg, &env).unwrap());
    let h = attempt_host("chat", "openai").with_request_header("x-api-key", "the caller's key");
    let mut a = AttemptCall::new(up);
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(h.request_header("authorization").as_deref(), Some("Bearer key-of-OAI"));
    assert!(h.request_header("x-api-key").is_none(), "forwarded by name, removed as a credential");
}

#[test]
fn an_attempt_translates_then_carries_its_providers_key() {
    let h = attempt_host("chat", "anthropic");
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("key-of-ANT"));
    assert!(h.request_header("authorization").is_none());
    h.response_headers.borrow_mut().push((":status".into(), "401".into()));
    a.on_response_headers(&h, false);
    assert!(h.shared.borrow().keys().any(|k| k.contains("anthropic")), "a rejected key is marked bad");
}

#[test]
fn an_attempt_sets_only_the_headers_that_change() {
    let writes = |h: &FakeHost, name: &str| h.header_writes.borrow().iter().filter(|w| *w == name).count();
    // The caller's content-type is what every attempt sends: neither removed nor set again.
    let h = attempt_host("chat", "anthropic")
        .with_request_header("content-type", "application/json")
        .with_request_header("content-length", "99");
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(writes(&h, "request content-type"), 0);
    assert_eq!(h.request_header("content-type").as_deref(), Some("application/json"));
    // The body's length is set once, with the translated body.
    assert_eq!(writes(&h, "request content-length"), 1);
    assert_eq!(h.request_header("content-length"), Some(h.request_body.borrow().len().to_string()));
    // A JSON answer, translated whole: its content-type stays, its length is set once, to the
    // translation's.
    let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":3}}"#;
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), answer.len().to_string()),
    ]);
    *h.response_body.borrow_mut() = answer.as_bytes().to_vec();
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    assert_eq!(writes(&h, "response content-length"), 0, "the answer is held whole: its length is set with it");
    assert_eq!(a.on_response_body(&h, answer.len(), true), Flow::Continue);
    let out = h.response_body.borrow().len().to_string();
    assert!(out != answer.len().to_string(), "translated");
    assert_eq!(h.response_header("content-length"), Some(out));
    assert_eq!((writes(&h, "response content-length"), writes(&h, "response content-type")), (1, 0));
    assert_eq!(h.response_header("content-type").as_deref(), Some("application/json"));

    // Any other content-type is replaced, on the request and on the answer.
    let h = attempt_host("chat", "anthropic").with_request_header("content-type", "application/json; charset=utf-8");
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(writes(&h, "request content-type"), 1);
    assert_eq!(h.request_header("content-type").as_deref(), Some("application/json"));
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json; charset=utf-8".to_string()),
    ]);
    *h.response_body.borrow_mut() = answer.as_bytes().to_vec();
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    assert_eq!(a.on_response_body(&h, answer.len(), true), Flow::Continue);
    assert_eq!(h.response_header("content-type").as_deref(), Some("application/json"));
    assert_eq!(h.response_header("content-length"), Some(h.response_body.borrow().len().to_string()));
}

#[test]
fn a_bedrock_attempt_is_signed_over_its_translated_body() {
    let h = attempt_host("br", "bedrock");
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    let sent = h.request_body.borrow().clone();
    assert!(String::from_utf8_lossy(&sent).contains("inferenceConfig"), "translated to Converse");
    assert_eq!(h.request_header("x-amz-content-sha256").unwrap(), crate::auth::sigv4::sha256_hex(&sent));
    assert!(h.request_header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=key-of-AWS_ID/"));
}

#[test]
fn a_stage_left_out_is_not_run() {
    // Only auth, as the auth_key_swap filter alone.
    let cfg: GatewayConfig = crate::config::from_str(&format!(
        r#"{{"auth": {{"keys": [{{"id": "k", "tenant": "acme", "sha256": "{}"}}]}}}}"#,
        digest_hex("aigw_sk_acme")
    ))
    .unwrap();
    let l = Rc::new(Listener::compile(cfg).unwrap());
    let h = caller(&FakeHost::new(), "aigw_sk_acme", BODY);
    let mut c = ListenerCall::new(&h, l);
    assert_eq!(c.on_request_headers(&h, false), Flow::Continue, "no route stage to hold the headers");
    assert!(h.property(&[headers::PROP_IDENTITY]).is_some());
    c.on_log(&h);
    assert!(h.property(&[headers::PROP_AUDIT]).is_none());
}

#[test]
fn a_whole_call_crosses_between_contexts_in_one_entry_each_way() {
    use crate::call_state::{handed_on, Side, Stateful, Writers};
    use crate::host::Callbacks;
    let store = FakeHost::new();
    let h = caller(&store, "aigw_sk_acme", BODY);
    let mut c = Stateful::new(ListenerCall::new(&h, listener()), Side::Listener, Writers::One);
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(h.property_writes.get(), 0, "nothing written while the listener holds the request");
    assert_eq!(c.on_request_body(&h, BODY.len(), true), Flow::Continue);
    assert_eq!(h.property_writes.get(), 1, "the listener's entry, as the request goes on");
    let listener_reads = h.property_reads.get();
    // What the attempt knows of the call is the listener's one entry.
    let a = FakeHost { shared: store.shared.clone(), ..FakeHost::default() };
    *a.request_headers.borrow_mut() = h.request_headers.borrow().clone();
    *a.request_body.borrow_mut() = h.request_body.borrow().clone();
    *a.properties.borrow_mut() = h.properties.borrow().clone();
    for (k, v) in [("provider", "anthropic"), ("region", "us-east-1")] {
        a.properties
            .borrow_mut()
            .insert(format!("xds.upstream_host_metadata.filter_metadata.aigw.{k}"), v.as_bytes().to_vec());
    }
    let mut t = Stateful::new(AttemptCall::new(upstream()), Side::Attempt, Writers::One);
    assert_eq!(t.on_request_headers(&a, false), Flow::Pause);
    assert_eq!(a.property_writes.get(), 0, "nothing written while the attempt holds the request");
    let n = a.request_body.borrow().len();
    assert_eq!(t.on_request_body(&a, n, true), Flow::Continue);
    assert_eq!(a.property_writes.get(), 1, "the attempt's entry, as the request goes on");
    assert_eq!(a.request_header("x-api-key").as_deref(), Some("key-of-ANT"), "translated, and its key set");
    let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":3}}"#;
    a.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    *a.response_body.borrow_mut() = answer.as_bytes().to_vec();
    t.on_response_headers(&a, false);
    t.on_response_body(&a, answer.len(), true);
    // The attempt read the listener's entry, its own side's (earlier attempts), and its host's
    // metadata (provider and region in one read): three reads for everything, once each.
    assert_eq!(a.property_reads.get(), 3, "the attempt's property reads");
    assert_eq!(a.property_writes.get(), 3, "the attempt writes only its side's entry, once a callback");
    // Back on the listener.
    for (k, v) in a.properties.borrow().iter() {
        h.properties.borrow_mut().insert(k.clone(), v.clone());
    }
    *h.response_headers.borrow_mut() = a.response_headers.borrow().clone();
    h.response_headers.borrow_mut().push(("x-envoy-attempt-count".into(), "1".into()));
    *h.response_body.borrow_mut() = a.response_body.borrow().clone();
    // The attempt read the answer's usage: the listener neither holds nor reads the answer.
    assert_eq!(c.on_response_headers(&h, false), Flow::Continue);
    assert_eq!(h.response_header("x-aigw-tokens-input").as_deref(), Some("8"));
    let n = h.response_body.borrow().len();
    c.on_response_body(&h, n, true);
    c.on_log(&h);
    // The listener never reads back what it said itself: it reads only the attempts' entry (once
    // per callback that needs it) and Envoy's attributes.
    assert_eq!(
        listener_reads, 0,
        "the request path reads nothing the listener set itself, nor the attempts' entry before any can exist"
    );
    assert!(h.property_reads.get() <= 6, "{} property reads on the listener", h.property_reads.get());
    let rec = audit_line(&h);
    assert_eq!((rec["outcome"].as_str(), rec["provider"].as_str()), (Some("ok"), Some("anthropic")));
    assert_eq!(rec["attempts"].as_array().map(Vec::len), Some(1));
    // The listener wrote its entry once, when the request went on to the attempts (not while it
    // held the request for its body, nor after the attempts, when no one else reads it), and
    // the audit record.
    assert_eq!(h.property_writes.get(), 2, "the listener's property writes");
    assert!(handed_on(&h, headers::PROP_SETTLED).is_none(), "kept in the listener's memory");
    let settled = crate::call_state::CallState { inner: &h, data: &c.data }.property(&[headers::PROP_SETTLED]);
    assert!(settled.is_some(), "audit settled the figure quota charges");
    // Only the audit record and the two entries exist in filter state.
    let mut keys: Vec<String> = h.properties.borrow().keys().filter(|k| k.starts_with("aigw_")).cloned().collect();
    keys.sort();
    assert_eq!(keys, ["aigw_audit", "aigw_call", "aigw_upstream"]);
}

/// The gateway filters' own form: one providers table and one price book for every stage.
fn one_table_config() -> crate::wire::tree::Value {
    crate::json!({
        "providers": {
            "anthropic": {"api": "anthropic", "key_env": "ANT", "limits": {"requests_per_minute": 5}},
            "openai": {"api": "openai", "key_env": "OAI"}
        },
        "price_book": crate::wire::from_str::<crate::wire::tree::Value>(BOOK).unwrap(),
        "auth": {"keys": [{"id": "k", "tenant": "acme", "sha256": digest_hex("aigw_sk_acme")}]},
        "route": {"aliases": {"chat": {"chain": "chain_chat", "steps": [
            {"provider": "anthropic", "model": "claude-haiku-4-5-20251001"},
            {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}]}}},
        "quota": {"tenants": {"acme": {"budget": {"daily_usd": "10"}}}},
        "audit": {}
    })
}

#[test]
fn one_providers_table_and_one_price_book_serve_every_stage() {
    let cfg: GatewayConfig = crate::config::from_value(one_table_config()).unwrap();
    let l = Listener::compile(cfg).unwrap();
    // The price book is compiled once and shared by quota and audit.
    let (q, a) = (l.quota.as_ref().unwrap(), l.audit.as_ref().unwrap());
    assert!(Rc::ptr_eq(q.prices.as_ref().unwrap(), &a.prices));
    assert!(l.route.as_ref().unwrap().providers.contains_key("openai"));
    // The attempts take the same table: credentials and the provider's own limits.
    let cfg: GatewayConfig = crate::config::from_value(one_table_config()).unwrap();
    let env = |n: &str| Some(format!("key-of-{n}"));
    let u = Upstream::compile(cfg, &env).unwrap();
    assert!(u.credentials.is_some());
    assert!(u.quota.as_ref().unwrap().provider("anthropic").is_some());
    assert!(u.quota.as_ref().unwrap().provider("openai").is_none(), "no limits, no buckets");
}

#[test]
fn a_second_providers_table_or_price_book_is_refused_by_name() {
    let mut v = one_table_config();
    v["route"]["providers"] = crate::json!({"openai": {"api": "openai"}});
    let e = Listener::compile(crate::config::from_value(v).unwrap()).err().unwrap();
    assert!(e.to_string().starts_with("gateway: invalid configuration at `route.providers`"), "{e}");
    let mut v = one_table_config();
    v["audit"]["price_book"] = v["price_book"].clone();
    let e = Listener::compile(crate::config::from_value(v).unwrap()).err().unwrap();
    assert_eq!((e.filter.as_str(), e.field.as_str()), ("gateway", "audit.price_book"));
    // Without the gateway's book, audit needs its own.
    let mut v = one_table_config();
    v.as_object_mut().unwrap().remove("price_book");
    v.as_object_mut().unwrap().remove("quota");
    let e = Listener::compile(crate::config::from_value(v).unwrap()).err().unwrap();
    assert_eq!((e.stage, e.field.as_str()), (Some("audit"), "price_book"));
    assert_eq!(e.clone().in_gateway().to_string(), "gateway: invalid configuration at `audit.price_book`: is required");
    assert_eq!(
        e.to_string(),
        "audit-emit: invalid configuration at `price_book`: is required",
        "as the filter alone says it"
    );
}

/// An attempt's context over the one-table configuration, for `provider` in `region`, with the
/// caller's identity (zone `zone`) handed on from the listener.
fn attempt_in(provider: &str, region: &str, zone: Option<&str>) -> (FakeHost, AttemptCall) {
    let mut v = one_table_config();
    v["route"]["zones"] = crate::json!({"eu": ["eu-west-1"], "global": ["*"]});
    v["providers"]["anthropic"]["limits"] = crate::json!({"requests_per_minute": 1, "requests_burst": 1});
    let env = |n: &str| Some(format!("key-of-{n}"));
    let u = Rc::new(Upstream::compile(crate::config::from_value(v).unwrap(), &env).unwrap());
    let h = attempt_host("chat", provider);
    h.properties
        .borrow_mut()
        .insert("xds.upstream_host_metadata.filter_metadata.aigw.region".into(), region.as_bytes().to_vec());
    if let Some(z) = zone {
        let id = format!(r#"{{"tenant":"acme","key_id":"k","key_fingerprint":"f","zone":"{z}","alias_scope":"*"}}"#);
        h.set_property_bytes(headers::PROP_IDENTITY, &crate::handed::identity(&id));
    }
    (h, AttemptCall::new(u))
}

#[test]
fn an_attempt_outside_the_callers_zone_is_refused_before_its_bucket_and_key() {
    let (h, mut a) = attempt_in("anthropic", "us-east-1", Some("eu"));
    assert_eq!(a.on_request_headers(&h, false), Flow::Refused);
    assert_eq!(h.reply().map(|r| r.status), Some(503));
    assert!(h.request_header("x-api-key").is_none(), "no credential on a call that is not sent");
    assert!(h.shared.borrow().keys().all(|k| !k.contains("rpm")), "the provider's bucket is not charged");
    // Inside the zone: sent, charged, and carrying the provider's key.
    let (h, mut a) = attempt_in("anthropic", "eu-west-1", Some("eu"));
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("key-of-ANT"));
}

#[test]
fn a_provider_bucket_that_is_empty_refuses_the_attempt_and_marks_its_record() {
    // The provider's buckets are charged once the translated body is known (after route).
    let (h, mut a) = attempt_in("anthropic", "eu-west-1", None);
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue, "the first call fits the burst of 1");
    // The next attempt to the same provider, sharing the store: refused with 429 before it is
    // sent, and its record says the gateway's limit stopped it.
    let (h2, mut a2) = attempt_in("anthropic", "eu-west-1", None);
    *h2.shared.borrow_mut() = h.shared.borrow().clone();
    assert_eq!(a2.on_request_headers(&h2, false), Flow::Pause);
    assert_eq!(a2.on_request_body(&h2, n, true), Flow::Refused);
    let reply = h2.reply().unwrap();
    assert_eq!(reply.status, 429);
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    assert!(h2.request_header("x-api-key").is_none());
    let rec = crate::audit::parse_attempts(h2.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!(rec.last().and_then(|r| r.error_class), Some(crate::audit::ErrorClass::ProviderLimit));
}

#[test]
fn a_refusal_at_the_messages_door_is_in_anthropics_shape() {
    let store = FakeHost::new();
    let body = r#"{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let h = caller(&store, "aigw_sk_acme", body);
    h.set_request_header(":path", Some("/v1/messages"));
    let mut c = ListenerCall::new(&h, listener());
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(c.on_request_body(&h, body.len(), true), Flow::Refused);
    let reply = h.reply().unwrap();
    let v: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    assert_eq!((reply.status, v["type"].as_str()), (404, Some("error")));
    assert_eq!(v["error"]["type"], "not_found_error");
}

/// `GET path` by the key `key` (with `anthropic-version` when `anthropic`), through the
/// listener's stages, its answer encoded back through them, to the end of the call.
fn list_models(store: &FakeHost, key: &str, path: &str, anthropic: bool) -> (FakeHost, Flow) {
    let h = store
        .worker()
        .with_request_header(":method", "GET")
        .with_request_header(":path", path)
        .with_request_header("authorization", &format!("Bearer {key}"));
    if anthropic {
        h.request_headers.borrow_mut().push(("anthropic-version".into(), "2023-06-01".into()));
    }
    let mut c = ListenerCall::new(&h, listener());
    let flow = c.on_request_headers(&h, true);
    if let Some(reply) = h.reply() {
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), reply.status.to_string()));
        r.extend(reply.headers.iter().cloned());
        *h.response_body.borrow_mut() = reply.body.clone();
    }
    c.on_response_headers(&h, false);
    c.on_response_body(&h, h.response_body.borrow().len(), true);
    c.on_log(&h);
    (h, flow)
}

#[test]
fn the_gateway_lists_the_aliases_a_key_may_use_and_audits_it_as_costing_nothing() {
    let store = FakeHost::new();
    let (h, flow) = list_models(&store, "aigw_sk_acme", "/v1/models", false);
    assert_eq!(flow, Flow::Refused, "answered by the gateway: nothing after the route stage runs");
    let reply = h.reply().unwrap();
    assert_eq!(reply.status, 200);
    let body: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, vec!["br", "chat"]);
    assert_eq!(body["object"], "list");
    let rec = audit_line(&h);
    assert_eq!(
        (rec["outcome"].as_str(), rec["route"].as_str(), rec["cost_usd"].as_str()),
        (Some("ok"), Some("models"), Some("0.0"))
    );
    assert_eq!(rec["flags"], crate::json!([]), "no usage missing, nothing unpriced");
    assert_eq!(rec["tenant"], "acme");
    // Nothing was charged: the quota stage never ran (its requests bucket holds 2).
    assert!(store.shared.borrow().keys().all(|k| !k.starts_with("aigw.q.t.")), "no bucket touched");

    // Anthropic's shape, and one model; a model the key may not see is a 404 in that shape.
    let (h, _) = list_models(&store, "aigw_sk_acme", "/v1/models?limit=1", true);
    let body: crate::wire::tree::Value = crate::wire::from_slice(&h.reply().unwrap().body).unwrap();
    assert_eq!((body["first_id"].as_str(), body["has_more"].as_bool()), (Some("br"), Some(true)));
    let (h, _) = list_models(&store, "aigw_sk_acme", "/v1/models/nope", true);
    let reply = h.reply().unwrap();
    let body: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    assert_eq!((reply.status, body["error"]["type"].as_str()), (404, Some("not_found_error")));
    assert_eq!(audit_line(&h)["outcome"], "refused_request");
    // A bad key asking as Anthropic's SDK does is refused in Anthropic's shape.
    let (h, _) = list_models(&store, "aigw_sk_nobody", "/v1/models", true);
    let reply = h.reply().unwrap();
    let body: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    assert_eq!((reply.status, body["error"]["type"].as_str()), (401, Some("authentication_error")));
    // Anything but GET is refused.
    let h = store
        .worker()
        .with_request_header(":method", "POST")
        .with_request_header(":path", "/v1/models")
        .with_request_header("authorization", "Bearer aigw_sk_acme");
    ListenerCall::new(&h, listener()).on_request_headers(&h, true);
    assert_eq!(h.reply().map(|r| r.status), Some(405));
}

#[test]
fn a_gemini_embeddings_attempt_is_translated_both_ways_and_billed_at_its_estimate() {
    let mut cfg = config();
    if let Some(r) = cfg.route.as_mut() {
        let alias: crate::route::Alias = crate::config::from_str(
            r#"{"kind": "embeddings", "chain": "chain_e", "steps": [{"provider": "gemini", "model": "gemini-embedding-001"}]}"#,
        )
        .unwrap();
        r.aliases.insert("e".into(), alias);
        r.providers.insert("gemini".into(), crate::config::from_str(r#"{"api": "gemini"}"#).unwrap());
    }
    if let Some(a) = cfg.auth.as_mut() {
        a.providers.insert("gemini".into(), crate::config::from_str(r#"{"api": "gemini", "key_env": "GEM"}"#).unwrap());
    }
    let env = |n: &str| Some(format!("key-of-{n}"));
    let up = Rc::new(Upstream::compile(cfg, &env).unwrap());
    let h = attempt_host("e", "gemini");
    h.properties.borrow_mut().insert(headers::PROP_DOOR.into(), b"embeddings".to_vec());
    *h.request_body.borrow_mut() =
        br#"{"model":"e","input":["one two","three"],"dimensions":2,"encoding_format":"base64"}"#.to_vec();
    let mut a = AttemptCall::new(up);
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1beta/models/gemini-embedding-001:batchEmbedContents"));
    assert_eq!(h.request_header("x-goog-api-key").as_deref(), Some("key-of-GEM"));
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!(
        sent,
        crate::json!({"requests": [
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one two"}]}, "outputDimensionality": 2},
            {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "three"}]}, "outputDimensionality": 2}]})
    );
    let answer = br#"{"embeddings": [{"values": [1.0, -1.0]}, {"values": [0.0, 0.25]}]}"#;
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    *h.response_body.borrow_mut() = answer.to_vec();
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    a.on_response_body(&h, answer.len(), true);
    let out: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    assert_eq!(out["data"][0]["embedding"], "AACAPwAAgL8=", "float32 little-endian, base64 as asked");
    assert_eq!(out["data"][1]["index"], 1);
    let estimate = out["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(estimate >= 3, "at least one token per word: {estimate}");
    // No token count from Gemini: billed at the estimate, and flagged.
    let usage = crate::wire::usage::Usage::decode(&handed_on_or_prop(&h, headers::PROP_USAGE)).unwrap();
    assert_eq!((usage.input, usage.output), (estimate, 0));
    assert_eq!(String::from_utf8(handed_on_or_prop(&h, headers::PROP_ROUTE_FLAGS)).unwrap(), "usage_estimated");
}

/// A property a context set, whether it is kept in the call state or in filter state.
fn handed_on_or_prop(h: &FakeHost, name: &str) -> Vec<u8> {
    crate::call_state::handed_on(h, name).or_else(|| h.property(&[name])).unwrap_or_default()
}

#[test]
fn an_embeddings_call_is_of_the_embeddings_workload_class_for_routing_and_audit() {
    let mut cfg = config();
    if let Some(r) = cfg.route.as_mut() {
        for (name, model) in [("e", "text-embedding-3-small"), ("e-cheap", "text-embedding-3-large")] {
            let alias: crate::route::Alias = crate::config::from_value(crate::json!(
                {"kind": "embeddings", "chain": "chain_e", "steps": [{"provider": "openai", "model": model}]}))
            .unwrap();
            r.aliases.insert(name.into(), alias);
        }
        r.rules = crate::config::from_str(
            r#"[{"name": "embeddings-go-cheap", "match": {"workload_classes": ["embeddings"]}, "alias": "e-cheap"}]"#,
        )
        .unwrap();
    }
    let l = Rc::new(Listener::compile(cfg).unwrap());
    let body = r#"{"model":"e","input":"hello"}"#;
    let h = caller(&FakeHost::new(), "aigw_sk_acme", body);
    h.request_headers.borrow_mut().retain(|(k, _)| k != ":path");
    h.request_headers.borrow_mut().push((":path".into(), "/v1/embeddings".into()));
    let mut c = ListenerCall::new(&h, l);
    assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(c.on_request_body(&h, body.len(), true), Flow::Continue, "{:?}", h.reply());
    assert_eq!(h.property_string(&[headers::PROP_ALIAS]).as_deref(), Some("e-cheap"), "the rule for the class matched");
    h.response_headers.borrow_mut().extend([(":status".to_string(), "200".to_string())]);
    c.on_response_headers(&h, true);
    c.on_log(&h);
    assert_eq!(audit_line(&h)["workload_class"], "embeddings");
}

#[test]
fn a_responses_attempt_passes_to_openai_and_translates_for_anthropic() {
    let responses_host = |provider: &str, body: &str| {
        let h = attempt_host("chat", provider);
        h.properties.borrow_mut().insert(headers::PROP_DOOR.into(), b"responses".to_vec());
        *h.request_body.borrow_mut() = body.as_bytes().to_vec();
        h
    };
    let body = r#"{"model":"chat","input":"hi","instructions":"Be terse.","previous_response_id":"resp_1","tools":[{"type":"web_search"}]}"#;
    // OpenAI: its own Responses API, the body as written but for the model.
    let h = responses_host("openai", body);
    let mut a = AttemptCall::new(upstream());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    assert_eq!(a.on_request_body(&h, body.len(), true), Flow::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/responses"));
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!(
        (sent["model"].as_str(), sent["previous_response_id"].as_str()),
        (Some("gpt-4o-mini-2024-07-18"), Some("resp_1"))
    );
    // Its answer passes, and its usage (in Responses' names) is read.
    let answer = r#"{"id":"resp_x","object":"response","output":[],"usage":{"input_tokens":7,"output_tokens":2,"total_tokens":9}}"#;
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    *h.response_body.borrow_mut() = answer.as_bytes().to_vec();
    a.on_response_headers(&h, false);
    a.on_response_body(&h, answer.len(), true);
    assert_eq!(h.response_body.borrow().as_slice(), answer.as_bytes());
    let usage = crate::wire::usage::Usage::decode(&handed_on_or_prop(&h, headers::PROP_USAGE)).unwrap();
    assert_eq!((usage.input, usage.output), (7, 2));

    // Anthropic: what only OpenAI serves is refused by name, before anything is sent.
    let h = responses_host("anthropic", body);
    let mut a = AttemptCall::new(upstream());
    a.on_request_headers(&h, false);
    assert_eq!(a.on_request_body(&h, body.len(), true), Flow::Refused);
    let reply = h.reply().unwrap();
    let err: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    assert_eq!((reply.status, err["error"]["param"].as_str()), (400, Some("previous_response_id")));
    // A stateless request is translated, and the answer comes back as a Response.
    let body = r#"{"model":"chat","input":"hi","instructions":"Be terse."}"#;
    let h = responses_host("anthropic", body);
    let mut a = AttemptCall::new(upstream());
    a.on_request_headers(&h, false);
    assert_eq!(a.on_request_body(&h, body.len(), true), Flow::Continue);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!(sent["system"][0]["text"], "Be terse.");
    let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5-20251001","content":[{"type":"text","text":"Hello"}],"stop_reason":"end_turn","usage":{"input_tokens":8,"output_tokens":3}}"#;
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    *h.response_body.borrow_mut() = answer.as_bytes().to_vec();
    a.on_response_headers(&h, false);
    a.on_response_body(&h, answer.len(), true);
    let r: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    assert_eq!(
        (r["object"].as_str(), r["output"][0]["content"][0]["text"].as_str()),
        (Some("response"), Some("Hello"))
    );
    assert_eq!((r["usage"]["input_tokens"].as_u64(), r["instructions"].as_str()), (Some(8), Some("Be terse.")));
}

/// A call at `path` with `body` by the key `aigw_sk_acme`, through the listener's request path.
fn call_at(path: &str, body: &str) -> (FakeHost, Flow) {
    let h = caller(&FakeHost::new(), "aigw_sk_acme", body);
    h.request_headers.borrow_mut().retain(|(k, _)| k != ":path");
    h.request_headers.borrow_mut().push((":path".into(), path.into()));
    let mut c = ListenerCall::new(&h, listener());
    let mut flow = c.on_request_headers(&h, false);
    if flow == Flow::Pause {
        flow = c.on_request_body(&h, body.len(), true);
    }
    (h, flow)
}

#[test]
fn the_responses_door_routes_on_the_request_as_read_and_lets_the_body_go_on_as_written() {
    let body = r#"{"model":"chat","instructions":"Be terse.","input":[{"role":"user","content":"hello there"}],"max_output_tokens":40,"previous_response_id":"resp_1"}"#;
    let (h, flow) = call_at("/v1/responses", body);
    assert_eq!(flow, Flow::Continue, "{:?}", h.reply());
    assert_eq!(h.request_body.borrow().as_slice(), body.as_bytes(), "each attempt serves the body as written");
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/chat/completions"), "the chains' routes match");
    assert_eq!(h.request_header(headers::CHAIN).as_deref(), Some("chain_chat"));
    assert_eq!(handed_on_or_prop(&h, headers::PROP_DOOR), b"responses");
    // Routed and estimated as the unified request: two messages, 40 output tokens.
    let facts = String::from_utf8(handed_on_or_prop(&h, headers::PROP_REQUEST)).unwrap();
    let facts = crate::quota::RequestFacts::decode(&facts).unwrap();
    assert_eq!((facts.messages, facts.max_output), (2, Some(40)));
}

#[test]
fn an_alias_serves_one_kind_of_call_at_the_listener() {
    let mut cfg = config();
    if let Some(r) = cfg.route.as_mut() {
        let alias: crate::route::Alias = crate::config::from_value(crate::json!(
            {"kind": "embeddings", "chain": "chain_e", "steps": [{"provider": "openai", "model": "text-embedding-3-small"}]}))
        .unwrap();
        r.aliases.insert("e".into(), alias);
    }
    let l = Rc::new(Listener::compile(cfg).unwrap());
    for (path, body) in [
        ("/v1/embeddings", r#"{"model":"chat","input":"hi"}"#),
        ("/v1/chat/completions", r#"{"model":"e","messages":[{"role":"user","content":"hi"}]}"#),
    ] {
        let h = caller(&FakeHost::new(), "aigw_sk_acme", body);
        h.request_headers.borrow_mut().retain(|(k, _)| k != ":path");
        h.request_headers.borrow_mut().push((":path".into(), path.into()));
        let mut c = ListenerCall::new(&h, l.clone());
        assert_eq!(c.on_request_headers(&h, false), Flow::Pause);
        assert_eq!(c.on_request_body(&h, body.len(), true), Flow::Refused);
        let reply = h.reply().unwrap();
        let err: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
        assert_eq!((reply.status, err["error"]["code"].as_str()), (400, Some("wrong_model_kind")), "{path}");
    }
}

/// An attempt of an embeddings call with `input` to `model` at Bedrock, and its upstream.
fn bedrock_embeddings(model: &str, input: crate::wire::tree::Value) -> (FakeHost, AttemptCall) {
    let mut cfg = config();
    if let Some(r) = cfg.route.as_mut() {
        let alias = crate::json!({"kind": "embeddings", "chain": "chain_e", "steps": [{"provider": "bedrock", "model": model}]});
        r.aliases.insert("e".into(), crate::config::from_value(alias).unwrap());
    }
    let env = |n: &str| Some(format!("key-of-{n}"));
    let up = Rc::new(Upstream::compile(cfg, &env).unwrap());
    let h = attempt_host("e", "bedrock");
    h.properties.borrow_mut().insert(headers::PROP_DOOR.into(), b"embeddings".to_vec());
    *h.request_body.borrow_mut() =
        serde_json::to_vec(&crate::json!({"model": "e", "input": input, "encoding_format": "float"})).unwrap();
    (h, AttemptCall::new(up))
}

fn titan_answer(v: f64, tokens: u64) -> HttpAnswer {
    HttpAnswer::new(
        vec![(":status".into(), "200".into())],
        format!(r#"{{"embedding":[{v}],"inputTextTokenCount":{tokens}}}"#).into_bytes(),
    )
}

/// Sends the attempt's request (as Envoy would once it goes on) and has it answered with `body`.
fn answer_attempt(h: &FakeHost, a: &mut AttemptCall, body: &[u8]) {
    h.response_headers.borrow_mut().extend([
        (":status".to_string(), "200".to_string()),
        ("content-type".to_string(), "application/json".to_string()),
    ]);
    *h.response_body.borrow_mut() = body.to_vec();
    assert_eq!(a.on_response_headers(h, false), Flow::Pause);
    a.on_response_body(h, body.len(), true);
}

#[test]
fn a_batch_larger_than_the_provider_takes_is_split_into_signed_calls_and_merged_in_order() {
    let (h, mut a) = bedrock_embeddings("amazon.titan-embed-text-v2:0", crate::json!(["one", "two words", "three"]));
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    // The attempt's own request carries the first input; the others go first, as calls of
    // their own, and the request waits for them.
    assert_eq!(a.on_request_body(&h, n, true), Flow::Pause);
    let sent = h.request_body.borrow().clone();
    assert_eq!(crate::wire::from_slice::<crate::wire::tree::Value>(&sent).unwrap()["inputText"], "one");
    let calls = h.http_calls.borrow().clone();
    assert_eq!(calls.len(), 2);
    for (call, text) in calls.iter().zip(["two words", "three"]) {
        assert_eq!(call.cluster, "provider_bedrock");
        let body: crate::wire::tree::Value = crate::wire::from_slice(&call.body).unwrap();
        assert_eq!(body["inputText"], text);
        let header = |name: &str| call.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(header(":path").as_deref(), Some("/model/amazon.titan-embed-text-v2%3A0/invoke"));
        assert_eq!(header("content-length"), Some(call.body.len().to_string()));
        // Signed anew over its own body, with the attempt's credential.
        assert_eq!(header("x-amz-content-sha256"), Some(crate::auth::sigv4::sha256_hex(&call.body)));
        assert!(header("authorization").unwrap().starts_with("AWS4-HMAC-SHA256 Credential=key-of-AWS_ID/"));
        assert_eq!(call.headers.iter().filter(|(k, _)| k == "authorization").count(), 1);
    }
    assert_eq!(h.request_header("x-amz-content-sha256"), Some(crate::auth::sigv4::sha256_hex(&sent)));
    // Answers come in any order; the request goes on after the last one.
    a.on_http_call_response(&h, 2, &titan_answer(0.75, 1));
    assert!(h.resumed.borrow().is_empty());
    a.on_http_call_response(&h, 2, &titan_answer(9.0, 9));
    a.on_http_call_response(&h, 1, &titan_answer(0.5, 2));
    assert_eq!(*h.resumed.borrow(), ["request"]);
    answer_attempt(&h, &mut a, br#"{"embedding":[0.25],"inputTextTokenCount":1}"#);
    let out: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    let vectors: Vec<_> =
        out["data"].as_array().unwrap().iter().map(|d| (d["index"].clone(), d["embedding"][0].clone())).collect();
    assert_eq!(vectors, [(0.into(), 0.25.into()), (1.into(), 0.5.into()), (2.into(), 0.75.into())]);
    // Every part's reported tokens, summed; the record says the batch was split.
    assert_eq!(out["usage"]["prompt_tokens"], 4);
    let usage = crate::wire::usage::Usage::decode(&handed_on_or_prop(&h, headers::PROP_USAGE)).unwrap();
    assert_eq!(usage.input, 4);
    assert_eq!(String::from_utf8(handed_on_or_prop(&h, headers::PROP_ROUTE_FLAGS)).unwrap(), "embeddings_split:3");
}

#[test]
fn a_part_that_fails_fails_the_batch_with_its_status_so_the_chain_moves_on() {
    let (h, mut a) = bedrock_embeddings("amazon.titan-embed-text-v2:0", crate::json!(["a", "b", "c"]));
    a.on_request_headers(&h, false);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Pause);
    let throttled = HttpAnswer::new(
        vec![(":status".into(), "429".into()), ("x-amzn-errortype".into(), "ThrottlingException:http://x".into())],
        br#"{"message":"Too many requests"}"#.to_vec(),
    );
    a.on_http_call_response(&h, 1, &titan_answer(0.5, 1));
    a.on_http_call_response(&h, 2, &throttled);
    answer_attempt(&h, &mut a, br#"{"embedding":[0.25],"inputTextTokenCount":1}"#);
    assert_eq!(h.response_header(":status").as_deref(), Some("429"));
    let out: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    assert_eq!(out["error"]["message"], "Too many requests");
    let attempts = crate::audit::parse_attempts(Some(&handed_on_or_prop(&h, headers::PROP_ATTEMPTS)));
    assert_eq!(attempts.last().and_then(|a| a.status), Some(429), "on record with the batch's status");

    // A part with no answer (a reset, a timeout): a 503 that says which part.
    let (h, mut a) = bedrock_embeddings("cohere.embed-english-v3", crate::json!(vec!["w"; 100]));
    a.on_request_headers(&h, false);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Pause);
    let calls = h.http_calls.borrow().clone();
    assert_eq!(calls.len(), 1, "96 and 4");
    let texts =
        |b: &[u8]| crate::wire::from_slice::<crate::wire::tree::Value>(b).unwrap()["texts"].as_array().unwrap().len();
    assert_eq!((texts(&h.request_body.borrow()), texts(&calls[0].body)), (96, 4));
    a.on_http_call_response(&h, 1, &HttpAnswer::default());
    assert_eq!(*h.resumed.borrow(), ["request"]);
    answer_attempt(&h, &mut a, br#"{"embeddings":[[0.5]]}"#);
    assert_eq!(h.response_header(":status").as_deref(), Some("503"));
    let out: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    assert_eq!(out["error"]["code"], "upstream_part_unanswered");
}

#[test]
fn parts_whose_vectors_do_not_match_their_inputs_are_an_unreadable_answer() {
    let (h, mut a) = bedrock_embeddings("cohere.embed-english-v3", crate::json!(vec!["w"; 97]));
    a.on_request_headers(&h, false);
    let n = h.request_body.borrow().len();
    a.on_request_body(&h, n, true);
    let count = |n: &str| {
        vec![
            (":status".to_string(), "200".to_string()),
            ("x-amzn-bedrock-input-token-count".to_string(), n.to_string()),
        ]
    };
    // Two vectors for a part of one input.
    a.on_http_call_response(&h, 1, &HttpAnswer::new(count("1"), br#"{"embeddings":[[1.0],[2.0]]}"#.to_vec()));
    let main = format!(r#"{{"embeddings":[{}]}}"#, vec!["[0.5]"; 96].join(","));
    answer_attempt(&h, &mut a, main.as_bytes());
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
}

#[test]
fn the_route_stage_alone_refuses_a_batch_it_would_have_to_split() {
    let (h, a) = bedrock_embeddings("amazon.titan-embed-text-v2:0", crate::json!(["a", "b"]));
    let mut r = RouteAttempt::new(a.cfg.route.clone().unwrap());
    assert_eq!(r.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(r.on_request_body(&h, n, true), Flow::Refused);
    let reply = h.reply().unwrap();
    let out: crate::wire::tree::Value = crate::wire::from_slice(&reply.body).unwrap();
    assert_eq!((reply.status, out["error"]["param"].as_str()), (400, Some("input")));
    assert!(h.http_calls.borrow().is_empty());
}

#[test]
fn an_attempt_whose_provider_lease_is_short_waits_for_a_fleet_top_up_then_carries_its_key() {
    let mut v = one_table_config();
    v["providers"]["anthropic"]["limits"] = crate::json!({"requests_per_minute": 60, "requests_burst": 60});
    v["quota"]["fleet"] = crate::json!({"cluster": "aigw_fleet", "lease": {"requests": 5}});
    let env = |n: &str| Some(format!("key-of-{n}"));
    let u = Rc::new(Upstream::compile(crate::config::from_value(v).unwrap(), &env).unwrap());
    let h = attempt_host("chat", "anthropic");
    let mut a = AttemptCall::new(u.clone());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    // The translated body is complete: the provider's lease is empty, the attempt waits.
    assert_eq!(a.on_request_body(&h, n, true), Flow::Pause);
    let path = h.http_calls.borrow()[0].headers.iter().find(|(k, _)| k == ":path").unwrap().1.clone();
    assert!(path.starts_with("/FCALL/aigw_take/1/aigw:p%2eanthropic:r/60/"), "{path}");
    assert!(h.request_header("x-api-key").is_none(), "no key before the attempt is admitted");
    // Redis grants five calls: the attempt goes on, with its key.
    let grant = HttpAnswer { status: 200, headers: vec![], body: br#"{"FCALL":[1,300000]}"#.to_vec() };
    a.on_http_call_response(&h, 1, &grant);
    assert_eq!(*h.resumed.borrow(), ["request"]);
    assert_eq!(h.request_header("x-api-key").as_deref(), Some("key-of-ANT"));
    assert_eq!(h.property_string(&[headers::PROP_QUOTA_PROVIDERS]).as_deref(), Some("anthropic"));
    // The next attempt on this replica spends the lease with no call out.
    let h2 = attempt_host("chat", "anthropic");
    *h2.shared.borrow_mut() = h.shared.borrow().clone();
    let mut a2 = AttemptCall::new(u);
    assert_eq!(a2.on_request_headers(&h2, false), Flow::Pause);
    assert_eq!(a2.on_request_body(&h2, n, true), Flow::Continue);
    assert!(h2.http_calls.borrow().is_empty());
    assert_eq!(h2.request_header("x-api-key").as_deref(), Some("key-of-ANT"));
}

/// The test configuration with `chat` shadowed to `chat-next` at `percent`, and the shadow key.
fn shadow_listener(percent: u8) -> Rc<Listener> {
    let mut cfg = config_json();
    cfg["auth"]["keys"].as_array_mut().unwrap().push(crate::json!(
        {"id": "s", "tenant": "shadow", "sha256": digest_hex("aigw_sk_shadow"), "shadow": true}));
    cfg["route"]["aliases"]["chat"]["shadow"] = crate::json!({"alias": "chat-next", "percent": percent});
    cfg["route"]["aliases"]["chat-next"] = crate::json!({"chain": "chain_next", "steps": [
        {"provider": "openai", "model": "gpt-4o-mini-2024-07-18"}]});
    cfg["route"]["shadow"] = crate::json!({"key_env": "SHADOW_KEY"});
    let cfg: GatewayConfig = crate::config::from_value(cfg).unwrap();
    Rc::new(Listener::compile_env(cfg, &|k| (k == "SHADOW_KEY").then(|| "aigw_sk_shadow".to_string())).unwrap())
}

fn config_json() -> crate::wire::tree::Value {
    crate::wire::from_str(&format!(
        r#"{{"auth": {{"keys": [{{"id": "k", "tenant": "acme", "zone": "eu", "sha256": "{}"}}]}},
        "route": {{"aliases": {{"chat": {{"chain": "chain_chat", "steps": [
                      {{"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}}]}}}},
                   "zones": {{"eu": ["eu-west-1"]}},
                   "providers": {{"anthropic": {{"api": "anthropic"}}, "openai": {{"api": "openai"}}}}}},
        "quota": {{"tenants": {{"acme": {{"requests_per_minute": 1, "requests_burst": 1}}}}, "price_book": {BOOK}}},
        "audit": {{"price_book": {BOOK}}}}}"#,
        digest_hex("aigw_sk_acme")
    ))
    .unwrap()
}

/// A call's request through the listener, then its end (`on_log`): the flow the request got,
/// and how many shadow legs were sent before the end.
fn request(
    store: &FakeHost,
    cfg: &Rc<Listener>,
    key: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> (FakeHost, Flow, usize) {
    let mut h = caller(store, key, body);
    for (k, v) in extra {
        h = h.with_request_header(k, v);
    }
    let mut c = ListenerCall::new(&h, cfg.clone());
    let mut flow = c.on_request_headers(&h, false);
    if flow == Flow::Pause {
        flow = c.on_request_body(&h, body.len(), true);
    }
    let before_end = h.http_calls.borrow().len();
    c.on_log(&h);
    (h, flow, before_end)
}

#[test]
fn a_shadowed_call_sends_its_leg_when_it_goes_on_and_never_waits_for_it() {
    let store = FakeHost::new();
    let cfg = shadow_listener(100);
    let streamed = r#"{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let (h, flow, before_end) = request(&store, &cfg, "aigw_sk_acme", &[], streamed);
    assert_eq!(flow, Flow::Continue, "the call goes on at once");
    assert_eq!(before_end, 0, "the leg is sent when the call ends, never before its answer");
    let calls = h.http_calls.borrow();
    let [leg] = calls.as_slice() else { panic!("{calls:?}") };
    assert_eq!(leg.cluster, "aigw_self");
    let header = |n: &str| leg.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    assert_eq!(header(":path"), Some("/v1/chat/completions"));
    assert_eq!(header("authorization"), Some("Bearer aigw_sk_shadow"));
    assert_eq!(header("x-request-id"), Some("rid-shadow"));
    assert_eq!(header(headers::SHADOW_OF), Some("rid"));
    // The leg keeps to the caller's privacy zone.
    assert_eq!(header(headers::SHADOW_ZONE), Some("eu"));
    let body: crate::wire::tree::Value = crate::wire::from_slice(&leg.body).unwrap();
    assert_eq!((body["model"].as_str(), body["stream"].as_bool()), (Some("chat-next"), Some(false)));
    assert!(body.get("stream_options").is_none());
    let flags = h.property_string(&[headers::PROP_ROUTE_FLAGS]).unwrap_or_default();
    assert!(flags.contains("shadow_sent:chat-next"), "{flags}");
}

#[test]
fn no_leg_for_a_refused_call_a_call_outside_the_sample_or_a_leg_itself() {
    let store = FakeHost::new();
    let cfg = shadow_listener(100);
    let (h, _, _) = request(&store, &cfg, "aigw_sk_acme", &[], BODY);
    assert_eq!(h.http_calls.borrow().len(), 1);
    // acme's one request a minute is spent: the next call is refused, and no leg is sent.
    let (h, flow, _) = request(&store, &cfg, "aigw_sk_acme", &[], BODY);
    assert_eq!(flow, Flow::Refused);
    assert!(h.http_calls.borrow().is_empty());
    // A leg (the shadow key, with the header) is not shadowed again, and is one.
    let (h, flow, _) =
        request(&store, &cfg, "aigw_sk_shadow", &[(headers::SHADOW_OF, "rid0"), (headers::SHADOW_ZONE, "eu")], BODY);
    assert_eq!(flow, Flow::Continue);
    assert!(h.http_calls.borrow().is_empty());
    let id = h.call_identity().unwrap();
    assert_eq!((id.shadow_of.as_deref(), id.zone.as_deref(), id.tenant.as_str()), (Some("rid0"), Some("eu"), "shadow"));
    // The header from an ordinary key is dropped.
    let store = FakeHost::new();
    let (h, _, _) = request(&store, &shadow_listener(0), "aigw_sk_acme", &[(headers::SHADOW_OF, "x")], BODY);
    assert_eq!(h.call_identity().unwrap().shadow_of, None);
    assert!(h.http_calls.borrow().is_empty(), "0%: no leg");
}
