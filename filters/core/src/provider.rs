//! One provider API, as an upstream attempt sees it: where it is asked, how it is
//! authenticated, and how the unified (OpenAI chat) request, its answers, its streams and its
//! errors are translated. Each API is one module (`openai`, `anthropic`, `gemini`,
//! `bedrock`) with its implementation of [`ProviderApi`]; the route and credential stages only
//! ask [`api`] for the one an attempt goes to.
//!
//! Adding a provider: a module with its translations and its `ProviderApi`, a variant of
//! [`Api`] mapped here, and its fake in `tests/fake-providers` (README, "Adding a provider").

pub mod anthropic;
pub mod bedrock;
pub mod gemini;
pub mod openai;

use crate::text::Text;
use crate::wire::tree::Value;

use crate::error::GatewayError;

use crate::auth::CredentialConfig;
use crate::quota::LimitSpec;
use crate::route::Api;

/// A provider, as every stage knows it: its API (route), its credentials (the credential
/// stage) and the gateway's limits on it (quota). The `gateway` filters take one table of
/// these, `providers`; a design-card filter alone takes the fields its stage reads.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub api: Api,
    /// `max_tokens` sent to providers that require it when the caller gave none.
    pub max_tokens_default: u64,
    /// Azure: the `api-version` query parameter.
    pub api_version: String,
    /// Shorthand for one credential: the environment variable (in the Wasm VM's environment)
    /// that holds the key.
    pub key_env: Option<String>,
    /// With `key_env`, for Bedrock: the AWS secret access key.
    pub secret_env: Option<String>,
    /// Several credentials, tried in order (see `auth::credentials::choose`).
    pub credentials: Vec<CredentialConfig>,
    /// The provider's own requests and tokens per minute, charged per attempt (quota).
    pub limits: Option<LimitSpec>,
    /// The Envoy cluster of this provider, for the calls an attempt makes itself (the other
    /// parts of a split embeddings batch); default `provider_<name>`.
    pub cluster: Option<String>,
}

fn default_azure_version() -> String {
    "2024-10-21".own()
}

fn default_max_tokens() -> u64 {
    4096
}
use crate::wire::sse;
use crate::wire::usage::Usage;

/// A whole answer in the unified format: its bytes, its usage, and what it says (drift signals,
/// shadow comparison; `None`: passed through as the provider sent it, read where it is checked).
pub type Whole = (Vec<u8>, Option<Usage>, Option<crate::wire::facts::AnswerFacts>);

pub trait ProviderApi {
    /// The path of a request for `model`; `stream`: the request streams.
    fn path(&self, model: &str, cfg: &ProviderConfig, stream: bool) -> String;

    /// A header the API needs besides its credential (its version).
    fn version_header(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// The header that carries `key`; `None`: the request is signed instead, over its body.
    fn credential_header(&self, key: &str) -> Option<(&'static str, String)>;

    /// The unified request (the caller's bytes), translated for this API and `model`: (the body
    /// to send, whether it streams). An API that takes the unified format rewrites only what
    /// changes; the others read it once, typed and borrowed.
    fn request(&self, body: &[u8], model: &str, max_tokens_default: u64) -> Result<(Vec<u8>, bool), GatewayError>;

    /// Whether the API answers in the unified format already: the answer passes through, only
    /// checked to be readable.
    fn answers_unified(&self) -> bool {
        false
    }

    /// A whole success, translated to the unified format, its usage and what it says (read
    /// once, here: the listener's stages take them from the attempt instead of reading the
    /// answer again).
    fn answer(&self, body: &[u8], model: &str, now_ms: u64) -> Result<Whole, String>;

    /// An error answer, translated: (status for the caller, body). `error_type`: the API's own
    /// error type header, where it has one (Bedrock's `x-amzn-errortype`).
    fn error(&self, status: u16, error_type: &str, body: &[u8]) -> (u16, Vec<u8>);

    /// Whether the API speaks Anthropic's Messages (the Messages door's request passes to it
    /// but for `model`, and its answer comes back as it is).
    fn speaks_messages(&self) -> bool {
        false
    }

    /// Responses: the path of the API's own Responses endpoint, when it has one the gateway passes
    /// the caller's request to (OpenAI, Azure); `None`: the request is translated to the API's chat.
    fn responses_path(&self, _cfg: &ProviderConfig) -> Option<String> {
        None
    }

    /// Embeddings: the path that embeds with `model`; `None`: the gateway speaks no embeddings
    /// API of this provider.
    fn embeddings_path(&self, _model: &str, _cfg: &ProviderConfig) -> Option<String> {
        None
    }

    /// Embeddings: the most inputs one call of this API embeds with `model`; `None`: no cap the
    /// gateway splits at (the request passes as written). A larger batch is split into parts
    /// of at most this many, each a call of its own (`route::stage`).
    fn embeddings_batch(&self, _model: &str) -> Option<usize> {
        None
    }

    /// Embeddings: the caller's request (OpenAI's format: `req` as read, `body` as written),
    /// translated for this API and `model`; `texts`: the inputs this call embeds (a part of
    /// `req`'s, for an API with a batch cap; empty for one without).
    fn embeddings_request(
        &self,
        _req: &crate::wire::embeddings::EmbeddingsRequest,
        _texts: &[std::borrow::Cow<'_, str>],
        _body: &[u8],
        _model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        Err(no_embeddings())
    }

    /// Embeddings: the vectors of a whole success, in input order, and the input tokens when
    /// the body reports them.
    fn embeddings_vectors(&self, _body: &[u8], _model: &str) -> Result<(Vec<Vec<f64>>, Option<u64>), String> {
        Err("this provider's embeddings are not translated".own())
    }

    /// The translator of a streamed success of this content type, when the API streams in it.
    fn stream(
        &self,
        content_type: &str,
        model: &str,
        request_id: Option<&str>,
        created: u64,
    ) -> Option<Box<dyn sse::Translate>>;
}

/// The implementation of an API.
pub fn api(a: Api) -> &'static dyn ProviderApi {
    match a {
        Api::Openai => &crate::provider::openai::OPENAI,
        Api::Azure => &crate::provider::openai::AZURE,
        Api::Anthropic => &crate::provider::anthropic::Anthropic,
        Api::Gemini => &crate::provider::gemini::Gemini,
        Api::Bedrock => &crate::provider::bedrock::Bedrock,
    }
}

/// The 400 for an embeddings call to a provider whose embeddings the gateway does not speak.
pub fn no_embeddings() -> GatewayError {
    GatewayError::bad_request("unsupported_for_provider", "This provider's embeddings are not served by the gateway.")
}

/// The 400 for a request body that is not JSON.
pub fn invalid_json(e: crate::wire::read::Error) -> GatewayError {
    GatewayError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}"))
}

/// The path that embeds with `model` on API `a` (see [`ProviderApi::embeddings_path`]), by static
/// dispatch: the route configuration's check, which the listener compiles too, then links no
/// provider's translations into a module that runs none.
pub fn embeddings_path(a: Api, model: &str, cfg: &ProviderConfig) -> Option<String> {
    match a {
        Api::Openai => crate::provider::openai::OPENAI.embeddings_path(model, cfg),
        Api::Azure => crate::provider::openai::AZURE.embeddings_path(model, cfg),
        Api::Anthropic => crate::provider::anthropic::Anthropic.embeddings_path(model, cfg),
        Api::Gemini => crate::provider::gemini::Gemini.embeddings_path(model, cfg),
        Api::Bedrock => crate::provider::bedrock::Bedrock.embeddings_path(model, cfg),
    }
}

/// The credential header of an API for `key` (see [`ProviderApi::credential_header`]), by
/// static dispatch: the credential stage, deployed alone, then links no provider's translations.
pub fn credential_header(a: Api, key: &str) -> Option<(&'static str, String)> {
    match a {
        Api::Openai => crate::provider::openai::OPENAI.credential_header(key),
        Api::Azure => crate::provider::openai::AZURE.credential_header(key),
        Api::Anthropic => crate::provider::anthropic::Anthropic.credential_header(key),
        Api::Gemini => crate::provider::gemini::Gemini.credential_header(key),
        Api::Bedrock => crate::provider::bedrock::Bedrock.credential_header(key),
    }
}

/// Whether a unified request asks for a stream.
pub fn streams(req: &Value) -> bool {
    req.get("stream").and_then(Value::as_bool) == Some(true)
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for ProviderConfig {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "ProviderConfig",
            Some(&[
                "api",
                "max_tokens_default",
                "api_version",
                "key_env",
                "secret_env",
                "credentials",
                "limits",
                "cluster",
            ]),
        )?;
        Ok(ProviderConfig {
            api: o.req("api")?,
            max_tokens_default: o.or("max_tokens_default", default_max_tokens)?,
            api_version: o.or("api_version", default_azure_version)?,
            key_env: o.opt("key_env")?,
            secret_env: o.opt("secret_env")?,
            credentials: o.or("credentials", Default::default)?,
            limits: o.opt("limits")?,
            cluster: o.opt("cluster")?,
        })
    }
}

/// A stream's tool calls by the provider's block number: the caller's tool-call index of each
/// (a few per answer, so a list, not a hash table compiled for this one use).
#[derive(Debug, Default, Clone)]
pub struct ToolIndex(Vec<(u64, u64)>);

impl ToolIndex {
    /// Notes `block` as the next tool call; returns its index.
    pub fn add(&mut self, block: u64) -> u64 {
        let k = self.0.len() as u64;
        self.0.push((block, k));
        k
    }

    pub fn get(&self, block: u64) -> Option<u64> {
        self.0.iter().find(|(b, _)| *b == block).map(|(_, k)| *k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ProviderConfig {
        crate::config::from_str(r#"{"api": "azure", "api_version": "2024-10-21"}"#).unwrap()
    }

    #[test]
    fn each_api_has_its_path_and_credential() {
        let c = cfg();
        let cases = [
            (Api::Openai, "/v1/chat/completions", Some("authorization")),
            (Api::Azure, "/openai/deployments/m/chat/completions?api-version=2024-10-21", Some("api-key")),
            (Api::Anthropic, "/v1/messages", Some("x-api-key")),
            (Api::Gemini, "/v1beta/models/m:generateContent", Some("x-goog-api-key")),
            (Api::Bedrock, "/model/m/converse", None),
        ];
        for (a, path, header) in cases {
            assert_eq!(api(a).path("m", &c, false), path, "{a:?}");
            assert_eq!(api(a).credential_header("k").map(|(h, _)| h), header, "{a:?}");
        }
        assert_eq!(api(Api::Openai).credential_header("k").map(|(_, v)| v).as_deref(), Some("Bearer k"));
        for a in [Api::Openai, Api::Azure, Api::Anthropic, Api::Gemini, Api::Bedrock] {
            assert_eq!(credential_header(a, "k"), api(a).credential_header("k"), "{a:?}");
        }
        assert_eq!(api(Api::Gemini).path("m", &c, true), "/v1beta/models/m:streamGenerateContent?alt=sse");
        assert_eq!(api(Api::Bedrock).path("m", &c, true), "/model/m/converse-stream");
        assert_eq!(api(Api::Anthropic).version_header().map(|(h, _)| h), Some("anthropic-version"));
    }

    #[test]
    fn openai_format_requests_keep_their_fields_and_always_ask_for_stream_usage() {
        let req = crate::json!({"model": "chat", "stream": true, "temperature": 0.5, "messages": []});
        let (out, stream) = api(Api::Openai).request(req.to_string().as_bytes(), "gpt-x", 1024).unwrap();
        let out: Value = crate::wire::from_slice(&out).unwrap();
        assert!(stream);
        assert_eq!(out["model"], "gpt-x");
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert!(api(Api::Azure).answers_unified() && !api(Api::Gemini).answers_unified());
    }

    #[test]
    fn an_openai_format_request_is_rewritten_not_rebuilt() {
        // The messages travel byte for byte (escapes, spacing and all); only the model and the
        // stream options change.
        let body = br#"{"model": "chat", "stream": true, "messages": [{"role": "user", "content": "caf\u00e9  \"q\""}],
            "stream_options": {"foo": 1}}"#;
        let (out, stream) = api(Api::Openai).request(body, "gpt-x", 1024).unwrap();
        assert!(stream);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains(r#"[{"role": "user", "content": "caf\u00e9  \"q\""}]"#), "{text}");
        let v: Value = crate::wire::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-x");
        assert_eq!(v["stream_options"], crate::json!({"foo": 1, "include_usage": true}));
        let (out, stream) = api(Api::Azure).request(br#"{"model":"chat","messages":[]}"#, "dep", 1).unwrap();
        assert!(!stream);
        assert_eq!(crate::wire::from_slice::<Value>(&out).unwrap(), crate::json!({"model": "dep", "messages": []}));
        let e = api(Api::Openai).request(b"not json", "m", 1).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_json"));
        let e = api(Api::Openai).request(b"[1]", "m", 1).unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_json"));
    }
}

#[cfg(test)]
mod typed_request_tests {
    use super::*;

    #[test]
    fn a_request_translated_typed_keeps_the_callers_text_and_raw_values_exactly() {
        // Escapes, unicode and numbers survive; tool schemas pass through byte for byte.
        let body = br#"{"model":"chat","max_tokens":12,"top_p":0.25,"stream":true,"stop":["a","b"],
            "messages":[{"role":"system","content":"Be \"terse\"."},
                        {"role":"user","content":"caf\u00e9 \ud83d\ude00"},
                        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\": [1, 2]}"}}]},
                        {"role":"tool","tool_call_id":"c1","content":[{"type":"text","text":"ok"}]}],
            "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"x":{"type":"array"}}}}}],
            "tool_choice":{"type":"function","function":{"name":"f"}}}"#;
        let (out, stream) = api(Api::Anthropic).request(body, "claude-x", 99).unwrap();
        assert!(stream);
        let v: Value = crate::wire::from_slice(&out).unwrap();
        assert_eq!(
            v,
            crate::json!({
                "model": "claude-x", "max_tokens": 12, "top_p": 0.25, "stream": true, "stop_sequences": ["a", "b"],
                "system": [{"type": "text", "text": "Be \"terse\"."}],
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "café 😀"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "f", "input": {"x": [1, 2]}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "ok"}]}],
                "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"x": {"type": "array"}}}}],
                "tool_choice": {"type": "tool", "name": "f"}})
        );
        // Values of the wrong type are left out, as before: a string temperature, a numeric user.
        let (out, _) = api(Api::Anthropic)
            .request(br#"{"temperature":"hot","user":5,"n":1,"messages":[{"role":"user","content":"x"}]}"#, "m", 7)
            .unwrap();
        let v: Value = crate::wire::from_slice(&out).unwrap();
        assert_eq!(
            v,
            crate::json!({"model": "m", "max_tokens": 7, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
        );
        for (bad, code) in [
            (&b"{\"messages\": {}}"[..], "invalid_value"),
            (b"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", "invalid_value"),
            (b"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "invalid_value"),
            (b"not json", "invalid_json"),
        ] {
            let e = api(Api::Anthropic).request(bad, "m", 1).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{}", String::from_utf8_lossy(bad));
        }
    }
}
