use super::*;
use crate::quota::bucket::Limit;

fn cfg(json: &str) -> QuotaConfig {
    crate::config::from_str(json).unwrap()
}

fn book() -> &'static str {
    r#"{"version": "t1", "models": {
        "cheap": {"input": "1", "output": "2"},
        "dear": {"input": "10", "output": "40"}}}"#
}

#[test]
fn named_tenant_inherits_unset_fields_from_the_default() {
    let q = Quota::compile(&cfg(r#"{"tenants": {
            "*": {"requests_per_minute": 600, "tokens_per_minute": 100000, "concurrent": 20},
            "tiny": {"requests_per_minute": 3}}}"#))
    .unwrap();
    let s = q.scopes("tiny", None, None);
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].kind, ScopeKind::Tenant);
    assert_eq!(s[0].key, "t.tiny");
    assert_eq!(s[0].limits.requests, Some(Limit { rate_per_minute: 3, burst: 3 }));
    assert_eq!(s[0].limits.tokens, Some(Limit { rate_per_minute: 100_000, burst: 100_000 }));
    assert_eq!(s[0].limits.concurrent, Some(20));
    // An unnamed tenant gets the default, in buckets of its own.
    let other = q.scopes("someone", None, None);
    assert_eq!(other[0].key, "t.someone");
    assert_eq!(other[0].limits.requests, Some(Limit { rate_per_minute: 600, burst: 600 }));
}

#[test]
fn a_rate_set_without_burst_does_not_inherit_the_default_burst() {
    let q = Quota::compile(&cfg(
        r#"{"tenants": {"*": {"requests_per_minute": 600, "requests_burst": 900}, "t": {"requests_per_minute": 5}}}"#,
    ))
    .unwrap();
    assert_eq!(q.scopes("t", None, None)[0].limits.requests, Some(Limit { rate_per_minute: 5, burst: 5 }));
    assert_eq!(q.scopes("u", None, None)[0].limits.requests, Some(Limit { rate_per_minute: 600, burst: 900 }));
}

#[test]
fn feature_and_model_scopes_with_wildcards() {
    let q = Quota::compile(&cfg(r#"{"tenants": {"acme": {
            "features": {"search": {"requests_per_minute": 10}, "*": {"concurrent": 2}},
            "models": {"chat": {"tokens_per_minute": 5000}}}}}"#))
    .unwrap();
    let s = q.scopes("acme", Some("search"), Some("chat"));
    let kinds: Vec<_> = s.iter().map(|s| (s.kind, s.key.as_str())).collect();
    // The tenant itself has no limits, so it is left out.
    assert_eq!(kinds, vec![(ScopeKind::Feature, "t.acme.f.search"), (ScopeKind::Model, "t.acme.m.chat")]);
    let s = q.scopes("acme", Some("other"), Some("fast"));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].limits.concurrent, Some(2));
    // Unknown tenant with no default: nothing to charge.
    assert!(q.scopes("nobody", None, None).is_empty());
}

#[test]
fn caller_chosen_names_cannot_break_out_of_their_key() {
    let q = Quota::compile(&cfg(r#"{"tenants": {"*": {"features": {"*": {"concurrent": 1}}}}}"#)).unwrap();
    let s = q.scopes("a", Some("x.m.y/../z"), None);
    assert_eq!(s[0].key, "t.a.f.x_m_y____z");
}

#[test]
fn invalid_configs_say_what_is_wrong() {
    // The field each error names, and what it says about it.
    let err = |j: &str| {
        let e = Quota::compile(&cfg(j)).unwrap_err();
        assert_eq!(e.filter, "quota");
        (e.field.clone(), e.problem.clone())
    };
    let cases = [
        (r#"{"tenants": {"t": {"requests_per_minute": 0}}}"#, "tenants.t.requests_per_minute", "at least 1"),
        (r#"{"tenants": {"t": {"tokens_burst": 5}}}"#, "tenants.t.tokens_burst", "set without `tokens_per_minute`"),
        (r#"{"tenants": {"t": {"concurrent": 0}}}"#, "tenants.t.concurrent", "at least 1"),
        (r#"{"tenants": {"t": {"budget": {"daily_usd": "5"}}}}"#, "price_book", "is required"),
        (r#"{"tenants": {"t": {"budget": {}}}}"#, "tenants.t.budget", "neither"),
        (r#"{"tenants": {"t": {"budget": {"daily_usd": "abc"}}}}"#, "tenants.t.budget.daily_usd", "not a positive USD"),
        (
            r#"{"tenants": {"t": {"features": {"search": {"requests_per_minute": 1, "requests_burst": 0}}}}}"#,
            "tenants.t.features.search.requests_burst",
            "at least 1",
        ),
        (r#"{"providers": {"openai": {"concurrent": 5}}}"#, "providers.openai", "circuit breakers"),
    ];
    for (json, field, problem) in cases {
        let (f, p) = err(json);
        assert_eq!(f, field, "{json}");
        assert!(p.contains(problem), "{json}: {p}");
    }
    assert!(crate::config::from_str::<QuotaConfig>(r#"{"tenants": {"t": {"rpm": 1}}}"#).is_err());
}

#[test]
fn estimate_counts_text_messages_images_tools_and_the_output_bound() {
    let c = EstimateConfig::default();
    let body = br#"{"model": "chat", "max_tokens": 100, "messages": [
        {"role": "system", "content": "12345678"},
        {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url", "image_url": {"url": "data:..."}}]}]}"#;
    let e = estimate(body, &c).unwrap();
    // 12 text bytes -> 3 tokens by bytes, but 4 pieces ("12345678" is 3 groups of digits,
    // "abcd" one word); 2 messages -> 8, 1 image -> 1000.
    assert_eq!(e.prompt_tokens, 4 + 8 + 1000);
    assert_eq!(e.output_tokens, 100);
    assert_eq!(e.model.as_deref(), Some("chat"));
    assert_eq!(e.tokens(), 1112);
    // max_completion_tokens wins; neither: the default.
    let e = estimate(br#"{"max_completion_tokens": 7, "max_tokens": 100, "messages": []}"#, &c).unwrap();
    assert_eq!(e.output_tokens, 7);
    let e = estimate(br#"{"messages": [{"role": "user", "content": "a"}]}"#, &c).unwrap();
    assert_eq!((e.prompt_tokens, e.output_tokens), (1 + 4, 1024));
    // Tool definitions count too.
    let e = estimate(br#"{"messages": [], "tools": [{"type": "function"}]}"#, &c).unwrap();
    // (as JSON: 9 symbols, "type" and "function": 12 pieces, more than 21 bytes / 4)
    assert_eq!(e.prompt_tokens, 12);
    assert!(estimate(b"not json", &c).is_none());
}

#[test]
fn upper_bound_prices_at_the_dearest_candidate() {
    let q = Quota::compile(&cfg(&format!(r#"{{"price_book": {}}}"#, book()))).unwrap();
    let e = Estimate { prompt_tokens: 1000, output_tokens: 500, model: None };
    // cheap: 1000*1 + 500*2 micro-USD = 2000 micro = 2_000_000 pico... per token prices are pico.
    let cheap = 1000 * 1_000_000u128 + 500 * 2_000_000;
    let dear = 1000 * 10_000_000u128 + 500 * 40_000_000;
    assert_eq!(q.upper_bound_cost(&e, &["cheap"]), Some(cheap));
    assert_eq!(q.upper_bound_cost(&e, &["cheap", "dear"]), Some(dear));
    // A model the book lacks is priced at the book's dearest rates, never as free.
    assert_eq!(q.upper_bound_cost(&e, &["unknown"]), Some(dear));
    assert_eq!(q.upper_bound_cost(&e, &[]), Some(dear));
}

#[test]
fn budget_periods_are_utc_days_and_months() {
    let t = crate::time::parse_utc_ms("2026-11-30T23:59:59Z").unwrap();
    let t2 = t + 1000;
    assert_eq!(period_id(Period::Day, t2), period_id(Period::Day, t) + 1);
    assert_eq!(period_id(Period::Month, t), 2026 * 12 + 10);
    assert_eq!(period_id(Period::Month, t2), 2026 * 12 + 11);
    assert_eq!(ms_to_period_end(Period::Day, t), 1000);
    assert_eq!(ms_to_period_end(Period::Month, t), 1000);
    // December rolls into January; a leap February has 29 days.
    let dec = crate::time::parse_utc_ms("2026-12-31T00:00:00Z").unwrap();
    assert_eq!(ms_to_period_end(Period::Month, dec), 86_400_000);
    assert_eq!(period_id(Period::Month, dec + 86_400_000), 2027 * 12);
    let feb = crate::time::parse_utc_ms("2028-02-28T00:00:00Z").unwrap();
    assert_eq!(period_id(Period::Month, feb + 86_400_000), 2028 * 12 + 1);
    assert_eq!(ms_to_period_end(Period::Month, feb), 2 * 86_400_000);
    for days in [0i64, 59, 365, 10_957, 20_779, 2_932_896] {
        let (y, m, d) = crate::time::civil_from_days(days);
        assert_eq!(crate::time::days_from_civil(y, m, d), days);
    }
}

#[test]
fn a_budget_rolls_over_in_place() {
    let s = BudgetState { period: 10, spent: 500 };
    assert_eq!(BudgetState::decode(&s.encode()), Some(s));
    assert_eq!(BudgetState::decode(&[0; 5]), None);
    assert_eq!(s.spent_in(10), 500);
    assert_eq!(s.spent_in(11), 0); // a new day starts from nothing
                                   // Settled in the same period: the reservation becomes the real cost.
    assert_eq!(s.settled(10, 300, 40), BudgetState { period: 10, spent: 240 });
    // The period rolled over while the call ran: its real cost counts in the new one.
    let rolled = BudgetState { period: 11, spent: 7 };
    assert_eq!(rolled.settled(10, 300, 40), BudgetState { period: 11, spent: 47 });
}

#[test]
fn budget_reservation_soft_threshold_and_settlement() {
    // Cap 100, soft at 80%.
    assert_eq!(reserve(0, 50, 100, 80), BudgetDecision::Reserved { spent: 50, soft: false });
    assert_eq!(reserve(50, 30, 100, 80), BudgetDecision::Reserved { spent: 80, soft: true });
    assert_eq!(reserve(80, 20, 100, 80), BudgetDecision::Reserved { spent: 100, soft: true });
    assert_eq!(reserve(80, 21, 100, 80), BudgetDecision::Refused);
    // An estimate above the whole cap is refused even when nothing is spent.
    assert_eq!(reserve(0, 101, 100, 80), BudgetDecision::Refused);
    // Reserved 50, really cost 12.
    assert_eq!(settle(80, 50, 12), 42);
    assert_eq!(settle(10, 50, 12), 12);
}

#[test]
fn one_billing_rule_for_each_way_a_call_ends() {
    let e = Estimate { prompt_tokens: 20, output_tokens: 100, model: None };
    let real = Usage { input: 18, cached_input: 0, output: 7, reasoning: 0, cache_write: 0, cache_write_1h: 0 };
    let end = |usage, status, unreadable, stream, attempted| CallEnd { usage, status, unreadable, stream, attempted };
    let charged = |c: CallEnd| Billing::of(&c).charged(&e);
    // Reported usage wins, whatever else happened.
    assert_eq!(charged(end(Some(real), Some(200), false, Some((3, false)), true)), Some((real, false)));
    // A stream cut (reset or in-stream error) after 5 content events: prompt + what streamed.
    let cut = Usage { input: 20, output: 5, ..Usage::default() };
    assert_eq!(charged(end(None, Some(200), false, Some((5, false)), true)), Some((cut, true)));
    // A complete answer without usage: the whole estimate.
    let whole = Usage { input: 20, output: 100, ..Usage::default() };
    assert_eq!(charged(end(None, Some(200), false, None, true)), Some((whole, true)));
    assert_eq!(charged(end(None, Some(200), false, Some((9, true)), true)), Some((whole, true)));
    // The caller left while the provider worked: input only.
    let input = Usage { input: 20, ..Usage::default() };
    assert_eq!(charged(end(None, None, false, None, true)), Some((input, true)));
    // Nothing billed: never sent, an error status (chain exhausted, provider error, refusals),
    // or a success that could not be read.
    assert_eq!(charged(end(None, None, false, None, false)), None);
    assert_eq!(charged(end(None, Some(503), false, None, true)), None);
    assert_eq!(charged(end(None, Some(502), false, Some((4, false)), true)), None);
    assert_eq!(charged(end(None, Some(429), false, None, false)), None);
    assert_eq!(charged(end(None, Some(200), true, None, true)), None);
}

#[test]
fn settled_figures_travel_through_filter_state_intact() {
    let u = Usage { input: 18, cached_input: 2, output: 7, reasoning: 1, cache_write: 5, cache_write_1h: 3 };
    for s in [
        Settled { usage: Some(u), estimated: true, cost_pico: Some(123_456_789) },
        Settled { usage: Some(u), estimated: false, cost_pico: None },
        Settled { usage: None, estimated: false, cost_pico: None },
    ] {
        assert_eq!(Settled::decode(&s.encode()), Some(s));
    }
    assert_eq!(Settled::decode("1 2 3"), None);
    assert_eq!(Settled::decode("a b c d e f"), None);
    assert_eq!(Settled::decode("18 2 7 1 1 9 x"), None);
    // As a module before cache writes were counted wrote it: no cache writes.
    let old = Settled::decode("18 2 7 1 1 9").and_then(|s| s.usage);
    assert_eq!(old, Some(Usage { cache_write: 0, cache_write_1h: 0, ..u }));
    // And before their hour was: every write a five-minute one.
    let older = Settled::decode("18 2 7 1 1 9 5").and_then(|s| s.usage);
    assert_eq!(older, Some(Usage { cache_write_1h: 0, ..u }));
    assert_eq!(Settled::decode("18 2 7 1 1 9 5 x"), None);
    let e = Estimate { prompt_tokens: 5, output_tokens: 9, model: None };
    assert_eq!(decode_estimate(&encode_estimate(&e)), Some(e));
}

#[test]
fn the_prompt_estimate_counts_short_words_and_symbols() {
    // 150 one-letter words: 150 tokens at any tokenizer, but only 75 by bytes / 4.
    let words = vec!["a"; 150].join(" ");
    assert_eq!(text_pieces(&format!("\"{words}\"")), 150);
    let body = format!(r#"{{"model":"m","max_tokens":1,"messages":[{{"role":"user","content":"{words}"}}]}}"#);
    let e = estimate(body.as_bytes(), &EstimateConfig::default()).unwrap();
    assert_eq!(e.prompt_tokens, 150 + TOKENS_PER_MESSAGE);
    // Long words still count by bytes / 4; escapes count as what they stand for.
    assert_eq!(text_pieces("\"internationalisation\""), 5);
    assert_eq!(text_pieces(r#""a\nb""#), 3);
    assert_eq!(text_pieces(r#""x\u00e9y""#), 3);
    assert_eq!(text_pieces("\"12345, ok!\""), 2 + 1 + 1 + 1);
    assert_eq!(text_pieces("\"日本語\""), 6);
    assert_eq!(text_pieces(r#""\\""#), 1);
    assert_eq!(text_pieces(r#""a\"""#), 2);
    assert_eq!(text_pieces(""), 0);
    assert_eq!(text_pieces("\"\\u12\""), 1);
}

/// Whitespace-separated words, as the fake providers count prompt tokens.
fn fake_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

#[test]
fn the_prompt_estimate_is_never_below_the_fakes_count() {
    let samples = [
        "a a a a a a",
        "The quick brown fox jumps over the lazy dog.",
        "x=1;y=2;z=[1,2,3]",
        "  spaced   out\n\nlines\t\ttabbed ",
        "naïve café — déjà vu 日本語 テキスト 🙂🙂",
        "1 22 333 4444 55555 666666",
        "!!! ??? ... ,,, ;;;",
    ];
    for text in samples {
        let raw = crate::wire::write::to_string(text);
        let pieces = text_pieces(&raw);
        let by_bytes = (raw.len() as u64 - 2).div_ceil(BYTES_PER_TOKEN);
        assert!(pieces.max(by_bytes) >= fake_count(text), "{text:?}: {pieces} < {}", fake_count(text));
    }
}

#[test]
fn request_facts_travel_through_filter_state_intact() {
    let body = br#"{"model": "chat", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 9,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi there"}, {"type": "image_url"}]}]}"#;
    let f = RequestFacts::read(body).unwrap();
    assert!(f.stream && f.include_usage);
    assert_eq!((f.text_bytes, f.messages, f.images, f.max_output), (8, 1, 1, Some(9)));
    // The line as it was first written (with `format!`).
    assert_eq!(f.encode(), format!("8 {} 1 1 9 chat", f.text_pieces));
    let back = RequestFacts::decode(&f.encode()).unwrap();
    assert_eq!(back.estimate(&EstimateConfig::default()), f.estimate(&EstimateConfig::default()));
    assert_eq!(back.model.as_deref(), Some("chat"));
    let none = RequestFacts { model: None, max_output: None, ..f };
    assert_eq!(none.encode(), format!("8 {} 1 1 - ", f.text_pieces));
    assert_eq!(RequestFacts::decode(&none.encode()).map(|d| (d.model, d.max_output)), Some((None, None)));
    assert!(RequestFacts::decode("x y").is_none());
    assert!(RequestFacts::read(b"[1]").is_err());
}

#[test]
fn a_responses_request_is_estimated_at_least_as_its_chat_translation() {
    let cfg = EstimateConfig::default();
    for body in [
        r#"{"model":"m","input":"hello there, how are you?"}"#,
        r#"{"model":"m","instructions":"Be terse.","max_output_tokens":64,
            "tools":[{"type":"function","name":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}],
            "input":[{"role":"user","content":[{"type":"input_text","text":"Weather in Paris?"},
                                               {"type":"input_image","image_url":"https://x/y.png"}]},
                     {"type":"function_call","call_id":"c1","name":"weather","arguments":"{\"city\":\"Paris\"}"},
                     {"type":"function_call_output","call_id":"c1","output":"18C, cloudy and a b c d e f"}]}"#,
    ] {
        let direct = RequestFacts::read_responses(body.as_bytes()).unwrap();
        let (unified, _) = crate::wire::responses_in::request_to_chat(body.as_bytes()).unwrap();
        let via_chat = RequestFacts::read(&unified).unwrap();
        assert_eq!(
            (direct.model.as_deref(), direct.max_output),
            (via_chat.model.as_deref(), via_chat.max_output.or(direct.max_output))
        );
        assert_eq!((direct.messages, direct.images), (via_chat.messages, via_chat.images), "{body}");
        let (d, c) = (direct.estimate(&cfg), via_chat.estimate(&cfg));
        assert!(d.prompt_tokens >= c.prompt_tokens, "{body}: {} < {}", d.prompt_tokens, c.prompt_tokens);
    }
    assert!(RequestFacts::read_responses(b"{not json").is_err());
}
