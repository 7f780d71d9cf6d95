//! Names shared by the filters: internal headers, filter-state properties, metadata keys.

/// Every header the filters pass between each other starts with this prefix. Callers' copies are
/// stripped on the way in; all of them are stripped before a request leaves for a provider and
/// from the response to the caller, except the enrichment headers listed in [`PUBLIC_RESPONSE`].
pub const INTERNAL_PREFIX: &str = "x-aigw-";

/// Which fallback chain (aggregate cluster) the call goes to; read by Envoy's `cluster_header`.
pub const CHAIN: &str = "x-aigw-chain";

/// The fingerprint of the provider credential an attempt used (response, read by route-select
/// into the attempt record, then removed).
pub const CREDENTIAL: &str = "x-aigw-credential";

/// Response headers the caller is meant to see.
pub const PROVIDER: &str = "x-aigw-provider";
pub const MODEL: &str = "x-aigw-model";
pub const REQUEST_ID: &str = "x-aigw-request-id";
/// The route rule that chose the call's alias (`default`: the alias the caller named).
pub const ROUTE: &str = "x-aigw-route";
/// How many providers were tried.
pub const ATTEMPTS: &str = "x-aigw-attempts";
/// A warning that the serving model is deprecated (its sunset and successor).
pub const DEPRECATION: &str = "x-aigw-deprecation";
pub const PUBLIC_RESPONSE: [&str; 6] = [PROVIDER, MODEL, REQUEST_ID, ROUTE, ATTEMPTS, DEPRECATION];

/// Caller hints for route rules.
pub const CALLER_LATENCY_BUDGET: &str = "x-gateway-latency-budget-ms";
pub const CALLER_COST_CEILING: &str = "x-gateway-cost-ceiling-usd";

/// Filter-state properties (`set_property([NAME])` shows up as `wasm.NAME` in Envoy).
/// The caller's identity as one JSON [`crate::keys::CallIdentity`]: one host call to write and
/// one to read, instead of one per field.
pub const PROP_IDENTITY: &str = "aigw_identity";

/// Headers a caller uses to attribute a call to a feature or agent, within its key's scope.
pub const CALLER_FEATURE: &str = "x-gateway-feature";
pub const CALLER_AGENT: &str = "x-gateway-agent";
/// JSON array of [`crate::audit::Attempt`], appended to by each upstream attempt.
pub const PROP_ATTEMPTS: &str = "aigw_attempts";
pub const PROP_ALIAS: &str = "aigw_alias";
/// Which front door the call came in by, `chat` or `messages` (set by route-select), so every
/// filter's refusal is in the caller's format, even after the path was rewritten for a provider.
pub const PROP_DOOR: &str = "aigw_door";
/// The route rule's name, and the canary slice (`canary`/`stable`) when the alias has one.
pub const PROP_ROUTE: &str = "aigw_route";
pub const PROP_SLICE: &str = "aigw_slice";
/// Audit flags raised by route-select (comma-separated), e.g. a deprecated model replaced.
pub const PROP_ROUTE_FLAGS: &str = "aigw_route_flags";
/// The call's usage as JSON, when a filter took the usage chunk out of a stream the caller
/// did not ask usage for (audit-emit reads it).
pub const PROP_USAGE: &str = "aigw_usage";
pub const PROP_REFUSAL: &str = "aigw_refusal";
pub const PROP_AUDIT: &str = "aigw_audit";
/// The concrete models the call's chain may use, comma-separated (route-select, read by quota
/// to bound a call's cost).
pub const PROP_CANDIDATES: &str = "aigw_candidates";
/// What route-select read of the request, for quota (`quota::RequestFacts::encode`), so the
/// body is read once.
pub const PROP_REQUEST: &str = "aigw_request";
/// The call's up-front token estimate (quota, read by the per-attempt quota filter).
pub const PROP_QUOTA_ESTIMATE: &str = "aigw_quota_estimate";
/// Providers whose buckets the call's attempts were charged to, comma-separated.
pub const PROP_QUOTA_PROVIDERS: &str = "aigw_quota_providers";
/// Audit flags raised by quota (comma-separated), e.g. `budget_soft_limit`.
pub const PROP_QUOTA_FLAGS: &str = "aigw_quota_flags";

/// Endpoint metadata namespace and key that name the provider an upstream host belongs to.
pub const METADATA_NAMESPACE: &str = "aigw";
pub const METADATA_PROVIDER: &str = "provider";
pub const METADATA_REGION: &str = "region";

/// True for header names that belong to the gateway's internal namespace.
pub fn is_internal(name: &str) -> bool {
    name.len() >= INTERNAL_PREFIX.len()
        && name.as_bytes()[..INTERNAL_PREFIX.len()].eq_ignore_ascii_case(INTERNAL_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_prefix_is_case_insensitive() {
        assert!(is_internal("x-aigw-chain"));
        assert!(is_internal("X-AIGW-Tenant"));
        assert!(!is_internal("x-aig"));
        assert!(!is_internal("authorization"));
    }
}
