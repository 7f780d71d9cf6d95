//! The unified requests (chat completions, embeddings): what quota and routing read of them, and
//! each provider's translation of them.
#![no_main]

use aigw_core::provider::{self, anthropic, bedrock, gemini};
use aigw_core::quota::{estimate, EstimateConfig, RequestFacts};
use aigw_core::route::Api;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = RequestFacts::read(data) {
        let round = RequestFacts::decode(&f.encode());
        assert!(round.is_some() || f.model.as_deref().is_some_and(|m| m.contains(' ')));
    }
    let _ = estimate(data, &EstimateConfig::default());
    // Every API's translation of the caller's bytes, as an attempt runs it.
    for a in [Api::Openai, Api::Azure, Api::Anthropic, Api::Gemini, Api::Bedrock] {
        let _ = provider::api(a).request(data, "m", 1024);
    }
    // Same format on both sides: a JSON object comes out as JSON with its model replaced, the
    // same stream flag, and every other member as it was (the scanner delimited each one right).
    if let Ok(serde_json::Value::Object(before)) = serde_json::from_slice::<serde_json::Value>(data) {
        let rewritten = provider::api(Api::Openai).request(data, "m", 1024);
        let Ok((out, stream)) = rewritten else { panic!("a JSON object was refused: {rewritten:?}") };
        let after: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&out).unwrap_or_else(|e| panic!("not JSON: {e}: {}", String::from_utf8_lossy(&out)));
        assert_eq!(after.get("model"), Some(&serde_json::json!("m")));
        assert_eq!(stream, before.get("stream") == Some(&serde_json::Value::Bool(true)));
        for (k, v) in &before {
            if k != "model" && k != "stream_options" {
                assert_eq!(after.get(k), Some(v), "member {k}");
            }
        }
        assert_eq!(after.len(), before.len() + usize::from(!before.contains_key("model"))
            + usize::from(stream && !before.contains_key("stream_options")));
    }
    // Embeddings: the request as read, and each API's and Bedrock family's translation of it.
    if let Ok(r) = aigw_core::wire::embeddings::EmbeddingsRequest::read(data) {
        let texts = r.texts().unwrap_or_default();
        let _ = aigw_core::wire::embeddings::parts(&texts, 1);
        for a in [Api::Openai, Api::Azure, Api::Anthropic, Api::Gemini, Api::Bedrock] {
            let _ = provider::api(a).embeddings_request(&r, &texts, data, "m");
        }
        for m in ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"] {
            let _ = bedrock::embeddings_request(&r, &texts, m);
        }
    }
    // Guardrails over the caller's text: every detector, masking, injection scoring, and the
    // output check (the bytes as an answer, and as a schema).
    if let Ok(text) = std::str::from_utf8(data) {
        let terms = vec!["project falcon".to_string()];
        let _ = aigw_core::guard::detect::scan(text, &|_| true, &terms);
        let _ = aigw_core::guard::injection::score(&aigw_core::guard::injection::default_rules(), text);
        let _ = aigw_core::guard::schema::OutputFormat::JsonObject.check(text);
    }
    if let Ok(mut v) = aigw_core::wire::from_slice::<aigw_core::wire::tree::Value>(data) {
        let _ = aigw_core::guard::injection::caller_texts(&v);
        let _ = aigw_core::guard::schema::validate(&v, &v, "$");
        let policy = aigw_core::config::from_value::<aigw_core::guard::GuardPolicy>(
            aigw_core::wire::from_str(
                r#"{"categories": {"email": "mask", "phone": "mask", "card": "mask", "iban": "mask", "aadhaar": "mask",
                                   "pan": "mask", "ssn": "mask", "ip": "flag", "secret": "reject"}}"#,
            )
            .unwrap_or_default(),
        );
        if let Ok(policy) = policy {
            let _ = aigw_core::guard::apply(&policy, &mut v);
        }
    }
    // The cache's keys (exact and semantic) of the caller's bytes.
    let _ = aigw_core::cache::keys("t", Some("k"), "a", "r", data);
    if let Ok(a) = anthropic::request_from_openai(data, "claude-x", 1024) {
        let _ = gemini::request_from_messages(&a);
        let _ = bedrock::request_from_messages(&a);
    }
});
