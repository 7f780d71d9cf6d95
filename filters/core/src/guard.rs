//! Guardrails: values in a request that a route does not let reach a provider (PII, secrets, an
//! operator's terms), found by the detectors (`detect`) and masked, refused or flagged per
//! category, as the alias's or rule's policy says; masked values may be put back in the answer.

pub mod detect;
pub mod injection;
pub mod schema;
pub mod stage;

use crate::wire::tree::Value;

use crate::error::ConfigError;
use crate::text::{Joined, Put, PutBytes, Text};
use crate::wire::obj;
use detect::{Category, Found};

/// What a policy does with a category's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replaced by a placeholder (`<EMAIL_1>`) before the request goes on.
    Mask,
    /// The request is refused (400 `pii_detected` or `secret_detected`).
    Reject,
    /// Recorded in the audit record only.
    Flag,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Mask => "masked",
            Action::Reject => "rejected",
            Action::Flag => "flagged",
        }
    }
}

/// An alias's or rule's guardrails.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardPolicy {
    /// Per category (`email`, `phone`, `card`, `iban`, `aadhaar`, `pan`, `ssn`, `ip`, `secret`,
    /// `term`, `pattern`): what is done with its values. A category left out is not looked for.
    pub categories: crate::config::NameMap<Action>,
    /// The operator's terms (whole words, case-insensitive): category `term`.
    pub terms: Vec<String>,
    /// The operator's patterns (see `detect::Shape`): category `pattern`.
    pub patterns: Vec<String>,
    /// Masked values are put back in the answer (streamed or not).
    pub restore: bool,
    /// Prompt-injection rules over what callers and tools wrote (`injection`).
    pub injection: Option<injection::InjectionPolicy>,
    /// Terms an answer must not contain (whole words, case-insensitive): a whole answer that
    /// does is replaced by a refusal, a stream stops at it (`finish_reason: content_filter`).
    pub output_terms: Vec<String>,
}

impl GuardPolicy {
    pub fn check(&self, at: &str) -> Result<(), ConfigError> {
        for name in self.categories.keys() {
            if Category::parse(name).is_none() {
                return Err(ConfigError::new(
                    "route-select",
                    format!("{at}.categories.{name}"),
                    "unknown category (email, phone, card, iban, aadhaar, pan, ssn, ip, secret, term, pattern)",
                ));
            }
        }
        if let Some(i) = &self.injection {
            let bad = |f: &str, p: &str| Err(ConfigError::new("route-select", format!("{at}.injection.{f}"), p));
            if !(0.0..=1.0).contains(&i.threshold) || !(0.0..=1.0).contains(&i.flag_threshold) {
                return bad("threshold", "thresholds are scores from 0 to 1");
            }
            if (i.action == injection::OnInjection::Reroute) != i.reroute_to.is_some() {
                return bad("reroute_to", "names the alias of action `reroute` (and only of it)");
            }
            if i.rules().is_empty() {
                return bad("rules", "no rules to score with");
            }
        }
        for (i, p) in self.patterns.iter().enumerate() {
            if let Err(e) = detect::Shape::parse(p) {
                return Err(ConfigError::new("route-select", format!("{at}.patterns[{i}]"), e));
            }
        }
        if self.categories.contains_key("pattern") && self.patterns.is_empty() {
            return Err(ConfigError::new(
                "route-select",
                format!("{at}.patterns"),
                "category `pattern` needs patterns",
            ));
        }
        if self.categories.contains_key("term") && self.terms.is_empty() {
            return Err(ConfigError::new("route-select", format!("{at}.terms"), "category `term` needs terms"));
        }
        Ok(())
    }

    pub fn action(&self, c: Category) -> Option<Action> {
        self.categories.get(c.as_str()).copied()
    }
}

/// Keys whose string values are names, ids and enumerations, never text a caller wrote: not
/// scanned.
const NOT_TEXT: &[&str] = &[
    "model",
    "role",
    "type",
    "id",
    "tool_call_id",
    "call_id",
    "name",
    "finish_reason",
    "stop_reason",
    "encoding_format",
    "previous_response_id",
    "detail",
    "media_type",
    "signature",
];

/// What applying a policy to a request found and did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Per category and action, how many values.
    /// In order of category and action.
    pub counts: Vec<((Category, &'static str), u32)>,
    /// The categories refused (the request must not go on).
    pub rejected: Vec<Category>,
    /// Placeholder → original value, for the masked ones.
    pub masked: Vec<(String, String)>,
    /// Whether the request was changed.
    pub changed: bool,
}

impl Applied {
    /// The audit record's compliance flags: `category:action:count`, never a value.
    pub fn flags(&self) -> Vec<String> {
        self.counts.iter().map(|((c, a), n)| format!("{}:{a}:{n}", c.as_str())).collect()
    }
}

/// Applies `policy` to every caller-written string of a JSON request, in place.
pub fn apply(policy: &GuardPolicy, v: &mut Value) -> Applied {
    let mut applied = Applied::default();
    let wanted = |c: Category| policy.action(c).is_some();
    let shapes: Vec<detect::Shape> = policy.patterns.iter().filter_map(|p| detect::Shape::parse(p).ok()).collect();
    walk(v, None, &mut |s: &mut String| {
        let found = detect::scan_with(s, &wanted, &policy.terms, &shapes);
        if found.is_empty() {
            return;
        }
        let mut out = String::with_capacity(s.len());
        let mut at = 0;
        for Found { start, end, category } in found {
            let Some(action) = policy.action(category) else { continue };
            let key = (category, action.as_str());
            match applied.counts.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(i) => applied.counts[i].1 += 1,
                Err(i) => applied.counts.insert(i, (key, 1)),
            }
            match action {
                Action::Reject => {
                    if !applied.rejected.contains(&category) {
                        applied.rejected.push(category);
                    }
                }
                Action::Flag => {}
                Action::Mask => {
                    let value = &s[start..end];
                    let placeholder = match applied.masked.iter().find(|(_, orig)| orig == value) {
                        Some((p, _)) => p.own(),
                        None => {
                            let n = applied
                                .masked
                                .iter()
                                .filter(|(p, _)| p.starts_with(&format!("<{}_", category.placeholder())))
                                .count();
                            let p = format!("<{}_{}>", category.placeholder(), n + 1);
                            applied.masked.push((p.own(), value.own()));
                            p
                        }
                    };
                    out.put(&s[at..start]);
                    out.put(&placeholder);
                    at = end;
                    applied.changed = true;
                }
            }
        }
        if at > 0 {
            out.put(&s[at..]);
            *s = out;
        }
    });
    applied
}

fn walk(v: &mut Value, key: Option<&str>, f: &mut dyn FnMut(&mut String)) {
    match v {
        Value::String(s) if !key.is_some_and(|k| NOT_TEXT.contains(&k)) => f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, key, f)),
        Value::Object(o) => o.iter_mut().for_each(|(k, x)| walk(x, Some(k), f)),
        _ => {}
    }
}

/// Whether `text` holds one of `terms` (whole words, case-insensitive).
pub fn holds_term(text: &str, terms: &[String]) -> bool {
    !detect::scan(text, &|c| c == Category::Term, terms).is_empty()
}

/// A whole answer (a chat completion, or a Response object), checked against output terms:
/// `Some(refusal)` when it holds one: the completion with its text withheld and
/// `finish_reason: content_filter`, or the Response `incomplete` for `content_filter`, with no
/// output.
pub fn filter_answer(body: &[u8], terms: &[String]) -> Option<Vec<u8>> {
    let mut v: Value = crate::wire::from_slice(body).ok()?;
    if v.get("object").and_then(Value::as_str) == Some("response") {
        let text = schema::answer_text(body).ok().flatten().unwrap_or_default();
        let args: String = v
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("arguments").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .joined(" ");
        if !holds_term(&text, terms) && !holds_term(&args, terms) {
            return None;
        }
        v["status"] = Value::String("incomplete".own());
        v["incomplete_details"] = obj! {"reason" => "content_filter"};
        v["output"] = crate::wire::tree::Value::Array(Vec::new());
        return Some(crate::wire::write::to_vec(&v));
    }
    if v.get("type").and_then(Value::as_str) == Some("message") {
        // A Messages answer: its text and its tool calls' input; withheld, it has no content
        // and stops for `refusal`.
        let blocks = v.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
        let text: String =
            blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().joined(" ");
        let args: String = blocks
            .iter()
            .filter_map(|b| b.get("input"))
            .map(crate::wire::write::to_string)
            .collect::<Vec<_>>()
            .joined(" ");
        if !holds_term(&text, terms) && !holds_term(&args, terms) {
            return None;
        }
        v["content"] = crate::wire::tree::Value::Array(Vec::new());
        v["stop_reason"] = Value::String("refusal".own());
        v["stop_sequence"] = Value::Null;
        return Some(crate::wire::write::to_vec(&v));
    }
    let message = v.get_mut("choices")?.get_mut(0)?.get_mut("message")?;
    let text = message.get("content").and_then(Value::as_str).unwrap_or_default();
    let args: String = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/function/arguments").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .joined(" ");
    if !holds_term(text, terms) && !holds_term(&args, terms) {
        return None;
    }
    if let Some(m) = message.as_object_mut() {
        m.insert("content".own(), Value::String(String::new()));
        m.insert("refusal".own(), Value::String(WITHHELD.into()));
        m.remove("tool_calls");
    }
    v["choices"][0]["finish_reason"] = Value::String("content_filter".own());
    Some(crate::wire::write::to_vec(&v))
}

/// The events of a Messages stream (each comes with its name).
const MESSAGES_EVENTS: &[&str] = &[
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

/// What a caller reads in place of a withheld answer.
pub const WITHHELD: &str = "The answer was withheld by the gateway's content filter.";

/// A stream, checked against output terms as it goes. Chat chunks: the chunk whose text
/// completes a term, and everything after it, is replaced by a last chunk with
/// `finish_reason: content_filter` and `[DONE]`. Responses events: the delta that completes a
/// term, and everything after it, is replaced by `response.incomplete` (reason
/// `content_filter`, no output), numbered in sequence. Messages events: by the end of its
/// block, `message_delta` with `stop_reason: refusal`, and `message_stop`. The text seen is
/// kept only as long as the longest term (a term split across chunks is caught).
#[derive(Debug, Default)]
pub struct StreamFilter {
    terms: Vec<String>,
    parser: crate::wire::sse::Parser,
    tail: String,
    longest: usize,
    pub stopped: bool,
    /// Responses events: the response as `response.created` announced it, and the last
    /// sequence number.
    snapshot: Option<Value>,
    seq: u64,
    /// Messages events: the output tokens counted so far (what the stop event says).
    output_tokens: u64,
}

impl StreamFilter {
    pub fn new(terms: &[String]) -> StreamFilter {
        let longest = terms.iter().map(|t| t.len()).max().unwrap_or(0);
        StreamFilter { terms: terms.to_vec(), longest, ..StreamFilter::default() }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.stopped {
            return out;
        }
        let mut events = Vec::new();
        self.parser.push(chunk, &mut events);
        for ev in events {
            let Ok(v) = crate::wire::from_str::<Value>(&ev.data) else {
                crate::wire::sse::data_event(&mut out, &ev.data);
                continue;
            };
            if let Some(kind) = ev.event.as_deref().filter(|k| MESSAGES_EVENTS.contains(k)) {
                // A Messages stream: the delta that completes a term ends its block, and the
                // message stops for `refusal`.
                let usage = if kind == "message_start" { v.pointer("/message/usage") } else { v.get("usage") };
                if let Some(n) = usage.and_then(|u| u.get("output_tokens")).and_then(Value::as_u64) {
                    self.output_tokens = n;
                }
                if kind == "content_block_delta" {
                    let d = &v["delta"];
                    let text =
                        ["text", "partial_json", "thinking"].iter().find_map(|k| d.get(*k).and_then(Value::as_str));
                    let seen = format!("{}{}", self.tail, text.unwrap_or_default());
                    if holds_term(&seen, &self.terms) {
                        self.stopped = true;
                        let stop = obj! {"type" => "content_block_stop", "index" => v.get("index")};
                        let delta = obj! {"type" => "message_delta", "delta" = obj!{
                            "stop_reason" => "refusal",
                            "stop_sequence" = crate::wire::tree::Value::Null,
                        }, "usage" = obj!{"output_tokens" => self.output_tokens}};
                        crate::wire::sse::named_tree_event(&mut out, Some("content_block_stop"), &stop);
                        crate::wire::sse::named_tree_event(&mut out, Some("message_delta"), &delta);
                        write_event(&mut out, Some("message_stop"), r#"{"type":"message_stop"}"#);
                        return out;
                    }
                    self.keep_tail(seen);
                }
                write_event(&mut out, Some(kind), &ev.data);
                continue;
            }
            if let Some(kind) = ev.event.as_deref().filter(|k| k.starts_with("response.")) {
                // The event's number (the `response.incomplete` that replaces it takes it).
                let number = v.get("sequence_number").and_then(Value::as_u64).unwrap_or(self.seq + 1);
                if kind == "response.created" {
                    self.snapshot = v.get("response").cloned();
                }
                let delta = if kind.ends_with(".delta") { v.get("delta").and_then(Value::as_str) } else { None };
                if let Some(delta) = delta {
                    let seen = format!("{}{delta}", self.tail);
                    if holds_term(&seen, &self.terms) {
                        self.stopped = true;
                        let mut r = self.snapshot.clone().unwrap_or_else(|| obj! {});
                        r["status"] = Value::String("incomplete".own());
                        r["incomplete_details"] = obj! {"reason" => "content_filter"};
                        r["output"] = crate::wire::tree::Value::Array(Vec::new());
                        let data = obj! {"type" => "response.incomplete", "sequence_number" => number, "response" => r};
                        crate::wire::sse::named_tree_event(&mut out, Some("response.incomplete"), &data);
                        return out;
                    }
                    self.keep_tail(seen);
                }
                self.seq = number;
                out.put(format!("event: {kind}\ndata: {}\n\n", ev.data).as_bytes());
                continue;
            }
            let delta = &v["choices"][0]["delta"];
            let mut text = delta.get("content").and_then(Value::as_str).unwrap_or_default().own();
            for c in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                text.put(c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default());
            }
            let seen = format!("{}{text}", self.tail);
            if holds_term(&seen, &self.terms) {
                self.stopped = true;
                let stop = obj! {
                    "id" => v.get("id"),
                    "object" => "chat.completion.chunk",
                    "created" => v.get("created"),
                    "model" => v.get("model"),
                    "choices" = crate::wire::tree::Value::Array(vec![obj!{
                        "index" => 0u64,
                        "delta" = obj!{},
                        "finish_reason" => "content_filter",
                    }]),
                };
                crate::wire::sse::tree_event(&mut out, &stop);
                out.put(b"data: [DONE]\n\n");
                return out;
            }
            self.keep_tail(seen);
            crate::wire::sse::data_event(&mut out, &ev.data);
        }
        out
    }

    /// Keeps as much of the text seen as the longest term (a term split across chunks).
    fn keep_tail(&mut self, seen: String) {
        let keep_from = seen.len().saturating_sub(self.longest + 1);
        let keep_from = (keep_from..=seen.len()).find(|i| seen.is_char_boundary(*i)).unwrap_or(seen.len());
        self.tail = seen[keep_from..].own();
    }
}

/// Puts masked values back in an answer's bytes (JSON or SSE: the placeholders are inside JSON
/// strings, so each value goes back JSON-escaped), holding back a trailing piece that may be
/// the start of a placeholder split across chunks.
#[derive(Debug, Default)]
pub struct Restorer {
    /// Placeholder → the value, JSON-escaped.
    pairs: Vec<(String, String)>,
    carry: Vec<u8>,
    longest: usize,
    /// The request asked for extended thinking: its answer may hold signed thinking blocks,
    /// which keep their placeholders (see [`restore_answer`]).
    pub thinking: bool,
}

impl Restorer {
    pub fn new(masked: &[(String, String)]) -> Restorer {
        let pairs: Vec<(String, String)> = masked
            .iter()
            .map(|(p, v)| {
                let json = crate::wire::write::to_string(v);
                (p.own(), json.get(1..json.len().saturating_sub(1)).unwrap_or_default().own())
            })
            .collect();
        let longest = pairs.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        Restorer { pairs, carry: Vec::new(), longest, thinking: false }
    }

    /// As [`Restorer::new`], for a request that did (`true`) or did not ask for thinking.
    pub fn thinking(mut self, on: bool) -> Restorer {
        self.thinking = on;
        self
    }

    /// A piece of the answer; returns what can go on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.put(chunk);
        let mut out = self.replace(&buf);
        // Hold back a trailing `<…` that could still become a placeholder.
        let tail_from = out.len().saturating_sub(self.longest);
        if let Some(i) = out[tail_from..].iter().rposition(|c| *c == b'<').map(|i| tail_from + i) {
            if !out[i..].contains(&b'>') && self.pairs.iter().any(|(p, _)| p.as_bytes().starts_with(&out[i..])) {
                self.carry = out.split_off(i);
            }
        }
        out
    }

    /// The end of the answer: whatever was held back.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    fn replace(&self, b: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        'outer: while i < b.len() {
            if b[i] == b'<' {
                for (p, v) in &self.pairs {
                    if b[i..].starts_with(p.as_bytes()) {
                        out.put(v.as_bytes());
                        i += p.len();
                        continue 'outer;
                    }
                }
            }
            out.push(b[i]);
            i += 1;
        }
        out
    }
}

/// Puts masked values back in a whole answer (`plain`: placeholder → the value as it is). A
/// Messages answer's thinking blocks keep their placeholders: Anthropic signs a thinking block's
/// text as the model wrote it, and the caller passes the block back in a later turn, where a
/// restored value would be masked again, perhaps under another number (another value masked
/// before it in that turn), and the signature refused.
pub fn restore_answer(r: &mut Restorer, plain: &[(String, String)], body: &[u8]) -> Vec<u8> {
    if r.thinking && body.windows(10).any(|w| w == b"\"thinking\"") {
        let tree = std::str::from_utf8(body).ok().and_then(|t| crate::wire::from_str::<Value>(t).ok());
        if let Some(Value::Object(mut o)) = tree.filter(|v| v.get("content").is_some_and(Value::is_array)) {
            for (k, x) in o.iter_mut() {
                match x {
                    Value::Array(blocks) if k == "content" => {
                        for b in blocks.iter_mut().filter(|b| !is_thinking_block(b)) {
                            put_back_all(b, plain);
                        }
                    }
                    _ => put_back_all(x, plain),
                }
            }
            return crate::wire::write::to_vec(&o);
        }
    }
    let mut out = r.push(body);
    out.extend(r.finish());
    out
}

fn is_thinking_block(b: &Value) -> bool {
    matches!(b.get("type").and_then(Value::as_str), Some("thinking" | "redacted_thinking"))
}

/// Every placeholder in `v`'s strings replaced by its value.
fn put_back_all(v: &mut Value, plain: &[(String, String)]) {
    match v {
        Value::String(s) if s.contains('<') => {
            for (p, value) in plain {
                if s.has(p) {
                    *s = s.replace_all(p, value);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| put_back_all(x, plain)),
        Value::Object(o) => o.iter_mut().for_each(|(_, x)| put_back_all(x, plain)),
        _ => {}
    }
}

/// Whether a Messages `content_block_delta` event's JSON text is a thinking (or its
/// signature's) delta. A text delta that quotes those names has them escaped (`\"`).
fn is_thinking_delta(data: &str) -> bool {
    data.has("\"thinking_delta\"") || data.has("\"signature_delta\"")
}

/// Puts masked values back in a stream, event by event (chat chunks, Responses or Messages
/// events), so that a placeholder a model streams in pieces (`<EM`, `AIL_`, `1>`) comes back
/// too. Each text lane (a choice's content, a tool call's arguments, a Responses part's deltas,
/// a Messages block's text or tool input) holds back a trailing piece that could
/// still become a placeholder and puts it in front of the lane's next delta; a lane that ends
/// with a piece held (its choice finishes, a Responses part is done, a Messages block stops,
/// `[DONE]`, the end of the stream) sends it in an event of its own, a copy of the lane's
/// last delta (Responses events after it are renumbered, gapless). Placeholders whole within an
/// event go back as in [`Restorer`].
#[derive(Debug, Default)]
pub struct StreamRestorer {
    whole: Restorer,
    /// Placeholder → the value as it is.
    plain: Vec<(String, String)>,
    parser: crate::wire::sse::Parser,
    held: Vec<Held>,
    /// Responses: events added so far (each later event's `sequence_number` moves up by it).
    added: u64,
}

#[derive(Debug)]
struct Held {
    lane: Lane,
    text: String,
    /// The lane's last delta event (its name, its data), to send the held text in.
    event: Option<String>,
    template: Value,
}

/// A stream of text within a stream: `(choice, tool call)` for chat (`None`: the content),
/// `(output index, content index)` for Responses, or `(block index, the delta's field)` for
/// Messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Chat(u64, Option<u64>),
    Responses(u64, u64),
    Messages(u64, &'static str),
}

impl StreamRestorer {
    /// `thinking`: the request asked for extended thinking.
    pub fn new(masked: &[(String, String)], thinking: bool) -> StreamRestorer {
        let whole = Restorer::new(masked).thinking(thinking);
        StreamRestorer { whole, plain: masked.to_vec(), ..StreamRestorer::default() }
    }

    /// A piece of the stream; returns what can go on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut events = Vec::new();
        self.parser.push(chunk, &mut events);
        let mut out = Vec::new();
        for ev in events {
            self.event(ev, &mut out);
        }
        out
    }

    /// The end of the stream: every lane's held piece.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.parser.is_idle() {
            // A last event with no blank line after it.
            let mut events = Vec::new();
            self.parser.push(b"\n\n", &mut events);
            for ev in events {
                self.event(ev, &mut out);
            }
        }
        self.flush(|_| true, None, &mut out);
        out
    }

    fn event(&mut self, ev: crate::wire::sse::Event, out: &mut Vec<u8>) {
        let name = ev.event.as_deref();
        if self.whole.thinking && name == Some("content_block_delta") && is_thinking_delta(&ev.data) {
            // Signed thinking goes back as the model wrote it (see [`restore_answer`]).
            write_event(out, name, &ev.data);
            return;
        }
        let data = String::from_utf8_lossy(&self.whole.replace(ev.data.as_bytes())).into_owned();
        if data == "[DONE]" {
            self.flush(|_| true, None, out);
            out.put(b"data: [DONE]\n\n");
            return;
        }
        if self.held.is_empty() && !data.contains('<') && self.added == 0 {
            write_event(out, name, &data);
            return;
        }
        let Ok(mut v) = crate::wire::from_str::<Value>(&data) else {
            write_event(out, name, &data);
            return;
        };
        if let Some(kind) = name.filter(|k| k.starts_with("response.")) {
            let number = v.get("sequence_number").and_then(Value::as_u64);
            if kind.ends_with(".delta") && v.get("delta").is_some_and(Value::is_string) {
                let at = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                let lane = Lane::Responses(at("output_index"), at("content_index"));
                let mut template = v.clone();
                template["delta"] = Value::String(String::new());
                self.lane_text(lane, kind.has("arguments"), true, name, &mut v, "/delta", template);
            } else {
                // A part, item or response that is done ends every lane.
                self.flush(|_| true, number, out);
            }
            if let (Some(n), true) = (number, self.added > 0) {
                v["sequence_number"] = Value::from(n + self.added);
            }
            crate::wire::sse::named_tree_event(out, name, &v);
            return;
        }
        if let Some(kind) = name.filter(|k| MESSAGES_EVENTS.contains(k)) {
            let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
            match kind {
                "content_block_delta" => {
                    for (field, escaped) in [("text", false), ("partial_json", true)] {
                        let pointer = format!("/delta/{field}");
                        if v.pointer(&pointer).is_some_and(Value::is_string) {
                            let mut template = v.clone();
                            template["delta"][field] = Value::String(String::new());
                            self.lane_text(
                                Lane::Messages(index, field),
                                escaped,
                                true,
                                name,
                                &mut v,
                                &pointer,
                                template,
                            );
                        }
                    }
                }
                // A block that ends ends its lane; the message's end, every lane.
                "content_block_stop" => self.flush(|l| matches!(l, Lane::Messages(i, _) if *i == index), None, out),
                "message_delta" | "message_stop" => self.flush(|_| true, None, out),
                _ => {}
            }
            crate::wire::sse::named_tree_event(out, name, &v);
            return;
        }
        let choices = v.get("choices").and_then(Value::as_array).map_or(0, Vec::len);
        for k in 0..choices {
            let index = v["choices"][k].get("index").and_then(Value::as_u64).unwrap_or(0);
            let ending = !v["choices"][k]["finish_reason"].is_null();
            let top = obj! {
                "id" => v.get("id"),
                "object" => v.get("object"),
                "created" => v.get("created"),
                "model" => v.get("model"),
            };
            let head = |delta: Value| {
                let mut t = top.clone();
                t["choices"] = crate::wire::tree::Value::Array(vec![
                    obj! {"index" => index, "delta" => delta, "finish_reason" = crate::wire::tree::Value::Null},
                ]);
                t
            };
            let content = format!("/choices/{k}/delta/content");
            if v.pointer(&content).is_some_and(Value::is_string) {
                let template = head(obj! {"content" => ""});
                self.lane_text(Lane::Chat(index, None), false, !ending, name, &mut v, &content, template);
            }
            let calls =
                v.pointer(&format!("/choices/{k}/delta/tool_calls")).and_then(Value::as_array).map_or(0, Vec::len);
            for j in 0..calls {
                let t =
                    v.pointer(&format!("/choices/{k}/delta/tool_calls/{j}/index")).and_then(Value::as_u64).unwrap_or(0);
                let args = format!("/choices/{k}/delta/tool_calls/{j}/function/arguments");
                if v.pointer(&args).is_some_and(Value::is_string) {
                    let template = head(obj! {"tool_calls" = crate::wire::tree::Value::Array(vec![obj!{
                        "index" => t,
                        "function" = obj!{"arguments" => ""},
                    }])});
                    self.lane_text(Lane::Chat(index, Some(t)), true, !ending, name, &mut v, &args, template);
                }
            }
            if ending {
                // The choice's other lanes, held from earlier chunks, go before this last one.
                self.flush(|l| matches!(l, Lane::Chat(i, _) if *i == index), None, out);
            }
        }
        crate::wire::sse::named_tree_event(out, name, &v);
    }

    /// The lane's held piece and this delta's text (at `pointer`), placeholders put back, minus
    /// a new trailing piece to hold (when `may_hold`). `template`: the event to send a held
    /// piece in, its text empty.
    #[allow(clippy::too_many_arguments)]
    fn lane_text(
        &mut self,
        lane: Lane,
        escaped: bool,
        may_hold: bool,
        event: Option<&str>,
        v: &mut Value,
        pointer: &str,
        template: Value,
    ) {
        let Some(slot) = v.pointer_mut(pointer) else { return };
        let Some(text) = slot.as_str() else { return };
        let before = match self.held.iter().position(|h| h.lane == lane) {
            Some(i) => self.held.remove(i).text,
            None => String::new(),
        };
        let mut put = if before.is_empty() { text.own() } else { self.put_back(&format!("{before}{text}"), escaped) };
        if let Some(i) = self.partial_at(&put).filter(|_| may_hold) {
            let text = put.split_off(i);
            self.held.push(Held { lane, text, event: event.map(str::to_string), template });
        }
        *slot = Value::String(put);
    }

    /// Where a trailing piece that could still become a placeholder starts.
    fn partial_at(&self, s: &str) -> Option<usize> {
        let i = s.rfind('<')?;
        let tail = &s[i..];
        (!tail.contains('>') && self.plain.iter().any(|(p, _)| p.len() > tail.len() && p.starts_with(tail)))
            .then_some(i)
    }

    fn put_back(&self, s: &str, escaped: bool) -> String {
        if escaped {
            return String::from_utf8_lossy(&self.whole.replace(s.as_bytes())).into_owned();
        }
        let mut out = s.own();
        for (p, value) in &self.plain {
            if out.has(p) {
                out = out.replace_all(p, value);
            }
        }
        out
    }

    /// Sends the held pieces of the lanes `which` picks, each in an event of its own. `number`:
    /// the Responses event they go before, whose number they take (later ones move up).
    fn flush(&mut self, which: impl Fn(&Lane) -> bool, number: Option<u64>, out: &mut Vec<u8>) {
        let mut keep = Vec::new();
        for h in std::mem::take(&mut self.held) {
            if !which(&h.lane) {
                keep.push(h);
                continue;
            }
            let mut v = h.template;
            let pointer = match h.lane {
                Lane::Chat(_, None) => "/choices/0/delta/content".own(),
                Lane::Chat(_, Some(_)) => "/choices/0/delta/tool_calls/0/function/arguments".own(),
                Lane::Responses(..) => "/delta".own(),
                Lane::Messages(_, field) => format!("/delta/{field}"),
            };
            if let Some(slot) = v.pointer_mut(&pointer) {
                *slot = Value::String(h.text);
            }
            if let (Lane::Responses(..), Some(n)) = (h.lane, number) {
                v["sequence_number"] = Value::from(n + self.added);
                self.added += 1;
            } else if let (Lane::Responses(..), Some(n)) = (h.lane, v.get("sequence_number").and_then(Value::as_u64)) {
                // At the end of a stream that stopped short: after the lane's last delta.
                v["sequence_number"] = Value::from(n + self.added + 1);
                self.added += 1;
            }
            crate::wire::sse::named_tree_event(out, h.event.as_deref(), &v);
        }
        self.held = keep;
    }
}

fn write_event(out: &mut Vec<u8>, event: Option<&str>, data: &str) {
    if let Some(e) = event {
        out.put(b"event: ");
        out.put(e.as_bytes());
        out.push(b'\n');
    }
    crate::wire::sse::data_event(out, data);
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for Action {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(v, at, &[("mask", Action::Mask), ("reject", Action::Reject), ("flag", Action::Flag)])
    }
}

impl crate::config::FromConfig for GuardPolicy {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "GuardPolicy",
            Some(&["categories", "terms", "patterns", "restore", "injection", "output_terms"]),
        )?;
        let mut x = GuardPolicy::default();
        x.categories = o.or("categories", Default::default)?;
        x.terms = o.or("terms", Default::default)?;
        x.patterns = o.or("patterns", Default::default)?;
        x.restore = o.or("restore", Default::default)?;
        x.injection = o.opt("injection")?;
        x.output_terms = o.or("output_terms", Default::default)?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn policy(v: Value) -> GuardPolicy {
        crate::config::from_value(v).unwrap()
    }

    #[test]
    fn values_are_masked_consistently_refused_or_flagged_by_category() {
        let p = policy(json!({"categories": {"email": "mask", "aadhaar": "reject", "pan": "flag"}}));
        let mut body = json!({"model": "a@b.com", "messages": [
            {"role": "user", "content": "mail a.b@example.com and c@example.org, again a.b@example.com"},
            {"role": "tool", "tool_call_id": "x", "content": [{"type": "text", "text": "PAN ABCPE1234F"}]}]});
        let a = apply(&p, &mut body);
        assert_eq!(body["messages"][0]["content"], "mail <EMAIL_1> and <EMAIL_2>, again <EMAIL_1>");
        assert_eq!(body["model"], "a@b.com", "names are not text");
        assert_eq!(
            a.masked,
            [("<EMAIL_1>".into(), "a.b@example.com".into()), ("<EMAIL_2>".into(), "c@example.org".into())]
        );
        assert_eq!(a.flags(), ["email:masked:3", "pan:flagged:1"]);
        assert!(a.rejected.is_empty() && a.changed);
        let mut body = json!({"input": "aadhaar 2345 6789 0124"});
        let a = apply(&p, &mut body);
        assert_eq!((a.rejected.clone(), a.changed), (vec![Category::Aadhaar], false));
        assert_eq!(a.flags(), ["aadhaar:rejected:1"]);
    }

    #[test]
    fn masked_values_come_back_escaped_even_split_across_chunks() {
        let r = || {
            Restorer::new(&[
                ("<EMAIL_1>".into(), "a\"b@example.com".into()),
                ("<PHONE_1>".into(), "+14155552671".into()),
            ])
        };
        let whole = br#"{"content":"to <EMAIL_1> at <PHONE_1>, not <EMAIL_9> or <b>"}"#;
        let expect = br#"{"content":"to a\"b@example.com at +14155552671, not <EMAIL_9> or <b>"}"#.to_vec();
        for cut in 1..whole.len() {
            let mut x = r();
            let mut out = x.push(&whole[..cut]);
            out.extend(x.push(&whole[cut..]));
            out.extend(x.finish());
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expect), "cut at {cut}");
        }
    }

    fn chat_chunk(delta: Value, finish: Value) -> String {
        let c = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    fn data_of(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter(|d| *d != "[DONE]")
            .map(|d| crate::wire::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_placeholder_streamed_in_pieces_comes_back_whole() {
        let masked = [
            ("<EMAIL_1>".to_string(), "a\"b@example.com".to_string()),
            ("<PAN_1>".to_string(), "ABCPE1234F".to_string()),
        ];
        // Content in model-sized pieces, a tool call's arguments (JSON text: the value goes
        // back escaped), an ordinary `<` that is no placeholder, and a piece held at the end.
        let mut stream = String::new();
        for piece in ["mail <", "EMA", "IL_", "1> now; ", "a < b; <PAN", "_1>", " and <EM"] {
            stream.push_str(&chat_chunk(json!({"content": piece}), Value::Null));
        }
        stream.push_str(&chat_chunk(
            json!({"tool_calls": [{"index": 0, "id": "t", "type": "function",
            "function": {"name": "f", "arguments": "{\"to\":\"<EMA"}}]}),
            Value::Null,
        ));
        stream.push_str(&chat_chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "IL_1>\"}"}}]}),
            Value::Null,
        ));
        stream.push_str(&chat_chunk(json!({}), json!("stop")));
        stream.push_str("data: [DONE]\n\n");
        let bytes = stream.as_bytes();
        for cut in [1, 7, 50, bytes.len() / 2, bytes.len() - 3] {
            let mut r = StreamRestorer::new(&masked, true);
            let mut out = r.push(&bytes[..cut]);
            out.extend(r.push(&bytes[cut..]));
            out.extend(r.finish());
            let events = data_of(&out);
            let text: String = events.iter().filter_map(|e| e["choices"][0]["delta"]["content"].as_str()).collect();
            assert_eq!(text, "mail a\"b@example.com now; a < b; ABCPE1234F and <EM", "cut at {cut}");
            let args: String = events
                .iter()
                .filter_map(|e| e.pointer("/choices/0/delta/tool_calls/0/function/arguments").and_then(Value::as_str))
                .collect();
            assert_eq!(crate::wire::from_str::<Value>(&args).unwrap(), json!({"to": "a\"b@example.com"}));
            // The held end of the content went out before the last chunk; the tool call's name
            // and id were not repeated.
            let last = events.last().unwrap();
            assert_eq!(last["choices"][0]["finish_reason"], "stop");
            let names = events.iter().filter(|e| e.pointer("/choices/0/delta/tool_calls/0/id").is_some()).count();
            assert_eq!(names, 1);
            assert!(String::from_utf8_lossy(&out).ends_with("data: [DONE]\n\n"));
        }
    }

    #[test]
    fn a_placeholder_in_responses_deltas_comes_back_and_the_numbers_stay_gapless() {
        let masked = [("<EMAIL_1>".to_string(), "r.k@example.com".to_string())];
        let ev = |n: u64, kind: &str, extra: Value| {
            let mut v = json!({"type": kind, "sequence_number": n});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            format!("event: {kind}\ndata: {v}\n\n")
        };
        let d = |n, t: &str| {
            ev(
                n,
                "response.output_text.delta",
                json!({"item_id": "m", "output_index": 0, "content_index": 0, "delta": t}),
            )
        };
        let stream = [
            ev(0, "response.created", json!({"response": {"id": "r"}})),
            d(1, "to <EM"),
            d(2, "AIL_1> ok <EMA"),
            ev(
                3,
                "response.output_text.done",
                json!({"output_index": 0, "content_index": 0, "text": "to <EMAIL_1> ok <EMA"}),
            ),
            ev(4, "response.completed", json!({"response": {"id": "r"}})),
        ]
        .concat();
        let mut r = StreamRestorer::new(&masked, true);
        let mut out = r.push(stream.as_bytes());
        out.extend(r.finish());
        let events = data_of(&out);
        let numbers: Vec<u64> = events.iter().map(|e| e["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(numbers, (0..numbers.len() as u64).collect::<Vec<_>>(), "gapless");
        let text: String = events.iter().filter_map(|e| e["delta"].as_str()).collect();
        assert_eq!(text, "to r.k@example.com ok <EMA");
        let done = events.iter().find(|e| e["type"] == "response.output_text.done").unwrap();
        assert_eq!(done["text"], "to r.k@example.com ok <EMA");
        assert_eq!(events.len(), 6, "one event added for the held piece");
    }

    #[test]
    fn output_terms_withhold_a_whole_answer_and_stop_a_stream_at_the_match() {
        let terms = vec!["Project Falcon".to_string()];
        let answer = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"About project falcon: no."},"finish_reason":"stop"}]}"#;
        let out: Value = crate::wire::from_slice(&filter_answer(answer, &terms).unwrap()).unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["choices"][0]["message"]["content"], "");
        assert!(filter_answer(br#"{"choices":[{"message":{"content":"falconry"}}]}"#, &terms).is_none());
        let chunk = |t: &str| {
            format!("data: {{\"id\":\"c\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{t}\"}}}}]}}\n\n")
        };
        let stream =
            [chunk("We call it "), chunk("Project "), chunk("Falcon and "), chunk("more"), "data: [DONE]\n\n".into()]
                .concat();
        for cut in [1, 9, stream.len()] {
            let mut f = StreamFilter::new(&terms);
            let out: Vec<u8> = stream.as_bytes().chunks(cut).flat_map(|c| f.push(c)).collect();
            let out = String::from_utf8(out).unwrap();
            assert!(out.contains("We call it ") && out.contains("\"Project \"") && !out.contains("Falcon"), "{out}");
            assert!(out.contains("content_filter") && out.ends_with("data: [DONE]\n\n") && !out.contains("more"));
            assert!(f.stopped);
        }
    }

    #[test]
    fn output_terms_end_a_responses_answer_or_stream_as_incomplete() {
        let terms = vec!["Project Falcon".to_string()];
        let whole = br#"{"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Project Falcon is"}]}]}"#;
        let out: Value = crate::wire::from_slice(&filter_answer(whole, &terms).unwrap()).unwrap();
        assert_eq!(
            (out["status"].as_str(), out["incomplete_details"]["reason"].as_str()),
            (Some("incomplete"), Some("content_filter"))
        );
        assert_eq!(out["output"], json!([]));
        let ev = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
        let stream = [
            ev("response.created", json!({"type": "response.created", "sequence_number": 0, "response": {"id": "r", "status": "in_progress"}})),
            ev("response.output_text.delta", json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "About Project"})),
            ev("response.output_text.delta", json!({"type": "response.output_text.delta", "sequence_number": 2, "delta": " Falcon now"})),
            ev("response.completed", json!({"type": "response.completed", "sequence_number": 3, "response": {}})),
        ]
        .concat();
        let mut f = StreamFilter::new(&terms);
        let out = String::from_utf8(f.push(stream.as_bytes())).unwrap();
        assert!(
            out.contains("About Project") && !out.contains("Falcon") && !out.contains("response.completed"),
            "{out}"
        );
        assert!(
            out.contains("\"sequence_number\":2") && out.contains("content_filter") && out.contains("\"id\":\"r\"")
        );
    }

    #[test]
    fn a_policy_names_known_categories() {
        assert!(policy(json!({"categories": {"email": "mask"}})).check("a").is_ok());
        let e = policy(json!({"categories": {"emails": "mask"}})).check("aliases.x.guardrails").unwrap_err();
        assert!(e.to_string().contains("aliases.x.guardrails.categories.emails"));
        assert!(policy(json!({"categories": {"term": "flag"}})).check("a").is_err());
        assert!(crate::config::from_value::<GuardPolicy>(json!({"categories": {"email": "hide"}})).is_err());
    }

    /// A stream through a restorer (for a request that asked for thinking), in pieces of `size`.
    fn restored_in_pieces(masked: &[(String, String)], stream: &str, size: usize) -> Vec<u8> {
        let mut r = StreamRestorer::new(masked, true);
        let mut out = Vec::new();
        for piece in stream.as_bytes().chunks(size) {
            out.extend(r.push(piece));
        }
        out.extend(r.finish());
        out
    }

    fn names_and_data(bytes: &[u8]) -> Vec<(String, Value)> {
        let mut p = crate::wire::sse::Parser::default();
        let mut evs = Vec::new();
        p.push(bytes, &mut evs);
        evs.into_iter().map(|e| (e.event.unwrap_or_default(), crate::wire::from_str(&e.data).unwrap())).collect()
    }

    const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":3}}}\n\n";

    fn text_delta(index: u64, text: &str) -> String {
        let d = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}});
        format!("event: content_block_delta\ndata: {d}\n\n")
    }

    #[test]
    fn messages_answers_are_checked_for_output_terms_whole_and_streamed() {
        let terms = vec!["forbidden".to_string()];
        let whole = json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "text", "text": "A forbidden word."}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 1, "output_tokens": 4}});
        let out: Value =
            crate::wire::from_slice(&filter_answer(whole.to_string().as_bytes(), &terms).unwrap()).unwrap();
        assert_eq!((out["content"].clone(), out["stop_reason"].clone()), (json!([]), json!("refusal")));
        assert_eq!(out["usage"]["output_tokens"], 4, "the usage stays");
        let tool = json!({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"q": "forbidden"}}]});
        assert!(filter_answer(tool.to_string().as_bytes(), &terms).is_some());
        let fine = json!({"type": "message", "content": [{"type": "text", "text": "All good."}]});
        assert!(filter_answer(fine.to_string().as_bytes(), &terms).is_none());
        // Streamed: the term split across two deltas stops the stream there, in Messages' own
        // events (the block ends, the message stops for `refusal`, with the output counted so far).
        let mut f = StreamFilter::new(&terms);
        let mut out = f.push(MESSAGE_START.as_bytes());
        out.extend(f.push(text_delta(0, "A forbi").as_bytes()));
        assert!(!f.stopped);
        out.extend(f.push(text_delta(0, "dden word").as_bytes()));
        assert!(f.stopped);
        out.extend(f.push(text_delta(0, " and more").as_bytes()));
        let evs = names_and_data(&out);
        let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["message_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        );
        assert_eq!(evs[3].1["delta"]["stop_reason"], "refusal");
        assert_eq!(evs[3].1["usage"]["output_tokens"], 3);
        assert!(!String::from_utf8_lossy(&out).contains("dden"));
    }

    #[test]
    fn masked_values_come_back_in_a_messages_stream_split_anywhere() {
        let masked = vec![("<EMAIL_1>".to_string(), "a\"b@example.com".to_string())];
        let tool = |index: u64, part: &str| {
            let d = json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part}});
            format!("event: content_block_delta\ndata: {d}\n\n")
        };
        let stop = |index: u64| {
            format!("event: content_block_stop\ndata: {}\n\n", json!({"type": "content_block_stop", "index": index}))
        };
        let stream = [
            MESSAGE_START.to_string(),
            text_delta(0, "Write to <EM"),
            text_delta(0, "AIL_1> now <EMA"),
            stop(0),
            tool(1, "{\"to\": \"<EMAIL"),
            tool(1, "_1>\"}"),
            stop(1),
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n".to_string(),
        ]
        .concat();
        for size in [1, 5, 64, 4096] {
            let evs = names_and_data(&restored_in_pieces(&masked, &stream, size));
            let lane = |i: u64, field: &str| -> String {
                evs.iter()
                    .filter(|(n, v)| n == "content_block_delta" && v["index"] == i)
                    .filter_map(|(_, v)| v["delta"][field].as_str().map(str::to_string))
                    .collect()
            };
            // The text comes back (a piece that only looked like a placeholder is sent before
            // its block ends); the tool's input is JSON with the value escaped in it.
            assert_eq!(lane(0, "text"), "Write to a\"b@example.com now <EMA", "pieces of {size}");
            let input: Value = crate::wire::from_str(&lane(1, "partial_json")).unwrap();
            assert_eq!(input, json!({"to": "a\"b@example.com"}), "pieces of {size}");
            let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
            let held = names.iter().position(|n| *n == "content_block_stop").unwrap();
            assert_eq!(names[held - 1], "content_block_delta", "the held piece goes before its block's end");
            assert!(evs.iter().all(|(n, v)| v["type"] == n.as_str()));
        }
    }

    #[test]
    fn signed_thinking_keeps_its_placeholders_whole_and_streamed() {
        // The model thought about the placeholder; the caller passes the block back signed, so
        // its text goes back as written while the answer's text gets the value.
        let masked = vec![("<EMAIL_1>".to_string(), "a\"b@example.com".to_string())];
        let whole = json!({"id": "msg_1", "type": "message", "role": "assistant", "content": [
            {"type": "thinking", "thinking": "Reply to <EMAIL_1>.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "<EMAIL_1>"},
            {"type": "text", "text": "Mail <EMAIL_1> today."},
            {"type": "tool_use", "id": "t", "name": "send", "input": {"to": "<EMAIL_1>"}}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}});
        // A request that asked for no thinking has no thinking blocks to keep: every text is
        // put back byte for byte (no look for them).
        let mut plain = Restorer::new(&masked);
        let all = restore_answer(&mut plain, &masked, whole.to_string().as_bytes());
        assert!(!String::from_utf8_lossy(&all).contains("<EMAIL_1>"));
        let mut r = Restorer::new(&masked).thinking(true);
        let out: Value =
            crate::wire::from_slice(&restore_answer(&mut r, &masked, whole.to_string().as_bytes())).unwrap();
        assert_eq!(out["content"][0], whole["content"][0]);
        assert_eq!(out["content"][1], whole["content"][1]);
        assert_eq!(out["content"][2]["text"], "Mail a\"b@example.com today.");
        assert_eq!(out["content"][3]["input"]["to"], "a\"b@example.com");
        assert_eq!((out["id"].clone(), out["usage"].clone()), (whole["id"].clone(), whole["usage"].clone()));
        // An answer without thinking is put back byte for byte, as before.
        let chat = br#"{"choices":[{"message":{"content":"to <EMAIL_1>"}}]}"#;
        assert_eq!(
            restore_answer(&mut r, &masked, chat),
            br#"{"choices":[{"message":{"content":"to a\"b@example.com"}}]}"#
        );
        // Streamed: thinking and signature deltas pass as they came; text after them is restored,
        // and a text that quotes the delta's name is still text.
        let think = |t: &str| {
            let d =
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": t}});
            format!("event: content_block_delta\ndata: {d}\n\n")
        };
        let sig = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "<EMAIL_1>"}});
        let stream = [
            MESSAGE_START.to_string(),
            think("Reply to <EMA"),
            think("IL_1>."),
            format!("event: content_block_delta\ndata: {sig}\n\n"),
            text_delta(1, "Mail <EMAIL_1> \"thinking_delta\" <EMAIL_1>"),
        ]
        .concat();
        for size in [1, 7, 4096] {
            let evs = names_and_data(&restored_in_pieces(&masked, &stream, size));
            let field = |f: &str| -> String { evs.iter().filter_map(|(_, v)| v["delta"][f].as_str()).collect() };
            assert_eq!(field("thinking"), "Reply to <EMAIL_1>.", "pieces of {size}");
            assert_eq!(field("signature"), "<EMAIL_1>", "pieces of {size}");
            assert_eq!(field("text"), "Mail a\"b@example.com \"thinking_delta\" a\"b@example.com", "pieces of {size}");
        }
    }
}
