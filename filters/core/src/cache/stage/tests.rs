//! The cache stage as the `gateway` filter runs it: in the listener's pipeline, against
//! `FakeHost` (the calls' answers are given here as a provider would send them).

use std::rc::Rc;

use crate::auth::keys::digest_hex;
use crate::headers;
use crate::host::{FakeHost, Flow, Host};
use crate::pipeline::{GatewayConfig, Listener, ListenerCall};

const BOOK: &str = include_str!("../../../../../envoy/price-book.json");
const ANSWER: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"claude-haiku-4-5-20251001","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11}}"#;

fn listener(alias_extra: &str) -> Rc<Listener> {
    listener_with(alias_extra, 100)
}

/// With the semantic cache's embedder configured.
fn semantic_listener(alias_extra: &str) -> Rc<Listener> {
    let cfg: GatewayConfig = crate::config::from_str(&format!(
        r#"{{
        "auth": {{"keys": [{{"id": "k", "tenant": "acme", "sha256": "{}"}}]}},
        "route": {{"aliases": {{"chat": {{"chain": "chain_chat", "steps": [
                      {{"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}}]{alias_extra}}}}},
                   "providers": {{"anthropic": {{"api": "anthropic"}}}},
                   "cache": {{"semantic": {{"alias": "embed-cache", "key_env": "CACHE_KEY"}}}}}},
        "price_book": {BOOK},
        "audit": {{}}}}"#,
        digest_hex("aigw_sk_acme")
    ))
    .unwrap();
    Rc::new(Listener::compile_env(cfg, &|_| Some("aigw_sk_cache".into())).unwrap())
}

/// A test embedder: words hashed into 64 signed buckets.
fn words(text: &str) -> Option<Vec<f64>> {
    let mut v = vec![0.0; 64];
    for w in text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let h = w.bytes().fold(0xcbf2_9ce4_8422_2325u64, |x, b| (x ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        v[(h % 64) as usize] += if h & (1 << 40) == 0 { 1.0 } else { -1.0 };
    }
    Some(v)
}

fn ask(text: &str, system: &str) -> String {
    crate::json!({"model": "chat", "max_tokens": 10, "messages": [
        {"role": "system", "content": system}, {"role": "user", "content": text}]})
    .to_string()
}

/// With acme allowed `burst` requests at once.
fn listener_with(alias_extra: &str, burst: u32) -> Rc<Listener> {
    let cfg: GatewayConfig = crate::config::from_str(&format!(
        r#"{{
        "auth": {{"keys": [{{"id": "k", "tenant": "acme", "sha256": "{}"}}, {{"id": "g", "tenant": "globex", "sha256": "{}"}}]}},
        "route": {{"aliases": {{"chat": {{"chain": "chain_chat", "steps": [
                      {{"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}}]{alias_extra}}}}},
                   "providers": {{"anthropic": {{"api": "anthropic"}}}},
                   "cache": {{"slots": 64}}}},
        "quota": {{"tenants": {{"acme": {{"requests_per_minute": 1, "requests_burst": {burst}}}}}}},
        "price_book": {BOOK},
        "audit": {{}}}}"#,
        digest_hex("aigw_sk_acme"),
        digest_hex("aigw_sk_globex")
    ))
    .unwrap();
    Rc::new(Listener::compile(cfg).unwrap())
}

const CACHED: &str = r#", "cache": {"mode": "exact", "ttl_s": 60, "stale_ttl_s": 600}"#;

thread_local! {
    /// The shared cache's Redis, for these tests: key → value.
    static REDIS: std::cell::RefCell<std::collections::HashMap<String, String>> = Default::default();
}

struct Call {
    h: FakeHost,
    /// Whether the call went on to the providers (else the gateway answered it).
    went_on: bool,
}

/// One call through the listener: `answer` is what the chain sends back when the call goes on
/// (a status and a body).
fn call(
    store: &FakeHost,
    l: &Rc<Listener>,
    key: &str,
    body: &str,
    extra: &[(&str, &str)],
    answer: (&str, &str),
) -> Call {
    call_ending(store, l, key, body, extra, answer, &|_| None, true)
}

/// As [`call`], answering the semantic cache's embedding call with `embed(text)` (`None`: a
/// failed call); with `ended` false the answer's end never comes (the caller closed the call
/// once it read the whole answer, as the OpenAI SDK does at a stream's `[DONE]`).
#[allow(clippy::too_many_arguments)]
fn call_ending(
    store: &FakeHost,
    l: &Rc<Listener>,
    key: &str,
    body: &str,
    extra: &[(&str, &str)],
    answer: (&str, &str),
    embed: &dyn Fn(&str) -> Option<Vec<f64>>,
    ended: bool,
) -> Call {
    let mut h = store
        .worker()
        .with_request_header(":method", "POST")
        .with_request_header(":path", "/v1/chat/completions")
        .with_request_header("authorization", &format!("Bearer {key}"))
        .with_request_header("x-request-id", &format!("rid-{}", store.now.get()));
    for (k, v) in extra {
        h = h.with_request_header(k, v);
    }
    h.now.set(store.now.get());
    *h.request_body.borrow_mut() = body.as_bytes().to_vec();
    let mut c = ListenerCall::new(&h, l.clone());
    let mut flow = c.on_request_headers(&h, false);
    if flow == Flow::Pause {
        flow = c.on_request_body(&h, body.len(), true);
    }
    let asked = h.http_calls.borrow().last().cloned();
    let path = asked.as_ref().and_then(|a| a.headers.iter().find(|(k, _)| k == ":path").map(|(_, v)| v.clone()));
    if let (Flow::Pause, Some(key)) = (flow, path.as_deref().and_then(|p| p.strip_prefix("/FCALL/aigw_cache_get/1/"))) {
        // The shared cache's lookup, answered from the test's Redis.
        let value = REDIS.with(|r| r.borrow().get(key).cloned());
        let body = crate::json!({ "FCALL": value }).to_string();
        let answer = crate::host::HttpAnswer::new(vec![(":status".into(), "200".into())], body.into_bytes());
        let token = h.http_calls.borrow().len() as u32;
        c.on_http_call_response(&h, token, &answer);
        flow = if h.resumed.borrow().contains(&"request") { Flow::Continue } else { Flow::Refused };
    } else if let (Flow::Pause, Some(asked)) = (flow, asked) {
        // The embedding call: its answer, then the request goes on or is answered.
        let input: crate::wire::tree::Value = crate::wire::from_slice(&asked.body).unwrap();
        let text = input["input"].as_str().unwrap().to_string();
        let answer = match embed(&text) {
            Some(v) => crate::host::HttpAnswer::new(
                vec![(":status".into(), "200".into())],
                serde_json::to_vec(&crate::json!({"object": "list", "data": [{"embedding": v}]})).unwrap(),
            ),
            None => crate::host::HttpAnswer::new(vec![(":status".into(), "503".into())], b"{}".to_vec()),
        };
        let token = h.http_calls.borrow().len() as u32;
        c.on_http_call_response(&h, token, &answer);
        flow = if h.resumed.borrow().contains(&"request") { Flow::Continue } else { Flow::Refused };
    }
    let went_on = flow == Flow::Continue;
    if went_on {
        let stream = body.contains("\"stream\":true");
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), answer.0.into()));
        let ct = if stream && answer.0 == "200" { "text/event-stream" } else { "application/json" };
        r.push(("content-type".into(), ct.into()));
        if answer.0 == "200" {
            r.push(("x-envoy-attempt-count".into(), "1".into()));
            r.push((headers::PROVIDER.into(), "anthropic".into()));
            r.push((headers::MODEL.into(), "claude-haiku-4-5-20251001".into()));
        }
        drop(r);
        h.set_property_bytes(
            headers::PROP_ATTEMPTS,
            &crate::handed::attempts(&format!(
                r#"[{{"provider":"anthropic","region":null,"model":"claude-haiku-4-5-20251001","status":{},"latency_ms":1,"error_class":null}}]"#,
                answer.0
            )),
        );
        if answer.0 == "200" {
            h.set_property_bytes(
                headers::PROP_USAGE,
                &crate::handed::usage(r#"{"input":8,"cached_input":0,"output":3,"reasoning":0}"#),
            );
        }
    } else {
        let reply = h.reply().unwrap();
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), reply.status.to_string()));
        r.extend(reply.headers.iter().cloned());
        *h.response_body.borrow_mut() = reply.body.clone();
    }
    c.on_response_headers(&h, false);
    if went_on {
        *h.response_body.borrow_mut() = answer.1.as_bytes().to_vec();
    }
    let size = h.response_body.borrow().len();
    c.on_response_body(&h, size, ended);
    c.on_log(&h);
    Call { h, went_on }
}

fn record(h: &FakeHost) -> crate::wire::tree::Value {
    crate::wire::from_slice(&h.property(&[headers::PROP_AUDIT]).unwrap()).unwrap()
}

const ASK: &str = r#"{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"capital of France?"}]}"#;
/// The same request, written differently.
const ASK_AGAIN: &str = r#"{ "messages": [{"content": "capital of France?", "role": "user"}], "max_tokens": 10, "model": "chat", "user": "u-2" }"#;

#[test]
fn a_repeated_call_is_answered_from_the_cache_at_no_cost_and_charged_to_no_bucket() {
    let store = FakeHost::new();
    let l = listener_with(CACHED, 2);
    let first = call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER));
    assert!(first.went_on);
    assert_eq!(first.h.response_header(headers::CACHE).as_deref(), Some("miss"));
    let rec = record(&first.h);
    assert_eq!((rec["cache_status"].as_str(), rec["outcome"].as_str()), (Some("miss"), Some("ok")));
    let paid = rec["cost_usd"].as_str().unwrap().to_string();
    // Three more: the quota (a burst of 2) would refuse the third if hits were charged.
    for _ in 0..3 {
        let again = call(&store, &l, "aigw_sk_acme", ASK_AGAIN, &[], ("500", "{}"));
        assert!(!again.went_on, "no provider is called");
        assert_eq!(again.h.response_header(headers::CACHE).as_deref(), Some("hit"));
        assert_eq!(*again.h.response_body.borrow(), ANSWER.as_bytes());
        let rec = record(&again.h);
        assert_eq!((rec["cache_status"].as_str(), rec["outcome"].as_str()), (Some("hit"), Some("ok")));
        assert_eq!((rec["cost_usd"].as_str(), rec["provider"].as_str()), (Some("0.0"), None));
        assert_eq!(rec["cost_saved_usd"].as_str(), Some(paid.as_str()));
        assert_eq!(rec["model"], "claude-haiku-4-5-20251001");
    }
    assert_eq!(store.counters.borrow().get("aigw_cache_hits_total.alias.chat"), None, "counted by each worker");
}

#[test]
fn one_tenant_never_gets_anothers_answer() {
    let store = FakeHost::new();
    let l = listener(CACHED);
    call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER));
    let other = call(&store, &l, "aigw_sk_globex", ASK, &[], ("200", ANSWER));
    assert!(other.went_on);
    assert_eq!(record(&other.h)["cache_status"], "miss");
}

#[test]
fn no_store_sensitive_and_refresh_are_honoured() {
    let store = FakeHost::new();
    let l = listener(CACHED);
    let c = call(&store, &l, "aigw_sk_acme", ASK, &[("cache-control", "no-store")], ("200", ANSWER));
    assert_eq!(record(&c.h)["cache_status"], "no_store");
    assert!(call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER)).went_on, "no-store stored nothing");
    // Refresh: no lookup, but the answer is stored.
    let refreshed = ANSWER.replace("Paris.", "Paris!");
    let c = call(&store, &l, "aigw_sk_acme", ASK, &[("x-gateway-cache", "refresh")], ("200", &refreshed));
    assert!(c.went_on);
    let hit = call(&store, &l, "aigw_sk_acme", ASK, &[], ("500", "{}"));
    assert_eq!(*hit.h.response_body.borrow(), refreshed.as_bytes());
    // A sensitive alias is never cached, whatever its policy says.
    let store = FakeHost::new();
    let l = listener(&format!("{CACHED}, \"sensitive\": true"));
    for _ in 0..2 {
        let c = call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER));
        assert!(c.went_on);
        assert_eq!(record(&c.h)["cache_status"], "none");
    }
    assert!(!store.shared.borrow().keys().any(|k| k.starts_with("aigw.cache.")));
}

#[test]
fn a_streamed_call_is_answered_with_the_stored_answer_replayed_as_a_stream() {
    let store = FakeHost::new();
    let l = listener(CACHED);
    call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER));
    let stream = ASK.replace("\"max_tokens\":10", "\"max_tokens\":10,\"stream\":true");
    let hit = call(&store, &l, "aigw_sk_acme", &stream, &[], ("500", "{}"));
    assert!(!hit.went_on);
    assert_eq!(hit.h.response_header("content-type").as_deref(), Some("text/event-stream"));
    let body = String::from_utf8(hit.h.response_body.borrow().clone()).unwrap();
    assert!(body.contains("\"content\":\"Paris.\"") && body.ends_with("data: [DONE]\n\n"), "{body}");
    assert!(!body.contains("\"usage\""), "the caller asked for no usage chunk: the route stage takes it out");
    let rec = record(&hit.h);
    assert_eq!((rec["cache_status"].as_str(), rec["stream"].as_bool()), (Some("hit"), Some(true)));
    // A streamed miss is stored once it ended well, and answers the same call, streamed or not.
    let other = stream.replace("France", "Spain");
    let sse = String::from_utf8(
        crate::wire::chat::stream_from_answer(ANSWER.replace("Paris.", "Madrid.").as_bytes()).unwrap(),
    )
    .unwrap();
    let cut = sse.replace("data: [DONE]\n\n", "");
    assert!(call(&store, &l, "aigw_sk_acme", &other, &[], ("200", &cut)).went_on);
    assert!(call(&store, &l, "aigw_sk_acme", &other, &[], ("200", &sse)).went_on, "a stream cut short is not stored");
    let hit = call(&store, &l, "aigw_sk_acme", &other.replace(",\"stream\":true", ""), &[], ("500", "{}"));
    assert!(!hit.went_on);
    let got: crate::wire::tree::Value = crate::wire::from_slice(&hit.h.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "Madrid.");
    assert_eq!(got["usage"]["completion_tokens"], 3);
    // The caller closes the call at `[DONE]`, before the stream's end reached the gateway (the
    // OpenAI SDK does): the answer is whole, so it is stored all the same.
    let closed = stream.replace("France", "Italy");
    let sse =
        String::from_utf8(crate::wire::chat::stream_from_answer(ANSWER.replace("Paris.", "Rome.").as_bytes()).unwrap())
            .unwrap();
    let none = &|_: &str| None;
    let cut = sse.replace("data: [DONE]\n\n", "");
    assert!(call_ending(&store, &l, "aigw_sk_acme", &closed, &[], ("200", &cut), none, false).went_on);
    assert!(
        call_ending(&store, &l, "aigw_sk_acme", &closed, &[], ("200", &sse), none, false).went_on,
        "a stream that never ended and had no [DONE] is not stored"
    );
    let hit = call(&store, &l, "aigw_sk_acme", &closed.replace(",\"stream\":true", ""), &[], ("500", "{}"));
    assert!(!hit.went_on, "a stream whose [DONE] the gateway saw is stored without its end");
    let got: crate::wire::tree::Value = crate::wire::from_slice(&hit.h.response_body.borrow()).unwrap();
    assert_eq!(got["choices"][0]["message"]["content"], "Rome.");
}

#[test]
fn an_entry_expires_then_stands_in_for_a_failed_chain_while_stale() {
    let store = FakeHost::new();
    store.now.set(1_000_000);
    let l = listener(CACHED);
    call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER));
    store.now.set(1_000_000 + 59_999);
    assert!(!call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER)).went_on);
    // Past its 60 s: the call goes on; every provider fails, so the stale answer stands in.
    store.now.set(1_000_000 + 60_000);
    let failed = r#"{"error":{"message":"overloaded","type":"overloaded_error"}}"#;
    let c = call(&store, &l, "aigw_sk_acme", ASK, &[], ("503", failed));
    assert!(c.went_on);
    assert_eq!(c.h.response_header(":status").as_deref(), Some("200"));
    assert_eq!(c.h.response_header(headers::CACHE).as_deref(), Some("stale"));
    assert_eq!(*c.h.response_body.borrow(), ANSWER.as_bytes());
    let rec = record(&c.h);
    assert_eq!((rec["cache_status"].as_str(), rec["cost_usd"].as_str()), (Some("stale"), Some("0.0")));
    assert_eq!(rec["attempts"][0]["status"], 503, "the failed attempts are on record");
    // Past its stale time too: the chain's refusal stands.
    store.now.set(1_000_000 + 660_000);
    let c = call(&store, &l, "aigw_sk_acme", ASK, &[], ("503", failed));
    assert_ne!(c.h.response_header(":status").as_deref(), Some("200"));
    assert_eq!(record(&c.h)["cache_status"], "miss");
}

#[test]
fn a_policy_alone_gets_the_default_store_and_a_bad_store_is_refused_by_field() {
    let with = |store: &str| {
        let cfg: GatewayConfig = crate::config::from_str(&format!(
            r#"{{"route": {{"aliases": {{"chat": {{"chain": "c", "steps": [{{"provider": "a", "model": "m"}}]{CACHED}}}}},
                       "providers": {{"a": {{"api": "anthropic"}}}}{store}}}}}"#
        ))
        .unwrap();
        Listener::compile(cfg)
    };
    let l = with("").ok().unwrap();
    assert_eq!(l.cache.as_ref().map(|c| (c.slots, c.max_entry_bytes)), Some((256, 65536)));
    // A bound store is read as configured, and the route stage, compiled from the same (moved)
    // configuration, keeps the policy.
    let l = with(r#", "cache": {"slots": 8, "max_entry_bytes": 1024}"#).ok().unwrap();
    assert_eq!(l.cache.as_ref().map(|c| (c.slots, c.max_entry_bytes)), Some((8, 1024)));
    assert!(l.route.as_ref().is_some_and(|r| r.caches()));
    let e = with(r#", "cache": {"slots": 0}"#).err().unwrap().to_string();
    assert!(e.contains("cache.slots"), "{e}");
}

#[test]
fn a_policy_may_charge_hits_to_the_request_buckets_only() {
    let store = FakeHost::new();
    let l = listener_with(r#", "cache": {"mode": "exact", "ttl_s": 60, "charge_requests": true}"#, 2);
    assert!(call(&store, &l, "aigw_sk_acme", ASK, &[], ("200", ANSWER)).went_on);
    let hit = call(&store, &l, "aigw_sk_acme", ASK, &[], ("500", "{}"));
    assert_eq!(hit.h.response_header(headers::CACHE).as_deref(), Some("hit"));
    // Charged a request (the burst of 2 is spent now), and told so as any call is.
    assert_eq!(hit.h.response_header("x-ratelimit-remaining-requests").as_deref(), Some("0"));
    let rec = record(&hit.h);
    assert_eq!((rec["cache_status"].as_str(), rec["cost_usd"].as_str()), (Some("hit"), Some("0.0")));
    let refused = call(&store, &l, "aigw_sk_acme", ASK, &[], ("500", "{}"));
    assert!(!refused.went_on);
    assert_eq!(refused.h.reply().map(|r| r.status), Some(429));
    assert_eq!(record(&refused.h)["outcome"], "refused_quota");
}

const SEMANTIC: &str = r#", "cache": {"mode": "semantic", "ttl_s": 60, "threshold": 0.9}"#;

#[test]
fn a_request_near_enough_in_meaning_is_answered_from_the_cache() {
    let store = FakeHost::new();
    let l = semantic_listener(SEMANTIC);
    let first = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("What is the capital of France?", "Be brief."),
        &[],
        ("200", ANSWER),
        &words,
        true,
    );
    assert!(first.went_on);
    let call = first.h.http_calls.borrow()[0].clone();
    assert_eq!(call.cluster, "aigw_self");
    assert!(call.headers.contains(&("authorization".into(), "Bearer aigw_sk_cache".into())));
    assert_eq!(
        record(&first.h)["cache_semantic"],
        crate::json!({"similarity": null, "would_serve": null, "served": false})
    );
    // The same question, put another way: served, with no provider.
    let near = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("what is the capital of france", "Be brief."),
        &[],
        ("500", "{}"),
        &words,
        true,
    );
    assert!(!near.went_on);
    assert_eq!(near.h.response_header(headers::CACHE).as_deref(), Some("semantic_hit"));
    assert_eq!(*near.h.response_body.borrow(), ANSWER.as_bytes());
    let rec = record(&near.h);
    assert_eq!((rec["cache_status"].as_str(), rec["cost_usd"].as_str()), (Some("semantic_hit"), Some("0.0")));
    assert_eq!(rec["cache_semantic"]["would_serve"], "rid-0");
    assert!(rec["cache_semantic"]["similarity"].as_f64().unwrap() >= 0.9);
    assert_eq!(rec["cache_semantic"]["served"], true);
    // Another country: below the threshold, a miss that says how near it came.
    let other = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("What is the capital of Germany?", "Be brief."),
        &[],
        ("200", ANSWER),
        &words,
        true,
    );
    assert!(other.went_on);
    let rec = record(&other.h);
    assert_eq!(rec["cache_status"], "miss");
    assert!(rec["cache_semantic"]["similarity"].as_f64().unwrap() < 0.9);
    assert_eq!(rec["cache_semantic"]["would_serve"], crate::wire::tree::Value::Null);
    // Another system prompt: another partition, never a match.
    let sys = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("What is the capital of France?", "Answer in French."),
        &[],
        ("200", ANSWER),
        &words,
        true,
    );
    assert!(sys.went_on);
    assert_eq!(record(&sys.h)["cache_semantic"]["similarity"], crate::wire::tree::Value::Null);
    // An embedder that fails: the call goes on uncached by meaning.
    let failed = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("Capital of Spain?", "Be brief."),
        &[],
        ("200", ANSWER),
        &|_| None,
        true,
    );
    assert!(failed.went_on);
    assert_eq!(failed.h.counters.borrow().get("aigw_cache_embedding_failures_total.alias.chat"), Some(&1));
}

#[test]
fn shadow_mode_records_what_it_would_have_served_and_serves_nothing() {
    let store = FakeHost::new();
    let l = semantic_listener(&SEMANTIC.replace("\"semantic\"", "\"semantic-shadow\""));
    call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("What is the capital of France?", "Be brief."),
        &[],
        ("200", ANSWER),
        &words,
        true,
    );
    let near = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("what is the capital of france", "Be brief."),
        &[],
        ("200", ANSWER),
        &words,
        true,
    );
    assert!(near.went_on, "shadow: to the provider as always");
    let rec = record(&near.h);
    assert_eq!(rec["cache_status"], "miss");
    assert_eq!(rec["cache_semantic"]["would_serve"], "rid-0");
    assert_eq!(rec["cache_semantic"]["served"], false);
    // The exact cache still serves in shadow mode.
    let exact = call_ending(
        &store,
        &l,
        "aigw_sk_acme",
        &ask("What is the capital of France?", "Be brief."),
        &[],
        ("500", "{}"),
        &words,
        true,
    );
    assert_eq!(record(&exact.h)["cache_status"], "hit");
}

#[test]
fn a_semantic_policy_needs_a_threshold_and_an_embedder() {
    let compile = |extra: &str, store: &str| {
        let cfg: GatewayConfig = crate::config::from_str(&format!(
            r#"{{"route": {{"aliases": {{"chat": {{"chain": "c", "steps": [{{"provider": "a", "model": "m"}}]{extra}}}}},
                       "providers": {{"a": {{"api": "anthropic"}}}}{store}}}}}"#
        ))
        .unwrap();
        Listener::compile_env(cfg, &|_| Some("k".into())).err().map(|e| e.to_string())
    };
    let e = compile(r#", "cache": {"mode": "semantic", "ttl_s": 60}"#, "").unwrap();
    assert!(e.contains("aliases.chat.cache.threshold"), "{e}");
    let e = compile(r#", "cache": {"mode": "exact", "ttl_s": 60, "threshold": 0.9}"#, "").unwrap();
    assert!(e.contains("threshold"), "{e}");
    let e = compile(SEMANTIC, "").unwrap();
    assert!(e.contains("cache.semantic"), "{e}");
    assert!(compile(SEMANTIC, r#", "cache": {"semantic": {"alias": "e", "key_env": "K"}}"#).is_none());
}

#[test]
fn an_entry_stored_on_one_replica_is_served_from_the_shared_cache_on_another() {
    let cfg = |_: ()| -> Rc<Listener> {
        let cfg: GatewayConfig = crate::config::from_str(&format!(
            r#"{{
            "auth": {{"keys": [{{"id": "k", "tenant": "acme", "sha256": "{}"}}]}},
            "route": {{"aliases": {{"chat": {{"chain": "chain_chat", "steps": [
                          {{"provider": "anthropic", "model": "claude-haiku-4-5-20251001"}}]{CACHED}}}}},
                       "providers": {{"anthropic": {{"api": "anthropic"}}}},
                       "cache": {{"slots": 64, "shared": {{"cluster": "aigw_fleet"}}}}}},
            "price_book": {BOOK},
            "audit": {{}}}}"#,
            digest_hex("aigw_sk_acme")
        ))
        .unwrap();
        Rc::new(Listener::compile_env(cfg, &|k| (k == "AIGW_FLEET_AUTH").then(|| "aigw:pw".into())).unwrap())
    };
    let (a, b) = (cfg(()), cfg(()));
    // Two replicas: two stores of their own.
    let (store_a, store_b) = (FakeHost::new(), FakeHost::new());
    for s in [&store_a, &store_b] {
        s.now.set(1_000_000);
    }
    let body = ask("What is the capital of France?", "Be brief.");
    // Replica A: a miss here and in Redis; the answer is stored here and queued for Redis.
    let first = call(&store_a, &a, "aigw_sk_acme", &body, &[], ("200", ANSWER));
    assert!(first.went_on);
    let get = first.h.http_calls.borrow()[0].clone();
    assert_eq!(get.cluster, "aigw_fleet");
    assert!(get.headers.contains(&("authorization".into(), "Basic YWlndzpwdw==".into())));
    // A's ticker sends it to Redis, with what is left of its time (ttl + stale).
    let mut writer =
        crate::cache::shared::Writer::new(a.cache.clone().unwrap(), a.cache.as_ref().unwrap().shared.clone().unwrap());
    let tick = store_a.worker();
    tick.now.set(1_000_000);
    writer.on_tick(&tick);
    let put = tick.http_calls.borrow()[0].clone();
    let path = put.headers.iter().find(|(k, _)| k == ":path").unwrap().1.clone();
    let (key, ttl) = path.strip_prefix("/FCALL/aigw_cache_put/1/").unwrap().rsplit_once('/').unwrap();
    assert_eq!(ttl, "660000");
    REDIS.with(|r| r.borrow_mut().insert(key.to_string(), String::from_utf8(put.body.clone()).unwrap()));
    writer.on_tick(&tick);
    assert_eq!(tick.http_calls.borrow().len(), 1, "sent once (the queue is empty)");
    // Replica B: not in its own store, in Redis: served, no provider.
    let second = call(&store_b, &b, "aigw_sk_acme", &body, &[], ("500", "{}"));
    assert!(!second.went_on);
    assert_eq!(second.h.response_header(headers::CACHE).as_deref(), Some("shared_hit"));
    assert!(String::from_utf8_lossy(&second.h.response_body.borrow()).contains("Paris."));
    let rec = record(&second.h);
    assert_eq!((rec["cache_status"].as_str(), rec["cost_usd"].as_str()), (Some("shared_hit"), Some("0.0")));
    // Kept on B now: the next call there needs no round trip.
    let third = call(&store_b, &b, "aigw_sk_acme", &body, &[], ("500", "{}"));
    assert!(!third.went_on && third.h.http_calls.borrow().is_empty());
}
