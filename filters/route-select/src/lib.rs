//! `route-select`: the routing and transform planes.
//!
//! Root id `route_select` (listener filter chain): reads `model` from the unified request,
//! resolves the model alias, and sends the call to that alias's fallback chain (an aggregate
//! cluster named by the `x-aigw-chain` header). Root id `route_select_upstream` (upstream filter
//! of the aggregate cluster, so it runs once per attempt): translates the request for the
//! provider this attempt goes to, and the provider's response back to OpenAI's format.
//!
//! The filter's logic is in `filter.rs`, which the one-module build (`filters/bundle`) includes
//! as well.

mod filter;

pub use filter::root;

aigw_host::main!(filter::root);
