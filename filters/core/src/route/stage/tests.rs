use super::*;
use crate::host::FakeHost;
use crate::wire::usage::Usage;

const CFG: &str = r#"{"aliases": {
    "chat": {"chain": "chain_chat", "steps": [
        {"provider": "anthropic", "model": "claude-x"}, {"provider": "openai", "model": "gpt-x"}]},
    "eu": {"chain": "chain_eu", "steps": [{"provider": "anthropic", "model": "claude-x"}]}},
  "zones": {"eu": ["eu-west-1"], "global": ["*"]},
  "forward_request_headers": ["x-fake-fault"],
  "providers": {"anthropic": {"api": "anthropic", "max_tokens_default": 512}, "openai": {"api": "openai"}}}"#;

fn cfg() -> Rc<RouteConfig> {
    let c: RouteConfig = crate::config::from_str(CFG).unwrap();
    c.validate().unwrap();
    Rc::new(c)
}

fn request(path: &str, body: &str, identity: Option<&str>) -> FakeHost {
    let h = FakeHost::new()
        .with_request_header(":method", "POST")
        .with_request_header(":path", path)
        .with_request_header("x-request-id", "rid");
    if let Some(id) = identity {
        h.set_property_bytes(headers::PROP_IDENTITY, &crate::handed::identity(id));
    }
    *h.request_body.borrow_mut() = body.as_bytes().to_vec();
    h
}

fn run_select(h: &FakeHost) -> (Select, Flow) {
    let mut s = Select::new(cfg());
    assert_eq!(s.on_request_headers(h, false), Flow::Pause, "the headers wait for the body");
    let n = h.request_body.borrow().len();
    let flow = s.on_request_body(h, n, true);
    (s, flow)
}

fn error(h: &FakeHost) -> (u16, crate::wire::tree::Value) {
    let r = h.reply().unwrap();
    (r.status, crate::wire::from_slice(&r.body).unwrap())
}

#[test]
fn a_call_is_routed_to_its_aliases_chain_and_its_facts_handed_on() {
    let h = request("/v1/chat/completions", r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#, None);
    h.request_headers.borrow_mut().push((headers::CALLER_LATENCY_BUDGET.into(), "1000".into()));
    let (_, flow) = run_select(&h);
    assert_eq!(flow, Flow::Continue);
    assert_eq!(h.request_header(headers::CHAIN).as_deref(), Some("chain_chat"));
    assert_eq!(h.route_cache_cleared.get(), 1);
    assert_eq!(h.property_string(&[headers::PROP_ALIAS]).as_deref(), Some("chat"));
    assert_eq!(h.property_string(&[headers::PROP_CANDIDATES]).as_deref(), Some("claude-x,gpt-x"));
    assert!(RequestFacts::decode(&h.property_string(&[headers::PROP_REQUEST]).unwrap()).is_some());
    // The budget: the whole call, each of the two attempts half of it; the hint goes no further.
    assert_eq!(h.request_header("x-envoy-upstream-rq-timeout-ms").as_deref(), Some("1000"));
    assert_eq!(h.request_header("x-envoy-upstream-rq-per-try-timeout-ms").as_deref(), Some("500"));
    assert_eq!(h.property_string(&[headers::PROP_PER_TRY_MS]).as_deref(), Some("500"));
    assert!(h.request_header(headers::CALLER_LATENCY_BUDGET).is_none());
}

#[test]
fn requests_that_cannot_be_routed_are_refused_with_their_code() {
    for (body, identity, status, code) in [
        ("not json", None, 400, "invalid_json"),
        (r#"{"messages":[]}"#, None, 400, "missing_model"),
        (r#"{"model":"gpt-9","messages":[]}"#, None, 404, "model_not_found"),
        (
            r#"{"model":"eu","messages":[]}"#,
            Some(r#"{"tenant":"t","key_id":"k","key_fingerprint":"f","alias_scope":"chat"}"#),
            403,
            "alias_not_in_scope",
        ),
    ] {
        let h = request("/v1/chat/completions", body, identity);
        let (_, flow) = run_select(&h);
        assert_eq!(flow, Flow::Refused, "{body}");
        let (s, e) = error(&h);
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{body}");
        assert_eq!(h.property_string(&[headers::PROP_REFUSAL]).as_deref(), Some("route"));
    }
    let h = request("/v1/chat/completions", "", None);
    h.set_request_header(":method", Some("GET"));
    assert_eq!(Select::new(cfg()).on_request_headers(&h, true), Flow::Refused);
    assert_eq!(error(&h).0, 405);
    // Any other path is not the route stage's.
    let h = request("/healthz", "", None);
    assert_eq!(Select::new(cfg()).on_request_headers(&h, true), Flow::Continue);
}

#[test]
fn the_messages_door_routes_the_request_as_written_and_refuses_in_its_own_shape() {
    let body = r#"{"model":"chat","max_tokens":20,"top_k":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let h = request("/v1/messages", body, None);
    let (_, flow) = run_select(&h);
    assert_eq!(flow, Flow::Continue);
    // The chains' routes match the chat path; the body goes on byte for byte (each attempt
    // passes it, or translates it for its provider).
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/chat/completions"));
    assert_eq!(h.request_body.borrow().as_slice(), body.as_bytes());
    assert_eq!(h.property_string(&[headers::PROP_DOOR]).as_deref(), Some("messages"));
    assert_eq!(h.request_header(headers::CHAIN).as_deref(), Some("chain_chat"));
    let facts = RequestFacts::decode(&h.property_string(&[headers::PROP_REQUEST]).unwrap()).unwrap();
    assert_eq!((facts.max_output, facts.messages), (Some(20), 1));
    for (body, status, message) in [
        (r#"{"model":"nope","max_tokens":20,"messages":[]}"#, 404, None),
        (r#"{"model":"chat","messages":[]}"#, 400, Some("max_tokens: Field required")),
        (r#"{"model":"chat","max_tokens":"20","messages":[]}"#, 400, None),
        (r#"{"model":"chat","max_tokens":20}"#, 400, Some("messages: Field required")),
    ] {
        let h = request("/v1/messages", body, None);
        assert_eq!(run_select(&h).1, Flow::Refused, "{body}");
        let (s, e) = error(&h);
        assert_eq!((s, e["type"].as_str()), (status, Some("error")), "{body}");
        if let Some(m) = message {
            assert_eq!(e["error"]["message"], m, "{body}");
        }
    }
}

#[test]
fn a_failed_chain_is_explained_and_a_rejected_gateway_credential_is_a_502() {
    let attempts = r#"[{"provider":"anthropic","region":null,"model":"claude-x","status":529,"latency_ms":3,"error_class":"overloaded"},
                       {"provider":"openai","region":null,"model":"gpt-x","status":500,"latency_ms":3,"error_class":"server_error"}]"#;
    let h = request("/v1/chat/completions", r#"{"model":"chat","messages":[]}"#, None);
    let (mut s, _) = run_select(&h);
    h.set_property_bytes(headers::PROP_ATTEMPTS, &crate::handed::attempts(attempts));
    h.response_headers.borrow_mut().push((":status".into(), "500".into()));
    s.on_response_headers(&h, false);
    assert_eq!(h.response_header(":status").as_deref(), Some("503"));
    *h.response_body.borrow_mut() = b"provider's own body".to_vec();
    s.on_response_body(&h, 19, true);
    let e: crate::wire::tree::Value = crate::wire::from_slice(&h.response_body.borrow()).unwrap();
    assert_eq!(e["error"]["code"], "fallback_chain_exhausted");
    assert_eq!(e["error"]["attempts"].as_array().map(Vec::len), Some(2));

    let h = request("/v1/chat/completions", r#"{"model":"chat","messages":[]}"#, None);
    let (mut s, _) = run_select(&h);
    h.set_property_bytes(
        headers::PROP_ATTEMPTS,
        &crate::handed::attempts(&attempts.replace("529", "401").replace("overloaded", "auth")),
    );
    h.response_headers.borrow_mut().push((":status".into(), "401".into()));
    s.on_response_headers(&h, false);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
}

#[test]
fn a_stream_the_caller_asked_no_usage_for_loses_the_usage_chunk_but_the_audit_keeps_it() {
    let h = request("/v1/chat/completions", r#"{"model":"chat","stream":true,"messages":[]}"#, None);
    let (mut s, _) = run_select(&h);
    {
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), "200".into()));
        r.push(("content-type".into(), "text/event-stream".into()));
        r.push(("x-envoy-attempt-count".into(), "1".into()));
    }
    s.on_response_headers(&h, false);
    let stream = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
        "data: {\"id\":\"c\",\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"yo\"}}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n",
        "data: [DONE]\n\n"
    );
    *h.response_body.borrow_mut() = stream.as_bytes().to_vec();
    s.on_response_body(&h, stream.len(), true);
    let out = String::from_utf8(h.response_body.borrow().clone()).unwrap();
    assert!(!out.contains("usage") && out.contains("[DONE]") && out.contains("\"hi\""), "{out}");
    // Each event whole, only without its usage member, wherever it was.
    assert!(
        out.starts_with("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"c\",\"choices\""),
        "{out}"
    );
    assert_eq!(h.property(&[headers::PROP_USAGE]).and_then(|u| Usage::decode(&u)).map(|u| u.input), Some(3));
}

fn attempt_on(provider: &str, region: &str, identity: Option<&str>) -> (FakeHost, RouteAttempt, Flow) {
    let h = request(
        "/v1/chat/completions",
        r#"{"model":"chat","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}"#,
        identity,
    );
    h.set_property(headers::PROP_ALIAS, "chat");
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", provider);
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.region", region);
    {
        let mut r = h.request_headers.borrow_mut();
        r.push(("content-type".into(), "text/plain; odd".into()));
        r.push(("anthropic-beta".into(), "x".into()));
        r.push(("x-fake-fault".into(), "openai=500".into()));
        r.push(("x-aigw-chain".into(), "chain_chat".into()));
    }
    let mut a = RouteAttempt::new(cfg());
    let flow = a.on_request_headers(&h, false);
    (h, a, flow)
}

#[test]
fn an_attempt_translates_for_its_provider_and_forwards_only_allowed_headers() {
    let (h, mut a, flow) = attempt_on("anthropic", "eu-west-1", None);
    assert_eq!(flow, Flow::Pause);
    let names: Vec<String> = h.request_headers().into_iter().map(|(k, _)| k).collect();
    for n in ["anthropic-beta", "x-request-id", "x-aigw-chain"] {
        assert!(!names.contains(&n.to_string()), "{n} was forwarded: {names:?}");
    }
    assert_eq!(h.request_header("x-fake-fault").as_deref(), Some("openai=500"));
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(h.request_header("content-type").as_deref(), Some("application/json"));
    assert_eq!(h.request_header("anthropic-version").as_deref(), Some(crate::provider::anthropic::API_VERSION));
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!((sent["model"].as_str(), sent["max_tokens"].as_u64()), (Some("claude-x"), Some(9)));
    let rec = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!((rec[0].provider.as_str(), rec[0].error_class), ("anthropic", Some(ErrorClass::NoResponse)));
}

/// An attempt of a call that came in by the Messages door.
fn messages_attempt_on(provider: &str, body: &str) -> (FakeHost, RouteAttempt) {
    let h = request("/v1/chat/completions", body, None);
    h.set_property(headers::PROP_ALIAS, "chat");
    h.set_property(headers::PROP_DOOR, "messages");
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", provider);
    let mut a = RouteAttempt::new(cfg());
    assert_eq!(a.on_request_headers(&h, false), Flow::Pause);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Continue);
    (h, a)
}

fn answer_with(h: &FakeHost, a: &mut RouteAttempt, ct: &str, body: &str) -> String {
    h.response_headers.borrow_mut().extend([(":status".into(), "200".into()), ("content-type".into(), ct.into())]);
    a.on_response_headers(h, false);
    *h.response_body.borrow_mut() = body.as_bytes().to_vec();
    a.on_response_body(h, body.len(), true);
    String::from_utf8(h.response_body.borrow().clone()).unwrap()
}

#[test]
fn a_messages_call_passes_to_anthropic_as_written_but_for_its_model_and_its_answer_comes_back_as_it_is() {
    // What only Anthropic has (top_k, thinking, cache_control, a document block) reaches it.
    let body = r#"{"model":"chat","max_tokens":64,"top_k":3,"thinking":{"type":"enabled","budget_tokens":1024},
        "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
        "messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}},
                                              {"type":"text","text":"Sum it up."}]}]}"#;
    let (h, mut a) = messages_attempt_on("anthropic", body);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/messages"));
    let sent = String::from_utf8(h.request_body.borrow().clone()).unwrap();
    assert_eq!(sent, body.replace(r#""model":"chat""#, r#""model":"claude-x""#));
    assert_eq!(h.request_header("content-length"), Some(sent.len().to_string()));
    // A whole answer passes unchanged; its usage (cache reads and writes in the input) and
    // facts are read on the way.
    let answer = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[
        {"type":"thinking","thinking":"hm","signature":"sig"},{"type":"text","text":"A memo."}],"stop_reason":"end_turn",
        "stop_sequence":null,"usage":{"input_tokens":4,"cache_creation_input_tokens":10,"cache_read_input_tokens":20,"output_tokens":6}}"#;
    assert_eq!(answer_with(&h, &mut a, "application/json", answer), answer);
    let u = Usage::decode(&h.property(&[headers::PROP_USAGE]).unwrap()).unwrap();
    assert_eq!((u.input, u.cached_input, u.output), (34, 20, 6));
    let f = crate::wire::facts::AnswerFacts::decode(&h.property(&[headers::PROP_ANSWER]).unwrap()).unwrap();
    assert_eq!((f.finish, f.head.as_str()), (Some(crate::wire::facts::Finish::Stop), "A memo."));
    // A stream passes unchanged too.
    let (h, mut a) = messages_attempt_on("anthropic", &body.replace(r#""top_k":3"#, r#""top_k":3,"stream":true"#));
    let events = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_eq!(answer_with(&h, &mut a, "text/event-stream", events), events);
    // An unreadable success is the attempt's 502 (Envoy moves on).
    let (h, mut a) = messages_attempt_on("anthropic", body);
    answer_with(&h, &mut a, "application/json", "{\"type\":\"mess");
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    // Structured outputs asked (`output_config.format`, read by the listener): an answer that is
    // not the JSON asked for is the attempt's 502 too.
    let asked = r#"{"model":"chat","max_tokens":64,"output_config":{"format":{"type":"json_schema","schema":{"type":"object","required":["a"]}}},"messages":[{"role":"user","content":"hi"}]}"#;
    let l = request("/v1/messages", asked, None);
    run_select(&l);
    let format = l.property_string(&[headers::PROP_OUTPUT_FORMAT]).unwrap();
    assert!(format.contains("\"required\":[\"a\"]"), "{format}");
    let h = request("/v1/chat/completions", asked, None);
    h.set_property(headers::PROP_ALIAS, "chat");
    h.set_property(headers::PROP_DOOR, "messages");
    h.set_property(headers::PROP_OUTPUT_FORMAT, &format);
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "anthropic");
    let mut a = RouteAttempt::new(cfg());
    a.on_request_headers(&h, false);
    let n = h.request_body.borrow().len();
    a.on_request_body(&h, n, true);
    let prose = r#"{"id":"m","type":"message","role":"assistant","content":[{"type":"text","text":"Sure!"}],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let out = answer_with(&h, &mut a, "application/json", prose);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    assert!(out.contains("invalid_model_output"), "{out}");
    let rec = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!(rec[0].error_class, Some(ErrorClass::InvalidOutput));
}

#[test]
fn a_messages_call_to_an_openai_format_provider_is_translated_there_and_back() {
    let body = r#"{"model":"chat","max_tokens":64,"top_k":3,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}"#;
    let (h, mut a) = messages_attempt_on("openai", body);
    assert_eq!(h.request_header(":path").as_deref(), Some("/v1/chat/completions"));
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!(sent["model"], "gpt-x");
    assert_eq!(sent["messages"][0], crate::json!({"role": "system", "content": "Be brief."}));
    assert!(sent.get("top_k").is_none(), "OpenAI has no top_k");
    let answer = r#"{"id":"chatcmpl-9","object":"chat.completion","model":"gpt-x","choices":[{"index":0,
        "message":{"role":"assistant","content":"Hello."},"finish_reason":"stop"}],
        "usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#;
    let out: crate::wire::tree::Value =
        crate::wire::from_str(&answer_with(&h, &mut a, "application/json", answer)).unwrap();
    assert_eq!((out["type"].as_str(), out["content"][0]["text"].as_str()), (Some("message"), Some("Hello.")));
    assert_eq!(out["stop_reason"], "end_turn");
    assert_eq!(h.response_header("content-length"), Some(out.to_string().len().to_string()));
    assert_eq!(Usage::decode(&h.property(&[headers::PROP_USAGE]).unwrap()).map(|u| u.input), Some(5));
    // Streamed: the chunks become Messages events.
    let (h, mut a) = messages_attempt_on("openai", &body.replace(r#""top_k":3"#, r#""stream":true"#));
    let sent: crate::wire::tree::Value = crate::wire::from_slice(&h.request_body.borrow()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let chunks = concat!(
        "data: {\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,\"total_tokens\":6}}\n\n",
        "data: [DONE]\n\n"
    );
    let out = answer_with(&h, &mut a, "text/event-stream", chunks);
    let names: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(out.contains("\"text\":\"Hel\"") && !out.contains("[DONE]"), "{out}");
    let mut sc = crate::wire::usage::StreamScanner::<true>::default();
    sc.push(out.as_bytes());
    assert_eq!(sc.usage.map(|u| (u.input, u.output)), Some((5, 1)));
    // What the translation cannot carry is refused by the attempt, in the door's shape.
    let h = request(
        "/v1/chat/completions",
        r#"{"model":"chat","max_tokens":9,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}"#,
        None,
    );
    h.set_property(headers::PROP_ALIAS, "chat");
    h.set_property(headers::PROP_DOOR, "messages");
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "openai");
    let mut a = RouteAttempt::new(cfg());
    a.on_request_headers(&h, false);
    let n = h.request_body.borrow().len();
    assert_eq!(a.on_request_body(&h, n, true), Flow::Refused);
    let (s, e) = error(&h);
    assert_eq!((s, e["type"].as_str()), (400, Some("error")));
}

#[test]
fn an_attempt_outside_the_callers_privacy_zone_is_refused_before_it_is_sent() {
    let eu = r#"{"tenant":"t","key_id":"k","key_fingerprint":"f","zone":"eu","alias_scope":"*"}"#;
    let (h, _, flow) = attempt_on("openai", "us-east-1", Some(eu));
    assert_eq!(flow, Flow::Refused);
    let (s, e) = error(&h);
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("no_eligible_provider_in_zone")));
    let (_, _, flow) = attempt_on("anthropic", "eu-west-1", Some(eu));
    assert_eq!(flow, Flow::Pause); // held for its body, not refused
}

#[test]
fn an_unreadable_success_becomes_a_retriable_502_on_openai_format_providers() {
    let (h, mut a, _) = attempt_on("openai", "us-east-1", None);
    {
        let mut r = h.response_headers.borrow_mut();
        r.push((":status".into(), "200".into()));
        r.push(("content-type".into(), "application/json".into()));
        r.push(("x-request-id".into(), "req_123".into()));
        r.push(("openai-version".into(), "2020-10-01".into()));
        r.push(("x-aigw-credential".into(), "spoofed".into()));
    }
    h.set_property(headers::PROP_CREDENTIAL, "abc123");
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    // Provider account headers are dropped; the request id is kept under the gateway's name.
    assert!(h.response_header("openai-version").is_none() && h.response_header("x-request-id").is_none());
    assert_eq!(h.response_header(headers::PROVIDER_REQUEST_ID).as_deref(), Some("req_123"));
    assert!(h.response_header("x-aigw-credential").is_none(), "a provider's x-aigw- header is dropped");
    assert!(h.property(&[headers::PROP_CREDENTIAL]).is_none(), "used once, for this attempt's record");
    *h.response_body.borrow_mut() = br#"{"id":"x","choi"#.to_vec();
    a.on_response_body(&h, 15, true);
    assert_eq!(h.response_header(":status").as_deref(), Some("502"));
    let rec = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!((rec[0].status, rec[0].error_class), (Some(200), Some(ErrorClass::InvalidResponse)));
    assert_eq!(rec[0].credential.as_deref(), Some("abc123"));
}

#[test]
fn an_attempt_hands_the_usage_of_the_answer_it_read_to_the_listener() {
    // OpenAI format: checked and passed on unchanged, its usage read on the way.
    let (h, mut a, _) = attempt_on("openai", "us-east-1", None);
    h.response_headers
        .borrow_mut()
        .extend([(":status".into(), "200".into()), ("content-type".into(), "application/json".into())]);
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#;
    *h.response_body.borrow_mut() = body.to_vec();
    a.on_response_body(&h, body.len(), true);
    assert_eq!(h.response_body.borrow().as_slice(), &body[..], "passed on unchanged");
    let u: crate::wire::usage::Usage = Usage::decode(&h.property(&[headers::PROP_USAGE]).unwrap()).unwrap();
    assert_eq!((u.input, u.output), (7, 2));
    // Translated (Anthropic): the usage the translation read.
    let (h, mut a, _) = attempt_on("anthropic", "eu-west-1", None);
    h.response_headers
        .borrow_mut()
        .extend([(":status".into(), "200".into()), ("content-type".into(), "application/json".into())]);
    assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":4,"output_tokens":6}}"#;
    *h.response_body.borrow_mut() = body.to_vec();
    a.on_response_body(&h, body.len(), true);
    let u: crate::wire::usage::Usage = Usage::decode(&h.property(&[headers::PROP_USAGE]).unwrap()).unwrap();
    assert_eq!((u.input, u.output), (4, 6));
    // An error answer hands on nothing.
    let (h, mut a, _) = attempt_on("openai", "us-east-1", None);
    h.response_headers
        .borrow_mut()
        .extend([(":status".into(), "500".into()), ("content-type".into(), "application/json".into())]);
    a.on_response_headers(&h, false);
    a.on_response_body(&h, 2, true);
    assert!(h.property(&[headers::PROP_USAGE]).is_none());
}

#[test]
fn an_answer_that_is_not_the_json_asked_for_is_its_attempts_502_and_a_stream_ends_with_an_error() {
    let asked = r#"{"type":"json_schema","json_schema":{"name":"c","schema":{"type":"object","required":["a"]}}}"#;
    let answer = |content: &str| {
        crate::json!({"id": "x", "object": "chat.completion", "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        .to_string()
    };
    // An attempt at OpenAI of a request that asked for `asked`, answered 200 with `ct`.
    let attempt = |ct: &str| {
        let h =
            request("/v1/chat/completions", r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#, None);
        h.set_property(headers::PROP_ALIAS, "chat");
        h.set_property(headers::PROP_OUTPUT_FORMAT, asked);
        h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "openai");
        let mut a = RouteAttempt::new(cfg());
        a.on_request_headers(&h, false);
        h.response_headers
            .borrow_mut()
            .extend([(":status".to_string(), "200".to_string()), ("content-type".to_string(), ct.to_string())]);
        (h, a)
    };
    let whole = |content: &str| {
        let (h, mut a) = attempt("application/json");
        assert_eq!(a.on_response_headers(&h, false), Flow::Pause);
        let body = answer(content);
        *h.response_body.borrow_mut() = body.clone().into_bytes();
        a.on_response_body(&h, body.len(), true);
        h
    };
    let ok = whole(r#"{"a": 1}"#);
    assert_eq!(ok.response_header(":status").as_deref(), Some("200"));
    let bad = whole("Sure: {\"a\": 1}");
    assert_eq!(bad.response_header(":status").as_deref(), Some("502"));
    let e: crate::wire::tree::Value = crate::wire::from_slice(&bad.response_body.borrow()).unwrap();
    assert_eq!(e["error"]["code"], "invalid_model_output");
    let rec = parse_attempts(bad.property(&[headers::PROP_ATTEMPTS]).as_deref());
    assert_eq!((rec[0].status, rec[0].error_class), (Some(502), Some(ErrorClass::InvalidOutput)));
    assert!(bad.property_string(&[headers::PROP_OUTPUT_PROBLEM]).unwrap().contains("not JSON"));
    let schema = whole(r#"{"b": 1}"#);
    assert!(String::from_utf8_lossy(&schema.response_body.borrow()).contains("missing required property `a`"));

    // Streamed (passed through): the content goes on, then the error event, then [DONE].
    let (h, mut a) = attempt("text/event-stream");
    assert_eq!(a.on_response_headers(&h, false), Flow::Continue);
    let stream = crate::wire::chat::stream_from_answer(answer("not json").as_bytes()).unwrap();
    let (first, rest) = stream.split_at(stream.len() / 2);
    *h.response_body.borrow_mut() = first.to_vec();
    a.on_response_body(&h, first.len(), false);
    let mut out = h.response_body.borrow().clone();
    *h.response_body.borrow_mut() = rest.to_vec();
    a.on_response_body(&h, rest.len(), true);
    out.extend(h.response_body.borrow().iter());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("not json"), "the content went on");
    let error_at = text.find("invalid_model_output").unwrap();
    assert!(error_at < text.rfind("[DONE]").unwrap() && text.ends_with("data: [DONE]\n\n"));
}

#[test]
fn a_responses_stream_that_is_not_the_json_asked_for_ends_as_failed() {
    let format = crate::guard::schema::OutputFormat::of_response_format(
        &crate::json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": ["a"]}}}),
    )
    .unwrap();
    let stream = |text: &str| {
        let response = |status: &str, text: &str| {
            crate::json!({"id": "resp_1", "object": "response", "status": status, "output": [{"type": "message",
                "role": "assistant", "content": [{"type": "output_text", "text": text}]}]})
        };
        let ev = |n: u64, kind: &str, mut v: crate::wire::tree::Value| {
            v["type"] = kind.into();
            v["sequence_number"] = n.into();
            format!("event: {kind}\ndata: {v}\n\n")
        };
        [
            ev(0, "response.created", crate::json!({"response": response("in_progress", "")})),
            ev(1, "response.output_text.delta", crate::json!({"output_index": 0, "content_index": 0, "delta": text})),
            ev(2, "response.completed", crate::json!({"response": response("completed", text)})),
        ]
        .concat()
    };
    let run = |text: &str| {
        let mut w = OutputWatch::new(format.clone(), WatchKind::Responses);
        let bytes = stream(text).into_bytes();
        let (a, b) = bytes.split_at(bytes.len() - 40);
        let mut out = a.to_vec();
        w.watch(&mut out, false);
        let mut rest = b.to_vec();
        w.watch(&mut rest, true);
        out.extend(rest);
        String::from_utf8(out).unwrap()
    };
    let good = run(r#"{"a": 1}"#);
    assert!(good.contains("event: response.completed") && !good.contains("failed"), "{good}");
    let bad = run("Sure, here it is");
    let last = bad.trim_end().rsplit("\n\n").next().unwrap();
    assert!(last.starts_with("event: response.failed\n"), "{bad}");
    let v: crate::wire::tree::Value = crate::wire::from_str(last.split_once("data: ").unwrap().1).unwrap();
    assert_eq!((v["type"].as_str(), v["sequence_number"].as_u64()), (Some("response.failed"), Some(2)));
    assert_eq!(v["response"]["status"], "failed");
    assert_eq!(v["response"]["error"]["code"], "invalid_model_output");
    assert!(v["response"]["error"]["message"].as_str().unwrap().contains("not JSON"));
    assert_eq!(v["response"]["output"][0]["content"][0]["text"], "Sure, here it is", "the output as it came");
    assert!(bad.contains("\"delta\":\"Sure, here it is\""), "the content went on");
}

#[test]
fn a_messages_stream_that_is_not_the_json_asked_for_ends_with_an_error_event() {
    let format =
        crate::guard::schema::OutputFormat::of_response_format(&crate::json!({"type": "json_object"})).unwrap();
    let stream = |text: &str| {
        let d =
            crate::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}});
        format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{}}}}\n\nevent: content_block_delta\ndata: {d}\n\nevent: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
        )
    };
    let run = |s: &str| {
        let mut w = OutputWatch::new(format.clone(), WatchKind::Messages);
        let mut all = Vec::new();
        for piece in s.as_bytes().chunks(9) {
            let mut out = piece.to_vec();
            w.watch(&mut out, false);
            all.extend(out);
        }
        let mut out = Vec::new();
        w.watch(&mut out, true);
        all.extend(out);
        String::from_utf8(all).unwrap()
    };
    let ok = run(&stream("{\"a\": 1}"));
    assert!(ok.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"), "{ok}");
    let bad = run(&stream("not json"));
    assert!(!bad.contains("message_stop"), "{bad}");
    assert!(bad.contains("event: error\ndata: ") && bad.contains("not the JSON the request asked for"), "{bad}");
    let mut sc = crate::wire::usage::StreamScanner::<true>::default();
    sc.push(bad.as_bytes());
    assert!(sc.saw_error && !sc.saw_end);
}

#[test]
fn an_attempt_that_lands_past_a_step_notes_the_step_skipped_as_unhealthy() {
    // The first attempt lands on OpenAI, the chain's second step: Envoy's aggregate cluster
    // passed over Anthropic (no healthy endpoint).
    let (h, _, _) = attempt_on("openai", "us-east-1", None);
    assert_eq!(h.property_string(&[headers::PROP_SKIPPED]).as_deref(), Some("anthropic"));
    assert_eq!(h.counters.borrow().get("aigw_provider_skipped_total.provider.anthropic"), Some(&1));
    // In order, nothing is skipped: the first step first, then the second after it.
    let (h, _, _) = attempt_on("anthropic", "eu-west-1", None);
    assert!(h.property(&[headers::PROP_SKIPPED]).is_none());
    let second = request("/v1/chat/completions", r#"{"model":"chat","messages":[]}"#, None);
    second.set_property(headers::PROP_ALIAS, "chat");
    second.set_property_bytes(headers::PROP_ATTEMPTS, &h.property(&[headers::PROP_ATTEMPTS]).unwrap());
    second.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "openai");
    RouteAttempt::new(cfg()).on_request_headers(&second, false);
    assert_eq!(parse_attempts(second.property(&[headers::PROP_ATTEMPTS]).as_deref()).len(), 2);
    assert!(second.property(&[headers::PROP_SKIPPED]).is_none());
    assert!(second.counters.borrow().is_empty());
}

#[test]
fn prefer_fastest_sends_the_chain_from_the_best_provider_except_for_a_zone_restricted_caller() {
    let mut v: crate::wire::tree::Value = crate::wire::from_str(CFG).unwrap();
    v["aliases"]["fast"] = crate::json!({"chain": "chain_chat", "prefer": "fastest",
        "orders": {"openai": "chain_openai_first"},
        "steps": [{"provider": "anthropic", "model": "claude-x"}, {"provider": "openai", "model": "gpt-x"}]});
    let c: RouteConfig = crate::config::from_value(v.clone()).unwrap();
    c.validate().unwrap();
    let c = Rc::new(c);
    let select = |identity: Option<&str>, store: &FakeHost| {
        let h = request(
            "/v1/chat/completions",
            r#"{"model":"fast","messages":[{"role":"user","content":"hi"}]}"#,
            identity,
        );
        *h.shared.borrow_mut() = store.shared.borrow().clone();
        h.now.set(store.now.get());
        let mut s = Select::new(c.clone());
        s.on_request_headers(&h, false);
        let n = h.request_body.borrow().len();
        assert_eq!(s.on_request_body(&h, n, true), Flow::Continue);
        s.on_response_headers(&h, true);
        (h.request_header(headers::CHAIN), h.property_string(&[headers::PROP_ROUTE]), h.response_header(headers::ROUTE))
    };
    let store = FakeHost::new();
    store.now.set(5_000);
    crate::route::health::record(&store, "anthropic", 900, false);
    crate::route::health::record(&store, "openai", 120, false);
    let (chain, route, shown) = select(None, &store);
    assert_eq!(chain.as_deref(), Some("chain_openai_first"));
    assert_eq!(route.as_deref(), Some("default+fastest:openai"));
    assert_eq!(shown.as_deref(), Some("default+fastest:openai"), "x-aigw-route says so");
    // An EU caller keeps the configured order (its zone's rules).
    let eu = r#"{"tenant":"t","key_id":"k","key_fingerprint":"f","zone":"eu","alias_scope":"*"}"#;
    let (chain, route, _) = select(Some(eu), &store);
    assert_eq!((chain.as_deref(), route.as_deref()), (Some("chain_chat"), Some("default")));
    // Orders must name steps after the first; `fastest` needs some.
    v["aliases"]["fast"]["orders"] = crate::json!({"anthropic": "x"});
    let bad: RouteConfig = crate::config::from_value(v.clone()).unwrap();
    assert_eq!(bad.validate().unwrap_err().field, "aliases.fast.orders.anthropic");
    v["aliases"]["fast"]["orders"] = crate::json!({});
    let bad: RouteConfig = crate::config::from_value(v).unwrap();
    assert_eq!(bad.validate().unwrap_err().field, "aliases.fast.orders");
}

#[test]
fn an_attempt_adds_its_latency_to_its_providers_live_figures_when_an_alias_orders_by_them() {
    let mut v: crate::wire::tree::Value = crate::wire::from_str(CFG).unwrap();
    v["aliases"]["chat"]["prefer"] = "fastest".into();
    v["aliases"]["chat"]["orders"] = crate::json!({"openai": "chain_openai_first"});
    let c: Rc<RouteConfig> = Rc::new(crate::config::from_value::<RouteConfig>(v).unwrap().compiled().unwrap());
    assert_eq!(c.ranked, ["anthropic", "openai"]);
    let h = request("/v1/chat/completions", r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#, None);
    h.set_property(headers::PROP_ALIAS, "chat");
    h.set_property("xds.upstream_host_metadata.filter_metadata.aigw.provider", "openai");
    h.now.set(1_000);
    let mut a = RouteAttempt::new(c);
    a.on_request_headers(&h, false);
    h.now.set(1_250);
    h.response_headers.borrow_mut().push((":status".into(), "200".into()));
    a.on_response_headers(&h, true);
    let f = crate::route::health::read(&h, "openai").unwrap();
    assert_eq!((f.latency_ms, f.error_rate), (250.0, 0.0));
    // Without such an alias, nothing is recorded (no shared-data write per attempt).
    let (h, _, _) = attempt_on("openai", "us-east-1", None);
    assert!(crate::route::health::read(&h, "openai").is_none());
}
