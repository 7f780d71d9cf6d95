//! `aigw-keygen`: mints a gateway key.
//!
//! ```text
//! aigw-keygen --id NAME --tenant TENANT [--zone Z] [--workload-class C] [--features a,b] [--agents a,b] [--tasks a,b]
//!             [--aliases a,b] [--not-before TIME] [--not-after TIME] [--json]
//! ```
//! Prints the key once (it is not stored anywhere) and the entry to add to the `keys` list of the
//! `auth_key_swap` filter's configuration, which holds only the key's SHA-256. Keys start with
//! `aigw_sk_` so that secret scanners can recognise leaked ones.

use std::io::Read;
use std::process::ExitCode;

use aigw_core::auth::keys::{digest_hex, KeyEntry, KeyRing, KEY_PREFIX};
use aigw_core::config::{At, FromConfig};
use base64::Engine;
use serde_json::{json, Map, Value};

const USAGE: &str =
    "usage: aigw-keygen --id NAME --tenant TENANT [--zone Z] [--workload-class C] [--features a,b] [--agents a,b] [--tasks a,b] \
                     [--aliases a,b] [--not-before TIME] [--not-after TIME] [--json]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match mint(&args, &mut random_bytes) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aigw-keygen: {e}");
            ExitCode::from(2)
        }
    }
}

fn random_bytes(buf: &mut [u8]) -> Result<(), String> {
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .map_err(|e| format!("cannot read /dev/urandom: {e}"))
}

fn list(v: &str) -> Value {
    Value::Array(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| json!(s)).collect())
}

/// Builds a new key and its config entry; `rng` fills the key's 32 random bytes.
fn mint(args: &[String], rng: &mut dyn FnMut(&mut [u8]) -> Result<(), String>) -> Result<String, String> {
    let mut entry = Map::new();
    let mut as_json = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--json" {
            as_json = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        let (k, val) = match a.as_str() {
            "--id" => ("id", json!(v)),
            "--tenant" => ("tenant", json!(v)),
            "--zone" => ("zone", json!(v)),
            "--workload-class" => {
                if !["interactive", "batch", "background", "embeddings", "tool_call"].contains(&v.as_str()) {
                    return Err(format!(
                        "--workload-class is one of interactive, batch, background, embeddings, tool_call\n{USAGE}"
                    ));
                }
                ("workload_class", json!(v))
            }
            "--features" => ("features", list(v)),
            "--agents" => ("agents", list(v)),
            "--tasks" => ("tasks", list(v)),
            "--aliases" => ("aliases", list(v)),
            "--not-before" => ("not_before", json!(v)),
            "--not-after" => ("not_after", json!(v)),
            _ => return Err(format!("unknown argument {a}\n{USAGE}")),
        };
        entry.insert(k.into(), val);
    }
    if !entry.contains_key("id") || !entry.contains_key("tenant") {
        return Err(USAGE.into());
    }
    let mut raw = [0u8; 32];
    rng(&mut raw)?;
    let key = format!("{KEY_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
    entry.insert("sha256".into(), json!(digest_hex(&key)));
    let entry = Value::Object(entry);
    // The entry must be one the filter accepts: check it the way on_configure will.
    let tree: aigw_core::wire::tree::Value =
        aigw_core::wire::from_str(&entry.to_string()).map_err(|e| e.to_string())?;
    let parsed = <KeyEntry as FromConfig>::read(&tree, &At::Root).map_err(|e| e.to_string())?;
    KeyRing::compile(&[parsed]).map_err(|e| e.to_string())?;
    Ok(if as_json {
        format!("{}\n", json!({"key": key, "entry": entry}))
    } else {
        format!(
            "New gateway key (shown only now: put it in your secret manager):\n\n    {key}\n\n\
             Add this entry to the \"keys\" list of the auth_key_swap filter's configuration:\n\n    {entry}\n"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mints_a_prefixed_key_whose_digest_is_in_the_entry() {
        let mut fixed = |b: &mut [u8]| {
            b.fill(7);
            Ok(())
        };
        let out = mint(&args(&["--id", "k1", "--tenant", "acme", "--features", "a, b", "--json"]), &mut fixed).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let key = v["key"].as_str().unwrap();
        assert!(key.starts_with("aigw_sk_") && key.len() == 8 + 43, "{key}");
        assert_eq!(v["entry"]["sha256"], digest_hex(key));
        assert_eq!(v["entry"]["features"], json!(["a", "b"]));
        let tree: aigw_core::wire::tree::Value = aigw_core::wire::from_str(&v["entry"].to_string()).unwrap();
        let entry = <KeyEntry as FromConfig>::read(&tree, &At::Root).unwrap();
        let ring = KeyRing::compile(&[entry]).unwrap();
        assert_eq!(ring.authenticate(key).unwrap().tenant, "acme");
    }

    #[test]
    fn keys_differ_and_bad_input_is_refused() {
        let a = mint(&args(&["--id", "a", "--tenant", "t", "--json"]), &mut random_bytes).unwrap();
        let b = mint(&args(&["--id", "a", "--tenant", "t", "--json"]), &mut random_bytes).unwrap();
        assert_ne!(a, b);
        assert!(mint(&args(&["--tenant", "t"]), &mut random_bytes).is_err());
        assert!(mint(&args(&["--id", "a", "--tenant", "t", "--not-after", "soon"]), &mut random_bytes)
            .unwrap_err()
            .contains("not_after"));
        let human = mint(&args(&["--id", "a", "--tenant", "t"]), &mut random_bytes).unwrap();
        assert!(human.contains("shown only now") && human.contains("\"sha256\""));
    }
}
