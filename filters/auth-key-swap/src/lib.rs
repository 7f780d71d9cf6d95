//! `auth-key-swap`: the credential plane.
//!
//! Root id `auth_key_swap` (listener filter chain): authenticates the caller's gateway key,
//! records the identity for the later filters, and removes the caller's credential and any
//! internal headers it sent. Root id `auth_key_swap_upstream` (upstream filter of a chain's
//! aggregate cluster): per attempt, removes any caller credential and injects the key of the
//! provider this attempt goes to, read from Envoy's environment.
//!
//! The filter's logic is in `filter.rs`, which the one-module build (`filters/bundle`) includes
//! as well.

mod filter;

pub use filter::root;

aigw_host::main!(filter::root);
