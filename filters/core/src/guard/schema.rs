//! Output checks: whether a model's answer is the JSON a request asked for
//! (`response_format` `json_object` or `json_schema`). The schema is checked with a documented
//! subset of JSON Schema, enough for structured output as the providers define it: `type`
//! (one or a list), `properties`, `required`, `additionalProperties` (`false` or a schema),
//! `items`, `enum`, `const`, `anyOf`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `minimum`/`maximum`. Anything else in a schema is not checked (it never fails an answer).

use crate::text::Text;
use crate::wire::obj;
use crate::wire::tree::Value;

/// What an answer must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this schema.
    Schema(Value),
}

impl OutputFormat {
    /// From a chat request's `response_format` (`None`: plain text, nothing to check).
    pub fn of_response_format(rf: &Value) -> Option<OutputFormat> {
        match rf.get("type").and_then(Value::as_str)? {
            "json_object" => Some(OutputFormat::JsonObject),
            "json_schema" => {
                let schema = rf.get("json_schema").and_then(|j| j.get("schema")).cloned();
                Some(schema.map_or(OutputFormat::JsonObject, OutputFormat::Schema))
            }
            _ => None,
        }
    }

    /// Checks an answer's text: `Err` says what is wrong (never the whole answer).
    pub fn check(&self, text: &str) -> Result<(), String> {
        let v: Value = crate::wire::from_str(text.trim()).map_err(|e| format!("the answer is not JSON ({e})"))?;
        match self {
            OutputFormat::JsonObject if v.is_object() => Ok(()),
            OutputFormat::JsonObject => Err("the answer is JSON but not an object".own()),
            OutputFormat::Schema(s) => validate(s, &v, "$"),
        }
    }
}

/// A Responses request's `text` (its `format`), or a Messages request's `output_config` (the
/// same `format`), as the chat `response_format` it stands for
/// (JSON text); `None` for plain text.
pub fn response_format_of_text(text: &str) -> Option<String> {
    let t: Value = crate::wire::from_str(text).ok()?;
    let f = t.get("format")?;
    let rf = match f.get("type").and_then(Value::as_str)? {
        "json_object" => obj! {"type" => "json_object"},
        "json_schema" => {
            obj! {"type" => "json_schema", "json_schema" = obj!{"schema" => f.get("schema")?}}
        }
        _ => return None,
    };
    Some(crate::wire::write::to_string(&rf))
}

/// The text of an answer to check: a chat completion's message content, or a Response
/// object's output text; `Ok(None)` for an answer of tool calls only.
pub fn answer_text(answer: &[u8]) -> Result<Option<String>, String> {
    let v: Value = crate::wire::from_slice(answer).map_err(|e| format!("the answer cannot be read ({e})"))?;
    if v.get("object").and_then(Value::as_str) == Some("response") {
        let items = v.get("output").and_then(Value::as_array).cloned().unwrap_or_default();
        let text: Vec<&str> = items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("message"))
            .flat_map(|i| i.get("content").and_then(Value::as_array).into_iter().flatten())
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("output_text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        if text.is_empty() && items.iter().any(|i| i.get("type").and_then(Value::as_str) == Some("function_call")) {
            return Ok(None);
        }
        return Ok(Some(text.concat()));
    }
    if v.get("type").and_then(Value::as_str) == Some("message") {
        // A Messages answer: its text blocks.
        let blocks = v.get("content").and_then(Value::as_array).cloned().unwrap_or_default();
        let kind = |b: &Value, k: &str| b.get("type").and_then(Value::as_str) == Some(k);
        let text: Vec<&str> =
            blocks.iter().filter(|b| kind(b, "text")).filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
        if text.is_empty() && blocks.iter().any(|b| kind(b, "tool_use")) {
            return Ok(None);
        }
        return Ok(Some(text.concat()));
    }
    let message = &v["choices"][0]["message"];
    match message.get("content").and_then(Value::as_str) {
        Some(text) => Ok(Some(text.own())),
        None if message.get("tool_calls").is_some() => Ok(None),
        None => Err("the answer has no text".own()),
    }
}

fn type_ok(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// Validates `v` (at `path`) against the subset of JSON Schema above.
pub fn validate(s: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Some(s) = s.as_object() else { return Ok(()) };
    match s.get("type") {
        Some(Value::String(t)) if !type_ok(t, v) => return Err(format!("at {path}: not of type {t}")),
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_ok(t, v)) => {
            return Err(format!("at {path}: not of any type the schema allows"))
        }
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("at {path}: not one of the allowed values"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return Err(format!("at {path}: not the required constant"));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|a| validate(a, v, path).is_ok()) {
            return Err(format!("at {path}: matches none of anyOf"));
        }
    }
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    if let Some(n) = v.as_f64() {
        if bound("minimum").is_some_and(|m| n < m) || bound("maximum").is_some_and(|m| n > m) {
            return Err(format!("at {path}: out of range"));
        }
    }
    if let Some(t) = v.as_str() {
        let n = t.chars().count() as f64;
        if bound("minLength").is_some_and(|m| n < m) || bound("maxLength").is_some_and(|m| n > m) {
            return Err(format!("at {path}: a string of the wrong length"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as f64;
        if bound("minItems").is_some_and(|m| n < m) || bound("maxItems").is_some_and(|m| n > m) {
            return Err(format!("at {path}: the wrong number of items"));
        }
        if let Some(is) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                validate(is, x, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        for r in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !o.contains_key(r) {
                return Err(format!("at {path}: missing required property `{r}`"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, x, &format!("{path}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Err(format!("at {path}: property `{k}` is not allowed")),
                    Some(extra @ Value::Object(_)) => validate(extra, x, &format!("{path}.{k}"))?,
                    _ => {}
                },
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    #[test]
    fn a_messages_answers_text_is_its_text_blocks() {
        let a = crate::json!({"type": "message", "content": [{"type": "thinking", "thinking": "x"},
            {"type": "text", "text": "{\"a\":"}, {"type": "text", "text": "1}"}]});
        assert_eq!(answer_text(a.to_string().as_bytes()).unwrap().as_deref(), Some("{\"a\":1}"));
        let tools =
            crate::json!({"type": "message", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]});
        assert_eq!(answer_text(tools.to_string().as_bytes()).unwrap(), None);
    }

    #[test]
    fn answers_are_checked_against_the_subset() {
        let schema = json!({"type": "object", "additionalProperties": false, "required": ["city", "population"],
            "properties": {"city": {"type": "string", "minLength": 1}, "population": {"type": "integer", "minimum": 0},
                           "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
                           "note": {"type": ["string", "null"]}}});
        let f = OutputFormat::Schema(schema);
        assert!(f.check(r#"{"city":"Pune","population":7000000,"tags":["a"],"note":null}"#).is_ok());
        assert_eq!(f.check(r#"{"city":"Pune"}"#).unwrap_err(), "at $: missing required property `population`");
        assert_eq!(f.check(r#"{"city":"Pune","population":-1}"#).unwrap_err(), "at $.population: out of range");
        assert_eq!(f.check(r#"{"city":"Pune","population":1.5}"#).unwrap_err(), "at $.population: not of type integer");
        assert!(f.check(r#"{"city":"P","population":1,"extra":1}"#).unwrap_err().contains("`extra` is not allowed"));
        assert_eq!(
            f.check(r#"{"city":"P","population":1,"tags":["c"]}"#).unwrap_err(),
            "at $.tags[0]: not one of the allowed values"
        );
        assert!(f.check("Sure! Here is the JSON: {}").unwrap_err().starts_with("the answer is not JSON"));
        assert!(OutputFormat::JsonObject.check(" {\"a\": 1} ").is_ok());
        assert!(OutputFormat::JsonObject.check("[1]").is_err());
        let rf = |v: Value| OutputFormat::of_response_format(&v);
        assert_eq!(rf(json!({"type": "json_object"})), Some(OutputFormat::JsonObject));
        assert_eq!(rf(json!({"type": "text"})), None);
        assert!(matches!(
            rf(json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}})),
            Some(OutputFormat::Schema(_))
        ));
    }
}
