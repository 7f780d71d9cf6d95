//! Embeddings as the providers answer them: OpenAI's `POST /v1/embeddings` (and Azure's
//! deployment path), and Gemini's `batchEmbedContents`. Vectors are made from the text, so the
//! same text always gets the same vector; every value is a multiple of 1/1024, exact in float32
//! and float64, so `float` and `base64` answers compare exactly.

use base64::Engine;
use serde_json::{json, Value};

/// The vector of `text` with `dims` values.
pub fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        x = (x ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 54) as f32 - 512.0) / 1024.0
        })
        .collect()
}

/// The fake model whose vectors carry meaning of a kind: `fake-ngram-embed` hashes a text's
/// content words (lower-cased; punctuation and a short stop-word list dropped), weighted by
/// their length (a number as six letters), their bigrams (weight 5) and character trigrams
/// (weight 0.3) into 256 signed buckets, and normalises the sum. Texts that share their
/// content words in the same order are close; changing the subject, a number or the order moves
/// them apart. Deterministic, for the semantic cache's tests and its threshold evaluation
/// (`aigw-report cache-eval`); it is no language model, and the evaluation says how well it does.
pub const NGRAM_MODEL: &str = "fake-ngram-embed";

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "of", "to", "in", "into", "on", "for", "by", "and", "or", "what", "whats",
    "which", "who", "how", "do", "does", "did", "i", "you", "can", "me", "tell", "give", "name", "word", "way", "city",
    "s", "it", "its", "this", "that", "with",
];

pub fn ngram_vector(text: &str) -> Vec<f32> {
    const DIMS: usize = 256;
    let clean: String = text.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect();
    let words: Vec<&str> = clean.split_whitespace().filter(|w| !STOP_WORDS.contains(w)).collect();
    let mut v = vec![0f64; DIMS];
    let mut add = |feature: &str, weight: f64| {
        let mut x: u64 = 0xcbf2_9ce4_8422_2325;
        for b in feature.bytes() {
            x = (x ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let sign = if (x >> 40) & 1 == 0 { 1.0 } else { -1.0 };
        v[(x % DIMS as u64) as usize] += sign * weight;
    };
    for w in &words {
        let weight = if w.chars().all(|c| c.is_ascii_digit()) { 6.0 } else { w.chars().count() as f64 };
        add(&format!("w:{w}"), weight);
    }
    for pair in words.windows(2) {
        add(&format!("b:{} {}", pair[0], pair[1]), 5.0);
    }
    let joined: Vec<char> = format!(" {} ", words.join(" ")).chars().collect();
    for t in joined.windows(3) {
        add(&format!("t:{}", t.iter().collect::<String>()), 0.3);
    }
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 }).collect()
}

/// A vector as the caller asked: a JSON array, or base64 of float32 little-endian.
pub fn encoded(v: &[f32], base64: bool) -> Value {
    if base64 {
        let bytes: Vec<u8> = v.iter().flat_map(|f| f.to_le_bytes()).collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        json!(v)
    }
}

/// The native size of an OpenAI embedding model, and whether it takes `dimensions`.
pub fn openai_model(model: &str) -> Option<(usize, bool)> {
    match model {
        "text-embedding-3-small" => Some((1536, true)),
        "text-embedding-3-large" => Some((3072, true)),
        "text-embedding-ada-002" => Some((1536, false)),
        NGRAM_MODEL => Some((256, false)),
        _ => None,
    }
}

/// OpenAI's inputs: each as text (token arrays as their numbers) and its token count (words,
/// as the chat fakes count; a token array's length). `Err`: OpenAI's message for bad input.
pub fn openai_inputs(input: Option<&Value>) -> Result<Vec<(String, u64)>, &'static str> {
    let words = |s: &str| s.split_whitespace().count().max(1) as u64;
    let bad = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";
    let tokens = |a: &[Value]| -> Option<(String, u64)> {
        let nums: Option<Vec<u64>> = a.iter().map(Value::as_u64).collect();
        nums.filter(|n| !n.is_empty()).map(|n| (format!("{n:?}"), n.len() as u64))
    };
    match input {
        Some(Value::String(s)) if !s.is_empty() => Ok(vec![(s.clone(), words(s))]),
        Some(Value::Array(a)) if !a.is_empty() && a.len() <= 2048 => {
            if a.iter().all(Value::is_u64) {
                return tokens(a).map(|t| vec![t]).ok_or(bad);
            }
            a.iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok((s.clone(), words(s))),
                    Value::Array(t) => tokens(t).ok_or(bad),
                    _ => Err(bad),
                })
                .collect()
        }
        _ => Err(bad),
    }
}
