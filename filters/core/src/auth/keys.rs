//! Gateway keys: callers present one; config stores only its SHA-256 digest and the identity it
//! carries.

#[cfg(test)]
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ConfigError, GatewayError};
use crate::text::{Joined, Text};

/// One configured gateway key.
#[derive(Debug, Clone, Default)]
pub struct KeyEntry {
    /// A short, non-secret name for the key (shown in audit records).
    pub id: String,
    /// Lowercase hex SHA-256 of the key.
    pub sha256: String,
    /// The tenant that calls made with this key are charged to.
    pub tenant: String,
    /// The privacy zone the key's calls must stay in (see `envoy/privacy-zones.json`).
    pub zone: Option<String>,
    /// The key's workload class, for routing and reports.
    pub workload_class: Option<WorkloadClass>,
    /// Features the caller may attribute calls to (`x-gateway-feature`); `["*"]` allows any.
    /// Empty (the default): the caller may not name a feature.
    pub features: Vec<String>,
    /// Agents the caller may act as (`x-gateway-agent`); same rules as `features`.
    pub agents: Vec<String>,
    /// Task categories the caller may name (`x-gateway-task`, for task route rules); same
    /// rules as `features`.
    pub tasks: Vec<String>,
    /// The gateway's own shadow key: its calls are shadow legs (`x-aigw-shadow-of` names the
    /// call each copies; README, "Shadow dual-run").
    pub shadow: bool,
    /// Model aliases the key may use; `["*"]` (the default) allows every alias.
    pub aliases: Vec<String>,
    /// `active` (the default) or `revoked`.
    pub status: KeyStatus,
    /// The key is valid from this UTC time (`2026-11-22T00:00:00Z` or `2026-11-22`) ...
    pub not_before: Option<String>,
    /// ... until this one (exclusive).
    pub not_after: Option<String>,
}

/// What kind of work a key's calls are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
#[cfg_attr(test, serde(rename_all = "snake_case"))]
pub enum WorkloadClass {
    Interactive,
    Batch,
    Background,
    Embeddings,
    ToolCall,
}

crate::wire::read::read_variants!(WorkloadClass);

impl crate::config::FromConfig for WorkloadClass {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let named: Vec<(&str, WorkloadClass)> = WorkloadClass::ALL.iter().map(|w| (w.as_str(), *w)).collect();
        crate::config::variant(v, at, &named)
    }
}

impl WorkloadClass {
    pub const ALL: [WorkloadClass; 5] = [
        WorkloadClass::Interactive,
        WorkloadClass::Batch,
        WorkloadClass::Background,
        WorkloadClass::Embeddings,
        WorkloadClass::ToolCall,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadClass::Interactive => "interactive",
            WorkloadClass::Batch => "batch",
            WorkloadClass::Background => "background",
            WorkloadClass::Embeddings => "embeddings",
            WorkloadClass::ToolCall => "tool_call",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyStatus {
    #[default]
    Active,
    Revoked,
}

/// The prefix of minted gateway keys, so secret scanners can recognise leaked ones.
pub const KEY_PREFIX: &str = "aigw_sk_";

fn any() -> Vec<String> {
    vec!["*".own()]
}

/// A set of names a key is allowed to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyScope {
    Any,
    Only(Vec<String>),
}

impl KeyScope {
    fn from_list(list: &[String]) -> KeyScope {
        if list.iter().any(|x| x == "*") {
            KeyScope::Any
        } else {
            KeyScope::Only(list.to_vec())
        }
    }

    pub fn allows(&self, name: &str) -> bool {
        match self {
            KeyScope::Any => true,
            KeyScope::Only(list) => list.iter().any(|x| x == name),
        }
    }

    /// The scope as a comma-separated list (`*` for any), for filter state.
    pub fn to_list(&self) -> String {
        match self {
            KeyScope::Any => "*".own(),
            KeyScope::Only(list) => list.joined(","),
        }
    }

    pub fn from_list_str(s: &str) -> KeyScope {
        let list: Vec<String> = s.list();
        KeyScope::from_list(&list)
    }

    fn describe(&self) -> String {
        match self {
            KeyScope::Any => "any".own(),
            KeyScope::Only(l) if l.is_empty() => "none".own(),
            KeyScope::Only(l) => l.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().joined(", "),
        }
    }
}

/// Checks a name the caller asked for (a feature, agent or alias) against the key's scope; the
/// 403 names the scope that was exceeded and what the key allows.
pub fn check_scope(what: &'static str, scope: &KeyScope, requested: &str) -> Result<(), GatewayError> {
    if scope.allows(requested) {
        return Ok(());
    }
    let code = match what {
        "feature" => "feature_not_in_scope",
        "agent" => "agent_not_in_scope",
        "task" => "task_not_in_scope",
        _ => "alias_not_in_scope",
    };
    Err(GatewayError::new(
        403,
        "permission_error",
        code,
        format!("This gateway key may not use {what} `{requested}`; its {what} scope is: {}.", scope.describe()),
    ))
}

/// The identity a key carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub key_id: String,
    pub tenant: String,
    /// A short, non-secret fingerprint of the key: the first 12 hex digits of its SHA-256.
    pub fingerprint: String,
    pub zone: Option<String>,
    pub workload_class: Option<WorkloadClass>,
    pub features: KeyScope,
    pub agents: KeyScope,
    pub tasks: KeyScope,
    pub aliases: KeyScope,
    pub shadow: bool,
    pub status: KeyStatus,
    /// Validity window in ms since the epoch: `[not_before, not_after)`.
    pub not_before_ms: Option<u64>,
    pub not_after_ms: Option<u64>,
}

/// What the credential plane tells the other filters about a call, in one filter-state value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct CallIdentity {
    pub tenant: String,
    pub key_id: String,
    pub key_fingerprint: String,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub zone: Option<String>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub workload_class: Option<WorkloadClass>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub feature: Option<String>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub agent: Option<String>,
    /// The task category the caller named (`x-gateway-task`), within the key's scope.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub task: Option<String>,
    /// A shadow leg: the request id of the call it copies.
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub shadow_of: Option<String>,
    /// The model aliases the key may use, comma-separated (`*` for any).
    pub alias_scope: String,
}
crate::wire::object::from_object!(CallIdentity {
    tenant: "tenant" [required],
    key_id: "key_id" [required],
    key_fingerprint: "key_fingerprint" [required],
    zone: "zone" [],
    workload_class: "workload_class" [],
    feature: "feature" [],
    agent: "agent" [],
    task: "task" [],
    shadow_of: "shadow_of" [],
    alias_scope: "alias_scope" [required],
});

impl CallIdentity {
    pub fn of(id: &Identity) -> CallIdentity {
        CallIdentity {
            tenant: id.tenant.own(),
            key_id: id.key_id.own(),
            key_fingerprint: id.fingerprint.own(),
            zone: id.zone.clone(),
            workload_class: id.workload_class,
            feature: None,
            agent: None,
            task: None,
            shadow_of: None,
            alias_scope: id.aliases.to_list(),
        }
    }

    /// What [`CallIdentity::encode`] wrote.
    pub fn parse(raw: &[u8]) -> Option<CallIdentity> {
        let mut r = crate::codec::Reader::new(raw)?;
        let id = CallIdentity {
            tenant: r.str()?.own(),
            key_id: r.str()?.own(),
            key_fingerprint: r.str()?.own(),
            zone: r.opt_str()?.map(str::to_string),
            workload_class: match r.u8()? {
                0 => None,
                c => Some(*WorkloadClass::ALL.get(usize::from(c) - 1)?),
            },
            feature: r.opt_str()?.map(str::to_string),
            agent: r.opt_str()?.map(str::to_string),
            task: r.opt_str()?.map(str::to_string),
            shadow_of: r.opt_str()?.map(str::to_string),
            alias_scope: r.str()?.own(),
        };
        r.at_end().then_some(id)
    }

    /// The identity for filter state ([`crate::codec`]: the call's stages read it once per
    /// side, without a JSON parser).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = crate::codec::Writer::new();
        let class = self
            .workload_class
            .map_or(0, |c| WorkloadClass::ALL.iter().position(|x| *x == c).map_or(0, |i| i as u8 + 1));
        w.str(&self.tenant)
            .str(&self.key_id)
            .str(&self.key_fingerprint)
            .opt_str(self.zone.as_deref())
            .u8(class)
            .opt_str(self.feature.as_deref())
            .opt_str(self.agent.as_deref())
            .opt_str(self.task.as_deref())
            .opt_str(self.shadow_of.as_deref())
            .str(&self.alias_scope);
        w.finish()
    }
}

/// All configured keys, compiled once at configuration time.
#[derive(Debug, Default)]
pub struct KeyRing {
    entries: Vec<([u8; 32], Identity)>,
}

impl KeyRing {
    /// Compiles `keys` (an auth configuration's `keys`): errors name `keys[i].field`.
    pub fn compile(entries: &[KeyEntry]) -> Result<Self, ConfigError> {
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let refused = |field: &str, problem: String| {
                ConfigError::new("auth-key-swap", format!("keys[{i}].{field}"), format!("key {:?}: {problem}", e.id))
            };
            let digest = parse_hex32(&e.sha256).ok_or_else(|| refused("sha256", "must be 64 hex characters".own()))?;
            if e.tenant.is_empty() {
                return Err(refused("tenant", "must not be empty".own()));
            }
            if out.iter().any(|(d, _)| *d == digest) {
                return Err(refused("sha256", "the same digest is configured twice".own()));
            }
            let when = |field: &str, v: &Option<String>| -> Result<Option<u64>, ConfigError> {
                v.as_deref()
                    .map(|s| {
                        crate::time::parse_utc_ms(s)
                            .ok_or_else(|| refused(field, format!("{s:?} is not a UTC time like 2026-11-22T00:00:00Z")))
                    })
                    .transpose()
            };
            let not_before_ms = when("not_before", &e.not_before)?;
            let not_after_ms = when("not_after", &e.not_after)?;
            if let (Some(b), Some(a)) = (not_before_ms, not_after_ms) {
                if a <= b {
                    return Err(refused("not_after", "must be later than not_before".own()));
                }
            }
            let fingerprint = to_hex(&digest[..6]);
            out.push((
                digest,
                Identity {
                    key_id: e.id.own(),
                    tenant: e.tenant.own(),
                    fingerprint,
                    zone: e.zone.clone(),
                    workload_class: e.workload_class,
                    features: KeyScope::from_list(&e.features),
                    agents: KeyScope::from_list(&e.agents),
                    tasks: KeyScope::from_list(&e.tasks),
                    shadow: e.shadow,
                    aliases: KeyScope::from_list(&e.aliases),
                    status: e.status,
                    not_before_ms,
                    not_after_ms,
                },
            ));
        }
        Ok(Self { entries: out })
    }

    /// Finds the identity of a presented key that is usable at `now_ms`. Every configured digest
    /// is compared in constant time, so the time taken does not depend on which key (if any)
    /// matched. Unknown, revoked, expired and not-yet-valid keys each get their own 401, which
    /// says nothing about any other key.
    pub fn authenticate_at(&self, presented: &str, now_ms: u64) -> Result<&Identity, GatewayError> {
        let id = self.authenticate(presented)?;
        usable_at(id, now_ms).map(|()| id)
    }

    /// Finds the identity of a presented key, whatever its status and validity window.
    pub fn authenticate(&self, presented: &str) -> Result<&Identity, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&Identity> = None;
        for (d, identity) in &self.entries {
            if ct_eq(d, &digest) {
                found = Some(identity);
            }
        }
        found.ok_or_else(|| GatewayError::new(401, "invalid_request_error", "invalid_api_key", "Unknown gateway key."))
    }
}

/// Whether a known key may be used at `now_ms`: revoked, not yet valid and expired keys each
/// get their own 401.
pub fn usable_at(id: &Identity, now_ms: u64) -> Result<(), GatewayError> {
    let refuse = |code, message: &str| Err(GatewayError::new(401, "invalid_request_error", code, message));
    if id.status == KeyStatus::Revoked {
        return refuse("revoked_api_key", "This gateway key has been revoked.");
    }
    if id.not_before_ms.is_some_and(|b| now_ms < b) {
        return refuse("api_key_not_yet_valid", "This gateway key is not valid yet.");
    }
    if id.not_after_ms.is_some_and(|a| now_ms >= a) {
        return refuse("expired_api_key", "This gateway key has expired.");
    }
    Ok(())
}

/// The credential a caller presents: `Authorization: Bearer`, `x-api-key` (Anthropic SDK) or
/// `api-key` (Azure SDK), in that order.
pub fn presented_credential<'a>(
    authorization: Option<&'a str>,
    x_api_key: Option<&'a str>,
    api_key: Option<&'a str>,
) -> Option<&'a str> {
    if let Some(v) = authorization {
        // Compared as bytes: the header is the caller's, and byte 7 need not be a char boundary.
        let v = v.trim();
        let scheme = v.as_bytes().get(..7);
        if scheme.is_some_and(|s| crate::text::same_letters(s, b"bearer ")) {
            // "bearer " is ASCII, so byte 7 is a char boundary here.
            let token = v.get(7..).unwrap_or("").trim();
            if !token.is_empty() {
                return Some(token);
            }
        }
    }
    [x_api_key, api_key].into_iter().flatten().map(str::trim).find(|v| !v.is_empty())
}

/// Lowercase hex SHA-256 of a key (what config stores).
pub fn digest_hex(key: &str) -> String {
    to_hex(&Sha256::digest(key.as_bytes()))
}

pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        let hi = (pair.first()?.to_ascii_lowercase() as char).to_digit(16)?;
        let lo = (pair.get(1)?.to_ascii_lowercase() as char).to_digit(16)?;
        *out.get_mut(i)? = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for KeyEntry {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "KeyEntry",
            Some(&[
                "id",
                "sha256",
                "tenant",
                "zone",
                "workload_class",
                "features",
                "agents",
                "tasks",
                "shadow",
                "aliases",
                "status",
                "not_before",
                "not_after",
            ]),
        )?;
        let mut x = KeyEntry::default();
        x.id = o.req("id")?;
        x.sha256 = o.req("sha256")?;
        x.tenant = o.req("tenant")?;
        x.zone = o.opt("zone")?;
        x.workload_class = o.opt("workload_class")?;
        x.features = o.or("features", Default::default)?;
        x.agents = o.or("agents", Default::default)?;
        x.tasks = o.or("tasks", Default::default)?;
        x.shadow = o.or("shadow", Default::default)?;
        x.aliases = o.or("aliases", any)?;
        x.status = o.or("status", Default::default)?;
        x.not_before = o.opt("not_before")?;
        x.not_after = o.opt("not_after")?;
        Ok(x)
    }
}

impl crate::config::FromConfig for KeyStatus {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(v, at, &[("active", KeyStatus::Active), ("revoked", KeyStatus::Revoked)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, sha256: &str, tenant: &str) -> KeyEntry {
        crate::config::from_value(crate::json!({"id": id, "sha256": sha256, "tenant": tenant})).unwrap()
    }

    fn ring() -> KeyRing {
        KeyRing::compile(&[
            KeyEntry { features: vec!["search".into()], ..entry("k1", &digest_hex("aigw-one"), "acme") },
            KeyEntry {
                zone: Some("eu".into()),
                aliases: vec!["chat".into()],
                ..entry("k2", &digest_hex("aigw-two").to_uppercase(), "beta")
            },
        ])
        .unwrap_or_default()
    }

    #[test]
    fn known_keys_map_to_their_identity() {
        let r = ring();
        assert_eq!(r.authenticate("aigw-one").map(|i| i.tenant.as_str()), Ok("acme"));
        assert_eq!(r.authenticate("aigw-two").map(|i| i.key_id.as_str()), Ok("k2"));
        assert_eq!(r.authenticate("aigw-two").map(|i| i.zone.clone()), Ok(Some("eu".into())));
        assert_eq!(
            r.authenticate("aigw-one").map(|i| i.fingerprint.clone()),
            Ok(digest_hex("aigw-one")[..12].to_string())
        );
    }

    #[test]
    fn a_key_carries_its_workload_class_into_the_call_identity() {
        let e: KeyEntry = crate::config::from_value(crate::json!(
            {"id": "w", "sha256": digest_hex("aigw-w"), "tenant": "t", "workload_class": "tool_call"}))
        .unwrap();
        let r = KeyRing::compile(&[e]).unwrap();
        let id = CallIdentity::of(r.authenticate("aigw-w").unwrap());
        assert_eq!(id.workload_class, Some(WorkloadClass::ToolCall));
        let back = CallIdentity::parse(&id.encode()).unwrap();
        assert_eq!(back.workload_class.map(WorkloadClass::as_str), Some("tool_call"));
        // An unknown class is a config error, not a silent default.
        assert!(crate::config::from_value::<KeyEntry>(crate::json!(
            {"id": "w", "sha256": "00", "tenant": "t", "workload_class": "urgent"}))
        .is_err());
    }

    #[test]
    fn revoked_expired_and_future_keys_get_their_own_401() {
        let keys: Vec<KeyEntry> = crate::config::from_value(crate::json!([
            {"id": "r", "tenant": "t", "sha256": digest_hex("k-r"), "status": "revoked"},
            {"id": "w", "tenant": "t", "sha256": digest_hex("k-w"), "not_before": "2026-01-01", "not_after": "2026-02-01T00:00:00Z"},
        ]))
        .unwrap();
        let ring = KeyRing::compile(&keys).unwrap();
        let jan15 = crate::time::parse_utc_ms("2026-01-15").unwrap();
        let code = |k: &str, now| ring.authenticate_at(k, now).err().map(|e| (e.status, e.code));
        assert_eq!(code("k-r", jan15), Some((401, "revoked_api_key")));
        assert_eq!(code("k-w", jan15), None);
        assert_eq!(code("k-w", jan15 - 15 * 86_400_000), Some((401, "api_key_not_yet_valid")));
        assert_eq!(code("k-w", crate::time::parse_utc_ms("2026-02-01").unwrap()), Some((401, "expired_api_key")));
        assert_eq!(code("k-unknown", jan15), Some((401, "invalid_api_key")));
        let bad: Vec<KeyEntry> = crate::config::from_value(crate::json!([
            {"id": "b", "tenant": "t", "sha256": digest_hex("x"), "not_after": "soon"}]))
        .unwrap();
        assert_eq!(KeyRing::compile(&bad).unwrap_err().field, "keys[0].not_after");
        let inverted: Vec<KeyEntry> = crate::config::from_value(crate::json!([
            {"id": "i", "tenant": "t", "sha256": digest_hex("x"), "not_before": "2026-02-01", "not_after": "2026-01-01"}])).unwrap();
        let e = KeyRing::compile(&inverted).unwrap_err();
        assert_eq!(e.field, "keys[0].not_after");
        assert!(e.problem.contains("later"), "{e}");
    }

    #[test]
    fn unknown_key_is_401() {
        let err = ring().authenticate("aigw-three").err();
        assert_eq!(err.map(|e| e.status), Some(401));
    }

    #[test]
    fn bad_config_is_rejected_with_reason() {
        let bad = [entry("x", "abc", "t")];
        let e = KeyRing::compile(&bad).unwrap_err();
        assert_eq!((e.filter.as_str(), e.field.as_str()), ("auth-key-swap", "keys[0].sha256"));
        assert!(e.problem.contains("64 hex"), "{e}");
        let dup = [entry("a", &digest_hex("k"), "t"), entry("b", &digest_hex("k"), "t")];
        let e = KeyRing::compile(&dup).unwrap_err();
        assert_eq!(e.field, "keys[1].sha256");
        assert!(e.problem.contains("twice"), "{e}");
    }

    #[test]
    fn scopes_default_and_check() {
        let r = ring();
        let one = r.authenticate("aigw-one").unwrap();
        assert!(check_scope("feature", &one.features, "search").is_ok());
        let e = check_scope("feature", &one.features, "billing").unwrap_err();
        assert_eq!((e.status, e.code), (403, "feature_not_in_scope"));
        assert!(e.message.contains("`billing`") && e.message.contains("`search`"), "{}", e.message);
        // No agents listed: naming one is refused; aliases default to any.
        assert_eq!(check_scope("agent", &one.agents, "bot").unwrap_err().code, "agent_not_in_scope");
        assert!(one.agents.to_list().is_empty());
        assert_eq!(one.aliases, KeyScope::Any);
        let two = r.authenticate("aigw-two").unwrap();
        assert_eq!(check_scope("alias", &two.aliases, "other").unwrap_err().code, "alias_not_in_scope");
        assert_eq!(KeyScope::from_list_str(&two.aliases.to_list()), two.aliases);
        assert_eq!(KeyScope::from_list_str("*"), KeyScope::Any);
    }

    #[test]
    fn call_identity_roundtrips() {
        let r = ring();
        let mut c = CallIdentity::of(r.authenticate("aigw-two").unwrap());
        c.feature = Some("search".into());
        c.workload_class = Some(WorkloadClass::Background);
        let back = CallIdentity::parse(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.alias_scope, "chat");
        assert!(CallIdentity::parse(b"nope").is_none());
        // Cut short anywhere, or JSON (an older module's): nothing.
        let bytes = c.encode();
        assert!((0..bytes.len()).all(|cut| CallIdentity::parse(&bytes[..cut]).is_none()));
        assert_eq!(CallIdentity::parse(&serde_json::to_vec(&c).unwrap()), None);
        for class in WorkloadClass::ALL {
            let with = CallIdentity { workload_class: Some(class), ..c.clone() };
            assert_eq!(CallIdentity::parse(&with.encode()).and_then(|i| i.workload_class), Some(class));
        }
        // A zone with quotes and a non-ASCII letter reads back as it was.
        c.zone = Some("eu \"west\" \u{e9}".into());
        assert_eq!(CallIdentity::parse(&c.encode()).and_then(|i| i.zone), c.zone);
    }

    #[test]
    fn credential_header_styles() {
        assert_eq!(presented_credential(Some("Bearer abc"), None, None), Some("abc"));
        assert_eq!(presented_credential(Some("bearer  abc "), None, None), Some("abc"));
        assert_eq!(presented_credential(None, Some("xyz"), None), Some("xyz"));
        assert_eq!(presented_credential(None, None, Some("azk")), Some("azk"));
        assert_eq!(presented_credential(Some("Basic abc"), None, None), None);
        assert_eq!(presented_credential(Some("Bearer "), None, None), None);
        // A multi-byte character across byte 7 (the probe that once killed the VM).
        assert_eq!(presented_credential(Some("Bearer\u{e9}x"), None, None), None);
        assert_eq!(presented_credential(Some("Beare\u{e9}x"), None, None), None);
        assert_eq!(presented_credential(Some("\u{e9}\u{e9}\u{e9}\u{e9}"), None, Some("k")), Some("k"));
        assert_eq!(presented_credential(Some("Bearer \u{e9}"), None, None), Some("\u{e9}"));
    }
}
