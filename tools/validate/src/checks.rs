//! The checks of one Envoy configuration's gateway filters.

use std::collections::{HashMap, HashSet};

use aigw_core::audit::price::{format_usd, PriceBook, PriceBookConfig};
use aigw_core::error::ConfigError;
use aigw_core::pipeline::{GatewayConfig, Listener, Upstream};
use aigw_core::quota::{Quota, QuotaConfig};
use aigw_core::time::parse_utc_ms;
use serde_json::{json, Value};

use crate::{members, Endpoint, Filter, Problem};

/// The parts of the configuration the cross-checks read: each with the path it is at.
#[derive(Default)]
struct Parts {
    route: Option<Part>,
    auth: Option<Part>,
    quota: Option<Part>,
    book: Option<Value>,
}

/// One stage's configuration: the file and path it is at.
struct Part {
    file: String,
    at: String,
    value: Value,
}

fn problem(file: &str, path: String, severity: &'static str, message: impl Into<String>) -> Problem {
    Problem { file: file.to_string(), path, severity, message: message.into() }
}

/// Which side a root id runs on, and its one stage (`None`: the gateway filter, every stage).
fn plugin(root_id: &str) -> Option<(bool, Option<&'static str>)> {
    Some(match root_id {
        "gateway" => (true, None),
        "gateway_upstream" => (false, None),
        "auth_key_swap" => (true, Some("auth")),
        "route_select" => (true, Some("route")),
        "quota" => (true, Some("quota")),
        "audit_emit" => (true, Some("audit")),
        "auth_key_swap_upstream" => (false, Some("auth")),
        "route_select_upstream" => (false, Some("route")),
        "quota_upstream" => (false, Some("quota")),
        _ => return None,
    })
}

/// A configuration error's path in the file: the filter's, then the field's from the top of
/// that filter's own configuration.
fn error_path(f: &Filter, stage: Option<&str>, e: &ConfigError) -> String {
    let field = match stage {
        None => e.clone().in_gateway().field.clone(),
        Some(s) => match e.stage {
            Some(_) => e.field.clone(),
            None => e.field.strip_prefix(s).map(|x| x.trim_start_matches('.').to_string()).unwrap_or(e.field.clone()),
        },
    };
    if field.is_empty() {
        format!("{}.configuration", f.path)
    } else {
        format!("{}.configuration.{field}", f.path)
    }
}

/// A tree of this tool's (`serde_json`'s) as the gateway's core reads one.
fn core_tree(v: &Value) -> aigw_core::wire::tree::Value {
    aigw_core::wire::from_str(&v.to_string()).unwrap_or_default()
}

/// Compiles one filter's configuration as the filter does; its parts for the cross-checks.
fn compile(f: &Filter, out: &mut Vec<Problem>, parts: &mut Parts) {
    let Some((listener, stage)) = plugin(&f.root_id) else {
        out.push(problem(&f.file, f.path.clone(), "error", format!("unknown root_id {:?}", f.root_id)));
        return;
    };
    let name = f.root_id.trim_end_matches("_upstream").replace('_', "-");
    let raw: Value = match aigw_core::parse_config::<aigw_core::wire::tree::Value>(&name, f.configuration.as_bytes()) {
        Ok(v) => serde_json::from_str(&v.to_string()).unwrap_or_default(),
        Err(e) => {
            out.push(problem(&f.file, error_path(f, Some(""), &e), "error", e.to_string()));
            return;
        }
    };
    let whole = match stage {
        None => raw.clone(),
        Some(s) => json!({ s: raw }),
    };
    let text = whole.to_string();
    let cfg: GatewayConfig = match aigw_core::parse_config(&name, text.as_bytes()) {
        Ok(c) => c,
        Err(e) => {
            out.push(problem(&f.file, error_path(f, stage, &e), "error", e.to_string()));
            return;
        }
    };
    // Secrets come from Envoy's environment at run time: their names are checked, not values.
    let env = |_: &str| Some("validate".to_string());
    let compiled =
        if listener { Listener::compile_env(cfg, &env).map(|_| ()) } else { Upstream::compile(cfg, &env).map(|_| ()) };
    if let Err(e) = compiled {
        let e = if stage.is_none() { e.in_gateway() } else { e };
        out.push(problem(&f.file, error_path(f, stage, &e), "error", e.to_string()));
        return;
    }
    if !listener {
        return;
    }
    let at = |part: &str| match stage {
        None => format!("{}.configuration.{part}", f.path),
        Some(_) => format!("{}.configuration", f.path),
    };
    let part = |s: &str| match stage {
        None => whole.get(s).cloned(),
        Some(x) if x == s => Some(raw.clone()),
        Some(_) => None,
    };
    for (slot, s) in [(&mut parts.route, "route"), (&mut parts.auth, "auth"), (&mut parts.quota, "quota")] {
        if let (None, Some(value)) = (&slot, part(s)) {
            *slot = Some(Part { file: f.file.clone(), at: at(s), value });
        }
    }
    if parts.book.is_none() {
        parts.book = match stage {
            None => whole.get("price_book").cloned(),
            Some(_) => raw.get("price_book").cloned(),
        };
    }
}

/// Every problem of one file's gateway filters.
pub fn file(
    file: &str,
    filters: &[&Filter],
    clusters: &HashMap<String, Vec<Endpoint>>,
    aggregates: &HashMap<String, Vec<String>>,
    allow: &HashSet<&str>,
    now_ms: u64,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut parts = Parts::default();
    for f in filters {
        compile(f, &mut out, &mut parts);
    }
    if out.iter().any(|p| p.severity == "error") {
        // A configuration the filters refuse: the rest would check what never runs.
        return out;
    }
    let book = parts
        .book
        .as_ref()
        .and_then(|b| aigw_core::config::from_value::<PriceBookConfig>(core_tree(b)).ok())
        .and_then(|b| PriceBook::compile(&b).ok());
    if let Some(r) = &parts.route {
        let mut cx = Cx { file: &r.file, group: file, out: &mut out, now_ms };
        cx.deprecations(&r.at, &r.value);
        match &book {
            Some(book) => cx.prices(&r.at, &r.value, book, allow),
            None => cx.push(r.at.clone(), "warning", "no price book in this configuration: prices are not checked"),
        }
        cx.zones(&r.at, &r.value, parts.auth.as_ref(), clusters, aggregates);
    }
    if let Some(a) = &parts.auth {
        Cx { file: &a.file, group: file, out: &mut out, now_ms }.keys(&a.at, &a.value);
    }
    if let Some(r) = &parts.route {
        let mut cx = Cx { file: &r.file, group: file, out: &mut out, now_ms };
        cx.shadows(&r.at, &r.value, parts.auth.as_ref(), parts.quota.as_ref());
    }
    if let (Some(q), Some(book)) = (&parts.quota, &book) {
        // The chat aliases' steps (an embeddings call reserves no output).
        let chains: Vec<Vec<String>> = parts
            .route
            .as_ref()
            .map(|Part { value: r, .. }| {
                members(r.get("aliases"))
                    .iter()
                    .filter(|(_, a)| a.get("kind").and_then(Value::as_str).unwrap_or("chat") == "chat")
                    .map(|(_, a)| {
                        a.get("steps")
                            .and_then(Value::as_array)
                            .map(|s| {
                                s.iter()
                                    .filter_map(|s| s.get("model").and_then(Value::as_str).map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        Cx { file: &q.file, group: file, out: &mut out, now_ms }.quota(&q.at, &q.value, book, &chains);
    }
    out
}

/// Where the problems of one part go: its file, and the Envoy configuration's (for clusters).
struct Cx<'a> {
    file: &'a str,
    group: &'a str,
    out: &'a mut Vec<Problem>,
    now_ms: u64,
}

/// A UTC date, `2026-12-01`.
fn date(ms: u64) -> String {
    let (y, m, d) = aigw_core::time::civil_from_days(i64::try_from(ms / 86_400_000).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

impl Cx<'_> {
    fn push(&mut self, path: String, severity: &'static str, message: impl Into<String>) {
        self.out.push(problem(self.file, path, severity, message));
    }

    /// Shadowed aliases: a shadow key (`"shadow": true`) may use each candidate, and its tenant
    /// has a daily budget (the shadow budget; without one, legs are bounded by nothing but the
    /// tenant's rate limits).
    fn shadows(&mut self, at: &str, route: &Value, auth: Option<&Part>, quota: Option<&Part>) {
        let shadowed: Vec<(String, String)> = members(route.get("aliases"))
            .into_iter()
            .filter_map(|(name, a)| {
                let s = a.get("shadow")?;
                (s.get("percent").and_then(Value::as_u64).unwrap_or(0) > 0)
                    .then(|| (name.clone(), s.get("alias").and_then(Value::as_str).unwrap_or_default().to_string()))
            })
            .collect();
        if shadowed.is_empty() {
            return;
        }
        let Some(Part { value: auth, .. }) = auth else {
            self.push(
                format!("{at}.shadow"),
                "warning",
                "no auth stage in this configuration: shadow keys are not checked",
            );
            return;
        };
        let keys = auth.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
        let shadow_keys: Vec<&Value> =
            keys.iter().filter(|k| k.get("shadow").and_then(Value::as_bool) == Some(true)).collect();
        let may_use = |k: &Value, alias: &str| {
            k.get("aliases").and_then(Value::as_array).is_none_or(|l| l.iter().any(|x| x == "*" || x == alias))
        };
        for (name, candidate) in &shadowed {
            if !shadow_keys.iter().any(|k| may_use(k, candidate)) {
                self.push(
                    format!("{at}.aliases.{name}.shadow"),
                    "error",
                    format!(
                        "alias {name} is shadowed to {candidate}, but no key with \"shadow\": true may use {candidate}: \
                         every leg would be refused (403)"
                    ),
                );
            }
        }
        let tenants = quota.and_then(|q| q.value.get("tenants"));
        for k in &shadow_keys {
            let tenant = k.get("tenant").and_then(Value::as_str).unwrap_or_default();
            let spec = tenants.and_then(|t| t.get(tenant));
            if spec.and_then(|s| s.get("budget")).and_then(|b| b.get("daily_usd")).is_none() {
                self.push(
                    format!("{at}.shadow"),
                    "warning",
                    format!(
                        "the shadow key's tenant {tenant:?} has no daily budget of its own (quota.tenants.{tenant}.budget.daily_usd): \
                         shadow legs are bounded only by its rate limits"
                    ),
                );
            }
        }
    }

    /// A model retired (its sunset passed) must have a successor that is not retired itself.
    fn deprecations(&mut self, at: &str, route: &Value) {
        let deps = members(route.get("deprecations"));
        let now = self.now_ms;
        let retired = |m: &str| {
            deps.iter().any(|(k, d)| {
                k.as_str() == m
                    && d.get("sunset").and_then(Value::as_str).and_then(parse_utc_ms).is_some_and(|s| s <= now)
            })
        };
        for (model, d) in &deps {
            let Some(sunset) = d.get("sunset").and_then(Value::as_str).and_then(parse_utc_ms) else { continue };
            if sunset > self.now_ms {
                continue;
            }
            let successor = d.get("successor").and_then(Value::as_str).unwrap_or("");
            let path = format!("{at}.deprecations.{model}.successor");
            if successor.is_empty() {
                self.push(path, "error", format!("{model} was retired on {} and has no successor", date(sunset)));
            } else if retired(successor) {
                self.push(
                    path,
                    "error",
                    format!("{model} was retired on {}; its successor {successor} is retired too", date(sunset)),
                );
            }
        }
    }

    /// Every model a chain can reach (its steps, and their successors) has a price, unless it is
    /// allowed not to.
    fn prices(&mut self, at: &str, route: &Value, book: &PriceBook, allow: &HashSet<&str>) {
        let successor = |m: &str| -> Option<String> {
            route.get("deprecations")?.get(m)?.get("successor")?.as_str().map(str::to_string)
        };
        for (alias, a) in members(route.get("aliases")) {
            let steps = a.get("steps").and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, s) in steps.iter().enumerate() {
                let Some(mut model) = s.get("model").and_then(Value::as_str).map(str::to_string) else { continue };
                let mut seen = HashSet::new();
                loop {
                    if book.price(&model).is_none() && !allow.contains(model.as_str()) {
                        self.push(
                            format!("{at}.aliases.{alias}.steps[{i}].model"),
                            "error",
                            format!(
                                "{model} (reached by alias {alias}) has no price in the price book: its calls could not \
                                 be billed or budgeted (add it, or allow it with --allow-unpriced {model})"
                            ),
                        );
                    }
                    seen.insert(model.clone());
                    match successor(&model) {
                        Some(next) if !next.is_empty() && !seen.contains(&next) => model = next,
                        _ => break,
                    }
                }
            }
        }
    }

    /// Privacy zones against the regions the provider endpoints are in.
    fn zones(
        &mut self,
        at: &str,
        route: &Value,
        auth: Option<&Part>,
        clusters: &HashMap<String, Vec<Endpoint>>,
        aggregates: &HashMap<String, Vec<String>>,
    ) {
        let zones: HashMap<String, Vec<String>> =
            route.get("zones").and_then(|z| serde_json::from_value(z.clone()).ok()).unwrap_or_default();
        if zones.is_empty() {
            return;
        }
        let regions: HashSet<&str> = clusters.values().flatten().filter_map(|e| e.region.as_deref()).collect();
        let mut names: Vec<&String> = zones.keys().collect();
        names.sort();
        for z in names {
            for r in &zones[z] {
                if r != "*" && !regions.contains(r.as_str()) {
                    self.push(
                        format!("{at}.zones.{z}"),
                        "warning",
                        format!("zone {z} allows region {r}, which no provider endpoint is in (a typo?)"),
                    );
                }
            }
        }
        let mut cnames: Vec<&String> = clusters.keys().collect();
        cnames.sort();
        for c in cnames {
            if clusters[c].iter().any(|e| e.provider.is_some() && e.region.is_none()) {
                self.out.push(problem(
                    self.group,
                    format!("static_resources.clusters.{c}"),
                    "warning",
                    format!(
                        "cluster {c} has a provider endpoint with no aigw.region: calls in a zone other than \
                         `*` are never sent to it, and the privacy proof cannot vouch for it"
                    ),
                ));
            }
        }
        // Each key in a zone can be served by each alias it may use.
        let Some(Part { file: auth_file, at: auth_at, value: auth }) = auth else { return };
        let aliases = members(route.get("aliases"));
        let regions_of = |chain: &str| -> Vec<Option<String>> {
            aggregates
                .get(chain)
                .map(|m| {
                    m.iter().flat_map(|c| clusters.get(c).cloned().unwrap_or_default()).map(|e| e.region).collect()
                })
                .unwrap_or_default()
        };
        for (i, k) in auth.get("keys").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
            let Some(zone) = k.get("zone").and_then(Value::as_str) else { continue };
            let id = k.get("id").and_then(Value::as_str).unwrap_or("?");
            let Some(allowed) = zones.get(zone) else {
                self.out.push(problem(
                    auth_file,
                    format!("{auth_at}.keys[{i}].zone"),
                    "error",
                    format!("key {id}: zone {zone} is not in the route stage's zones"),
                ));
                continue;
            };
            if allowed.iter().any(|r| r == "*") {
                continue;
            }
            let scope: Vec<String> = k
                .get("aliases")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .filter(|a: &Vec<String>| !a.is_empty() && !a.iter().any(|x| x == "*"))
                .unwrap_or_else(|| aliases.iter().map(|(n, _)| (*n).clone()).collect());
            let mut never = Vec::new();
            for name in scope {
                let Some(a) = route.get("aliases").and_then(|x| x.get(&name)) else { continue };
                let chain = a.get("chain").and_then(Value::as_str).unwrap_or("");
                if !regions_of(chain).iter().flatten().any(|r| allowed.contains(r)) {
                    never.push(name);
                }
            }
            never.sort();
            if !never.is_empty() {
                self.out.push(problem(
                    auth_file,
                    format!("{auth_at}.keys[{i}].zone"),
                    "warning",
                    format!(
                        "key {id} (zone {zone}) may use {}, whose chains reach no region of its zone: those calls \
                         are always refused",
                        never.join(", ")
                    ),
                ));
            }
        }
    }

    /// Keys past their validity, or not valid yet.
    fn keys(&mut self, at: &str, auth: &Value) {
        for (i, k) in auth.get("keys").and_then(Value::as_array).cloned().unwrap_or_default().iter().enumerate() {
            let id = k.get("id").and_then(Value::as_str).unwrap_or("?");
            if k.get("status").and_then(Value::as_str) == Some("revoked") {
                continue;
            }
            if let Some(t) = k.get("not_after").and_then(Value::as_str).and_then(parse_utc_ms) {
                if t <= self.now_ms {
                    self.push(
                        format!("{at}.keys[{i}].not_after"),
                        "warning",
                        format!("key {id} expired on {}: remove it (it is refused anyway)", date(t)),
                    );
                }
            }
            if let Some(t) = k.get("not_before").and_then(Value::as_str).and_then(parse_utc_ms) {
                if t > self.now_ms {
                    self.push(
                        format!("{at}.keys[{i}].not_before"),
                        "warning",
                        format!("key {id} is not valid until {}", date(t)),
                    );
                }
            }
        }
    }

    /// Limits that can never admit a call of the configured size: a call that does not say its
    /// `max_tokens` is estimated at `estimate.default_max_tokens` or more, and reserves at least
    /// that output at the cheapest model a chain reaches.
    fn quota(&mut self, at: &str, raw: &Value, book: &PriceBook, chains: &[Vec<String>]) {
        let Ok(cfg) = aigw_core::config::from_value::<QuotaConfig>(core_tree(raw)) else { return };
        let Ok(q) = Quota::compile_with(&cfg, Some(std::rc::Rc::new(book.clone()))) else { return };
        let min_tokens = q.estimate.default_max_tokens;
        // A chat call reserves the dearest of its chain's steps; the cheapest chain's is the
        // least any chat call reserves.
        let est = aigw_core::quota::Estimate { prompt_tokens: 0, output_tokens: min_tokens, model: None };
        let cheapest = chains
            .iter()
            .filter_map(|steps| {
                let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
                q.upper_bound_cost(&est, &steps)
            })
            .min();
        let mut check = |path: String, what: String, l: aigw_core::quota::Limits| {
            if let Some(t) = l.tokens.filter(|t| t.burst < min_tokens) {
                self.push(
                    format!("{path}.tokens_burst"),
                    "error",
                    format!(
                        "{what}: a tokens burst of {} can never admit a call without max_tokens (estimated at \
                         estimate.default_max_tokens = {min_tokens} tokens or more)",
                        t.burst
                    ),
                );
            }
            if let (Some(b), Some(c)) = (l.budget, cheapest) {
                for (period, cap) in [("daily", b.daily), ("monthly", b.monthly)] {
                    if let Some(cap) = cap.filter(|cap| *cap < c) {
                        self.push(
                            format!("{path}.budget.{period}_usd"),
                            "error",
                            format!(
                                "{what}: a {period} budget of USD {} is below the least a chat call without \
                                 max_tokens reserves (USD {}, on the cheapest chain): it can never admit one",
                                format_usd(cap),
                                format_usd(c)
                            ),
                        );
                    }
                }
            }
        };
        for (t, spec) in members(raw.get("tenants")) {
            let tenant_path = format!("{at}.tenants.{t}");
            let name = if t == "*" { "\u{0}any tenant" } else { t.as_str() };
            for s in q.scopes(name, None, None) {
                check(tenant_path.clone(), format!("tenant {t}"), s.limits);
            }
            for (kind, field) in [("feature", "features"), ("model", "models")] {
                for (n, _) in members(spec.get(field)) {
                    let scopes =
                        if kind == "feature" { q.scopes(name, Some(n), None) } else { q.scopes(name, None, Some(n)) };
                    if let Some(s) = scopes.last().filter(|_| scopes.len() > 1) {
                        check(format!("{tenant_path}.{field}.{n}"), format!("tenant {t}, {kind} {n}"), s.limits);
                    }
                }
            }
        }
        for (p, _) in members(raw.get("providers")) {
            if let Some(s) = q.provider(p) {
                check(format!("{at}.providers.{p}"), format!("provider {p}"), s.limits);
            }
        }
    }
}
