//! Embeddings in OpenAI's format (`POST /v1/embeddings`), the gateway's unified one: the request
//! as the gateway reads it, the answer it writes for providers that speak another format, and
//! vectors as base64 (float32, little-endian, RFC 4648 with padding), which OpenAI's Python SDK
//! asks for when the caller names no `encoding_format`.

use crate::text::Text;
use std::borrow::Cow;

use crate::wire::read::Raw;
use crate::wire::write::{to_object, WriteJson};

use crate::error::GatewayError;

pub const PATH: &str = "/v1/embeddings";

/// The fields of a request the gateway reads (the rest passes through to OpenAI and Azure).
pub struct EmbeddingsRequest<'a> {
    pub model: Option<Cow<'a, str>>,
    pub input: Raw<'a>,
    pub encoding_format: Option<Cow<'a, str>>,
    pub dimensions: Option<u64>,
}
crate::wire::object::from_object!(EmbeddingsRequest<'a> {
    model: "model" [],
    input: "input" [required],
    encoding_format: "encoding_format" [],
    dimensions: "dimensions" [],
});

/// How the caller wants the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Float,
    Base64,
}

impl EmbeddingsRequest<'_> {
    pub fn read(body: &[u8]) -> Result<EmbeddingsRequest<'_>, GatewayError> {
        let req: EmbeddingsRequest = crate::wire::from_slice(body).map_err(|e| {
            // Valid JSON with a field missing or mistyped is a bad request, not bad JSON.
            let code = if e.is_data() { "invalid_request" } else { "invalid_json" };
            GatewayError::bad_request(code, format!("The embeddings request cannot be read: {e}"))
        })?;
        req.encoding()?;
        Ok(req)
    }

    pub fn encoding(&self) -> Result<Encoding, GatewayError> {
        match self.encoding_format.as_deref() {
            None | Some("float") => Ok(Encoding::Float),
            Some("base64") => Ok(Encoding::Base64),
            Some(other) => Err(GatewayError::bad_request(
                "invalid_encoding_format",
                format!("`encoding_format` must be \"float\" or \"base64\", not {other:?}."),
            )
            .with_param("encoding_format")),
        }
    }

    /// The input as texts: one string or a list of them. Token arrays (which only OpenAI's own
    /// models read) are refused for the providers that take text.
    pub fn texts(&self) -> Result<Vec<Cow<'_, str>>, GatewayError> {
        let raw = self.input.get();
        let texts: Vec<Cow<str>> = if raw.starts_with('"') {
            vec![crate::wire::from_str(raw).map_err(|e| invalid_input(&e.to_string()))?]
        } else {
            crate::wire::from_str(raw).map_err(|_| {
                GatewayError::bad_request(
                    "unsupported_for_provider",
                    "This provider takes `input` as a string or a list of strings, not as tokens.",
                )
                .with_param("input")
            })?
        };
        if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
            return Err(invalid_input("`input` must be a non-empty string or a list of non-empty strings."));
        }
        Ok(texts)
    }
}

/// The most calls one embeddings request is split into (a provider that embeds one input per
/// call, as Titan does, serves at most this many inputs).
pub const MAX_PARTS: usize = 128;

/// A batch of `texts` cut into parts of at most `cap` inputs each, in order: the calls one
/// request becomes at a provider that caps its batch. More than [`MAX_PARTS`] parts is refused,
/// naming `input`.
pub fn parts<'t, 'a>(texts: &'t [Cow<'a, str>], cap: usize) -> Result<Vec<&'t [Cow<'a, str>]>, GatewayError> {
    let cap = cap.max(1);
    let n = texts.len().div_ceil(cap);
    if n > MAX_PARTS {
        return Err(GatewayError::bad_request(
            "unsupported_for_provider",
            format!(
                "This provider embeds at most {cap} input(s) per call, and the gateway splits a batch into at most \
                 {MAX_PARTS} calls; send at most {} inputs, not {}.",
                cap * MAX_PARTS,
                texts.len()
            ),
        )
        .with_param("input"));
    }
    Ok(texts.chunks(cap).collect())
}

fn invalid_input(message: &str) -> GatewayError {
    GatewayError::bad_request("invalid_input", message.own()).with_param("input")
}

/// Standard base64 (with padding) of the vector as float32, little-endian (each value rounded
/// to the nearest float32, as OpenAI's are).
pub fn base64_f32(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
    base64(&bytes)
}

/// Standard base64 decoded (padding optional); `None` for any other character.
pub fn base64_decode(t: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(t.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in t.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Standard base64, with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

enum Vector {
    /// As the provider wrote them (JSON numbers read as f64 are written back unchanged).
    Float(Vec<f64>),
    Base64(String),
}

impl WriteJson for Vector {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Vector::Float(v) => v.write_json(out),
            Vector::Base64(s) => s.write_json(out),
        }
    }
}

struct Item {
    object: &'static str,
    index: usize,
    embedding: Vector,
}
to_object!(Item {
    object: "object" [],
    index: "index" [],
    embedding: "embedding" [],
});

struct UsageOut {
    prompt_tokens: u64,
    total_tokens: u64,
}
to_object!(UsageOut {
    prompt_tokens: "prompt_tokens" [],
    total_tokens: "total_tokens" [],
});

struct Answer<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: UsageOut,
}
to_object!(Answer<'a> {
    object: "object" [],
    data: "data" [],
    model: "model" [],
    usage: "usage" [],
});

/// The answer in OpenAI's format, for vectors a provider gave in another.
pub fn answer(vectors: Vec<Vec<f64>>, model: &str, encoding: Encoding, prompt_tokens: u64) -> Vec<u8> {
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| Item {
            object: "embedding",
            index,
            embedding: match encoding {
                Encoding::Float => Vector::Float(v),
                Encoding::Base64 => Vector::Base64(base64_f32(&v)),
            },
        })
        .collect();
    let usage = UsageOut { prompt_tokens, total_tokens: prompt_tokens };
    crate::wire::write::to_vec(&Answer { object: "list", data, model, usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_float32_little_endian_with_padding() {
        // Python: base64.b64encode(struct.pack('<3f', 0.1, -0.2, 0.5))
        assert_eq!(base64_f32(&[0.1, -0.2, 0.5]), "zczMPc3MTL4AAAA/");
        assert_eq!(base64_f32(&[1.0, -1.0, 0.0, 0.25]), "AACAPwAAgL8AAAAAAACAPg==");
        assert_eq!(base64_f32(&[]), "");
        assert_eq!(base64_f32(&[0.0; 1536]).len(), 8192);
    }

    #[test]
    fn inputs_are_texts_or_a_clear_refusal() {
        let texts = |b: &str| {
            EmbeddingsRequest::read(b.as_bytes())
                .and_then(|r| r.texts().map(|t| t.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
        };
        assert_eq!(texts(r#"{"model":"e","input":"a \"b\""}"#).unwrap(), vec!["a \"b\""]);
        assert_eq!(texts(r#"{"model":"e","input":["x","y"]}"#).unwrap(), vec!["x", "y"]);
        let e = texts(r#"{"model":"e","input":[1,2,3]}"#).unwrap_err();
        assert_eq!((e.code, e.param), ("unsupported_for_provider", Some("input")));
        assert_eq!(texts(r#"{"model":"e","input":""}"#).unwrap_err().code, "invalid_input");
        assert_eq!(texts(r#"{"model":"e","input":[]}"#).unwrap_err().code, "invalid_input");
        let e = EmbeddingsRequest::read(br#"{"model":"e","input":"x","encoding_format":"int8"}"#).err().unwrap();
        assert_eq!(e.param, Some("encoding_format"));
        assert_eq!(EmbeddingsRequest::read(br#"{"model":"e"}"#).err().map(|e| e.code), Some("invalid_request"));
        assert_eq!(EmbeddingsRequest::read(b"{nope").err().map(|e| e.code), Some("invalid_json"));
    }

    #[test]
    fn a_batch_is_cut_into_parts_in_order_up_to_a_limit() {
        let texts: Vec<Cow<str>> = (0..7).map(|i| Cow::Owned(format!("t{i}"))).collect();
        let p = parts(&texts, 3).unwrap();
        assert_eq!(p.iter().map(|p| p.len()).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!((p[1][0].as_ref(), p[2][0].as_ref()), ("t3", "t6"));
        assert_eq!(parts(&texts, 100).unwrap().len(), 1);
        assert_eq!(parts(&texts, 0).unwrap().len(), 7, "a cap of 0 is taken as 1");
        let many: Vec<Cow<str>> = (0..=MAX_PARTS).map(|_| Cow::Borrowed("x")).collect();
        assert_eq!(parts(&many[..MAX_PARTS], 1).unwrap().len(), MAX_PARTS);
        let e = parts(&many, 1).unwrap_err();
        assert_eq!((e.status, e.code, e.param), (400, "unsupported_for_provider", Some("input")));
    }

    #[test]
    fn the_answer_has_openais_shape_in_either_encoding() {
        let a: crate::wire::tree::Value =
            crate::wire::from_slice(&answer(vec![vec![0.5, -1.0], vec![0.25, 0.0]], "m", Encoding::Float, 7)).unwrap();
        assert_eq!(
            a,
            crate::json!({"object": "list", "model": "m", "usage": {"prompt_tokens": 7, "total_tokens": 7},
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
                         {"object": "embedding", "index": 1, "embedding": [0.25, 0.0]}]})
        );
        let b: crate::wire::tree::Value =
            crate::wire::from_slice(&answer(vec![vec![1.0, -1.0, 0.0, 0.25]], "m", Encoding::Base64, 1)).unwrap();
        assert_eq!(b["data"][0]["embedding"], "AACAPwAAgL8AAAAAAACAPg==");
    }
}
