//! OpenAI's Responses API (`POST /v1/responses`; Azure's v1 surface: `/openai/v1/responses`),
//! as the gateway passes it through to OpenAI and Azure steps: a Response object, or its event
//! sequence with gapless `sequence_number`s; stored responses (`store`, default true) that a
//! later `previous_response_id` may name (an unknown one is OpenAI's 400
//! `previous_response_not_found`); a forced function tool answered with `{"city": "Paris"}`.

use std::io;
use std::net::TcpStream;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{answer, chunk, end_chunked, now, openai_error, respond, start_chunked};

/// The Responses input as chat-like messages, so the shared `answer` can echo it.
fn as_messages(body: &Value) -> Value {
    let mut msgs = Vec::new();
    if let Some(i) = body.get("instructions").and_then(Value::as_str) {
        msgs.push(json!({"role": "system", "content": i}));
    }
    match body.get("input") {
        Some(Value::String(s)) => msgs.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for it in items {
                match it.get("type").and_then(Value::as_str).unwrap_or("message") {
                    "message" => msgs.push(json!({"role": it.get("role"), "content": it.get("content")})),
                    "function_call_output" => msgs.push(json!({"role": "tool", "content": it.get("output")})),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    json!({"messages": msgs, "max_completion_tokens": body.get("max_output_tokens")})
}

pub fn openai_responses(
    body: &Value,
    model: &str,
    w: &mut TcpStream,
    n: u64,
    stored: &Mutex<Vec<String>>,
) -> io::Result<bool> {
    if let Some(prev) = body.get("previous_response_id").and_then(Value::as_str) {
        if !stored.lock().map(|s| s.iter().any(|id| id == prev)).unwrap_or(false) {
            let e = json!({"error": {"message": format!("Previous response with id '{prev}' not found."),
                                     "type": "invalid_request_error", "param": "previous_response_id",
                                     "code": "previous_response_not_found"}});
            return respond(w, 400, &[("content-type", "application/json".into())], e.to_string().as_bytes());
        }
    }
    if body.get("input").is_none() {
        return openai_error(w, 400, "invalid_request_error", None, "Missing required parameter: 'input'.", &[]);
    }
    let id = format!("resp_fake{n:046}");
    if body.get("store").and_then(Value::as_bool) != Some(false) {
        if let Ok(mut s) = stored.lock() {
            s.push(id.clone());
        }
    }
    let (words, input, output) = answer(&as_messages(body));
    let forced = match body.get("tool_choice") {
        Some(Value::String(c)) if c == "required" => {
            body.pointer("/tools/0/name").and_then(Value::as_str).map(str::to_string)
        }
        Some(v @ Value::Object(_)) => v.get("name").and_then(Value::as_str).map(str::to_string),
        _ => None,
    };
    let item = match &forced {
        Some(name) => json!({"id": format!("fc_fake{n:048}"), "type": "function_call", "status": "completed",
                             "call_id": format!("call_fake{n:06}"), "name": name, "arguments": "{\"city\":\"Paris\"}"}),
        None => json!({"id": format!("msg_fake{n:047}"), "type": "message", "status": "completed", "role": "assistant",
                       "content": [{"type": "output_text", "text": words.concat(), "annotations": [], "logprobs": []}]}),
    };
    let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                       "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
                       "total_tokens": input + output});
    let response = |status: &str, output: Value, usage: Value| {
        json!({"id": id, "object": "response", "created_at": now(), "status": status, "error": null,
               "incomplete_details": null, "model": model, "output": output, "parallel_tool_calls": true,
               "tool_choice": body.get("tool_choice").cloned().unwrap_or(json!("auto")),
               "tools": body.get("tools").cloned().unwrap_or(json!([])), "store": body.get("store").cloned().unwrap_or(json!(true)),
               "previous_response_id": body.get("previous_response_id"), "instructions": body.get("instructions"),
               "max_output_tokens": body.get("max_output_tokens"), "temperature": body.get("temperature"),
               "text": body.get("text").cloned().unwrap_or(json!({"format": {"type": "text"}})), "usage": usage})
    };
    let headers = [("x-request-id", "req_fake_responses".to_string())];
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        let mut h = vec![("content-type", "application/json".to_string())];
        h.extend(headers.iter().cloned());
        return respond(w, 200, &h, response("completed", json!([item]), usage).to_string().as_bytes());
    }
    let mut h = vec![("content-type", "text/event-stream; charset=utf-8".to_string())];
    h.extend(headers.iter().cloned());
    start_chunked(w, 200, &h)?;
    let mut seq = 0u64;
    let mut send = |w: &mut TcpStream, kind: &str, mut data: Value| -> io::Result<()> {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        chunk(w, &format!("event: {kind}\ndata: {data}\n\n"))
    };
    send(w, "response.created", json!({"response": response("in_progress", json!([]), Value::Null)}))?;
    send(w, "response.in_progress", json!({"response": response("in_progress", json!([]), Value::Null)}))?;
    let item_id = item["id"].clone();
    let mut added = item.clone();
    added["status"] = json!("in_progress");
    if forced.is_some() {
        added["arguments"] = json!("");
        send(w, "response.output_item.added", json!({"output_index": 0, "item": added}))?;
        for part in ["{\"city\":", "\"Paris\"}"] {
            send(
                w,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": 0, "delta": part}),
            )?;
        }
        send(
            w,
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": 0, "arguments": item["arguments"]}),
        )?;
    } else {
        added["content"] = json!([]);
        send(w, "response.output_item.added", json!({"output_index": 0, "item": added}))?;
        send(
            w,
            "response.content_part.added",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}),
        )?;
        for word in &words {
            send(
                w,
                "response.output_text.delta",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": word, "logprobs": []}),
            )?;
        }
        let text = words.concat();
        send(
            w,
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
        )?;
        send(
            w,
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}}),
        )?;
    }
    send(w, "response.output_item.done", json!({"output_index": 0, "item": item}))?;
    send(w, "response.completed", json!({"response": response("completed", json!([item]), usage)}))?;
    end_chunked(w)
}
