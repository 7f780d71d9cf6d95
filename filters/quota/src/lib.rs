//! `quota`: a requests-per-minute token bucket per tenant, shared by all Envoy workers through
//! proxy-wasm shared data with a bounded compare-and-swap loop.
//!
//! The filter's logic is in `filter.rs`, which the one-module build (`filters/bundle`) includes
//! as well.

mod filter;

pub use filter::root;

aigw_host::main!(filter::root);
