use super::*;
use crate::host::FakeHost;

const BOOK: &str = include_str!("../../../../../envoy/price-book.json");
const SONNET: &str = "claude-sonnet-4-5-20250929";

fn audit() -> Audit {
    let cfg: AuditConfig =
        crate::config::from_str(&format!(r#"{{"price_book": {BOOK}, "metrics": {{"tenant_labels": ["acme"]}}}}"#))
            .unwrap();
    Audit::compile(&cfg).unwrap()
}

fn host() -> FakeHost {
    let h = FakeHost::new()
        .with_request_header("x-request-id", "rid-1")
        .with_property(&[headers::PROP_ALIAS], "chat")
        .with_property(&[headers::PROP_QUOTA_ESTIMATE], "20 100");
    h.set_property_bytes(
        headers::PROP_IDENTITY,
        &crate::handed::identity(r#"{"tenant":"acme","key_id":"k","key_fingerprint":"f","alias_scope":"*"}"#),
    );
    h.now.set(1_000);
    h
}

fn answer(h: &FakeHost, status: &str, content_type: &str) {
    let mut r = h.response_headers.borrow_mut();
    r.push((":status".into(), status.into()));
    r.push(("content-type".into(), content_type.into()));
    r.push((headers::PROVIDER.into(), "anthropic".into()));
    r.push((headers::MODEL.into(), SONNET.into()));
}

fn attempts(h: &FakeHost, json: &str) {
    h.set_property_bytes(headers::PROP_ATTEMPTS, &crate::handed::attempts(json));
}

/// A 200 answer of this content type from one Anthropic attempt.
fn answered_by_anthropic(h: &FakeHost, content_type: &str) {
    answer(h, "200", content_type);
    attempts(
        h,
        r#"[{"provider":"anthropic","region":null,"model":"m","status":200,"latency_ms":5,"error_class":null}]"#,
    );
}

#[test]
fn a_whole_answer_gets_its_cost_headers_and_one_record() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    c.on_request_headers(&h);
    answered_by_anthropic(&h, "application/json");
    assert_eq!(c.on_response_headers(&h, &a, false), Flow::Pause);
    *h.response_body.borrow_mut() =
        br#"{"id":"x","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#.to_vec();
    let n = h.response_body.borrow().len();
    assert_eq!(c.on_response_body(&h, &a, n, false), Flow::Pause);
    assert_eq!(c.on_response_body(&h, &a, n, true), Flow::Continue);
    assert_eq!(h.response_header("x-aigw-tokens-input").as_deref(), Some("10"));
    let cost = h.response_header("x-aigw-cost-usd").unwrap();
    h.now.set(1_250);
    let r = c.on_log(&h, &a);
    assert_eq!((r.outcome, r.status, r.latency_ms), (Outcome::Ok, Some(200), 250));
    assert_eq!(r.cost_usd.as_deref(), Some(cost.as_str()));
    assert_eq!((r.tenant.as_deref(), r.request_id.as_str()), (Some("acme"), "rid-1"));
    assert_eq!(h.response_header(headers::REQUEST_ID).as_deref(), Some("rid-1"));
    // The record is in filter state for the access log, and quota gets the same figure.
    let line: crate::wire::tree::Value = crate::wire::from_slice(&h.property(&[headers::PROP_AUDIT]).unwrap()).unwrap();
    assert_eq!(line["cost_usd"], cost.as_str());
    let settled = Settled::decode(&h.property_string(&[headers::PROP_SETTLED]).unwrap()).unwrap();
    assert_eq!(settled.cost_pico.map(format_usd), Some(cost));
    // Metrics.
    let counters = h.counters.borrow();
    assert_eq!(counters.get(&format!("aigw_requests_total.provider.anthropic.model.{SONNET}.outcome.ok")), Some(&1));
    assert_eq!(
        counters.get(&format!("aigw_tokens_total.provider.anthropic.model.{SONNET}.token_type.output")),
        Some(&5)
    );
    assert_eq!(counters.get("aigw_tenant_requests_total.tenant.acme.outcome.ok"), Some(&1));
    assert_eq!(counters.get("aigw_tenant_tokens_total.tenant.acme.token_type.input"), Some(&10));
    assert!(counters.get("aigw_tenant_cost_nano_usd_total.tenant.acme").is_some_and(|n| *n > 0));
    assert_eq!(counters.get("aigw_provider_attempts_total.provider.anthropic.model.m"), Some(&1));
    assert!(!counters.keys().any(|k| k.starts_with("aigw_provider_errors_total")));
}

#[test]
fn a_success_that_is_not_json_becomes_a_502_billed_nothing() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    answer(&h, "200", "application/json");
    c.on_response_headers(&h, &a, false);
    *h.response_body.borrow_mut() = br#"{"id":"x","choi"#.to_vec();
    c.on_response_body(&h, &a, 15, true);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    let r = c.on_log(&h, &a);
    assert_eq!((r.outcome, r.status), (Outcome::UpstreamError, Some(502)));
    assert!(r.tokens.is_none() && r.cost_usd.is_none());
    assert!(r.flags.contains(&"upstream_invalid_response".to_string()));
    assert_eq!(Settled::decode(&h.property_string(&[headers::PROP_SETTLED]).unwrap()).unwrap().usage, None);
}

fn stream(h: &FakeHost, a: &Audit, c: &mut AuditCall, events: &[&str], eos: bool) {
    let body: String = events.concat();
    *h.response_body.borrow_mut() = body.clone().into_bytes();
    c.on_response_body(h, a, body.len(), eos);
}

#[test]
fn a_messages_stream_that_ends_with_message_stop_is_ok() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    answered_by_anthropic(&h, "text/event-stream");
    c.on_response_headers(&h, &a, false);
    stream(
        &h,
        &a,
        &mut c,
        &[
            "event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n",
        ],
        false,
    );
    stream(&h, &a, &mut c, &["event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"], true);
    h.set_property_bytes(
        headers::PROP_USAGE,
        &crate::handed::usage(r#"{"input":9,"cached_input":0,"output":1,"reasoning":0}"#),
    );
    let r = c.on_log(&h, &a);
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.tokens.map(|t| (t.input, t.output)), Some((9, 1)));
    assert!(!r.flags.contains(&"usage_estimated".to_string()));
}

#[test]
fn a_stream_cut_by_the_provider_is_an_upstream_error_charged_what_streamed() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    answered_by_anthropic(&h, "text/event-stream");
    c.on_response_headers(&h, &a, false);
    let chunk = "data: {\"choices\":[{\"delta\":{\"content\":\"w \"}}]}\n\n";
    stream(&h, &a, &mut c, &[chunk, chunk], false);
    h.set_property("response.code_details", "upstream_reset_after_response_started{remote_reset}");
    let r = c.on_log(&h, &a);
    assert_eq!(r.outcome, Outcome::UpstreamError);
    assert_eq!(r.tokens.map(|t| (t.input, t.output)), Some((20, 2)));
    assert!(r.flags.contains(&"usage_estimated".to_string()) && r.cost_usd.is_some());
    // The same stream, left by the caller: client_aborted, charged the same way.
    let h2 = host();
    let mut c2 = AuditCall::new(&h2);
    answer(&h2, "200", "text/event-stream");
    c2.on_response_headers(&h2, &a, false);
    stream(&h2, &a, &mut c2, &[chunk], false);
    h2.set_property("response.code_details", "downstream_remote_disconnect");
    let r2 = c2.on_log(&h2, &a);
    assert_eq!(r2.outcome, Outcome::ClientAborted);
    // Left by the caller once its `[DONE]` went through (the OpenAI SDK closes the call there,
    // before the body's end reached the gateway): the caller has the whole answer, so it is ok.
    let h3 = host();
    let mut c3 = AuditCall::new(&h3);
    answer(&h3, "200", "text/event-stream");
    c3.on_response_headers(&h3, &a, false);
    stream(&h3, &a, &mut c3, &[chunk, "data: [DONE]\n\n"], false);
    h3.set_property("response.code_details", "downstream_remote_disconnect");
    assert_eq!(c3.on_log(&h3, &a).outcome, Outcome::Ok);
}

#[test]
fn an_exhausted_chain_with_a_timed_out_last_attempt_is_billed_nothing() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    h.response_headers.borrow_mut().push((":status".into(), "504".into()));
    attempts(
        &h,
        r#"[{"provider":"anthropic","region":null,"model":"m","status":null,"latency_ms":null,"error_class":"no_response","started_ms":1000}]"#,
    );
    h.set_property(headers::PROP_PER_TRY_MS, "400");
    c.on_response_headers(&h, &a, true);
    h.now.set(1_401);
    let r = c.on_log(&h, &a);
    assert_eq!(r.outcome, Outcome::UpstreamError);
    assert_eq!(r.attempts[0].error_class, Some(crate::audit::ErrorClass::Timeout));
    assert_eq!((r.attempts[0].latency_ms, r.attempts[0].started_ms), (Some(401), 0));
    assert!(!String::from_utf8(h.property(&[headers::PROP_AUDIT]).unwrap()).unwrap().contains("started_ms"));
    assert!(r.tokens.is_none() && r.cost_usd.is_none());
    assert_eq!(r.provider.as_deref(), Some("anthropic"));
}

#[test]
fn refusals_are_recorded_with_their_outcome_and_no_duration_metric_for_auth() {
    let (a, h) = (audit(), FakeHost::new());
    let mut c = AuditCall::new(&h);
    h.set_property(headers::PROP_REFUSAL, "auth");
    h.response_headers.borrow_mut().push((":status".into(), "401".into()));
    c.on_response_headers(&h, &a, true);
    let r = c.on_log(&h, &a);
    assert_eq!((r.outcome, r.tenant), (Outcome::RefusedAuth, None));
    assert!(h.histograms.borrow().is_empty());
    assert_eq!(h.counters.borrow().get("aigw_requests_total.provider.none.model.none.outcome.refused_auth"), Some(&1));
    // A quota refusal counts by the bucket that refused it (its error code).
    let (a, h) = (audit(), FakeHost::new());
    let mut c = AuditCall::new(&h);
    h.set_property(headers::PROP_REFUSAL, "quota");
    h.set_property(headers::PROP_ERROR_CODE, "tenant_tokens_per_minute");
    h.response_headers.borrow_mut().push((":status".into(), "429".into()));
    c.on_response_headers(&h, &a, true);
    let r = c.on_log(&h, &a);
    assert_eq!((r.outcome, r.error_code.as_deref()), (Outcome::RefusedQuota, Some("tenant_tokens_per_minute")));
    assert_eq!(h.counters.borrow().get("aigw_quota_refusals_total.code.tenant_tokens_per_minute"), Some(&1));
}

#[test]
fn a_success_whose_usage_the_attempt_read_is_not_held() {
    let (a, h) = (audit(), host());
    let mut c = AuditCall::new(&h);
    c.on_request_headers(&h);
    answer(&h, "200", "application/json");
    // The attempt that passed the answer on read its usage (route stage, PROP_USAGE).
    h.set_property_bytes(
        headers::PROP_USAGE,
        &crate::handed::usage(r#"{"input":10,"cached_input":0,"output":5,"reasoning":0}"#),
    );
    assert_eq!(c.on_response_headers(&h, &a, false), Flow::Continue, "not held");
    assert_eq!(h.response_header("x-aigw-tokens-output").as_deref(), Some("5"));
    assert!(h.response_header("x-aigw-cost-usd").is_some());
    // The body passes by unread.
    assert_eq!(c.on_response_body(&h, &a, 3, true), Flow::Continue);
    let r = c.on_log(&h, &a);
    assert_eq!((r.outcome, r.tokens.map(|t| t.output)), (Outcome::Ok, Some(5)));
    // An error answer is still held and read (its own usage, if any, is not the attempt's).
    let h = host();
    let mut c = AuditCall::new(&h);
    answer(&h, "500", "application/json");
    h.set_property_bytes(
        headers::PROP_USAGE,
        &crate::handed::usage(r#"{"input":10,"cached_input":0,"output":5,"reasoning":0}"#),
    );
    assert_eq!(c.on_response_headers(&h, &a, false), Flow::Pause);
}

/// A whole answer the attempt described (`PROP_ANSWER`), through the audit stage to the record.
fn record_of_answer(a: &Audit, facts: &str) -> AuditRecord {
    let h = host();
    let mut c = AuditCall::new(&h);
    c.on_request_headers(&h);
    answered_by_anthropic(&h, "application/json");
    h.set_property_bytes(
        headers::PROP_USAGE,
        &crate::handed::usage(r#"{"input":10,"cached_input":0,"output":5,"reasoning":0}"#),
    );
    h.set_property_bytes(headers::PROP_ANSWER, &crate::handed::facts(facts));
    assert_eq!(c.on_response_headers(&h, a, false), Flow::Continue, "the attempt read it already");
    c.on_response_body(&h, a, 0, true);
    c.on_log(&h, a)
}

#[test]
fn refusals_are_the_providers_signal_or_a_configured_phrase_and_phrases_are_checked() {
    let a = audit();
    let plain = r#"{"finish":"stop","tool_calls":0,"refused":false,"head":"Sure, here it is."}"#;
    let phrase = r#"{"finish":"stop","tool_calls":0,"refused":false,"head":"I\u2019m sorry, but I CAN'T do that."}"#;
    let signal = r#"{"finish":"content_filter","tool_calls":0,"refused":false,"head":""}"#;
    let r = record_of_answer(&a, plain);
    let ans = r.answer.unwrap();
    assert_eq!((ans.finish_reason, ans.refusal), (Some(crate::wire::facts::Finish::Stop), false));
    // Curly apostrophe and case folded: the default phrase "i'm sorry, but i can't".
    assert!(record_of_answer(&a, phrase).answer.unwrap().refusal);
    assert!(record_of_answer(&a, signal).answer.unwrap().refusal);
    // Operators' own list replaces the default one.
    let cfg: AuditConfig =
        crate::config::from_str(&format!(r#"{{"price_book": {BOOK}, "refusal_phrases": ["Sure, here"]}}"#)).unwrap();
    let own = Audit::compile(&cfg).unwrap();
    assert!(record_of_answer(&own, plain).answer.unwrap().refusal);
    assert!(!record_of_answer(&own, phrase).answer.unwrap().refusal);
    // An empty phrase would match every answer: refused, named by its place.
    let cfg: AuditConfig =
        crate::config::from_str(&format!(r#"{{"price_book": {BOOK}, "refusal_phrases": ["ok", " "]}}"#)).unwrap();
    let e = Audit::compile(&cfg).err().unwrap();
    assert_eq!(e.field, "refusal_phrases[1]");
}

#[test]
fn a_label_is_borrowed_when_clean_and_made_safe_otherwise() {
    use std::borrow::Cow;
    assert!(matches!(label("claude-sonnet-4-5_20250929"), Cow::Borrowed("claude-sonnet-4-5_20250929")));
    // Dots separate a stat name's tags; anything else outside [A-Za-z0-9_-] goes too.
    assert_eq!(label("anthropic.claude-haiku-4-5-v1:0"), "anthropic_claude-haiku-4-5-v1_0");
    assert_eq!(label("é x"), "__x");
}

#[test]
fn metrics_named_in_parts_are_the_metrics_named_whole() {
    for (n, r) in crate::audit::sample_records().iter().enumerate() {
        let mut labelled = audit();
        if let Some(t) = &r.tenant {
            labelled.tenant_labels.insert(t.clone(), ());
        }
        for a in [audit(), labelled] {
            for cost in [None, Some(1_234_567_890_u128)] {
                let (parts, whole) = (FakeHost::new(), FakeHost::new());
                record_metrics(&parts, &a, r, cost);
                reference_metrics(&whole, &a, r, cost);
                assert!(!whole.counters.borrow().is_empty());
                assert_eq!(*parts.counters.borrow(), *whole.counters.borrow(), "record {n}");
                assert_eq!(*parts.histograms.borrow(), *whole.histograms.borrow(), "record {n}");
            }
        }
    }
}

/// The metrics as `record_metrics` named them before it gave names in parts (each written
/// whole with `format!`), kept as the reference.
fn reference_metrics(h: &impl Host, audit: &Audit, r: &AuditRecord, cost_pico: Option<u128>) {
    // One buffer for every metric's name, written only for a metric that counts something.
    let name = std::cell::RefCell::new(String::with_capacity(128));
    let named = |parts: std::fmt::Arguments| {
        let mut n = name.borrow_mut();
        n.clear();
        let _ = std::fmt::Write::write_fmt(&mut *n, parts);
        n
    };
    let add = |parts: std::fmt::Arguments, by: u64| {
        if by > 0 {
            h.counter_add(&named(parts), by);
        }
    };
    let record = |parts: std::fmt::Arguments, value: u64| h.histogram_record(&named(parts), value);
    let p = label(r.provider.as_deref().unwrap_or("none"));
    let m = label(r.model.as_deref().unwrap_or("none"));
    let pm = format!("provider.{p}.model.{m}");
    add(format_args!("aigw_requests_total.{pm}.outcome.{}", r.outcome.as_str()), 1);
    if let Some(t) = &r.tokens {
        for (kind, n) in
            [("input", t.input), ("cached_input", t.cached_input), ("output", t.output), ("reasoning", t.reasoning)]
        {
            add(format_args!("aigw_tokens_total.{pm}.token_type.{kind}"), n);
        }
    }
    if let Some(c) = cost_pico {
        // Nano-dollars, rounded half up: a u64 counter then holds 18 billion USD.
        add(format_args!("aigw_cost_nano_usd_total.{pm}"), u64::try_from((c + 500) / 1000).unwrap_or(u64::MAX));
    }
    if r.outcome != Outcome::RefusedAuth && r.outcome != Outcome::RefusedQuota {
        record(format_args!("gen_ai_client_operation_duration_ms.{pm}"), r.latency_ms);
    }
    if let Some(t) = r.ttft_ms {
        record(format_args!("gen_ai_server_time_to_first_token_ms.{pm}"), t);
    }
    if r.attempts.len() > 1 {
        add(format_args!("aigw_fallbacks_total.alias.{}", label(r.alias.as_deref().unwrap_or("none"))), 1);
    }
    if let Some(saved) = r.cost_saved_usd.as_deref().and_then(crate::audit::price::parse_usd) {
        let alias = label(r.alias.as_deref().unwrap_or("none"));
        add(
            format_args!("aigw_cache_saved_nano_usd_total.alias.{alias}"),
            u64::try_from((saved + 500) / 1000).unwrap_or(u64::MAX),
        );
    }
    for a in &r.attempts {
        // Attempts that reached the provider (or failed trying): not one cancelled while it
        // waited (the caller left), nor one the gateway's own provider bucket stopped.
        let cancelled = a.error_class.is_none() && a.status.is_none();
        let ours = a.error_class == Some(crate::audit::ErrorClass::ProviderLimit);
        let apm = format!("provider.{}.model.{}", label(&a.provider), label(a.model.as_deref().unwrap_or("none")));
        if !cancelled && !ours {
            add(format_args!("aigw_provider_attempts_total.{apm}"), 1);
        }
        if let Some(class) = a.error_class {
            add(format_args!("aigw_provider_errors_total.{apm}.error_class.{}", class.as_str()), 1);
        }
    }
    if let Some(a) = &r.answer {
        let finish = a.finish_reason.map_or("none", |f| f.as_str());
        add(format_args!("aigw_answers_total.{pm}.finish.{finish}"), 1);
        add(format_args!("aigw_answer_refusals_total.{pm}"), u64::from(a.refusal));
        add(format_args!("aigw_answer_tool_calls_total.{pm}"), u64::from(a.tool_calls > 0));
        if let Some(v) = a.json_valid {
            add(format_args!("aigw_json_answers_total.{pm}.valid.{v}"), 1);
        }
    }
    for a in r.attempts.iter().filter(|a| a.error_class == Some(crate::audit::ErrorClass::InvalidOutput)) {
        // An answer that was not the JSON asked for, retried at the next step (or refused).
        let apm = format!("provider.{}.model.{}", label(&a.provider), label(a.model.as_deref().unwrap_or("none")));
        add(format_args!("aigw_json_answers_total.{apm}.valid.false"), 1);
    }
    if r.shadow_of.is_some() {
        let alias = label(r.alias.as_deref().unwrap_or("none"));
        add(format_args!("aigw_shadow_legs_total.alias.{alias}.outcome.{}", r.outcome.as_str()), 1);
        if r.outcome == Outcome::RefusedQuota {
            // Over the shadow budget (or another of the shadow tenant's limits): not sent.
            add(format_args!("aigw_shadow_skipped_total.alias.{alias}"), 1);
        }
    }
    if let (Outcome::RefusedQuota, Some(code)) = (r.outcome, &r.error_code) {
        add(format_args!("aigw_quota_refusals_total.code.{}", label(code)), 1);
    }
    if let Some(t) = &r.tenant {
        let t = if audit.tenant_labels.contains_key(t) { label(t) } else { "other".into() };
        add(format_args!("aigw_tenant_requests_total.tenant.{t}.outcome.{}", r.outcome.as_str()), 1);
        if let Some(tk) = &r.tokens {
            add(format_args!("aigw_tenant_tokens_total.tenant.{t}.token_type.input"), tk.input);
            add(format_args!("aigw_tenant_tokens_total.tenant.{t}.token_type.output"), tk.output);
        }
        if let Some(c) = cost_pico {
            add(
                format_args!("aigw_tenant_cost_nano_usd_total.tenant.{t}"),
                u64::try_from((c + 500) / 1000).unwrap_or(u64::MAX),
            );
        }
    }
}

#[test]
fn refusal_phrases_in_other_scripts_are_found_whatever_their_case_and_final_sigma() {
    let cfg: AuditConfig = crate::config::from_str(&format!(
        r#"{{"price_book": {BOOK}, "refusal_phrases": ["я не могу помочь", "δεν μπορώ να σας βοηθήσω"]}}"#
    ))
    .unwrap();
    let a = Audit::compile(&cfg).unwrap();
    assert!(says_refusal("Я НЕ МОГУ ПОМОЧЬ с этим.", &a));
    // Upper case has one sigma; lower case writes it `ς` at a word's end and `σ` elsewhere.
    assert!(says_refusal("ΔΕΝ ΜΠΟΡΏ ΝΑ ΣΑΣ ΒΟΗΘΉΣΩ.", &a));
    assert!(!says_refusal("Я могу помочь.", &a));
}

#[test]
fn refusal_phrases_are_found_as_folding_the_whole_head_would_find_them() {
    // The byte-by-byte comparison against the reference (fold the head, then a substring
    // search per phrase), on heads drawn from letters, case, both apostrophes and non-ASCII.
    let with = |phrases: &str| {
        let cfg: AuditConfig =
            crate::config::from_str(&format!(r#"{{"price_book": {BOOK}, "refusal_phrases": {phrases}}}"#)).unwrap();
        Audit::compile(&cfg).unwrap()
    };
    let audits = [audit(), with(r#"["Can’t", "'n", "É bien", "i"]"#), with(r#"["zz"]"#)];
    let alphabet =
        ["i", "I", " ", "'", "\u{2019}", "c", "a", "n", "t", "m", "'m sorry, but ", "É", "é", "Can", "İ", "z"];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut hits = 0;
    for _ in 0..20_000 {
        let mut head = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 12) as usize;
        for k in 0..len {
            head.push_str(alphabet[((seed >> (k * 4 + 8)) % alphabet.len() as u64) as usize]);
        }
        if seed.is_multiple_of(5) {
            head.push_str(["I can\u{2019}t help with", "I CANNOT ASSIST WITH", "é bien"][(seed % 3) as usize]);
        }
        for a in &audits {
            let folded = fold(&head);
            let want = a.refusal_phrases.iter().any(|p| folded.contains(p.as_str()));
            assert_eq!(says_refusal(&head, a), want, "{head:?} against {:?}", a.refusal_phrases);
            hits += usize::from(want);
        }
    }
    assert!(hits > 1_000, "the cases hold phrases: {hits}");
}
