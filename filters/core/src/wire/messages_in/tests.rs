use super::*;
use crate::json;

fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut p = sse::Parser::default();
    let mut evs = Vec::new();
    p.push(bytes, &mut evs);
    evs.into_iter().map(|e| (e.event.unwrap_or_default(), crate::wire::from_str(&e.data).unwrap())).collect()
}

#[test]
fn a_messages_request_becomes_the_unified_request() {
    let a = json!({"model": "chat", "max_tokens": 100, "system": [{"type": "text", "text": "Be terse."}],
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {"type": "text", "text": "And tomorrow?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]}],
        "stop_sequences": ["END"], "temperature": 0.5, "stream": true, "top_k": 5,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true}});
    let o = request_to_openai(&a).unwrap();
    assert_eq!(o["messages"][0], json!({"role": "system", "content": "Be terse."}));
    assert_eq!(o["messages"][1], json!({"role": "user", "content": "Weather?"}));
    assert_eq!(o["messages"][2]["content"], "Checking.");
    assert_eq!(o["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(o["messages"][3], json!({"role": "tool", "tool_call_id": "toolu_1", "content": "18C"}));
    assert_eq!(o["messages"][4]["content"][1]["image_url"]["url"], "data:image/png;base64,AAA");
    assert_eq!((o["stop"].clone(), o["max_tokens"].clone()), (json!(["END"]), json!(100)));
    assert_eq!(o["stream_options"], json!({"include_usage": true}));
    assert_eq!((o["tool_choice"].clone(), o["parallel_tool_calls"].clone()), (json!("required"), json!(false)));
    assert_eq!(o["tools"][0]["function"]["parameters"], json!({"type": "object"}));
    assert!(o.get("top_k").is_none());
    assert_eq!(
        request_to_openai(&json!({"model": "m", "messages": []})).unwrap_err().message,
        "max_tokens: Field required"
    );
}

#[test]
fn a_completion_becomes_a_messages_response() {
    let c = br#"{"id":"chatcmpl-abc","object":"chat.completion","model":"gpt-x","choices":[{"index":0,
        "message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"call_1","type":"function",
        "function":{"name":"f","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],
        "usage":{"prompt_tokens":10,"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":3}}}"#;
    let (out, usage) = response_from_openai(c).unwrap();
    let v: Value = crate::wire::from_slice(&out).unwrap();
    assert_eq!(v["id"], "msg_abc");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}}])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["usage"]["input_tokens"], 7);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 3);
    assert_eq!(usage.map(|u| u.output), Some(4));
    let e: Value = crate::wire::from_slice(&error_from_openai(429, br#"{"error":{"message":"slow down"}}"#)).unwrap();
    assert_eq!(e, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}));
}

#[test]
fn the_gateways_own_errors_take_the_messages_shape_without_a_parse() {
    // What a refusal on the Messages door sends (written from the error) is what translating the
    // error's OpenAI body gives, for every status the gateway refuses with.
    for status in [400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529] {
        let err = crate::error::GatewayError::new(status, "x", "y", "a \"quoted\" \u{e9}t\u{e9}\n<\u{0}>");
        assert_eq!(error_body(status, &err.message), error_from_openai(status, err.body().as_bytes()), "{status}");
    }
}

#[test]
fn chunks_become_messages_events_with_a_streamed_tool_call() {
    let stream = concat!(
        "data: {\"id\":\"chatcmpl-z\",\"model\":\"gpt-x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me\"}}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"chatcmpl-z\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"total_tokens\":12}}\n\n",
        "data: [DONE]\n\n");
    // Split at every 13 bytes: events cut across chunks must come out whole.
    let mut t = StreamToMessages::default();
    let mut out = Vec::new();
    for piece in stream.as_bytes().chunks(13) {
        out.extend(t.push(piece));
    }
    out.extend(t.finish());
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(evs[0].1["message"]["id"], "msg_z");
    assert_eq!(evs[3].1["delta"], json!({"type": "text_delta", "text": "Let me"}));
    assert_eq!(evs[5].1["content_block"], json!({"type": "tool_use", "id": "call_9", "name": "f", "input": {}}));
    assert_eq!(evs[5].1["index"], 1);
    let args: String =
        evs[6..8].iter().map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap().to_string()).collect();
    assert_eq!(args, "{\"a\":1}");
    assert_eq!(evs[9].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(evs[9].1["usage"]["output_tokens"], 7);
    assert_eq!(t.usage.map(|u| u.input), Some(5));
}

#[test]
fn an_error_mid_stream_becomes_an_error_event_and_ends_the_stream() {
    let mut t = StreamToMessages::default();
    let out = t.push(b"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n");
    let evs = events(&out);
    assert_eq!(evs.last().map(|(n, _)| n.as_str()), Some("error"));
    assert_eq!(evs.last().unwrap().1["error"]["message"], "boom");
    assert!(t.finish().is_empty());
}

#[test]
fn text_chunks_are_written_without_a_tree_as_the_tree_writes_them() {
    let first =
        json!({"id":"chatcmpl-z","model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]});
    for text in ["Let me", "", "line\nbreak \"quoted\" \\ tab\t", "caf\u{e9} \u{1F600} \u{0007}", "</script>"] {
        // Two translators in the same state: one takes the chunk without a tree, one with.
        let (mut direct, mut tree) = (StreamToMessages::default(), StreamToMessages::default());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        direct.translate(&mut a, &first);
        tree.translate(&mut b, &first);
        // The first text opens a block; the second goes into it.
        for _ in 0..2 {
            let chunk = json!({"id":"chatcmpl-z","object":"chat.completion.chunk","usage":null,
                "choices":[{"index":0,"delta":{"content":text},"finish_reason":null,"logprobs":null}]});
            assert!(direct.text_delta(&mut a, &chunk.to_string()));
            tree.translate(&mut b, &chunk);
            assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b), "{text:?}");
            assert_eq!((direct.open, direct.next_index), (tree.open, tree.next_index));
        }
    }
    // Chunks that say more than text, or come first, go the tree's way.
    let mut t = StreamToMessages::default();
    assert!(!t.text_delta(&mut Vec::new(), &first.to_string()), "the first chunk starts the message");
    t.translate(&mut Vec::new(), &first);
    for chunk in [
        json!({"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}),
        json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f"}}]}}]}),
        json!({"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}),
        json!({"error":{"message":"boom"}}),
        json!({"choices":[{"index":0,"delta":{"content":["not","text"]}}]}),
    ] {
        assert!(!t.text_delta(&mut Vec::new(), &chunk.to_string()), "{chunk}");
    }
}

#[test]
fn a_messages_answer_streams_as_anthropic_streams_it_and_collects_back_whole() {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "Let me see.", "signature": "c2ln"},
                    {"type": "text", "text": "Paris, \"18C\"."},
                    {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Paris", "n": [1, 2]}},
                    {"type": "redacted_thinking", "data": "xyz"}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 7, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 0, "output_tokens": 9}});
    let stream = stream_from_message(answer.to_string().as_bytes()).unwrap();
    let evs = events(&stream);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    // Every event's `type` is its name; a block starts empty and its delta carries it.
    assert!(evs.iter().all(|(n, v)| v["type"] == n.as_str()));
    assert_eq!(evs[0].1["message"]["content"], json!([]));
    assert!(evs[0].1["message"]["stop_reason"].is_null());
    assert_eq!(evs[1].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    let tool_start = evs.iter().find(|(_, v)| v["content_block"]["type"] == "tool_use").unwrap();
    assert_eq!(tool_start.1["content_block"]["input"], json!({}));
    assert!(evs.iter().any(|(_, v)| v["content_block"] == json!({"type": "redacted_thinking", "data": "xyz"})));
    // Collected in pieces of any size, it is the answer again.
    for size in [1, 7, 4096] {
        let mut c = MessagesCollector::new(1 << 20);
        for piece in stream.chunks(size) {
            c.push(piece);
        }
        assert!(c.ended());
        let back: Value = crate::wire::from_slice(&c.answer().unwrap()).unwrap();
        assert_eq!(back, answer, "pieces of {size}");
        let u = c.usage().unwrap();
        assert_eq!((u.input, u.cached_input, u.output), (10, 3, 9));
    }
    // A stream cut short, one with an error, or one past the limit amounts to none.
    let mut c = MessagesCollector::new(1 << 20);
    c.push(&stream[..stream.len() - 30]);
    assert!(!c.ended() && c.answer().is_none());
    let mut c = MessagesCollector::new(1 << 20);
    c.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n");
    c.push(&stream);
    assert!(c.answer().is_none());
    let mut c = MessagesCollector::new(100);
    c.push(&stream);
    assert!(c.answer().is_none());
    // A stream as Anthropic sends it: deltas in pieces, pings, usage counted on in message_delta.
    let real = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"c\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":4,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"w\",\"input\":{}}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"ci\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"ty\\\": \\\"Oslo\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":12}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );
    let mut c = MessagesCollector::new(1 << 20);
    c.push(real.as_bytes());
    let back: Value = crate::wire::from_slice(&c.answer().unwrap()).unwrap();
    assert_eq!(back["content"][0]["input"], json!({"city": "Oslo"}));
    assert_eq!((back["stop_reason"].as_str(), back["usage"]["output_tokens"].as_u64()), (Some("tool_use"), Some(12)));
    assert_eq!(c.usage().map(|u| (u.input, u.output)), Some((4, 12)));
    assert!(stream_from_message(br#"{"object":"chat.completion"}"#).is_none());
    // Events of the wrong shape (found by the fuzzer: a message that is not a Messages answer
    // was kept, and could not be replayed) make no answer, and never a panic.
    for odd in [
        "event: message_start\ndata: {\"message\":{}}\n\n",
        "event: message_start\ndata: {\"message\":\"x\"}\n\n",
        "event: content_block_start\ndata: {\"index\":0,\"content_block\":\"x\"}\n\n",
        "event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n",
    ] {
        let mut c = MessagesCollector::new(1 << 20);
        c.push(odd.as_bytes());
        c.push(b"event: message_stop\ndata: {}\n\n");
        assert!(c.answer().is_none(), "{odd}");
    }
}

#[test]
fn structured_outputs_become_the_unified_response_format() {
    let a = json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object", "required": ["a"]}}}});
    let o = request_to_openai(&a).unwrap();
    assert_eq!(
        o["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object", "required": ["a"]}}})
    );
    let plain =
        request_to_openai(&json!({"model": "m", "max_tokens": 9, "messages": [], "output_config": {"effort": "low"}}));
    assert!(plain.unwrap().get("response_format").is_none());
}
