//! `aigw-report`: questions finance and compliance ask, answered from the audit log.
//!
//! ```text
//! aigw-report spend     [--by tenant,feature,model,provider,alias] [--period day|month|all] FILE...
//! aigw-report providers FILE...
//! aigw-report privacy   --zones envoy/privacy-zones.json FILE...
//! aigw-report drift     --baseline FROM..TO --current FROM..TO FILE...   (what moved; see `drift`)
//! aigw-report shadow    [--period FROM..TO] [--json] FILE...   (primary against candidate; see `shadow`)
//! aigw-report cache-eval --pairs PAIRS.jsonl --url http://HOST:PORT --model ALIAS [--key-env VAR]
//! ```
//! aigw-report injection-eval --prompts PROMPTS.jsonl   (the prompt-injection rules' precision and recall)
//! `cache-eval` embeds labelled prompt pairs through an embeddings endpoint and prints the
//! semantic cache's precision and recall per threshold (see `cache_eval`).
//! FILE is an audit log (one JSON record per line; `-` reads standard input). Lines that are not
//! audit records (for example `-` lines from a listener without audit-emit) are skipped and
//! counted on standard error. Output is a Markdown table and a closing `N rows` line.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use aigw_core::audit::price::{format_usd, parse_usd};
use aigw_core::audit::AuditRecord;
use aigw_core::time::civil_from_days;

mod cache_eval;
mod drift;
mod injection_eval;
mod shadow;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args, &mut io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aigw-report: {e}");
            ExitCode::from(2)
        }
    }
}

const USAGE: &str = "usage: aigw-report spend [--by FIELDS] [--period day|month|all] FILE...\n       aigw-report providers FILE...\n       aigw-report privacy --zones ZONES.json FILE...\n       aigw-report drift --baseline FROM..TO --current FROM..TO FILE...\n       aigw-report shadow [--period FROM..TO] [--json] FILE...\n       aigw-report cache-eval --pairs PAIRS.jsonl --url http://HOST:PORT --model ALIAS [--key-env VAR]\n       aigw-report injection-eval --prompts PROMPTS.jsonl";

fn run(args: &[String], out: &mut dyn Write) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    if cmd == "cache-eval" {
        return cache_eval_cmd(rest, out);
    }
    if cmd == "injection-eval" {
        let [flag, file] = rest else { return Err(USAGE.into()) };
        if flag != "--prompts" {
            return Err(USAGE.into());
        }
        let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        return injection_eval::run(&injection_eval::read(&text)?, out);
    }
    let mut by = vec!["tenant".to_string(), "model".to_string()];
    let mut period = Period::Month;
    let mut zones_file = None;
    let (mut baseline, mut current) = (None, None);
    let (mut within, mut as_json) = (None, false);
    let mut files = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--by" => by = it.next().ok_or("--by needs a value")?.split(',').map(str::to_string).collect(),
            // shadow's period is a range; spend's a grouping.
            "--period" if cmd == "shadow" => {
                within = Some(drift::parse_range(it.next().ok_or("--period needs FROM..TO")?)?)
            }
            "--period" => period = Period::parse(it.next().ok_or("--period needs a value")?)?,
            "--zones" => zones_file = Some(it.next().ok_or("--zones needs a file")?.clone()),
            "--baseline" => baseline = Some(drift::parse_range(it.next().ok_or("--baseline needs FROM..TO")?)?),
            "--current" => current = Some(drift::parse_range(it.next().ok_or("--current needs FROM..TO")?)?),
            "--json" => as_json = true,
            f => files.push(f.to_string()),
        }
    }
    if files.is_empty() {
        return Err(USAGE.into());
    }
    let records = load(&files)?;
    let table = match cmd.as_str() {
        "spend" => spend(&records, &by, period)?,
        "providers" => providers(&records),
        "shadow" => {
            let rows = shadow::compare(&records, within);
            if as_json {
                for r in &rows {
                    writeln!(out, "{r}").map_err(|e| e.to_string())?;
                }
                return Ok(());
            }
            shadow::table(&rows)
        }
        "drift" => {
            let (Some(b), Some(c)) = (baseline, current) else {
                return Err("drift needs --baseline FROM..TO and --current FROM..TO".into());
            };
            let t = drift::drift(&records, b, c);
            if t.rows.is_empty() {
                return writeln!(out, "no signal moved significantly (p < 0.001) between the two periods")
                    .map_err(|e| e.to_string());
            }
            t
        }
        "privacy" => {
            let path = zones_file.ok_or("privacy needs --zones FILE")?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            privacy(&records, &parse_zones(&text)?)
        }
        _ => return Err(USAGE.into()),
    };
    write!(out, "{}", table.render()).map_err(|e| e.to_string())
}

fn cache_eval_cmd(rest: &[String], out: &mut dyn Write) -> Result<(), String> {
    let (mut pairs, mut url, mut model, mut key_env) = (None, None, None, "AIGW_KEY".to_string());
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--pairs" => pairs = Some(value()?),
            "--url" => url = Some(value()?),
            "--model" => model = Some(value()?),
            "--key-env" => key_env = value()?,
            _ => return Err(USAGE.into()),
        }
    }
    let (Some(pairs), Some(url), Some(model)) = (pairs, url, model) else { return Err(USAGE.into()) };
    let key = std::env::var(&key_env).map_err(|_| format!("the environment has no {key_env} (the embedder's key)"))?;
    let text = std::fs::read_to_string(&pairs).map_err(|e| format!("{pairs}: {e}"))?;
    cache_eval::run(&cache_eval::read_pairs(&text)?, &url, &key, &model, out)
}

fn load(files: &[String]) -> Result<Vec<AuditRecord>, String> {
    let mut records = Vec::new();
    let mut skipped = 0usize;
    for f in files {
        let reader: Box<dyn BufRead> = if f == "-" {
            Box::new(io::BufReader::new(io::stdin()))
        } else {
            Box::new(io::BufReader::new(std::fs::File::open(f).map_err(|e| format!("{f}: {e}"))?))
        };
        for line in reader.lines() {
            let line = line.map_err(|e| format!("{f}: {e}"))?;
            match aigw_core::wire::from_str::<AuditRecord>(&line) {
                Ok(r) => records.push(r),
                Err(_) if line.trim().is_empty() => {}
                Err(_) => skipped += 1,
            }
        }
    }
    if skipped > 0 {
        eprintln!("aigw-report: skipped {skipped} lines that are not audit records");
    }
    Ok(records)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Period {
    Day,
    Month,
    All,
}

impl Period {
    fn parse(s: &str) -> Result<Period, String> {
        match s {
            "day" => Ok(Period::Day),
            "month" => Ok(Period::Month),
            "all" => Ok(Period::All),
            _ => Err(format!("unknown period {s:?} (day, month or all)")),
        }
    }

    fn of(self, ms: u64) -> String {
        let (y, m, d) = civil_from_days(i64::try_from(ms / 86_400_000).unwrap_or(0));
        match self {
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Month => format!("{y:04}-{m:02}"),
            Period::All => "all".into(),
        }
    }
}

struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self) -> String {
        let mut s = format!("| {} |\n|{}|\n", self.header.join(" | "), vec!["---"; self.header.len()].join("|"));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        s.push_str(&format!("{} rows\n", self.rows.len()));
        s
    }
}

fn field(r: &AuditRecord, name: &str) -> Result<String, String> {
    let v = match name {
        "tenant" => r.tenant.clone(),
        "feature" => r.feature.clone(),
        "model" => r.model.clone(),
        "provider" => r.provider.clone(),
        "alias" => r.alias.clone(),
        "zone" => r.privacy_zone.clone(),
        _ => return Err(format!("cannot group by {name:?} (tenant, feature, model, provider, alias, zone)")),
    };
    Ok(v.unwrap_or_else(|| "-".into()))
}

#[derive(Default)]
struct Spend {
    calls: u64,
    input: u64,
    output: u64,
    cost_pico: u128,
    unpriced: u64,
}

/// Spend per period and grouping fields. Costs are summed exactly from the records' decimal
/// strings; calls with tokens but no price are counted in `unpriced calls`, never as zero cost.
fn spend(records: &[AuditRecord], by: &[String], period: Period) -> Result<Table, String> {
    let mut groups: BTreeMap<Vec<String>, Spend> = BTreeMap::new();
    for r in records {
        let mut key = vec![period.of(r.start_time_ms)];
        for f in by {
            key.push(field(r, f)?);
        }
        let g = groups.entry(key).or_default();
        g.calls += 1;
        if let Some(t) = &r.tokens {
            g.input += t.input;
            g.output += t.output;
            match r.cost_usd.as_deref().and_then(parse_usd) {
                Some(c) => g.cost_pico += c,
                None => g.unpriced += 1,
            }
        }
    }
    let mut header = vec!["period".to_string()];
    header.extend(by.iter().cloned());
    header.extend(["calls", "input tokens", "output tokens", "cost_usd", "unpriced calls"].map(String::from));
    let rows = groups
        .into_iter()
        .map(|(mut key, g)| {
            key.extend([
                g.calls.to_string(),
                g.input.to_string(),
                g.output.to_string(),
                format_usd(g.cost_pico),
                g.unpriced.to_string(),
            ]);
            key
        })
        .collect();
    Ok(Table { header, rows })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: u64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// Per provider, over every attempt: error rate, errors by class, latency p50/p95.
fn providers(records: &[AuditRecord]) -> Table {
    #[derive(Default)]
    struct P {
        attempts: u64,
        errors: u64,
        classes: BTreeMap<&'static str, u64>,
        latencies: Vec<u64>,
    }
    let mut by: BTreeMap<String, P> = BTreeMap::new();
    for a in records.iter().flat_map(|r| &r.attempts) {
        let p = by.entry(a.provider.clone()).or_default();
        p.attempts += 1;
        if let Some(c) = a.error_class {
            p.errors += 1;
            *p.classes.entry(c.as_str()).or_default() += 1;
        }
        if let Some(l) = a.latency_ms {
            p.latencies.push(l);
        }
    }
    let header = ["provider", "attempts", "errors", "error rate", "errors by class", "p50 ms", "p95 ms"]
        .map(String::from)
        .to_vec();
    let rows = by
        .into_iter()
        .map(|(name, mut p)| {
            p.latencies.sort_unstable();
            let rate = if p.attempts == 0 { 0.0 } else { 100.0 * p.errors as f64 / p.attempts as f64 };
            let classes = p.classes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            let pct = |q| percentile(&p.latencies, q).map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            vec![name, p.attempts.to_string(), p.errors.to_string(), format!("{rate:.1}%"), classes, pct(50), pct(95)]
        })
        .collect();
    Table { header, rows }
}

/// zone -> allowed regions (`*` allows any).
fn parse_zones(text: &str) -> Result<HashMap<String, Vec<String>>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        zones: HashMap<String, Vec<String>>,
    }
    serde_json::from_str::<File>(text).map(|f| f.zones).map_err(|e| format!("zones file: {e}"))
}

/// The privacy proof: every attempt of a call whose zone does not allow the attempt's region.
/// A zone missing from the zones file, or an attempt with no known region, cannot be proven
/// compliant and is listed too. A correct deployment prints `0 rows`.
fn privacy(records: &[AuditRecord], zones: &HashMap<String, Vec<String>>) -> Table {
    let header = ["request_id", "tenant", "zone", "provider", "region", "why"].map(String::from).to_vec();
    let mut rows = Vec::new();
    for r in records {
        let Some(zone) = &r.privacy_zone else { continue };
        let allowed = zones.get(zone);
        for a in &r.attempts {
            let why = match (allowed, &a.region) {
                (None, _) => Some("zone not in zones file"),
                (Some(al), _) if al.iter().any(|x| x == "*") => None,
                (Some(_), None) => Some("region unknown"),
                (Some(al), Some(reg)) if !al.contains(reg) => Some("region outside zone"),
                _ => None,
            };
            if let Some(why) = why {
                rows.push(vec![
                    r.request_id.clone(),
                    r.tenant.clone().unwrap_or_else(|| "-".into()),
                    zone.clone(),
                    a.provider.clone(),
                    a.region.clone().unwrap_or_else(|| "-".into()),
                    why.into(),
                ]);
            }
        }
    }
    Table { header, rows }
}

#[cfg(test)]
mod tests;
