//! `audit-emit`: the observability plane. First in the listener's filter chain, so it sees every
//! response, local refusals of the later filters included.
//!
//! - Reads token usage from the (already OpenAI-format) response: a non-streamed answer is held
//!   until complete so its cost and tokens can go in response headers; a stream is scanned as it
//!   streams past, never held back.
//! - In `on_log` (which also runs for refused and aborted calls) it builds the audit record and
//!   stores it as filter state `wasm.aigw_audit`, which Envoy's access log writes as one JSON
//!   line, and updates the metrics on `/stats/prometheus`.
//!
//! The filter's logic is in `filter.rs`, which the one-module build (`filters/bundle`) includes
//! as well.

mod filter;

pub use filter::root;

aigw_host::main!(filter::root);
