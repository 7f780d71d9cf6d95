//! The unified answer: an OpenAI chat completion, as every provider's whole answer becomes one.
//!
//! Each provider module reads its own answer into a borrowed, typed form and fills an
//! [`Answer`] directly (one translation per format pair, no pivot through another provider's
//! format, no `crate::wire::tree::Value` tree); [`Answer::to_bytes`] writes it.

use crate::text::{Put, PutBytes, Text};
use std::borrow::Cow;

use crate::wire::write::to_object;

use crate::wire::usage::Usage;
use crate::wire::{obj, ToTree};

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

struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a Option<Cow<'a, str>>,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
}
to_object!(Completion<'a> {
    id: "id" [],
    object: "object" [],
    created: "created" [],
    model: "model" [],
    choices: "choices" [],
    usage: "usage" [],
});

struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}
to_object!(Choice<'a> {
    index: "index" [],
    message: "message" [],
    logprobs: "logprobs" [],
    finish_reason: "finish_reason" [],
});

struct Message<'a> {
    role: &'static str,
    /// Null when the answer is only tool calls.
    content: Option<&'a str>,
    refusal: Option<()>,
    tool_calls: &'a [ToolCallOut<'a>],
}
to_object!(Message<'a> {
    role: "role" [],
    content: "content" [],
    refusal: "refusal" [],
    tool_calls: "tool_calls" [skip_empty],
});

struct ToolCallOut<'a> {
    id: &'a Option<Cow<'a, str>>,
    kind: &'static str,
    function: FunctionOut<'a>,
}
to_object!(ToolCallOut<'a> {
    id: "id" [],
    kind: "type" [],
    function: "function" [],
});

struct FunctionOut<'a> {
    name: &'a Option<Cow<'a, str>>,
    arguments: &'a str,
}
to_object!(FunctionOut<'a> {
    name: "name" [],
    arguments: "arguments" [],
});

/// OpenAI's `usage` object.
pub struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
    completion_tokens_details: ReasoningTokens,
}
to_object!(OpenAiUsage {
    prompt_tokens: "prompt_tokens" [],
    completion_tokens: "completion_tokens" [],
    total_tokens: "total_tokens" [],
    prompt_tokens_details: "prompt_tokens_details" [],
    completion_tokens_details: "completion_tokens_details" [],
});

struct CachedTokens {
    cached_tokens: u64,
}
to_object!(CachedTokens {
    cached_tokens: "cached_tokens" [],
});

struct ReasoningTokens {
    reasoning_tokens: u64,
}
to_object!(ReasoningTokens {
    reasoning_tokens: "reasoning_tokens" [],
});

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
    /// What the answer says (drift signals, shadow comparison), from the answer itself: the
    /// same facts [`crate::wire::facts::read_whole`] reads from its JSON.
    pub fn facts(&self) -> crate::wire::facts::AnswerFacts {
        let mut f = crate::wire::facts::AnswerFacts {
            finish: Some(crate::wire::facts::Finish::of(self.finish_reason)),
            ..Default::default()
        };
        let calls: Vec<(Option<&str>, Option<&str>)> =
            self.tool_calls.iter().map(|c| (c.name.as_deref(), Some(c.arguments.as_ref()))).collect();
        let texts: &[&str] = if self.text.is_empty() { &[] } else { &[self.text.as_str()] };
        crate::wire::facts::describe(&mut f, texts, &calls);
        f
    }

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
        crate::wire::write::to_vec(&out)
    }
}

/// The chunk after the last choice's, for a caller who asked for usage: no choices, the usage.
pub fn usage_event<M: ToTree + ?Sized>(out: &mut Vec<u8>, (id, created, model): (&str, u64, &M), usage: &Usage) {
    let c = obj! {
        "id" => id,
        "object" => "chat.completion.chunk",
        "created" => created,
        "model" => model,
        "choices" = crate::wire::tree::Value::Array(Vec::new()),
        "usage" = usage.to_openai(),
    };
    crate::wire::sse::tree_event(out, &c);
}

/// The delta that starts tool call `index` of a streamed answer (its arguments follow).
pub fn tool_call_start(
    index: u64,
    id: Option<&crate::wire::tree::Value>,
    name: Option<&crate::wire::tree::Value>,
) -> crate::wire::tree::Value {
    obj! {
        "tool_calls" = crate::wire::tree::Value::Array(vec![obj! {
            "index" => index,
            "id" => id,
            "type" => "function",
            "function" = obj! {"name" => name, "arguments" => ""},
        }]),
    }
}

/// One chat completion chunk of one choice, as the stream translators write it (`usage`: the
/// chunk carries `"usage": null`, as OpenAI's do for a caller who asked for usage).
pub fn chunk_event<M: ToTree + ?Sized>(
    out: &mut Vec<u8>,
    (id, created, model): (&str, u64, &M),
    delta: crate::wire::tree::Value,
    finish: crate::wire::tree::Value,
    usage: bool,
) {
    let mut c = obj! {
        "id" => id,
        "object" => "chat.completion.chunk",
        "created" => created,
        "model" => model,
        "choices" = crate::wire::tree::Value::Array(vec![obj! {
            "index" => 0u64,
            "delta" = delta,
            "logprobs" = crate::wire::tree::Value::Null,
            "finish_reason" = finish,
        }]),
    };
    if usage {
        c["usage"] = crate::wire::tree::Value::Null;
    }
    crate::wire::sse::tree_event(out, &c);
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
    use crate::wire::tree::Value;
    let a: Value = crate::wire::from_slice(body).ok()?;
    let choice = a.get("choices")?.get(0)?;
    let message = choice.get("message")?;
    let head = |choices: Value| {
        obj! {
            "id" => a.get("id"),
            "object" => "chat.completion.chunk",
            "created" => a.get("created"),
            "model" => a.get("model"),
            "choices" = choices,
        }
    };
    let mut out = Vec::new();
    let mut delta = obj! {"role" => "assistant", "content" => message.get("content").cloned().unwrap_or(Value::Null)};
    if let Some(r) = message.get("refusal").filter(|r| !r.is_null()) {
        delta["refusal"] = r.clone();
    }
    crate::wire::sse::tree_event(
        &mut out,
        &head(crate::wire::tree::Value::Array(vec![obj! {
            "index" => 0u64,
            "delta" = delta,
            "logprobs" = crate::wire::tree::Value::Null,
            "finish_reason" = crate::wire::tree::Value::Null,
        }])),
    );
    for (i, call) in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let mut c = call.clone();
        if let Some(o) = c.as_object_mut() {
            o.insert("index".own(), ToTree::to_tree(&i));
        }
        crate::wire::sse::tree_event(
            &mut out,
            &head(crate::wire::tree::Value::Array(vec![obj! {
                "index" => 0u64,
                "delta" = obj!{"tool_calls" = crate::wire::tree::Value::Array(vec![ToTree::to_tree(&c)])},
                "logprobs" = crate::wire::tree::Value::Null,
                "finish_reason" = crate::wire::tree::Value::Null,
            }])),
        );
    }
    let finish = choice.get("finish_reason").cloned().unwrap_or(ToTree::to_tree(&"stop"));
    crate::wire::sse::tree_event(
        &mut out,
        &head(crate::wire::tree::Value::Array(vec![obj! {
            "index" => 0u64,
            "delta" = obj!{},
            "logprobs" = crate::wire::tree::Value::Null,
            "finish_reason" = finish,
        }])),
    );
    if let Some(u) = a.get("usage").filter(|u| !u.is_null()) {
        let mut last = head(crate::wire::tree::Value::Array(Vec::new()));
        last["usage"] = u.clone();
        crate::wire::sse::tree_event(&mut out, &last);
    }
    out.put(b"data: [DONE]\n\n");
    Some(out)
}

/// Collects a unified stream (chat chunks) into the whole answer it amounts to, as
/// [`stream_from_answer`] would replay it: the text, the tool calls, the finish and the usage.
/// Only a stream that ended well (`[DONE]` after a finish, no error event) amounts to one.
#[derive(Default)]
pub struct StreamCollector {
    parser: crate::wire::sse::Parser,
    head: Option<(crate::wire::tree::Value, crate::wire::tree::Value, crate::wire::tree::Value)>,
    content: String,
    saw_content: bool,
    /// By index: id, name, arguments.
    tool_calls: Vec<(crate::wire::tree::Value, String, String)>,
    finish: Option<crate::wire::tree::Value>,
    usage: Option<crate::wire::tree::Value>,
    done: bool,
    broken: bool,
    /// More than this many bytes of text: not worth keeping (nor holding).
    limit: usize,
}

impl StreamCollector {
    /// A collector that gives up past `limit` bytes of collected text.
    pub fn new(limit: usize) -> StreamCollector {
        StreamCollector { limit, ..StreamCollector::default() }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        use crate::wire::tree::Value;
        if self.broken {
            return;
        }
        let mut events = Vec::new();
        self.parser.push(chunk, &mut events);
        for ev in events {
            if ev.data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(v) = crate::wire::from_str::<Value>(&ev.data) else {
                self.broken = true;
                return;
            };
            if v.get("error").is_some() || ev.event.as_deref() == Some("error") {
                self.broken = true;
                return;
            }
            if self.head.is_none() {
                let field = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
                self.head = Some((field("id"), field("created"), field("model")));
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                self.usage = Some(u.clone());
            }
            let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else { continue };
            if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
                self.finish = Some(f.clone());
            }
            let Some(delta) = choice.get("delta") else { continue };
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                self.content.put(t);
                self.saw_content = true;
            }
            for call in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let i = call.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
                if i > 128 {
                    self.broken = true;
                    return;
                }
                while self.tool_calls.len() <= i {
                    self.tool_calls.push((Value::Null, String::new(), String::new()));
                }
                let slot = &mut self.tool_calls[i];
                if let Some(id) = call.get("id").filter(|x| !x.is_null()) {
                    slot.0 = id.clone();
                }
                let f = call.get("function");
                if let Some(n) = f.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    slot.1.put(n);
                }
                if let Some(a) = f.and_then(|f| f.get("arguments")).and_then(Value::as_str) {
                    slot.2.put(a);
                }
            }
            let held = self.content.len() + self.tool_calls.iter().map(|t| t.1.len() + t.2.len()).sum::<usize>();
            if held > self.limit {
                self.broken = true;
                return;
            }
        }
    }

    /// Whether the stream's `[DONE]` came, or it broke: nothing more to collect.
    pub fn ended(&self) -> bool {
        self.done || self.broken
    }

    /// The whole answer (a chat completion), when the stream ended well.
    pub fn answer(&self) -> Option<Vec<u8>> {
        use crate::wire::tree::Value;
        if self.broken || !self.done {
            return None;
        }
        let finish = self.finish.clone()?;
        let (id, created, model) = self.head.clone()?;
        let mut message = obj! {
            "role" => "assistant",
            "content" => if self.saw_content || self.tool_calls.is_empty() { Value::String(self.content.own()) } else { Value::Null },
        };
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = self
                .tool_calls
                .iter()
                .map(|(id, name, args)| {
                    obj! {
                        "id" => id,
                        "type" => "function",
                        "function" = obj!{"name" => name, "arguments" => args},
                    }
                })
                .collect();
        }
        let mut a = obj! {
            "id" = id,
            "object" => "chat.completion",
            "created" = created,
            "model" = model,
            "choices" = crate::wire::tree::Value::Array(vec![obj!{
                "index" => 0u64,
                "message" = message,
                "logprobs" = crate::wire::tree::Value::Null,
                "finish_reason" = finish,
            }]),
        };
        if let Some(u) = &self.usage {
            a["usage"] = u.clone();
        }
        Some(crate::wire::write::to_vec(&a))
    }

    /// The usage the stream reported.
    pub fn usage(&self) -> Option<Usage> {
        self.usage.as_ref().and_then(Usage::from_openai)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;
    use crate::wire::tree::Value;

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
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| crate::wire::from_str(d).unwrap()).collect();
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
    fn a_stream_is_collected_into_the_answer_it_replays() {
        let a = Answer {
            id: completion_id("msg_1"),
            model: Some("m".into()),
            text: "Hi there".into(),
            tool_calls: vec![ToolCall { id: Some("c".into()), name: Some("f".into()), arguments: "{\"a\":1}".into() }],
            finish_reason: "tool_calls",
            usage: Usage { input: 10, output: 3, ..Usage::default() },
        };
        let whole: Value = crate::wire::from_slice(&a.to_bytes(7)).unwrap();
        let stream = stream_from_answer(&a.to_bytes(7)).unwrap();
        // Fed in pieces of any size, the stream amounts to the same answer.
        for cut in [1, 7, 64, stream.len()] {
            let mut c = StreamCollector::new(1 << 20);
            for piece in stream.chunks(cut) {
                c.push(piece);
            }
            let got: Value = crate::wire::from_slice(&c.answer().unwrap()).unwrap();
            assert_eq!(got["choices"][0]["message"]["content"], whole["choices"][0]["message"]["content"]);
            assert_eq!(got["choices"][0]["message"]["tool_calls"], whole["choices"][0]["message"]["tool_calls"]);
            assert_eq!((got["id"].clone(), got["usage"].clone()), (whole["id"].clone(), whole["usage"].clone()));
            assert_eq!(got["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(c.usage().map(|u| u.output), Some(3));
        }
        // Deltas add up; a stream cut short, with an error, or too long amounts to nothing.
        let chunk = |d: &str, f: &str| {
            format!("data: {{\"id\":\"x\",\"choices\":[{{\"index\":0,\"delta\":{d},\"finish_reason\":{f}}}]}}\n\n")
        };
        let good = [
            chunk(r#"{"content":"Pa"}"#, "null"),
            chunk(r#"{"content":"ris"}"#, "null"),
            chunk("{}", "\"stop\""),
            "data: [DONE]\n\n".into(),
        ];
        let mut c = StreamCollector::new(100);
        good.iter().for_each(|p| c.push(p.as_bytes()));
        let got: Value = crate::wire::from_slice(&c.answer().unwrap()).unwrap();
        assert_eq!(got["choices"][0]["message"]["content"], "Paris");
        let mut cut = StreamCollector::new(100);
        good[..3].iter().for_each(|p| cut.push(p.as_bytes()));
        assert!(cut.answer().is_none(), "no [DONE]");
        let mut err = StreamCollector::new(100);
        err.push(b"data: {\"error\":{\"message\":\"x\"}}\n\ndata: [DONE]\n\n");
        assert!(err.answer().is_none());
        let mut long = StreamCollector::new(3);
        good.iter().for_each(|p| long.push(p.as_bytes()));
        assert!(long.answer().is_none());
    }

    #[test]
    fn an_answer_is_written_as_a_chat_completion() {
        let a = Answer {
            id: completion_id("msg_1"),
            model: Some("m".into()),
            text: "Hi \"there\"".into(),
            tool_calls: Vec::new(),
            finish_reason: "stop",
            usage: Usage { input: 10, cached_input: 4, output: 3, reasoning: 1, cache_write: 0, cache_write_1h: 0 },
        };
        let v: Value = crate::wire::from_slice(&a.to_bytes(7)).unwrap();
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
        let v: Value = crate::wire::from_slice(&a.to_bytes(7)).unwrap();
        assert_eq!(v["model"], Value::Null);
        assert_eq!(v["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"],
            json!([{"id": "c", "type": "function", "function": {"name": null, "arguments": "{\"a\":1}"}}])
        );
    }
}
