//! `aigw-report cache-eval`: how well an embedder tells requests that share an answer from near
//! misses, threshold by threshold, before a semantic cache serves anything.
//!
//! It reads labelled prompt pairs (JSON lines: `{"a": …, "b": …, "same": true|false}`), embeds
//! every prompt through an OpenAI-compatible `POST /v1/embeddings` (the gateway, with an
//! embeddings alias and a gateway key, or any such endpoint), quantises each vector as the
//! gateway's index does, and prints, per threshold, the precision (of the pairs at or above it,
//! the share labelled the same) and the recall (of the pairs labelled the same, the share at or
//! above it). A false positive is a near miss the cache would answer with another request's
//! answer.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aigw_core::cache::semantic::{cosine, quantise};

use super::Table;

pub struct Pair {
    pub a: String,
    pub b: String,
    pub same: bool,
}

pub fn read_pairs(text: &str) -> Result<Vec<Pair>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        a: String,
        b: String,
        same: bool,
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line).map_err(|e| format!("pairs line {}: {e}", i + 1))?;
        out.push(Pair { a: l.a, b: l.b, same: l.same });
    }
    if out.is_empty() {
        return Err("no pairs".into());
    }
    Ok(out)
}

/// The thresholds the table shows.
pub fn thresholds() -> Vec<f64> {
    let mut t: Vec<f64> = (0..=19).map(|i| 0.60 + 0.02 * f64::from(i)).collect();
    t.push(0.99);
    t
}

/// The table, from each pair's similarity and label, and the highest-recall threshold whose
/// precision is 1 on this set (if any).
pub fn table(scored: &[(f64, bool)]) -> (Table, Option<(f64, f64)>) {
    let positives = scored.iter().filter(|(_, same)| *same).count();
    let mut rows = Vec::new();
    let mut best: Option<(f64, f64)> = None;
    for t in thresholds() {
        let at = |want: bool| scored.iter().filter(|(s, same)| *s >= t - 1e-9 && *same == want).count();
        let (tp, fp) = (at(true), at(false));
        let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
        let recall = if positives == 0 { 0.0 } else { tp as f64 / positives as f64 };
        if fp == 0 && tp > 0 && best.is_none_or(|(_, r)| recall > r) {
            best = Some((t, recall));
        }
        rows.push(vec![
            format!("{t:.2}"),
            (tp + fp).to_string(),
            format!("{precision:.3}"),
            format!("{recall:.3}"),
            fp.to_string(),
        ]);
    }
    let header = ["threshold", "pairs at or above", "precision", "recall", "near misses served"];
    (Table { header: header.iter().map(|s| s.to_string()).collect(), rows }, best)
}

/// Embeds `texts` at `url` (`http://host:port`), in batches, as quantised vectors.
pub fn embed(url: &str, key: &str, model: &str, texts: &[String]) -> Result<Vec<Vec<i8>>, String> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(64) {
        let body = serde_json::json!({"model": model, "input": batch, "encoding_format": "float"}).to_string();
        let answer = post(url, "/v1/embeddings", key, &body)?;
        #[derive(serde::Deserialize)]
        struct Answer {
            data: Vec<Item>,
        }
        #[derive(serde::Deserialize)]
        struct Item {
            index: usize,
            embedding: Vec<f64>,
        }
        let mut a: Answer = serde_json::from_slice(&answer)
            .map_err(|e| format!("the embedder's answer: {e}: {}", String::from_utf8_lossy(&answer)))?;
        a.data.sort_by_key(|d| d.index);
        if a.data.len() != batch.len() {
            return Err(format!("asked for {} vectors, got {}", batch.len(), a.data.len()));
        }
        out.extend(a.data.iter().map(|d| quantise(&d.embedding)));
    }
    Ok(out)
}

/// One `POST` over plain HTTP/1.1; the body of a 200, else an error with the answer.
fn post(url: &str, path: &str, key: &str, body: &str) -> Result<Vec<u8>, String> {
    let host = url.strip_prefix("http://").ok_or("--url must be http://HOST:PORT (plain HTTP)")?.trim_end_matches('/');
    let mut s = TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| e.to_string())?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    if status != 200 {
        return Err(format!("the embedder answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n").ok_or("a chunk without its size")?;
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..line]).split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("a chunk size: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let start = line + 2;
        out.extend_from_slice(b.get(start..start + size).ok_or("a chunk cut short")?);
        b = b.get(start + size + 2..).ok_or("a chunk cut short")?;
    }
}

/// The whole command: embed, score, print.
pub fn run(pairs: &[Pair], url: &str, key: &str, model: &str, out: &mut dyn Write) -> Result<(), String> {
    let mut texts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in pairs {
        for t in [&p.a, &p.b] {
            let n = texts.len();
            texts.entry(t.as_str()).or_insert(n);
        }
    }
    let mut ordered = vec![String::new(); texts.len()];
    for (t, i) in &texts {
        ordered[*i] = (*t).to_string();
    }
    let vectors = embed(url, key, model, &ordered)?;
    let scored: Vec<(f64, bool)> =
        pairs.iter().map(|p| (cosine(&vectors[texts[p.a.as_str()]], &vectors[texts[p.b.as_str()]]), p.same)).collect();
    let (table, best) = table(&scored);
    let same = pairs.iter().filter(|p| p.same).count();
    writeln!(
        out,
        "{} pairs ({same} same answer, {} near misses), embedded by `{model}`\n",
        pairs.len(),
        pairs.len() - same
    )
    .map_err(|e| e.to_string())?;
    write!(out, "{}", table.render()).map_err(|e| e.to_string())?;
    match best {
        Some((t, r)) => writeln!(out, "no near miss served from {t:.2} up; recall there {r:.3}"),
        None => {
            writeln!(out, "every threshold serves a near miss: do not turn the semantic cache on with this embedder")
        }
    }
    .map_err(|e| e.to_string())
}
