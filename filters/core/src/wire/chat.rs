//! The unified answer: an OpenAI chat completion, as every provider's whole answer becomes one.
//!
//! Each provider module reads its own answer into a borrowed, typed form and fills an
//! [`Answer`] directly (one translation per format pair, no pivot through another provider's
//! format, no `serde_json::Value` tree); [`Answer::to_bytes`] writes it.

use std::borrow::Cow;

use serde::Serialize;

use crate::wire::usage::Usage;

/// One tool call of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall<'a> {
    pub id: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    /// The arguments as JSON text (OpenAI carries them as a string).
    pub arguments: Cow<'a, str>,
}

/// A whole answer in the unified format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<'a> {
    /// `chatcmpl-…`.
    pub id: String,
    pub model: Option<Cow<'a, str>>,
    pub text: String,
    pub tool_calls: Vec<ToolCall<'a>>,
    /// OpenAI's `finish_reason`: `stop`, `length`, `tool_calls` or `content_filter`.
    pub finish_reason: &'static str,
    pub usage: Usage,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a Option<Cow<'a, str>>,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    /// Null when the answer is only tool calls.
    content: Option<&'a str>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [ToolCallOut<'a>],
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a Option<Cow<'a, str>>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a Option<Cow<'a, str>>,
    arguments: &'a str,
}

/// OpenAI's `usage` object.
#[derive(Serialize)]
pub struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    completion_tokens_details: ReasoningTokens,
}

#[derive(Serialize)]
struct CachedTokens {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct ReasoningTokens {
    reasoning_tokens: u64,
}

impl OpenAiUsage {
    pub fn of(u: &Usage) -> OpenAiUsage {
        OpenAiUsage {
            prompt_tokens: u.input,
            completion_tokens: u.output,
            total_tokens: u.input.saturating_add(u.output),
            prompt_tokens_details: CachedTokens { cached_tokens: u.cached_input },
            completion_tokens_details: ReasoningTokens { reasoning_tokens: u.reasoning },
        }
    }
}

impl Answer<'_> {
    /// The chat completion's JSON, `created` at that Unix time.
    pub fn to_bytes(&self, created: u64) -> Vec<u8> {
        let calls: Vec<ToolCallOut<'_>> = self
            .tool_calls
            .iter()
            .map(|c| ToolCallOut {
                id: &c.id,
                kind: "function",
                function: FunctionOut { name: &c.name, arguments: &c.arguments },
            })
            .collect();
        let content = if self.text.is_empty() && !calls.is_empty() { None } else { Some(self.text.as_str()) };
        let out = Completion {
            id: &self.id,
            object: "chat.completion",
            created,
            model: &self.model,
            choices: [Choice {
                index: 0,
                message: Message { role: "assistant", content, refusal: None, tool_calls: &calls },
                logprobs: None,
                finish_reason: self.finish_reason,
            }],
            usage: OpenAiUsage::of(&self.usage),
        };
        serde_json::to_vec(&out).unwrap_or_default()
    }
}

/// A provider's message id as a chat completion id (`msg_01A` -> `chatcmpl-01A`).
pub fn completion_id(msg_id: &str) -> String {
    format!("chatcmpl-{}", msg_id.strip_prefix("msg_").unwrap_or(msg_id))
}

/// A whole chat completion (OpenAI's format) replayed as the stream that would have brought it:
/// a chunk with the role and the text, one per tool call, the finish, the usage chunk (the
/// listener takes it out for a caller who asked for none) and `[DONE]`. `None`: the answer
/// is not a chat completion.
pub fn stream_from_answer(body: &[u8]) -> Option<Vec<u8>> {
    use serde_json::{json, Value};
    let a: Value = serde_json::from_slice(body).ok()?;
    let choice = a.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let head = |choices: Value| {
        json!({"id": a.get("id"), "object": "chat.completion.chunk", "created": a.get("created"),
               "model": a.get("model"), "choices": choices})
    };
    let mut out = Vec::new();
    let mut delta = json!({"role": "assistant", "content": message.get("content").cloned().unwrap_or(Value::Null)});
    if let Some(r) = message.get("refusal").filter(|r| !r.is_null()) {
        delta["refusal"] = r.clone();
    }
    crate::wire::sse::data_event(
        &mut out,
        &head(json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}])).to_string(),
    );
    for (i, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let mut c = call.clone();
        if let Some(o) = c.as_object_mut() {
            o.insert("index".into(), json!(i));
        }
        crate::wire::sse::data_event(
            &mut out,
            &head(json!([{"index": 0, "delta": {"tool_calls": [c]}, "logprobs": null, "finish_reason": null}]))
                .to_string(),
        );
    }
    let finish = choice.get("finish_reason").cloned().unwrap_or(json!("stop"));
    crate::wire::sse::data_event(
        &mut out,
        &head(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish}])).to_string(),
    );
    if let Some(u) = a.get("usage").filter(|u| !u.is_null()) {
        let mut last = head(json!([]));
        last["usage"] = u.clone();
        crate::wire::sse::data_event(&mut out, &last.to_string());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_whole_answer_is_replayed_as_its_stream() {
        let a = Answer {
            id: completion_id("msg_1"),
            model: Some("m".into()),
            text: "Hi".into(),
            tool_calls: vec![ToolCall { id: Some("c".into()), name: Some("f".into()), arguments: "{}".into() }],
            finish_reason: "tool_calls",
            usage: Usage { input: 10, output: 3, ..Usage::default() },
        };
        let out = stream_from_answer(&a.to_bytes(7)).unwrap();
        let mut events = Vec::new();
        crate::wire::sse::Parser::default().push(&out, &mut events);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data.last(), Some(&"[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-1"));
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hi"}));
        assert_eq!(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(chunks[1]["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[3]["usage"]["prompt_tokens"], 10);
        assert_eq!(chunks[3]["choices"], json!([]));
        assert!(stream_from_answer(b"{}").is_none());
        assert!(stream_from_answer(b"nope").is_none());
    }

    #[test]
    fn an_answer_is_written_as_a_chat_completion() {
        let a = Answer {
            id: completion_id("msg_1"),
            model: Some("m".into()),
            text: "Hi \"there\"".into(),
            tool_calls: Vec::new(),
            finish_reason: "stop",
            usage: Usage { input: 10, cached_input: 4, output: 3, reasoning: 1 },
        };
        let v: Value = serde_json::from_slice(&a.to_bytes(7)).unwrap();
        assert_eq!(
            v,
            json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi \"there\"", "refusal": null},
                                "logprobs": null, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                             "prompt_tokens_details": {"cached_tokens": 4},
                             "completion_tokens_details": {"reasoning_tokens": 1}}})
        );
        // Only tool calls: content is null; a missing model or name is null.
        let a = Answer {
            model: None,
            text: String::new(),
            tool_calls: vec![ToolCall { id: Some("c".into()), name: None, arguments: "{\"a\":1}".into() }],
            finish_reason: "tool_calls",
            ..a
        };
        let v: Value = serde_json::from_slice(&a.to_bytes(7)).unwrap();
        assert_eq!(v["model"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"],
            json!([{"id": "c", "type": "function", "function": {"name": null, "arguments": "{\"a\":1}"}}])
        );
    }
}
