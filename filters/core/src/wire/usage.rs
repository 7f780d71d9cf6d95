//! Token usage, normalised to OpenAI's meaning: `input` includes cached input, `output`
//! includes reasoning.

use crate::wire::tree::Value;

use crate::text::Text;
use crate::wire::facts::{AnswerFacts, Finish};
use crate::wire::obj;
use crate::wire::sse;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
    /// Input written to the provider's prompt cache (Anthropic's and Bedrock's cache writes,
    /// priced apart: Anthropic charges 1.25x input for them); part of `input`, never of
    /// `cached_input` (the reads).
    pub cache_write: u64,
    /// Of `cache_write`, what was written for an hour (Anthropic's `ttl: "1h"`, 2x input; the
    /// rest is written for five minutes).
    pub cache_write_1h: u64,
}
crate::wire::object::json_object!(Usage {
    input: "input" [required],
    cached_input: "cached_input" [required],
    output: "output" [required],
    reasoning: "reasoning" [required],
    cache_write: "cache_write" [],
    cache_write_1h: "cache_write_1h" [],
});

impl Usage {
    /// The usage for filter state, from the attempt to the listener ([`crate::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::Writer::new();
        w.u64(self.input).u64(self.cached_input).u64(self.output).u64(self.reasoning);
        w.u64(self.cache_write).u64(self.cache_write_1h);
        w.finish()
    }

    /// What [`Usage::encode`] wrote (or a module before cache writes were counted: four
    /// numbers, or before their hour was: five); `None` when it cannot be read.
    pub fn decode(bytes: &[u8]) -> Option<Usage> {
        let mut r = crate::codec::Reader::new(bytes)?;
        let mut u = Usage {
            input: r.u64()?,
            cached_input: r.u64()?,
            output: r.u64()?,
            reasoning: r.u64()?,
            ..Usage::default()
        };
        if !r.at_end() {
            u.cache_write = r.u64()?;
        }
        if !r.at_end() {
            u.cache_write_1h = r.u64()?;
        }
        r.at_end().then_some(u)
    }

    /// Reads an OpenAI `usage` object.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        if v.get("input_tokens").is_some() {
            return Usage::from_responses(v);
        }
        let input = v.get("prompt_tokens")?.as_u64()?;
        // Embeddings report input only.
        let output = v.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
        let cached_input = v.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
        let reasoning = v.pointer("/completion_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0);
        Some(Usage {
            input,
            cached_input: cached_input.min(input),
            output,
            reasoning: reasoning.min(output),
            ..Usage::default()
        })
    }

    /// Reads OpenAI's Responses `usage` (`input_tokens`, `output_tokens` and their details), or
    /// Anthropic's Messages `usage`: the same two names, with the cache's reads and writes
    /// counted apart from `input_tokens` (normalised: input includes them, cached input is the
    /// reads).
    pub fn from_responses(v: &Value) -> Option<Usage> {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (read, written) = (n("cache_read_input_tokens"), n("cache_creation_input_tokens"));
        let input = v.get("input_tokens")?.as_u64()?.saturating_add(read).saturating_add(written);
        let output = n("output_tokens");
        let cached_input = v.pointer("/input_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(read);
        let reasoning = v.pointer("/output_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0);
        let cached_input = cached_input.min(input);
        let cache_write = written.min(input - cached_input);
        let hour = v.pointer("/cache_creation/ephemeral_1h_input_tokens").and_then(Value::as_u64).unwrap_or(0);
        Some(Usage {
            input,
            cached_input,
            output,
            reasoning: reasoning.min(output),
            cache_write,
            cache_write_1h: hour.min(cache_write),
        })
    }

    /// A Messages stream's usage so far, with what one of its events says (`message_start`'s
    /// `message.usage`, a `message_delta`'s `usage`: counts that are cumulative, the input ones
    /// not always repeated).
    pub fn with_messages_event(prior: Option<Usage>, u: &Value) -> Usage {
        let mut out = prior.unwrap_or_default();
        if let Some(now) = u.get("input_tokens").and_then(|_| Usage::from_responses(u)) {
            out.input = now.input;
            out.cached_input = now.cached_input;
            out.cache_write = now.cache_write;
            out.cache_write_1h = now.cache_write_1h;
        }
        if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
            out.output = o;
        }
        out
    }

    /// Writes an OpenAI `usage` object.
    pub fn to_openai(&self) -> Value {
        obj! {
            "prompt_tokens" => self.input,
            "completion_tokens" => self.output,
            "total_tokens" => self.input + self.output,
            "prompt_tokens_details" = obj!{"cached_tokens" => self.cached_input},
            "completion_tokens_details" = obj!{"reasoning_tokens" => self.reasoning},
        }
    }
}

/// Usage from a complete OpenAI chat completion body: `Err` when the body is not a JSON
/// object at all, `Ok(None)` when it has no usable `usage`. Other fields are skipped unparsed.
pub fn from_openai_body(body: &[u8]) -> Result<Option<Usage>, crate::wire::read::Error> {
    struct WithUsage {
        usage: Option<Value>,
    }
    crate::wire::object::from_object!(WithUsage {
        usage: "usage" [],
    });
    let parsed: WithUsage = crate::wire::from_slice(body)?;
    Ok(parsed.usage.as_ref().and_then(Usage::from_openai))
}

/// Watches a stream as it streams past, without holding it back: its usage, how many content
/// events it carried, and how it ended. It reads the formats a caller may receive: OpenAI chat
/// chunks (ended by `data: [DONE]`), Anthropic Messages events (ended by `message_stop`) and
/// Responses events (ended by `response.completed` or `.incomplete`, which carry the usage).
///
/// `FACTS`: whether it also notes the answer's facts (the audit record's); quota, which needs
/// only the usage and how the stream ended, reads without them (and its module holds no code
/// for them).
#[derive(Debug, Default)]
pub struct StreamScanner<const FACTS: bool = true> {
    parser: sse::Parser,
    pub usage: Option<Usage>,
    /// Events that carried generated content (text or a tool call): a floor on the output
    /// tokens streamed so far.
    pub content_events: u64,
    /// The stream's own end marker arrived (`[DONE]`, or Messages' `message_stop`).
    pub saw_end: bool,
    pub saw_error: bool,
    /// How it ended, tool calls, refusal and the text's head (no length or digest: a stream is
    /// not collected).
    pub facts: crate::wire::facts::AnswerFacts,
}

/// The string value of `"key":` in one event's JSON text (stop reasons: no escapes in them).
fn string_field<'a>(data: &'a str, key: &str) -> Option<&'a str> {
    let at = data.find_str(key)? + key.len();
    let rest = data[at..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    rest.parts(b'"').next()
}

/// The text one content event carries (for the head), in any of the caller formats: a chat
/// chunk's `content`, a Messages `text_delta`'s `text`, a Responses text delta's `delta`. Read
/// from the event's text without parsing it (only a string with escapes is decoded).
fn event_text(data: &str) -> Option<std::borrow::Cow<'_, str>> {
    let start =
        ["\"content\":\"", "\"text\":\"", "\"delta\":\""].iter().find_map(|k| data.find_str(k).map(|i| i + k.len()))?;
    let bytes = data.as_bytes();
    let mut i = start;
    let mut escaped = false;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => break,
            _ => i += 1,
        }
    }
    let raw = data.get(start..i)?;
    if !escaped {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    crate::wire::from_str::<String>(data.get(start - 1..=i)?).ok().map(std::borrow::Cow::Owned)
}

/// How an event bears on an answer's facts: a stop reason, a tool call starting, a refusal.
fn note_facts(facts: &mut AnswerFacts, event: Option<&str>, d: &str) {
    if let Some(r) = string_field(d, "\"finish_reason\"").or_else(|| string_field(d, "\"stop_reason\"")) {
        facts.finish = Some(Finish::of(r));
    }
    let starts_call = (d.has("\"tool_calls\"") && d.has("\"type\":\"function\""))
        || (event == Some("content_block_start") && d.has("\"type\":\"tool_use\""))
        || (event == Some("response.output_item.added") && d.has("\"type\":\"function_call\""));
    if starts_call {
        facts.tool_calls = facts.tool_calls.saturating_add(1);
    }
    // The gateway's own end of a stream that was not the JSON asked for.
    if d.has("\"invalid_model_output\"") {
        facts.json_valid = Some(false);
    }
    if string_field(d, "\"refusal\"").is_some_and(|r| !r.is_empty()) || event == Some("response.refusal.delta") {
        facts.refused = true;
    }
}

// (`push` is defined for each kind, not generically, so that it is compiled here once: a generic
// one would be compiled again, with its serde code, in each filter crate that calls it.)
impl StreamScanner<true> {
    pub fn push(&mut self, chunk: &[u8]) {
        self.push_chunk(chunk);
    }
}

impl StreamScanner<false> {
    pub fn push(&mut self, chunk: &[u8]) {
        self.push_chunk(chunk);
    }
}

impl<const FACTS: bool> StreamScanner<FACTS> {
    fn push_chunk(&mut self, chunk: &[u8]) {
        let mut parser = std::mem::take(&mut self.parser);
        parser.push_each(chunk, |event, data| self.event(event, data));
        self.parser = parser;
    }

    /// One event of the stream.
    fn event(&mut self, event: Option<&str>, data: &str) {
        // The end marker of each format: OpenAI chat, Messages, Responses.
        if data == "[DONE]" || matches!(event, Some("message_stop" | "response.completed" | "response.incomplete")) {
            self.saw_end = true;
            // Responses' last event carries the whole response, with its usage.
            if event != Some("message_stop") && data != "[DONE]" {
                if let Ok(v) = crate::wire::from_str::<Value>(data) {
                    if let Some(u) = v.pointer("/response/usage").and_then(Usage::from_responses) {
                        self.usage = Some(u);
                    }
                    if !FACTS {
                        return;
                    }
                    let reason = v.pointer("/response/incomplete_details/reason").and_then(Value::as_str);
                    let status = v.pointer("/response/status").and_then(Value::as_str);
                    self.facts.finish = match (reason, status) {
                        (Some(r), _) => Some(Finish::of(r)),
                        (None, Some("completed")) if self.facts.tool_calls > 0 => Some(Finish::ToolCalls),
                        (None, Some(s)) => Some(Finish::of(s)),
                        (None, None) => self.facts.finish,
                    };
                }
            }
            return;
        }
        if matches!(event, Some("error" | "response.failed")) {
            self.saw_error = true;
        }
        // A Messages stream's usage: the input in `message_start`'s message, the output (and
        // in newer versions the input again) in `message_delta`.
        if matches!(event, Some("message_start" | "message_delta")) && data.has("\"usage\"") {
            if let Ok(v) = crate::wire::from_str::<Value>(data) {
                let u = if event == Some("message_start") { v.pointer("/message/usage") } else { v.get("usage") };
                if let Some(u) = u {
                    self.usage = Some(Usage::with_messages_event(self.usage, u));
                }
            }
            if FACTS {
                note_facts(&mut self.facts, event, data);
            }
            return;
        }
        let shape = crate::wire::scan::shape(data);
        let content = shape.is_content();
        if content {
            self.content_events += 1;
            if FACTS && !self.facts.head_full() {
                if let Some(t) = event_text(data) {
                    self.facts.push_head(&t);
                }
            }
        }
        // A text delta says nothing more (a refusal or the gateway's own end come in events
        // of their own), unless it is a tool call's or the last one carries the stop reason.
        if FACTS && (!content || shape.tool_calls || shape.finish_reason) {
            note_facts(&mut self.facts, event, data);
        }
        // (A chunk of a stream asked with usage says `"usage":null` until the last: only a
        // value is worth parsing the event for.)
        if shape.usage || shape.error {
            if let Ok(v) = crate::wire::from_str::<Value>(data) {
                if v.get("error").is_some_and(|e| !e.is_null()) {
                    self.saw_error = true;
                }
                if let Some(u) = v.get("usage").and_then(Usage::from_openai) {
                    self.usage = Some(u);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_crosses_in_its_binary_encoding_and_a_cut_value_reads_as_none() {
        let u = Usage { input: 8, cached_input: 2, output: u64::MAX, reasoning: 0, cache_write: 3, cache_write_1h: 1 };
        let bytes = u.encode();
        assert_eq!(Usage::decode(&bytes), Some(u));
        // Cut anywhere, it reads as nothing, but where the four numbers of a module before cache
        // writes end, or the five of one before their hour: those read as such a module wrote them.
        let older = [Usage { cache_write: 0, cache_write_1h: 0, ..u }, Usage { cache_write_1h: 0, ..u }];
        let cuts =
            |w: Usage| (0..bytes.len()).filter(|&cut| Usage::decode(&bytes[..cut]) == Some(w)).collect::<Vec<_>>();
        let old_lens: Vec<usize> = older.iter().flat_map(|w| cuts(*w)).collect();
        assert_eq!(old_lens.len(), 2);
        assert!((0..bytes.len()).filter(|c| !old_lens.contains(c)).all(|cut| Usage::decode(&bytes[..cut]).is_none()));
        assert_eq!(Usage::decode(br#"{"input":8,"cached_input":2,"output":3,"reasoning":0}"#), None);
    }

    #[test]
    fn body_usage_with_details() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(
            from_openai_body(body).ok(),
            Some(Some(Usage {
                input: 10,
                cached_input: 4,
                output: 5,
                reasoning: 2,
                cache_write: 0,
                cache_write_1h: 0
            }))
        );
        assert_eq!(from_openai_body(br#"{"id":"x"}"#).ok(), Some(None));
        assert!(from_openai_body(b"not json").is_err());
        assert!(from_openai_body(br#"{"id":"x","choices":[{"#).is_err());
    }

    #[test]
    fn only_members_with_a_value_are_worth_a_parse() {
        let usage = |d: &str| crate::wire::scan::shape(d).usage;
        assert!(!usage(r#"{"choices":[],"usage":null}"#));
        assert!(!usage(r#"{"choices":[], "usage" : null}"#));
        assert!(usage(r#"{"choices":[],"usage":{"prompt_tokens":3}}"#));
        assert!(usage(r#"{"usage" : {"prompt_tokens":3}}"#));
        // A string value named like the key is not a member.
        assert!(!crate::wire::scan::shape(r#"{"type":"error"}"#).error);
        assert!(crate::wire::scan::shape(r#"{"type":"error","error":{"type":"overloaded_error"}}"#).error);
        assert!(!usage(r#"{"delta":{"content":"the \"usage\": of it"}}"#));
    }

    #[test]
    fn without_facts_it_reads_the_same_usage_and_end() {
        let s = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}],\"usage\":null}\n\ndata: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let (mut full, mut lean) = (StreamScanner::<true>::default(), StreamScanner::<false>::default());
        for c in s.chunks(5) {
            full.push(c);
            lean.push(c);
        }
        assert_eq!(
            (lean.usage, lean.content_events, lean.saw_end, lean.saw_error),
            (full.usage, full.content_events, full.saw_end, full.saw_error)
        );
        assert_eq!((full.content_events, full.saw_end), (1, true));
        assert!(
            full.usage.is_some() && full.facts.finish.is_some() && full.facts.head_full() == lean.facts.head_full()
        );
        assert!(lean.facts.finish.is_none(), "no facts noted");
    }

    #[test]
    fn stream_usage_found_across_chunks() {
        let s = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let mut sc = StreamScanner::<true>::default();
        for c in s.chunks(7) {
            sc.push(c);
        }
        assert_eq!(
            sc.usage,
            Some(Usage { input: 3, cached_input: 0, output: 1, reasoning: 0, cache_write: 0, cache_write_1h: 0 })
        );
        assert!(sc.saw_end);
        assert!(!sc.saw_error);
        assert_eq!(sc.content_events, 1);
    }

    #[test]
    fn a_stream_tells_how_it_ended_its_tool_calls_refusals_and_head() {
        let chat = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"I can\\u2019t \"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"say \\\"finish_reason\\\":\\\"length\\\"\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n",
        );
        let mut sc = StreamScanner::<true>::default();
        for c in chat.as_bytes().chunks(9) {
            sc.push(c);
        }
        assert_eq!(sc.facts.finish, Some(Finish::Stop));
        assert_eq!(sc.facts.head, "I can\u{2019}t say \"finish_reason\":\"length\"");
        // The last text delta carrying the stop reason itself.
        let mut sc = StreamScanner::<true>::default();
        sc.push(b"data: {\"choices\":[{\"delta\":{\"content\":\"end\"},\"finish_reason\":\"length\"}]}\n\n");
        assert_eq!((sc.facts.finish, sc.facts.head.as_str()), (Some(Finish::Length), "end"));
        assert!(!sc.facts.refused && sc.facts.tool_calls == 0);
        let tools = concat!(
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":\"w\",\"arguments\":\"\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{}\"}}]}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{},\"finish_reason\": \"tool_calls\"}]}\n\n",
        );
        let mut sc = StreamScanner::<true>::default();
        sc.push(tools.as_bytes());
        assert_eq!((sc.facts.finish, sc.facts.tool_calls), (Some(Finish::ToolCalls), 1));
        let refused = "data: {\"choices\":[{\"delta\":{\"refusal\":\"No.\"},\"finish_reason\":null}]}\n\n";
        let mut sc = StreamScanner::<true>::default();
        sc.push(refused.as_bytes());
        assert!(sc.facts.refused);
        let messages = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"w\",\"input\":{}}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\",\"stop_sequence\":null}}\n\n",
        );
        let mut sc = StreamScanner::<true>::default();
        sc.push(messages.as_bytes());
        assert_eq!((sc.facts.finish, sc.facts.tool_calls), (Some(Finish::Length), 1));
        let responses = concat!(
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.incomplete\ndata: {\"type\":\"response.incomplete\",\"response\":{\"status\":\"incomplete\",",
            "\"incomplete_details\":{\"reason\":\"content_filter\"}}}\n\n",
        );
        let mut sc = StreamScanner::<true>::default();
        sc.push(responses.as_bytes());
        assert_eq!((sc.facts.finish, sc.facts.head.as_str()), (Some(Finish::ContentFilter), "Hi"));
    }

    #[test]
    fn messages_streams_end_with_message_stop_and_count_their_deltas() {
        let s = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"a\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"b\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
        let mut sc = StreamScanner::<true>::default();
        for c in s.as_bytes().chunks(5) {
            sc.push(c);
        }
        assert!(sc.saw_end && !sc.saw_error);
        assert_eq!(sc.content_events, 2);
        let mut sc = StreamScanner::<true>::default();
        sc.push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n");
        assert!(sc.saw_error && !sc.saw_end);
        // An OpenAI role chunk carries no content; a tool-call chunk does.
        let mut sc = StreamScanner::<true>::default();
        sc.push(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        sc.push(b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0}]}}]}\n\n");
        assert_eq!(sc.content_events, 1);
    }

    #[test]
    fn a_messages_streams_usage_is_its_start_and_its_last_delta_with_the_cache_in_the_input() {
        let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":4,\"cache_creation_input_tokens\":10,\"cache_read_input_tokens\":20,\"output_tokens\":1}}}\n\n";
        let delta = |u: &str| {
            format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{u}}}\n\n")
        };
        let mut sc = StreamScanner::<true>::default();
        sc.push(start.as_bytes());
        assert_eq!(sc.usage.map(|u| (u.input, u.cached_input, u.output)), Some((34, 20, 1)));
        sc.push(delta("{\"output_tokens\":15}").as_bytes());
        assert_eq!(sc.usage.map(|u| (u.input, u.cached_input, u.output)), Some((34, 20, 15)));
        assert_eq!(sc.facts.finish, Some(Finish::Stop));
        // Newer versions repeat the input in the delta: it counts as said there.
        sc.push(delta("{\"input_tokens\":4,\"cache_read_input_tokens\":0,\"output_tokens\":16}").as_bytes());
        assert_eq!(sc.usage.map(|u| (u.input, u.cached_input, u.output)), Some((4, 0, 16)));
        // A whole answer's usage reads the same way; Responses usage is unchanged.
        let v = crate::json!({"input_tokens": 4, "cache_read_input_tokens": 20, "cache_creation_input_tokens": 10, "output_tokens": 6});
        assert_eq!(Usage::from_openai(&v).map(|u| (u.input, u.cached_input, u.output)), Some((34, 20, 6)));
        let r = crate::json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 1});
        assert_eq!(Usage::from_openai(&r).map(|u| (u.input, u.cached_input, u.output)), Some((9, 2, 1)));
    }
}
