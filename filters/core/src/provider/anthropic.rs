//! Translation between the unified request (OpenAI chat completions) and Anthropic Messages.
//!
//! Documented approximations: `system`/`developer` messages anywhere become one top-level
//! system prompt (order kept); `temperature` above 1 is clamped to 1 (Anthropic's maximum);
//! a message `name` is dropped. `n > 1`, audio and file parts are refused with a 400.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::error::GatewayError;
use crate::wire::chat::{completion_id, Answer, ToolCall};
use crate::wire::sse;
use crate::wire::usage::Usage;

pub const API_VERSION: &str = "2023-06-01";

fn unsupported(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", message).with_param(param)
}

/// Text of an OpenAI content value that may only hold text (string or text parts).
fn text_of(content: &Value) -> Result<String, GatewayError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    (Some("refusal"), _) => out.push_str(p.get("refusal").and_then(Value::as_str).unwrap_or("")),
                    _ => return Err(unsupported("messages", "only text parts are allowed here")),
                }
            }
            Ok(out)
        }
        _ => Err(GatewayError::bad_request("invalid_value", "message content must be a string or an array")
            .with_param("messages")),
    }
}

fn image_block(part: &Value) -> Result<Value, GatewayError> {
    let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or("");
    if let Some(rest) = url.strip_prefix("data:") {
        let (media, data) = rest.split_once(";base64,").ok_or_else(|| {
            GatewayError::bad_request("invalid_value", "image data URLs must be base64").with_param("messages")
        })?;
        if !matches!(media, "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
            return Err(unsupported("messages", format!("image type {media} is not supported by this provider")));
        }
        Ok(json!({"type":"image","source":{"type":"base64","media_type":media,"data":data}}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(json!({"type":"image","source":{"type":"url","url":url}}))
    } else {
        Err(GatewayError::bad_request("invalid_value", "image_url.url must be an http(s) or data URL")
            .with_param("messages"))
    }
}

fn user_blocks(content: &Value) -> Result<Vec<Value>, GatewayError> {
    match content {
        Value::String(s) => Ok(vec![json!({"type":"text","text":s})]),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"type":"text","text":p.get("text").and_then(Value::as_str).unwrap_or("")})),
                Some("image_url") => image_block(p),
                Some(other) => Err(unsupported(
                    "messages",
                    format!("content part type `{other}` is not supported by this provider"),
                )),
                None => {
                    Err(GatewayError::bad_request("invalid_value", "content part without a type")
                        .with_param("messages"))
                }
            })
            .collect(),
        _ => Err(GatewayError::bad_request("invalid_value", "user content must be a string or an array")
            .with_param("messages")),
    }
}

fn push_turn(out: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = out.last_mut() {
        if last.get("role").and_then(Value::as_str) == Some(role) {
            if let Some(Value::Array(existing)) = last.get_mut("content") {
                existing.extend(blocks);
                return;
            }
        }
    }
    out.push(json!({"role": role, "content": blocks}));
}

/// Builds the Anthropic Messages request for `model` from a unified (OpenAI) request.
pub fn request_from_openai(req: &Value, model: &str, max_tokens_default: u64) -> Result<Value, GatewayError> {
    let messages = req.get("messages").and_then(Value::as_array).ok_or_else(|| {
        GatewayError::bad_request("invalid_value", "`messages` must be an array").with_param("messages")
    })?;
    if req.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(unsupported("n", "n > 1 is not supported by this provider"));
    }
    let mut system = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" | "developer" => {
                let t = text_of(content)?;
                if !t.is_empty() {
                    system.push(json!({"type":"text","text":t}));
                }
            }
            "user" => push_turn(&mut out, "user", user_blocks(content)?),
            "assistant" => {
                let mut blocks = Vec::new();
                let t = text_of(content)?;
                if !t.is_empty() {
                    blocks.push(json!({"type":"text","text":t}));
                }
                for tc in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
                    let input: Value = if args.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(args).map_err(|_| {
                            GatewayError::bad_request(
                                "invalid_tool_arguments",
                                "tool_calls[].function.arguments is not valid JSON",
                            )
                            .with_param("messages")
                        })?
                    };
                    blocks.push(json!({"type":"tool_use","id":tc.get("id").cloned().unwrap_or(Value::Null),
                        "name":tc.pointer("/function/name").cloned().unwrap_or(Value::Null),"input":input}));
                }
                push_turn(&mut out, "assistant", blocks);
            }
            "tool" => {
                let block = json!({"type":"tool_result","tool_use_id":m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "content":text_of(content)?});
                push_turn(&mut out, "user", vec![block]);
            }
            other => {
                return Err(GatewayError::bad_request("invalid_value", format!("unknown message role `{other}`"))
                    .with_param("messages"))
            }
        }
    }
    if out.is_empty() {
        return Err(GatewayError::bad_request("invalid_value", "at least one user or assistant message is required")
            .with_param("messages"));
    }

    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let max_tokens = req
        .get("max_completion_tokens")
        .and_then(Value::as_u64)
        .or_else(|| req.get("max_tokens").and_then(Value::as_u64))
        .unwrap_or(max_tokens_default);
    body.insert("max_tokens".into(), json!(max_tokens));
    body.insert("messages".into(), Value::Array(out));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    if let Some(t) = req.get("temperature").and_then(Value::as_f64) {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    if let Some(p) = req.get("top_p").filter(|v| v.is_number()) {
        body.insert("top_p".into(), p.clone());
    }
    match req.get("stop") {
        Some(Value::String(s)) => {
            body.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".into(), json!(true));
    }
    if let Some(tools) = req.get("tools").and_then(Value::as_array) {
        let mut out_tools = Vec::new();
        for t in tools {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(unsupported("tools", "only function tools are supported by this provider"));
            }
            let f = t.get("function").unwrap_or(&Value::Null);
            let mut tool = Map::new();
            tool.insert("name".into(), f.get("name").cloned().unwrap_or(Value::Null));
            if let Some(d) = f.get("description") {
                tool.insert("description".into(), d.clone());
            }
            tool.insert(
                "input_schema".into(),
                f.get("parameters").cloned().unwrap_or_else(|| json!({"type":"object","properties":{}})),
            );
            out_tools.push(Value::Object(tool));
        }
        body.insert("tools".into(), Value::Array(out_tools));
    }
    let mut choice = match req.get("tool_choice") {
        Some(Value::String(s)) if s == "auto" => Some(json!({"type":"auto"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type":"none"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type":"any"})),
        Some(v @ Value::Object(_)) => match v.pointer("/function/name") {
            Some(name) => Some(json!({"type":"tool","name":name})),
            None => return Err(unsupported("tool_choice", "this tool_choice form is not supported by this provider")),
        },
        _ => None,
    };
    if req.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) && body.contains_key("tools") {
        let c = choice.get_or_insert_with(|| json!({"type":"auto"}));
        if let Some(obj) = c.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    if let Some(c) = choice {
        body.insert("tool_choice".into(), c);
    }
    if let Some(u) = req.get("user").and_then(Value::as_str) {
        body.insert("metadata".into(), json!({"user_id": u}));
    }
    Ok(Value::Object(body))
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic `usage` -> normalised usage (input includes cache reads and writes).
pub fn usage_of(u: &Value) -> Usage {
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cached = n("cache_read_input_tokens");
    Usage {
        input: n("input_tokens") + n("cache_creation_input_tokens") + cached,
        cached_input: cached,
        output: n("output_tokens"),
        reasoning: u.pointer("/output_tokens_details/thinking_tokens").and_then(Value::as_u64).unwrap_or(0),
    }
}

/// An Anthropic Messages response, as much of it as the unified answer needs (borrowed).
#[derive(Deserialize)]
struct MessagesResponse<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    content: Option<Vec<Block<'a>>>,
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<MessagesUsage>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// Anthropic's `usage`.
#[derive(Deserialize, Default)]
pub struct MessagesUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    output_tokens_details: Option<ThinkingTokens>,
}

#[derive(Deserialize, Default)]
struct ThinkingTokens {
    #[serde(default)]
    thinking_tokens: Option<u64>,
}

impl MessagesUsage {
    /// Normalised (input includes cache reads and writes).
    pub fn usage(&self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        Usage {
            input: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(cached),
            cached_input: cached,
            output: self.output_tokens.unwrap_or(0),
            reasoning: self.output_tokens_details.as_ref().and_then(|d| d.thinking_tokens).unwrap_or(0),
        }
    }
}

/// Translates a complete Anthropic Messages response into an OpenAI chat completion.
pub fn response_to_openai(body: &[u8], created: u64) -> Result<(Vec<u8>, Usage), String> {
    let r: MessagesResponse<'_> =
        serde_json::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in r.content.into_iter().flatten() {
        match block.kind.as_ref() {
            "text" => text.push_str(block.text.as_deref().unwrap_or("")),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id,
                name: block.name,
                arguments: Cow::Borrowed(block.input.map_or("{}", RawValue::get)),
            }),
            _ => {}
        }
    }
    let usage = r.usage.unwrap_or_default().usage();
    let answer = Answer {
        id: completion_id(r.id.as_deref().unwrap_or("")),
        model: r.model,
        text,
        tool_calls,
        finish_reason: finish_reason(r.stop_reason.as_deref().unwrap_or("end_turn")),
        usage,
    };
    Ok((answer.to_bytes(created), usage))
}

/// OpenAI error `type` and `code` for an Anthropic error type.
fn error_kind(anthropic_type: &str) -> (&'static str, &'static str) {
    match anthropic_type {
        "invalid_request_error" => ("invalid_request_error", "invalid_request"),
        "authentication_error" => ("authentication_error", "upstream_authentication"),
        "permission_error" => ("permission_error", "upstream_permission"),
        "not_found_error" => ("invalid_request_error", "model_not_found"),
        "request_too_large" => ("invalid_request_error", "request_too_large"),
        "rate_limit_error" => ("rate_limit_error", "rate_limit_exceeded"),
        "billing_error" => ("insufficient_quota", "insufficient_quota"),
        "timeout_error" => ("server_error", "timeout"),
        "overloaded_error" => ("server_error", "overloaded"),
        _ => ("server_error", "upstream_error"),
    }
}

/// Translates an Anthropic error response into OpenAI's error shape; 529 becomes 503, since
/// OpenAI SDKs know no 529.
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let atype = v.pointer("/error/type").and_then(Value::as_str).unwrap_or("api_error");
    let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("The provider returned an error.");
    let (kind, code) = error_kind(atype);
    let status = if status == 529 { 503 } else { status };
    let out = json!({"error":{"message":message,"type":kind,"param":null,"code":code}});
    (status, out.to_string().into_bytes())
}

/// Turns an Anthropic SSE stream into OpenAI chat-completion chunks as it streams.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: sse::Parser,
    events: Vec<sse::Event>,
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    usage: Usage,
    stop_reason: Option<String>,
    tool_index: HashMap<u64, u64>,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self {
            parser: sse::Parser::default(),
            events: Vec::new(),
            id: "chatcmpl-".into(),
            model: Value::Null,
            created,
            include_usage,
            usage: Usage::default(),
            stop_reason: None,
            tool_index: HashMap::new(),
            finished: false,
        }
    }

    /// Usage seen so far (final once the stream finished).
    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        let mut c = json!({"id":self.id,"object":"chat.completion.chunk","created":self.created,"model":self.model,
            "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]});
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        sse::data_event(out, &c.to_string());
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        let (t, code) = error_kind(kind);
        sse::data_event(out, &json!({"error":{"message":message,"type":t,"param":null,"code":code}}).to_string());
        self.finished = true;
    }

    /// Feeds a chunk of the provider's stream; returns the bytes to send on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.parser.push(chunk, &mut self.events);
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            if self.finished {
                break;
            }
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                self.error(&mut out, "api_error", "The provider sent a malformed stream event.");
                break;
            };
            let kind = v.get("type").and_then(Value::as_str).or(ev.event.as_deref()).unwrap_or("");
            match kind {
                "message_start" => {
                    let m = v.get("message").unwrap_or(&Value::Null);
                    self.id = completion_id(m.get("id").and_then(Value::as_str).unwrap_or(""));
                    self.model = m.get("model").cloned().unwrap_or(Value::Null);
                    if let Some(u) = m.get("usage") {
                        self.usage = usage_of(u);
                    }
                    self.chunk(&mut out, json!({"role":"assistant","content":""}), None);
                }
                "content_block_start" => {
                    let b = v.get("content_block").unwrap_or(&Value::Null);
                    if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                        let k = self.tool_index.len() as u64;
                        self.tool_index.insert(v.get("index").and_then(Value::as_u64).unwrap_or(0), k);
                        self.chunk(
                            &mut out,
                            json!({"tool_calls":[{"index":k,"id":b.get("id"),"type":"function",
                            "function":{"name":b.get("name"),"arguments":""}}]}),
                            None,
                        );
                    }
                }
                "content_block_delta" => {
                    let d = v.get("delta").unwrap_or(&Value::Null);
                    match d.get("type").and_then(Value::as_str) {
                        Some("text_delta") => {
                            let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                            self.chunk(&mut out, json!({"content": t}), None);
                        }
                        Some("input_json_delta") => {
                            let p = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                            let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                            if let (false, Some(k)) = (p.is_empty(), self.tool_index.get(&idx)) {
                                self.chunk(
                                    &mut out,
                                    json!({"tool_calls":[{"index":k,"function":{"arguments":p}}]}),
                                    None,
                                );
                            }
                        }
                        _ => {}
                    }
                }
                "message_delta" => {
                    if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                        self.stop_reason = Some(r.to_string());
                    }
                    if let Some(u) = v.get("usage") {
                        let n = usage_of(u);
                        self.usage.output = n.output;
                        self.usage.reasoning = n.reasoning.max(self.usage.reasoning);
                        if u.get("input_tokens").is_some() {
                            self.usage.input = n.input;
                            self.usage.cached_input = n.cached_input;
                        }
                    }
                }
                "message_stop" => {
                    let fr = finish_reason(self.stop_reason.as_deref().unwrap_or("end_turn"));
                    self.chunk(&mut out, json!({}), Some(fr));
                    if self.include_usage {
                        let c = json!({"id":self.id,"object":"chat.completion.chunk","created":self.created,
                            "model":self.model,"choices":[],"usage":self.usage.to_openai()});
                        sse::data_event(&mut out, &c.to_string());
                    }
                    out.extend_from_slice(b"data: [DONE]\n\n");
                    self.finished = true;
                }
                "error" => {
                    let t = v.pointer("/error/type").and_then(Value::as_str).unwrap_or("api_error").to_string();
                    let m = v
                        .pointer("/error/message")
                        .and_then(Value::as_str)
                        .unwrap_or("The provider failed mid-stream.")
                        .to_string();
                    self.error(&mut out, &t, &m);
                }
                _ => {}
            }
        }
        self.events = events;
        self.events.clear();
        out
    }

    /// Called at the end of the provider's body: a stream that ended without `message_stop`
    /// gets an error event, so the caller's SDK raises instead of hanging or truncating silently.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.error(&mut out, "api_error", "The provider's stream ended before the message was complete.");
        }
        out
    }
}

impl_translate!(StreamTranslator);

/// Anthropic Messages as a provider API (see `provider`).
pub struct Anthropic;

impl crate::provider::ProviderApi for Anthropic {
    fn path(&self, _model: &str, _cfg: &crate::provider::ProviderConfig, _stream: bool) -> String {
        "/v1/messages".to_string()
    }

    fn version_header(&self) -> Option<(&'static str, &'static str)> {
        Some(("anthropic-version", API_VERSION))
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("x-api-key", key.to_string()))
    }

    fn request(&self, req: Value, model: &str, max_tokens_default: u64) -> Result<Value, GatewayError> {
        request_from_openai(&req, model, max_tokens_default)
    }

    fn answer(&self, body: &[u8], _model: &str, now_ms: u64) -> Result<(Vec<u8>, Option<Usage>), String> {
        response_to_openai(body, now_ms / 1000).map(|(out, u)| (out, Some(u)))
    }

    fn error(&self, status: u16, _error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        error_to_openai(status, body)
    }

    fn stream(
        &self,
        content_type: &str,
        _model: &str,
        _id: Option<&str>,
        created: u64,
    ) -> Option<Box<dyn crate::wire::sse::Translate>> {
        content_type
            .starts_with("text/event-stream")
            .then(|| Box::new(StreamTranslator::new(created, true)) as Box<dyn crate::wire::sse::Translate>)
    }
}

#[cfg(test)]
mod tests;
