//! `aigw-report injection-eval`: the prompt-injection rule set's precision and recall on a
//! labelled set of prompts (JSON lines: `{"text": …, "injection": true|false}`), per threshold,
//! scored by the gateway's own code (no network).

use aigw_core::guard::injection::{default_rules, score, Rule};

use super::Table;

pub fn read(text: &str) -> Result<Vec<(String, bool)>, String> {
    #[derive(serde::Deserialize)]
    struct Line {
        text: String,
        injection: bool,
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let l: Line = serde_json::from_str(line).map_err(|e| format!("prompts line {}: {e}", i + 1))?;
        out.push((l.text, l.injection));
    }
    if out.is_empty() {
        return Err("no prompts".into());
    }
    Ok(out)
}

/// Per threshold: how many prompts score at or above it, precision, recall, and the benign
/// prompts caught (false positives); with `rules` (the shipped ones by default).
pub fn table(prompts: &[(String, bool)], rules: &[Rule]) -> Table {
    let scored: Vec<(f64, bool)> = prompts.iter().map(|(t, inj)| (score(rules, t).0, *inj)).collect();
    let positives = scored.iter().filter(|(_, i)| *i).count();
    let rows = [0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
        .iter()
        .map(|t| {
            let at = |want: bool| scored.iter().filter(|(s, i)| *s >= *t - 1e-9 && *i == want).count();
            let (tp, fp) = (at(true), at(false));
            let precision = if tp + fp == 0 { 1.0 } else { tp as f64 / (tp + fp) as f64 };
            let recall = if positives == 0 { 0.0 } else { tp as f64 / positives as f64 };
            vec![
                format!("{t:.2}"),
                (tp + fp).to_string(),
                format!("{precision:.3}"),
                format!("{recall:.3}"),
                fp.to_string(),
            ]
        })
        .collect();
    let header = ["threshold", "prompts at or above", "precision", "recall", "benign caught"];
    Table { header: header.iter().map(|s| s.to_string()).collect(), rows }
}

pub fn run(prompts: &[(String, bool)], out: &mut dyn std::io::Write) -> Result<(), String> {
    let n = prompts.iter().filter(|(_, i)| *i).count();
    writeln!(out, "{} prompts ({n} injections, {} benign), the shipped rules\n", prompts.len(), prompts.len() - n)
        .map_err(|e| e.to_string())?;
    write!(out, "{}", table(prompts, &default_rules()).render()).map_err(|e| e.to_string())
}
