//! Incremental Server-Sent Events parser: accepts `\n`, `\r\n` and `\r` line endings, comments,
//! multi-line data, and events split across (or packed into) arbitrary body chunks.

use crate::text::Text;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    after_cr: bool,
    /// The pending event's name (`has_event`), and its data (`has_data`): buffers kept from one
    /// event to the next, so that a stream's events cost no allocation.
    event: String,
    has_event: bool,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds a chunk; complete events are appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Event>) {
        self.push_each(chunk, |event, data| out.push(Event { event: event.map(str::to_string), data: data.own() }));
    }

    /// Feeds a chunk; each complete event is handed to `f` as (its name, its data), borrowed.
    pub fn push_each(&mut self, chunk: &[u8], mut f: impl FnMut(Option<&str>, &str)) {
        // (One copy of the parser for every caller: the callback is called through a pointer.)
        self.push_dyn(chunk, &mut f);
    }

    fn push_dyn(&mut self, chunk: &[u8], f: &mut dyn FnMut(Option<&str>, &str)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // A line's bytes up to its end (a newline, a carriage return, or both) go in whole.
            let Some(at) = memchr::memchr2(b'\n', b'\r', rest) else {
                self.after_cr = false;
                self.line.extend_from_slice(rest);
                return;
            };
            let (text, end) = (&rest[..at], rest[at]);
            rest = &rest[at + 1..];
            if !text.is_empty() {
                self.after_cr = false;
            }
            match end {
                // The newline of a CRLF ends no second line.
                b'\n' if self.after_cr && text.is_empty() => self.after_cr = false,
                b'\n' => self.end_line(text, f),
                _ => {
                    self.end_line(text, f);
                    self.after_cr = true;
                }
            }
        }
    }

    /// True when no partial line or event is pending.
    pub fn is_idle(&self) -> bool {
        self.line.is_empty() && !self.has_data && !self.has_event
    }

    /// A line ends: `text` is its end, after what earlier chunks held of it.
    fn end_line(&mut self, text: &[u8], f: &mut dyn FnMut(Option<&str>, &str)) {
        if self.line.is_empty() {
            self.take_line(text, f);
        } else {
            // The line's buffer is kept for the next line split across chunks.
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(text);
            self.take_line(&line, f);
            line.clear();
            self.line = line;
        }
    }

    fn take_line(&mut self, line: &[u8], f: &mut dyn FnMut(Option<&str>, &str)) {
        if line.is_empty() {
            if self.has_data {
                f(self.has_event.then_some(self.event.as_str()), &self.data);
            }
            self.event.clear();
            self.data.clear();
            self.has_event = false;
            self.has_data = false;
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        // (Valid UTF-8, as a stream's lines are, is borrowed as it is; `from_utf8` checks it
        // faster than the lossy conversion would.)
        let text = match std::str::from_utf8(line) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(line),
        };
        let (field, value) = match text.find_byte(b':') {
            Some(i) => {
                let v = &text[i + 1..];
                (&text[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => {
                self.event.clear();
                self.event.push_str(value);
                self.has_event = true;
            }
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

/// A provider stream translated to another format as it streams (one per provider API).
pub trait Translate {
    /// Feeds a piece of the stream; returns the bytes to send on.
    fn push(&mut self, chunk: &[u8]) -> Vec<u8>;
    /// At the end of the stream: whatever must still be sent (finish, usage, `[DONE]`, or an
    /// error event for a stream cut short).
    fn finish(&mut self) -> Vec<u8>;
}

/// Two translations one after the other: a provider's stream to unified chunks (`inner`), and
/// those to a door's events (`outer`: the Responses or the Messages door).
pub struct Chained {
    pub inner: Box<dyn Translate>,
    pub outer: Box<dyn Translate>,
}

impl Translate for Chained {
    fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mid = self.inner.push(chunk);
        self.outer.push(&mid)
    }

    fn finish(&mut self) -> Vec<u8> {
        let mid = self.inner.finish();
        let mut out = self.outer.push(&mid);
        out.extend(self.outer.finish());
        out
    }
}

/// Formats a data-only SSE event (OpenAI style).
/// A `data:` event of a JSON tree, written straight into `out`.
pub fn tree_event(out: &mut Vec<u8>, v: &crate::wire::tree::Value) {
    named_tree_event(out, None, v);
}

/// An event named `event` (none: unnamed) whose data is a JSON tree.
pub fn named_tree_event(out: &mut Vec<u8>, event: Option<&str>, v: &crate::wire::tree::Value) {
    if let Some(e) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(e.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    crate::wire::write::WriteJson::write_json(v, out);
    out.extend_from_slice(b"\n\n");
}

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
        let ev = |event: Option<&str>, data: &str| Event { event: event.map(str::to_string), data: data.into() };
        let cases: [(&[u8], [Event; 2]); 2] = [
            (b"event: a\r\ndata: 1\r\n\r\n: comment\n\ndata:2\rdata: 3\r\r", [ev(Some("a"), "1"), ev(None, "2\n3")]),
            // A newline ends its own line: only one right after a carriage return is skipped.
            (b"data: a\rdata: b\n\ndata: c\n\n", [ev(None, "a\nb"), ev(None, "c")]),
        ];
        for (whole, expected) in cases {
            for cut in 0..whole.len() {
                assert_eq!(parse_chunks(&[&whole[..cut], &whole[cut..]]), expected, "cut at {cut}");
            }
        }
    }

    #[test]
    fn any_chunking_reads_as_the_whole() {
        // Line ends of every kind, an empty data line, bytes that are not UTF-8, a long line.
        let long = "y".repeat(300);
        let whole = format!("data: a\r\n\r\ndata:\n\nevent: e\rdata: \u{e9}\n\r\n\ndata: {long}\n\n");
        let mut bytes = whole.into_bytes();
        let at = bytes.iter().position(|&b| b == 0xc3).unwrap_or(0);
        bytes.insert(at, 0xff);
        let expected = parse_chunks(&[&bytes]);
        assert_eq!(expected.len(), 4, "{expected:?}");
        assert_eq!(expected[3].data.len(), 300);
        for size in 1..=bytes.len() {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(parse_chunks(&chunks), expected, "chunks of {size}");
        }
    }

    #[test]
    fn events_handed_over_borrowed() {
        // Borrowed, as owned.
        let mut p = Parser::default();
        let mut seen = Vec::new();
        p.push_each(b"event: e\ndata: 1\n\ndata: 2\n\n", |e, d| seen.push((e.map(str::to_string), d.to_string())));
        assert_eq!(seen, vec![(Some("e".to_string()), "1".to_string()), (None, "2".to_string())]);
        assert!(p.is_idle());
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        assert!(parse_chunks(&[b"event: x\n\n"]).is_empty());
    }
}
