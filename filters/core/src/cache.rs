//! The cache plane: exact answers, per tenant, kept in Envoy's shared data (shared by every
//! worker), served again to the same request instead of calling a provider.
//!
//! - **Opt-in per alias or route rule** (`cache` in the route configuration; a rule's policy
//!   wins over its alias's), never for an alias or rule marked `sensitive`.
//! - **The key** ([`key`]) is a digest of the tenant (the partition: one tenant never gets
//!   another's answer; optionally the caller's key too), the resolved alias and route, and the
//!   request with its JSON normalised (key order and whitespace do not count, nor do `user`,
//!   `stream`, `stream_options`, the `model` the caller named, or the door it came by).
//! - **Storage is bounded**: a fixed set of `slots` shared-data keys (`aigw.cache.<n>`), each
//!   holding at most one entry of at most `max_entry_bytes`. Shared data has no delete, so an
//!   entry is never removed: a newer entry whose key falls in the same slot replaces it, and an
//!   entry past its time is told by the time it was stored.

pub mod semantic;
pub mod shared;
pub mod stage;

use crate::text::{Joined, PutBytes, Text};
use crate::wire::tree::Value;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;
use crate::host::Host;
use crate::wire::usage::Usage;

/// The cache store's bound (the route configuration's `cache`; the default when only policies
/// are given).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// How many entries the store holds (each a shared-data key).
    pub slots: u32,
    /// The largest entry kept (its answer and what is recorded with it); larger answers are
    /// not cached.
    pub max_entry_bytes: u32,
    /// The time entries are stored and judged at, instead of the clock (for tests and
    /// rehearsals), as the route stage's `now`.
    pub now: Option<String>,
    /// The semantic cache's embedder and index (needed by a policy in a semantic mode).
    pub semantic: Option<semantic::SemanticConfig>,
    /// The fleet's shared cache: exact entries also kept in Redis, through Webdis.
    pub shared: Option<shared::SharedConfig>,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            slots: default_slots(),
            max_entry_bytes: default_max_entry_bytes(),
            now: None,
            semantic: None,
            shared: None,
        }
    }
}

fn default_slots() -> u32 {
    256
}

fn default_max_entry_bytes() -> u32 {
    64 * 1024
}

/// An alias's or rule's cache policy.
#[derive(Debug, Clone, PartialEq)]
pub struct CachePolicy {
    pub mode: CacheMode,
    /// How long an entry is served.
    pub ttl_s: u64,
    /// How long after that an entry may still answer a call whose every provider failed.
    pub stale_ttl_s: u64,
    /// Partition by the caller's key too, not only by tenant.
    pub per_key: bool,
    /// A hit is charged to the request buckets (never to tokens or budgets); by default it is
    /// charged to nothing.
    pub charge_requests: bool,
    /// The semantic modes: the least cosine similarity that counts as the same request.
    pub threshold: Option<f64>,
}

impl CachePolicy {
    pub fn semantic(&self) -> bool {
        matches!(self.mode, CacheMode::Semantic | CacheMode::SemanticShadow)
    }

    /// Checks the policy of `at` (a field path).
    pub fn check(&self, at: &str) -> Result<(), ConfigError> {
        let refused = |field: &str, problem: &str| ConfigError::new("route-select", format!("{at}.{field}"), problem);
        if self.ttl_s == 0 {
            return Err(refused("ttl_s", "must be at least 1"));
        }
        match (self.semantic(), self.threshold) {
            (true, None) => {
                Err(refused("threshold", "a semantic mode needs a threshold (0 to 1), chosen by evaluation"))
            }
            (true, Some(t)) if !(t > 0.0 && t <= 1.0) => Err(refused("threshold", "must be above 0 and at most 1")),
            (false, Some(_)) => Err(refused("threshold", "only the semantic modes take a threshold")),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    Exact,
    /// Exact, then the nearest stored request by meaning, served above `threshold`.
    Semantic,
    /// Exact; the semantic lookup is made and recorded in the audit record, never served.
    SemanticShadow,
}

/// The compiled store.
#[derive(Debug, Clone)]
pub struct Cache {
    pub slots: u32,
    pub max_entry_bytes: usize,
    now_ms: Option<u64>,
    /// The semantic cache's embedder and index, when configured.
    pub semantic: Option<semantic::Semantic>,
    /// The fleet's shared cache, when configured.
    pub shared: Option<shared::Shared>,
}

impl TryFrom<&CacheConfig> for Cache {
    type Error = ConfigError;

    fn try_from(cfg: &CacheConfig) -> Result<Cache, ConfigError> {
        let refused =
            |field: &str, problem: &str| ConfigError::new("route-select", format!("cache.{field}"), problem.own());
        if !(1..=65_536).contains(&cfg.slots) {
            return Err(refused("slots", "must be 1 to 65536"));
        }
        if !(1024..=4 * 1024 * 1024).contains(&cfg.max_entry_bytes) {
            return Err(refused("max_entry_bytes", "must be 1024 to 4194304"));
        }
        let now_ms = match &cfg.now {
            None => None,
            Some(t) => Some(crate::time::parse_utc_ms(t).ok_or_else(|| refused("now", "is not a UTC date or time"))?),
        };
        Ok(Cache {
            slots: cfg.slots,
            max_entry_bytes: cfg.max_entry_bytes as usize,
            now_ms,
            semantic: None,
            shared: None,
        })
    }
}

/// A cache key.
pub type Digest32 = [u8; 32];

/// What a request is keyed by.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// The exact key.
    pub exact: Digest32,
    pub stream: bool,
    /// For the semantic cache: the text embedded (the last user message's) and the partition
    /// its index is in (everything else of the request: system prompt, earlier turns,
    /// parameters, with the tenant, alias and route), so that a different system prompt or
    /// setting never matches. `None`: the request has no user message with text.
    pub semantic: Option<(String, Digest32)>,
    /// The request needs the provider's own state (a Responses request's
    /// `previous_response_id` or `conversation`): its answer is not the request's alone.
    pub stateful: bool,
}

/// The key of a request (`body`: the unified request, as routed) for `tenant` (and `key_id`
/// when the policy partitions per key), `alias` and `route`; and whether it streams. `None`: the
/// body is not a JSON object (such a call is not cached).
pub fn key(tenant: &str, key_id: Option<&str>, alias: &str, route: &str, body: &[u8]) -> Option<(Digest32, bool)> {
    keys(tenant, key_id, alias, route, body).map(|k| (k.exact, k.stream))
}

/// The request's keys, from one read of it.
pub fn keys(tenant: &str, key_id: Option<&str>, alias: &str, route: &str, body: &[u8]) -> Option<Keys> {
    keys_of(tenant, key_id, alias, route, crate::wire::from_slice(body).ok()?)
}

/// The request's keys, from the request already read (the guard stage hands its tree on).
pub fn keys_of(tenant: &str, key_id: Option<&str>, alias: &str, route: &str, mut v: Value) -> Option<Keys> {
    let o = v.as_object_mut()?;
    let stream = o.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let stateful = ["previous_response_id", "conversation"].iter().any(|f| o.get(f).is_some_and(|v| !v.is_null()));
    for f in ["user", "stream", "stream_options", "model"] {
        o.remove(f);
    }
    let digest = |v: &Value| -> Option<Digest32> {
        // A tree's map keeps its keys sorted: written back, equal requests are equal bytes.
        let canonical = crate::wire::write::to_vec(v);
        let mut h = Sha256::new();
        for part in [tenant, key_id.unwrap_or(""), alias, route] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(&canonical);
        Some(h.finalize().into())
    };
    let exact = digest(&v)?;
    // The last user message's text is what is embedded; the rest is the partition.
    let last_user = v
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .and_then(|m| m.iter_mut().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")));
    let semantic = last_user.and_then(|m| {
        let text = match m.get("content")? {
            Value::String(t) => t.own(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().joined("\n")
            }
            _ => return None,
        };
        m.as_object_mut()?.insert("content".own(), Value::Null);
        Some(text).filter(|t| !t.trim().is_empty())
    });
    let semantic = match semantic {
        Some(text) => Some((text, digest(&v)?)),
        None => None,
    };
    Some(Keys { exact, stream, semantic, stateful })
}

/// What is kept with an answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    pub ttl_ms: u64,
    pub stale_ms: u64,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// What the call that stored it used: what a hit saves.
    pub usage: Option<Usage>,
    /// The call that stored it.
    pub request_id: String,
}
crate::wire::object::json_object!(Meta {
    ttl_ms: "ttl_ms" [required],
    stale_ms: "stale_ms" [required],
    model: "model" [],
    provider: "provider" [],
    usage: "usage" [],
    request_id: "request_id" [required],
});

/// One stored answer (in the format of the door its call came by).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub digest: Digest32,
    pub stored_ms: u64,
    pub meta: Meta,
    pub body: Vec<u8>,
}

const MAGIC: &[u8; 4] = b"AGC1";

impl Entry {
    /// `AGC1`, the digest, the time stored (u64), the meta's length (u32), the meta (JSON), the
    /// answer (little-endian).
    pub fn encode(&self) -> Vec<u8> {
        let meta = crate::wire::write::to_vec(&self.meta);
        let mut out = Vec::with_capacity(48 + meta.len() + self.body.len());
        out.put(MAGIC);
        out.put(&self.digest);
        out.put(&self.stored_ms.to_le_bytes());
        out.put(&(meta.len() as u32).to_le_bytes());
        out.put(&meta);
        out.put(&self.body);
        out
    }

    pub fn decode(b: &[u8]) -> Option<Entry> {
        if b.get(..4)? != MAGIC {
            return None;
        }
        let digest: Digest32 = b.get(4..36)?.try_into().ok()?;
        let stored_ms = u64::from_le_bytes(b.get(36..44)?.try_into().ok()?);
        let meta_len = u32::from_le_bytes(b.get(44..48)?.try_into().ok()?) as usize;
        let meta = crate::wire::from_slice(b.get(48..48usize.checked_add(meta_len)?)?).ok()?;
        let body = b.get(48 + meta_len..)?.to_vec();
        Some(Entry { digest, stored_ms, meta, body })
    }
}

/// What the store has for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// Within its time: served.
    Fresh(Entry),
    /// Past its time, within its stale time: served only when every provider failed.
    Stale(Entry),
    Miss,
}

impl Cache {
    /// Now, by the configured clock if there is one.
    pub fn now_ms(&self, h: &impl Host) -> u64 {
        self.now_ms.unwrap_or_else(|| h.now_ms())
    }

    /// The shared-data key of the slot a digest falls in.
    pub fn slot_key(&self, digest: &Digest32) -> String {
        let n = u64::from_le_bytes([
            digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
        ]);
        format!("aigw.cache.{}", n % u64::from(self.slots))
    }

    pub fn lookup(&self, h: &impl Host, digest: &Digest32) -> Lookup {
        let Ok((Some(bytes), _)) = h.shared_get(&self.slot_key(digest)) else { return Lookup::Miss };
        let Some(entry) = Entry::decode(&bytes).filter(|e| &e.digest == digest) else { return Lookup::Miss };
        let age = self.now_ms(h).saturating_sub(entry.stored_ms);
        if age < entry.meta.ttl_ms {
            Lookup::Fresh(entry)
        } else if age < entry.meta.ttl_ms.saturating_add(entry.meta.stale_ms) {
            Lookup::Stale(entry)
        } else {
            Lookup::Miss
        }
    }

    /// Stores an entry in its slot (replacing whatever was there). Returns whether it was kept:
    /// an entry larger than `max_entry_bytes` is not.
    pub fn store(&self, h: &impl Host, entry: &Entry) -> bool {
        let bytes = entry.encode();
        if bytes.len() > self.max_entry_bytes {
            return false;
        }
        h.shared_set(&self.slot_key(&entry.digest), &bytes, None).is_ok()
    }
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for CacheConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "CacheConfig",
            Some(&["slots", "max_entry_bytes", "now", "semantic", "shared"]),
        )?;
        let mut x = CacheConfig::default();
        x.slots = o.or("slots", default_slots)?;
        x.max_entry_bytes = o.or("max_entry_bytes", default_max_entry_bytes)?;
        x.now = o.opt("now")?;
        x.semantic = o.opt("semantic")?;
        x.shared = o.opt("shared")?;
        Ok(x)
    }
}

impl crate::config::FromConfig for CachePolicy {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "CachePolicy",
            Some(&["mode", "ttl_s", "stale_ttl_s", "per_key", "charge_requests", "threshold"]),
        )?;
        Ok(CachePolicy {
            mode: o.req("mode")?,
            ttl_s: o.req("ttl_s")?,
            stale_ttl_s: o.or("stale_ttl_s", Default::default)?,
            per_key: o.or("per_key", Default::default)?,
            charge_requests: o.or("charge_requests", Default::default)?,
            threshold: o.opt("threshold")?,
        })
    }
}

impl crate::config::FromConfig for CacheMode {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(
            v,
            at,
            &[
                ("exact", CacheMode::Exact),
                ("semantic", CacheMode::Semantic),
                ("semantic-shadow", CacheMode::SemanticShadow),
            ],
        )
    }
}

#[cfg(test)]
mod tests;
