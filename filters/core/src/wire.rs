//! Wire formats that are not one provider's: Server-Sent Events, AWS's binary event stream,
//! token usage as the providers report it, and the Messages door (a caller speaking Anthropic's
//! Messages API to the gateway).

pub mod chat;
pub mod embeddings;
pub mod eventstream;
pub mod facts;
pub mod messages_in;
pub mod object;
pub mod responses_in;
pub mod scan;
pub mod sse;
pub mod usage;

/// Parses JSON text into `T`. Every typed read of JSON in the filters goes through
/// `serde_json::from_slice`: serde compiles a type's deserialiser once per input reader, and
/// one reader (bytes) for everything keeps each type's code in the module once (reading `&str`
/// through `serde_json::from_str` as well added 55 KB of second copies).
pub fn from_str<'a, T: serde::Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    serde_json::from_slice(text.as_bytes())
}
