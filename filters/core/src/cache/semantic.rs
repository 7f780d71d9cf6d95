//! The semantic cache: a request is embedded (its last user message, by an embeddings alias the
//! gateway itself serves, called through Envoy), and the nearest request stored in its
//! partition (the rest of the request: system prompt, earlier turns, parameters, tenant, alias
//! and route) answers it when their cosine similarity reaches the policy's threshold.
//!
//! The index is bounded like the exact store: `index_slots` shared-data keys
//! (`aigw.semidx.<n>`, the partition's digest modulo their number), each holding up to
//! `index_entries` vectors of one partition, quantised to one signed byte per dimension; a new
//! partition in a slot replaces the old one, and a full slot drops its oldest vector. A vector
//! points at its request's entry in the exact store, which is what is served.

use super::Digest32;
use crate::error::ConfigError;
use crate::host::Host;
use crate::text::{PutBytes, Text};
use crate::wire::obj;

/// The semantic cache's configuration (the store's `semantic`).
#[derive(Debug, Clone, Default)]
pub struct SemanticConfig {
    /// The embeddings alias that embeds requests (served by this gateway).
    pub alias: String,
    /// The environment variable holding the gateway key the embedding calls present (they
    /// are calls of their own: authenticated, charged and audited as the key's).
    pub key_env: String,
    /// The Envoy cluster that reaches this gateway's own listener.
    pub cluster: String,
    /// The `:authority` of the embedding calls.
    pub authority: String,
    /// `dimensions` asked of the embedder (fewer bytes per indexed vector), if set.
    pub dimensions: Option<u32>,
    pub index_slots: u32,
    pub index_entries: u32,
    /// How long a call waits for its embedding before it goes on uncached.
    pub timeout_ms: u64,
}

/// The cluster that reaches this gateway's own listener (the demo's `aigw_self`): the semantic
/// cache's embedding calls and shadow legs go through it.
pub(crate) fn default_cluster() -> String {
    "aigw_self".own()
}
fn default_authority() -> String {
    "aigw-cache".own()
}
fn default_index_slots() -> u32 {
    64
}
fn default_index_entries() -> u32 {
    32
}
fn default_timeout_ms() -> u64 {
    2000
}

/// The compiled semantic cache.
#[derive(Debug, Clone)]
pub struct Semantic {
    pub alias: String,
    pub key: String,
    pub cluster: String,
    pub authority: String,
    pub dimensions: Option<u32>,
    pub index_slots: u32,
    pub index_entries: usize,
    pub timeout_ms: u64,
}

impl Semantic {
    pub fn compile(cfg: &SemanticConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Semantic, ConfigError> {
        let refused =
            |field: &str, problem: String| ConfigError::new("route-select", format!("cache.semantic.{field}"), problem);
        let Some(key) = env(&cfg.key_env).filter(|k| !k.is_empty()) else {
            return Err(refused(
                "key_env",
                format!("the environment has no {:?} (the embedder's gateway key)", cfg.key_env),
            ));
        };
        if !(1..=4096).contains(&cfg.index_slots) {
            return Err(refused("index_slots", "must be 1 to 4096".own()));
        }
        if !(1..=256).contains(&cfg.index_entries) {
            return Err(refused("index_entries", "must be 1 to 256".own()));
        }
        Ok(Semantic {
            alias: cfg.alias.own(),
            key,
            cluster: cfg.cluster.own(),
            authority: cfg.authority.own(),
            dimensions: cfg.dimensions,
            index_slots: cfg.index_slots,
            index_entries: cfg.index_entries as usize,
            timeout_ms: cfg.timeout_ms,
        })
    }

    /// The embedding call for `text`: its headers and body.
    pub fn request(&self, text: &str, request_id: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let mut body = obj! {"model" => self.alias, "input" => text, "encoding_format" => "float"};
        if let Some(d) = self.dimensions {
            body["dimensions"] = d.into();
        }
        let body = crate::wire::write::to_vec(&body);
        let headers = vec![
            (":method", "POST".own()),
            (":path", crate::wire::embeddings::PATH.own()),
            (":authority", self.authority.own()),
            ("content-type", "application/json".own()),
            ("authorization", format!("Bearer {}", self.key)),
            ("x-request-id", format!("{request_id}-cache-embed")),
            ("content-length", crate::headers::decimal(body.len() as u64)),
        ];
        (headers, body)
    }

    fn slot_key(&self, partition: &Digest32) -> String {
        let n = u64::from_le_bytes([
            partition[0],
            partition[1],
            partition[2],
            partition[3],
            partition[4],
            partition[5],
            partition[6],
            partition[7],
        ]);
        format!("aigw.semidx.{}", n % u64::from(self.index_slots))
    }

    /// The nearest vector of `partition` to `v`: its similarity and the exact key it points at.
    pub fn nearest(&self, h: &impl Host, partition: &Digest32, v: &[i8]) -> Option<(f64, Digest32)> {
        let Ok((Some(bytes), _)) = h.shared_get(&self.slot_key(partition)) else { return None };
        let index = Index::decode(&bytes).filter(|i| &i.partition == partition)?;
        index
            .entries
            .iter()
            .filter(|(_, e)| e.len() == v.len())
            .map(|(d, e)| (cosine(v, e), *d))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Adds a vector (pointing at `exact`) to its partition's index.
    pub fn insert(&self, h: &impl Host, partition: &Digest32, exact: &Digest32, v: Vec<i8>) {
        let key = self.slot_key(partition);
        // A few tries: another worker may write the same slot at the same time.
        for _ in 0..4 {
            let (old, cas) = match h.shared_get(&key) {
                Ok((bytes, cas)) => (bytes.and_then(|b| Index::decode(&b)), cas),
                Err(()) => return,
            };
            let mut index = old
                .filter(|i| &i.partition == partition)
                .unwrap_or_else(|| Index { partition: *partition, entries: Vec::new() });
            index.entries.retain(|(d, _)| d != exact);
            index.entries.push((*exact, v.clone()));
            if index.entries.len() > self.index_entries {
                let drop = index.entries.len() - self.index_entries;
                index.entries.drain(..drop);
            }
            if h.shared_set(&key, &index.encode(), cas).is_ok() {
                return;
            }
        }
    }
}

/// What the semantic lookup found, for the audit record (`cache_semantic`): the similarity of
/// the nearest stored request of the partition (none: the partition has none), the request id
/// of the entry it would serve (at or above the threshold, and still fresh), and whether it did.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize))]
pub struct SemanticNote {
    pub similarity: Option<f64>,
    pub would_serve: Option<String>,
    pub served: bool,
}
crate::wire::object::json_object!(SemanticNote {
    similarity: "similarity" [],
    would_serve: "would_serve" [],
    served: "served" [required],
});

/// An embeddings answer's first vector (OpenAI's format, floats), quantised.
pub fn vector_of(answer: &[u8]) -> Option<Vec<i8>> {
    struct Answer {
        data: Vec<Item>,
    }
    crate::wire::object::from_object!(Answer { data: "data"[required] });
    struct Item {
        embedding: Vec<f64>,
    }
    crate::wire::object::from_object!(Item { embedding: "embedding"[required] });
    let a: Answer = crate::wire::from_slice(answer).ok()?;
    let v = a.data.into_iter().next()?.embedding;
    (!v.is_empty()).then(|| quantise(&v))
}

/// One signed byte per dimension, scaled by the vector's largest magnitude (cosine does not
/// care about scale).
pub fn quantise(v: &[f64]) -> Vec<i8> {
    let max = v.iter().fold(0f64, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return vec![0; v.len()];
    }
    v.iter().map(|x| (x / max * 127.0).round().clamp(-127.0, 127.0) as i8).collect()
}

/// The cosine similarity of two quantised vectors (0 when either is all zero).
pub fn cosine(a: &[i8], b: &[i8]) -> f64 {
    let (mut dot, mut na, mut nb) = (0i64, 0i64, 0i64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (i64::from(*x), i64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0 || nb == 0 {
        return 0.0;
    }
    dot as f64 / ((na as f64).sqrt() * (nb as f64).sqrt())
}

/// One index slot: a partition and its vectors, oldest first.
#[derive(Debug, Clone, PartialEq)]
struct Index {
    partition: Digest32,
    entries: Vec<(Digest32, Vec<i8>)>,
}

const MAGIC: &[u8; 4] = b"AGS1";

impl Index {
    /// `AGS1`, the partition, then per entry: the exact key, the dimensions (u16), the vector.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put(MAGIC);
        out.put(&self.partition);
        for (d, v) in &self.entries {
            out.put(d);
            out.put(&(v.len() as u16).to_le_bytes());
            out.extend(v.iter().map(|x| *x as u8));
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Index> {
        if b.get(..4)? != MAGIC {
            return None;
        }
        let partition: Digest32 = b.get(4..36)?.try_into().ok()?;
        let mut entries = Vec::new();
        let mut at = 36;
        while at < b.len() {
            let d: Digest32 = b.get(at..at + 32)?.try_into().ok()?;
            let n = u16::from_le_bytes(b.get(at + 32..at + 34)?.try_into().ok()?) as usize;
            let v = b.get(at + 34..at + 34 + n)?.iter().map(|x| *x as i8).collect();
            entries.push((d, v));
            at += 34 + n;
        }
        Some(Index { partition, entries })
    }
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for SemanticConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "SemanticConfig",
            Some(&[
                "alias",
                "key_env",
                "cluster",
                "authority",
                "dimensions",
                "index_slots",
                "index_entries",
                "timeout_ms",
            ]),
        )?;
        let mut x = SemanticConfig::default();
        x.alias = o.req("alias")?;
        x.key_env = o.req("key_env")?;
        x.cluster = o.or("cluster", default_cluster)?;
        x.authority = o.or("authority", default_authority)?;
        x.dimensions = o.opt("dimensions")?;
        x.index_slots = o.or("index_slots", default_index_slots)?;
        x.index_entries = o.or("index_entries", default_index_entries)?;
        x.timeout_ms = o.or("timeout_ms", default_timeout_ms)?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::FakeHost;

    fn semantic(slots: u32, entries: u32) -> Semantic {
        let cfg: SemanticConfig = crate::config::from_value(crate::json!({
            "alias": "embed-cache", "key_env": "K", "index_slots": slots, "index_entries": entries}))
        .unwrap();
        Semantic::compile(&cfg, &|_| Some("aigw_sk".into())).unwrap()
    }

    #[test]
    fn quantised_cosine_keeps_the_order_of_similarity() {
        let a = quantise(&[0.1, 0.2, 0.3, -0.4]);
        let b = quantise(&[0.11, 0.19, 0.31, -0.39]);
        let c = quantise(&[-0.3, 0.1, 0.0, 0.2]);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-9);
        assert!(cosine(&a, &b) > 0.99 && cosine(&a, &c) < 0.0);
        assert_eq!(cosine(&a, &quantise(&[0.0; 4])), 0.0);
        assert_eq!(vector_of(br#"{"data":[{"embedding":[0.5,-1.0]}]}"#), Some(vec![64, -127]));
        assert!(vector_of(b"{}").is_none() && vector_of(br#"{"data":[]}"#).is_none());
    }

    #[test]
    fn the_index_finds_the_nearest_in_its_partition_and_stays_bounded() {
        let s = semantic(2, 3);
        let h = FakeHost::new();
        let p = [1u8; 32];
        for i in 0..5u8 {
            s.insert(&h, &p, &[i; 32], vec![i as i8 + 1, 10, 0]);
        }
        // Three kept, the oldest dropped.
        let (sim, d) = s.nearest(&h, &p, &[5, 10, 0]).unwrap();
        assert_eq!(d, [4; 32]);
        assert!((sim - 1.0).abs() < 1e-9);
        assert_eq!(s.nearest(&h, &p, &[1, 10, 0]).map(|(_, d)| d), Some([2; 32]), "entry 0 was dropped");
        // Another partition: nothing, even in the same slot; its first insert replaces the slot.
        let mut q = p;
        q[31] = 9;
        assert_eq!(s.slot_key(&q), s.slot_key(&p));
        assert!(s.nearest(&h, &q, &[5, 10, 0]).is_none());
        s.insert(&h, &q, &[7; 32], vec![1, 1, 1]);
        assert!(s.nearest(&h, &p, &[5, 10, 0]).is_none());
        let bytes: usize =
            h.shared.borrow().iter().filter(|(k, _)| k.starts_with("aigw.semidx.")).map(|(_, (v, _))| v.len()).sum();
        assert!(bytes <= 2 * (36 + 3 * (34 + 3)), "{bytes}");
        // Garbage in a slot is no index.
        assert!(Index::decode(b"AGS1short").is_none());
    }

    #[test]
    fn the_embedder_is_configured_by_field() {
        let cfg: SemanticConfig = crate::config::from_value(crate::json!({"alias": "e", "key_env": "K"})).unwrap();
        let e = Semantic::compile(&cfg, &|_| None).unwrap_err().to_string();
        assert!(e.contains("cache.semantic.key_env"), "{e}");
        let s = Semantic::compile(&cfg, &|_| Some("aigw_sk_x".into())).unwrap();
        let (headers, body) = s.request("hi", "rid");
        assert!(headers.contains(&("authorization", "Bearer aigw_sk_x".to_string())));
        assert!(headers.contains(&(":path", "/v1/embeddings".to_string())));
        let b: crate::wire::tree::Value = crate::wire::from_slice(&body).unwrap();
        assert_eq!(b, crate::json!({"model": "e", "input": "hi", "encoding_format": "float"}));
    }
}
