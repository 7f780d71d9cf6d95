//! Translation between the unified request (OpenAI chat completions) and Anthropic Messages.
//!
//! Documented approximations: `system`/`developer` messages anywhere become one top-level
//! system prompt (order kept); `temperature` above 1 is clamped to 1 (Anthropic's maximum;
//! the typed request keeps the caller's value up to OpenAI's 2 for Gemini, which takes it);
//! a message `name` is dropped; `response_format` `json_schema` becomes `output_config.format`
//! (structured outputs) and `json_object`, which Anthropic has no form of, is left to the
//! gateway's output check. `n > 1`, audio and file parts are refused with a 400.

use crate::text::{Put, PutBytes, Text};
use std::borrow::Cow;

use crate::wire::read::Raw;
use crate::wire::tree::Value;

use crate::error::GatewayError;
use crate::provider::Whole;
use crate::wire::chat::{completion_id, Answer, ToolCall};
use crate::wire::facts::AnswerFacts;
use crate::wire::sse;
use crate::wire::usage::Usage;
use crate::wire::write::{to_object, Members, WriteJson};
use crate::wire::{obj, ToTree};

pub const API_VERSION: &str = "2023-06-01";

fn unsupported(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", message).with_param(param)
}

// ---------------------------------------------------------------------------------------------
// The unified request (OpenAI chat), read borrowed: strings are borrowed from the caller's bytes
// where they hold no escapes, and what passes through unchanged (a tool's schema, `top_p`, ids)
// stays raw JSON.

struct ChatRequest<'a> {
    messages: Option<Raw<'a>>,
    n: Option<Raw<'a>>,
    max_completion_tokens: Option<Raw<'a>>,
    max_tokens: Option<Raw<'a>>,
    temperature: Option<Raw<'a>>,
    top_p: Option<Raw<'a>>,
    stop: Option<Raw<'a>>,
    stream: Option<Raw<'a>>,
    tools: Option<Raw<'a>>,
    tool_choice: Option<Raw<'a>>,
    parallel_tool_calls: Option<Raw<'a>>,
    user: Option<Raw<'a>>,
    response_format: Option<Raw<'a>>,
    seed: Option<Raw<'a>>,
    presence_penalty: Option<Raw<'a>>,
    frequency_penalty: Option<Raw<'a>>,
}
crate::wire::object::from_object!(ChatRequest<'a> {
    messages: "messages" [],
    n: "n" [],
    max_completion_tokens: "max_completion_tokens" [],
    max_tokens: "max_tokens" [],
    temperature: "temperature" [],
    top_p: "top_p" [],
    stop: "stop" [],
    stream: "stream" [],
    tools: "tools" [],
    tool_choice: "tool_choice" [],
    parallel_tool_calls: "parallel_tool_calls" [],
    user: "user" [],
    response_format: "response_format" [],
    seed: "seed" [],
    presence_penalty: "presence_penalty" [],
    frequency_penalty: "frequency_penalty" [],
});

/// `response_format`, as far as the translations read it.
struct ResponseFormat<'a> {
    kind: Option<Raw<'a>>,
    json_schema: Option<JsonSchemaFormat<'a>>,
}
crate::wire::object::from_object!(ResponseFormat<'a> {
    kind: "type" [],
    json_schema: "json_schema" [],
});

struct JsonSchemaFormat<'a> {
    schema: Option<Raw<'a>>,
}
crate::wire::object::from_object!(JsonSchemaFormat<'a> {
    schema: "schema" [],
});

struct ChatMessage<'a> {
    role: Option<Raw<'a>>,
    content: Option<Raw<'a>>,
    tool_calls: Option<Raw<'a>>,
    tool_call_id: Option<Raw<'a>>,
}
crate::wire::object::from_object!(ChatMessage<'a> {
    role: "role" [],
    content: "content" [],
    tool_calls: "tool_calls" [],
    tool_call_id: "tool_call_id" [],
});

struct Part<'a> {
    kind: Option<Raw<'a>>,
    text: Option<Raw<'a>>,
    refusal: Option<Raw<'a>>,
    image_url: Option<ImageUrl<'a>>,
}
crate::wire::object::from_object!(Part<'a> {
    kind: "type" [],
    text: "text" [],
    refusal: "refusal" [],
    image_url: "image_url" [],
});

struct ImageUrl<'a> {
    url: Option<Raw<'a>>,
}
crate::wire::object::from_object!(ImageUrl<'a> {
    url: "url" [],
});

struct ChatToolCall<'a> {
    id: Option<Raw<'a>>,
    function: Option<ChatFunction<'a>>,
}
crate::wire::object::from_object!(ChatToolCall<'a> {
    id: "id" [],
    function: "function" [],
});

struct ChatFunction<'a> {
    name: Option<Raw<'a>>,
    arguments: Option<Raw<'a>>,
    description: Option<Raw<'a>>,
    parameters: Option<Raw<'a>>,
}
crate::wire::object::from_object!(ChatFunction<'a> {
    name: "name" [],
    arguments: "arguments" [],
    description: "description" [],
    parameters: "parameters" [],
});

struct ChatTool<'a> {
    kind: Option<Raw<'a>>,
    function: Option<ChatFunction<'a>>,
}
crate::wire::object::from_object!(ChatTool<'a> {
    kind: "type" [],
    function: "function" [],
});

/// A raw JSON value as a string, when it is one (escapes decoded; borrowed when there are none).
pub(crate) fn raw_str<'a>(v: Option<Raw<'a>>) -> Option<Cow<'a, str>> {
    let v = v?;
    if !v.get().starts_with('"') {
        return None;
    }
    crate::wire::from_str::<Cow<'a, str>>(v.get()).ok()
}

#[inline]
fn raw_u64(v: Option<Raw<'_>>) -> Option<u64> {
    v.and_then(|v| v.get().int_as())
}

fn raw_f64(v: Option<Raw<'_>>) -> Option<f64> {
    // Read as the JSON reader reads a number (its grammar checked, correctly rounded).
    v.and_then(|v| crate::wire::from_str::<f64>(v.get()).ok()).filter(|f| f.is_finite())
}

fn raw_bool(v: Option<Raw<'_>>) -> Option<bool> {
    match v.map(Raw::get) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// A raw value as an array of `T`, when it is an array.
fn raw_array<'a, T: crate::wire::read::ReadJson<'a>>(v: Option<Raw<'a>>) -> Option<Vec<T>> {
    let v = v?;
    if !v.get().starts_with('[') {
        return None;
    }
    crate::wire::from_str(v.get()).ok()
}

fn invalid(message: &str) -> GatewayError {
    GatewayError::bad_request("invalid_value", message.own()).with_param("messages")
}

/// The input schema of a function tool that gives no `parameters`.
const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

// ---------------------------------------------------------------------------------------------
// The Anthropic Messages request, as the gateway writes it.

/// An Anthropic Messages request.
pub struct MessagesRequest<'a> {
    pub model: String,
    pub max_tokens: u64,
    pub messages: Vec<Turn<'a>>,
    pub system: Vec<Block<'a>>,
    /// The caller's temperature, within OpenAI's 0-2; each provider caps it at its own maximum
    /// when writing ([`ANTHROPIC_MAX_TEMPERATURE`] for Anthropic and Bedrock).
    pub temperature: Option<f64>,
    pub top_p: Option<Raw<'a>>,
    pub stop_sequences: Option<StopSequences<'a>>,
    pub stream: Option<bool>,
    pub tools: Option<Vec<ToolDef<'a>>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    pub metadata: Option<RequestMetadata<'a>>,
    /// Structured outputs: the caller's `response_format` `json_schema`.
    pub output_config: Option<OutputConfig<'a>>,
    /// The caller asked for JSON (`response_format` `json_object` or `json_schema`). Anthropic
    /// has no JSON mode beyond a schema (the gateway's output check stands for `json_object`);
    /// Gemini is asked for `application/json`. Not written.
    pub json: bool,
    /// What Gemini takes and Anthropic has no form of (not written here): the caller's `seed`
    /// (within Gemini's 32 bits) and `presence_penalty` and `frequency_penalty` (numbers).
    pub seed: Option<i32>,
    pub presence_penalty: Option<Raw<'a>>,
    pub frequency_penalty: Option<Raw<'a>>,
}
to_object!(MessagesRequest<'a> {
    model: "model" [],
    max_tokens: "max_tokens" [],
    messages: "messages" [],
    system: "system" [skip_empty],
    temperature: "temperature" [skip_none],
    top_p: "top_p" [skip_none],
    stop_sequences: "stop_sequences" [skip_none],
    stream: "stream" [skip_none],
    tools: "tools" [skip_none],
    tool_choice: "tool_choice" [skip_none],
    metadata: "metadata" [skip_none],
    output_config: "output_config" [skip_none],
});

/// `output_config`: the answer's JSON Schema (`format`).
pub struct OutputConfig<'a> {
    pub format: SchemaFormat<'a>,
}
to_object!(OutputConfig<'a> { format: "format" [] });

pub struct SchemaFormat<'a> {
    pub kind: &'static str,
    pub schema: Raw<'a>,
}
to_object!(SchemaFormat<'a> { kind: "type" [], schema: "schema" [] });

pub struct Turn<'a> {
    pub role: &'static str,
    pub content: Vec<Block<'a>>,
}
to_object!(Turn<'a> { role: "role" [], content: "content" [] });

/// A content block, written with its `type` first.
pub enum Block<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Image {
        source: ImageSource<'a>,
    },
    /// An id or name the caller left out is `null`, as the caller's request had it.
    ToolUse {
        id: Option<Raw<'a>>,
        name: Option<Raw<'a>>,
        /// The arguments' JSON text (checked to be JSON), written as it is.
        input: Box<str>,
    },
    ToolResult {
        tool_use_id: Option<Raw<'a>>,
        content: Cow<'a, str>,
    },
}

impl WriteJson for Block<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut m = Members::open(out);
        match self {
            Block::Text { text } => {
                m.member(r#""type":"#, &"text");
                m.member(r#""text":"#, text);
            }
            Block::Image { source } => {
                m.member(r#""type":"#, &"image");
                m.member(r#""source":"#, source);
            }
            Block::ToolUse { id, name, input } => {
                m.member(r#""type":"#, &"tool_use");
                m.member(r#""id":"#, id);
                m.member(r#""name":"#, name);
                m.member_with(r#""input":"#, |out| out.put(input.as_bytes()));
            }
            Block::ToolResult { tool_use_id, content } => {
                m.member(r#""type":"#, &"tool_result");
                m.member(r#""tool_use_id":"#, tool_use_id);
                m.member(r#""content":"#, content);
            }
        }
        m.close();
    }
}

pub enum ImageSource<'a> {
    Base64 { media_type: Cow<'a, str>, data: Cow<'a, str> },
    Url { url: Cow<'a, str> },
}

impl WriteJson for ImageSource<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut m = Members::open(out);
        match self {
            ImageSource::Base64 { media_type, data } => {
                m.member(r#""type":"#, &"base64");
                m.member(r#""media_type":"#, media_type);
                m.member(r#""data":"#, data);
            }
            ImageSource::Url { url } => {
                m.member(r#""type":"#, &"url");
                m.member(r#""url":"#, url);
            }
        }
        m.close();
    }
}

/// `stop`: one string, or the caller's array as given.
pub enum StopSequences<'a> {
    One([Cow<'a, str>; 1]),
    Many(Raw<'a>),
    /// What is left of a list once the blank ones are left out ([`StopSequences::not_blank`]).
    Kept(Vec<Cow<'a, str>>),
}

impl WriteJson for StopSequences<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            StopSequences::One(one) => one.write_json(out),
            StopSequences::Many(raw) => raw.write_json(out),
            StopSequences::Kept(kept) => kept.write_json(out),
        }
    }
}

impl<'a> StopSequences<'a> {
    /// The sequences that are not empty or whitespace alone, `None` when none is left. Claude
    /// refuses a blank one with a 400 ("stop_sequences: each stop sequence must contain
    /// non-whitespace"), and OpenAI callers send `"\n"` often: it is left out (the answer may
    /// then run past a line end the caller would have stopped at).
    pub fn not_blank(self) -> Option<StopSequences<'a>> {
        let blank = |s: &str| s.trim().is_empty();
        match self {
            StopSequences::One([one]) if blank(&one) => None,
            StopSequences::Many(raw) => {
                let all: Vec<Cow<'a, str>> = raw_array(Some(raw)).unwrap_or_default();
                if !all.iter().any(|s| blank(s)) {
                    return Some(StopSequences::Many(raw));
                }
                let kept: Vec<Cow<'a, str>> = all.into_iter().filter(|s| !blank(s)).collect();
                (!kept.is_empty()).then_some(StopSequences::Kept(kept))
            }
            StopSequences::Kept(kept) => {
                let kept: Vec<Cow<'a, str>> = kept.into_iter().filter(|s| !blank(s)).collect();
                (!kept.is_empty()).then_some(StopSequences::Kept(kept))
            }
            other => Some(other),
        }
    }
}

pub struct ToolDef<'a> {
    pub name: Option<Raw<'a>>,
    pub description: Option<Raw<'a>>,
    pub input_schema: Raw<'a>,
}
to_object!(ToolDef<'a> {
    name: "name" [],
    description: "description" [skip_none],
    input_schema: "input_schema" [],
});

pub struct ToolChoice<'a> {
    pub kind: &'static str,
    pub name: Option<Raw<'a>>,
    pub disable_parallel_tool_use: Option<bool>,
}
to_object!(ToolChoice<'a> {
    kind: "type" [],
    name: "name" [skip_none],
    disable_parallel_tool_use: "disable_parallel_tool_use" [skip_none],
});

pub struct RequestMetadata<'a> {
    pub user_id: Cow<'a, str>,
}
to_object!(RequestMetadata<'a> { user_id: "user_id" [] });

/// Text of an OpenAI content value that may only hold text (null, a string, or text parts).
fn text_of<'a>(content: Option<Raw<'a>>) -> Result<Cow<'a, str>, GatewayError> {
    let Some(raw) = content.filter(|c| c.get() != "null") else { return Ok(Cow::Borrowed("")) };
    if let Some(s) = raw_str(Some(raw)) {
        return Ok(s);
    }
    let parts: Vec<Part<'a>> =
        raw_array(Some(raw)).ok_or_else(|| invalid("message content must be a string or an array"))?;
    let mut out = String::new();
    for p in &parts {
        match (raw_str(p.kind).as_deref(), raw_str(p.text)) {
            (Some("text"), Some(t)) => out.put(&t),
            (Some("refusal"), _) => out.put(&raw_str(p.refusal).unwrap_or_default()),
            _ => return Err(unsupported("messages", "only text parts are allowed here")),
        }
    }
    Ok(Cow::Owned(out))
}

/// `part`, a slice of `s` (a string borrowed from the caller's bytes, or decoded from escapes):
/// its parts stay borrowed when it is.
fn sub_str<'a>(s: &Cow<'a, str>, part: &str) -> Cow<'a, str> {
    match s {
        Cow::Borrowed(b) => {
            // `part` is a slice of `b`: borrow the same bytes for the caller's lifetime.
            let start = (part.as_ptr() as usize).saturating_sub(b.as_ptr() as usize);
            b.get(start..start + part.len()).map_or_else(|| Cow::Owned(part.own()), Cow::Borrowed)
        }
        Cow::Owned(_) => Cow::Owned(part.own()),
    }
}

fn image_block<'a>(part: &Part<'a>) -> Result<Block<'a>, GatewayError> {
    let url = raw_str(part.image_url.as_ref().and_then(|i| i.url)).unwrap_or_default();
    if let Some(rest) = url.strip_prefix("data:") {
        let at = rest.find_str(";base64,").ok_or_else(|| invalid("image data URLs must be base64"))?;
        let (media, data) = (rest.get(..at).unwrap_or_default(), rest.get(at + 8..).unwrap_or_default());
        if !matches!(media, "image/jpeg" | "image/png" | "image/gif" | "image/webp") {
            return Err(unsupported("messages", format!("image type {media} is not supported by this provider")));
        }
        let (media_type, data) = (sub_str(&url, media), sub_str(&url, data));
        Ok(Block::Image { source: ImageSource::Base64 { media_type, data } })
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(Block::Image { source: ImageSource::Url { url } })
    } else {
        Err(invalid("image_url.url must be an http(s) or data URL"))
    }
}

/// A user message's blocks. Empty text is left out: Anthropic ("text content blocks must be
/// non-empty") and Converse refuse an empty text block, and a message of nothing but empty text
/// is no turn at all.
fn user_blocks<'a>(content: Option<Raw<'a>>) -> Result<Vec<Block<'a>>, GatewayError> {
    if let Some(s) = raw_str(content) {
        return Ok(if s.is_empty() { Vec::new() } else { vec![Block::Text { text: s }] });
    }
    let parts: Vec<Part<'a>> =
        raw_array(content).ok_or_else(|| invalid("user content must be a string or an array"))?;
    parts
        .iter()
        .filter_map(|p| match raw_str(p.kind).as_deref() {
            Some("text") => raw_str(p.text).filter(|t| !t.is_empty()).map(|text| Ok(Block::Text { text })),
            Some("image_url") => Some(image_block(p)),
            Some(other) => Some(Err(unsupported(
                "messages",
                format!("content part type `{other}` is not supported by this provider"),
            ))),
            None => Some(Err(invalid("content part without a type"))),
        })
        .collect()
}

fn push_turn<'a>(out: &mut Vec<Turn<'a>>, role: &'static str, blocks: Vec<Block<'a>>) {
    if blocks.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => out.push(Turn { role, content: blocks }),
    }
}

/// A typed request's output bound and sampling settings, in the camel-case names Gemini
/// (`generationConfig`) and Bedrock (`inferenceConfig`) share; `max_key` names the bound, and
/// the temperature is capped at `max_temperature`.
pub(crate) fn sampling(
    a: &MessagesRequest,
    max_key: &str,
    max_temperature: f64,
) -> crate::wire::tree::Map<String, crate::wire::tree::Value> {
    let mut m = crate::wire::tree::Map::new();
    m.insert(max_key.into(), ToTree::to_tree(&a.max_tokens));
    if let Some(t) = a.temperature {
        m.insert("temperature".own(), ToTree::to_tree(&t.min(max_temperature)));
    }
    if let Some(p) = a.top_p {
        m.insert("topP".own(), tree(p));
    }
    if let Some(s) = &a.stop_sequences {
        m.insert(
            "stopSequences".own(),
            match s {
                StopSequences::One([one]) => crate::wire::tree::Value::Array(vec![ToTree::to_tree(&one)]),
                StopSequences::Many(many) => tree(*many),
                StopSequences::Kept(kept) => {
                    crate::wire::tree::Value::Array(kept.iter().map(|s| ToTree::to_tree(&s.as_ref())).collect())
                }
            },
        );
    }
    m
}

/// A raw JSON value of the caller's as a tree, for the providers whose requests are built as
/// trees (Gemini, Bedrock).
pub(crate) fn tree(raw: Raw<'_>) -> crate::wire::tree::Value {
    text_tree(raw.get())
}

/// The tree of JSON text known to be JSON (a tool call's checked arguments).
pub(crate) fn text_tree(text: &str) -> crate::wire::tree::Value {
    crate::wire::from_str(text).unwrap_or_default()
}

/// [`tree`] of a value that may be absent (`null`, as serialising it would have written).
pub(crate) fn opt_tree(raw: Option<Raw<'_>>) -> crate::wire::tree::Value {
    raw.map(tree).unwrap_or_default()
}

/// Anthropic's (and Bedrock's `inferenceConfig`) largest `temperature`; OpenAI's and Gemini's is 2.
pub const ANTHROPIC_MAX_TEMPERATURE: f64 = 1.0;

/// The request Anthropic is sent: [`request_from_openai`] with the temperature capped at 1, and
/// `top_p` left out when a temperature is given too (see [`one_of_temperature_and_top_p`]).
pub fn anthropic_request_from_openai<'a>(
    body: &'a [u8],
    model: &str,
    max_tokens_default: u64,
) -> Result<MessagesRequest<'a>, GatewayError> {
    let mut req = request_from_openai(body, model, max_tokens_default)?;
    req.temperature = req.temperature.map(|t| t.min(ANTHROPIC_MAX_TEMPERATURE));
    if req.temperature.is_some() && req.top_p.is_some() && one_of_temperature_and_top_p(model) {
        req.top_p = None;
    }
    req.stop_sequences = req.stop_sequences.and_then(StopSequences::not_blank);
    req.trim_final_assistant_text();
    Ok(req)
}

impl MessagesRequest<'_> {
    /// Claude refuses a final assistant turn (a prefill) whose text ends in whitespace
    /// ("final assistant content cannot end with trailing whitespace"): the whitespace goes, and
    /// the turn with it when nothing else is left of it.
    pub fn trim_final_assistant_text(&mut self) {
        let Some(last) = self.messages.last_mut().filter(|t| t.role == "assistant") else { return };
        if let Some(Block::Text { text }) = last.content.last_mut() {
            let kept = text.trim_end().len();
            if kept < text.len() {
                *text = Cow::Owned(text.get(..kept).unwrap_or_default().to_owned());
            }
            if kept == 0 {
                last.content.pop();
            }
        }
        if last.content.is_empty() {
            self.messages.pop();
        }
    }
}

/// Whether a Claude model takes only one of `temperature` and `top_p`: since Claude Opus 4.1,
/// Anthropic (and Bedrock for its Claude models) refuses both with 400 "`temperature` and
/// `top_p` cannot both be specified for this model", while OpenAI callers often send both
/// (`top_p` 1 with a temperature, as many tools do). The temperature is kept. Every Claude
/// model but the 3.x and 4.0 ones (which take both) is taken to be such a model, so that a new
/// one is covered; a name that is not a Claude model's (`model` is the step's own) keeps both.
pub fn one_of_temperature_and_top_p(model: &str) -> bool {
    let Some(at) = model.find_str("claude-") else { return false };
    let name = model.get(at..).unwrap_or_default();
    let older = ["claude-3", "claude-instant", "claude-2", "claude-sonnet-4-0", "claude-opus-4-0"];
    let dated_4_0 = ["claude-sonnet-4-2025", "claude-opus-4-2025"];
    !older.iter().chain(&dated_4_0).any(|p| name.starts_with(p))
}

/// Builds the typed Messages request for `model` from a unified (OpenAI) request's bytes, the
/// pivot of the Anthropic, Gemini and Bedrock translations; its temperature is the caller's.
pub fn request_from_openai<'a>(
    body: &'a [u8],
    model: &str,
    max_tokens_default: u64,
) -> Result<MessagesRequest<'a>, GatewayError> {
    let req: ChatRequest<'a> = crate::wire::from_slice(body).map_err(crate::provider::invalid_json)?;
    let messages: Vec<ChatMessage<'a>> =
        raw_array(req.messages).ok_or_else(|| invalid("`messages` must be an array"))?;
    if raw_u64(req.n).is_some_and(|n| n > 1) {
        return Err(unsupported("n", "n > 1 is not supported by this provider"));
    }
    let mut system = Vec::new();
    let mut out: Vec<Turn<'a>> = Vec::new();
    for m in &messages {
        let role = raw_str(m.role).unwrap_or_default();
        match role.as_ref() {
            "system" | "developer" => {
                let t = text_of(m.content)?;
                if !t.is_empty() {
                    system.push(Block::Text { text: t });
                }
            }
            "user" => push_turn(&mut out, "user", user_blocks(m.content)?),
            "assistant" => {
                let mut blocks = Vec::new();
                let t = text_of(m.content)?;
                if !t.is_empty() {
                    blocks.push(Block::Text { text: t });
                }
                for tc in raw_array::<ChatToolCall<'a>>(m.tool_calls).unwrap_or_default() {
                    let f = tc.function.as_ref();
                    let args = raw_str(f.and_then(|f| f.arguments)).unwrap_or(Cow::Borrowed("{}"));
                    let args = if args.trim().is_empty() { "{}".own() } else { args.into_owned() };
                    let input = crate::wire::from_str::<Raw>(&args).map(|r| Box::from(r.get())).map_err(|_| {
                        GatewayError::bad_request(
                            "invalid_tool_arguments",
                            "tool_calls[].function.arguments is not valid JSON",
                        )
                        .with_param("messages")
                    })?;
                    blocks.push(Block::ToolUse { id: tc.id, name: f.and_then(|f| f.name), input });
                }
                push_turn(&mut out, "assistant", blocks);
            }
            "tool" => {
                let block = Block::ToolResult { tool_use_id: m.tool_call_id, content: text_of(m.content)? };
                push_turn(&mut out, "user", vec![block]);
            }
            other => return Err(invalid(&format!("unknown message role `{other}`"))),
        }
    }
    if out.is_empty() {
        return Err(invalid("at least one user or assistant message is required"));
    }
    let max_tokens =
        raw_u64(req.max_completion_tokens).or_else(|| raw_u64(req.max_tokens)).unwrap_or(max_tokens_default);
    let stop_sequences = match req.stop {
        Some(_) if raw_str(req.stop).is_some() => raw_str(req.stop).map(|s| StopSequences::One([s])),
        Some(a) if a.get().starts_with('[') && raw_array::<Raw>(Some(a)).is_some_and(|v| !v.is_empty()) => {
            Some(StopSequences::Many(a))
        }
        _ => None,
    };
    let tools = match raw_array::<ChatTool<'a>>(req.tools) {
        // An array whose entries are not tool objects: not function tools either.
        None if req.tools.is_some_and(|t| t.get().starts_with('[')) => {
            return Err(unsupported("tools", "only function tools are supported by this provider"))
        }
        None => None,
        Some(list) => {
            let mut defs = Vec::with_capacity(list.len());
            for t in list {
                if raw_str(t.kind).as_deref() != Some("function") {
                    return Err(unsupported("tools", "only function tools are supported by this provider"));
                }
                let f = t.function.as_ref();
                let input_schema = match f.and_then(|f| f.parameters) {
                    Some(p) => p,
                    None => crate::wire::from_str::<Raw<'static>>(EMPTY_SCHEMA)
                        .map_err(|e| GatewayError::bad_request("invalid_value", e.to_string()))?,
                };
                defs.push(ToolDef {
                    name: f.and_then(|f| f.name),
                    description: f.and_then(|f| f.description),
                    input_schema,
                });
            }
            Some(defs)
        }
    };
    let mut tool_choice = match req.tool_choice {
        Some(c) if c.get().starts_with('{') => {
            struct Named<'b> {
                function: Option<ChatFunction<'b>>,
            }
            crate::wire::object::from_object!(Named<'b> {
                function: "function" [],
            });
            match crate::wire::from_str::<Named<'a>>(c.get()).ok().and_then(|n| n.function).and_then(|f| f.name) {
                Some(name) => Some(ToolChoice { kind: "tool", name: Some(name), disable_parallel_tool_use: None }),
                None => {
                    return Err(unsupported("tool_choice", "this tool_choice form is not supported by this provider"))
                }
            }
        }
        c => match raw_str(c).as_deref() {
            Some("auto") => Some(ToolChoice { kind: "auto", name: None, disable_parallel_tool_use: None }),
            Some("none") => Some(ToolChoice { kind: "none", name: None, disable_parallel_tool_use: None }),
            Some("required") => Some(ToolChoice { kind: "any", name: None, disable_parallel_tool_use: None }),
            _ => None,
        },
    };
    if raw_bool(req.parallel_tool_calls) == Some(false) && tools.is_some() {
        tool_choice
            .get_or_insert(ToolChoice { kind: "auto", name: None, disable_parallel_tool_use: None })
            .disable_parallel_tool_use = Some(true);
    }
    // `response_format`: a JSON Schema becomes `output_config.format` (Anthropic's structured
    // outputs); `json_object` has no Anthropic form, and is noted for Gemini's JSON mode.
    let format = req
        .response_format
        .filter(|f| f.get().starts_with('{'))
        .and_then(|f| crate::wire::from_str::<ResponseFormat<'a>>(f.get()).ok());
    let kind = format.as_ref().and_then(|f| raw_str(f.kind));
    let json = matches!(kind.as_deref(), Some("json_object" | "json_schema"));
    let output_config = match (kind.as_deref(), format.and_then(|f| f.json_schema).and_then(|s| s.schema)) {
        (Some("json_schema"), Some(schema)) if schema.get().starts_with('{') => {
            Some(OutputConfig { format: SchemaFormat { kind: "json_schema", schema } })
        }
        _ => None,
    };
    Ok(MessagesRequest {
        model: model.own(),
        max_tokens,
        messages: out,
        system,
        temperature: raw_f64(req.temperature).map(|t| t.clamp(0.0, 2.0)),
        top_p: req.top_p.filter(|p| raw_f64(Some(*p)).is_some()),
        stop_sequences,
        stream: (raw_bool(req.stream) == Some(true)).then_some(true),
        tools,
        tool_choice,
        metadata: raw_str(req.user).map(|u| RequestMetadata { user_id: u }),
        output_config,
        json,
        seed: raw_i32(req.seed),
        presence_penalty: req.presence_penalty.filter(|p| raw_f64(Some(*p)).is_some()),
        frequency_penalty: req.frequency_penalty.filter(|p| raw_f64(Some(*p)).is_some()),
    })
}

/// A raw JSON integer that fits in 32 bits, signed.
fn raw_i32(v: Option<Raw<'_>>) -> Option<i32> {
    let text = v?.get();
    let (negative, digits) = text.strip_prefix('-').map_or((false, text), |d| (true, d));
    let magnitude = i64::try_from(digits.int_as::<u64>()?).ok()?;
    i32::try_from(if negative { -magnitude } else { magnitude }).ok()
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
        cache_write: n("cache_creation_input_tokens"),
        cache_write_1h: u
            .pointer("/cache_creation/ephemeral_1h_input_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .min(n("cache_creation_input_tokens")),
    }
}

/// An Anthropic Messages response, as much of it as the unified answer needs (borrowed).
struct MessagesResponse<'a> {
    id: Option<Cow<'a, str>>,
    model: Option<Cow<'a, str>>,
    content: Option<Vec<AnswerBlock<'a>>>,
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<MessagesUsage>,
}
crate::wire::object::from_object!(MessagesResponse<'a> {
    id: "id" [],
    model: "model" [],
    content: "content" [],
    stop_reason: "stop_reason" [],
    usage: "usage" [],
});

struct AnswerBlock<'a> {
    kind: Cow<'a, str>,
    text: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    input: Option<Raw<'a>>,
}
crate::wire::object::from_object!(AnswerBlock<'a> {
    kind: "type" [required],
    text: "text" [],
    id: "id" [],
    name: "name" [],
    input: "input" [],
});

/// Anthropic's `usage`.
#[derive(Default)]
pub struct MessagesUsage {
    input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    output_tokens_details: Option<ThinkingTokens>,
    cache_creation: Option<CacheCreation>,
}
crate::wire::object::from_object!(MessagesUsage {
    input_tokens: "input_tokens" [],
    cache_creation_input_tokens: "cache_creation_input_tokens" [],
    cache_read_input_tokens: "cache_read_input_tokens" [],
    output_tokens: "output_tokens" [],
    output_tokens_details: "output_tokens_details" [],
    cache_creation: "cache_creation" [],
});

/// The cache writes by how long they are kept. (A reader of its own: as a tree, every answer's
/// usage would build one.)
#[derive(Default)]
struct CacheCreation {
    ephemeral_1h_input_tokens: Option<u64>,
}
crate::wire::object::from_object!(CacheCreation {
    ephemeral_1h_input_tokens: "ephemeral_1h_input_tokens" [],
});

#[derive(Default)]
struct ThinkingTokens {
    thinking_tokens: Option<u64>,
}
crate::wire::object::from_object!(ThinkingTokens {
    thinking_tokens: "thinking_tokens" [],
});

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
            cache_write: self.cache_creation_input_tokens.unwrap_or(0),
            cache_write_1h: self
                .cache_creation
                .as_ref()
                .and_then(|c| c.ephemeral_1h_input_tokens)
                .unwrap_or(0)
                .min(self.cache_creation_input_tokens.unwrap_or(0)),
        }
    }
}

/// Translates a complete Anthropic Messages response into an OpenAI chat completion.
pub fn response_to_openai(body: &[u8], created: u64) -> Result<(Vec<u8>, Usage, AnswerFacts), String> {
    let answer = read_response(body)?;
    Ok((answer.to_bytes(created), answer.usage, answer.facts()))
}

/// A complete Messages response's usage and what it says, read once and not translated (the
/// Messages door's answer from a provider that speaks Messages: it passes as it came).
pub fn read_answer(body: &[u8]) -> Result<(Usage, AnswerFacts), String> {
    let answer = read_response(body)?;
    Ok((answer.usage, answer.facts()))
}

/// A complete Messages response, as the unified answer (borrowed where it can be).
fn read_response(body: &[u8]) -> Result<Answer<'_>, String> {
    let r: MessagesResponse<'_> =
        crate::wire::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in r.content.into_iter().flatten() {
        match block.kind.as_ref() {
            "text" => text.put(block.text.as_deref().unwrap_or("")),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id,
                name: block.name,
                arguments: Cow::Borrowed(block.input.map_or("{}", Raw::get)),
            }),
            _ => {}
        }
    }
    Ok(Answer {
        id: completion_id(r.id.as_deref().unwrap_or("")),
        model: r.model,
        text,
        tool_calls,
        finish_reason: finish_reason(r.stop_reason.as_deref().unwrap_or("end_turn")),
        usage: r.usage.unwrap_or_default().usage(),
    })
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
    let v: Value = crate::wire::from_slice(body).unwrap_or(Value::Null);
    let atype = v.pointer("/error/type").and_then(Value::as_str).unwrap_or("api_error");
    let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("The provider returned an error.");
    let (kind, code) = error_kind(atype);
    let status = if status == 529 { 503 } else { status };
    let out = obj! {"error" = obj!{
        "message" => message,
        "type" => kind,
        "param" = crate::wire::tree::Value::Null,
        "code" => code,
    }};
    (status, crate::wire::write::to_vec(&out))
}

/// A `content_block_delta` event, read borrowed: nearly every event of a stream is one, and
/// it is translated without a JSON tree either way (an event this does not read, or reads
/// otherwise than the tree would, goes the tree's way: see `StreamTranslator::push`).
struct DeltaEvent<'a> {
    kind: Option<Cow<'a, str>>,
    index: Option<u64>,
    delta: DeltaPart<'a>,
}
crate::wire::object::from_object!(DeltaEvent<'a> {
    kind: "type" [],
    index: "index" [],
    delta: "delta" [required],
});

struct DeltaPart<'a> {
    kind: Cow<'a, str>,
    text: Option<Cow<'a, str>>,
    partial_json: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(DeltaPart<'a> {
    kind: "type" [required],
    text: "text" [],
    partial_json: "partial_json" [],
});

/// Turns an Anthropic SSE stream into OpenAI chat-completion chunks as it streams.
#[derive(Debug)]
pub struct StreamTranslator {
    parser: sse::Parser,
    /// What follows the delta in every chunk (finish reason, index, created, id, model, usage),
    /// written once the stream says its id and model.
    tail: Vec<u8>,
    id: String,
    model: Value,
    created: u64,
    include_usage: bool,
    usage: Usage,
    stop_reason: Option<String>,
    tool_index: crate::provider::ToolIndex,
    finished: bool,
}

impl StreamTranslator {
    pub fn new(created: u64, include_usage: bool) -> Self {
        Self {
            parser: sse::Parser::default(),
            tail: Vec::new(),
            id: "chatcmpl-".own(),
            model: Value::Null,
            created,
            include_usage,
            usage: Usage::default(),
            stop_reason: None,
            tool_index: crate::provider::ToolIndex::default(),
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
        let finish = finish.map_or(Value::Null, |f| Value::String(f.to_owned()));
        crate::wire::chat::chunk_event(out, (&self.id, self.created, &self.model), delta, finish, self.include_usage);
    }

    /// [`StreamTranslator::chunk`] for a delta written by `delta`, without a tree: the same
    /// members in the same order (a tree's, sorted by name).
    fn chunk_with(&mut self, out: &mut Vec<u8>, delta: impl FnOnce(&mut Vec<u8>)) {
        if self.tail.is_empty() {
            let mut t = Vec::with_capacity(160);
            t.put(b",\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":");
            crate::wire::write::unsigned(&mut t, self.created);
            t.put(b",\"id\":");
            crate::wire::write::string(&mut t, &self.id);
            t.put(b",\"model\":");
            self.model.write_json(&mut t);
            t.put(b",\"object\":\"chat.completion.chunk\"");
            if self.include_usage {
                t.put(b",\"usage\":null");
            }
            t.put(b"}\n\n");
            self.tail = t;
        }
        out.put(b"data: {\"choices\":[{\"delta\":");
        delta(out);
        out.put(&self.tail);
    }

    /// A `content_block_delta` event, translated without a tree; `false` when it is not one
    /// this reads (the tree's way then translates it).
    fn delta(&mut self, out: &mut Vec<u8>, event: Option<&str>, data: &str) -> bool {
        // An event named otherwise is not parsed twice (the tree's way reads its type).
        if event.is_some_and(|e| e != "content_block_delta") {
            return false;
        }
        let Ok(d) = crate::wire::from_str::<DeltaEvent>(data) else { return false };
        if d.kind.as_deref().or(event) != Some("content_block_delta") {
            return false;
        }
        match d.delta.kind.as_ref() {
            "text_delta" => {
                let t = d.delta.text.as_deref().unwrap_or("");
                self.chunk_with(out, |o| {
                    o.put(b"{\"content\":");
                    crate::wire::write::string(o, t);
                    o.push(b'}');
                });
            }
            "input_json_delta" => {
                let p = d.delta.partial_json.as_deref().unwrap_or("");
                let idx = d.index.unwrap_or(0);
                if let (false, Some(k)) = (p.is_empty(), self.tool_index.get(idx)) {
                    self.chunk_with(out, |o| {
                        o.put(b"{\"tool_calls\":[{\"function\":{\"arguments\":");
                        crate::wire::write::string(o, p);
                        o.put(b"},\"index\":");
                        k.write_json(o);
                        o.put(b"}]}");
                    });
                }
            }
            _ => {}
        }
        true
    }

    fn error(&mut self, out: &mut Vec<u8>, kind: &str, message: &str) {
        let (t, code) = error_kind(kind);
        sse::tree_event(
            out,
            &obj! {
                "error" = obj!{"message" => message, "type" => t, "param" = crate::wire::tree::Value::Null, "code" => code},
            },
        );
        self.finished = true;
    }

    /// Feeds a chunk of the provider's stream; returns the bytes to send on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        // (A chunk of content events grows about twofold: OpenAI's chunks are the longer.)
        let mut out = Vec::with_capacity(chunk.len().saturating_mul(2).saturating_add(64));
        let mut parser = std::mem::take(&mut self.parser);
        parser.push_each(chunk, |event, data| self.event(&mut out, event, data));
        self.parser = parser;
        out
    }

    /// One event of the provider's stream.
    fn event(&mut self, out: &mut Vec<u8>, event: Option<&str>, data: &str) {
        if self.finished || self.delta(out, event, data) {
            return;
        }
        let Ok(v) = crate::wire::from_str::<Value>(data) else {
            self.error(out, "api_error", "The provider sent a malformed stream event.");
            return;
        };
        let kind = v.get("type").and_then(Value::as_str).or(event).unwrap_or("");
        match kind {
            "message_start" => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = completion_id(m.get("id").and_then(Value::as_str).unwrap_or(""));
                self.model = m.get("model").cloned().unwrap_or(Value::Null);
                self.tail.clear();
                if let Some(u) = m.get("usage") {
                    self.usage = usage_of(u);
                }
                self.chunk(out, obj! {"role" => "assistant", "content" => ""}, None);
            }
            "content_block_start" => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                if b.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let k = self.tool_index.add(v.get("index").and_then(Value::as_u64).unwrap_or(0));
                    self.chunk(out, crate::wire::chat::tool_call_start(k, b.get("id"), b.get("name")), None);
                }
            }
            "content_block_delta" => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                        self.chunk(out, obj! {"content" => t}, None);
                    }
                    Some("input_json_delta") => {
                        let p = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        let idx = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let (false, Some(k)) = (p.is_empty(), self.tool_index.get(idx)) {
                            self.chunk(
                                out,
                                obj! {
                                    "tool_calls" = crate::wire::tree::Value::Array(vec![obj!{
                                        "index" => k,
                                        "function" = obj!{"arguments" => p},
                                    }]),
                                },
                                None,
                            );
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.own());
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
                self.chunk(out, obj! {}, Some(fr));
                if self.include_usage {
                    crate::wire::chat::usage_event(out, (&self.id, self.created, &self.model), &self.usage);
                }
                out.put(b"data: [DONE]\n\n");
                self.finished = true;
            }
            "error" => {
                let t = v.pointer("/error/type").and_then(Value::as_str).unwrap_or("api_error").own();
                let m = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("The provider failed mid-stream.")
                    .own();
                self.error(out, &t, &m);
            }
            _ => {}
        }
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
        "/v1/messages".own()
    }

    fn version_header(&self) -> Option<(&'static str, &'static str)> {
        Some(("anthropic-version", API_VERSION))
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("x-api-key", key.own()))
    }

    fn speaks_messages(&self) -> bool {
        true
    }

    fn request(&self, body: &[u8], model: &str, max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError> {
        let req = anthropic_request_from_openai(body, model, max_tokens_default)?;
        Ok((crate::wire::write::to_vec(&req), req.stream == Some(true)))
    }

    fn answer(&self, body: &[u8], _model: &str, now_ms: u64) -> Result<Whole, String> {
        response_to_openai(body, now_ms / 1000).map(|(out, u, f)| (out, Some(u), Some(f)))
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
