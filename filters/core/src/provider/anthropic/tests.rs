use super::*;
use crate::json;

/// The translation as a JSON tree (what the provider receives).
fn request_value_from_openai(body: &[u8], model: &str, max_tokens_default: u64) -> Result<Value, GatewayError> {
    let req = anthropic_request_from_openai(body, model, max_tokens_default)?;
    Ok(crate::wire::from_slice(&crate::wire::write::to_vec(&req)).unwrap())
}

fn req(v: Value) -> Value {
    request_value_from_openai(v.to_string().as_bytes(), "claude-x", 1024).unwrap()
}

/// The translation of a request given as a JSON tree.
fn translate(v: &Value, model: &str, max_tokens_default: u64) -> Result<Value, GatewayError> {
    request_value_from_openai(v.to_string().as_bytes(), model, max_tokens_default)
}

#[test]
fn system_messages_become_top_level_and_max_tokens_defaults() {
    let out = req(json!({"model":"chat","messages":[
        {"role":"system","content":"Be terse."},
        {"role":"user","content":"Hi"},
        {"role":"developer","content":[{"type":"text","text":"Really."}]}]}));
    assert_eq!(out["model"], "claude-x");
    assert_eq!(out["max_tokens"], 1024);
    assert_eq!(out["system"], json!([{"type":"text","text":"Be terse."},{"type":"text","text":"Really."}]));
    assert_eq!(out["messages"], json!([{"role":"user","content":[{"type":"text","text":"Hi"}]}]));
}

#[test]
fn sampling_fields_map_and_temperature_clamps() {
    let body = json!({"messages":[{"role":"user","content":"x"}],"max_completion_tokens":7,"max_tokens":9,
        "temperature":1.5,"top_p":0.5,"stop":"END","stream":true,"user":"u1"});
    // A model that takes both `temperature` and `top_p` (Claude 3.x).
    let out = translate(&body, "claude-3-5-haiku-20241022", 1024).unwrap();
    assert_eq!(out["max_tokens"], 7);
    assert_eq!(out["temperature"], 1.0);
    assert_eq!(out["top_p"], 0.5);
    assert_eq!(out["stop_sequences"], json!(["END"]));
    assert_eq!(out["stream"], true);
    assert_eq!(out["metadata"], json!({"user_id":"u1"}));
}

#[test]
fn a_claude_model_that_takes_one_of_temperature_and_top_p_gets_the_temperature() {
    let both = json!({"messages":[{"role":"user","content":"x"}],"temperature":0.7,"top_p":1});
    for model in [
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-1-20250805",
        "claude-opus-4-6",
        "claude-sonnet-5",
    ] {
        let out = translate(&both, model, 1024).unwrap();
        assert_eq!((out["temperature"].clone(), out.get("top_p").cloned()), (json!(0.7), None), "{model}");
    }
    for model in [
        "claude-3-7-sonnet-20250219",
        "claude-sonnet-4-20250514",
        "claude-opus-4-20250514",
        "claude-sonnet-4-0",
        "my-finetune",
    ] {
        let out = translate(&both, model, 1024).unwrap();
        assert_eq!(out["top_p"], json!(1), "{model}");
    }
    // `top_p` alone is kept.
    let alone = json!({"messages":[{"role":"user","content":"x"}],"top_p":0.9});
    assert_eq!(translate(&alone, "claude-sonnet-4-5-20250929", 1024).unwrap()["top_p"], json!(0.9));
    // Bedrock's Claude models alike; its other models keep both.
    let body = both.to_string();
    for (model, top_p) in [
        ("anthropic.claude-haiku-4-5-20251001-v1:0", None),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", None),
        ("anthropic.claude-3-haiku-20240307-v1:0", Some(json!(1))),
        ("amazon.nova-pro-v1:0", Some(json!(1))),
    ] {
        let a = request_from_openai(body.as_bytes(), model, 10).unwrap();
        let c = crate::provider::bedrock::request_from_messages(&a).unwrap();
        assert_eq!(c["inferenceConfig"].get("topP").cloned(), top_p, "{model}");
        assert_eq!(c["inferenceConfig"]["temperature"], json!(0.7), "{model}");
    }
}

#[test]
fn blank_stop_sequences_are_left_out_for_claude() {
    let with_stop = |stop: Value| json!({"messages":[{"role":"user","content":"x"}],"stop":stop});
    let sent = |stop: Value| {
        translate(&with_stop(stop), "claude-sonnet-4-5-20250929", 1024).unwrap().get("stop_sequences").cloned()
    };
    assert_eq!(sent(json!("\n")), None);
    assert_eq!(sent(json!("")), None);
    assert_eq!(sent(json!(["\n", " \t", "\u{3000}"])), None);
    assert_eq!(sent(json!(["\n", "END", "", "\n\nHuman:"])), Some(json!(["END", "\n\nHuman:"])));
    assert_eq!(sent(json!(["END", "STOP"])), Some(json!(["END", "STOP"])));
    assert_eq!(sent(json!("END")), Some(json!(["END"])));
    // Bedrock's Claude models alike; Gemini, and Bedrock's other models, keep them.
    let body = with_stop(json!(["\n", "END"])).to_string();
    let converse = |model: &str| {
        let (bytes, _) =
            crate::provider::ProviderApi::request(&crate::provider::bedrock::Bedrock, body.as_bytes(), model, 10)
                .unwrap();
        let v: Value = crate::wire::from_slice(&bytes).unwrap();
        v["inferenceConfig"]["stopSequences"].clone()
    };
    assert_eq!(converse("anthropic.claude-haiku-4-5-20251001-v1:0"), json!(["END"]));
    assert_eq!(converse("amazon.nova-pro-v1:0"), json!(["\n", "END"]));
    let a = request_from_openai(body.as_bytes(), "gemini-2.5-flash", 10).unwrap();
    let g = crate::provider::gemini::request_from_messages(&a).unwrap();
    assert_eq!(g["generationConfig"]["stopSequences"], json!(["\n", "END"]));
}

#[test]
fn empty_user_text_and_a_prefills_trailing_whitespace_are_not_sent_to_claude() {
    let msgs = |m: Value| translate(&json!({"messages": m}), "claude-sonnet-4-5-20250929", 1024);
    // Empty text parts and empty user messages are no blocks.
    let out = msgs(json!([{"role":"user","content":[{"type":"text","text":""},{"type":"text","text":"hi"}]},
                          {"role":"assistant","content":"ok"}, {"role":"user","content":""},
                          {"role":"user","content":"again"}]))
    .unwrap();
    assert_eq!(
        out["messages"],
        json!([
        {"role":"user","content":[{"type":"text","text":"hi"}]},
        {"role":"assistant","content":[{"type":"text","text":"ok"}]},
        {"role":"user","content":[{"type":"text","text":"again"}]}])
    );
    // Nothing but empty text: refused by the gateway, in the caller's shape, not by Claude.
    let err = msgs(json!([{"role":"user","content":""}])).unwrap_err();
    assert_eq!(err.status, 400);
    // A prefill's trailing whitespace goes; a prefill of whitespace alone goes whole.
    let out = msgs(json!([{"role":"user","content":"hi"},{"role":"assistant","content":"Sure: \n"}])).unwrap();
    assert_eq!(out["messages"][1], json!({"role":"assistant","content":[{"type":"text","text":"Sure:"}]}));
    let out = msgs(json!([{"role":"user","content":"hi"},{"role":"assistant","content":" \n"}])).unwrap();
    assert_eq!(out["messages"], json!([{"role":"user","content":[{"type":"text","text":"hi"}]}]));
    // An earlier assistant turn keeps its text as it is.
    let out = msgs(json!([{"role":"user","content":"hi"},{"role":"assistant","content":"a \n"},
                          {"role":"user","content":"b"}]))
    .unwrap();
    assert_eq!(out["messages"][1]["content"][0]["text"], "a \n");
}

#[test]
fn tool_round_trip_shapes() {
    let out = req(json!({"messages":[
        {"role":"user","content":"weather?"},
        {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"w","arguments":"{\"city\":\"Paris\"}"}}]},
        {"role":"tool","tool_call_id":"call_1","content":"18C"}],
        "tools":[{"type":"function","function":{"name":"w","parameters":{"type":"object"}}}],
        "tool_choice":"required","parallel_tool_calls":false}));
    assert_eq!(
        out["messages"][1]["content"][0],
        json!({"type":"tool_use","id":"call_1","name":"w","input":{"city":"Paris"}})
    );
    assert_eq!(
        out["messages"][2],
        json!({"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"18C"}]})
    );
    assert_eq!(out["tools"], json!([{"name":"w","input_schema":{"type":"object"}}]));
    assert_eq!(out["tool_choice"], json!({"type":"any","disable_parallel_tool_use":true}));
}

#[test]
fn images_and_refusals() {
    let out = req(json!({"messages":[{"role":"user","content":[{"type":"text","text":"see"},
        {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}));
    assert_eq!(
        out["messages"][0]["content"][1]["source"],
        json!({"type":"base64","media_type":"image/png","data":"AAAA"})
    );
    let bad = translate(&json!({"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}), "m", 1);
    assert_eq!(bad.err().map(|e| (e.status, e.code)), Some((400, "unsupported_for_provider")));
    let n2 = translate(&json!({"n":2,"messages":[{"role":"user","content":"x"}]}), "m", 1);
    assert_eq!(n2.err().map(|e| e.param), Some(Some("n")));
    let args = translate(
        &json!({"messages":[{"role":"assistant","tool_calls":[{"id":"a","function":{"name":"f","arguments":"{oops"}}]}]}),
        "m",
        1,
    );
    assert_eq!(args.err().map(|e| e.code), Some("invalid_tool_arguments"));
    let odd = translate(&json!({"messages":[{"role":"user","content":"x"}],"tools":[5]}), "m", 1);
    assert_eq!(odd.err().map(|e| (e.code, e.param)), Some(("unsupported_for_provider", Some("tools"))));
    let none = translate(&json!({"messages":[]}), "m", 1);
    assert_eq!(none.err().map(|e| e.status), Some(400));
}

#[test]
fn response_maps_text_tools_usage_and_finish() {
    let body = br#"{"id":"msg_01A","type":"message","role":"assistant","model":"claude-x-1","content":[
        {"type":"text","text":"Let me check."},{"type":"tool_use","id":"toolu_1","name":"w","input":{"city":"Paris"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_creation_input_tokens":2,"cache_read_input_tokens":5,"output_tokens":7,
        "cache_creation":{"ephemeral_5m_input_tokens":1,"ephemeral_1h_input_tokens":1}}}"#;
    let (out, usage, _) = response_to_openai(body, 123).unwrap();
    let v: Value = crate::wire::from_slice(&out).unwrap();
    assert_eq!(v["id"], "chatcmpl-01A");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["created"], 123);
    assert_eq!(v["choices"][0]["message"]["content"], "Let me check.");
    assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(usage, Usage { input: 17, cached_input: 5, output: 7, reasoning: 0, cache_write: 2, cache_write_1h: 1 });
    // The same usage read from a tree (a stream's events) and by the Messages door's reader.
    let tree = json!({"input_tokens": 10, "cache_creation_input_tokens": 2, "cache_read_input_tokens": 5,
        "output_tokens": 7, "cache_creation": {"ephemeral_5m_input_tokens": 1, "ephemeral_1h_input_tokens": 1}});
    assert_eq!(crate::provider::anthropic::usage_of(&tree), usage);
    assert_eq!(Usage::from_responses(&tree), Some(usage));
    // An hour's writes beyond the writes (an odd report) are bounded by them.
    let odd = json!({"input_tokens": 1, "cache_creation_input_tokens": 2, "cache_creation": {"ephemeral_1h_input_tokens": 9}});
    assert_eq!(crate::provider::anthropic::usage_of(&odd).cache_write_1h, 2);
    assert_eq!(Usage::from_responses(&odd).map(|u| u.cache_write_1h), Some(2));
    assert_eq!(v["usage"]["prompt_tokens"], 17);
    assert_eq!(v["usage"]["total_tokens"], 24);
    assert!(response_to_openai(b"{nope", 1).is_err());
}

#[test]
fn errors_map_and_529_becomes_503() {
    let (s, b) =
        error_to_openai(529, br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
    let v: Value = crate::wire::from_slice(&b).unwrap();
    assert_eq!(s, 503);
    assert_eq!(v["error"]["code"], "overloaded");
    let (s, b) = error_to_openai(429, b"garbage");
    assert_eq!(s, 429);
    assert!(crate::wire::from_slice::<Value>(&b).unwrap()["error"]["message"].is_string());
}

const STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"claude-x-1\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"w\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn data_lines(out: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(out).split("\n\n").filter_map(|e| e.strip_prefix("data: ").map(str::to_string)).collect()
}

#[test]
fn stream_translates_whatever_the_chunking() {
    for size in [1usize, 3, 17, 64, STREAM.len()] {
        let mut t = StreamTranslator::new(5, true);
        let mut out = Vec::new();
        for c in STREAM.as_bytes().chunks(size) {
            out.extend(t.push(c));
        }
        out.extend(t.finish());
        let lines = data_lines(&out);
        assert_eq!(lines.last().map(String::as_str), Some("[DONE]"), "size {size}");
        let chunks: Vec<Value> = lines[..lines.len() - 1].iter().map(|l| crate::wire::from_str(l).unwrap()).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["id"], "chatcmpl-1");
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "Hello");
        let args: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
            .collect();
        assert_eq!(args, "{\"a\":1}");
        let finishes: Vec<&Value> =
            chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
        assert_eq!(finishes, vec![&json!("tool_calls")]);
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!((usage["prompt_tokens"].as_u64(), usage["completion_tokens"].as_u64()), (Some(12), Some(9)));
        assert_eq!(
            t.usage(),
            Usage { input: 12, cached_input: 0, output: 9, reasoning: 0, cache_write: 0, cache_write_1h: 0 }
        );
    }
}

#[test]
fn deltas_are_written_without_a_tree_as_the_tree_writes_them() {
    // The tree's way (every event but deltas) and the direct way (deltas) write the same bytes.
    for include_usage in [false, true] {
        let mut t = StreamTranslator::new(1_767_225_600, include_usage);
        let _ = t.push(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_\\\"q\\\"\",\"model\":\"claude-\\u00e9\",\"usage\":{\"input_tokens\":3}}}\n\n");
        t.tool_index.add(2);
        for text in ["Hello", "", "line\nbreak \"quoted\" \\ tab\t", "caf\u{e9} \u{1F600} \u{0007}", "</script>"] {
            let mut tree = Vec::new();
            t.chunk(&mut tree, json!({"content": text}), None);
            let ev = sse::Event {
                event: Some("content_block_delta".into()),
                data: json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":text}})
                    .to_string(),
            };
            let mut direct = Vec::new();
            assert!(t.delta(&mut direct, ev.event.as_deref(), &ev.data));
            assert_eq!(String::from_utf8_lossy(&direct), String::from_utf8_lossy(&tree), "{text:?}");

            let mut tree = Vec::new();
            t.chunk(&mut tree, json!({"tool_calls":[{"index":0,"function":{"arguments":text}}]}), None);
            let ev = sse::Event {
                event: None,
                data: json!({"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":text}}).to_string(),
            };
            let mut direct = Vec::new();
            assert!(t.delta(&mut direct, ev.event.as_deref(), &ev.data));
            let expected = if text.is_empty() { String::new() } else { String::from_utf8_lossy(&tree).into_owned() };
            assert_eq!(String::from_utf8_lossy(&direct), expected, "{text:?}");
        }
        // What the direct way does not read goes the tree's way.
        for data in [
            r#"{"type":"content_block_delta","index":"0","delta":{"type":"text_delta","text":"x"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","delta":{"text":"x"}}"#,
        ] {
            let ev = sse::Event { event: Some("content_block_delta".into()), data: data.into() };
            assert!(!t.delta(&mut Vec::new(), ev.event.as_deref(), &ev.data), "{data}");
        }
    }
}

#[test]
fn stream_cut_short_or_erroring_ends_with_error_event() {
    let cut = &STREAM[..STREAM.find("event: message_delta").unwrap()];
    let mut t = StreamTranslator::new(5, false);
    let mut out = t.push(cut.as_bytes());
    out.extend(t.finish());
    let last = data_lines(&out).pop().unwrap();
    assert!(last.contains("\"error\""), "{last}");
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));

    let mut t = StreamTranslator::new(5, false);
    let err = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let out = t.push(err.as_bytes());
    assert!(String::from_utf8_lossy(&out).contains("\"code\":\"overloaded\""));
    assert!(t.finish().is_empty());
}

#[test]
fn image_urls_with_escaped_slashes_are_read_as_json_says() {
    // Some encoders (PHP's json_encode) write `/` as `\/`, base64 data included.
    let body = br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image\/png;base64,AB\/C+"}},
        {"type":"image_url","image_url":{"url":"https:\/\/example.com\/a.png"}}]}]}"#;
    let out = request_value_from_openai(body, "m", 1).unwrap();
    assert_eq!(
        out["messages"][0]["content"][0]["source"],
        json!({"type":"base64","media_type":"image/png","data":"AB/C+"})
    );
    assert_eq!(out["messages"][0]["content"][1]["source"], json!({"type":"url","url":"https://example.com/a.png"}));
}

#[test]
fn a_json_schema_response_format_becomes_output_config_and_json_object_has_no_form() {
    let schema = json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]});
    let user = json!([{"role":"user","content":"x"}]);
    let out = req(json!({"messages": user,
        "response_format": {"type":"json_schema","json_schema":{"name":"c","strict":true,"schema": schema}}}));
    assert_eq!(out["output_config"], json!({"format":{"type":"json_schema","schema": schema}}));
    let body = json!({"messages": user, "response_format": {"type":"json_object"}}).to_string();
    let r = request_from_openai(body.as_bytes(), "m", 9).unwrap();
    assert!(r.json && r.output_config.is_none());
    assert!(crate::wire::from_slice::<crate::wire::tree::Value>(&crate::wire::write::to_vec(&r))
        .unwrap()
        .get("output_config")
        .is_none());
    // Text, no format, or a schema that is not an object: nothing asked of the provider.
    for rf in [
        json!({"type":"text"}),
        json!(null),
        json!("json"),
        json!({"type":"json_schema","json_schema":{}}),
        json!({"type":"json_schema","json_schema":{"schema":"x"}}),
    ] {
        let body = json!({"messages": user, "response_format": rf}).to_string();
        let r = request_from_openai(body.as_bytes(), "m", 9).unwrap();
        assert!(r.output_config.is_none(), "{rf}");
        assert_eq!(r.json, rf.get("type").is_some_and(|t| t == "json_schema"), "{rf}");
    }
}
