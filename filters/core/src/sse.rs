//! Incremental Server-Sent Events parser: accepts `\n`, `\r\n` and `\r` line endings, comments,
//! multi-line data, and events split across (or packed into) arbitrary body chunks.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds a chunk; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' => self.end_line(out),
                b'\r' => {
                    self.end_line(out);
                    self.after_cr = true;
                }
                _ => {
                    self.after_cr = false;
                    self.line.push(b);
                }
            }
        }
    }

    /// True when no partial line or event is pending.
    pub fn is_idle(&self) -> bool {
        self.line.is_empty() && !self.has_data && self.event.is_none()
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(Event { event: self.event.take(), data: std::mem::take(&mut self.data) });
            }
            self.event = None;
            self.has_data = false;
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// Formats a data-only SSE event (OpenAI style).
pub fn data_event(out: &mut Vec<u8>, json: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<Event> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in chunks {
            p.push(c, &mut out);
        }
        out
    }

    #[test]
    fn named_and_data_only_events() {
        let ev = parse_chunks(&[b"event: ping\ndata: {\"type\":\"ping\"}\n\ndata: x\n\n"]);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].event.as_deref(), Some("ping"));
        assert_eq!(ev[1], Event { event: None, data: "x".into() });
    }

    #[test]
    fn split_across_chunks_at_every_byte() {
        let whole = b"event: a\r\ndata: 1\r\n\r\n: comment\n\ndata:2\rdata: 3\r\r";
        for cut in 0..whole.len() {
            let ev = parse_chunks(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(ev.len(), 2, "cut at {cut}");
            assert_eq!(ev[0], Event { event: Some("a".into()), data: "1".into() });
            assert_eq!(ev[1], Event { event: None, data: "2\n3".into() });
        }
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(parse_chunks(&[b"event: x\n\n"]).is_empty());
    }
}

/// A complete OpenAI chat completion re-sent as a chat-completion stream: the role chunk, the
/// content, each tool call, the finish reason, the usage chunk when asked for, and `[DONE]`.
/// For providers the gateway calls without streaming (Bedrock Converse).
pub fn completion_to_stream(completion: &[u8], include_usage: bool) -> Result<Vec<u8>, String> {
    use serde_json::{json, Value};
    let v: Value = serde_json::from_slice(completion).map_err(|e| format!("not a completion: {e}"))?;
    let choice = v.pointer("/choices/0").cloned().unwrap_or(Value::Null);
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"),
            "model": v.get("model"), "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        format!("data: {c}\n\n")
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), Value::Null);
    if let Some(text) = choice.pointer("/message/content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        out.push_str(&chunk(json!({"content": text}), Value::Null));
    }
    for (i, tc) in choice.pointer("/message/tool_calls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": i, "id": tc.get("id"), "type": "function", "function": tc.get("function")}]}),
            Value::Null,
        ));
    }
    out.push_str(&chunk(json!({}), choice.get("finish_reason").cloned().unwrap_or(json!("stop"))));
    if include_usage {
        let u = json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"),
            "model": v.get("model"), "choices": [], "usage": v.get("usage")});
        out.push_str(&format!("data: {u}\n\n"));
    }
    out.push_str("data: [DONE]\n\n");
    Ok(out.into_bytes())
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn a_completion_replays_as_a_well_formed_stream() {
        let c = br#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,
            "message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"t1","type":"function",
            "function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let out = completion_to_stream(c, true).unwrap();
        let mut p = Parser::default();
        let mut events = Vec::new();
        p.push(&out, &mut events);
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(data.len(), 6);
        assert!(data[1].contains("\"content\":\"Hi\""));
        assert!(data[2].contains("\"tool_calls\":[{\"function\"") || data[2].contains("\"id\":\"t1\""));
        assert!(data[3].contains("\"finish_reason\":\"tool_calls\""));
        assert!(data[4].contains("\"choices\":[]") && data[4].contains("\"total_tokens\":5"));
        assert_eq!(data[5], "[DONE]");
        let plain = completion_to_stream(c, false).unwrap();
        assert!(!String::from_utf8_lossy(&plain).contains("total_tokens"));
    }
}
