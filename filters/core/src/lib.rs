//! Policy core of the AI gateway.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it is unit-tested natively.
//! The filter crates are thin adapters that move bytes between Envoy and these functions.

/// Implements `sse::Translate` for a stream translator by its own `push` and `finish`.
macro_rules! impl_translate {
    ($t:ty) => {
        impl crate::sse::Translate for $t {
            fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
                <$t>::push(self, chunk)
            }

            fn finish(&mut self) -> Vec<u8> {
                <$t>::finish(self)
            }
        }
    };
}

pub mod anthropic;
pub mod audit;
pub mod auth;
pub mod bedrock;
pub mod bucket;
pub mod call_state;
pub mod credentials;
pub mod error;
pub mod eventstream;
pub mod gemini;
pub mod headers;
pub mod host;
pub mod keys;
pub mod messages_in;
pub mod openai;
pub mod pipeline;
pub mod price;
pub mod provider;
pub mod quota;
pub mod route;
pub mod sigv4;
pub mod sse;
pub mod time;
pub mod usage;

/// Parses a filter configuration, naming the filter and the problem on failure.
pub fn parse_config<T: serde::de::DeserializeOwned>(filter: &str, raw: &[u8]) -> Result<T, String> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(format!("{filter}: configuration is empty; a JSON object is required"));
    }
    let mut de = serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("{filter}: invalid configuration: {inner}")
        } else {
            format!("{filter}: invalid configuration at `{path}`: {inner}")
        }
    })
}

/// Re-exported so adapters can name the bound without their own serde dependency.
pub mod serde_de_owned {
    pub use serde::de::DeserializeOwned;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Inner {
        n: u64,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = parse_config::<Outer>("f", br#"{"inner": {"n": "x"}}"#).unwrap_err();
        assert!(e.starts_with("f: invalid configuration at `inner.n`:"), "{e}");
        let e = parse_config::<Outer>("f", b"  ").unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
