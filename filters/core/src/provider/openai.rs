//! OpenAI chat completions and Azure OpenAI: the unified format itself. The request changes only
//! in its `model` (Azure: the deployment, in the path) and in always asking a stream for its
//! usage (quota and audit need it; the listener hides it from a caller who did not ask).

use crate::text::{PutBytes, Text};
use crate::wire::tree::Value;

use crate::auth::sigv4::uri_encode;
use crate::error::GatewayError;
use crate::provider::ProviderConfig;
use crate::provider::Whole;
use crate::provider::{invalid_json, ProviderApi};
use crate::wire::scan;
use crate::wire::sse;

pub const CHAT_PATH: &str = "/v1/chat/completions";

/// OpenAI's wire format, at OpenAI or at Azure OpenAI (a deployment path, `api-key` auth).
pub struct OpenAiFormat {
    pub azure: bool,
}

pub static OPENAI: OpenAiFormat = OpenAiFormat { azure: false };
pub static AZURE: OpenAiFormat = OpenAiFormat { azure: true };

/// The caller's request with only its `model` changed (the rest passes through as written).
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    Ok(rewrite(body, model, false)?.0)
}

/// The caller's request, byte for byte, but for the value of every top-level `model` member
/// (replaced by `model`, or added) and, when `stream_usage` and the request streams, its
/// `stream_options` (asking for usage). Whether the request streams comes with it. No tree is
/// built: the members are only delimited.
fn rewrite(body: &[u8], model: &str, stream_usage: bool) -> Result<(Vec<u8>, bool), GatewayError> {
    let not_object =
        || GatewayError::bad_request("invalid_json", "The request body is not valid JSON: not one JSON object");
    let (members, close) = scan::members(body).ok_or_else(not_object)?;
    let value = |m: &scan::Member| body.get(m.value.clone()).unwrap_or_default();
    // (As a JSON reader takes a repeated member: the last one.)
    let stream = members.iter().rev().find(|m| m.key_is(body, "stream")).is_some_and(|m| value(m) == b"true");
    let model_json = crate::wire::write::to_vec(model);
    let mut out = Vec::with_capacity(body.len() + model_json.len() + 48);
    let (mut at, mut has_model, mut has_options) = (0, false, false);
    for m in &members {
        let new = if m.key_is(body, "model") {
            has_model = true;
            model_json.clone()
        } else if stream && stream_usage && m.key_is(body, "stream_options") {
            has_options = true;
            match crate::wire::from_slice::<Value>(value(m)).map_err(invalid_json)? {
                Value::Object(mut o) => {
                    o.insert("include_usage".own(), Value::Bool(true));
                    crate::wire::write::to_vec(&o)
                }
                _ => continue,
            }
        } else {
            continue;
        };
        out.put(body.get(at..m.value.start).unwrap_or_default());
        out.put(&new);
        at = m.value.end;
    }
    out.put(body.get(at..close).unwrap_or_default());
    let mut add = |key: &[u8], v: &[u8], first: bool| {
        if !first {
            out.push(b',');
        }
        out.put(key);
        out.put(v);
    };
    let mut empty = members.is_empty();
    if !has_model {
        add(br#""model":"#, &model_json, empty);
        empty = false;
    }
    if stream && stream_usage && !has_options {
        add(br#""stream_options":"#, br#"{"include_usage":true}"#, empty);
    }
    out.put(body.get(close..).unwrap_or_default());
    Ok((out, stream))
}

impl ProviderApi for OpenAiFormat {
    fn path(&self, model: &str, cfg: &ProviderConfig, _stream: bool) -> String {
        if !self.azure {
            return CHAT_PATH.own();
        }
        format!(
            "/openai/deployments/{}/chat/completions?api-version={}",
            uri_encode(model, false),
            uri_encode(&cfg.api_version, false)
        )
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(if self.azure { ("api-key", key.own()) } else { ("authorization", format!("Bearer {key}")) })
    }

    fn request(&self, body: &[u8], model: &str, _max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError> {
        // The top level only, and only what changes: the messages (most of the body) and every
        // other member stay as the caller wrote them.
        rewrite(body, model, true)
    }

    fn answers_unified(&self) -> bool {
        true
    }

    fn embeddings_path(&self, model: &str, cfg: &ProviderConfig) -> Option<String> {
        Some(if self.azure {
            format!(
                "/openai/deployments/{}/embeddings?api-version={}",
                uri_encode(model, false),
                uri_encode(&cfg.api_version, false)
            )
        } else {
            crate::wire::embeddings::PATH.own()
        })
    }

    /// Passed through: only the model changes (Azure's deployment is in the path, and its
    /// answer is OpenAI's).
    fn embeddings_request(
        &self,
        _req: &crate::wire::embeddings::EmbeddingsRequest,
        _texts: &[std::borrow::Cow<'_, str>],
        body: &[u8],
        model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        with_model(body, model)
    }

    /// Azure: its v1 surface, which takes the deployment as `model` and needs no api-version.
    fn responses_path(&self, _cfg: &ProviderConfig) -> Option<String> {
        Some(if self.azure { "/openai/v1/responses" } else { "/v1/responses" }.own())
    }

    fn answer(&self, body: &[u8], _model: &str, _now_ms: u64) -> Result<Whole, String> {
        let usage =
            crate::wire::usage::from_openai_body(body).map_err(|e| format!("provider sent invalid JSON: {e}"))?;
        Ok((body.to_vec(), usage, None))
    }

    fn error(&self, status: u16, _error_type: &str, body: &[u8]) -> (u16, Vec<u8>) {
        (status, body.to_vec())
    }

    fn stream(&self, _ct: &str, _model: &str, _id: Option<&str>, _created: u64) -> Option<Box<dyn sse::Translate>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn request(body: &str) -> (String, bool) {
        let (out, stream) = OPENAI.request(body.as_bytes(), "gpt-4o-mini", 1024).unwrap();
        (String::from_utf8(out).unwrap(), stream)
    }

    #[test]
    fn only_the_model_changes_and_every_other_byte_stays_as_written() {
        let body = "{ \"z\": 1,\n  \"model\" : \"chat\", \"messages\":[{\"role\":\"user\",\"content\":\"caf\\u00e9 é \\\"q\\\"\"}], \"a\":1.50 }";
        let (out, stream) = request(body);
        assert_eq!(out, body.replace("\"chat\"", "\"gpt-4o-mini\""));
        assert!(!stream);
        assert_eq!(with_model(body.as_bytes(), "m").unwrap(), body.replace("\"chat\"", "\"m\"").into_bytes());
    }

    #[test]
    fn a_model_is_added_when_missing_and_every_model_member_is_replaced() {
        assert_eq!(request("{}").0, r#"{"model":"gpt-4o-mini"}"#);
        assert_eq!(request(r#"{"messages":[]}"#).0, r#"{"messages":[],"model":"gpt-4o-mini"}"#);
        // Repeated, or spelled with an escape: no copy of the alias is left for the provider.
        let (out, _) = request(r#"{"model":"chat","mod\u0065l":"chat","messages":[]}"#);
        assert!(!out.contains("chat"), "{out}");
        // A name that needs escaping is written as a JSON string.
        let out = with_model(br#"{"model":"x"}"#, "dep\"1\\").unwrap();
        assert_eq!(crate::wire::from_slice::<Value>(&out).unwrap(), json!({"model": "dep\"1\\"}));
    }

    #[test]
    fn a_stream_always_asks_for_usage() {
        let (out, stream) = request(r#"{"model":"chat","stream":true,"messages":[]}"#);
        assert!(stream);
        assert_eq!(
            crate::wire::from_str::<Value>(&out).unwrap(),
            json!({"model":"gpt-4o-mini","stream":true,"messages":[],"stream_options":{"include_usage":true}})
        );
        let (out, _) = request(r#"{"stream":true,"stream_options":{"include_usage":false,"x":1},"model":"c"}"#);
        assert_eq!(
            crate::wire::from_str::<Value>(&out).unwrap(),
            json!({"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true,"x":1}})
        );
        // Not a stream (or the last `stream` says not): the options are the caller's.
        let body = r#"{"stream":true,"stream":false,"stream_options":{"include_usage":false},"model":"c"}"#;
        let (out, stream) = request(body);
        assert!(!stream);
        assert_eq!(out, body.replace("\"c\"", "\"gpt-4o-mini\""));
        // Options that are not an object are left for the provider to refuse.
        let (out, _) = request(r#"{"stream":true,"stream_options":null,"model":"c"}"#);
        assert_eq!(out, r#"{"stream":true,"stream_options":null,"model":"gpt-4o-mini"}"#);
    }

    #[test]
    fn a_body_that_is_not_one_object_is_a_400() {
        for bad in ["", "[]", "{\"model\":", "{\"model\":\"x\"} {}", "null"] {
            let e = OPENAI.request(bad.as_bytes(), "m", 1).err().map(|e| (e.status, e.code));
            assert_eq!(e, Some((400, "invalid_json")), "{bad}");
        }
    }
}
