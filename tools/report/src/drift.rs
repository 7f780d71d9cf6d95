//! `aigw-report drift --baseline FROM..TO --current FROM..TO FILE...`: what moved, per provider
//! and concrete model, between two periods of the audit log. Each signal has its own test:
//! rates a two-proportion z-test (errors by class among attempts; among answers, each
//! finish reason's share (the mix: length truncations, content filter, ...), refusals and
//! answers with tool calls; among answers to calls that asked for JSON, the valid ones);
//! distributions (attempt latency, time to first token, input and output tokens) the
//! Mann-Whitney U test (normal approximation, ties corrected; p50 and p95 shown). Only what moved at p < 0.001 (|z| > 3.29: several signals are tested at once) is
//! printed, with its effect and the sample counts; a signal with fewer than `MIN_SAMPLES` on a
//! side is reported as too little data to tell.

use std::collections::BTreeMap;

use aigw_core::audit::AuditRecord;

use crate::Table;

/// Below this many samples on either side, a signal is not tested.
pub const MIN_SAMPLES: usize = 30;
/// |z| for p < 0.001, two-sided.
const Z: f64 = 3.29;

/// A time range `[from, to)` in ms, from `FROM..TO` (UTC dates or times, or ms since the epoch).
pub fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or(format!("{s:?}: a period is FROM..TO"))?;
    let t = |x: &str| {
        x.parse::<u64>().ok().or_else(|| aigw_core::time::parse_utc_ms(x)).ok_or(format!("{x:?} is not a UTC time"))
    };
    let (from, to) = (t(a)?, t(b)?);
    if to <= from {
        return Err(format!("{s:?}: the period ends before it starts"));
    }
    Ok((from, to))
}

#[derive(Default)]
struct Samples {
    attempts: u64,
    errors: BTreeMap<String, u64>,
    latency: Vec<f64>,
    ttft: Vec<f64>,
    input: Vec<f64>,
    output: Vec<f64>,
    /// Answers the caller got (the audit record's `answer`), and of them: by finish reason,
    /// refusals, with tool calls.
    answers: u64,
    finish: BTreeMap<String, u64>,
    refusals: u64,
    tool_calls: u64,
    /// Answers to calls that asked for JSON (an attempt's invalid answer, retried, counts for
    /// its own provider and model), and the valid ones.
    json_asked: u64,
    json_valid: u64,
}

fn collect(records: &[AuditRecord], (from, to): (u64, u64)) -> BTreeMap<(String, String), Samples> {
    let mut by: BTreeMap<(String, String), Samples> = BTreeMap::new();
    for r in records.iter().filter(|r| r.start_time_ms >= from && r.start_time_ms < to) {
        for a in &r.attempts {
            // An attempt cancelled because the caller left is neither a success nor a failure.
            if a.error_class.is_none() && a.status.is_none() {
                continue;
            }
            let s = by.entry((a.provider.clone(), a.model.clone().unwrap_or_default())).or_default();
            s.attempts += 1;
            if let Some(c) = a.error_class {
                *s.errors.entry(c.as_str().to_string()).or_default() += 1;
            }
            if let Some(l) = a.latency_ms {
                s.latency.push(l as f64);
            }
            if a.error_class == Some(aigw_core::audit::ErrorClass::InvalidOutput) {
                s.json_asked += 1;
            }
        }
        if let (Some(p), Some(m), Some(ans)) = (&r.provider, &r.model, &r.answer) {
            let s = by.entry((p.clone(), m.clone())).or_default();
            s.answers += 1;
            let finish = ans.finish_reason.map_or("none", |f| f.as_str());
            *s.finish.entry(finish.to_string()).or_default() += 1;
            s.refusals += u64::from(ans.refusal);
            s.tool_calls += u64::from(ans.tool_calls > 0);
            if let Some(v) = ans.json_valid {
                s.json_asked += 1;
                s.json_valid += u64::from(v);
            }
        }
        if let (Some(p), Some(m), Some(t)) = (&r.provider, &r.model, &r.tokens) {
            if r.status == Some(200) {
                let s = by.entry((p.clone(), m.clone())).or_default();
                s.input.push(t.input as f64);
                s.output.push(t.output as f64);
                if let Some(f) = r.ttft_ms {
                    s.ttft.push(f as f64);
                }
            }
        }
    }
    by
}

/// The two-proportion z statistic of `x1/n1` against `x2/n2`.
fn two_proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (x1 + x2) as f64 / (n1f + n2f);
    let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se == 0.0 {
        return 0.0;
    }
    (x2 as f64 / n2f - x1 as f64 / n1f) / se
}

/// The Mann-Whitney U test's z (positive: `b` tends larger than `a`), ties corrected.
fn mann_whitney(a: &[f64], b: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = a.iter().map(|x| (*x, false)).chain(b.iter().map(|x| (*x, true))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let n = n1 + n2;
    let mut rank_b = 0.0;
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        ties += t * t * t - t;
        rank_b += all[i..=j].iter().filter(|x| x.1).count() as f64 * rank;
        i = j + 1;
    }
    let u = rank_b - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if var <= 0.0 {
        return 0.0;
    }
    (u - mean) / var.sqrt()
}

/// The `q` quantile (linear interpolation between closest ranks).
pub(crate) fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return 0.0;
    }
    let at = q * (s.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (at - lo as f64)
}

pub fn drift(records: &[AuditRecord], baseline: (u64, u64), current: (u64, u64)) -> Table {
    let (b, c) = (collect(records, baseline), collect(records, current));
    let header = ["provider", "model", "signal", "baseline", "current", "effect", "z"].map(String::from).to_vec();
    let mut rows = Vec::new();
    let keys: std::collections::BTreeSet<&(String, String)> = b.keys().chain(c.keys()).collect();
    let empty = Samples::default();
    for key in keys {
        let (sb, sc) = (b.get(key).unwrap_or(&empty), c.get(key).unwrap_or(&empty));
        let mut row = |signal: String, base: String, cur: String, effect: String, z: Option<f64>| {
            rows.push(vec![
                key.0.clone(),
                key.1.clone(),
                signal,
                base,
                cur,
                effect,
                z.map_or("-".into(), |z| format!("{z:.1}")),
            ])
        };
        let few = |n1: usize, n2: usize| n1 < MIN_SAMPLES || n2 < MIN_SAMPLES;
        // Rates: (signal, x and n of the baseline, x and n of the current period).
        let mut rates: Vec<(String, u64, u64, u64, u64)> = Vec::new();
        let classes: std::collections::BTreeSet<&String> = sb.errors.keys().chain(sc.errors.keys()).collect();
        for class in classes {
            let (x1, x2) = (sb.errors.get(class).copied().unwrap_or(0), sc.errors.get(class).copied().unwrap_or(0));
            rates.push((format!("error rate: {class}"), x1, sb.attempts, x2, sc.attempts));
        }
        let finishes: std::collections::BTreeSet<&String> = sb.finish.keys().chain(sc.finish.keys()).collect();
        for f in finishes {
            let (x1, x2) = (sb.finish.get(f).copied().unwrap_or(0), sc.finish.get(f).copied().unwrap_or(0));
            rates.push((format!("finish reason: {f}"), x1, sb.answers, x2, sc.answers));
        }
        if sb.answers + sc.answers > 0 {
            rates.push(("refusal rate".into(), sb.refusals, sb.answers, sc.refusals, sc.answers));
            rates.push(("tool-call rate".into(), sb.tool_calls, sb.answers, sc.tool_calls, sc.answers));
        }
        if sb.json_asked + sc.json_asked > 0 {
            rates.push(("JSON validity".into(), sb.json_valid, sb.json_asked, sc.json_valid, sc.json_asked));
        }
        for (name, x1, n1, x2, n2) in rates {
            if few(n1 as usize, n2 as usize) {
                row(name, format!("n={n1}"), format!("n={n2}"), "too little data to tell".into(), None);
                continue;
            }
            let z = two_proportions(x1, n1, x2, n2);
            if z.abs() > Z {
                let (p1, p2) = (x1 as f64 / n1 as f64, x2 as f64 / n2 as f64);
                row(
                    name,
                    format!("{:.1}% of {n1}", 100.0 * p1),
                    format!("{:.1}% of {n2}", 100.0 * p2),
                    format!("{:+.1} points", 100.0 * (p2 - p1)),
                    Some(z),
                );
            }
        }
        for (name, x, y, unit) in [
            ("latency p50", &sb.latency, &sc.latency, " ms"),
            ("time to first token p50", &sb.ttft, &sc.ttft, " ms"),
            ("input tokens p50", &sb.input, &sc.input, ""),
            ("output tokens p50", &sb.output, &sc.output, ""),
        ] {
            if x.is_empty() && y.is_empty() {
                continue;
            }
            if few(x.len(), y.len()) {
                row(
                    name.into(),
                    format!("n={}", x.len()),
                    format!("n={}", y.len()),
                    "too little data to tell".into(),
                    None,
                );
                continue;
            }
            let z = mann_whitney(x, y);
            if z.abs() > Z {
                let (m1, m2) = (quantile(x, 0.5), quantile(y, 0.5));
                let (q1, q2) = (quantile(x, 0.95), quantile(y, 0.95));
                let ratio = if m1 > 0.0 { format!(" ({:.2}x)", m2 / m1) } else { String::new() };
                row(
                    format!("{name}/p95"),
                    format!("{m1:.0}{unit} (p95 {q1:.0}) of {}", x.len()),
                    format!("{m2:.0}{unit} (p95 {q2:.0}) of {}", y.len()),
                    format!("p50 {:+.0}{unit}{ratio}, p95 {:+.0}{unit}", m2 - m1, q2 - q1),
                    Some(z),
                );
            }
        }
    }
    Table { header, rows }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_flag_a_real_shift_and_not_noise() {
        let a: Vec<f64> = (0..200).map(|i| 100.0 + (i % 17) as f64).collect();
        let same: Vec<f64> = (0..200).map(|i| 101.0 + (i % 17) as f64 - 1.0).collect();
        let slower: Vec<f64> = (0..200).map(|i| 130.0 + (i % 17) as f64).collect();
        assert!(mann_whitney(&a, &same).abs() < 1.0);
        assert!(mann_whitney(&a, &slower) > 10.0);
        assert!(mann_whitney(&slower, &a) < -10.0);
        assert!(two_proportions(5, 1000, 6, 1000).abs() < 1.0);
        assert!(two_proportions(5, 1000, 60, 1000) > 6.0);
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), 2.5);
        assert_eq!(quantile(&(1..=100).map(f64::from).collect::<Vec<_>>(), 0.95), 95.05);
        assert_eq!(parse_range("2026-11-01..2026-11-08").map(|(a, b)| b - a), Ok(7 * 86_400_000));
        assert!(parse_range("2026-11-08..2026-11-01").is_err());
    }
}
