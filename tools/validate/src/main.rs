//! `aigw-validate`: the Rust half of `scripts/aigw validate`. It reads, on standard input, what
//! the script extracted from one or more Envoy configurations (every gateway filter's
//! configuration with its file and path, and each cluster's endpoints), compiles each filter's
//! configuration with the same code the filters run, checks the whole against the clusters it
//! runs with, and prints the problems as JSON lines (`{"file","path","severity","message"}`).
//! Exit status 0 whatever it finds: the script decides (any `error` refuses a push).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod checks;

#[derive(Deserialize)]
pub struct Input {
    /// The time to check validity and sunsets at (UTC; default: now).
    #[serde(default)]
    pub now: Option<String>,
    /// Models allowed to have no price in the price book.
    #[serde(default)]
    pub allow_unpriced: Vec<String>,
    pub filters: Vec<Filter>,
    /// Per Envoy configuration (group): cluster name -> its endpoints.
    #[serde(default)]
    pub clusters: HashMap<String, HashMap<String, Vec<Endpoint>>>,
    /// Per Envoy configuration (group): aggregate cluster name -> its member clusters, in order.
    #[serde(default)]
    pub aggregates: HashMap<String, HashMap<String, Vec<String>>>,
}

#[derive(Deserialize, Clone)]
pub struct Filter {
    /// The Envoy configuration the filter belongs to (the cross-checks are per configuration);
    /// default: `file`.
    #[serde(default)]
    pub group: Option<String>,
    /// The file the filter's configuration is in (the Envoy configuration, or an ECDS file).
    pub file: String,
    /// Where the filter is in its file (`static_resources.listeners[0]...http_filters[1]`).
    pub path: String,
    pub root_id: String,
    pub configuration: String,
}

#[derive(Deserialize, Clone, Default)]
pub struct Endpoint {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub file: String,
    pub path: String,
    pub severity: &'static str,
    pub message: String,
}

fn main() -> std::process::ExitCode {
    let mut raw = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut raw) {
        eprintln!("aigw-validate: cannot read standard input: {e}");
        return std::process::ExitCode::from(2);
    }
    let input: Input = match serde_json::from_str(&raw) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("aigw-validate: the input is not what scripts/aigw sends: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let now_ms = match &input.now {
        Some(n) => match aigw_core::time::parse_utc_ms(n) {
            Some(ms) => ms,
            None => {
                eprintln!("aigw-validate: --now {n:?} is not a UTC time");
                return std::process::ExitCode::from(2);
            }
        },
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    };
    for p in validate(&input, now_ms) {
        if let Ok(line) = serde_json::to_string(&p) {
            println!("{line}");
        }
    }
    std::process::ExitCode::SUCCESS
}

/// Every problem in `input`, file by file.
pub fn validate(input: &Input, now_ms: u64) -> Vec<Problem> {
    let mut by_file: BTreeMap<&str, Vec<&Filter>> = BTreeMap::new();
    for f in &input.filters {
        by_file.entry(f.group.as_deref().unwrap_or(&f.file)).or_default().push(f);
    }
    let mut out = Vec::new();
    let none = HashMap::new();
    let none_agg = HashMap::new();
    for (file, filters) in by_file {
        let clusters = input.clusters.get(file).unwrap_or(&none);
        let aggregates = input.aggregates.get(file).unwrap_or(&none_agg);
        let allow: HashSet<&str> = input.allow_unpriced.iter().map(String::as_str).collect();
        out.extend(checks::file(file, &filters, clusters, aggregates, &allow, now_ms));
    }
    out.sort();
    out.dedup();
    out
}

/// A JSON value's object members (none for anything else).
pub fn members(v: Option<&Value>) -> Vec<(&String, &Value)> {
    v.and_then(Value::as_object).map(|o| o.iter().collect()).unwrap_or_default()
}
