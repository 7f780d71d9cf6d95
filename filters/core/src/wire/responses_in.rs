//! The Responses door: a caller speaking OpenAI's Responses API (`POST /v1/responses`) to the
//! gateway. OpenAI and Azure steps take it as it is (the attempt changes only the model); for the
//! others, an attempt turns the request into the unified (chat completions) request, so every
//! provider module serves it as it serves chat, and the unified answer, whole or streamed, into a
//! Response object or the Responses event sequence.
//!
//! On a translated step, what needs OpenAI's stored state or tools (`previous_response_id`,
//! `conversation`, `background`, `prompt`, item references, built-in tools) is refused with a
//! 400 that names the parameter; the gateway itself stores nothing.

use crate::text::{Put, Text};
use crate::wire::tree::{Map, Value};

use super::sse;
use super::usage::Usage;
use crate::error::GatewayError;
use crate::wire::{obj, ToTree};

pub const PATH: &str = "/v1/responses";

/// What the Response object echoes of the request (the SDK requires `tools`, `tool_choice` and
/// `parallel_tool_calls`; the others are echoed as OpenAI does).
#[derive(Debug, Clone, Default)]
pub struct Echo {
    fields: Map<String, Value>,
}

fn unsupported(param: &'static str, message: &str) -> GatewayError {
    GatewayError::bad_request("unsupported_parameter", message.own()).with_param(param)
}

fn invalid(param: &'static str, message: &str) -> GatewayError {
    GatewayError::bad_request("invalid_request", message.own()).with_param(param)
}

/// The text of a content value that is a string or a list of text parts.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.own(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect(),
        _ => String::new(),
    }
}

/// One input message's content as chat content: a string, or parts (text and images).
fn chat_content(content: &Value) -> Result<Value, GatewayError> {
    let Value::Array(parts) = content else { return Ok(Value::String(text_of(content))) };
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                out.push(obj! {"type" => "text", "text" => p.get("text").cloned().unwrap_or_default()})
            }
            Some("input_image") => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    return Err(unsupported(
                        "input",
                        "An `input_image` needs an `image_url` (a URL or a data URL); file ids need OpenAI's storage.",
                    ));
                };
                let mut image = obj! {"url" => url};
                if let Some(d) = p.get("detail").and_then(Value::as_str).filter(|d| *d != "original") {
                    image["detail"] = ToTree::to_tree(&d);
                }
                out.push(obj! {"type" => "image_url", "image_url" = image});
            }
            Some("input_file") => match p.get("file_data") {
                Some(data) => out.push(obj! {
                    "type" => "file",
                    "file" = obj!{"file_data" => data, "filename" => p.get("filename")},
                }),
                None => {
                    return Err(unsupported(
                        "input",
                        "An `input_file` needs `file_data`; file ids and URLs need OpenAI's storage.",
                    ))
                }
            },
            Some("refusal") => {}
            other => return Err(invalid("input", &format!("Unknown content part type {other:?}."))),
        }
    }
    Ok(Value::Array(out))
}

/// The Responses request (the caller's bytes) as the unified chat request, and what the answer
/// echoes of it. What only OpenAI can serve (stored state, built-in tools) is refused by name: a
/// translated step cannot honour it.
pub fn request_to_chat(body: &[u8]) -> Result<(Vec<u8>, Echo), GatewayError> {
    let req: Map<String, Value> = crate::wire::from_slice(body)
        .map_err(|e| GatewayError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}")))?;
    for (param, what) in [
        ("previous_response_id", "`previous_response_id` needs a stored response; the gateway stores none. Send the whole conversation as `input`."),
        ("conversation", "`conversation` needs OpenAI's stored conversations; the gateway stores none."),
        ("prompt", "`prompt` templates are stored by OpenAI; send the text as `input`."),
    ] {
        if req.get(param).is_some_and(|v| !v.is_null()) {
            return Err(unsupported(param, what));
        }
    }
    if req.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("background", "`background` needs a stored response; the gateway stores none."));
    }
    let Some(model) = req.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()) else {
        return Err(GatewayError::bad_request("missing_model", "The request names no `model`.").with_param("model"));
    };
    let mut messages: Vec<Value> = Vec::new();
    if let Some(i) = req.get("instructions").and_then(Value::as_str).filter(|i| !i.is_empty()) {
        messages.push(obj! {"role" => "system", "content" => i});
    }
    match req.get("input") {
        Some(Value::String(s)) => messages.push(obj! {"role" => "user", "content" => s}),
        Some(Value::Array(items)) => {
            for item in items {
                add_item(&mut messages, item)?;
            }
        }
        _ => return Err(invalid("input", "`input` must be a string or a list of input items.")),
    }
    if messages.iter().all(|m| m["role"] == "system") {
        return Err(invalid("input", "`input` has no message to answer."));
    }
    let mut chat = Map::new();
    chat.insert("model".own(), ToTree::to_tree(&model));
    chat.insert("messages".own(), Value::Array(messages));
    let tools = match req.get("tools") {
        Some(Value::Array(tools)) if !tools.is_empty() => {
            let mut out = Vec::with_capacity(tools.len());
            for t in tools {
                if t.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(unsupported(
                        "tools",
                        &format!(
                            "Built-in tool {:?} runs inside OpenAI; the gateway serves function tools only.",
                            t.get("type").and_then(Value::as_str).unwrap_or("?")
                        ),
                    ));
                }
                let mut f = obj! {
                    "name" => t.get("name").cloned().unwrap_or_default(),
                    "parameters" => t.get("parameters").cloned().filter(|p| !p.is_null()).unwrap_or_else(|| obj!{
                        "type" => "object",
                        "properties" = obj!{},
                    }),
                    "strict" => t.get("strict").and_then(Value::as_bool).unwrap_or(false),
                };
                if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
                    f["description"] = d.clone();
                }
                out.push(obj! {"type" => "function", "function" = f});
            }
            if !out.is_empty() {
                chat.insert("tools".own(), Value::Array(out));
            }
            Value::Array(tools.clone())
        }
        _ => crate::wire::tree::Value::Array(Vec::new()),
    };
    let tool_choice = req.get("tool_choice").cloned().unwrap_or_else(|| ToTree::to_tree(&"auto"));
    match &tool_choice {
        Value::String(s) if ["none", "auto", "required"].contains(&s.as_str()) => {
            if req.get("tool_choice").is_some() {
                chat.insert("tool_choice".own(), tool_choice.clone());
            }
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            chat.insert("tool_choice".own(), obj! {"type" => "function", "function" = obj!{"name" => o.get("name")}});
        }
        _ => {
            return Err(unsupported(
                "tool_choice",
                "Only `none`, `auto`, `required` or a named function tool can be chosen.",
            ))
        }
    }
    let parallel = req.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(true);
    if req.get("parallel_tool_calls").is_some() && chat.contains_key("tools") {
        chat.insert("parallel_tool_calls".own(), ToTree::to_tree(&parallel));
    }
    if let Some(m) = req.get("max_output_tokens").filter(|m| !m.is_null()) {
        chat.insert("max_completion_tokens".own(), m.clone());
    }
    for k in ["temperature", "top_p", "user"] {
        if let Some(v) = req.get(k).filter(|v| !v.is_null()) {
            chat.insert(k.into(), v.clone());
        }
    }
    if let Some(e) = req.get("reasoning").and_then(|r| r.get("effort")).filter(|e| !e.is_null()) {
        chat.insert("reasoning_effort".own(), e.clone());
    }
    let format = req.get("text").and_then(|t| t.get("format")).cloned().unwrap_or_default();
    match format.get("type").and_then(Value::as_str) {
        None | Some("text") => {}
        Some("json_object") => {
            chat.insert("response_format".own(), obj! {"type" => "json_object"});
        }
        Some("json_schema") => {
            let f = &format;
            let mut schema = obj! {
                "name" => f.get("name").cloned().unwrap_or_else(|| ToTree::to_tree(&"response")),
                "schema" => f.get("schema").cloned().unwrap_or_default(),
            };
            for k in ["strict", "description"] {
                if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
                    schema[k] = v.clone();
                }
            }
            chat.insert("response_format".own(), obj! {"type" => "json_schema", "json_schema" = schema});
        }
        Some(other) => return Err(invalid("text", &format!("Unknown `text.format.type` {other:?}."))),
    }
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        chat.insert("stream".own(), ToTree::to_tree(&true));
        chat.insert("stream_options".own(), obj! {"include_usage" => true});
    }
    let mut echo = Map::new();
    echo.insert("tools".own(), tools);
    echo.insert("tool_choice".own(), tool_choice);
    echo.insert("parallel_tool_calls".own(), ToTree::to_tree(&parallel));
    for k in ["instructions", "max_output_tokens", "temperature", "top_p", "metadata", "text", "store", "user"] {
        echo.insert(k.into(), req.get(k).cloned().unwrap_or(Value::Null));
    }
    if echo["metadata"].is_null() {
        echo.insert("metadata".own(), obj! {});
    }
    if echo["text"].is_null() {
        echo.insert("text".own(), obj! {"format" = obj!{"type" => "text"}});
    }
    if echo["store"].is_null() {
        echo.insert("store".own(), ToTree::to_tree(&true));
    }
    Ok((crate::wire::write::to_vec(&chat), Echo { fields: echo }))
}

/// Adds one input item to the chat messages: consecutive function calls join one assistant
/// message (with the text said before them).
fn add_item(messages: &mut Vec<Value>, item: &Value) -> Result<(), GatewayError> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = match item.get("role").and_then(Value::as_str) {
                Some(r @ ("user" | "assistant" | "system")) => r,
                Some("developer") => "system",
                other => return Err(invalid("input", &format!("Unknown message role {other:?}."))),
            };
            let content = item.get("content").cloned().unwrap_or_default();
            let content = if role == "user" { chat_content(&content)? } else { Value::String(text_of(&content)) };
            messages.push(obj! {"role" => role, "content" => content});
        }
        "function_call" => {
            let call = obj! {
                "id" => item.get("call_id").cloned().unwrap_or_default(),
                "type" => "function",
                "function" = obj!{
                    "name" => item.get("name").cloned().unwrap_or_default(),
                    "arguments" => item.get("arguments").cloned().unwrap_or_else(|| ToTree::to_tree(&"{}")),
                },
            };
            match messages.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => {
                            last["tool_calls"] = crate::wire::tree::Value::Array(vec![ToTree::to_tree(&call)]);
                        }
                    }
                }
                _ => messages.push(obj! {
                    "role" => "assistant",
                    "content" = crate::wire::tree::Value::Null,
                    "tool_calls" = crate::wire::tree::Value::Array(vec![ToTree::to_tree(&call)]),
                }),
            }
        }
        "function_call_output" => {
            let output = item.get("output").map(text_of).unwrap_or_default();
            messages.push(obj! {
                "role" => "tool",
                "tool_call_id" => item.get("call_id").cloned().unwrap_or_default(),
                "content" => output,
            });
        }
        "reasoning" => {}
        "item_reference" => {
            return Err(unsupported("input", "An `item_reference` needs a stored item; the gateway stores none."))
        }
        other => return Err(invalid("input", &format!("Unknown input item type {other:?}."))),
    }
    Ok(())
}

/// A fresh id with `prefix`, from `seed` (the request id and the clock): 50 hex digits, as
/// OpenAI's are.
pub fn new_id(prefix: &str, seed: &str, n: u64) -> String {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325 ^ n;
    let mut out = String::from(prefix);
    for round in 0..4u64 {
        for b in seed.bytes().chain(round.to_le_bytes()) {
            x = (x ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        out.put(&format!("{x:016x}"));
    }
    out.truncate(prefix.len() + 50);
    out
}

fn usage_json(u: &Usage) -> Value {
    obj! {"input_tokens" => u.input, "input_tokens_details" = obj!{
        "cached_tokens" => u.cached_input,
        "cache_write_tokens" => u.cache_write,
    }, "output_tokens" => u.output, "output_tokens_details" = obj!{
        "reasoning_tokens" => u.reasoning,
    }, "total_tokens" => u.input + u.output}
}

/// The status a finish reason gives, and the incomplete details.
fn status_of(finish: Option<&str>) -> (&'static str, Value) {
    match finish {
        Some("length") => ("incomplete", obj! {"reason" => "max_output_tokens"}),
        Some("content_filter") => ("incomplete", obj! {"reason" => "content_filter"}),
        _ => ("completed", Value::Null),
    }
}

/// The Response object: the echoed settings, then what was answered.
#[allow(clippy::too_many_arguments)]
fn response_object(
    echo: &Echo,
    id: &str,
    model: &str,
    created: u64,
    status: &str,
    incomplete: Value,
    output: Vec<Value>,
    usage: Option<&Usage>,
) -> Value {
    let mut r = Map::new();
    r.insert("id".own(), ToTree::to_tree(&id));
    r.insert("object".own(), ToTree::to_tree(&"response"));
    r.insert("created_at".own(), ToTree::to_tree(&created));
    r.insert("status".own(), ToTree::to_tree(&status));
    r.insert("completed_at".own(), if status == "in_progress" { Value::Null } else { ToTree::to_tree(&created) });
    r.insert("error".own(), Value::Null);
    r.insert("incomplete_details".own(), incomplete);
    r.insert("model".own(), ToTree::to_tree(&model));
    r.insert("output".own(), Value::Array(output));
    for (k, v) in &echo.fields {
        r.insert(k.own(), v.clone());
    }
    r.insert("truncation".own(), ToTree::to_tree(&"disabled"));
    r.insert("usage".own(), usage.map(usage_json).unwrap_or(Value::Null));
    Value::Object(r)
}

/// A whole unified answer as a Response object, and its usage.
pub fn response_from_chat(body: &[u8], echo: &Echo, seed: &str) -> Result<(Vec<u8>, Option<Usage>), String> {
    let v: Value = crate::wire::from_slice(body).map_err(|e| format!("not a chat completion: {e}"))?;
    let choice = v.pointer("/choices/0").ok_or("a chat completion without choices")?;
    let msg = choice.get("message").cloned().unwrap_or_default();
    let mut output = Vec::new();
    let mut content = Vec::new();
    if let Some(t) = msg.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        content.push(obj! {
            "type" => "output_text",
            "text" => t,
            "annotations" = crate::wire::tree::Value::Array(Vec::new()),
            "logprobs" = crate::wire::tree::Value::Array(Vec::new()),
        });
    }
    if let Some(r) = msg.get("refusal").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        content.push(obj! {"type" => "refusal", "refusal" => r});
    }
    if !content.is_empty() {
        output.push(obj! {
            "id" => new_id("msg_", seed, 0),
            "type" => "message",
            "status" => "completed",
            "role" => "assistant",
            "content" => content,
        });
    }
    for (i, tc) in msg.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        output.push(obj! {
            "id" => new_id("fc_", seed, i as u64 + 1),
            "type" => "function_call",
            "status" => "completed",
            "call_id" => tc.get("id"),
            "name" => tc.pointer("/function/name"),
            "arguments" => tc.pointer("/function/arguments").cloned().unwrap_or_else(|| ToTree::to_tree(&"{}")),
        });
    }
    let usage = v.get("usage").and_then(Usage::from_openai);
    let (status, incomplete) = status_of(choice.get("finish_reason").and_then(Value::as_str));
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let created = v.get("created").and_then(Value::as_u64).unwrap_or(0);
    let r =
        response_object(echo, &new_id("resp_", seed, 0), model, created, status, incomplete, output, usage.as_ref());
    Ok((crate::wire::write::to_vec(&r), usage))
}

/// An open output item of a streamed Response.
#[derive(Debug)]
enum Open {
    Message { id: String, index: usize, text: String },
    Call { id: String, index: usize, call_id: String, name: String, arguments: String },
}

/// A whole Response object replayed as the event sequence that would have brought it:
/// `response.created` and `response.in_progress` (the response `in_progress`, with no output),
/// each output item's events (a message's text as one delta; a function call's arguments as
/// one delta), then `response.completed` (or `.incomplete`) with the whole response, each with
/// its `sequence_number`. `None`: not a Response object.
pub fn stream_from_response(body: &[u8]) -> Option<Vec<u8>> {
    let whole: Value = crate::wire::from_slice(body).ok()?;
    if whole.get("object").and_then(Value::as_str) != Some("response") {
        return None;
    }
    let mut out = Vec::new();
    let mut seq = 0u64;
    let mut emit = |out: &mut Vec<u8>, kind: &str, mut data: Value| {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".own(), ToTree::to_tree(&kind));
            o.insert("sequence_number".own(), ToTree::to_tree(&seq));
        }
        seq += 1;
        crate::wire::sse::named_tree_event(out, Some(kind), &data);
    };
    let mut start = whole.clone();
    start["status"] = ToTree::to_tree(&"in_progress");
    start["output"] = crate::wire::tree::Value::Array(Vec::new());
    start["usage"] = Value::Null;
    emit(&mut out, "response.created", obj! {"response" => start});
    emit(&mut out, "response.in_progress", obj! {"response" => start});
    for (i, item) in whole.get("output").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let mut opened = item.clone();
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                opened["status"] = ToTree::to_tree(&"in_progress");
                opened["content"] = crate::wire::tree::Value::Array(Vec::new());
                emit(&mut out, "response.output_item.added", obj! {"output_index" => i, "item" => opened});
                for (j, part) in item.get("content").and_then(Value::as_array).into_iter().flatten().enumerate() {
                    let text = part.get("text").cloned().unwrap_or(ToTree::to_tree(&""));
                    let mut empty = part.clone();
                    empty["text"] = ToTree::to_tree(&"");
                    let at = obj! {"item_id" => id, "output_index" => i, "content_index" => j};
                    let with = |extra: Value| {
                        let mut v = at.clone();
                        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                            o.extend(e.clone());
                        }
                        v
                    };
                    emit(&mut out, "response.content_part.added", with(obj! {"part" = empty}));
                    emit(
                        &mut out,
                        "response.output_text.delta",
                        with(obj! {"delta" => text, "logprobs" = crate::wire::tree::Value::Array(Vec::new())}),
                    );
                    emit(
                        &mut out,
                        "response.output_text.done",
                        with(obj! {"text" => text, "logprobs" = crate::wire::tree::Value::Array(Vec::new())}),
                    );
                    emit(&mut out, "response.content_part.done", with(obj! {"part" => part}));
                }
            }
            Some("function_call") => {
                let args = item.get("arguments").cloned().unwrap_or(ToTree::to_tree(&""));
                opened["status"] = ToTree::to_tree(&"in_progress");
                opened["arguments"] = ToTree::to_tree(&"");
                emit(&mut out, "response.output_item.added", obj! {"output_index" => i, "item" => opened});
                let at = obj! {"item_id" => id, "output_index" => i};
                let mut delta = at.clone();
                delta["delta"] = args.clone();
                emit(&mut out, "response.function_call_arguments.delta", delta);
                let mut done = at;
                done["arguments"] = args;
                emit(&mut out, "response.function_call_arguments.done", done);
            }
            _ => emit(&mut out, "response.output_item.added", obj! {"output_index" => i, "item" => opened}),
        }
        emit(&mut out, "response.output_item.done", obj! {"output_index" => i, "item" => item});
    }
    let kind = if whole.get("status").and_then(Value::as_str) == Some("incomplete") {
        "response.incomplete"
    } else {
        "response.completed"
    };
    emit(&mut out, kind, obj! {"response" = whole});
    Some(out)
}

/// Collects a Responses event stream into its whole Response object: the one its
/// `response.completed` event carries (a stream that ends otherwise amounts to none).
#[derive(Default)]
pub struct ResponsesCollector {
    parser: sse::Parser,
    response: Option<Value>,
    broken: bool,
    limit: usize,
    seen: usize,
}

impl ResponsesCollector {
    pub fn new(limit: usize) -> ResponsesCollector {
        ResponsesCollector { limit, ..ResponsesCollector::default() }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.seen = self.seen.saturating_add(chunk.len());
        if self.broken || self.seen > self.limit.saturating_mul(8) {
            self.broken = true;
            return;
        }
        let mut events = Vec::new();
        self.parser.push(chunk, &mut events);
        for ev in events {
            let kind = ev.event.clone().unwrap_or_default();
            if kind == "error" || kind == "response.failed" || kind == "response.incomplete" {
                self.broken = true;
                return;
            }
            if kind == "response.completed" {
                self.response = crate::wire::from_str::<Value>(&ev.data).ok().and_then(|v| v.get("response").cloned());
            }
        }
    }

    /// Whether `response.completed` came, or the stream broke: nothing more to collect.
    pub fn ended(&self) -> bool {
        self.broken || self.response.is_some()
    }

    /// The whole Response object, when the stream completed.
    pub fn answer(&self) -> Option<Vec<u8>> {
        if self.broken {
            return None;
        }
        let body = crate::wire::write::to_vec(self.response.as_ref()?);
        (body.len() <= self.limit).then_some(body)
    }

    pub fn usage(&self) -> Option<Usage> {
        self.response.as_ref().and_then(|r| r.get("usage")).and_then(Usage::from_openai)
    }
}

/// Turns a unified (OpenAI chat) chunk stream into the Responses event sequence as it streams:
/// `response.created`, `response.in_progress`, the items' events, then `response.completed`
/// (or `.incomplete`, or `error` and `response.failed`), each with its `sequence_number`.
#[derive(Debug)]
pub struct StreamToResponses {
    parser: sse::Parser,
    echo: Echo,
    id: String,
    seed: String,
    seq: u64,
    started: bool,
    ended: bool,
    model: String,
    created: u64,
    open: Vec<Open>,
    done: Vec<Value>,
    /// Chat tool-call index → position in `open`.
    calls: Vec<(u64, usize)>,
    finish: Option<String>,
    pub usage: Option<Usage>,
}

impl StreamToResponses {
    pub fn new(echo: Echo, seed: &str, created: u64) -> StreamToResponses {
        StreamToResponses {
            parser: sse::Parser::default(),
            echo,
            id: new_id("resp_", seed, 0),
            seed: seed.own(),
            seq: 0,
            started: false,
            ended: false,
            model: String::new(),
            created,
            open: Vec::new(),
            done: Vec::new(),
            calls: Vec::new(),
            finish: None,
            usage: None,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut data: Value) {
        if let Some(o) = data.as_object_mut() {
            o.insert("type".own(), ToTree::to_tree(&kind));
            o.insert("sequence_number".own(), ToTree::to_tree(&self.seq));
        }
        self.seq += 1;
        crate::wire::sse::named_tree_event(out, Some(kind), &data);
    }

    fn snapshot(&self, status: &str, incomplete: Value, output: Vec<Value>, usage: Option<&Usage>) -> Value {
        response_object(&self.echo, &self.id, &self.model, self.created, status, incomplete, output, usage)
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = self.snapshot("in_progress", Value::Null, Vec::new(), None);
        self.emit(out, "response.created", obj! {"response" = r});
        let r = self.snapshot("in_progress", Value::Null, Vec::new(), None);
        self.emit(out, "response.in_progress", obj! {"response" = r});
    }

    fn next_index(&self) -> usize {
        self.done.len() + self.open.len()
    }

    /// Closes every open item, in order.
    fn close_all(&mut self, out: &mut Vec<u8>) {
        for item in std::mem::take(&mut self.open) {
            match item {
                Open::Message { id, index, text } => {
                    let part = obj! {
                        "type" => "output_text",
                        "text" => text,
                        "annotations" = crate::wire::tree::Value::Array(Vec::new()),
                        "logprobs" = crate::wire::tree::Value::Array(Vec::new()),
                    };
                    self.emit(
                        out,
                        "response.output_text.done",
                        obj! {
                            "item_id" => id,
                            "output_index" => index,
                            "content_index" => 0u64,
                            "text" => text,
                            "logprobs" = crate::wire::tree::Value::Array(Vec::new()),
                        },
                    );
                    self.emit(
                        out,
                        "response.content_part.done",
                        obj! {"item_id" => id, "output_index" => index, "content_index" => 0u64, "part" => part},
                    );
                    let item = obj! {
                        "id" => id,
                        "type" => "message",
                        "status" => "completed",
                        "role" => "assistant",
                        "content" = crate::wire::tree::Value::Array(vec![ToTree::to_tree(&part)]),
                    };
                    self.emit(out, "response.output_item.done", obj! {"output_index" => index, "item" => item});
                    self.done.push(item);
                }
                Open::Call { id, index, call_id, name, arguments } => {
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        obj! {"item_id" => id, "output_index" => index, "name" => name, "arguments" => arguments},
                    );
                    let item = obj! {
                        "id" => id,
                        "type" => "function_call",
                        "status" => "completed",
                        "call_id" => call_id,
                        "name" => name,
                        "arguments" => arguments,
                    };
                    self.emit(out, "response.output_item.done", obj! {"output_index" => index, "item" => item});
                    self.done.push(item);
                }
            }
        }
        self.calls.clear();
    }

    fn text(&mut self, out: &mut Vec<u8>, delta: &str) {
        if !matches!(self.open.last(), Some(Open::Message { .. })) {
            self.close_all(out);
            let index = self.next_index();
            let id = new_id("msg_", &self.seed, index as u64);
            self.emit(
                out,
                "response.output_item.added",
                obj! {
                    "output_index" => index,
                    "item" = obj!{
                        "id" => id,
                        "type" => "message",
                        "status" => "in_progress",
                        "role" => "assistant",
                        "content" = crate::wire::tree::Value::Array(Vec::new()),
                    },
                },
            );
            self.emit(
                out,
                "response.content_part.added",
                obj! {
                    "item_id" => id,
                    "output_index" => index,
                    "content_index" => 0u64,
                    "part" = obj!{
                        "type" => "output_text",
                        "text" => "",
                        "annotations" = crate::wire::tree::Value::Array(Vec::new()),
                        "logprobs" = crate::wire::tree::Value::Array(Vec::new()),
                    },
                },
            );
            self.open.push(Open::Message { id, index, text: String::new() });
        }
        let Some(Open::Message { id, index, text }) = self.open.last_mut() else { return };
        text.put(delta);
        let data = obj! {
            "item_id" => id,
            "output_index" => index,
            "content_index" => 0u64,
            "delta" => delta,
            "logprobs" = crate::wire::tree::Value::Array(Vec::new()),
        };
        self.emit(out, "response.output_text.delta", data);
    }

    fn tool_call(&mut self, out: &mut Vec<u8>, tc: &Value) {
        let n = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
        let known = self.calls.iter().find(|(i, _)| *i == n).map(|(_, pos)| *pos);
        let pos = match known {
            Some(p) => p,
            None => {
                // A new call: the message before it is complete.
                if matches!(self.open.last(), Some(Open::Message { .. })) {
                    self.close_all(out);
                }
                let index = self.next_index();
                let id = new_id("fc_", &self.seed, index as u64);
                let call_id = tc.get("id").and_then(Value::as_str).unwrap_or_default().own();
                let name = tc.pointer("/function/name").and_then(Value::as_str).unwrap_or_default().own();
                self.emit(
                    out,
                    "response.output_item.added",
                    obj! {
                        "output_index" => index,
                        "item" = obj!{
                            "id" => id,
                            "type" => "function_call",
                            "status" => "in_progress",
                            "call_id" => call_id,
                            "name" => name,
                            "arguments" => "",
                        },
                    },
                );
                self.open.push(Open::Call { id, index, call_id, name, arguments: String::new() });
                self.calls.push((n, self.open.len() - 1));
                self.open.len() - 1
            }
        };
        let fragment = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
        if fragment.is_empty() {
            return;
        }
        if let Some(Open::Call { id, index, arguments, .. }) = self.open.get_mut(pos) {
            arguments.put(fragment);
            let data = obj! {"item_id" => id, "output_index" => index, "delta" => fragment};
            self.emit(out, "response.function_call_arguments.delta", data);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.start(out);
        self.close_all(out);
        self.ended = true;
        let (status, incomplete) = status_of(self.finish.as_deref());
        let r = self.snapshot(status, incomplete, self.done.clone(), self.usage.as_ref());
        let kind = if status == "completed" { "response.completed" } else { "response.incomplete" };
        self.emit(out, kind, obj! {"response" = r});
    }

    fn fail(&mut self, out: &mut Vec<u8>, error: &Value) {
        self.start(out);
        let code =
            error.get("code").cloned().filter(|c| !c.is_null()).unwrap_or_else(|| ToTree::to_tree(&"server_error"));
        let message =
            error.get("message").cloned().unwrap_or_else(|| ToTree::to_tree(&"The provider's stream failed."));
        self.emit(out, "error", obj! {"code" => code, "message" => message, "param" = crate::wire::tree::Value::Null});
        self.ended = true;
        let mut r = self.snapshot("failed", Value::Null, self.done.clone(), self.usage.as_ref());
        r["error"] = obj! {"code" => code, "message" => message};
        self.emit(out, "response.failed", obj! {"response" = r});
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut events = Vec::new();
        self.parser.push(chunk, &mut events);
        let mut out = Vec::new();
        for ev in events {
            if self.ended {
                break;
            }
            if ev.data == "[DONE]" {
                self.end(&mut out);
                continue;
            }
            let Ok(v) = crate::wire::from_str::<Value>(&ev.data) else { continue };
            if let Some(e) = v.get("error") {
                self.fail(&mut out, e);
                continue;
            }
            if self.model.is_empty() {
                self.model = v.get("model").and_then(Value::as_str).unwrap_or_default().own();
            }
            self.start(&mut out);
            if let Some(u) = v.get("usage").and_then(Usage::from_openai) {
                self.usage = Some(u);
            }
            let Some(choice) = v.pointer("/choices/0") else { continue };
            if let Some(t) = choice.pointer("/delta/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text(&mut out, t);
            }
            for tc in choice.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                self.tool_call(&mut out, tc);
            }
            if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(f.own());
            }
        }
        out
    }

    /// At the end of the stream: a stream that ended without its end marker failed.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.ended {
            if self.finish.is_some() {
                self.end(&mut out);
            } else {
                self.fail(
                    &mut out,
                    &obj! {"code" => "server_error", "message" => "The provider's stream ended early."},
                );
            }
        }
        out
    }
}

impl_translate!(StreamToResponses);

#[cfg(test)]
mod tests;
