//! Guardrails: values in a request that a route does not let reach a provider (PII, secrets, an
//! operator's terms), found by the detectors (`detect`) and masked, refused or flagged per
//! category, as the alias's or rule's policy says; masked values may be put back in the answer.

pub mod detect;
pub mod injection;
pub mod schema;
pub mod stage;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::ConfigError;
use detect::{Category, Found};

/// What a policy does with a category's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardPolicy {
    /// Per category (`email`, `phone`, `card`, `iban`, `aadhaar`, `pan`, `ssn`, `ip`, `secret`,
    /// `term`, `pattern`): what is done with its values. A category left out is not looked for.
    #[serde(default)]
    pub categories: BTreeMap<String, Action>,
    /// The operator's terms (whole words, case-insensitive): category `term`.
    #[serde(default)]
    pub terms: Vec<String>,
    /// The operator's patterns (see `detect::Shape`): category `pattern`.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Masked values are put back in the answer (streamed or not).
    #[serde(default)]
    pub restore: bool,
    /// Prompt-injection rules over what callers and tools wrote (`injection`).
    #[serde(default)]
    pub injection: Option<injection::InjectionPolicy>,
    /// Terms an answer must not contain (whole words, case-insensitive): a whole answer that
    /// does is replaced by a refusal, a stream stops at it (`finish_reason: content_filter`).
    #[serde(default)]
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
];

/// What applying a policy to a request found and did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Per category and action, how many values.
    pub counts: BTreeMap<(Category, &'static str), u32>,
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
            *applied.counts.entry((category, action.as_str())).or_default() += 1;
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
                        Some((p, _)) => p.clone(),
                        None => {
                            let n = applied
                                .masked
                                .iter()
                                .filter(|(p, _)| p.starts_with(&format!("<{}_", category.placeholder())))
                                .count();
                            let p = format!("<{}_{}>", category.placeholder(), n + 1);
                            applied.masked.push((p.clone(), value.to_string()));
                            p
                        }
                    };
                    out.push_str(&s[at..start]);
                    out.push_str(&placeholder);
                    at = end;
                    applied.changed = true;
                }
            }
        }
        if at > 0 {
            out.push_str(&s[at..]);
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
    let mut v: Value = serde_json::from_slice(body).ok()?;
    if v.get("object").and_then(Value::as_str) == Some("response") {
        let text = schema::answer_text(body).ok().flatten().unwrap_or_default();
        let args: String = v
            .get("output")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("arguments").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        if !holds_term(&text, terms) && !holds_term(&args, terms) {
            return None;
        }
        v["status"] = Value::String("incomplete".into());
        v["incomplete_details"] = serde_json::json!({"reason": "content_filter"});
        v["output"] = serde_json::json!([]);
        return serde_json::to_vec(&v).ok();
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
        .join(" ");
    if !holds_term(text, terms) && !holds_term(&args, terms) {
        return None;
    }
    if let Some(m) = message.as_object_mut() {
        m.insert("content".into(), Value::String(String::new()));
        m.insert("refusal".into(), Value::String(WITHHELD.into()));
        m.remove("tool_calls");
    }
    v["choices"][0]["finish_reason"] = Value::String("content_filter".into());
    serde_json::to_vec(&v).ok()
}

/// What a caller reads in place of a withheld answer.
pub const WITHHELD: &str = "The answer was withheld by the gateway's content filter.";

/// A stream, checked against output terms as it goes. Chat chunks: the chunk whose text
/// completes a term, and everything after it, is replaced by a last chunk with
/// `finish_reason: content_filter` and `[DONE]`. Responses events: the delta that completes a
/// term, and everything after it, is replaced by `response.incomplete` (reason
/// `content_filter`, no output), numbered in sequence. The text seen is kept only as long as the
/// longest term (a term split across chunks is caught).
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
            let Ok(v) = serde_json::from_str::<Value>(&ev.data) else {
                crate::wire::sse::data_event(&mut out, &ev.data);
                continue;
            };
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
                        let mut r = self.snapshot.clone().unwrap_or_else(|| serde_json::json!({}));
                        r["status"] = Value::String("incomplete".into());
                        r["incomplete_details"] = serde_json::json!({"reason": "content_filter"});
                        r["output"] = serde_json::json!([]);
                        let data = serde_json::json!({"type": "response.incomplete", "sequence_number": number, "response": r});
                        out.extend_from_slice(format!("event: response.incomplete\ndata: {data}\n\n").as_bytes());
                        return out;
                    }
                    self.keep_tail(seen);
                }
                self.seq = number;
                out.extend_from_slice(format!("event: {kind}\ndata: {}\n\n", ev.data).as_bytes());
                continue;
            }
            let delta = &v["choices"][0]["delta"];
            let mut text = delta.get("content").and_then(Value::as_str).unwrap_or_default().to_string();
            for c in delta.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                text.push_str(c.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default());
            }
            let seen = format!("{}{text}", self.tail);
            if holds_term(&seen, &self.terms) {
                self.stopped = true;
                let stop = serde_json::json!({"id": v.get("id"), "object": "chat.completion.chunk", "created": v.get("created"),
                    "model": v.get("model"), "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]});
                crate::wire::sse::data_event(&mut out, &stop.to_string());
                out.extend_from_slice(b"data: [DONE]\n\n");
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
        self.tail = seen[keep_from..].to_string();
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
}

impl Restorer {
    pub fn new(masked: &[(String, String)]) -> Restorer {
        let pairs: Vec<(String, String)> = masked
            .iter()
            .map(|(p, v)| {
                let json = serde_json::to_string(v).unwrap_or_default();
                (p.clone(), json.get(1..json.len().saturating_sub(1)).unwrap_or_default().to_string())
            })
            .collect();
        let longest = pairs.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        Restorer { pairs, carry: Vec::new(), longest }
    }

    /// A piece of the answer; returns what can go on now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
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
                        out.extend_from_slice(v.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(v: Value) -> GuardPolicy {
        serde_json::from_value(v).unwrap()
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

    #[test]
    fn output_terms_withhold_a_whole_answer_and_stop_a_stream_at_the_match() {
        let terms = vec!["Project Falcon".to_string()];
        let answer = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":"About project falcon: no."},"finish_reason":"stop"}]}"#;
        let out: Value = serde_json::from_slice(&filter_answer(answer, &terms).unwrap()).unwrap();
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
        let out: Value = serde_json::from_slice(&filter_answer(whole, &terms).unwrap()).unwrap();
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
        assert!(serde_json::from_value::<GuardPolicy>(json!({"categories": {"email": "hide"}})).is_err());
    }
}
