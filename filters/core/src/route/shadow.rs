//! Shadow dual-run: a sampled copy of an alias's call goes to a candidate alias, off the
//! caller's path, so the candidate's answers can be compared with the primary's before a
//! migration (README, "Shadow dual-run").
//!
//! The copy is a call of its own to this gateway (the `aigw_self` cluster), made with the shadow
//! key: it is authenticated as the shadow tenant, routed to the candidate's chain, translated
//! per provider, charged to the shadow tenant's quota and budget (never the caller's), and
//! audited with a record of its own whose `shadow_of` names the primary call. The caller never
//! waits for it: Envoy holds an outgoing call on the VM's root context, so it runs to its end
//! whatever the primary call does, and its answer is dropped.

use crate::text::Text;
use crate::wire::tree::Value;

use crate::error::ConfigError;
use crate::host::Host;

/// An alias's shadow: the candidate alias and the share of calls copied to it.
#[derive(Debug, Clone)]
pub struct ShadowPolicy {
    pub alias: String,
    /// 0-100, chosen by the request id (independently of a canary slice).
    pub percent: u8,
}

/// How shadow legs are sent (the route configuration's `shadow`).
#[derive(Debug, Clone, Default)]
pub struct ShadowConfig {
    /// The environment variable holding the shadow key (a gateway key with `"shadow": true`).
    pub key_env: String,
    /// The Envoy cluster that reaches this gateway's own listener.
    pub cluster: String,
    pub authority: String,
    /// How long a leg may take (the candidate's whole answer).
    pub timeout_ms: u64,
}

fn default_authority() -> String {
    "aigw-shadow".own()
}

fn default_timeout_ms() -> u64 {
    120_000
}

/// The compiled form: the key read from the environment once.
#[derive(Debug, Clone)]
pub struct ShadowLeg {
    key: String,
    cluster: String,
    authority: String,
    timeout_ms: u64,
}

impl ShadowLeg {
    pub fn compile(cfg: &ShadowConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<ShadowLeg, ConfigError> {
        let Some(key) = env(&cfg.key_env).filter(|k| !k.is_empty()) else {
            return Err(ConfigError::new(
                "route-select",
                "shadow.key_env",
                format!("the environment has no {:?} (the shadow legs' gateway key)", cfg.key_env),
            ));
        };
        if !(1..=600_000).contains(&cfg.timeout_ms) {
            return Err(ConfigError::new("route-select", "shadow.timeout_ms", "must be 1 to 600000"));
        }
        Ok(ShadowLeg { key, cluster: cfg.cluster.own(), authority: cfg.authority.own(), timeout_ms: cfg.timeout_ms })
    }
}

/// Whether a call is copied: a stable number from its request id, salted so that the shadow
/// sample does not coincide with a canary slice.
pub fn sampled(request_id: &str, percent: u8) -> bool {
    percent > 0 && crate::route::bucket_of(&format!("{request_id}#shadow")) < percent
}

/// The leg's body: the request as it goes upstream (after the guardrails), asking the candidate
/// alias, whole (a stream's answer is compared whole). `None`: not a JSON object.
pub fn body(request: &[u8], candidate: &str) -> Option<Vec<u8>> {
    let mut v: Value = crate::wire::from_slice(request).ok()?;
    let o = v.as_object_mut()?;
    o.insert("model".own(), Value::String(candidate.into()));
    o.insert("stream".own(), Value::Bool(false));
    o.remove("stream_options");
    Some(crate::wire::write::to_vec(&v))
}

/// The request id of a leg of the call `request_id`.
pub fn leg_id(request_id: &str) -> String {
    format!("{request_id}-shadow")
}

/// Sends a leg (`path`: `/v1/chat/completions`, or `/v1/responses` for that door's body).
/// Returns the call's token; its answer is not waited for.
/// `zone`: the primary call's privacy zone, which the leg keeps to. `Err`: the proxy refused
/// to make the call (as [`Host::http_call`]).
#[allow(clippy::result_unit_err)]
pub fn send(
    h: &impl Host,
    leg: &ShadowLeg,
    path: &str,
    body: &[u8],
    request_id: &str,
    zone: Option<&str>,
) -> Result<u32, ()> {
    let auth = format!("Bearer {}", leg.key);
    let id = leg_id(request_id);
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", leg.authority.as_str()),
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("x-request-id", id.as_str()),
        (crate::headers::SHADOW_OF, request_id),
    ];
    if let Some(z) = zone {
        headers.push((crate::headers::SHADOW_ZONE, z));
    }
    h.http_call(&leg.cluster, &headers, body, leg.timeout_ms)
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for ShadowPolicy {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "ShadowPolicy", Some(&["alias", "percent"]))?;
        Ok(ShadowPolicy { alias: o.req("alias")?, percent: o.req("percent")? })
    }
}

impl crate::config::FromConfig for ShadowConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o =
            crate::config::Obj::new(v, at, "ShadowConfig", Some(&["key_env", "cluster", "authority", "timeout_ms"]))?;
        let mut x = ShadowConfig::default();
        x.key_env = o.req("key_env")?;
        x.cluster = o.or("cluster", crate::cache::semantic::default_cluster)?;
        x.authority = o.or("authority", default_authority)?;
        x.timeout_ms = o.or("timeout_ms", default_timeout_ms)?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leg_asks_the_candidate_whole_and_the_sample_is_near_its_share() {
        let b =
            body(br#"{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#, "next")
                .unwrap();
        let v: Value = crate::wire::from_slice(&b).unwrap();
        assert_eq!((v["model"].as_str(), v["stream"].as_bool()), (Some("next"), Some(false)));
        assert!(v.get("stream_options").is_none() && v["messages"].is_array());
        assert!(body(b"[1]", "x").is_none() && body(b"\xff", "x").is_none());
        let n = (0..10_000).filter(|i| sampled(&format!("r{i}"), 10)).count();
        assert!((800..=1200).contains(&n), "{n}");
        assert!(!sampled("r1", 0));
        assert!((0..100).all(|i| sampled(&format!("r{i}"), 100)));
        // Not the canary's slice: the two samples are independent.
        let both = (0..10_000)
            .filter(|i| sampled(&format!("r{i}"), 50) && crate::route::bucket_of(&format!("r{i}")) < 50)
            .count();
        assert!((2_200..=2_800).contains(&both), "{both}");
    }

    #[test]
    fn the_key_comes_from_the_environment() {
        let cfg: ShadowConfig = crate::config::from_str(r#"{"key_env":"K"}"#).unwrap();
        assert!(ShadowLeg::compile(&cfg, &|_| None).unwrap_err().field.contains("shadow.key_env"));
        let leg = ShadowLeg::compile(&cfg, &|k| (k == "K").then(|| "aigw_sk_x".into())).unwrap();
        assert_eq!((leg.cluster.as_str(), leg.timeout_ms), ("aigw_self", 120_000));
    }
}
