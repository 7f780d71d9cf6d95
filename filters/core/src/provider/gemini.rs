//! Google Gemini API (`generateContent`, v1beta). Like Bedrock, the unified request is read into
//! the typed Anthropic request first (which validates and merges turns) and mapped from it part
//! by part; the answer is translated directly into the unified one (`wire::chat`).
//!
//! Documented approximations: image URLs are refused (Gemini takes inline data or uploaded
//! files); tool-call ids are synthesized (unique per answer, see [`call_ids`]; Gemini has none); thought signatures are
//! not carried across turns (a model turn's first function call is sent Gemini's documented
//! stand-in, [`SKIP_THOUGHT_SIGNATURE`]). `seed` and the penalties, which the Anthropic request
//! has no form of, are carried beside it for Gemini (`generationConfig`). Streaming calls use `streamGenerateContent?alt=sse`, translated to
//! OpenAI chunks as they arrive (Gemini sends each function call whole, in one chunk).

use std::borrow::Cow;

use crate::wire::read::Raw;
use crate::wire::tree::{Map, Value};

use crate::error::GatewayError;
use crate::provider::anthropic::{opt_tree, raw_str, text_tree, tree, Block, ImageSource, MessagesRequest};
use crate::provider::Whole;
use crate::text::{Put, PutBytes, Text};
use crate::wire::chat::{completion_id, Answer, ToolCall};
use crate::wire::facts::AnswerFacts;
use crate::wire::usage::Usage;
use crate::wire::{obj, ToTree};

fn unsupported(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", message).with_param(param)
}

/// The thought signature Gemini documents for a function call whose own signature is not at hand
/// ("Thought signatures": a history another model wrote, or one passed through an API without
/// the field). Gemini 3 refuses a turn whose function call has no signature (400
/// `INVALID_ARGUMENT`, "Function call is missing a thought_signature"), and a caller of the
/// OpenAI or Anthropic API has nowhere to send one back: the gateway drops the signatures
/// Gemini answers with (carrying them in the tool call would break a fallback to OpenAI, which
/// refuses unknown members and tool-call ids over 40 characters) and sends this in their place.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// Whether `model` checks thought signatures: Gemini 3 and later, and names that are not a
/// 1.x or 2.x model's (an alias such as `gemini-flash-latest` may point to a new one); the 1.x
/// and 2.x models have none to check and are sent none.
pub fn needs_thought_signatures(model: &str) -> bool {
    let name = model.strip_prefix("models/").unwrap_or(model);
    !(name.starts_with("gemini-1") || name.starts_with("gemini-2"))
}

/// Gemini's largest `temperature` (`generationConfig.temperature`), OpenAI's too.
const GEMINI_MAX_TEMPERATURE: f64 = 2.0;

pub fn generate_path(model: &str) -> String {
    format!("/v1beta/models/{model}:generateContent")
}

pub fn stream_path(model: &str) -> String {
    format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
}

/// `generateContent` request body from the typed Anthropic Messages request (which has validated
/// and merged the turns), read directly: no JSON tree of it in between.
pub fn request_from_messages(a: &MessagesRequest<'_>) -> Result<Value, GatewayError> {
    let mut tool_names: crate::config::NameMap<String> = crate::config::NameMap::new();
    let mut contents = Vec::with_capacity(a.messages.len());
    let sign = needs_thought_signatures(&a.model);
    for m in &a.messages {
        let role = if m.role == "assistant" { "model" } else { "user" };
        let mut parts = Vec::with_capacity(m.content.len());
        // The first function call of each model turn carries a thought signature (see
        // [`SKIP_THOUGHT_SIGNATURE`]); parallel calls after it do not.
        let mut signed = !sign || role != "model";
        for b in &m.content {
            parts.push(match b {
                Block::Text { text } => obj! {"text" => text},
                Block::Image { source: ImageSource::Base64 { media_type, data } } => {
                    obj! {"inlineData" = obj!{"mimeType" => media_type, "data" => data}}
                }
                Block::Image { source: ImageSource::Url { .. } } => {
                    return Err(unsupported("messages", "this provider takes images only as data URLs"))
                }
                Block::ToolUse { id, name, input } => {
                    let name = raw_str(*name).map(Cow::into_owned).unwrap_or_default();
                    if let Some(id) = raw_str(*id).map(Cow::into_owned) {
                        tool_names.insert(id, name.own());
                    }
                    let call = obj! {"name" => name, "args" => text_tree(input)};
                    if std::mem::replace(&mut signed, true) {
                        obj! {"functionCall" = call}
                    } else {
                        obj! {"functionCall" = call, "thoughtSignature" => SKIP_THOUGHT_SIGNATURE}
                    }
                }
                Block::ToolResult { tool_use_id, content } => {
                    let id = raw_str(*tool_use_id).map(Cow::into_owned).unwrap_or_default();
                    let Some(name) = tool_names.get(&id) else {
                        return Err(GatewayError::bad_request(
                            "invalid_value",
                            format!("tool message refers to unknown tool_call_id {id:?}"),
                        )
                        .with_param("messages"));
                    };
                    obj! {"functionResponse" = obj!{"name" => name, "response" = obj!{"output" => content}}}
                }
            });
        }
        contents.push(obj! {"role" => role, "parts" => parts});
    }
    let mut body = Map::new();
    body.insert("contents".own(), Value::Array(contents));
    if !a.system.is_empty() {
        let parts: Vec<Value> = a.system.iter().filter_map(text_part).collect();
        body.insert("systemInstruction".own(), obj! {"parts" => parts});
    }
    let mut generation = crate::provider::anthropic::sampling(a, "maxOutputTokens", GEMINI_MAX_TEMPERATURE);
    // JSON mode, and the schema when the caller gave one (`responseJsonSchema`: JSON Schema).
    if a.json {
        generation.insert("responseMimeType".own(), ToTree::to_tree(&"application/json"));
    }
    if let Some(c) = &a.output_config {
        generation.insert("responseJsonSchema".own(), tree(c.format.schema));
    }
    if let Some(seed) = a.seed {
        generation.insert("seed".own(), ToTree::to_tree(&i64::from(seed)));
    }
    if let Some(p) = a.presence_penalty {
        generation.insert("presencePenalty".own(), tree(p));
    }
    if let Some(p) = a.frequency_penalty {
        generation.insert("frequencyPenalty".own(), tree(p));
    }
    body.insert("generationConfig".own(), Value::Object(generation));
    if let Some(tools) = &a.tools {
        let decls: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".own(), opt_tree(t.name));
                if let Some(x) = t.description {
                    d.insert("description".own(), tree(x));
                }
                d.insert("parametersJsonSchema".own(), tree(t.input_schema));
                Value::Object(d)
            })
            .collect();
        body.insert("tools".own(), crate::wire::tree::Value::Array(vec![obj! {"functionDeclarations" => decls}]));
        let config = match a.tool_choice.as_ref().map(|c| (c.kind, c.name)) {
            Some(("any", _)) => Some(obj! {"mode" => "ANY"}),
            Some(("none", _)) => Some(obj! {"mode" => "NONE"}),
            Some(("tool", name)) => Some(obj! {
                "mode" => "ANY",
                "allowedFunctionNames" = crate::wire::tree::Value::Array(vec![ToTree::to_tree(&opt_tree(name))]),
            }),
            _ => None,
        };
        if let Some(c) = config {
            body.insert("toolConfig".own(), obj! {"functionCallingConfig" = c});
        }
    }
    Ok(Value::Object(body))
}

/// A system block's text part.
fn text_part(b: &Block<'_>) -> Option<Value> {
    match b {
        Block::Text { text } => Some(obj! {"text" => text}),
        _ => None,
    }
}

/// A `generateContent` response, as much of it as the unified answer needs (borrowed).
struct GenerateResponse<'a> {
    candidates: Option<Vec<Candidate<'a>>>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<Cow<'a, str>>,
    response_id: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(GenerateResponse<'a> {
    candidates: "candidates" [],
    usage_metadata: "usageMetadata" [],
    model_version: "modelVersion" [],
    response_id: "responseId" [],
});

struct Candidate<'a> {
    content: Option<CandidateContent<'a>>,
    finish_reason: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(Candidate<'a> {
    content: "content" [],
    finish_reason: "finishReason" [],
});

struct CandidateContent<'a> {
    parts: Option<Vec<Part<'a>>>,
}
crate::wire::object::from_object!(CandidateContent<'a> {
    parts: "parts" [],
});

struct Part<'a> {
    text: Option<Cow<'a, str>>,
    thought: Option<bool>,
    function_call: Option<FunctionCall<'a>>,
}
crate::wire::object::from_object!(Part<'a> {
    text: "text" [],
    thought: "thought" [],
    function_call: "functionCall" [],
});

struct FunctionCall<'a> {
    name: Option<Cow<'a, str>>,
    args: Option<Raw<'a>>,
}
crate::wire::object::from_object!(FunctionCall<'a> {
    name: "name" [],
    args: "args" [],
});

#[derive(Default)]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}
crate::wire::object::from_object!(UsageMetadata {
    tool_use_prompt_token_count: "toolUsePromptTokenCount" [],
    prompt_token_count: "promptTokenCount" [],
    candidates_token_count: "candidatesTokenCount" [],
    thoughts_token_count: "thoughtsTokenCount" [],
    cached_content_token_count: "cachedContentTokenCount" [],
});

/// The stem of an answer's tool-call ids (`call_<12 hex digits>`, then `_<n>` per call), made
/// from what is unique to the answer (its `responseId`, else its bytes). Gemini's calls have no
/// ids, and a history's ids must differ from answer to answer: Anthropic refuses a conversation
/// whose `tool_use` ids repeat ("`tool_use` ids must be unique"), so `call_0` in every answer
/// broke a tool loop begun on Gemini and continued on Anthropic. Within OpenAI's 40 characters
/// and Anthropic's and Bedrock's id alphabets.
fn call_ids(unique: &[u8]) -> String {
    let digest = crate::auth::sigv4::sha256_hex(unique);
    format!("call_{}", digest.get(..12).unwrap_or(&digest))
}

/// A candidate's `finishReason` as OpenAI's `finish_reason`: `tool_calls` when it called a
/// function, `length` at the output bound, `content_filter` for the safety and recitation stops,
/// and `stop` for the others (`STOP`, and, lossily, `MALFORMED_FUNCTION_CALL`, `LANGUAGE`,
/// `OTHER`, ...: the candidate ended without a filter).
fn finish_reason(reason: Option<&str>, called: bool) -> &'static str {
    match reason {
        _ if called => "tool_calls",
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        _ => "stop",
    }
}

/// Translates a complete `generateContent` response into an OpenAI chat completion: thought
/// parts are left out, function calls become tool calls ([`call_ids`]), a prompt blocked or a
/// safety stop is `content_filter`.
pub fn response_to_openai(body: &[u8], model: &str, created: u64) -> Result<(Vec<u8>, Usage, AnswerFacts), String> {
    let r: GenerateResponse<'_> =
        crate::wire::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    let cand = r.candidates.and_then(|c| c.into_iter().next());
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let finish = cand.as_ref().and_then(|c| c.finish_reason.clone());
    let has_candidate = cand.is_some();
    let parts = cand.and_then(|c| c.content).and_then(|c| c.parts).unwrap_or_default();
    let mut ids = None;
    for p in parts {
        if p.thought == Some(true) {
            continue;
        }
        if let Some(t) = p.text {
            text.put(&t);
        } else if let Some(fc) = p.function_call {
            tool_calls.push(ToolCall {
                id: Some(Cow::Owned(format!(
                    "{}_{}",
                    ids.get_or_insert_with(|| call_ids(r.response_id.as_deref().map_or(body, str::as_bytes))),
                    tool_calls.len()
                ))),
                name: fc.name,
                arguments: Cow::Borrowed(fc.args.map_or("{}", Raw::get)),
            });
        }
    }
    let finish_reason = if has_candidate {
        finish_reason(finish.as_deref(), !tool_calls.is_empty())
    } else {
        "content_filter" // the prompt was blocked (`promptFeedback.blockReason`)
    };
    let u = r.usage_metadata.unwrap_or_default();
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    let prompt = u.prompt_token_count.unwrap_or(0);
    let usage = Usage {
        // A tool's own prompt (search grounding, code execution) is billed as input too.
        input: prompt.saturating_add(u.tool_use_prompt_token_count.unwrap_or(0)),
        cached_input: u.cached_content_token_count.unwrap_or(0).min(prompt),
        output: u.candidates_token_count.unwrap_or(0).saturating_add(thoughts),
        reasoning: thoughts,
        ..Usage::default()
    };
    let answer = Answer {
        id: completion_id(r.response_id.as_deref().unwrap_or("gemini")),
        model: Some(r.model_version.unwrap_or(Cow::Borrowed(model))),
        text,
        tool_calls,
        finish_reason,
        usage,
    };
    Ok((answer.to_bytes(created), usage, answer.facts()))
}

/// A Gemini error (`google.rpc.Status`) in OpenAI's shape. Gemini reports an invalid API key
/// as 400 `API_KEY_INVALID`; callers get that as the 401 it means.
pub fn error_to_openai(status: u16, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Value = crate::wire::from_slice(body).unwrap_or(Value::Null);
    let message = v.pointer("/error/message").and_then(Value::as_str).unwrap_or("The provider returned an error.");
    let rpc = v.pointer("/error/status").and_then(Value::as_str).unwrap_or("");
    let (status, kind, code) = if is_invalid_key(body) {
        (401, "authentication_error", "upstream_authentication")
    } else {
        match rpc {
            "INVALID_ARGUMENT" | "FAILED_PRECONDITION" => (status, "invalid_request_error", "invalid_request"),
            "PERMISSION_DENIED" | "UNAUTHENTICATED" => (status, "permission_error", "upstream_permission"),
            "NOT_FOUND" => (status, "invalid_request_error", "model_not_found"),
            "RESOURCE_EXHAUSTED" => (status, "rate_limit_error", "rate_limit_exceeded"),
            "UNAVAILABLE" => (status, "server_error", "overloaded"),
            "DEADLINE_EXCEEDED" => (status, "server_error", "timeout"),
            _ => (status, "server_error", "upstream_error"),
        }
    };
    (
        status,
        crate::wire::write::to_vec(&obj! {
            "error" = obj!{"message" => message, "type" => kind, "param" = crate::wire::tree::Value::Null, "code" => code},
        }),
    )
}

/// Whether a Gemini error body says the API key is invalid.
pub fn is_invalid_key(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.has("API_KEY_INVALID")
}

/// Turns a Gemini SSE stream (each event a partial `GenerateContentResponse`, usage cumulative,
/// no end marker) into OpenAI chat-completion chunks as it streams.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    parser: crate::wire::sse::Parser,
    events: Vec<crate::wire::sse::Event>,
    id: String,
    model: String,
    created: u64,
    started: bool,
    calls: u64,
    /// What this answer's tool-call ids are made from ([`call_ids`]): its `responseId`, else its
    /// first event; the stem itself is made at the first call, so a stream without one makes
    /// no digest.
    call_seed: String,
    call_ids: String,
    finish: Option<&'static str>,
    pub usage: Option<crate::wire::usage::Usage>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, created: u64) -> Self {
        Self { model: model.own(), created, ..Self::default() }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Value) {
        crate::wire::chat::chunk_event(out, (&self.id, self.created, &self.model), delta, finish, true);
    }

    /// Feeds a piece of the provider's stream; returns the bytes to send on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.parser.push(chunk, &mut self.events);
        for ev in std::mem::take(&mut self.events) {
            let Ok(v) = crate::wire::from_str::<Value>(&ev.data) else { continue };
            if let Some(e) = v.get("error") {
                let msg = e.get("message").and_then(Value::as_str).unwrap_or("The provider failed mid-stream.");
                let err = obj! {"error" = obj!{
                    "message" => msg,
                    "type" => "server_error",
                    "param" = crate::wire::tree::Value::Null,
                    "code" => "upstream_error",
                }};
                crate::wire::sse::tree_event(&mut out, &err);
                self.done = true;
                continue;
            }
            if !self.started {
                self.started = true;
                let response_id = v.get("responseId").and_then(Value::as_str);
                self.id = format!("chatcmpl-{}", response_id.unwrap_or("gemini"));
                self.call_seed = response_id.unwrap_or(&ev.data).own();
                if let Some(m) = v.get("modelVersion").and_then(Value::as_str) {
                    self.model = m.own();
                }
                self.chunk(&mut out, obj! {"role" => "assistant", "content" => ""}, Value::Null);
            }
            if let Some(u) = v.get("usageMetadata") {
                let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
                let thoughts = n("thoughtsTokenCount");
                self.usage = Some(crate::wire::usage::Usage {
                    input: n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount")),
                    cached_input: n("cachedContentTokenCount"),
                    output: n("candidatesTokenCount") + thoughts,
                    reasoning: thoughts,
                    ..crate::wire::usage::Usage::default()
                });
            }
            let cand = v.pointer("/candidates/0");
            for p in cand.and_then(|c| c.pointer("/content/parts")).and_then(Value::as_array).into_iter().flatten() {
                if p.get("thought").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                if let Some(t) = p.get("text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    self.chunk(&mut out, obj! {"content" => t}, Value::Null);
                } else if let Some(fc) = p.get("functionCall") {
                    if self.call_ids.is_empty() {
                        self.call_ids = call_ids(self.call_seed.as_bytes());
                    }
                    let args = fc.get("args").map_or_else(|| "{}".own(), crate::wire::write::to_string);
                    self.chunk(
                        &mut out,
                        obj! {
                            "tool_calls" = crate::wire::tree::Value::Array(vec![obj!{
                                "index" => self.calls,
                                "id" => format!("{}_{}", self.call_ids, self.calls),
                                "type" => "function",
                                "function" = obj!{"name" => fc.get("name"), "arguments" => args},
                            }]),
                        },
                        Value::Null,
                    );
                    self.calls += 1;
                }
            }
            if let Some(f) = cand.and_then(|c| c.get("finishReason")).and_then(Value::as_str) {
                self.finish = Some(finish_reason(Some(f), self.calls > 0));
            } else if cand.is_none() && v.pointer("/promptFeedback/blockReason").is_some() {
                self.finish = Some("content_filter"); // the prompt was blocked
            }
        }
        out
    }

    /// At the end of the provider's body: the finish chunk, the usage chunk and `[DONE]`.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.done || !self.started {
            return out;
        }
        self.done = true;
        self.chunk(&mut out, obj! {}, ToTree::to_tree(&(self.finish.unwrap_or("stop"))));
        if let Some(u) = self.usage {
            crate::wire::chat::usage_event(&mut out, (&self.id, self.created, &self.model), &u);
        }
        out.put(b"data: [DONE]\n\n");
        out
    }
}

impl_translate!(StreamTranslator);

/// The most inputs one `batchEmbedContents` call takes.
pub const EMBED_BATCH: usize = 100;

/// An OpenAI embeddings request as a `batchEmbedContents` request for `model`, embedding
/// `texts` (at most [`EMBED_BATCH`]: the route stage splits a larger batch).
pub fn embeddings_request(
    req: &crate::wire::embeddings::EmbeddingsRequest,
    texts: &[std::borrow::Cow<'_, str>],
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let name = format!("models/{model}");
    let requests: Vec<Value> = texts
        .iter()
        .map(|t| {
            let mut r = obj! {
                "model" => name,
                "content" = obj!{"parts" = crate::wire::tree::Value::Array(vec![obj!{"text" => t}])},
            };
            if let (Some(d), Some(o)) = (req.dimensions, r.as_object_mut()) {
                o.insert("outputDimensionality".own(), ToTree::to_tree(&d));
            }
            r
        })
        .collect();
    Ok(crate::wire::write::to_vec(&obj! {"requests" => requests}))
}

/// The vectors of a `batchEmbedContents` answer (the Gemini API reports no token count for
/// embeddings).
pub fn embeddings_vectors(body: &[u8]) -> Result<Vec<Vec<f64>>, String> {
    struct Batch {
        embeddings: Vec<Values>,
    }
    crate::wire::object::from_object!(Batch { embeddings: "embeddings"[required] });
    struct Values {
        values: Vec<f64>,
    }
    crate::wire::object::from_object!(Values { values: "values"[required] });
    let b: Batch = crate::wire::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    Ok(b.embeddings.into_iter().map(|v| v.values).collect())
}

/// The Gemini API as a provider API (see `provider`): through the Anthropic translation.
pub struct Gemini;

impl crate::provider::ProviderApi for Gemini {
    fn path(&self, model: &str, _cfg: &crate::provider::ProviderConfig, stream: bool) -> String {
        if stream {
            stream_path(model)
        } else {
            generate_path(model)
        }
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(("x-goog-api-key", key.own()))
    }

    fn request(&self, body: &[u8], model: &str, max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError> {
        let a = crate::provider::anthropic::request_from_openai(body, model, max_tokens_default)?;
        Ok((crate::wire::write::to_vec(&request_from_messages(&a)?), a.stream == Some(true)))
    }

    fn answer(&self, body: &[u8], model: &str, now_ms: u64) -> Result<Whole, String> {
        response_to_openai(body, model, now_ms / 1000).map(|(out, u, f)| (out, Some(u), Some(f)))
    }

    fn embeddings_path(&self, model: &str, _cfg: &crate::provider::ProviderConfig) -> Option<String> {
        Some(format!("/v1beta/models/{}:batchEmbedContents", crate::auth::sigv4::uri_encode(model, false)))
    }

    fn embeddings_batch(&self, _model: &str) -> Option<usize> {
        Some(EMBED_BATCH)
    }

    fn embeddings_request(
        &self,
        req: &crate::wire::embeddings::EmbeddingsRequest,
        texts: &[std::borrow::Cow<'_, str>],
        _body: &[u8],
        model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        embeddings_request(req, texts, model)
    }

    fn embeddings_vectors(&self, body: &[u8], _model: &str) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
        embeddings_vectors(body).map(|v| (v, None))
    }

    fn error(&self, status: u16, _error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        error_to_openai(status, body)
    }

    fn stream(
        &self,
        content_type: &str,
        model: &str,
        _id: Option<&str>,
        created: u64,
    ) -> Option<Box<dyn crate::wire::sse::Translate>> {
        content_type
            .starts_with("text/event-stream")
            .then(|| Box::new(StreamTranslator::new(model, created)) as Box<dyn crate::wire::sse::Translate>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn maps_an_anthropic_request_part_by_part() {
        let openai = json!({"messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_9", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_9", "content": "18C"}],
            "max_tokens": 64, "top_p": 0.9, "stop": "END",
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let openai_body = openai.to_string();
        let a =
            crate::provider::anthropic::request_from_openai(openai_body.as_bytes(), "gemini-2.5-flash", 1024).unwrap();
        let g = request_from_messages(&a).unwrap();
        assert_eq!(g["systemInstruction"], json!({"parts": [{"text": "Be terse."}]}));
        assert_eq!(g["contents"][0], json!({"role": "user", "parts": [{"text": "Weather in Paris?"}]}));
        assert_eq!(
            g["contents"][1],
            json!({"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]})
        );
        assert_eq!(
            g["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "get_weather", "response": {"output": "18C"}}})
        );
        assert_eq!(g["generationConfig"], json!({"maxOutputTokens": 64, "topP": 0.9, "stopSequences": ["END"]}));
        assert_eq!(
            g["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_weather"]})
        );
        assert_eq!(generate_path("gemini-2.5-flash"), "/v1beta/models/gemini-2.5-flash:generateContent");
    }

    #[test]
    fn a_gemini_3_history_signs_the_first_function_call_of_each_model_turn() {
        // Two turns of tool use, the first with two parallel calls.
        let history = json!({"messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
            {"role": "tool", "tool_call_id": "call_0", "content": "18C"},
            {"role": "tool", "tool_call_id": "call_1", "content": "21C"},
            {"role": "assistant", "content": "Checking Oslo too.", "tool_calls": [
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "call_2", "content": "3C"}]})
        .to_string();
        let parts = |model: &str| {
            let a = crate::provider::anthropic::request_from_openai(history.as_bytes(), model, 1024).unwrap();
            let g = request_from_messages(&a).unwrap();
            let contents = g["contents"].as_array().unwrap().clone();
            contents.iter().map(|c| (c["role"].as_str().unwrap().to_owned(), c["parts"].clone())).collect::<Vec<_>>()
        };
        let signed = |parts: &Value| -> Vec<bool> {
            parts.as_array().unwrap().iter().map(|p| p.get("thoughtSignature").is_some()).collect()
        };
        let g3 = parts("gemini-3-pro-preview");
        assert_eq!(g3.len(), 5);
        assert_eq!(g3[1].0, "model");
        // The first of the parallel calls is signed, the second is not (as Gemini answers them).
        assert_eq!(signed(&g3[1].1), [true, false]);
        assert_eq!(g3[1].1[0]["thoughtSignature"], json!(SKIP_THOUGHT_SIGNATURE));
        assert_eq!(g3[1].1[0]["functionCall"], json!({"name": "get_weather", "args": {"city": "Paris"}}));
        // A turn with text before its call: the call is signed, the text is not.
        assert_eq!(g3[3].0, "model");
        assert_eq!(signed(&g3[3].1), [false, true]);
        // The caller's turns and the function responses carry none.
        for (role, p) in [&g3[0], &g3[2], &g3[4]] {
            assert_eq!(role, "user");
            assert!(signed(p).iter().all(|s| !s));
        }
        // Gemini 2.5 and earlier check no signatures: none is sent.
        for model in ["gemini-2.5-flash", "models/gemini-2.0-flash", "gemini-1.5-pro"] {
            assert!(parts(model).iter().all(|(_, p)| signed(p).iter().all(|s| !s)), "{model}");
        }
        assert!(needs_thought_signatures("gemini-flash-latest"));
        assert!(needs_thought_signatures("models/gemini-3-flash-preview"));
    }

    #[test]
    fn seed_and_penalties_go_to_gemini_and_not_to_anthropic() {
        let body = |extra: &str| format!(r#"{{"messages":[{{"role":"user","content":"x"}}],"max_tokens":8{extra}}}"#);
        let config = |extra: &str| {
            let b = body(extra);
            let a = crate::provider::anthropic::request_from_openai(b.as_bytes(), "m", 1024).unwrap();
            request_from_messages(&a).unwrap()["generationConfig"].clone()
        };
        assert_eq!(
            config(r#","seed":7,"presence_penalty":0.5,"frequency_penalty":-0.25"#),
            json!({"maxOutputTokens": 8, "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.25})
        );
        assert_eq!(config(r#","seed":-2147483648"#)["seed"], json!(-2147483648i64));
        // Not an integer within Gemini's 32 bits, or not a number: left out.
        for extra in [r#","seed":2147483648"#, r#","seed":1.5"#, r#","seed":"7""#, r#","presence_penalty":"high""#] {
            assert_eq!(config(extra), json!({"maxOutputTokens": 8}), "{extra}");
        }
        // Anthropic has no form of them: its request is written without them.
        let b = body(r#","seed":7,"presence_penalty":0.5,"frequency_penalty":0.5"#);
        let a = crate::provider::anthropic::anthropic_request_from_openai(b.as_bytes(), "m", 1024).unwrap();
        let written: Value = crate::wire::from_slice(&crate::wire::write::to_vec(&a)).unwrap();
        assert_eq!(
            written,
            json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
        );
    }

    #[test]
    fn the_callers_temperature_goes_to_gemini_up_to_two() {
        let temperature = |t: &str| {
            let body = format!(r#"{{"messages":[{{"role":"user","content":"x"}}],"max_tokens":8,"temperature":{t}}}"#);
            let a = crate::provider::anthropic::request_from_openai(body.as_bytes(), "m", 1024).unwrap();
            request_from_messages(&a).unwrap()["generationConfig"]["temperature"].clone()
        };
        assert_eq!(temperature("1.5"), json!(1.5));
        assert_eq!(temperature("2"), json!(2.0));
        assert_eq!(temperature("0.25"), json!(0.25));
        // Beyond OpenAI's range, as for every provider: clamped to it.
        assert_eq!(temperature("3.5"), json!(2.0));
        assert_eq!(temperature("-1"), json!(0.0));
    }

    #[test]
    fn json_mode_and_a_schema_go_into_the_generation_config() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}});
        let user = json!([{"role": "user", "content": "x"}]);
        let config = |rf: Value| {
            let body = json!({"messages": user, "max_tokens": 8, "response_format": rf}).to_string();
            let a = crate::provider::anthropic::request_from_openai(body.as_bytes(), "m", 1024).unwrap();
            request_from_messages(&a).unwrap()["generationConfig"].clone()
        };
        assert_eq!(
            config(json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})),
            json!({"maxOutputTokens": 8, "responseMimeType": "application/json", "responseJsonSchema": schema})
        );
        assert_eq!(
            config(json!({"type": "json_object"})),
            json!({"maxOutputTokens": 8, "responseMimeType": "application/json"})
        );
        assert_eq!(config(json!({"type": "text"})), json!({"maxOutputTokens": 8}));
    }

    #[test]
    fn answer_with_a_function_call_becomes_tool_calls() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"thinking","thought":true},
            {"functionCall":{"name":"f","args":{"a":1}}}]},"finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":3,"thoughtsTokenCount":20,"totalTokenCount":32},
            "modelVersion":"gemini-2.5-flash","responseId":"r1"}"#;
        let (out, usage, _) = response_to_openai(body, "gemini-2.5-flash", 1).unwrap();
        let v: Value = crate::wire::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let id = |v: &Value| v["choices"][0]["message"]["tool_calls"][0]["id"].as_str().unwrap().to_owned();
        // `call_` and 12 hex digits of the answer's `responseId` ("r1"), then the call's number.
        assert_eq!(id(&v), format!("call_{}_0", &crate::auth::sigv4::sha256_hex(b"r1")[..12]));
        // Another answer's calls have other ids (one without a `responseId`: from its bytes).
        let other = String::from_utf8_lossy(body).replace("\"r1\"", "\"r2\"");
        let (out2, _, _) = response_to_openai(other.as_bytes(), "gemini-2.5-flash", 1).unwrap();
        let unnamed = String::from_utf8_lossy(body).replace(",\"responseId\":\"r1\"", "");
        let (out3, _, _) = response_to_openai(unnamed.as_bytes(), "gemini-2.5-flash", 1).unwrap();
        let ids = [id(&v), id(&crate::wire::from_slice(&out2).unwrap()), id(&crate::wire::from_slice(&out3).unwrap())];
        assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "{ids:?}");
        assert!(ids.iter().all(|i| i.len() <= 40 && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')));
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!((usage.input, usage.output, usage.reasoning), (9, 23, 20));
    }

    #[test]
    fn blocked_prompt_and_length_stop() {
        let blocked = br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}"#;
        let (out, _, _) = response_to_openai(blocked, "g", 1).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\"finish_reason\":\"content_filter\""));
        let long = br#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"MAX_TOKENS"}]}"#;
        let (out, _, _) = response_to_openai(long, "g", 1).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\"finish_reason\":\"length\""));
    }

    #[test]
    fn each_finish_reason_maps_as_the_provider_reference_says() {
        let whole = |reason: &str| {
            let body =
                format!(r#"{{"candidates":[{{"content":{{"parts":[{{"text":"a"}}]}},"finishReason":"{reason}"}}]}}"#);
            let (out, _, _) = response_to_openai(body.as_bytes(), "g", 1).unwrap();
            let v: Value = crate::wire::from_slice(&out).unwrap();
            v["choices"][0]["finish_reason"].as_str().unwrap().to_owned()
        };
        let streamed = |reason: &str| {
            let mut t = StreamTranslator::new("g", 1);
            let ev = format!("data: {{\"candidates\":[{{\"content\":{{\"parts\":[{{\"text\":\"a\"}}]}},\"finishReason\":\"{reason}\"}}]}}\n\n");
            let mut out = t.push(ev.as_bytes());
            out.extend(t.finish());
            let text = String::from_utf8(out).unwrap();
            let finish = text.split("\"finish_reason\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("");
            finish.to_owned()
        };
        for (reason, expected) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            // The candidate ended without a filter: lossy, but not a refusal.
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("UNEXPECTED_TOOL_CALL", "stop"),
            ("LANGUAGE", "stop"),
            ("OTHER", "stop"),
            ("FINISH_REASON_UNSPECIFIED", "stop"),
        ] {
            assert_eq!(whole(reason), expected, "{reason}");
            assert_eq!(streamed(reason), expected, "{reason} (streamed)");
        }
        // A blocked prompt (no candidate), streamed.
        let mut t = StreamTranslator::new("g", 1);
        let mut out = t.push(
            b"data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}\n\n",
        );
        out.extend(t.finish());
        assert!(String::from_utf8(out).unwrap().contains("\"finish_reason\":\"content_filter\""));
    }

    #[test]
    fn a_tools_own_prompt_counts_as_input() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":9,"toolUsePromptTokenCount":40,"candidatesTokenCount":3,"cachedContentTokenCount":4}}"#;
        let (_, u, _) = response_to_openai(body, "g", 1).unwrap();
        assert_eq!((u.input, u.cached_input, u.output), (49, 4, 3));
        let mut t = StreamTranslator::new("g", 1);
        let _ = t.push(b"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":9,\"toolUsePromptTokenCount\":40,\"candidatesTokenCount\":3}}\n\n");
        assert_eq!(t.usage.map(|u| u.input), Some(49));
    }

    #[test]
    fn a_gemini_stream_becomes_openai_chunks_with_usage_and_done() {
        let stream = concat!(
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"},\"index\": 0}],",
            "\"usageMetadata\": {\"promptTokenCount\": 9,\"candidatesTokenCount\": 1,\"totalTokenCount\": 10},",
            "\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r7\"}\r\n\r\n",
            "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"lo.\"}],\"role\": \"model\"},",
            "\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 9,",
            "\"candidatesTokenCount\": 3,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r7\"}\r\n\r\n");
        let mut t = StreamTranslator::new("gemini-2.5-flash", 5);
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(11) {
            out.extend(t.push(piece));
        }
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap();
        let data: Vec<&str> = text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
        assert_eq!(data.len(), 6, "{text}");
        assert!(data[0].contains("\"role\":\"assistant\"") && data[0].contains("chatcmpl-r7"));
        assert!(data[1].contains("\"content\":\"Hel\"") && data[2].contains("\"content\":\"lo.\""));
        assert!(data[3].contains("\"finish_reason\":\"stop\""));
        assert!(data[4].contains("\"completion_tokens\":3") && data[4].contains("\"prompt_tokens\":9"));
        assert_eq!(data[5], "[DONE]");
    }

    #[test]
    fn a_streamed_function_call_arrives_whole_as_a_tool_call() {
        let ev = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\",\"args\": {\"a\": 1}}}]},\"finishReason\": \"STOP\"}]}\n\n";
        let mut t = StreamTranslator::new("g", 1);
        let mut out = t.push(ev.as_bytes());
        out.extend(t.finish());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\":1}\",\"name\":\"f\"}"),
            "{text}"
        );
        // Its id is made from the event (no `responseId` here), as a whole answer's would be.
        let stem = call_ids(ev.trim_start_matches("data: ").trim_end().as_bytes());
        assert!(text.contains(&format!("\"id\":\"{stem}_0\"")), "{text}");
        assert!(text.contains("\"finish_reason\":\"tool_calls\""));
    }

    #[test]
    fn invalid_key_is_a_401_and_quota_a_429() {
        let bad = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
            "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
        assert_eq!(error_to_openai(400, bad).0, 401);
        let q = br#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}"#;
        let (s, b) = error_to_openai(429, q);
        assert!(s == 429 && String::from_utf8_lossy(&b).contains("rate_limit_exceeded"));
    }
}
