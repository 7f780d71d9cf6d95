//! AWS Bedrock Runtime Converse API. The unified request is first translated to Anthropic
//! Messages (`crate::anthropic`, which validates and merges turns), then mapped block by block
//! onto Converse; the answer comes back the same way.
//!
//! Documented approximations: image URLs are refused (Converse takes only inline bytes);
//! `tool_choice: "none"` is refused (Converse has no such choice). Streaming calls are sent
//! to Converse (not ConverseStream) and the whole answer is returned as one stream.

use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::sigv4::uri_encode;

fn unsupported(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", message).with_param(param)
}

/// The Converse path for `model` (the model id is one percent-encoded path segment).
pub fn converse_path(model: &str) -> String {
    format!("/model/{}/converse", uri_encode(model, false))
}

fn block(b: &Value) -> Result<Value, GatewayError> {
    match b.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"text": b.get("text").cloned().unwrap_or(json!(""))})),
        Some("image") => {
            if b.pointer("/source/type").and_then(Value::as_str) != Some("base64") {
                return Err(unsupported("messages", "this provider takes images only as data URLs"));
            }
            let media = b.pointer("/source/media_type").and_then(Value::as_str).unwrap_or("");
            Ok(json!({"image": {"format": media.trim_start_matches("image/"),
                                "source": {"bytes": b.pointer("/source/data").cloned().unwrap_or(json!(""))}}}))
        }
        Some("tool_use") => Ok(json!({"toolUse": {"toolUseId": b.get("id"), "name": b.get("name"),
                                                   "input": b.get("input").cloned().unwrap_or(json!({}))}})),
        Some("tool_result") => {
            let text = b.get("content").and_then(Value::as_str).unwrap_or("");
            Ok(json!({"toolResult": {"toolUseId": b.get("tool_use_id"), "content": [{"text": text}]}}))
        }
        _ => Err(unsupported("messages", "a content block this provider cannot take")),
    }
}

/// Converse request body from an Anthropic Messages request.
pub fn request_from_anthropic(a: &Value) -> Result<Value, GatewayError> {
    let mut body = Map::new();
    let mut messages = Vec::new();
    for m in a.get("messages").and_then(Value::as_array).into_iter().flatten() {
        let content = m
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(block)
            .collect::<Result<Vec<_>, _>>()?;
        messages.push(json!({"role": m.get("role"), "content": content}));
    }
    body.insert("messages".into(), Value::Array(messages));
    if let Some(system) = a.get("system").and_then(Value::as_array) {
        let s: Vec<Value> =
            system.iter().map(|b| json!({"text": b.get("text").cloned().unwrap_or(json!(""))})).collect();
        body.insert("system".into(), Value::Array(s));
    }
    let mut inference = Map::new();
    for (from, to) in [
        ("max_tokens", "maxTokens"),
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("stop_sequences", "stopSequences"),
    ] {
        if let Some(v) = a.get(from) {
            inference.insert(to.into(), v.clone());
        }
    }
    body.insert("inferenceConfig".into(), Value::Object(inference));
    if let Some(tools) = a.get("tools").and_then(Value::as_array) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut spec = Map::new();
                spec.insert("name".into(), t.get("name").cloned().unwrap_or(Value::Null));
                if let Some(d) = t.get("description") {
                    spec.insert("description".into(), d.clone());
                }
                spec.insert("inputSchema".into(), json!({"json": t.get("input_schema").cloned().unwrap_or(json!({}))}));
                json!({"toolSpec": spec})
            })
            .collect();
        let mut config = Map::new();
        config.insert("tools".into(), Value::Array(specs));
        match a.pointer("/tool_choice/type").and_then(Value::as_str) {
            None | Some("auto") => {}
            Some("any") => {
                config.insert("toolChoice".into(), json!({"any": {}}));
            }
            Some("tool") => {
                config.insert("toolChoice".into(), json!({"tool": {"name": a.pointer("/tool_choice/name")}}));
            }
            Some(_) => {
                return Err(unsupported("tool_choice", "tool_choice \"none\" is not supported by this provider"))
            }
        }
        body.insert("toolConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// A Converse answer as an Anthropic Messages response (to reuse its translation to OpenAI).
pub fn response_to_anthropic(body: &[u8], model: &str, request_id: &str) -> Result<Vec<u8>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    let mut content = Vec::new();
    for b in v.pointer("/output/message/content").and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = b.get("text") {
            content.push(json!({"type": "text", "text": t}));
        } else if let Some(t) = b.get("toolUse") {
            content.push(json!({"type": "tool_use", "id": t.get("toolUseId"), "name": t.get("name"),
                                "input": t.get("input").cloned().unwrap_or(json!({}))}));
        }
    }
    let stop = match v.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn") {
        "tool_use" => "tool_use",
        "max_tokens" | "model_context_window_exceeded" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    };
    let n = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
    let out = json!({
        "id": format!("msg_{request_id}"), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop,
        "usage": {"input_tokens": n("inputTokens"), "output_tokens": n("outputTokens"),
                  "cache_read_input_tokens": n("cacheReadInputTokens"),
                  "cache_creation_input_tokens": n("cacheWriteInputTokens")},
    });
    Ok(out.to_string().into_bytes())
}

/// A Bedrock error (`x-amzn-ErrorType` header, `{"message"}` body) in OpenAI's shape.
pub fn error_to_openai(status: u16, error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("The provider returned an error.");
    let name = error_type.split(':').next().unwrap_or("");
    let (kind, code) = match name {
        "ValidationException" => ("invalid_request_error", "invalid_request"),
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException" => ("authentication_error", "upstream_authentication"),
        "ResourceNotFoundException" => ("invalid_request_error", "model_not_found"),
        "ThrottlingException" | "ModelNotReadyException" => ("rate_limit_error", "rate_limit_exceeded"),
        "ModelTimeoutException" => ("server_error", "timeout"),
        "ServiceUnavailableException" => ("server_error", "overloaded"),
        _ => ("server_error", "upstream_error"),
    };
    (status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_an_anthropic_request_block_by_block() {
        let openai = json!({"messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"}],
            "max_tokens": 64, "temperature": 0.2, "stop": ["END"],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required"});
        let a = crate::anthropic::request_from_openai(&openai, "m", 1024).unwrap();
        let c = request_from_anthropic(&a).unwrap();
        assert_eq!(c["system"], json!([{"text": "Be terse."}]));
        assert_eq!(c["messages"][0], json!({"role": "user", "content": [{"text": "Weather in Paris?"}]}));
        assert_eq!(
            c["messages"][1]["content"][0]["toolUse"],
            json!({"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}})
        );
        assert_eq!(
            c["messages"][2]["content"][0]["toolResult"],
            json!({"toolUseId": "call_1", "content": [{"text": "18C"}]})
        );
        assert_eq!(c["inferenceConfig"], json!({"maxTokens": 64, "temperature": 0.2, "stopSequences": ["END"]}));
        assert_eq!(c["toolConfig"]["toolChoice"], json!({"any": {}}));
        assert_eq!(c["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"], json!({"json": {"type": "object"}}));
        assert!(c.get("model").is_none());
        assert_eq!(
            converse_path("anthropic.claude-3-haiku-20240307-v1:0"),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
    }

    #[test]
    fn refuses_what_converse_cannot_take() {
        let url = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
        let a = crate::anthropic::request_from_openai(&url, "m", 10).unwrap();
        assert_eq!(request_from_anthropic(&a).unwrap_err().code, "unsupported_for_provider");
        let none = json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        let a = crate::anthropic::request_from_openai(&none, "m", 10).unwrap();
        assert_eq!(request_from_anthropic(&a).unwrap_err().param, Some("tool_choice"));
    }

    #[test]
    fn converse_answer_becomes_an_openai_completion() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"},
            {"toolUse":{"toolUseId":"tooluse_1","name":"f","input":{"a":1}}}]}},"stopReason":"tool_use",
            "usage":{"inputTokens":10,"outputTokens":3,"totalTokens":13,"cacheReadInputTokens":4},"metrics":{"latencyMs":5}}"#;
        let a = response_to_anthropic(body, "anthropic.claude-x", "req1").unwrap();
        let (out, usage) = crate::anthropic::response_to_openai(&a, 7).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["message"]["content"], "Hi");
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(v["model"], "anthropic.claude-x");
        assert_eq!((usage.input, usage.cached_input, usage.output), (14, 4, 3));
    }

    #[test]
    fn errors_take_their_code_from_the_error_type_header() {
        let (s, b) = error_to_openai(
            429,
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            br#"{"message":"Too many tokens"}"#,
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["message"].as_str()),
            (429, Some("rate_limit_exceeded"), Some("Too many tokens"))
        );
        let (_, b) = error_to_openai(403, "InvalidSignatureException", br#"{"Message":"sig"}"#);
        assert!(String::from_utf8_lossy(&b).contains("upstream_authentication"));
    }
}
