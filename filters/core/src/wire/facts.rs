//! What an answer says about the model's behaviour, for drift signals and the shadow comparison:
//! how it finished, how many tools it called, whether the provider refused, whether it was the
//! JSON the request asked for, and (whole answers) its length and a digest of it.
//!
//! A whole answer is read once, where the attempt already reads it (its usage), in the unified
//! format or as a Response object; a stream is read as it passes the listener
//! ([`crate::wire::usage::StreamScanner`]), in whichever format the caller gets.

use crate::text::Text;
use std::borrow::Cow;

#[cfg(test)]
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::wire::usage::Usage;

/// How many characters of an answer's text are kept to look for refusal phrases.
pub const HEAD_CHARS: usize = 160;

/// How an answer ended, in one vocabulary for every provider and door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
#[cfg_attr(test, serde(rename_all = "snake_case"))]
pub enum Finish {
    Stop,
    /// Cut by the output token limit.
    Length,
    ToolCalls,
    /// A provider's refusal or safety stop (Anthropic `refusal`, Gemini `SAFETY`, Bedrock
    /// guardrails: each translated to OpenAI's `content_filter`).
    ContentFilter,
    Other,
}

crate::wire::read::read_variants!(Finish);

impl crate::wire::write::WriteJson for Finish {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::wire::write::string(out, self.as_str());
    }
}

impl Finish {
    pub const ALL: [Finish; 5] =
        [Finish::Stop, Finish::Length, Finish::ToolCalls, Finish::ContentFilter, Finish::Other];

    /// From any provider's or door's stop reason.
    pub fn of(reason: &str) -> Finish {
        match reason {
            "stop" | "end_turn" | "stop_sequence" | "completed" => Finish::Stop,
            "length" | "max_tokens" | "max_output_tokens" => Finish::Length,
            "tool_calls" | "tool_use" | "function_call" => Finish::ToolCalls,
            "content_filter" | "refusal" => Finish::ContentFilter,
            _ => Finish::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
            Finish::Other => "other",
        }
    }
}

/// What the attempt (whole answers) or the listener (streams) saw of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct AnswerFacts {
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub finish: Option<Finish>,
    pub tool_calls: u32,
    /// The provider said it refused (OpenAI's `refusal`, a refusal part or stop reason).
    pub refused: bool,
    /// The text's first [`HEAD_CHARS`] characters (refusal phrases are looked for in them).
    pub head: String,
    /// Characters of text (whole answers).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub chars: Option<u64>,
    /// The first 16 hex digits of the SHA-256 of the text and the tool calls (whole answers).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub digest: Option<String>,
    /// The request asked for JSON: whether the answer was it.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub json_valid: Option<bool>,
}
crate::wire::object::from_object!(AnswerFacts {
    finish: "finish" [],
    tool_calls: "tool_calls" [],
    refused: "refused" [],
    head: "head" [],
    chars: "chars" [],
    digest: "digest" [],
    json_valid: "json_valid" [],
});

impl AnswerFacts {
    /// The facts for filter state, from the attempt to the listener ([`crate::codec`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::Writer::new();
        let finish = self.finish.map_or(0, |f| Finish::ALL.iter().position(|x| *x == f).map_or(0, |i| i as u8 + 1));
        w.u8(finish)
            .u64(u64::from(self.tool_calls))
            .u8(u8::from(self.refused))
            .str(&self.head)
            .opt_u64(self.chars)
            .opt_str(self.digest.as_deref())
            .u8(self.json_valid.map_or(0, |v| 1 + u8::from(v)));
        w.finish()
    }

    /// What [`AnswerFacts::encode`] wrote; `None` when it cannot be read.
    pub fn decode(bytes: &[u8]) -> Option<AnswerFacts> {
        let mut r = crate::codec::Reader::new(bytes)?;
        let f = AnswerFacts {
            finish: match r.u8()? {
                0 => None,
                i => Some(*Finish::ALL.get(usize::from(i) - 1)?),
            },
            tool_calls: u32::try_from(r.u64()?).ok()?,
            refused: r.u8()? == 1,
            head: r.str()?.own(),
            chars: r.opt_u64()?,
            digest: r.opt_str()?.map(str::to_string),
            json_valid: match r.u8()? {
                0 => None,
                v => Some(v == 2),
            },
        };
        r.at_end().then_some(f)
    }

    /// Adds text to the head, up to [`HEAD_CHARS`].
    pub fn push_head(&mut self, text: &str) {
        let room = HEAD_CHARS.saturating_sub(self.head.chars().count());
        self.head.extend(text.chars().take(room));
    }

    pub fn head_full(&self) -> bool {
        self.head.len() >= HEAD_CHARS
    }
}

struct AnswerJson<'a> {
    usage: Option<crate::wire::tree::Value>,
    choices: Vec<WholeChoice<'a>>,
    // A Response object's.
    status: Option<Cow<'a, str>>,
    incomplete_details: Option<Incomplete<'a>>,
    output: Option<Vec<OutputItem<'a>>>,
}
crate::wire::object::from_object!(AnswerJson<'a> {
    usage: "usage" [],
    choices: "choices" [],
    status: "status" [],
    incomplete_details: "incomplete_details" [],
    output: "output" [],
});

struct WholeChoice<'a> {
    finish_reason: Option<Cow<'a, str>>,
    message: Option<WholeMessage<'a>>,
}
crate::wire::object::from_object!(WholeChoice<'a> {
    finish_reason: "finish_reason" [],
    message: "message" [],
});

struct WholeMessage<'a> {
    content: Option<Cow<'a, str>>,
    refusal: Option<Cow<'a, str>>,
    tool_calls: Option<Vec<WholeToolCall<'a>>>,
}
crate::wire::object::from_object!(WholeMessage<'a> {
    content: "content" [],
    refusal: "refusal" [],
    tool_calls: "tool_calls" [],
});

struct WholeToolCall<'a> {
    function: Option<Function<'a>>,
}
crate::wire::object::from_object!(WholeToolCall<'a> {
    function: "function" [],
});

struct Function<'a> {
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(Function<'a> {
    name: "name" [],
    arguments: "arguments" [],
});

struct Incomplete<'a> {
    reason: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(Incomplete<'a> {
    reason: "reason" [],
});

struct OutputItem<'a> {
    kind: Cow<'a, str>,
    content: Option<Vec<Part<'a>>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(OutputItem<'a> {
    kind: "type" [required],
    content: "content" [],
    name: "name" [],
    arguments: "arguments" [],
});

struct Part<'a> {
    kind: Cow<'a, str>,
    text: Option<Cow<'a, str>>,
}
crate::wire::object::from_object!(Part<'a> {
    kind: "type" [required],
    text: "text" [],
});

/// Reads a whole answer (a chat completion, or a Response object) once: its usage and its
/// facts. `Err`: not an answer of that shape (read its usage alone then).
pub fn read_whole(body: &[u8]) -> Result<(Option<Usage>, AnswerFacts), crate::wire::read::Error> {
    let w: AnswerJson = crate::wire::from_slice(body)?;
    let usage = w.usage.as_ref().and_then(Usage::from_openai);
    let mut f = AnswerFacts::default();
    let mut texts: Vec<&str> = Vec::new();
    let mut calls: Vec<(Option<&str>, Option<&str>)> = Vec::new();
    if let Some(c) = w.choices.first() {
        f.finish = c.finish_reason.as_deref().map(Finish::of);
        if let Some(m) = &c.message {
            texts.extend(m.content.as_deref());
            if let Some(r) = m.refusal.as_deref().filter(|r| !r.is_empty()) {
                f.refused = true;
                texts.push(r);
            }
            for tc in m.tool_calls.iter().flatten() {
                let func = tc.function.as_ref();
                calls.push((func.and_then(|x| x.name.as_deref()), func.and_then(|x| x.arguments.as_deref())));
            }
        }
    } else if let Some(items) = &w.output {
        for item in items {
            match item.kind.as_ref() {
                "message" => {
                    for p in item.content.iter().flatten() {
                        f.refused |= p.kind == "refusal";
                        texts.extend(p.text.as_deref());
                    }
                }
                "function_call" => calls.push((item.name.as_deref(), item.arguments.as_deref())),
                _ => {}
            }
        }
        let reason = w.incomplete_details.as_ref().and_then(|i| i.reason.as_deref());
        f.finish = match (w.status.as_deref(), reason) {
            (_, Some(r)) => Some(Finish::of(r)),
            (Some("completed"), _) if !calls.is_empty() => Some(Finish::ToolCalls),
            (Some(s), _) => Some(Finish::of(s)),
            (None, None) => None,
        };
    }
    describe(&mut f, &texts, &calls);
    Ok((usage, f))
}

/// Fills in an answer's head, length, tool-call count and digest from its texts and tool calls
/// (name, arguments), in order: one definition for answers read ([`read_whole`]) and answers
/// the gateway wrote ([`crate::wire::chat::Answer::facts`]).
pub fn describe(f: &mut AnswerFacts, texts: &[&str], calls: &[(Option<&str>, Option<&str>)]) {
    let mut digest = Sha256::new();
    let mut chars = 0u64;
    for t in texts {
        f.push_head(t);
        chars += t.chars().count() as u64;
        digest.update(t.as_bytes());
    }
    for (name, args) in calls {
        f.tool_calls = f.tool_calls.saturating_add(1);
        digest.update(b"\0tool\0");
        digest.update(name.unwrap_or_default().as_bytes());
        digest.update(b"\0");
        digest.update(args.unwrap_or_default().as_bytes());
    }
    f.chars = Some(chars);
    f.digest = Some(crate::auth::keys::to_hex(&digest.finalize()[..8]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_completion_tells_how_it_ended_and_what_it_said() {
        let body = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"there\"","refusal":null},
            "finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let (u, f) = read_whole(body).unwrap();
        assert_eq!(u.map(|u| (u.input, u.output)), Some((3, 2)));
        assert_eq!((f.finish, f.tool_calls, f.refused), (Some(Finish::Length), 0, false));
        assert_eq!((f.head.as_str(), f.chars), ("Hello \"there\"", Some(13)));
        // The same text, pretty-printed differently: the same digest; other text: another.
        let same = br#"{"choices": [{"message": {"content": "Hello \"there\""}, "finish_reason": "stop"}]}"#;
        assert_eq!(read_whole(same).unwrap().1.digest, f.digest);
        let other = br#"{"choices":[{"message":{"content":"Hello there"},"finish_reason":"stop"}]}"#;
        assert_ne!(read_whole(other).unwrap().1.digest, f.digest);
    }

    #[test]
    fn facts_cross_in_their_binary_encoding_and_nothing_else_reads_as_facts() {
        let mut all = vec![AnswerFacts::default()];
        for (i, finish) in Finish::ALL.iter().enumerate() {
            all.push(AnswerFacts {
                finish: Some(*finish),
                tool_calls: i as u32,
                refused: i % 2 == 0,
                head: "I can\u{2019}t \"help\"".repeat(i),
                chars: (i % 2 == 1).then_some(i as u64 * 7),
                digest: (i % 3 == 0).then(|| "0123456789abcdef".to_string()),
                json_valid: [None, Some(false), Some(true)][i % 3],
            });
        }
        for f in &all {
            let bytes = f.encode();
            assert_eq!(AnswerFacts::decode(&bytes).as_ref(), Some(f));
            for cut in 0..bytes.len() {
                assert_eq!(AnswerFacts::decode(&bytes[..cut]), None, "cut at {cut}");
            }
            assert_eq!(AnswerFacts::decode(&serde_json::to_vec(f).unwrap_or_default()), None);
        }
    }

    #[test]
    fn tool_calls_refusals_and_responses_are_read() {
        let tools = br#"{"choices":[{"message":{"content":null,"tool_calls":[
            {"id":"a","type":"function","function":{"name":"w","arguments":"{\"city\":\"Paris\"}"}},
            {"id":"b","type":"function","function":{"name":"w","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#;
        let f = read_whole(tools).unwrap().1;
        assert_eq!((f.finish, f.tool_calls, f.chars), (Some(Finish::ToolCalls), 2, Some(0)));
        let refusal =
            br#"{"choices":[{"message":{"content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
        let f = read_whole(refusal).unwrap().1;
        assert!(f.refused);
        assert_eq!(f.head, "I can't help with that.");
        let response =
            br#"{"object":"response","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},
            "output":[{"type":"message","content":[{"type":"output_text","text":"Half an ans"}]}],
            "usage":{"input_tokens":4,"output_tokens":9}}"#;
        let (u, f) = read_whole(response).unwrap();
        assert_eq!(u.map(|u| u.output), Some(9));
        assert_eq!((f.finish, f.head.as_str()), (Some(Finish::Length), "Half an ans"));
        let called = br#"{"object":"response","status":"completed","output":[{"type":"function_call","name":"w","arguments":"{}"}]}"#;
        let f = read_whole(called).unwrap().1;
        assert_eq!((f.finish, f.tool_calls), (Some(Finish::ToolCalls), 1));
        assert_eq!(Finish::of("end_turn"), Finish::Stop);
        assert_eq!(Finish::of("refusal"), Finish::ContentFilter);
        assert_eq!(Finish::of("weird"), Finish::Other);
    }

    #[test]
    fn an_answer_the_gateway_wrote_says_what_reading_it_would() {
        for body in [
            &br#"{"id":"m","type":"message","content":[{"type":"text","text":"Caf\u00e9 \"ok\""}],"stop_reason":"max_tokens",
                 "usage":{"input_tokens":3,"output_tokens":2}}"#[..],
            br#"{"id":"m","type":"message","content":[{"type":"text","text":"Let me check."},
                 {"type":"tool_use","id":"t","name":"w","input":{"city":"Paris"}}],"stop_reason":"tool_use",
                 "usage":{"input_tokens":3,"output_tokens":2}}"#,
            br#"{"id":"m","type":"message","content":[],"stop_reason":"refusal","usage":{"input_tokens":3,"output_tokens":0}}"#,
        ] {
            let (out, _, written) = crate::provider::anthropic::response_to_openai(body, 0).unwrap();
            let (_, read) = read_whole(&out).unwrap();
            assert_eq!(written, read, "{}", String::from_utf8_lossy(&out));
        }
    }

    #[test]
    fn the_head_is_bounded_and_odd_shapes_are_errors_not_panics() {
        let long =
            format!(r#"{{"choices":[{{"message":{{"content":"{}"}},"finish_reason":"stop"}}]}}"#, "é".repeat(500));
        let f = read_whole(long.as_bytes()).unwrap().1;
        assert_eq!((f.head.chars().count(), f.chars), (HEAD_CHARS, Some(500)));
        assert!(read_whole(br#"{"choices":[{"message":{"content":[1,2]}}]}"#).is_err());
        assert!(read_whole(b"\xff\xfe").is_err());
    }
}
