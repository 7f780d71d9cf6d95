//! Fleet mode: the tenant, feature and model request and token buckets shared by every Envoy
//! replica, held in Redis (`deploy/redis/aigw.lua`) and reached through Webdis, an Envoy cluster
//! away.
//!
//! Each replica spends a **lease** it took from the fleet's bucket, locally and exactly, in the
//! scope's shared-data record (the same record, one read and one write per call, as without
//! fleet mode): the record's request and token levels are then the lease left, which never
//! refills locally. A call that finds a lease short waits (paused) while the stage takes its need
//! plus a new lease from Redis in one atomic `FCALL aigw_take` over every bucket the call
//! charges, all or nothing; Redis refills its buckets from its own clock. Tokens taken from Redis
//! cannot be spent twice, so the fleet never admits more than its limits; what a replica holds
//! unspent is the bound on under-admission (README, "Fleet mode").

use crate::text::{Put, Text};
use crate::wire::tree::Value;

use crate::config::{variant, At, FromConfig, Obj, Read};

use crate::error::ConfigError;
use crate::host::Host;
use crate::quota::bucket::UNITS_PER_TOKEN;

/// `quota.fleet` in the configuration.
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    /// The Envoy cluster of the Webdis bridge to Redis.
    pub cluster: String,
    /// The environment variable (in Envoy's environment) that holds Webdis's `user:password`.
    pub auth_env: String,
    /// How much a replica takes per top-up, beyond what the waiting call needs.
    pub lease: LeaseSpec,
    /// How long a call waits for a top-up at most (then: Redis is unavailable).
    pub timeout_ms: u64,
    /// What a replica does while Redis cannot be reached.
    pub unavailable: Unavailable,
    /// The replicas expected: in `local` mode each enforces `limit / expected_replicas`.
    pub expected_replicas: u64,
    /// After Redis could not be reached, how long a replica serves in its unavailable mode before
    /// it tries again.
    pub retry_ms: u64,
    /// The prefix of the gateway's keys in Redis.
    pub prefix: String,
    /// How often one worker per replica tops the leases up ahead of need and gives back what
    /// idle buckets hold.
    pub tick_ms: u64,
    /// A lease covers this long of a bucket's observed rate on this replica (at least `lease`).
    pub headroom_ms: u64,
    /// A bucket that spent nothing for this long gives its lease back to the fleet.
    pub idle_return_ms: u64,
}

#[derive(Debug, Clone)]
pub struct LeaseSpec {
    /// Calls per lease of a request bucket.
    pub requests: u64,
    /// Tokens per lease of a token bucket.
    pub tokens: u64,
    /// USD per lease of a budget (a decimal string).
    pub usd: String,
    /// Calls-in-flight slots a replica holds beyond those in use, while it has calls.
    pub slots: u64,
}

impl Default for LeaseSpec {
    fn default() -> Self {
        LeaseSpec {
            requests: default_lease_requests(),
            tokens: default_lease_tokens(),
            usd: default_lease_usd(),
            slots: default_lease_slots(),
        }
    }
}

/// What a replica does while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unavailable {
    /// Each replica enforces `limit / expected_replicas` on its own.
    #[default]
    Local,
    /// Refused: 503 `quota_unavailable`, with `Retry-After`.
    Closed,
    /// Admitted without the fleet buckets (every other limit still holds).
    Open,
}

impl FromConfig for FleetConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let fields = [
            "cluster",
            "auth_env",
            "lease",
            "timeout_ms",
            "unavailable",
            "expected_replicas",
            "retry_ms",
            "prefix",
            "tick_ms",
            "headroom_ms",
            "idle_return_ms",
        ];
        let o = Obj::new(v, at, "FleetConfig", Some(&fields))?;
        let mut x = FleetConfig::default();
        x.cluster = o.req("cluster")?;
        x.auth_env = o.or("auth_env", default_auth_env)?;
        x.lease = o.or("lease", LeaseSpec::default)?;
        x.timeout_ms = o.or("timeout_ms", default_timeout_ms)?;
        x.unavailable = o.or("unavailable", Unavailable::default)?;
        x.expected_replicas = o.or("expected_replicas", default_replicas)?;
        x.retry_ms = o.or("retry_ms", default_retry_ms)?;
        x.prefix = o.or("prefix", default_prefix)?;
        x.tick_ms = o.or("tick_ms", default_tick_ms)?;
        x.headroom_ms = o.or("headroom_ms", default_headroom_ms)?;
        x.idle_return_ms = o.or("idle_return_ms", default_idle_return_ms)?;
        Ok(x)
    }
}

impl FromConfig for LeaseSpec {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "LeaseSpec", Some(&["requests", "tokens", "usd", "slots"]))?;
        let mut x = LeaseSpec::default();
        x.requests = o.or("requests", default_lease_requests)?;
        x.tokens = o.or("tokens", default_lease_tokens)?;
        x.usd = o.or("usd", default_lease_usd)?;
        x.slots = o.or("slots", default_lease_slots)?;
        Ok(x)
    }
}

impl FromConfig for Unavailable {
    fn read(v: &Value, at: &At) -> Read<Self> {
        variant(v, at, &[("local", Unavailable::Local), ("closed", Unavailable::Closed), ("open", Unavailable::Open)])
    }
}

impl Unavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Local => "local",
            Unavailable::Closed => "closed",
            Unavailable::Open => "open",
        }
    }
}

fn default_auth_env() -> String {
    "AIGW_FLEET_AUTH".own()
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_replicas() -> u64 {
    1
}
fn default_retry_ms() -> u64 {
    1000
}
fn default_prefix() -> String {
    "aigw".own()
}
fn default_tick_ms() -> u64 {
    200
}
fn default_headroom_ms() -> u64 {
    2000
}
fn default_idle_return_ms() -> u64 {
    10_000
}
fn default_lease_slots() -> u64 {
    2
}
fn default_lease_usd() -> String {
    "0.10".own()
}
fn default_lease_requests() -> u64 {
    10
}
fn default_lease_tokens() -> u64 {
    20_000
}

/// Fleet mode, compiled.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub cluster: String,
    pub auth_env: String,
    /// `Basic …` for Webdis (from `auth_env`, read when the configuration is compiled).
    pub authorization: Option<String>,
    pub lease_requests: u64,
    pub lease_tokens: u64,
    /// A budget lease, in pico-USD.
    pub lease_pico: u64,
    /// Spare calls-in-flight slots.
    pub lease_slots: u64,
    pub timeout_ms: u64,
    pub unavailable: Unavailable,
    pub expected_replicas: u64,
    pub retry_ms: u64,
    pub prefix: String,
    pub tick_ms: u64,
    pub headroom_ms: u64,
    pub idle_return_ms: u64,
}

impl Fleet {
    pub fn compile(cfg: &FleetConfig) -> Result<Fleet, ConfigError> {
        let err = |field: &str, msg: &str| ConfigError::new("quota", format!("fleet.{field}"), msg.own());
        if cfg.cluster.is_empty() {
            return Err(err("cluster", "names the Envoy cluster of the Webdis bridge"));
        }
        if cfg.expected_replicas == 0 {
            return Err(err("expected_replicas", "must be at least 1"));
        }
        if cfg.lease.requests == 0 || cfg.lease.tokens == 0 {
            return Err(err("lease", "leases must be at least 1"));
        }
        let lease_pico = crate::audit::price::parse_usd(&cfg.lease.usd)
            .and_then(|p| u64::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| err("lease.usd", "a positive amount of USD, as a decimal string (\"0.10\")"))?;
        if cfg.lease.slots > 10_000 {
            return Err(err(
                "lease.slots",
                "at most 10000 spare slots (a replica's holding beyond its calls in flight)",
            ));
        }
        if cfg.timeout_ms == 0 || cfg.timeout_ms > 10_000 {
            return Err(err("timeout_ms", "must be 1 to 10000 ms (a call waits this long at most)"));
        }
        if !(20..=10_000).contains(&cfg.tick_ms) {
            return Err(err("tick_ms", "must be 20 to 10000 ms"));
        }
        if cfg.prefix.is_empty() || !cfg.prefix.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
            return Err(err("prefix", "letters, digits, `_` and `-` only"));
        }
        Ok(Fleet {
            cluster: cfg.cluster.own(),
            auth_env: cfg.auth_env.own(),
            authorization: None,
            lease_requests: cfg.lease.requests,
            lease_tokens: cfg.lease.tokens,
            lease_pico,
            lease_slots: cfg.lease.slots,
            timeout_ms: cfg.timeout_ms,
            unavailable: cfg.unavailable,
            expected_replicas: cfg.expected_replicas,
            retry_ms: cfg.retry_ms,
            prefix: cfg.prefix.own(),
            tick_ms: cfg.tick_ms,
            headroom_ms: cfg.headroom_ms,
            idle_return_ms: cfg.idle_return_ms,
        })
    }

    /// Webdis's credentials, from the environment (`user:password`).
    pub fn read_env(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        self.authorization =
            env(&self.auth_env).map(|v| format!("Basic {}", crate::wire::embeddings::base64(v.as_bytes())));
    }

    /// How long Redis counts a replica's calls-in-flight slots without hearing from it (its
    /// ticker renews them every tick).
    pub fn slots_ttl_ms(&self) -> u64 {
        self.tick_ms.saturating_mul(3).saturating_add(1000)
    }

    /// The Redis key of a scope's bucket (`r`: requests, `t`: tokens, `f`: calls in flight;
    /// `b`, with `d<day>`/`m<month>`: budgets).
    pub fn key(&self, scope_key: &str, bucket: char) -> String {
        format!("{}:{scope_key}:{bucket}", self.prefix)
    }

    /// Sends `GET path` to Webdis: the call's token (`None`: the proxy refused the call).
    pub fn call(&self, h: &impl Host, path: &str) -> Option<u32> {
        h.http_call(&self.cluster, &webdis_headers("GET", path, self.authorization.as_deref()), b"", self.timeout_ms)
            .ok()
    }
}

/// The headers of a call to Webdis: `method` on `path`, with the fleet's credential.
pub fn webdis_headers<'a>(method: &'a str, path: &'a str, authorization: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![(":method", method), (":path", path), (":authority", "aigw-fleet")];
    if let Some(a) = authorization {
        h.push(("authorization", a));
    }
    h
}

/// One fleet bucket a top-up asks for: its key, its refill rate (units per ms: a request or
/// token bucket's rate per minute; 0 for a budget), its capacity, what it needs and wants (all
/// in units: 60,000 a token, or one a pico-USD), and how long Redis keeps it (0: a refilling
/// bucket, until full again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub key: String,
    pub rate_per_minute: u64,
    pub cap_units: u64,
    pub need_units: u64,
    pub want_units: u64,
    pub ttl_ms: u64,
}

/// The Webdis path of `FCALL aigw_take` over `asks` (every argument percent-encoded: `/` and
/// `.` mean something to Webdis).
pub fn take_path(asks: &[Ask]) -> String {
    let mut p = format!("/FCALL/aigw_take/{}", asks.len());
    for a in asks {
        p.push('/');
        p.put(&encode(&a.key));
    }
    for a in asks {
        p.put(&format!("/{}/{}/{}/{}/{}", a.rate_per_minute, a.cap_units, a.need_units, a.want_units, a.ttl_ms));
    }
    p
}

/// The Webdis path of `FCALL aigw_give`: `(key, rate per minute, capacity, units)` per bucket
/// (all in units; refilling buckets only).
pub fn give_path(gives: &[(String, u64, u64, u64)]) -> String {
    let mut p = format!("/FCALL/aigw_give/{}", gives.len());
    for (key, ..) in gives {
        p.push('/');
        p.put(&encode(key));
    }
    for (_, rate, cap, units) in gives {
        p.put(&format!("/{rate}/{cap}/{units}/0"));
    }
    p
}

/// Reads Webdis's answer to `FCALL aigw_give` (`{"FCALL": [1]}`).
pub fn given(status: u16, body: &[u8]) -> bool {
    status == 200
        && crate::wire::from_slice::<crate::wire::tree::Value>(body).ok().and_then(|v| v.get("FCALL")?.get(0)?.as_i64())
            == Some(1)
}

/// A Redis key or argument as a Webdis path segment (`/` and `.` mean something to Webdis).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':' {
            out.push(b as char);
        } else {
            out.put(&format!("%{b:02x}"));
        }
    }
    out
}

/// What Redis answered a top-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Units granted per ask, in order, and what each bucket holds after (empty from a library
    /// that does not say).
    Granted(Vec<u64>, Vec<u64>),
    /// Ask `index` (from 0) lacks its need: enough will be there in this many ms (`None`:
    /// never, or not in this period); the bucket holds `level` units.
    Short { index: usize, retry_after_ms: Option<u64>, level: u64 },
}

/// Reads Webdis's answer to `FCALL aigw_take` (`{"FCALL": [1, g1, …]}` or `[0, i, ms]`).
/// `None`: not an answer (an error, a refusal by Webdis's ACL, Redis down): Redis is
/// unavailable, never a success.
pub fn read_answer(status: u16, body: &[u8], asks: usize) -> Option<Answer> {
    if status != 200 {
        return None;
    }
    let v: crate::wire::tree::Value = crate::wire::from_slice(body).ok()?;
    let a = v.get("FCALL")?.as_array()?;
    let n = |i: usize| a.get(i).and_then(crate::wire::tree::Value::as_i64);
    match n(0)? {
        1 if a.len() == asks + 1 || a.len() == 2 * asks + 1 => {
            let read = |from: usize| -> Option<Vec<u64>> {
                (from..from + asks).map(|i| n(i).and_then(|g| u64::try_from(g).ok())).collect()
            };
            // What is left is advisory (a budget's soft threshold): unreadable, it is unknown,
            // never a reason to take the grant as failed.
            let left = if a.len() > asks + 1 { read(asks + 1).unwrap_or_default() } else { Vec::new() };
            Some(Answer::Granted(read(1)?, left))
        }
        0 => {
            let index = usize::try_from(n(1)?).ok()?.checked_sub(1).filter(|i| *i < asks)?;
            let ms = n(2)?;
            let level = n(3).and_then(|l| u64::try_from(l).ok()).unwrap_or(0);
            Some(Answer::Short { index, retry_after_ms: u64::try_from(ms).ok(), level })
        }
        _ => None,
    }
}

/// Reads Webdis's answer to `FCALL aigw_slots` (`{"FCALL": [1, held1, …]}`): the slots held.
pub fn read_slots(status: u16, body: &[u8], keys: usize) -> Option<Vec<u64>> {
    if status != 200 {
        return None;
    }
    let v: crate::wire::tree::Value = crate::wire::from_slice(body).ok()?;
    let a = v.get("FCALL")?.as_array()?;
    if a.first()?.as_i64()? != 1 || a.len() != keys + 1 {
        return None;
    }
    a[1..].iter().map(crate::wire::tree::Value::as_u64).collect()
}

/// Units in `tokens` tokens.
pub fn units(tokens: u64) -> u64 {
    tokens.saturating_mul(UNITS_PER_TOKEN)
}

/// The shared-data key that says until when (ms, little-endian) Redis is taken as unavailable.
pub const DOWN_KEY: &str = "aigw.fleet.down";
/// The fleet buckets this replica has used (one line each: the scope's record key, `r` or
/// `t`, the Redis key, the rate per minute and the burst), for the ticker.
pub const ACTIVE_KEY: &str = "aigw.fleet.active";
/// Which worker's ticker works (its id, and until when: 8 + 8 bytes, little-endian).
pub const TICKER_KEY: &str = "aigw.fleet.ticker";
/// Hands out worker ids (a counter).
pub const WORKERS_KEY: &str = "aigw.fleet.workers";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_take_path_encodes_keys_and_puts_the_arguments_after_them() {
        let asks = [
            Ask {
                key: "aigw:t.acme:r".into(),
                rate_per_minute: 60,
                cap_units: 600_000,
                need_units: 60_000,
                want_units: 600_000,
                ttl_ms: 0,
            },
            Ask {
                key: "aigw:t.acme.f.a/b:d20000".into(),
                rate_per_minute: 0,
                cap_units: 5_000_000,
                need_units: 0,
                want_units: 7,
                ttl_ms: 90_000_000,
            },
        ];
        assert_eq!(
            take_path(&asks),
            "/FCALL/aigw_take/2/aigw:t%2eacme:r/aigw:t%2eacme%2ef%2ea%2fb:d20000/60/600000/60000/600000/0/0/5000000/0/7/90000000"
        );
    }

    #[test]
    fn answers_are_read_strictly_and_anything_else_is_unavailable() {
        assert_eq!(read_answer(200, br#"{"FCALL":[1,60000,7]}"#, 2), Some(Answer::Granted(vec![60_000, 7], vec![])));
        assert_eq!(
            read_answer(200, br#"{"FCALL":[1,60000,7,5,0]}"#, 2),
            Some(Answer::Granted(vec![60_000, 7], vec![5, 0]))
        );
        assert_eq!(read_answer(200, br#"{"FCALL":[1,60000,7,5]}"#, 2), None);
        // An unreadable level (a Redis integer that overflowed) leaves the grant good.
        assert_eq!(
            read_answer(200, br#"{"FCALL":[1,60000,7,5,-9223372036854775808]}"#, 2),
            Some(Answer::Granted(vec![60_000, 7], vec![]))
        );
        assert_eq!(
            read_answer(200, br#"{"FCALL":[0,2,995]}"#, 2),
            Some(Answer::Short { index: 1, retry_after_ms: Some(995), level: 0 })
        );
        assert_eq!(
            read_answer(200, br#"{"FCALL":[0,1,-1,42]}"#, 2),
            Some(Answer::Short { index: 0, retry_after_ms: None, level: 42 })
        );
        for (status, body) in [
            (200, &br#"{"FCALL":[false,"ERR Function not found"]}"#[..]),
            (200, br#"{"FCALL":[1,60000]}"#),
            (200, br#"{"FCALL":[0,3,5]}"#),
            (200, br#"{"FCALL":[1,-5,7]}"#),
            (403, b""),
            (503, br#"{"FCALL":[1,60000,7]}"#),
            (200, b"not json"),
        ] {
            assert_eq!(read_answer(status, body, 2), None, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_fleet_configuration_is_checked_field_by_field() {
        let c = |j: &str| {
            crate::config::from_str::<FleetConfig>(j)
                .map_err(|e| e.to_string())
                .and_then(|c| Fleet::compile(&c).map_err(|e| e.to_string()))
        };
        let f = c(r#"{"cluster": "aigw_fleet"}"#).unwrap();
        assert_eq!(
            (f.lease_requests, f.unavailable, f.expected_replicas, f.auth_env.as_str()),
            (10, Unavailable::Local, 1, "AIGW_FLEET_AUTH")
        );
        assert!(c(r#"{"cluster": "x", "expected_replicas": 0}"#).unwrap_err().contains("fleet.expected_replicas"));
        assert!(c(r#"{"cluster": "x", "unavailable": "maybe"}"#).is_err());
        assert!(c(r#"{"cluster": "x", "prefix": "a b"}"#).unwrap_err().contains("fleet.prefix"));
        assert!(c(r#"{"cluster": "x", "lease": {"slots": 10001}}"#).unwrap_err().contains("fleet.lease.slots"));
        let mut f = f;
        f.read_env(&|k| (k == "AIGW_FLEET_AUTH").then(|| "aigw:pw".to_string()));
        assert_eq!(f.authorization.as_deref(), Some("Basic YWlndzpwdw=="));
        assert_eq!(f.key("t.acme", 'r'), "aigw:t.acme:r");
    }
}
