//! Token usage, normalised to OpenAI's meaning: `input` includes cached input, `output`
//! includes reasoning.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sse;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Usage {
    /// Reads an OpenAI `usage` object.
    pub fn from_openai(v: &Value) -> Option<Usage> {
        let input = v.get("prompt_tokens")?.as_u64()?;
        let output = v.get("completion_tokens")?.as_u64()?;
        let cached_input = v.pointer("/prompt_tokens_details/cached_tokens").and_then(Value::as_u64).unwrap_or(0);
        let reasoning = v.pointer("/completion_tokens_details/reasoning_tokens").and_then(Value::as_u64).unwrap_or(0);
        Some(Usage { input, cached_input: cached_input.min(input), output, reasoning: reasoning.min(output) })
    }

    /// Writes an OpenAI `usage` object.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "prompt_tokens": self.input,
            "completion_tokens": self.output,
            "total_tokens": self.input + self.output,
            "prompt_tokens_details": {"cached_tokens": self.cached_input},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        })
    }
}

/// Usage from a complete OpenAI chat completion body: `Err` when the body is not a JSON
/// object at all, `Ok(None)` when it has no usable `usage`. Other fields are skipped unparsed.
pub fn from_openai_body(body: &[u8]) -> Result<Option<Usage>, serde_json::Error> {
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<Value>,
    }
    let parsed: WithUsage = serde_json::from_slice(body)?;
    Ok(parsed.usage.as_ref().and_then(Usage::from_openai))
}

/// Finds the usage chunk in an OpenAI SSE stream as it streams past, without holding it back.
#[derive(Debug, Default)]
pub struct StreamScanner {
    parser: sse::Parser,
    events: Vec<sse::Event>,
    pub usage: Option<Usage>,
    /// Data events seen, other than `[DONE]`: a floor on the output tokens streamed so far.
    pub data_events: u64,
    pub saw_done: bool,
    pub saw_error: bool,
}

impl StreamScanner {
    pub fn push(&mut self, chunk: &[u8]) {
        self.parser.push(chunk, &mut self.events);
        for ev in self.events.drain(..) {
            if ev.data == "[DONE]" {
                self.saw_done = true;
                continue;
            }
            self.data_events += 1;
            if ev.data.contains("\"usage\"") || ev.data.contains("\"error\"") {
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_usage_with_details() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(
            from_openai_body(body).ok(),
            Some(Some(Usage { input: 10, cached_input: 4, output: 5, reasoning: 2 }))
        );
        assert_eq!(from_openai_body(br#"{"id":"x"}"#).ok(), Some(None));
        assert!(from_openai_body(b"not json").is_err());
        assert!(from_openai_body(br#"{"id":"x","choices":[{"#).is_err());
    }

    #[test]
    fn stream_usage_found_across_chunks() {
        let s = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let mut sc = StreamScanner::default();
        for c in s.chunks(7) {
            sc.push(c);
        }
        assert_eq!(sc.usage, Some(Usage { input: 3, cached_input: 0, output: 1, reasoning: 0 }));
        assert!(sc.saw_done);
        assert!(!sc.saw_error);
        assert_eq!(sc.data_events, 2);
    }
}
