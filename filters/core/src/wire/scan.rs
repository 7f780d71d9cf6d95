//! One pass over a stream event's JSON text that notes the few members the stream watchers ask
//! about (is it content, does it end the answer, does it carry usage or an error), without
//! building a tree and without a search per question: on the short events of a stream, eight
//! substring searches cost the listener more than translating the event did.

/// What one event's JSON text says, as far as the watchers ask.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// A `choices` member (an OpenAI chat chunk).
    pub choices: bool,
    pub tool_calls: bool,
    /// A `content` member whose value is a non-empty string, and one whose value is `""`.
    pub content_text: bool,
    pub content_empty: bool,
    /// A string value naming a content delta of Messages or Responses.
    pub content_delta: bool,
    /// A `finish_reason` member whose value is a string.
    pub finish_reason: bool,
    /// `usage` and `error` members with a value other than `null`.
    pub usage: bool,
    pub error: bool,
}

impl Shape {
    /// Whether the event carries generated content: an OpenAI chunk with non-empty content or a
    /// tool call, a Messages `content_block_delta`, or a Responses text or arguments delta.
    pub fn is_content(&self) -> bool {
        (self.choices && (self.tool_calls || (self.content_text && !self.content_empty))) || self.content_delta
    }
}

/// The member names [`shape`] notes, and the string values that name a content delta.
const NAMES: [&[u8]; 9] = [
    b"choices",
    b"tool_calls",
    b"content",
    b"finish_reason",
    b"usage",
    b"error",
    b"content_block_delta",
    b"response.output_text.delta",
    b"response.function_call_arguments.delta",
];

/// Reads the shape of one event's JSON text. Text that is not JSON reads as what its strings
/// say as far as they go; no input makes it panic.
pub fn shape(text: &str) -> Shape {
    let b = text.as_bytes();
    let mut s = Shape::default();
    let mut i = 0;
    while let Some(q) = b.get(i..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let start = i + q + 1;
        let Some(end) = string_end(b, start) else { break };
        let token = b.get(start..end).unwrap_or_default();
        let name = NAMES.iter().position(|n| *n == token);
        // A key: the string is followed by a colon.
        let k = skip_space(b, end + 1);
        if b.get(k) != Some(&b':') {
            s.content_delta |= name.is_some_and(|n| n >= 6);
            i = end + 1;
            continue;
        }
        let v = skip_space(b, k + 1);
        let value = b.get(v..).unwrap_or_default();
        let null = value.starts_with(b"null");
        let string = value.first() == Some(&b'"');
        match name {
            Some(0) => s.choices = true,
            Some(1) => s.tool_calls = true,
            Some(2) if string => {
                if value.get(1) == Some(&b'"') {
                    s.content_empty = true;
                } else {
                    s.content_text = true;
                }
            }
            Some(3) => s.finish_reason |= string,
            Some(4) => s.usage |= !null,
            Some(5) => s.error |= !null,
            _ => {}
        }
        i = k + 1;
    }
    s
}

/// One member of a JSON object: its key's text as written (between its quotes, escapes not
/// decoded) and its value's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: std::ops::Range<usize>,
    pub value: std::ops::Range<usize>,
}

impl Member {
    /// Whether the key is `name` (decoding escapes, as a JSON reader would, when it has any).
    pub fn key_is(&self, b: &[u8], name: &str) -> bool {
        let Some(raw) = b.get(self.key.clone()) else { return false };
        if !raw.contains(&b'\\') {
            return raw == name.as_bytes();
        }
        b.get(self.key.start - 1..self.key.end + 1)
            .and_then(|quoted| crate::wire::from_slice::<String>(quoted).ok())
            .is_some_and(|k| k == name)
    }
}

/// The members of the JSON object that `b` holds (white space around it allowed), in order,
/// and where its closing brace is; `None` when `b` is not shaped as one object. The values are
/// delimited, not validated (for text a JSON reader has read already): strings and nesting are
/// followed, a number or literal is the run of bytes up to the next delimiter.
pub fn members(b: &[u8]) -> Option<(Vec<Member>, usize)> {
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut out = Vec::new();
    i = skip_space(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return only_space_after(b, i).then_some((out, i));
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(b, i + 1)?;
        let colon = skip_space(b, key_end + 1);
        if b.get(colon) != Some(&b':') {
            return None;
        }
        let start = skip_space(b, colon + 1);
        let end = value_end(b, start)?;
        out.push(Member { key: i + 1..key_end, value: start..end });
        i = skip_space(b, end);
        match b.get(i) {
            Some(b',') => i = skip_space(b, i + 1),
            Some(b'}') => return only_space_after(b, i).then_some((out, i)),
            _ => return None,
        }
    }
}

fn only_space_after(b: &[u8], close: usize) -> bool {
    skip_space(b, close + 1) == b.len()
}

/// Where the JSON value that starts at `start` ends (one past its last byte).
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match *b.get(start)? {
        b'"' => Some(string_end(b, start + 1)? + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *b.get(i)? {
                    b'"' => i = string_end(b, i + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = b.get(start..)?.iter().take_while(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c)).count();
            (len > 0).then_some(start + len)
        }
    }
}

/// The index of the first byte at or after `i` that is not JSON white space.
fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Where the string that starts at `start` (after its opening quote) ends: its closing quote.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', b.get(i..)?)?;
        if b.get(at) == Some(&b'"') {
            return Some(at);
        }
        // A backslash escapes the byte after it.
        i = at + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_and_values(text: &str) -> Option<Vec<(&str, &str)>> {
        let (ms, close) = members(text.as_bytes())?;
        assert_eq!(text.as_bytes().get(close), Some(&b'}'));
        Some(ms.iter().map(|m| (&text[m.key.clone()], &text[m.value.clone()])).collect())
    }

    #[test]
    fn members_delimits_each_top_level_value_as_written() {
        let text = r#" { "model" : "chat", "n":1.5e3,"stream":true, "messages":[{"role":"user","content":"a \"}] {"}],
            "stop":null, "o":{"x":[1,{"y":"]"}]}, "k\u0065y":-2 } "#;
        assert_eq!(
            keys_and_values(text).unwrap(),
            vec![
                ("model", r#""chat""#),
                ("n", "1.5e3"),
                ("stream", "true"),
                ("messages", r#"[{"role":"user","content":"a \"}] {"}]"#),
                ("stop", "null"),
                ("o", r#"{"x":[1,{"y":"]"}]}"#),
                ("k\\u0065y", "-2"),
            ]
        );
        assert_eq!(keys_and_values("{}").unwrap(), vec![]);
        let (ms, _) = members(br#"{"k\u0065y":1,"key":2}"#).unwrap();
        assert!(ms.iter().all(|m| m.key_is(br#"{"k\u0065y":1,"key":2}"#, "key")));
    }

    #[test]
    fn members_refuses_what_is_not_one_object() {
        for bad in [
            "",
            "[]",
            "\"x\"",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "{\"a\":[1}",
            "{\"a\":\"x}",
            "{\"a\":1} x",
            "{\"a\":{\"b\":1}",
            "{a:1}",
            "{\"a\":1}}",
        ] {
            assert!(members(bad.as_bytes()).is_none(), "{bad}");
        }
        // Whatever the bytes, no panic.
        for n in 0..=255u8 {
            let _ = members(&[b'{', b'"', b'a', b'"', b':', n, b'}']);
            let _ = members(&[b'{', b'"', n, b'\\', b'"', b':', b'[', n, b']', b'}']);
        }
    }

    /// The checks the watchers made with one substring search each, which `shape` replaces: on
    /// compact JSON they agree.
    fn by_search(d: &str) -> (bool, bool, bool, bool, bool) {
        let has_value = |key: &str| {
            d.match_indices(key).any(|(i, _)| {
                d.get(i + key.len()..)
                    .and_then(|r| r.trim_start().strip_prefix(':'))
                    .is_some_and(|r| !r.trim_start().starts_with("null"))
            })
        };
        let content = (d.contains("\"choices\"")
            && (d.contains("\"tool_calls\"") || (d.contains("\"content\":\"") && !d.contains("\"content\":\"\""))))
            || d.contains("\"content_block_delta\"")
            || d.contains("\"response.output_text.delta\"")
            || d.contains("\"response.function_call_arguments.delta\"");
        (
            content,
            d.contains("\"tool_calls\""),
            d.contains("\"finish_reason\":\""),
            has_value("\"usage\""),
            has_value("\"error\""),
        )
    }

    #[test]
    fn reads_what_the_searches_read() {
        let events = [
            r#"{"choices":[{"delta":{"content":"E"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"chatcmpl-1","model":"m","object":"chat.completion.chunk","usage":null}"#,
            r#"{"choices":[{"delta":{"content":"","role":"assistant"},"finish_reason":null,"index":0}],"usage":null}"#,
            r#"{"choices":[{"delta":{},"finish_reason":"stop","index":0}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"t","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"content":"say \"usage\": {1} and \\\"content\":\"x"}}]}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
            r#"{"type":"response.output_text.delta","delta":"x"}"#,
            r#"{"type":"response.function_call_arguments.delta","delta":"{"}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            r#"{"error":null,"usage":null}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
            r#"{"choices":[{"delta":{"content":"content_block_delta"}}]}"#,
            r#"[DONE]"#,
            r#"{"a":"unterminated"#,
            r#"{"a\"#,
            "",
        ];
        for e in events {
            let s = shape(e);
            let (content, tool_calls, finish, usage, error) = by_search(e);
            assert_eq!(
                (s.is_content(), s.tool_calls, s.finish_reason, s.usage, s.error),
                (content, tool_calls, finish, usage, error),
                "{e}"
            );
        }
        // Only a whole string value names a content delta.
        assert!(!shape(r#"{"choices":[{"delta":{"content":""}}],"x":"y content_block_delta"}"#).is_content());
    }
}
