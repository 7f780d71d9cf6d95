//! The second front door: Anthropic's Messages API (`POST /v1/messages`), so the Anthropic SDK
//! works unchanged. To a provider that speaks Messages (Anthropic) the request goes as the caller
//! wrote it but for `model`, and its answer comes back as it is. For any other provider each
//! attempt translates: a Messages request becomes the unified request (OpenAI chat completions)
//! on the way in, and the unified answer (JSON or stream) a Messages answer on the way out.
//!
//! Documented approximations of the translated way: `top_k` is dropped (OpenAI has none);
//! thinking blocks in the history are dropped; `stop_reason` is `end_turn` for any natural stop
//! (OpenAI does not say whether a stop sequence matched).

use crate::text::{Joined, Put, PutBytes, Text};
use crate::wire::tree::{Map, Value};

use crate::error::GatewayError;
use crate::wire::sse;
use crate::wire::usage::Usage;
use crate::wire::{obj, ToTree};

pub const PATH: &str = "/v1/messages";

fn invalid(message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("invalid_request", message)
}

fn text_of_blocks(v: &Value) -> String {
    match v {
        Value::String(s) => s.own(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .joined("\n"),
        _ => String::new(),
    }
}

fn image_part(b: &Value) -> Result<Value, GatewayError> {
    let src = b.get("source").unwrap_or(&Value::Null);
    let url = match src.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            src.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            src.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => src.get("url").and_then(Value::as_str).unwrap_or("").own(),
        _ => return Err(invalid("image source must be base64 or url")),
    };
    Ok(obj! {"type" => "image_url", "image_url" = obj!{"url" => url}})
}

/// The unified (OpenAI) request for a Messages request.
pub fn request_to_openai(a: &Value) -> Result<Value, GatewayError> {
    let model = a.get("model").and_then(Value::as_str).ok_or_else(|| invalid("model: Field required"))?;
    let max_tokens =
        a.get("max_tokens").and_then(Value::as_u64).ok_or_else(|| invalid("max_tokens: Field required"))?;
    let msgs = a.get("messages").and_then(Value::as_array).ok_or_else(|| invalid("messages: Field required"))?;
    let mut out = Vec::new();
    if let Some(system) = a.get("system") {
        let t = text_of_blocks(system);
        if !t.is_empty() {
            out.push(obj! {"role" => "system", "content" => t});
        }
    }
    for m in msgs {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match (role, content) {
            ("user" | "assistant", Value::String(s)) => out.push(obj! {"role" => role, "content" => s}),
            ("user", Value::Array(blocks)) => {
                let mut parts = Vec::new();
                for b in blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => parts.push(obj! {"type" => "text", "text" => b.get("text")}),
                        Some("image") => parts.push(image_part(b)?),
                        Some("tool_result") => {
                            // Tool results are messages of their own in OpenAI's format; what the
                            // user said after them follows them.
                            if !parts.is_empty() {
                                out.push(obj! {"role" => "user", "content" => std::mem::take(&mut parts)});
                            }
                            out.push(obj! {
                                "role" => "tool",
                                "tool_call_id" => b.get("tool_use_id"),
                                "content" => text_of_blocks(b.get("content").unwrap_or(&Value::Null)),
                            });
                        }
                        _ => return Err(invalid("unsupported content block in a user message")),
                    }
                }
                if !parts.is_empty() {
                    out.push(obj! {"role" => "user", "content" => parts});
                }
            }
            ("assistant", Value::Array(blocks)) => {
                let mut text = String::new();
                let mut calls = Vec::new();
                for b in blocks {
                    match b.get("type").and_then(Value::as_str) {
                        Some("text") => text.put(b.get("text").and_then(Value::as_str).unwrap_or("")),
                        Some("tool_use") => calls.push(obj! {
                            "id" => b.get("id"),
                            "type" => "function",
                            "function" = obj!{
                                "name" => b.get("name"),
                                "arguments" => b.get("input").map_or_else(|| "{}".own(), crate::wire::write::to_string),
                            },
                        }),
                        Some("thinking") | Some("redacted_thinking") => {}
                        _ => return Err(invalid("unsupported content block in an assistant message")),
                    }
                }
                let mut msg = obj! {
                    "role" => "assistant",
                    "content" => if text.is_empty() { Value::Null } else { ToTree::to_tree(&text) },
                };
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(calls);
                }
                out.push(msg);
            }
            _ => return Err(invalid("messages: roles must be user or assistant, with string or block content")),
        }
    }
    let mut body = Map::new();
    body.insert("model".own(), ToTree::to_tree(&model));
    body.insert("messages".own(), Value::Array(out));
    body.insert("max_tokens".own(), ToTree::to_tree(&max_tokens));
    for (from, to) in [("temperature", "temperature"), ("top_p", "top_p"), ("stop_sequences", "stop")] {
        if let Some(v) = a.get(from) {
            body.insert(to.into(), v.clone());
        }
    }
    if a.get("stream").and_then(Value::as_bool) == Some(true) {
        body.insert("stream".own(), ToTree::to_tree(&true));
        // A Messages stream always reports usage.
        body.insert("stream_options".own(), obj! {"include_usage" => true});
    }
    if let Some(tools) = a.get("tools").and_then(Value::as_array) {
        let t: Vec<Value> = tools
            .iter()
            .map(|t| {
                obj! {
                    "type" => "function",
                    "function" = obj!{
                        "name" => t.get("name"),
                        "description" => t.get("description"),
                        "parameters" => t.get("input_schema").cloned().unwrap_or(obj!{"type" => "object"}),
                    },
                }
            })
            .collect();
        body.insert("tools".own(), Value::Array(t));
    }
    if let Some(c) = a.get("tool_choice") {
        let choice = match c.get("type").and_then(Value::as_str) {
            Some("any") => ToTree::to_tree(&"required"),
            Some("none") => ToTree::to_tree(&"none"),
            Some("tool") => {
                obj! {"type" => "function", "function" = obj!{"name" => c.get("name")}}
            }
            _ => ToTree::to_tree(&"auto"),
        };
        body.insert("tool_choice".own(), choice);
        if c.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
            body.insert("parallel_tool_calls".own(), ToTree::to_tree(&false));
        }
    }
    if let Some(u) = a.pointer("/metadata/user_id") {
        body.insert("user".own(), u.clone());
    }
    // Structured outputs: `output_config.format` is the chat request's `response_format` (whose
    // schema OpenAI wants named).
    let format = a
        .get("output_config")
        .and_then(|c| crate::guard::schema::response_format_of_text(&crate::wire::write::to_string(c)));
    if let Some(Ok(mut rf)) = format.map(|f| crate::wire::from_str::<Value>(&f)) {
        if let Some(s) = rf.get_mut("json_schema").and_then(Value::as_object_mut) {
            s.insert("name".own(), ToTree::to_tree(&"output"));
        }
        body.insert("response_format".own(), rf);
    }
    Ok(Value::Object(body))
}

fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

fn message_id(chat_id: &str) -> String {
    format!("msg_{}", crate::text::strip_all(chat_id, "chatcmpl-"))
}

fn usage_json(u: &Usage) -> Value {
    obj! {
        "input_tokens" => u.input.saturating_sub(u.cached_input).saturating_sub(u.cache_write),
        "cache_read_input_tokens" => u.cached_input,
        "cache_creation_input_tokens" => u.cache_write,
        "output_tokens" => u.output,
    }
}

/// A Messages response for a unified (OpenAI) chat completion, and its usage.
pub fn response_from_openai(body: &[u8]) -> Result<(Vec<u8>, Option<Usage>), String> {
    let v: Value = crate::wire::from_slice(body).map_err(|e| format!("not a chat completion: {e}"))?;
    let msg = v.pointer("/choices/0/message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(obj! {"type" => "text", "text" => t});
    }
    for tc in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = crate::wire::from_str(args).unwrap_or_else(|_| obj! {});
        content.push(
            obj! {"type" => "tool_use", "id" => tc.get("id"), "name" => tc.pointer("/function/name"), "input" = input},
        );
    }
    let usage = v.get("usage").and_then(Usage::from_openai);
    let out = obj! {
        "id" => message_id(v.get("id").and_then(Value::as_str).unwrap_or("")),
        "type" => "message",
        "role" => "assistant",
        "model" => v.get("model"),
        "content" => content,
        "stop_reason" => stop_reason(v.pointer("/choices/0/finish_reason").and_then(Value::as_str).unwrap_or("stop")),
        "stop_sequence" = crate::wire::tree::Value::Null,
        "usage" => usage_json(&usage.unwrap_or_default()),
    };
    Ok((crate::wire::write::to_vec(&out), usage))
}

/// A Messages error body for a unified (OpenAI-shaped) error answer.
pub fn error_from_openai(status: u16, body: &[u8]) -> Vec<u8> {
    let v: Value = crate::wire::from_slice(body).unwrap_or(Value::Null);
    let message =
        v.pointer("/error/message").and_then(Value::as_str).unwrap_or("The gateway could not serve the call.");
    error_body(status, message)
}

/// A Messages error body: Anthropic's error type for `status`, and `message`.
pub fn error_body(status: u16, message: &str) -> Vec<u8> {
    let kind = match status {
        400 | 402 | 405 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    crate::wire::write::to_vec(&obj! {"type" => "error", "error" = obj!{"type" => kind, "message" => message}})
}

/// A whole Messages answer as its stream of events, as Anthropic streams one: `message_start`
/// (the message with no content and no stop reason), then per content block its
/// `content_block_start` (the block with its payload empty), one delta with the payload (text,
/// a tool call's input as JSON text, thinking and its signature) and `content_block_stop` (a
/// block of another kind starts whole and has no delta), then `message_delta` (the stop reason
/// and the usage) and `message_stop`. `None`: not a Messages answer.
pub fn stream_from_message(body: &[u8]) -> Option<Vec<u8>> {
    let whole: Value = crate::wire::from_slice(body).ok()?;
    if whole.get("type").and_then(Value::as_str) != Some("message") {
        return None;
    }
    let mut out = Vec::new();
    let mut start = whole.clone();
    start["content"] = crate::wire::tree::Value::Array(Vec::new());
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    event(&mut out, "message_start", &obj! {"type" => "message_start", "message" = start});
    for (i, block) in whole.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let mut empty = block.clone();
        let delta = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                empty["text"] = ToTree::to_tree(&"");
                vec![obj! {"type" => "text_delta", "text" => block.get("text")}]
            }
            Some("tool_use") => {
                empty["input"] = obj! {};
                let input = block.get("input").map_or_else(|| "{}".own(), crate::wire::write::to_string);
                vec![obj! {"type" => "input_json_delta", "partial_json" => input}]
            }
            Some("thinking") => {
                empty["thinking"] = ToTree::to_tree(&"");
                empty["signature"] = ToTree::to_tree(&"");
                vec![
                    obj! {"type" => "thinking_delta", "thinking" => block.get("thinking")},
                    obj! {"type" => "signature_delta", "signature" => block.get("signature")},
                ]
            }
            _ => Vec::new(),
        };
        event(
            &mut out,
            "content_block_start",
            &obj! {"type" => "content_block_start", "index" => i, "content_block" => empty},
        );
        for d in delta {
            event(&mut out, "content_block_delta", &obj! {"type" => "content_block_delta", "index" => i, "delta" => d});
        }
        event(&mut out, "content_block_stop", &obj! {"type" => "content_block_stop", "index" => i});
    }
    event(
        &mut out,
        "message_delta",
        &obj! {"type" => "message_delta", "delta" = obj!{
            "stop_reason" => whole.get("stop_reason"),
            "stop_sequence" => whole.get("stop_sequence"),
        }, "usage" => whole.get("usage")},
    );
    event(&mut out, "message_stop", &obj! {"type" => "message_stop"});
    Some(out)
}

/// Collects a Messages event stream into its whole answer (what [`stream_from_message`] would
/// stream again): the message `message_start` announced, each block from its start and deltas,
/// the stop reason and usage from `message_delta`. A stream that does not reach
/// `message_stop`, or carries an `error` event, or grows past the limit, amounts to none.
#[derive(Default)]
pub struct MessagesCollector {
    parser: sse::Parser,
    message: Option<Value>,
    blocks: Vec<Value>,
    /// Per block, a tool call's input as JSON text so far.
    inputs: Vec<String>,
    ended: bool,
    broken: bool,
    limit: usize,
    seen: usize,
}

impl MessagesCollector {
    pub fn new(limit: usize) -> MessagesCollector {
        MessagesCollector { limit, ..MessagesCollector::default() }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.seen = self.seen.saturating_add(chunk.len());
        if self.broken || self.seen > self.limit {
            self.broken = true;
            return;
        }
        let mut parser = std::mem::take(&mut self.parser);
        parser.push_each(chunk, |name, data| self.event(name, data));
        self.parser = parser;
    }

    fn event(&mut self, name: Option<&str>, data: &str) {
        if name == Some("ping") {
            return;
        }
        if self.read(name, data).is_none() {
            self.broken = true;
        }
    }

    /// One event; `None`: not what a Messages stream sends there (the answer is then none).
    fn read(&mut self, name: Option<&str>, data: &str) -> Option<()> {
        let v = crate::wire::from_str::<Value>(data).ok()?;
        let index = v.get("index").and_then(Value::as_u64).and_then(|i| usize::try_from(i).ok());
        match name.or_else(|| v.get("type").and_then(Value::as_str)) {
            Some("message_start") => {
                let m = v.get("message").filter(|m| m.get("type").and_then(Value::as_str) == Some("message"))?;
                self.message = Some(m.clone());
            }
            Some("content_block_start") => {
                let block = v.get("content_block").filter(|b| b.is_object())?;
                if index != Some(self.blocks.len()) {
                    return None;
                }
                self.blocks.push(block.clone());
                self.inputs.push(String::new());
            }
            Some("content_block_delta") => {
                let i = index?;
                let block = self.blocks.get_mut(i)?.as_object_mut()?;
                let d = v.get("delta")?;
                let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or_default();
                let mut append = |key: &str, more: &str| {
                    let now = block.get(key).and_then(Value::as_str).unwrap_or_default();
                    let joined = format!("{now}{more}");
                    block.insert(key.own(), Value::String(joined));
                };
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => append("text", text("text")),
                    Some("thinking_delta") => append("thinking", text("thinking")),
                    Some("signature_delta") => {
                        block.insert("signature".own(), ToTree::to_tree(&(text("signature"))));
                    }
                    Some("input_json_delta") => self.inputs.get_mut(i)?.put(text("partial_json")),
                    Some("citations_delta") => {
                        let c = d.get("citation")?.clone();
                        let list = block.slot("citations");
                        if list.is_null() {
                            *list = Value::Array(Vec::new());
                        }
                        list.as_array_mut()?.push(c);
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => {
                let i = index?;
                let input = self.inputs.get(i).filter(|t| !t.is_empty()).cloned();
                let block = self.blocks.get_mut(i)?.as_object_mut()?;
                if let Some(text) = input {
                    block.insert("input".own(), crate::wire::from_str::<Value>(&text).ok()?);
                }
            }
            Some("message_delta") => {
                let m = self.message.as_mut()?.as_object_mut()?;
                for k in ["stop_reason", "stop_sequence"] {
                    if let Some(x) = v.get("delta").and_then(|d| d.get(k)) {
                        m.insert(k.into(), x.clone());
                    }
                }
                if let Some(more) = v.get("usage").and_then(Value::as_object) {
                    match m.get_mut("usage").and_then(Value::as_object_mut) {
                        Some(now) => now.extend(more.clone()),
                        None => {
                            m.insert("usage".own(), Value::Object(more.clone()));
                        }
                    }
                }
            }
            Some("message_stop") => self.ended = true,
            Some("error") => return None,
            _ => {}
        }
        Some(())
    }

    /// Whether the stream's own end (`message_stop`) came.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The whole answer, when the stream ended whole.
    pub fn answer(&self) -> Option<Vec<u8>> {
        if self.broken || !self.ended {
            return None;
        }
        let mut m = self.message.clone()?;
        m.as_object_mut()?.insert("content".own(), Value::Array(self.blocks.clone()));
        Some(crate::wire::write::to_vec(&m))
    }

    /// Its usage (normalised).
    pub fn usage(&self) -> Option<Usage> {
        self.message.as_ref().and_then(|m| m.get("usage")).and_then(Usage::from_responses)
    }
}

/// What a unified chunk that carries only text has, read borrowed (see
/// `StreamToMessages::text_delta`); anything else present sends the chunk the tree's way.
struct TextChunk<'a> {
    choices: Vec<TextChoice<'a>>,
    usage: Option<crate::wire::read::Raw<'a>>,
    error: Option<crate::wire::read::Raw<'a>>,
}
crate::wire::object::from_object!(TextChunk<'a> {
    choices: "choices" [],
    usage: "usage" [],
    error: "error" [],
});

struct TextChoice<'a> {
    delta: Option<TextDelta<'a>>,
    finish_reason: Option<crate::wire::read::Raw<'a>>,
}
crate::wire::object::from_object!(TextChoice<'a> {
    delta: "delta" [],
    finish_reason: "finish_reason" [],
});

struct TextDelta<'a> {
    content: Option<std::borrow::Cow<'a, str>>,
    tool_calls: Option<crate::wire::read::Raw<'a>>,
}
crate::wire::object::from_object!(TextDelta<'a> {
    content: "content" [],
    tool_calls: "tool_calls" [],
});

/// Turns a unified (OpenAI) chunk stream into Messages stream events as it streams.
#[derive(Debug, Default)]
pub struct StreamToMessages {
    parser: sse::Parser,
    events: Vec<sse::Event>,
    started: bool,
    /// The open content block: its index and whether it is text.
    open: Option<(u64, bool)>,
    next_index: u64,
    stop: Option<&'static str>,
    pub usage: Option<Usage>,
    done: bool,
}

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    crate::wire::sse::named_tree_event(out, Some(name), data);
}

impl StreamToMessages {
    fn start(&mut self, out: &mut Vec<u8>, chunk: &Value) {
        if self.started {
            return;
        }
        self.started = true;
        let id = message_id(chunk.get("id").and_then(Value::as_str).unwrap_or(""));
        event(
            out,
            "message_start",
            &obj! {"type" => "message_start", "message" = obj!{
                "id" => id,
                "type" => "message",
                "role" => "assistant",
                "model" => chunk.get("model"),
                "content" = crate::wire::tree::Value::Array(Vec::new()),
                "stop_reason" = crate::wire::tree::Value::Null,
                "stop_sequence" = crate::wire::tree::Value::Null,
                "usage" = obj!{"input_tokens" => 0u64, "output_tokens" => 0u64},
            }},
        );
        event(out, "ping", &obj! {"type" => "ping"});
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            event(out, "content_block_stop", &obj! {"type" => "content_block_stop", "index" => index});
        }
    }

    fn open_block(&mut self, out: &mut Vec<u8>, text: bool, block: Value) -> u64 {
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        event(
            out,
            "content_block_start",
            &obj! {"type" => "content_block_start", "index" => index, "content_block" => block},
        );
        self.open = Some((index, text));
        index
    }

    fn close_message(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.close(out);
        let u = self.usage.unwrap_or_default();
        event(
            out,
            "message_delta",
            &obj! {"type" => "message_delta", "delta" = obj!{
                "stop_reason" => self.stop.unwrap_or("end_turn"),
                "stop_sequence" = crate::wire::tree::Value::Null,
            }, "usage" => usage_json(&u)},
        );
        event(out, "message_stop", &obj! {"type" => "message_stop"});
    }

    /// A unified chunk, translated by way of its JSON tree.
    fn translate(&mut self, out: &mut Vec<u8>, v: &Value) {
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            // A failure after the first byte: Anthropic's error event, then the stream ends.
            self.close(out);
            event(
                out,
                "error",
                &obj! {"type" => "error", "error" = obj!{
                    "type" => "api_error",
                    "message" => e.get("message").and_then(Value::as_str).unwrap_or("The provider failed mid-stream."),
                }},
            );
            self.done = true;
            return;
        }
        self.start(out, v);
        if let Some(u) = v.get("usage").and_then(Usage::from_openai) {
            self.usage = Some(u);
        }
        let Some(choice) = v.pointer("/choices/0") else { return };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(t) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((i, true)) => i,
                _ => self.open_block(out, true, obj! {"type" => "text", "text" => ""}),
            };
            event(
                out,
                "content_block_delta",
                &obj! {"type" => "content_block_delta", "index" => index, "delta" = obj!{
                    "type" => "text_delta",
                    "text" => t,
                }},
            );
        }
        for tc in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
            if let Some(id) = tc.get("id").filter(|i| !i.is_null()) {
                self.open_block(
                    out,
                    false,
                    obj! {"type" => "tool_use", "id" => id, "name" => tc.pointer("/function/name"), "input" = obj!{}},
                );
            }
            let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("");
            if let (Some((index, false)), false) = (self.open, args.is_empty()) {
                event(
                    out,
                    "content_block_delta",
                    &obj! {"type" => "content_block_delta", "index" => index, "delta" = obj!{
                        "type" => "input_json_delta",
                        "partial_json" => args,
                    }},
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop = Some(stop_reason(f));
            self.close(out);
        }
    }

    /// A chunk that carries only text (or nothing), once the message has started: translated
    /// without a tree, as [`StreamToMessages::translate`] would (nearly every chunk of a
    /// stream is one). `false` for any other chunk, which goes the tree's way.
    fn text_delta(&mut self, out: &mut Vec<u8>, data: &str) -> bool {
        if !self.started {
            return false;
        }
        let Ok(c) = crate::wire::from_str::<TextChunk>(data) else { return false };
        if c.usage.is_some() || c.error.is_some() {
            return false;
        }
        let Some(first) = c.choices.first() else { return true };
        if first.finish_reason.is_some() {
            return false;
        }
        let Some(d) = &first.delta else { return true };
        if d.tool_calls.is_some() {
            return false;
        }
        if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
            let index = match self.open {
                Some((i, true)) => i,
                _ => self.open_block(out, true, obj! {"type" => "text", "text" => ""}),
            };
            // The tree's members, in its (sorted) order.
            out.put(b"event: content_block_delta\ndata: {\"delta\":{\"text\":");
            crate::wire::write::string(out, t);
            out.put(b",\"type\":\"text_delta\"},\"index\":");
            crate::wire::write::WriteJson::write_json(&index, out);
            out.put(b",\"type\":\"content_block_delta\"}\n\n");
        }
        true
    }

    /// Feeds a piece of the unified stream; returns the Messages events to send on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.parser.push(chunk, &mut self.events);
        for ev in std::mem::take(&mut self.events) {
            if self.done {
                break;
            }
            if ev.data == "[DONE]" {
                self.close_message(&mut out);
                continue;
            }
            if self.text_delta(&mut out, &ev.data) {
                continue;
            }
            let Ok(v) = crate::wire::from_str::<Value>(&ev.data) else { continue };
            self.translate(&mut out, &v);
        }
        out
    }

    /// At the end of the body: closes a stream that ended without `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.started && !self.done {
            self.close_message(&mut out);
        }
        out
    }
}

impl_translate!(StreamToMessages);

#[cfg(test)]
mod tests;
