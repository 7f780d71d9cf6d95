//! Policy core of the AI gateway.
//!
//! Everything here is plain Rust with no proxy-wasm dependency, so it is unit-tested natively.
//! The filter crates are thin adapters that move bytes between Envoy and these functions.

pub mod anthropic;
pub mod audit;
pub mod bucket;
pub mod error;
pub mod headers;
pub mod keys;
pub mod price;
pub mod route;
pub mod sse;
pub mod usage;

/// Parses a filter configuration, naming the filter and the problem on failure.
pub fn parse_config<T: serde::de::DeserializeOwned>(filter: &str, raw: &[u8]) -> Result<T, String> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(format!("{filter}: configuration is empty; a JSON object is required"));
    }
    serde_json::from_slice(raw).map_err(|e| format!("{filter}: invalid configuration: {e}"))
}

/// Re-exported so adapters can name the bound without their own serde dependency.
pub mod serde_de_owned {
    pub use serde::de::DeserializeOwned;
}
