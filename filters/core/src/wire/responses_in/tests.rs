use super::*;
use crate::json;

fn chat(body: Value) -> (Value, Echo) {
    let (out, echo) = request_to_chat(body.to_string().as_bytes()).unwrap();
    (crate::wire::from_slice(&out).unwrap(), echo)
}

#[test]
fn a_request_with_instructions_items_and_a_function_round_trip_becomes_chat() {
    let (c, echo) = chat(json!({
        "model": "chat", "instructions": "Be terse.", "store": false, "max_output_tokens": 64,
        "tools": [{"type": "function", "name": "get_weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"},
                                         {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "call_a1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_a1", "output": "18C, cloudy"}]}));
    assert_eq!(
        c,
        json!({"model": "chat", "max_completion_tokens": 64,
               "messages": [
                   {"role": "system", "content": "Be terse."},
                   {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                                {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]},
                   {"role": "assistant", "content": null, "tool_calls": [{"id": "call_a1", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                   {"role": "tool", "tool_call_id": "call_a1", "content": "18C, cloudy"}],
               "tools": [{"type": "function", "function": {"name": "get_weather", "strict": false,
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
               "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}}})
    );
    assert_eq!(echo.fields["store"], json!(false));
    assert_eq!(echo.fields["tool_choice"], json!("auto"));
    assert_eq!(echo.fields["tools"][0]["name"], "get_weather");
    let (c, _) = chat(json!({"model": "chat", "input": "hi", "stream": true}));
    assert_eq!(c["messages"], json!([{"role": "user", "content": "hi"}]));
    assert_eq!(c["stream_options"], json!({"include_usage": true}));
}

#[test]
fn what_needs_openais_state_or_tools_is_refused_by_name() {
    let refused = |b: Value| request_to_chat(b.to_string().as_bytes()).unwrap_err();
    let e = refused(json!({"model": "chat", "input": "hi", "previous_response_id": "resp_1"}));
    assert_eq!((e.status, e.param), (400, Some("previous_response_id")));
    assert_eq!(
        refused(json!({"model": "chat", "input": "hi", "tools": [{"type": "web_search"}]})).param,
        Some("tools")
    );
    assert_eq!(
        refused(json!({"model": "chat", "input": [{"type": "item_reference", "id": "x"}]})).param,
        Some("input")
    );
    assert_eq!(refused(json!({"model": "chat", "input": "hi", "background": true})).param, Some("background"));
    assert_eq!(refused(json!({"input": "hi"})).code, "missing_model");
    assert_eq!(refused(json!({"model": "chat", "input": 5})).param, Some("input"));
    assert_eq!(request_to_chat(b"{not json").unwrap_err().code, "invalid_json");
}

#[test]
fn a_whole_answer_becomes_a_response_with_text_calls_and_usage() {
    let (_, echo) = chat(json!({"model": "chat", "input": "hi"}));
    let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m-1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 2}}});
    let (out, usage) = response_from_chat(answer.to_string().as_bytes(), &echo, "seed").unwrap();
    let r: Value = crate::wire::from_slice(&out).unwrap();
    assert_eq!(
        (r["object"].as_str(), r["status"].as_str(), r["model"].as_str()),
        (Some("response"), Some("completed"), Some("m-1"))
    );
    assert!(r["id"].as_str().is_some_and(|i| i.starts_with("resp_") && i.len() == 55));
    assert_eq!(
        r["output"][0]["content"][0],
        json!({"type": "output_text", "text": "Let me look.", "annotations": [], "logprobs": []})
    );
    assert_eq!(
        (r["output"][1]["type"].as_str(), r["output"][1]["call_id"].as_str()),
        (Some("function_call"), Some("call_9"))
    );
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
    assert_eq!((r["usage"]["total_tokens"].as_u64(), r["tool_choice"].as_str()), (Some(14), Some("auto")));
    assert_eq!(usage.map(|u| (u.input, u.output)), Some((10, 4)));
    let cut = json!({"model": "m", "choices": [{"finish_reason": "length", "message": {"content": "abc"}}]});
    let r: Value =
        crate::wire::from_slice(&response_from_chat(cut.to_string().as_bytes(), &echo, "s").unwrap().0).unwrap();
    assert_eq!(
        (r["status"].as_str(), r["incomplete_details"]["reason"].as_str()),
        (Some("incomplete"), Some("max_output_tokens"))
    );
}

/// The events of a Responses stream: (type, data).
fn events(bytes: &[u8]) -> Vec<(String, Value)> {
    let mut p = sse::Parser::default();
    let mut evs = Vec::new();
    p.push(bytes, &mut evs);
    evs.into_iter().map(|e| (e.event.unwrap_or_default(), crate::wire::from_str(&e.data).unwrap())).collect()
}

#[test]
fn a_stream_becomes_the_event_sequence_with_gapless_sequence_numbers() {
    let (_, echo) = chat(json!({"model": "chat", "input": "hi", "stream": true}));
    let chunks = [
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{"role":"assistant","content":"He"}}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{"content":"llo"}}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"data: {"id":"c","model":"m-1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
        "data: [DONE]",
    ];
    let mut t = StreamToResponses::new(echo, "seed", 1700000000);
    let mut out = Vec::new();
    for c in chunks {
        // Split each event across two pushes: the translator must not care.
        let bytes = format!("{c}\n\n").into_bytes();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        out.extend(t.push(a));
        out.extend(t.push(b));
    }
    out.extend(t.finish());
    let evs = events(&out);
    let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (k, d)) in evs.iter().enumerate() {
        assert_eq!((d["type"].as_str(), d["sequence_number"].as_u64()), (Some(k.as_str()), Some(i as u64)));
    }
    let done = &evs[evs.len() - 1].1["response"];
    assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
    assert_eq!(done["output"][1]["call_id"], "call_1");
    assert_eq!(done["usage"]["total_tokens"], 8);
    assert_eq!(t.usage.map(|u| u.output), Some(3));
}

#[test]
fn a_stream_cut_short_or_failing_ends_with_response_failed() {
    let (_, echo) = chat(json!({"model": "chat", "input": "hi", "stream": true}));
    let mut t = StreamToResponses::new(echo.clone(), "s", 1);
    let mut out = t.push(b"data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n");
    out.extend(t.finish());
    let evs = events(&out);
    assert_eq!(evs.last().map(|(k, _)| k.as_str()), Some("response.failed"));
    assert!(evs.iter().any(|(k, _)| k == "error"));
    let mut t = StreamToResponses::new(echo, "s", 1);
    let out =
        t.push(b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":\"overloaded\"}}\n\n");
    let evs = events(&out);
    assert_eq!(evs.last().map(|(k, _)| k.as_str()), Some("response.failed"));
    assert_eq!(evs.last().map(|(_, d)| d["response"]["error"]["code"].clone()), Some(json!("overloaded")));
    assert!(t.finish().is_empty(), "nothing after the end");
}

#[test]
fn a_whole_response_replays_as_its_event_sequence_and_a_stream_collects_back_into_it() {
    let (_, echo) = chat(json!({"model": "chat", "input": "hi"}));
    let answer = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "m-1",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": "Let me look.",
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}});
    let (whole, _) = response_from_chat(answer.to_string().as_bytes(), &echo, "seed").unwrap();
    let stream = stream_from_response(&whole).unwrap();
    let evs = events(&stream);
    let kinds: Vec<&str> = evs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    for (i, (k, d)) in evs.iter().enumerate() {
        assert_eq!((d["type"].as_str(), d["sequence_number"].as_u64()), (Some(k.as_str()), Some(i as u64)));
    }
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    assert_eq!(evs[4].1["delta"], "Let me look.");
    assert_eq!(evs[9].1["delta"], "{\"a\":1}");
    let whole_v: Value = crate::wire::from_slice(&whole).unwrap();
    assert_eq!(evs[12].1["response"], whole_v);
    // Collected again, in pieces: the same Response.
    let mut c = ResponsesCollector::new(1 << 20);
    let pieces: Vec<&[u8]> = stream.chunks(13).collect();
    for (i, piece) in pieces.iter().enumerate() {
        assert!(!c.ended(), "not ended before response.completed (piece {i})");
        c.push(piece);
    }
    assert!(c.ended(), "ended at response.completed");
    assert_eq!(crate::wire::from_slice::<Value>(&c.answer().unwrap()).unwrap(), whole_v);
    assert_eq!(c.usage().map(|u| u.output), Some(4));
    // A failed stream, or one with no end: nothing.
    let mut failed = ResponsesCollector::new(1 << 20);
    failed.push(b"event: response.failed\ndata: {\"response\":{}}\n\n");
    failed.push(&stream);
    assert!(failed.answer().is_none() && failed.ended());
    let mut cut = ResponsesCollector::new(1 << 20);
    cut.push(&stream[..stream.len() / 2]);
    assert!(cut.answer().is_none() && !cut.ended());
    assert!(stream_from_response(b"{\"object\":\"chat.completion\"}").is_none());
}
