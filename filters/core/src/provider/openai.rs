//! OpenAI chat completions and Azure OpenAI: the unified format itself. The request changes only
//! in its `model` (Azure: the deployment, in the path) and in always asking a stream for its
//! usage (quota and audit need it; the listener hides it from a caller who did not ask).

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::auth::sigv4::uri_encode;
use crate::error::GatewayError;
use crate::provider::ProviderConfig;
use crate::provider::Whole;
use crate::provider::{invalid_json, ProviderApi};
use crate::wire::sse;

pub const CHAT_PATH: &str = "/v1/chat/completions";

/// OpenAI's wire format, at OpenAI or at Azure OpenAI (a deployment path, `api-key` auth).
pub struct OpenAiFormat {
    pub azure: bool,
}

fn raw(v: &Value) -> Result<Box<RawValue>, GatewayError> {
    serde_json::value::to_raw_value(v).map_err(invalid_json)
}

pub static OPENAI: OpenAiFormat = OpenAiFormat { azure: false };
pub static AZURE: OpenAiFormat = OpenAiFormat { azure: true };

/// The caller's request with only its `model` changed (the rest passes through as written).
pub fn with_model(body: &[u8], model: &str) -> Result<Vec<u8>, GatewayError> {
    let mut top: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).map_err(invalid_json)?;
    top.insert("model".into(), raw(&Value::String(model.to_string()))?);
    serde_json::to_vec(&top).map_err(invalid_json)
}

impl ProviderApi for OpenAiFormat {
    fn path(&self, model: &str, cfg: &ProviderConfig, _stream: bool) -> String {
        if !self.azure {
            return CHAT_PATH.to_string();
        }
        format!(
            "/openai/deployments/{}/chat/completions?api-version={}",
            uri_encode(model, false),
            uri_encode(&cfg.api_version, false)
        )
    }

    fn credential_header(&self, key: &str) -> Option<(&'static str, String)> {
        Some(if self.azure { ("api-key", key.to_string()) } else { ("authorization", format!("Bearer {key}")) })
    }

    fn request(&self, body: &[u8], model: &str, _max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError> {
        // The top level only: the messages (most of the body) stay as the caller wrote them.
        let mut top: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(body).map_err(invalid_json)?;
        let stream = top.get("stream").is_some_and(|s| s.get() == "true");
        top.insert("model".into(), raw(&Value::String(model.to_string()))?);
        if stream {
            let mut opts: Value = match top.get("stream_options") {
                Some(o) => crate::wire::from_str(o.get()).map_err(invalid_json)?,
                None => serde_json::json!({}),
            };
            if let Some(o) = opts.as_object_mut() {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            top.insert("stream_options".into(), raw(&opts)?);
        }
        let out = serde_json::to_vec(&top).map_err(invalid_json)?;
        Ok((out, stream))
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
            crate::wire::embeddings::PATH.to_string()
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
        Some(if self.azure { "/openai/v1/responses" } else { "/v1/responses" }.to_string())
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
