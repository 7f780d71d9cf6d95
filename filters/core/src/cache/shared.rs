//! The fleet's shared cache (`cache.shared`): exact entries are also kept in Redis, through
//! Webdis (the cluster fleet mode uses), behind each replica's local store. A local miss asks
//! Redis (one round trip, worth it: a hit saves a provider call); an entry a replica stores
//! goes to Redis from its root context's ticker (a call's own HTTP calls end with it), from a
//! shared-data queue of digests.

use crate::text::{PutBytes, Text};
use std::rc::Rc;

use super::{Cache, Digest32, Entry, Lookup};
use crate::error::ConfigError;
use crate::host::{Host, HttpAnswer, SharedSetError};

#[derive(Debug, Clone, Default)]
pub struct SharedConfig {
    /// The Envoy cluster of the Webdis bridge to Redis.
    pub cluster: String,
    /// The environment variable that holds Webdis's `user:password`.
    pub auth_env: String,
    /// How long a lookup waits for Redis at most (then: a miss).
    pub timeout_ms: u64,
    /// The prefix of the cache's keys in Redis (`<prefix>:c:<digest>`).
    pub prefix: String,
}

fn default_auth_env() -> String {
    "AIGW_FLEET_AUTH".own()
}
fn default_timeout_ms() -> u64 {
    200
}
fn default_prefix() -> String {
    "aigw".own()
}

#[derive(Debug, Clone)]
pub struct Shared {
    pub cluster: String,
    authorization: Option<String>,
    pub timeout_ms: u64,
    prefix: String,
}

/// The shared-data queue of digests (hex, one a line) stored locally and not yet in Redis.
pub const QUEUE_KEY: &str = "aigw.cache.outq";
const QUEUE_HEAD: &[u8] = b"# aigw cache entries for Redis\n";
/// At most this many entries wait for the ticker; more are not shared.
const QUEUE_MAX: usize = 256;

impl Shared {
    pub fn compile(cfg: &SharedConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Shared, ConfigError> {
        let refused = |field: &str, problem: &str| {
            ConfigError::new("route-select", format!("cache.shared.{field}"), problem.own())
        };
        if cfg.cluster.is_empty() {
            return Err(refused("cluster", "names the Envoy cluster of the Webdis bridge"));
        }
        if cfg.timeout_ms == 0 || cfg.timeout_ms > 5_000 {
            return Err(refused("timeout_ms", "must be 1 to 5000 ms"));
        }
        if cfg.prefix.is_empty() || !cfg.prefix.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err(refused("prefix", "letters, digits, `_` and `-` only"));
        }
        Ok(Shared {
            cluster: cfg.cluster.own(),
            authorization: env(&cfg.auth_env)
                .map(|v| format!("Basic {}", crate::wire::embeddings::base64(v.as_bytes()))),
            timeout_ms: cfg.timeout_ms,
            prefix: cfg.prefix.own(),
        })
    }

    fn key(&self, digest: &Digest32) -> String {
        format!("{}:c:{}", self.prefix, hex(digest))
    }

    fn headers<'a>(&'a self, method: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
        crate::quota::fleet::webdis_headers(method, path, self.authorization.as_deref())
    }

    /// Asks Redis for an entry: the call's token (`None`: the call could not be made).
    pub fn get(&self, h: &impl Host, digest: &Digest32) -> Option<u32> {
        let path = format!("/FCALL/aigw_cache_get/1/{}", self.key(digest));
        h.http_call(&self.cluster, &self.headers("GET", &path), b"", self.timeout_ms).ok()
    }

    /// Sends an entry to Redis, to live `ttl_ms`.
    pub fn put(&self, h: &impl Host, entry: &Entry, ttl_ms: u64) -> Option<u32> {
        let path = format!("/FCALL/aigw_cache_put/1/{}/{ttl_ms}", self.key(&entry.digest));
        let body = crate::wire::embeddings::base64(&entry.encode());
        h.http_call(&self.cluster, &self.headers("PUT", &path), body.as_bytes(), self.timeout_ms).ok()
    }
}

/// Redis's answer to a lookup: the entry for `digest`, if Redis had it (an error, an entry that
/// cannot be read or one of another digest is a miss).
pub fn read_entry(answer: &HttpAnswer, digest: &Digest32) -> Option<Entry> {
    if answer.status != 200 {
        return None;
    }
    let v: crate::wire::tree::Value = crate::wire::from_slice(&answer.body).ok()?;
    let text = v.get("FCALL")?.as_str()?;
    let bytes = crate::wire::embeddings::base64_decode(text)?;
    Entry::decode(&bytes).filter(|e| &e.digest == digest)
}

fn hex(d: &Digest32) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Digest32> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Queues a stored entry's digest for the ticker (dropped when the queue is full).
pub fn enqueue(h: &impl Host, digest: &Digest32) {
    let line = hex(digest);
    for _ in 0..16 {
        let (cur, cas) = match h.shared_get(QUEUE_KEY) {
            Ok(x) => x,
            Err(()) => return,
        };
        let mut text = cur.unwrap_or_else(|| QUEUE_HEAD.to_vec());
        if text.split(|b| *b == b'\n').count() > QUEUE_MAX || text.windows(64).any(|w| w == line.as_bytes()) {
            return;
        }
        text.put(line.as_bytes());
        text.push(b'\n');
        match h.shared_set(QUEUE_KEY, &text, cas) {
            Ok(()) => return,
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return,
        }
    }
}

/// Takes every queued digest (leaving the queue empty).
fn take_queue(h: &impl Host) -> Vec<Digest32> {
    for _ in 0..16 {
        let Ok((Some(text), cas)) = h.shared_get(QUEUE_KEY) else { return Vec::new() };
        let digests: Vec<Digest32> = String::from_utf8_lossy(&text).parts(b'\n').filter_map(unhex).collect();
        if digests.is_empty() {
            return digests;
        }
        match h.shared_set(QUEUE_KEY, QUEUE_HEAD, cas) {
            Ok(()) => return digests,
            Err(SharedSetError::CasMismatch) => continue,
            Err(_) => return Vec::new(),
        }
    }
    Vec::new()
}

/// The root context's part: sends queued entries to Redis, each with what is left of its time.
pub struct Writer {
    cache: Rc<Cache>,
    shared: Shared,
    in_flight: Vec<u32>,
}

impl Writer {
    pub fn new(cache: Rc<Cache>, shared: Shared) -> Writer {
        Writer { cache, shared, in_flight: Vec::new() }
    }

    pub fn on_tick(&mut self, h: &impl Host) {
        if !self.in_flight.is_empty() {
            return;
        }
        let now = self.cache.now_ms(h);
        for digest in take_queue(h) {
            let entry = match self.cache.lookup(h, &digest) {
                Lookup::Fresh(e) | Lookup::Stale(e) => e,
                Lookup::Miss => continue,
            };
            let until = entry.stored_ms.saturating_add(entry.meta.ttl_ms).saturating_add(entry.meta.stale_ms);
            let ttl = until.saturating_sub(now);
            if ttl == 0 {
                continue;
            }
            if let Some(token) = self.shared.put(h, &entry, ttl) {
                self.in_flight.push(token);
            }
        }
    }

    /// Whether `token` was one of this writer's calls.
    pub fn on_http_call_response(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) -> bool {
        let Some(i) = self.in_flight.iter().position(|t| *t == token) else { return false };
        self.in_flight.swap_remove(i);
        if answer.status != 200 {
            h.warn(&format!("cache: an entry could not be shared (Webdis answered {})", answer.status));
        }
        true
    }
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for SharedConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "SharedConfig", Some(&["cluster", "auth_env", "timeout_ms", "prefix"]))?;
        let mut x = SharedConfig::default();
        x.cluster = o.req("cluster")?;
        x.auth_env = o.or("auth_env", default_auth_env)?;
        x.timeout_ms = o.or("timeout_ms", default_timeout_ms)?;
        x.prefix = o.or("prefix", default_prefix)?;
        Ok(x)
    }
}
