//! `aigw-report shadow [--period FROM..TO] [--json] FILE...`: each shadowed alias against its
//! candidate, over the primary calls that started in the period. A primary call and its leg are
//! paired by the leg's `shadow_of`. Per side: calls, answered (`ok`), latency p50/p95, tokens,
//! cost, error and refusal rates, finish reasons, JSON validity; per pair: the output-length
//! ratio (candidate / primary, characters; non-streamed primaries) and the exact-match rate
//! (the answers' digests equal). Legs the shadow budget stopped are counted as skipped.

use std::collections::{BTreeMap, HashMap};

use aigw_core::audit::{AuditRecord, Outcome};
use serde_json::{json, Value};

use crate::Table;

#[derive(Default)]
struct Side {
    calls: u64,
    ok: u64,
    errors: u64,
    refusals: u64,
    answers: u64,
    json_asked: u64,
    json_valid: u64,
    latency: Vec<f64>,
    input: u64,
    output: u64,
    cost_pico: u128,
    finish: BTreeMap<String, u64>,
}

impl Side {
    fn add(&mut self, r: &AuditRecord) {
        self.calls += 1;
        if r.outcome == Outcome::Ok {
            self.ok += 1;
            self.latency.push(r.latency_ms as f64);
        } else if !matches!(r.outcome, Outcome::RefusedAuth | Outcome::RefusedQuota | Outcome::ClientAborted) {
            self.errors += 1;
        }
        if let Some(t) = &r.tokens {
            self.input += t.input;
            self.output += t.output;
        }
        if let Some(c) = r.cost_usd.as_deref().and_then(aigw_core::audit::price::parse_usd) {
            self.cost_pico += c;
        }
        if let Some(a) = &r.answer {
            self.answers += 1;
            self.refusals += u64::from(a.refusal);
            *self.finish.entry(a.finish_reason.map_or("none", |f| f.as_str()).to_string()).or_default() += 1;
            if let Some(v) = a.json_valid {
                self.json_asked += 1;
                self.json_valid += u64::from(v);
            }
        }
    }

    fn json(&self) -> Value {
        let rate = |x: u64, n: u64| if n == 0 { Value::Null } else { json!(x as f64 / n as f64) };
        json!({
            "calls": self.calls,
            "ok": self.ok,
            "latency_p50_ms": quantile(&self.latency, 0.5),
            "latency_p95_ms": quantile(&self.latency, 0.95),
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cost_usd": self.cost_pico as f64 / 1e12,
            "error_rate": rate(self.errors, self.calls),
            "refusal_rate": rate(self.refusals, self.answers),
            "json_validity": rate(self.json_valid, self.json_asked),
            "finish_reasons": self.finish,
        })
    }
}

/// The drift report's quantile; null when there is no sample.
fn quantile(v: &[f64], q: f64) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    json!(crate::drift::quantile(v, q))
}

#[derive(Default)]
struct Pairing {
    pairs: u64,
    skipped: u64,
    primary: Side,
    candidate: Side,
    /// Pairs where both answers have a digest (non-streamed), and of them those equal.
    compared: u64,
    exact: u64,
    /// Sums of characters over the pairs with both lengths known.
    primary_chars: u64,
    candidate_chars: u64,
}

/// One row per (primary alias, candidate alias), as JSON objects.
pub fn compare(records: &[AuditRecord], period: Option<(u64, u64)>) -> Vec<Value> {
    let primaries: HashMap<&str, &AuditRecord> = records
        .iter()
        .filter(|r| r.shadow_of.is_none())
        .filter(|r| period.is_none_or(|(from, to)| r.start_time_ms >= from && r.start_time_ms < to))
        .map(|r| (r.request_id.as_str(), r))
        .collect();
    let mut by: BTreeMap<(String, String), Pairing> = BTreeMap::new();
    for leg in records {
        let Some(p) = leg.shadow_of.as_deref().and_then(|id| primaries.get(id)) else { continue };
        let key = (p.alias.clone().unwrap_or_default(), leg.alias.clone().unwrap_or_default());
        let e = by.entry(key).or_default();
        e.pairs += 1;
        if leg.outcome == Outcome::RefusedQuota {
            e.skipped += 1;
            continue;
        }
        e.primary.add(p);
        e.candidate.add(leg);
        let (pa, ca) = (p.answer.as_ref(), leg.answer.as_ref());
        if let (Some(d1), Some(d2)) =
            (pa.and_then(|a| a.output_digest.as_ref()), ca.and_then(|a| a.output_digest.as_ref()))
        {
            e.compared += 1;
            e.exact += u64::from(d1 == d2);
        }
        if let (Some(c1), Some(c2)) = (pa.and_then(|a| a.output_chars), ca.and_then(|a| a.output_chars)) {
            e.primary_chars += c1;
            e.candidate_chars += c2;
        }
    }
    by.into_iter()
        .map(|((primary, candidate), e)| {
            json!({
                "primary_alias": primary,
                "candidate_alias": candidate,
                "pairs": e.pairs,
                "legs_skipped": e.skipped,
                "primary": e.primary.json(),
                "candidate": e.candidate.json(),
                "exact_match_rate": if e.compared == 0 { Value::Null } else { json!(e.exact as f64 / e.compared as f64) },
                "pairs_compared": e.compared,
                "output_length_ratio": if e.primary_chars == 0 { Value::Null } else {
                    json!(e.candidate_chars as f64 / e.primary_chars as f64)
                },
            })
        })
        .collect()
}

/// The comparison as a table: one row per figure, primary against candidate.
pub fn table(rows: &[Value]) -> Table {
    let header = ["primary", "candidate", "figure", "primary side", "candidate side"].map(String::from).to_vec();
    let mut out = Vec::new();
    let pct = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x));
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.0}"));
    for r in rows {
        let (p, c) = (&r["primary"], &r["candidate"]);
        let (pa, ca) = (r["primary_alias"].as_str().unwrap_or(""), r["candidate_alias"].as_str().unwrap_or(""));
        let mut row = |figure: &str, a: String, b: String| {
            out.push(vec![pa.to_string(), ca.to_string(), figure.to_string(), a, b]);
        };
        row("pairs (legs skipped by the shadow budget)", r["pairs"].to_string(), r["legs_skipped"].to_string());
        row("answered", p["ok"].to_string(), c["ok"].to_string());
        row("latency p50 ms", num(&p["latency_p50_ms"]), num(&c["latency_p50_ms"]));
        row("latency p95 ms", num(&p["latency_p95_ms"]), num(&c["latency_p95_ms"]));
        row(
            "input / output tokens",
            format!("{} / {}", p["input_tokens"], p["output_tokens"]),
            format!("{} / {}", c["input_tokens"], c["output_tokens"]),
        );
        row(
            "cost USD",
            format!("{:.6}", p["cost_usd"].as_f64().unwrap_or(0.0)),
            format!("{:.6}", c["cost_usd"].as_f64().unwrap_or(0.0)),
        );
        row("error rate", pct(&p["error_rate"]), pct(&c["error_rate"]));
        row("refusal rate", pct(&p["refusal_rate"]), pct(&c["refusal_rate"]));
        row("JSON validity", pct(&p["json_validity"]), pct(&c["json_validity"]));
        row("finish reasons", p["finish_reasons"].to_string(), c["finish_reasons"].to_string());
        row(
            "output length (candidate / primary)",
            "1.00".into(),
            r["output_length_ratio"].as_f64().map_or("-".to_string(), |x| format!("{x:.2}")),
        );
        row("exact match (pairs compared)", r["pairs_compared"].to_string(), pct(&r["exact_match_rate"]));
    }
    Table { header, rows: out }
}
