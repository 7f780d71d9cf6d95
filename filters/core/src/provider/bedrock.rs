//! AWS Bedrock Runtime Converse API. The unified request is first read into the typed Anthropic
//! Messages request (`crate::provider::anthropic`, which validates and merges turns), then mapped
//! block by block onto Converse; the answer is translated directly into the unified one (`wire::chat`).
//!
//! Documented approximations: image URLs are refused (Converse takes only inline bytes);
//! `tool_choice: "none"` drops the tools, or is refused when the history holds tool use
//! (Converse has no such choice, and needs the tools then); a `response_format` JSON
//! Schema goes as Converse's structured output (`outputConfig.textFormat`, the schema as JSON
//! text), while `json_object`, which Converse has no form of, is left to the gateway's output
//! check. Streaming calls go to
//! ConverseStream; its binary event stream is translated to OpenAI chunks as it arrives.

use std::borrow::Cow;

use crate::wire::read::Raw;
use crate::wire::tree::{Map, Value};

use crate::auth::sigv4::uri_encode;
use crate::error::GatewayError;
use crate::provider::anthropic::{opt_tree, text_tree, tree, Block, ImageSource, MessagesRequest};
use crate::provider::Whole;
use crate::text::{Put, PutBytes, Text};
use crate::wire::chat::{completion_id, Answer, ToolCall};
use crate::wire::facts::AnswerFacts;
use crate::wire::usage::Usage;
use crate::wire::{obj, ToTree};

fn unsupported(param: &'static str, message: impl Into<String>) -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", message).with_param(param)
}

/// The Converse path for `model` (the model id is one percent-encoded path segment).
pub fn converse_path(model: &str) -> String {
    format!("/model/{}/converse", uri_encode(model, false))
}

pub fn converse_stream_path(model: &str) -> String {
    format!("/model/{}/converse-stream", uri_encode(model, false))
}

/// Which embeddings family a Bedrock model id belongs to (each has its own body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingsFamily {
    /// `amazon.titan-embed-text-v2:0`: one text per call, 256/512/1024 dimensions.
    TitanV2,
    /// `cohere.embed-english-v3`, `cohere.embed-multilingual-v3`: up to 96 texts, 1024 values.
    CohereV3,
}

pub fn embeddings_family(model: &str) -> Option<EmbeddingsFamily> {
    if model.starts_with("amazon.titan-embed-text-v2") {
        Some(EmbeddingsFamily::TitanV2)
    } else if model.starts_with("cohere.embed-english-v3") || model.starts_with("cohere.embed-multilingual-v3") {
        Some(EmbeddingsFamily::CohereV3)
    } else {
        None
    }
}

/// The most texts one Cohere call embeds.
pub const COHERE_BATCH: usize = 96;

/// The most texts one `InvokeModel` call of `model` embeds.
pub fn embeddings_batch(model: &str) -> Option<usize> {
    match embeddings_family(model)? {
        EmbeddingsFamily::TitanV2 => Some(1),
        EmbeddingsFamily::CohereV3 => Some(COHERE_BATCH),
    }
}

/// An OpenAI embeddings request as an `InvokeModel` body for `model`, embedding `texts` (at
/// most [`embeddings_batch`] of them: the route stage splits a larger batch).
pub fn embeddings_request(
    req: &crate::wire::embeddings::EmbeddingsRequest,
    texts: &[Cow<'_, str>],
    model: &str,
) -> Result<Vec<u8>, GatewayError> {
    let out = match embeddings_family(model) {
        Some(EmbeddingsFamily::TitanV2) => {
            let mut b =
                obj! {"inputText" => texts.first().map(|t| t.as_ref()).unwrap_or_default(), "normalize" => true};
            if let Some(d) = req.dimensions {
                if ![256, 512, 1024].contains(&d) {
                    return Err(GatewayError::bad_request(
                        "unsupported_for_provider",
                        "Titan Text Embeddings v2 makes vectors of 256, 512 or 1024 dimensions only.",
                    )
                    .with_param("dimensions"));
                }
                b["dimensions"] = ToTree::to_tree(&d);
            }
            b
        }
        Some(EmbeddingsFamily::CohereV3) => {
            if req.dimensions.is_some() {
                return Err(GatewayError::bad_request(
                    "unsupported_for_provider",
                    "Cohere Embed v3 makes vectors of 1024 dimensions only; leave `dimensions` out.",
                )
                .with_param("dimensions"));
            }
            obj! {"texts" => texts, "input_type" => "search_document", "truncate" => "NONE"}
        }
        None => return Err(crate::provider::no_embeddings()),
    };
    Ok(crate::wire::write::to_vec(&out))
}

/// The vectors of an `InvokeModel` embeddings answer, and its input tokens when the body says
/// them (Titan; Cohere's are in a response header).
pub fn embeddings_vectors(body: &[u8], model: &str) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
    struct Titan {
        embedding: Vec<f64>,
        tokens: Option<u64>,
    }
    crate::wire::object::from_object!(Titan {
        embedding: "embedding" [required],
        tokens: "inputTextTokenCount" [],
    });
    struct Cohere {
        embeddings: Vec<Vec<f64>>,
    }
    crate::wire::object::from_object!(Cohere { embeddings: "embeddings"[required] });
    let bad = |e: crate::wire::read::Error| format!("provider sent invalid JSON: {e}");
    match embeddings_family(model) {
        Some(EmbeddingsFamily::TitanV2) => {
            let t: Titan = crate::wire::from_slice(body).map_err(bad)?;
            Ok((vec![t.embedding], t.tokens))
        }
        Some(EmbeddingsFamily::CohereV3) => {
            Ok((crate::wire::from_slice::<Cohere>(body).map_err(bad)?.embeddings, None))
        }
        None => Err(format!("{model} is not an embeddings model the gateway speaks")),
    }
}

fn block(b: &Block<'_>) -> Result<Value, GatewayError> {
    Ok(match b {
        Block::Text { text } => obj! {"text" => text},
        Block::Image { source: ImageSource::Base64 { media_type, data } } => {
            obj! {"image" = obj!{"format" => crate::text::strip_all(media_type, "image/"), "source" = obj!{"bytes" => data}}}
        }
        Block::Image { source: ImageSource::Url { .. } } => {
            return Err(unsupported("messages", "this provider takes images only as data URLs"))
        }
        Block::ToolUse { id, name, input } => {
            obj! {"toolUse" = obj!{"toolUseId" => opt_tree(*id), "name" => opt_tree(*name), "input" => text_tree(input)}}
        }
        Block::ToolResult { tool_use_id, content } => {
            obj! {"toolResult" = obj!{
                "toolUseId" => opt_tree(*tool_use_id),
                "content" = crate::wire::tree::Value::Array(vec![obj!{"text" => content}]),
            }}
        }
    })
}

/// The text of the user turn put before a conversation that opens with the assistant.
pub const LEADING_USER_TEXT: &str = ".";

/// Converse request body from the typed Anthropic Messages request (which has validated and
/// merged the turns), read directly: no JSON tree of it in between.
pub fn request_from_messages(a: &MessagesRequest<'_>) -> Result<Value, GatewayError> {
    let mut body = Map::new();
    let mut messages = Vec::with_capacity(a.messages.len() + 1);
    // Converse refuses a conversation that does not start with the user ("A conversation must
    // start with a user message"), as one opening with the assistant's greeting does: a user
    // turn of one `.` goes first (the translations' turns already alternate).
    if a.messages.first().is_some_and(|m| m.role == "assistant") {
        messages.push(obj! {"role" => "user", "content" = Value::Array(vec![obj! {"text" => LEADING_USER_TEXT}])});
    }
    for m in &a.messages {
        let content = m.content.iter().map(block).collect::<Result<Vec<_>, _>>()?;
        messages.push(obj! {"role" => m.role, "content" => content});
    }
    body.insert("messages".own(), Value::Array(messages));
    if !a.system.is_empty() {
        let s: Vec<Value> = a
            .system
            .iter()
            .filter_map(|b| match b {
                Block::Text { text } => Some(obj! {"text" => text}),
                _ => None,
            })
            .collect();
        body.insert("system".own(), Value::Array(s));
    }
    let mut sampling =
        crate::provider::anthropic::sampling(a, "maxTokens", crate::provider::anthropic::ANTHROPIC_MAX_TEMPERATURE);
    // Bedrock's Claude models take one of the two, as Anthropic's do.
    if crate::provider::anthropic::one_of_temperature_and_top_p(&a.model) && sampling.contains_key("temperature") {
        sampling.remove("topP");
    }
    body.insert("inferenceConfig".own(), Value::Object(sampling));
    // `tool_choice: "none"` has no Converse form; with no tool use in the history, the same
    // request without its tools is what it asks for (Converse needs `toolConfig` only when the
    // history holds `toolUse` or `toolResult` blocks).
    let none = a.tool_choice.as_ref().is_some_and(|c| c.kind == "none");
    let history_uses_tools = a
        .messages
        .iter()
        .flat_map(|m| &m.content)
        .any(|b| matches!(b, Block::ToolUse { .. } | Block::ToolResult { .. }));
    if none && history_uses_tools {
        return Err(unsupported(
            "tool_choice",
            "tool_choice \"none\" is not supported by this provider when the conversation holds tool calls",
        ));
    }
    if let Some(tools) = a.tools.as_ref().filter(|_| !none) {
        let specs: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut spec = Map::new();
                spec.insert("name".own(), opt_tree(t.name));
                if let Some(d) = t.description {
                    spec.insert("description".own(), tree(d));
                }
                spec.insert("inputSchema".own(), obj! {"json" => tree(t.input_schema)});
                obj! {"toolSpec" => spec}
            })
            .collect();
        let mut config = Map::new();
        config.insert("tools".own(), Value::Array(specs));
        match a.tool_choice.as_ref().map(|c| (c.kind, c.name)) {
            None | Some(("auto", _)) => {}
            Some(("any", _)) => {
                config.insert("toolChoice".own(), obj! {"any" = obj!{}});
            }
            Some(("tool", name)) => {
                config.insert("toolChoice".own(), obj! {"tool" = obj!{"name" => opt_tree(name)}});
            }
            Some(_) => {
                return Err(unsupported("tool_choice", "tool_choice \"none\" is not supported by this provider"))
            }
        }
        body.insert("toolConfig".own(), Value::Object(config));
    }
    if let Some(c) = &a.output_config {
        // Converse takes the schema as JSON text.
        let schema = obj! {"jsonSchema" = obj!{"schema" => c.format.schema.get()}};
        body.insert("outputConfig".own(), obj! {"textFormat" = obj!{"type" => "json_schema", "structure" = schema}});
    }
    Ok(Value::Object(body))
}

/// A Converse response, as much of it as the unified answer needs (borrowed).
struct ConverseResponse<'a> {
    output: Option<ConverseOutput<'a>>,
    stop_reason: Option<Cow<'a, str>>,
    usage: Option<ConverseUsage>,
}
crate::wire::object::from_object!(ConverseResponse<'a> {
    output: "output" [],
    stop_reason: "stopReason" [],
    usage: "usage" [],
});

struct ConverseOutput<'a> {
    message: Option<ConverseMessage<'a>>,
}
crate::wire::object::from_object!(ConverseOutput<'a> {
    message: "message" [],
});

struct ConverseMessage<'a> {
    content: Option<Vec<ConverseBlock<'a>>>,
}
crate::wire::object::from_object!(ConverseMessage<'a> {
    content: "content" [],
});

struct ConverseBlock<'a> {
    text: Option<Cow<'a, str>>,
    tool_use: Option<ConverseToolUse<'a>>,
}
crate::wire::object::from_object!(ConverseBlock<'a> {
    text: "text" [],
    tool_use: "toolUse" [],
});

struct ConverseToolUse<'a> {
    tool_use_id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    input: Option<Raw<'a>>,
}
crate::wire::object::from_object!(ConverseToolUse<'a> {
    tool_use_id: "toolUseId" [],
    name: "name" [],
    input: "input" [],
});

#[derive(Default)]
struct ConverseUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
    /// The cache writes by TTL (`5m`, `1h`; read as a tree, see [`hour_of`]).
    cache_details: Option<Value>,
}
crate::wire::object::from_object!(ConverseUsage {
    input_tokens: "inputTokens" [],
    output_tokens: "outputTokens" [],
    cache_read_input_tokens: "cacheReadInputTokens" [],
    cache_write_input_tokens: "cacheWriteInputTokens" [],
    cache_details: "cacheDetails" [],
});

/// Of `written` cache-write tokens, those a Converse `cacheDetails` list says were written for
/// an hour.
fn hour_of(details: Option<&Value>, written: u64) -> u64 {
    let hour = |d: &&Value| d.get("ttl").and_then(Value::as_str) == Some("1h");
    let n = |d: &Value| d.get("inputTokens").and_then(Value::as_u64).unwrap_or(0);
    let list = details.and_then(Value::as_array).into_iter().flatten();
    list.filter(hour).map(n).fold(0u64, u64::saturating_add).min(written)
}

/// Translates a complete Converse response into an OpenAI chat completion (`request_id`
/// makes its id).
pub fn response_to_openai(
    body: &[u8],
    model: &str,
    request_id: &str,
    created: u64,
) -> Result<(Vec<u8>, Usage, AnswerFacts), String> {
    let r: ConverseResponse<'_> =
        crate::wire::from_slice(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    let blocks = r.output.and_then(|o| o.message).and_then(|m| m.content).unwrap_or_default();
    for b in blocks {
        if let Some(t) = b.text {
            text.put(&t);
        } else if let Some(t) = b.tool_use {
            tool_calls.push(ToolCall {
                id: t.tool_use_id,
                name: t.name,
                arguments: Cow::Borrowed(t.input.map_or("{}", Raw::get)),
            });
        }
    }
    let finish_reason = match r.stop_reason.as_deref().unwrap_or("end_turn") {
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        _ => "stop",
    };
    let u = r.usage.unwrap_or_default();
    let cached = u.cache_read_input_tokens.unwrap_or(0);
    let usage = Usage {
        input: u
            .input_tokens
            .unwrap_or(0)
            .saturating_add(u.cache_write_input_tokens.unwrap_or(0))
            .saturating_add(cached),
        cached_input: cached,
        output: u.output_tokens.unwrap_or(0),
        reasoning: 0,
        cache_write: u.cache_write_input_tokens.unwrap_or(0),
        cache_write_1h: hour_of(u.cache_details.as_ref(), u.cache_write_input_tokens.unwrap_or(0)),
    };
    let answer = Answer {
        id: completion_id(request_id),
        model: Some(Cow::Borrowed(model)),
        text,
        tool_calls,
        finish_reason,
        usage,
    };
    Ok((answer.to_bytes(created), usage, answer.facts()))
}

/// A Bedrock error (`x-amzn-ErrorType` header, `{"message"}` body) in OpenAI's shape.
pub fn error_to_openai(status: u16, error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let v: Value = crate::wire::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("The provider returned an error.");
    let name = error_type.before(b':');
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
    (
        status,
        crate::wire::write::to_vec(&obj! {
            "error" = obj!{"message" => message, "type" => kind, "param" = crate::wire::tree::Value::Null, "code" => code},
        }),
    )
}

/// Turns a ConverseStream answer (AWS event-stream frames) into OpenAI chat-completion chunks
/// as it streams.
#[derive(Debug, Default)]
pub struct StreamTranslator {
    decoder: crate::wire::eventstream::Decoder,
    id: String,
    model: String,
    created: u64,
    /// OpenAI tool-call index of each Converse content block that is a tool use.
    tool_index: crate::provider::ToolIndex,
    pub usage: Option<crate::wire::usage::Usage>,
    done: bool,
}

impl StreamTranslator {
    pub fn new(model: &str, id: &str, created: u64) -> Self {
        Self { model: model.own(), id: format!("chatcmpl-{id}"), created, ..Self::default() }
    }

    fn chunk(&self, out: &mut Vec<u8>, delta: Value, finish: Value) {
        crate::wire::chat::chunk_event(out, (&self.id, self.created, &self.model), delta, finish, true);
    }

    fn fail(&mut self, out: &mut Vec<u8>, message: &str) {
        let e = obj! {"error" = obj!{
            "message" => message,
            "type" => "server_error",
            "param" = crate::wire::tree::Value::Null,
            "code" => "upstream_error",
        }};
        crate::wire::sse::tree_event(out, &e);
        self.done = true;
    }

    /// Feeds a piece of the provider's body; returns the bytes to send on.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        let frames = match self.decoder.push(chunk) {
            Ok(f) => f,
            Err(e) => {
                self.fail(&mut out, &format!("The provider's stream could not be read ({e})."));
                return out;
            }
        };
        for f in frames {
            if self.done {
                break;
            }
            let v: Value = crate::wire::from_slice(&f.payload).unwrap_or(Value::Null);
            if f.header(":message-type") != Some("event") {
                let what = f.header(":exception-type").or(f.header(":error-code")).unwrap_or("error");
                let msg = v.get("message").and_then(Value::as_str).unwrap_or("The provider failed mid-stream.");
                self.fail(&mut out, &format!("{what}: {msg}"));
                continue;
            }
            match f.header(":event-type").unwrap_or("") {
                "messageStart" => self.chunk(&mut out, obj! {"role" => "assistant", "content" => ""}, Value::Null),
                "contentBlockStart" => {
                    if let Some(t) = v.pointer("/start/toolUse") {
                        let block = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                        let index = self.tool_index.add(block);
                        self.chunk(
                            &mut out,
                            crate::wire::chat::tool_call_start(index, t.get("toolUseId"), t.get("name")),
                            Value::Null,
                        );
                    }
                }
                "contentBlockDelta" => {
                    let block = v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
                    if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                        self.chunk(&mut out, obj! {"content" => t}, Value::Null);
                    } else if let Some(args) = v.pointer("/delta/toolUse/input").and_then(Value::as_str) {
                        let index = self.tool_index.get(block).unwrap_or(0);
                        self.chunk(
                            &mut out,
                            obj! {
                                "tool_calls" = crate::wire::tree::Value::Array(vec![obj!{
                                    "index" => index,
                                    "function" = obj!{"arguments" => args},
                                }]),
                            },
                            Value::Null,
                        );
                    }
                }
                "messageStop" => {
                    let finish = match v.get("stopReason").and_then(Value::as_str).unwrap_or("end_turn") {
                        "tool_use" => "tool_calls",
                        "max_tokens" | "model_context_window_exceeded" => "length",
                        "guardrail_intervened" | "content_filtered" => "content_filter",
                        _ => "stop",
                    };
                    self.chunk(&mut out, obj! {}, ToTree::to_tree(&finish));
                }
                "metadata" => {
                    let n = |k: &str| v.pointer(&format!("/usage/{k}")).and_then(Value::as_u64).unwrap_or(0);
                    let cached = n("cacheReadInputTokens");
                    let u = crate::wire::usage::Usage {
                        input: n("inputTokens") + cached + n("cacheWriteInputTokens"),
                        cached_input: cached,
                        output: n("outputTokens"),
                        reasoning: 0,
                        cache_write: n("cacheWriteInputTokens"),
                        cache_write_1h: hour_of(v.pointer("/usage/cacheDetails"), n("cacheWriteInputTokens")),
                    };
                    self.usage = Some(u);
                    crate::wire::chat::usage_event(&mut out, (&self.id, self.created, &self.model), &u);
                    out.put(b"data: [DONE]\n\n");
                    self.done = true;
                }
                _ => {}
            }
        }
        out
    }

    /// At the end of the provider's body: a stream cut short before its `metadata` event ends
    /// with an error event (the caller's SDK then knows it is incomplete).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.done {
            self.fail(&mut out, "The provider's stream ended early.");
        }
        out
    }
}

impl_translate!(StreamTranslator);

/// Bedrock Converse as a provider API (see `provider`): through the Anthropic translation,
/// signed with SigV4 by the credential stage.
pub struct Bedrock;

impl crate::provider::ProviderApi for Bedrock {
    fn path(&self, model: &str, _cfg: &crate::provider::ProviderConfig, stream: bool) -> String {
        if stream {
            converse_stream_path(model)
        } else {
            converse_path(model)
        }
    }

    fn credential_header(&self, _key: &str) -> Option<(&'static str, String)> {
        None
    }

    fn request(&self, body: &[u8], model: &str, max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError> {
        let mut a = crate::provider::anthropic::request_from_openai(body, model, max_tokens_default)?;
        // Bedrock's Claude models refuse a blank stop sequence and a prefill ending in
        // whitespace, as Anthropic's do.
        if model.has("claude-") {
            a.stop_sequences = a.stop_sequences.and_then(crate::provider::anthropic::StopSequences::not_blank);
            a.trim_final_assistant_text();
        }
        Ok((crate::wire::write::to_vec(&request_from_messages(&a)?), a.stream == Some(true)))
    }

    fn answer(&self, body: &[u8], model: &str, now_ms: u64) -> Result<Whole, String> {
        response_to_openai(body, model, &crate::headers::decimal(now_ms), now_ms / 1000)
            .map(|(out, u, f)| (out, Some(u), Some(f)))
    }

    fn error(&self, status: u16, error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        error_to_openai(status, error_type, body)
    }

    fn embeddings_path(&self, model: &str, _cfg: &crate::provider::ProviderConfig) -> Option<String> {
        embeddings_family(model).map(|_| format!("/model/{}/invoke", uri_encode(model, false)))
    }

    fn embeddings_batch(&self, model: &str) -> Option<usize> {
        embeddings_batch(model)
    }

    fn embeddings_request(
        &self,
        req: &crate::wire::embeddings::EmbeddingsRequest,
        texts: &[Cow<'_, str>],
        _body: &[u8],
        model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        embeddings_request(req, texts, model)
    }

    fn embeddings_vectors(&self, body: &[u8], model: &str) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
        embeddings_vectors(body, model)
    }

    fn stream(
        &self,
        content_type: &str,
        model: &str,
        id: Option<&str>,
        created: u64,
    ) -> Option<Box<dyn crate::wire::sse::Translate>> {
        content_type.starts_with("application/vnd.amazon.eventstream").then(|| {
            let id = id.map(str::to_string).unwrap_or_else(|| crate::headers::decimal(created));
            Box::new(StreamTranslator::new(model, &id, created)) as Box<dyn crate::wire::sse::Translate>
        })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn embeddings_go_to_titan_one_at_a_time_and_to_cohere_in_batches() {
        let embeddings_request = |body: &[u8], model: &str| {
            crate::wire::embeddings::EmbeddingsRequest::read(body)
                .and_then(|r| r.texts().and_then(|t| super::embeddings_request(&r, &t, model)))
        };
        let titan = "amazon.titan-embed-text-v2:0";
        assert_eq!((embeddings_batch(titan), embeddings_batch("cohere.embed-english-v3")), (Some(1), Some(96)));
        let out: Value = crate::wire::from_slice(
            &embeddings_request(br#"{"model":"e","input":"hi there","dimensions":512}"#, titan).unwrap(),
        )
        .unwrap();
        assert_eq!(out, json!({"inputText": "hi there", "normalize": true, "dimensions": 512}));
        assert_eq!(
            embeddings_request(br#"{"model":"e","input":"a","dimensions":300}"#, titan).unwrap_err().param,
            Some("dimensions")
        );
        let cohere = "cohere.embed-english-v3";
        let out: Value =
            crate::wire::from_slice(&embeddings_request(br#"{"model":"e","input":["a","b"]}"#, cohere).unwrap())
                .unwrap();
        assert_eq!(out, json!({"texts": ["a", "b"], "input_type": "search_document", "truncate": "NONE"}));
        assert!(embeddings_request(br#"{"model":"e","input":"a"}"#, "amazon.nova-pro-v1:0").is_err());

        // Titan says its count; Cohere's is in a header, so none here.
        let (v, tokens) = embeddings_vectors(br#"{"embedding":[0.5,-1.0],"inputTextTokenCount":3}"#, titan).unwrap();
        assert_eq!((v, tokens), (vec![vec![0.5, -1.0]], Some(3)));
        let (v, tokens) = embeddings_vectors(
            br#"{"id":"x","texts":["a","b"],"embeddings":[[1.0],[0.25]],"response_type":"embeddings_floats"}"#,
            cohere,
        )
        .unwrap();
        assert_eq!((v, tokens), (vec![vec![1.0], vec![0.25]], None));
        assert!(embeddings_vectors(b"{}", titan).is_err());
    }
    use super::*;
    use crate::json;

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
        let openai_body = openai.to_string();
        let a = crate::provider::anthropic::request_from_openai(openai_body.as_bytes(), "m", 1024).unwrap();
        let c = request_from_messages(&a).unwrap();
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
    fn a_conversation_opening_with_the_assistant_gets_a_user_turn_first() {
        let body = br#"{"messages":[{"role":"system","content":"s"},{"role":"assistant","content":"Hello, how can I help?"},{"role":"user","content":"x"}]}"#;
        let a = crate::provider::anthropic::request_from_openai(body, "m", 10).unwrap();
        let c = request_from_messages(&a).unwrap();
        assert_eq!(
            c["messages"],
            json!([{"role": "user", "content": [{"text": "."}]},
                   {"role": "assistant", "content": [{"text": "Hello, how can I help?"}]},
                   {"role": "user", "content": [{"text": "x"}]}])
        );
        assert_eq!(c["system"], json!([{"text": "s"}]));
        // A conversation that opens with the user is sent as it is.
        let body = br#"{"messages":[{"role":"user","content":"x"}]}"#;
        let a = crate::provider::anthropic::request_from_openai(body, "m", 10).unwrap();
        assert_eq!(
            request_from_messages(&a).unwrap()["messages"],
            json!([{"role": "user", "content": [{"text": "x"}]}])
        );
    }

    #[test]
    fn bedrock_gets_a_temperature_above_one_capped_at_one() {
        let body = r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":8,"temperature":1.5}"#;
        let a = crate::provider::anthropic::request_from_openai(body.as_bytes(), "m", 1024).unwrap();
        assert_eq!(a.temperature, Some(1.5));
        let c = request_from_messages(&a).unwrap();
        assert_eq!(c["inferenceConfig"], json!({"maxTokens": 8, "temperature": 1.0}));
    }

    #[test]
    fn a_json_schema_goes_as_structured_output_with_the_schema_as_text() {
        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let converse = |rf: Value| {
            let body = json!({"messages": [{"role": "user", "content": "x"}], "response_format": rf}).to_string();
            let a = crate::provider::anthropic::request_from_openai(body.as_bytes(), "m", 16).unwrap();
            request_from_messages(&a).unwrap()
        };
        let c = converse(json!({"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}));
        let format = &c["outputConfig"]["textFormat"];
        assert_eq!(format["type"], "json_schema");
        let text = format["structure"]["jsonSchema"]["schema"].as_str().unwrap();
        assert_eq!(crate::wire::from_str::<Value>(text).unwrap(), schema);
        // JSON mode has no Converse form; plain text asks for nothing.
        assert!(converse(json!({"type": "json_object"})).get("outputConfig").is_none());
        assert!(converse(json!({"type": "text"})).get("outputConfig").is_none());
    }

    #[test]
    fn refuses_what_converse_cannot_take() {
        let url = json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
        let url_body = url.to_string();
        let a = crate::provider::anthropic::request_from_openai(url_body.as_bytes(), "m", 10).unwrap();
        assert_eq!(request_from_messages(&a).unwrap_err().code, "unsupported_for_provider");
        let none = json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none",
            "tools": [{"type": "function", "function": {"name": "f"}}]});
        let none_body = none.to_string();
        let a = crate::provider::anthropic::request_from_openai(none_body.as_bytes(), "m", 10).unwrap();
        // No tool use in the history: sent without its tools, which is what "none" asks.
        let c = request_from_messages(&a).unwrap();
        assert!(c.get("toolConfig").is_none(), "{c:?}");
        // With tool use in the history Converse needs the tools: refused, by name.
        let used = json!({"tool_choice": "none", "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": "x"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}]});
        let used_body = used.to_string();
        let a = crate::provider::anthropic::request_from_openai(used_body.as_bytes(), "m", 10).unwrap();
        assert_eq!(request_from_messages(&a).unwrap_err().param, Some("tool_choice"));
    }

    #[test]
    fn converse_answer_becomes_an_openai_completion() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"Hi"},
            {"toolUse":{"toolUseId":"tooluse_1","name":"f","input":{"a":1}}}]}},"stopReason":"tool_use",
            "usage":{"inputTokens":10,"outputTokens":3,"totalTokens":13,"cacheReadInputTokens":4,"cacheWriteInputTokens":6,
            "cacheDetails":[{"ttl":"1h","inputTokens":2},{"ttl":"5m","inputTokens":4}]},"metrics":{"latencyMs":5}}"#;
        let (out, usage, _) = response_to_openai(body, "anthropic.claude-x", "req1", 7).unwrap();
        let v: Value = crate::wire::from_slice(&out).unwrap();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["choices"][0]["message"]["content"], "Hi");
        assert_eq!(v["choices"][0]["message"]["tool_calls"][0]["id"], "tooluse_1");
        assert_eq!(v["model"], "anthropic.claude-x");
        assert_eq!((usage.input, usage.cached_input, usage.output), (20, 4, 3));
        assert_eq!((usage.cache_write, usage.cache_write_1h), (6, 2));
    }

    fn frame(kind: &str, name: &str, payload: &str) -> Vec<u8> {
        // Encoded as the reference describes (§5.6), for the decoder under test.
        let mut h = Vec::new();
        for (k, v) in [
            (if kind == "event" { ":event-type" } else { ":exception-type" }, name),
            (":content-type", "application/json"),
            (":message-type", kind),
        ] {
            h.push(k.len() as u8);
            h.extend_from_slice(k.as_bytes());
            h.push(7);
            h.extend_from_slice(&(v.len() as u16).to_be_bytes());
            h.extend_from_slice(v.as_bytes());
        }
        let total = (12 + h.len() + payload.len() + 4) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&total.to_be_bytes());
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let prelude_crc = crate::wire::eventstream::crc32(&m);
        m.extend_from_slice(&prelude_crc.to_be_bytes());
        m.extend_from_slice(&h);
        m.extend_from_slice(payload.as_bytes());
        let crc = crate::wire::eventstream::crc32(&m);
        m.extend_from_slice(&crc.to_be_bytes());
        m
    }

    #[test]
    fn converse_stream_events_become_openai_chunks() {
        let mut body = Vec::new();
        for (name, p) in [
            ("messageStart", r#"{"role":"assistant","p":"abc"}"#),
            ("contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"Hi"}}"#),
            ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            (
                "contentBlockStart",
                r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"f"}}}"#,
            ),
            ("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"a\":"}}}"#),
            ("contentBlockDelta", r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"1}"}}}"#),
            ("messageStop", r#"{"stopReason":"tool_use"}"#),
            (
                "metadata",
                r#"{"usage":{"inputTokens":5,"outputTokens":7,"totalTokens":12,"cacheWriteInputTokens":3,
                    "cacheDetails":[{"ttl":"1h","inputTokens":3}]},"metrics":{"latencyMs":3}}"#,
            ),
        ] {
            body.extend(frame("event", name, p));
        }
        let mut t = StreamTranslator::new("m", "r1", 1);
        let mut out = Vec::new();
        for piece in body.chunks(9) {
            out.extend(t.push(piece));
        }
        let text = String::from_utf8(out).unwrap();
        let data: Vec<&str> = text.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
        assert_eq!(data.len(), 8, "{text}");
        assert!(data[0].contains("\"role\":\"assistant\"") && data[1].contains("\"content\":\"Hi\""));
        assert!(data[2].contains("\"id\":\"tooluse_1\"") && data[2].contains("\"name\":\"f\""));
        assert!(data[3].contains("\"arguments\":\"{\\\"a\\\":\""));
        assert!(data[5].contains("\"finish_reason\":\"tool_calls\""));
        assert!(data[6].contains("\"total_tokens\":15"), "cache writes are input");
        assert_eq!(data[7], "[DONE]");
        assert_eq!(t.usage.map(|u| (u.input, u.output, u.cache_write, u.cache_write_1h)), Some((8, 7, 3, 3)));
    }

    #[test]
    fn an_exception_frame_ends_the_stream_with_an_error_event() {
        let mut body = frame("event", "messageStart", r#"{"role":"assistant"}"#);
        body.extend(frame("exception", "throttlingException", r#"{"message":"Too many tokens"}"#));
        let mut t = StreamTranslator::new("m", "r", 1);
        let text = String::from_utf8(t.push(&body)).unwrap();
        assert!(text.contains("throttlingException: Too many tokens"), "{text}");
        assert!(t.push(&frame("event", "messageStop", "{}")).is_empty());
    }

    #[test]
    fn errors_take_their_code_from_the_error_type_header() {
        let (s, b) = error_to_openai(
            429,
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            br#"{"message":"Too many tokens"}"#,
        );
        let v: Value = crate::wire::from_slice(&b).unwrap();
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["message"].as_str()),
            (429, Some("rate_limit_exceeded"), Some("Too many tokens"))
        );
        let (_, b) = error_to_openai(403, "InvalidSignatureException", br#"{"Message":"sig"}"#);
        assert!(String::from_utf8_lossy(&b).contains("upstream_authentication"));
    }
}
