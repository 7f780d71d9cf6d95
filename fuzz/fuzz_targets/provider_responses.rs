//! Every provider's answer, whole and streamed, success and error, translated to the unified
//! format.
#![no_main]

use aigw_core::provider::{anthropic, bedrock, gemini};
use aigw_core::wire::{embeddings, facts, usage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = usage::from_openai_body(data);
    // What an answer says (drift signals, shadow comparison): a chat completion or Response.
    let _ = facts::read_whole(data);
    let _ = anthropic::response_to_openai(data, 0);
    // A Messages answer passed to the Messages door as it came: read for its usage and facts.
    let _ = anthropic::read_answer(data);
    let _ = anthropic::error_to_openai(500, data);
    let _ = gemini::response_to_openai(data, "g", 0);
    let _ = gemini::error_to_openai(400, data);
    let _ = gemini::is_invalid_key(data);
    let _ = bedrock::response_to_openai(data, "b", "r", 0);
    let _ = bedrock::error_to_openai(400, "ValidationException", data);
    // Embeddings answers' vectors, written back in both encodings.
    let mut vectors = Vec::new();
    vectors.extend(gemini::embeddings_vectors(data).unwrap_or_default());
    for m in ["amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"] {
        vectors.extend(bedrock::embeddings_vectors(data, m).map(|(v, _)| v).unwrap_or_default());
    }
    for enc in [embeddings::Encoding::Float, embeddings::Encoding::Base64] {
        let _ = embeddings::answer(vectors.clone(), "m", enc, 1);
    }
    let cut = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut a = anthropic::StreamTranslator::new(0, true);
    let mut g = gemini::StreamTranslator::new("g", 0);
    for chunk in data.chunks(cut) {
        let _ = a.push(chunk);
        let _ = g.push(chunk);
    }
    let _ = a.finish();
    let _ = g.finish();
});
