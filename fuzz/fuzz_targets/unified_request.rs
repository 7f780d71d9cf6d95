//! The unified (chat completions) request: what quota and routing read of it, and each
//! provider's translation of it.
#![no_main]

use aigw_core::provider::{anthropic, bedrock, gemini};
use aigw_core::quota::{estimate, EstimateConfig, RequestFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = RequestFacts::read(data) {
        let round = RequestFacts::decode(&f.encode());
        assert!(round.is_some() || f.model.as_deref().is_some_and(|m| m.contains(' ')));
    }
    let _ = estimate(data, &EstimateConfig::default());
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(a) = anthropic::request_from_openai(&v, "claude-x", 1024) {
            let _ = gemini::request_from_anthropic(&a);
            let _ = bedrock::request_from_anthropic(&a);
        }
    }
});
