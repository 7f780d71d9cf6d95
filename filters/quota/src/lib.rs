//! `quota`: a requests-per-minute token bucket per tenant, shared by all Envoy workers through
//! proxy-wasm shared data with a bounded compare-and-swap loop.
//!
//! The filter's logic is in `filter.rs`, which the one-module build (`filters/bundle`) includes
//! as well.

mod filter;

pub use filter::root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| filter::root());
}}
