//! Model aliases and their fallback chains.

use crate::config::NameMap;
use crate::text::{Joined, Put, Text};

use crate::error::{ConfigError, GatewayError};
pub use crate::provider::ProviderConfig;
use crate::wire::obj;

pub mod health;
pub mod models;
pub mod shadow;
pub mod stage;

/// The wire API a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Openai,
    Anthropic,
    /// Azure OpenAI: OpenAI's wire format on a deployment path, `api-key` auth.
    Azure,
    /// Google Gemini API (`generateContent`), `x-goog-api-key` auth.
    Gemini,
    /// AWS Bedrock Runtime Converse, SigV4 auth.
    Bedrock,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, Default)]
pub struct Alias {
    /// The aggregate cluster that carries this alias's fallback chain.
    pub chain: String,
    /// The chain's steps, in order; each names a provider (the `provider` value in its
    /// endpoint metadata) and the concrete model to ask it for.
    pub steps: Vec<Step>,
    /// A slice of this alias's calls goes to a candidate alias instead.
    pub canary: Option<Canary>,
    /// What the alias serves: chat (completions and Messages, the default) or embeddings.
    pub kind: AliasKind,
    /// Its answers are cached (see `cache`); a rule's policy wins over this.
    pub cache: Option<crate::cache::CachePolicy>,
    /// Never cached, whatever a rule or the alias says.
    pub sensitive: bool,
    /// What is done with PII, secrets and terms in its requests (a rule's wins over this).
    pub guardrails: Option<crate::guard::GuardPolicy>,
    /// `fastest`: the chain is tried from the provider with the best live latency and error
    /// rate, through one of `orders` (health-aware routing; README, "Latency-aware order").
    pub prefer: Option<Prefer>,
    /// The chain's other orders, rendered ahead of time: a step's provider -> the aggregate
    /// cluster whose order starts with it (`chain` starts with the first step's).
    pub orders: NameMap<String>,
    /// How long a provider may go without a sample before one call is sent to it first again
    /// (so that one avoided as slow is noticed when it recovers).
    pub probe_ms: u64,
    /// A sampled copy of the alias's calls goes to a candidate alias, off the caller's path
    /// (README, "Shadow dual-run").
    pub shadow: Option<shadow::ShadowPolicy>,
}

fn default_probe_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    Fastest,
}

/// What an alias serves, and so which path it is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AliasKind {
    #[default]
    Chat,
    Embeddings,
}

#[derive(Debug, Clone)]
pub struct Canary {
    /// The alias that serves the canary slice (its own chain and pinned versions).
    pub alias: String,
    /// Percentage of calls (0-100), chosen by the request id, so a call keeps its slice.
    pub percent: u8,
}

/// A route rule: when every condition it sets holds, the call goes to `alias`.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub name: String,
    pub when: RuleMatch,
    /// A task rule: only calls that name this task (`x-gateway-task`), and its `alias` is
    /// chosen by `scripts/render_envoy.py` from `envoy/benchmarks.json`: the cheapest whose
    /// models all score at least `min_score` on the task (README, "Benchmark-validated routing").
    pub task: Option<String>,
    pub min_score: Option<f64>,
    /// The aliases a task rule was resolved among (default: every chat alias).
    pub among: Vec<String>,
    pub alias: String,
    /// The answers of the calls this rule routes are cached (see `cache`).
    pub cache: Option<crate::cache::CachePolicy>,
    /// The calls this rule routes are never cached.
    pub sensitive: bool,
    /// The guardrails of the calls this rule routes.
    pub guardrails: Option<crate::guard::GuardPolicy>,
}

/// Conditions of a rule; an empty list (or absent bound) matches anything.
#[derive(Debug, Clone, Default)]
pub struct RuleMatch {
    /// The model the caller named.
    pub models: Vec<String>,
    pub tenants: Vec<String>,
    pub features: Vec<String>,
    pub workload_classes: Vec<String>,
    pub zones: Vec<String>,
    /// Matches calls whose latency budget (`x-gateway-latency-budget-ms`) is at most this.
    pub latency_budget_ms_at_most: Option<u64>,
    /// Matches calls whose cost ceiling (`x-gateway-cost-ceiling-usd`) is at most this (USD).
    pub cost_ceiling_usd_at_most: Option<String>,
}

/// A concrete model's retirement: a warning before `sunset`, its `successor` after.
#[derive(Debug, Clone)]
pub struct Deprecation {
    /// UTC, `2027-01-15` or `2027-01-15T00:00:00Z`.
    pub sunset: String,
    pub successor: String,
}

#[derive(Debug, Clone, Default)]
pub struct RouteConfig {
    pub aliases: NameMap<Alias>,
    /// Derived by [`RouteConfig::compiled`]: the providers `prefer: fastest` ranks.
    pub ranked: Vec<String>,
    /// Derived by [`RouteConfig::compiled`]: the aliases' names, sorted (the model list's order).
    pub alias_names: Vec<String>,
    /// Not configuration: this worker's live samples not yet written to shared data (see
    /// `health::Live`), kept with the compiled configuration its attempts share.
    pub live: health::Live,
    /// The providers the steps name; in the `gateway` filter's configuration, its one
    /// `providers` table instead.
    pub providers: NameMap<ProviderConfig>,
    pub rules: Vec<Rule>,
    /// Privacy zones: the provider regions (endpoint `aigw.region`) each zone may reach; `*`
    /// any. A caller whose key has a zone never reaches a region outside it.
    pub zones: NameMap<Vec<String>>,
    pub deprecations: NameMap<Deprecation>,
    /// The time the deprecation calendar is read at, instead of the clock (for tests and
    /// rehearsals).
    pub now: Option<String>,
    /// The cache store's bound (`slots`, `max_entry_bytes`, and `now`, a settable clock); the
    /// default one serves when only aliases or rules name a policy.
    pub cache: Option<crate::cache::CacheConfig>,
    /// Request headers forwarded to providers besides the built-in allow-list
    /// (`headers::FORWARDED_REQUEST`); e.g. the demo fakes' `x-fake-fault`.
    pub forward_request_headers: Vec<String>,
    /// How shadow legs are sent (the key they present); needed when an alias has a `shadow`.
    pub shadow: Option<shadow::ShadowConfig>,
}

/// What a call brings to route selection.
#[derive(Debug, Clone, Default)]
pub struct CallFacts<'a> {
    pub model: &'a str,
    pub tenant: Option<&'a str>,
    pub feature: Option<&'a str>,
    pub task: Option<&'a str>,
    pub workload_class: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub latency_budget_ms: Option<u64>,
    pub cost_ceiling_pico: Option<u128>,
    /// Chooses the canary slice.
    pub request_id: &'a str,
}

/// Where route selection sent a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub alias: String,
    /// The rule that matched, or `default` (the alias the caller named).
    pub route: String,
    /// `canary` or `stable` when the alias has a canary; `None` otherwise.
    pub slice: Option<&'static str>,
}

fn in_list(list: &[String], v: Option<&str>) -> bool {
    list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v || x == "*"))
}

impl RuleMatch {
    fn matches(&self, f: &CallFacts) -> bool {
        let budget_ok = match self.latency_budget_ms_at_most {
            None => true,
            Some(max) => f.latency_budget_ms.is_some_and(|b| b <= max),
        };
        let cost_ok = match self.cost_ceiling_usd_at_most.as_deref().and_then(crate::audit::price::parse_usd) {
            None => self.cost_ceiling_usd_at_most.is_none(),
            Some(max) => f.cost_ceiling_pico.is_some_and(|c| c <= max),
        };
        in_list(&self.models, Some(f.model))
            && in_list(&self.tenants, f.tenant)
            && in_list(&self.features, f.feature)
            && in_list(&self.workload_classes, f.workload_class)
            && in_list(&self.zones, f.zone)
            && budget_ok
            && cost_ok
    }
}

/// A stable number 0..100 from a request id (FNV-1a), the same on every worker and restart.
pub fn bucket_of(request_id: &str) -> u8 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in request_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    u8::try_from(h % 100).unwrap_or(0)
}

impl RouteConfig {
    /// Checks references once, at configuration time.
    /// The cache policy of a call routed to `alias` by `route` (a rule's name, or `default`):
    /// the rule's, else the alias's; none when either is marked sensitive.
    pub fn cache_policy(&self, alias: &str, route: &str) -> Option<&crate::cache::CachePolicy> {
        let a = self.aliases.get(alias)?;
        let rule = self.rules.iter().find(|r| r.name == route);
        if a.sensitive || rule.is_some_and(|r| r.sensitive) {
            return None;
        }
        rule.and_then(|r| r.cache.as_ref()).or(a.cache.as_ref())
    }

    /// The guardrails of a call routed to `alias` by `route`: the rule's, else the alias's.
    pub fn guard_policy(&self, alias: &str, route: &str) -> Option<&crate::guard::GuardPolicy> {
        let rule = self.rules.iter().find(|r| r.name == route).and_then(|r| r.guardrails.as_ref());
        rule.or_else(|| self.aliases.get(alias).and_then(|a| a.guardrails.as_ref()))
    }

    /// A reroute names a chat alias of this configuration.
    fn check_reroute(&self, g: &crate::guard::GuardPolicy, at: &str) -> Result<(), ConfigError> {
        let Some(to) = g.injection.as_ref().and_then(|i| i.reroute_to.as_deref()) else { return Ok(()) };
        match self.aliases.get(to) {
            Some(a) if a.kind == AliasKind::Chat => Ok(()),
            _ => Err(ConfigError::new(
                "route-select",
                format!("{at}.injection.reroute_to"),
                format!("{to:?} is not a chat alias of this configuration"),
            )),
        }
    }

    /// Whether an alias or rule has guardrails.
    pub fn guards(&self) -> bool {
        self.aliases.values().any(|a| a.guardrails.is_some()) || self.rules.iter().any(|r| r.guardrails.is_some())
    }

    /// Whether an alias or rule names a cache policy in a semantic mode.
    pub fn caches_by_meaning(&self) -> bool {
        self.aliases
            .values()
            .filter_map(|a| a.cache.as_ref())
            .chain(self.rules.iter().filter_map(|r| r.cache.as_ref()))
            .any(|c| c.semantic())
    }

    /// Whether an alias or rule names a cache policy.
    pub fn caches(&self) -> bool {
        self.aliases.values().any(|a| a.cache.is_some()) || self.rules.iter().any(|r| r.cache.is_some())
    }

    /// Validates, and derives what the stages look up per call: the providers whose live
    /// figures an alias with `prefer: fastest` ranks (only their attempts record samples).
    pub fn compiled(mut self) -> Result<RouteConfig, ConfigError> {
        self.validate()?;
        let mut ranked: Vec<String> = self
            .aliases
            .values()
            .filter(|a| a.prefer.is_some())
            .flat_map(|a| a.steps.iter().map(|s| s.provider.own()))
            .collect();
        crate::sort::sort(&mut ranked);
        ranked.dedup();
        self.ranked = ranked;
        let mut names: Vec<String> = self.aliases.keys().cloned().collect();
        crate::sort::sort(&mut names);
        self.alias_names = names;
        Ok(self)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let refused = |field: String, problem: String| Err(ConfigError::new("route-select", field, problem));
        if self.aliases.is_empty() {
            return refused("aliases".own(), "no model aliases are configured".own());
        }
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(c) = &r.cache {
                c.check(&format!("rules[{i}].cache"))?;
            }
            if let Some(g) = &r.guardrails {
                g.check(&format!("rules[{i}].guardrails"))?;
                self.check_reroute(g, &format!("rules[{i}].guardrails"))?;
            }
        }
        for (name, alias) in &self.aliases {
            if alias.chain.is_empty() {
                return refused(format!("aliases.{name}.chain"), "must not be empty".own());
            }
            if alias.steps.is_empty() {
                return refused(format!("aliases.{name}.steps"), "has no steps".own());
            }
            if alias.kind == AliasKind::Embeddings && alias.cache.is_some() {
                return refused(format!("aliases.{name}.cache"), "only chat aliases are cached (for now)".own());
            }
            if let Some(c) = &alias.cache {
                c.check(&format!("aliases.{name}.cache"))?;
            }
            if let Some(g) = &alias.guardrails {
                g.check(&format!("aliases.{name}.guardrails"))?;
                self.check_reroute(g, &format!("aliases.{name}.guardrails"))?;
            }
            for (i, s) in alias.steps.iter().enumerate() {
                let Some(p) = self.providers.get(&s.provider) else {
                    return refused(
                        format!("aliases.{name}.steps[{i}].provider"),
                        format!("unknown provider {:?}", s.provider),
                    );
                };
                if alias.kind == AliasKind::Embeddings {
                    if crate::provider::embeddings_path(p.api, &s.model, p).is_none() {
                        return refused(
                            format!("aliases.{name}.steps[{i}].provider"),
                            format!("the gateway serves no embeddings of provider {:?}", s.provider),
                        );
                    }
                    // Vectors of different models are not comparable: a fallback may move to
                    // the same model elsewhere, never to another model.
                    if s.model != alias.steps[0].model {
                        return refused(
                            format!("aliases.{name}.steps[{i}].model"),
                            format!(
                                "an embeddings chain may not mix models ({:?} after {:?}): their vectors are \
                                 not comparable",
                                s.model, alias.steps[0].model
                            ),
                        );
                    }
                }
            }
            for (p, chain) in &alias.orders {
                if !alias.steps.iter().skip(1).any(|s| s.provider == *p) {
                    return refused(
                        format!("aliases.{name}.orders.{p}"),
                        format!("{p:?} is not a step after the first (the alias's chain starts with the first)"),
                    );
                }
                if chain.is_empty() {
                    return refused(format!("aliases.{name}.orders.{p}"), "must name an aggregate cluster".own());
                }
            }
            if alias.prefer == Some(Prefer::Fastest) && alias.orders.is_empty() {
                return refused(
                    format!("aliases.{name}.orders"),
                    "`prefer: fastest` needs the chain's other orders (a step's provider -> its chain)".own(),
                );
            }
            if let Some(s) = &alias.shadow {
                let candidate = self.aliases.get(&s.alias);
                if candidate.is_none() || s.alias == *name {
                    return refused(
                        format!("aliases.{name}.shadow.alias"),
                        format!("{:?} is not another alias", s.alias),
                    );
                }
                if alias.kind != AliasKind::Chat || candidate.is_some_and(|c| c.kind != AliasKind::Chat) {
                    return refused(format!("aliases.{name}.shadow"), "only chat aliases are shadowed".own());
                }
                if s.percent > 100 {
                    return refused(format!("aliases.{name}.shadow.percent"), "must be 0..=100".own());
                }
                if self.shadow.is_none() {
                    return refused(
                        format!("aliases.{name}.shadow"),
                        "needs the route's `shadow` (the key the shadow legs present)".own(),
                    );
                }
            }
            if let Some(c) = &alias.canary {
                if !self.aliases.contains_key(&c.alias) || c.alias == *name {
                    return refused(
                        format!("aliases.{name}.canary.alias"),
                        format!("{:?} is not another alias", c.alias),
                    );
                }
                if c.percent > 100 {
                    return refused(format!("aliases.{name}.canary.percent"), "must be 0..=100".own());
                }
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.task.is_some() && r.alias.is_empty() {
                return refused(
                    format!("rules[{i}].alias"),
                    format!(
                        "task rule {:?} has no alias: scripts/render_envoy.py resolves it from envoy/benchmarks.json \
                         (render the configuration with it, or name the alias)",
                        r.name
                    ),
                );
            }
            if r.min_score.is_some() && r.task.is_none() {
                return refused(format!("rules[{i}].min_score"), "a minimum score needs the rule's `task`".own());
            }
            if let Some(a) = r.among.iter().find(|a| !self.aliases.contains_key(a)) {
                return refused(format!("rules[{i}].among"), format!("{a:?} is not an alias"));
            }
            if !self.aliases.contains_key(&r.alias) {
                return refused(
                    format!("rules[{i}].alias"),
                    format!("rule {:?} sends calls to unknown alias {:?}", r.name, r.alias),
                );
            }
            if let Some(c) = &r.when.cost_ceiling_usd_at_most {
                if crate::audit::price::parse_usd(c).is_none() {
                    return refused(
                        format!("rules[{i}].match.cost_ceiling_usd_at_most"),
                        format!("{c:?} is not a USD amount"),
                    );
                }
            }
        }
        for (model, d) in &self.deprecations {
            if crate::time::parse_utc_ms(&d.sunset).is_none() {
                return refused(format!("deprecations.{model}.sunset"), format!("{:?} is not a UTC date", d.sunset));
            }
        }
        if let Some(n) = &self.now {
            if crate::time::parse_utc_ms(n).is_none() {
                return refused("now".own(), format!("{n:?} is not a UTC time"));
            }
        }
        Ok(())
    }

    /// Picks the alias for a call: the first matching rule, else the model the caller named;
    /// then the canary slice of that alias, if it has one.
    pub fn choose(&self, f: &CallFacts) -> Result<Choice, GatewayError> {
        let rule = self.rules.iter().find(|r| r.task.as_deref().is_none_or(|t| f.task == Some(t)) && r.when.matches(f));
        let (alias, route) = match rule {
            Some(r) => (r.alias.own(), r.name.own()),
            None => {
                self.alias(f.model)?;
                (f.model.own(), "default".own())
            }
        };
        let Some(c) = self.aliases.get(&alias).and_then(|a| a.canary.as_ref()) else {
            return Ok(Choice { alias, route, slice: None });
        };
        if bucket_of(f.request_id) < c.percent {
            Ok(Choice { alias: c.alias.own(), route, slice: Some("canary") })
        } else {
            Ok(Choice { alias, route, slice: Some("stable") })
        }
    }

    /// The model to send for a step at `now_ms`: its successor once past its sunset. Returns
    /// (model, the retired model it replaced, the sunset of a model still before it).
    pub fn model_at<'a>(&'a self, model: &'a str, now_ms: u64) -> (&'a str, Option<&'a str>, Option<&'a Deprecation>) {
        let now = self.now.as_deref().and_then(crate::time::parse_utc_ms).unwrap_or(now_ms);
        match self.deprecations.get(model) {
            Some(d) if crate::time::parse_utc_ms(&d.sunset).is_some_and(|s| now >= s) => {
                (d.successor.as_str(), Some(model), None)
            }
            Some(d) => (model, None, Some(d)),
            None => (model, None, None),
        }
    }

    /// Whether a call of privacy zone `zone` may reach `region`. No zone: anywhere. A zone the
    /// configuration does not list: nowhere (fail closed).
    pub fn region_allowed(&self, zone: Option<&str>, region: Option<&str>) -> bool {
        let Some(zone) = zone else { return true };
        let Some(allowed) = self.zones.get(zone) else { return self.zones.is_empty() };
        allowed.iter().any(|r| r == "*" || Some(r.as_str()) == region)
    }

    pub fn alias(&self, model: &str) -> Result<&Alias, GatewayError> {
        self.aliases.get(model).ok_or_else(|| {
            GatewayError::new(
                404,
                "invalid_request_error",
                "model_not_found",
                format!("The model `{model}` is not an alias this gateway serves."),
            )
            .with_param("model")
        })
    }

    /// The step of `alias` that `provider` serves, with that provider's settings.
    pub fn step(&self, alias: &str, provider: &str) -> Option<(&Step, &ProviderConfig)> {
        let a = self.aliases.get(alias)?;
        let step = a.steps.iter().find(|s| s.provider == provider)?;
        Some((step, self.providers.get(provider)?))
    }
}

/// What the caller gets when a call's fallback chain ends without an answer: an OpenAI-format
/// error with a stable `code` that lists every attempt (provider, model, status, reason).
/// 429 when every attempt was rate limited, 503 otherwise. `note` adds why the chain stopped
/// early (a privacy zone), with its own code.
pub fn chain_refusal(
    alias: &str,
    attempts: &[crate::audit::Attempt],
    note: Option<(&'static str, String)>,
) -> (u16, String) {
    let reason = |a: &crate::audit::Attempt| match (a.status, a.error_class) {
        (_, Some(c)) => c.as_str().own(),
        (Some(s), None) => format!("status {s}"),
        (None, None) => "no response".own(),
    };
    let listed: Vec<crate::wire::tree::Value> = attempts
        .iter()
        .map(|a| obj! {"provider" => a.provider, "model" => a.model, "status" => a.status, "reason" => reason(a)})
        .collect();
    let said: Vec<String> = attempts
        .iter()
        .map(|a| match a.status {
            Some(s) => format!("{} answered {s} ({})", a.provider, reason(a)),
            None => format!("{} ({})", a.provider, reason(a)),
        })
        .collect();
    let all_limited =
        !attempts.is_empty() && attempts.iter().all(|a| a.error_class == Some(crate::audit::ErrorClass::RateLimited));
    let (status, kind, code) = match (&note, all_limited) {
        (Some(("invalid_model_output", _)), _) => (502, "server_error", "invalid_model_output"),
        (Some((code, _)), _) => (503, "server_error", *code),
        (None, true) => (429, "rate_limit_error", "fallback_chain_exhausted"),
        (None, false) => (503, "server_error", "fallback_chain_exhausted"),
    };
    let mut message = if said.is_empty() {
        format!("No provider could serve `{alias}`.")
    } else {
        format!("No provider could serve `{alias}`: {}.", said.joined("; "))
    };
    if let Some((_, n)) = &note {
        message.push(' ');
        message.put(n);
    }
    let body = obj! {"error" = obj!{
        "message" => message,
        "type" => kind,
        "param" = crate::wire::tree::Value::Null,
        "code" => code,
        "attempts" => listed,
    }};
    (status, crate::wire::write::to_string(&body))
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for Api {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(
            v,
            at,
            &[
                ("openai", Api::Openai),
                ("anthropic", Api::Anthropic),
                ("azure", Api::Azure),
                ("gemini", Api::Gemini),
                ("bedrock", Api::Bedrock),
            ],
        )
    }
}

impl crate::config::FromConfig for Step {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "Step", Some(&["provider", "model"]))?;
        Ok(Step { provider: o.req("provider")?, model: o.req("model")? })
    }
}

impl crate::config::FromConfig for Alias {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "Alias",
            Some(&[
                "chain",
                "steps",
                "canary",
                "kind",
                "cache",
                "sensitive",
                "guardrails",
                "prefer",
                "orders",
                "probe_ms",
                "shadow",
            ]),
        )?;
        let mut x = Alias::default();
        x.chain = o.req("chain")?;
        x.steps = o.req("steps")?;
        x.canary = o.opt("canary")?;
        x.kind = o.or("kind", Default::default)?;
        x.cache = o.opt("cache")?;
        x.sensitive = o.or("sensitive", Default::default)?;
        x.guardrails = o.opt("guardrails")?;
        x.prefer = o.opt("prefer")?;
        x.orders = o.or("orders", Default::default)?;
        x.probe_ms = o.or("probe_ms", default_probe_ms)?;
        x.shadow = o.opt("shadow")?;
        Ok(x)
    }
}

impl crate::config::FromConfig for Prefer {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(v, at, &[("fastest", Prefer::Fastest)])
    }
}

impl crate::config::FromConfig for AliasKind {
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        crate::config::variant(v, at, &[("chat", AliasKind::Chat), ("embeddings", AliasKind::Embeddings)])
    }
}

impl crate::config::FromConfig for Canary {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "Canary", Some(&["alias", "percent"]))?;
        Ok(Canary { alias: o.req("alias")?, percent: o.req("percent")? })
    }
}

impl crate::config::FromConfig for Rule {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "Rule",
            Some(&["name", "match", "task", "min_score", "among", "alias", "cache", "sensitive", "guardrails"]),
        )?;
        let mut x = Rule::default();
        x.name = o.req("name")?;
        x.when = o.or("match", Default::default)?;
        x.task = o.opt("task")?;
        x.min_score = o.opt("min_score")?;
        x.among = o.or("among", Default::default)?;
        x.alias = o.or("alias", Default::default)?;
        x.cache = o.opt("cache")?;
        x.sensitive = o.or("sensitive", Default::default)?;
        x.guardrails = o.opt("guardrails")?;
        Ok(x)
    }
}

impl crate::config::FromConfig for RuleMatch {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "RuleMatch",
            Some(&[
                "models",
                "tenants",
                "features",
                "workload_classes",
                "zones",
                "latency_budget_ms_at_most",
                "cost_ceiling_usd_at_most",
            ]),
        )?;
        let mut x = RuleMatch::default();
        x.models = o.or("models", Default::default)?;
        x.tenants = o.or("tenants", Default::default)?;
        x.features = o.or("features", Default::default)?;
        x.workload_classes = o.or("workload_classes", Default::default)?;
        x.zones = o.or("zones", Default::default)?;
        x.latency_budget_ms_at_most = o.opt("latency_budget_ms_at_most")?;
        x.cost_ceiling_usd_at_most = o.opt("cost_ceiling_usd_at_most")?;
        Ok(x)
    }
}

impl crate::config::FromConfig for Deprecation {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "Deprecation", Some(&["sunset", "successor"]))?;
        Ok(Deprecation { sunset: o.req("sunset")?, successor: o.req("successor")? })
    }
}

impl crate::config::FromConfig for RouteConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "RouteConfig",
            Some(&[
                "aliases",
                "providers",
                "rules",
                "zones",
                "deprecations",
                "now",
                "cache",
                "forward_request_headers",
                "shadow",
            ]),
        )?;
        let mut x = RouteConfig::default();
        x.aliases = o.req("aliases")?;
        x.ranked = Default::default();
        x.alias_names = Default::default();
        x.live = Default::default();
        x.providers = o.or("providers", Default::default)?;
        x.rules = o.or("rules", Default::default)?;
        x.zones = o.or("zones", Default::default)?;
        x.deprecations = o.or("deprecations", Default::default)?;
        x.now = o.opt("now")?;
        x.cache = o.opt("cache")?;
        x.forward_request_headers = o.or("forward_request_headers", Default::default)?;
        x.shadow = o.opt("shadow")?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> RouteConfig {
        crate::config::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    const OK: &str = r#"{"aliases":{"chat":{"chain":"chain_chat","steps":[
        {"provider":"anthropic","model":"claude-x"},{"provider":"openai","model":"gpt-x"}]}},
        "providers":{"anthropic":{"api":"anthropic","max_tokens_default":512},"openai":{"api":"openai"}}}"#;

    #[test]
    fn resolves_alias_and_steps() {
        let c = cfg(OK);
        assert!(c.validate().is_ok());
        assert_eq!(c.alias("chat").map(|a| a.chain.as_str()), Ok("chain_chat"));
        let (s, p) = c.step("chat", "openai").unwrap_or_else(|| unreachable!());
        assert_eq!((s.model.as_str(), p.api, p.max_tokens_default), ("gpt-x", Api::Openai, 4096));
        assert!(c.step("chat", "gemini").is_none());
    }

    #[test]
    fn unknown_alias_is_404_model_not_found() {
        let e = cfg(OK).alias("gpt-4").err();
        assert_eq!(e.as_ref().map(|e| (e.status, e.code)), Some((404, "model_not_found")));
    }

    fn with(extra: &str) -> RouteConfig {
        cfg(&format!(
            r#"{{"aliases":{{"chat":{{"chain":"c1","steps":[{{"provider":"p","model":"m-old"}}],
                "canary":{{"alias":"chat-next","percent":20}}}},
              "chat-next":{{"chain":"c2","steps":[{{"provider":"p","model":"m-new"}}]}},
              "cheap":{{"chain":"c3","steps":[{{"provider":"p","model":"m-cheap"}}]}},
              "eu":{{"chain":"c4","steps":[{{"provider":"p","model":"m-eu"}}]}}}},
              "providers":{{"p":{{"api":"openai"}}}}{extra}}}"#
        ))
    }

    fn facts<'a>(model: &'a str, rid: &'a str) -> CallFacts<'a> {
        CallFacts { model, request_id: rid, ..CallFacts::default() }
    }

    #[test]
    fn rules_match_top_down_first_match_wins() {
        let c = with(
            r#","rules":[
            {"name":"eu-data","match":{"zones":["eu"]},"alias":"eu"},
            {"name":"batch-cheap","match":{"models":["chat"],"workload_classes":["batch","background"]},"alias":"cheap"},
            {"name":"tight-budget","match":{"cost_ceiling_usd_at_most":"0.001"},"alias":"cheap"},
            {"name":"fast","match":{"latency_budget_ms_at_most":1500,"tenants":["acme"]},"alias":"cheap"}]"#,
        );
        assert!(c.validate().is_ok());
        let pick = |f: CallFacts| c.choose(&f).map(|ch| (ch.alias, ch.route)).unwrap();
        let eu = CallFacts { zone: Some("eu"), workload_class: Some("batch"), ..facts("chat", "r") };
        assert_eq!(pick(eu), ("eu".into(), "eu-data".into()));
        let batch = CallFacts { workload_class: Some("batch"), ..facts("chat", "r") };
        assert_eq!(pick(batch), ("cheap".into(), "batch-cheap".into()));
        let cheap = CallFacts { cost_ceiling_pico: Some(500_000_000), ..facts("x", "r") };
        assert_eq!(pick(cheap).1, "tight-budget");
        let not_cheap = CallFacts { cost_ceiling_pico: Some(2_000_000_000), ..facts("cheap", "r") };
        assert_eq!(pick(not_cheap).1, "default");
        let fast = CallFacts { latency_budget_ms: Some(1000), tenant: Some("acme"), ..facts("cheap", "r") };
        assert_eq!(pick(fast).1, "fast");
        let slow = CallFacts { latency_budget_ms: Some(5000), tenant: Some("acme"), ..facts("cheap", "r") };
        assert_eq!(pick(slow).1, "default");
        // No rule and an unknown model: 404.
        assert_eq!(c.choose(&facts("gpt-x", "r")).map_err(|e| e.status), Err(404));
    }

    #[test]
    fn a_task_rule_takes_only_calls_that_name_its_task() {
        let c = with(
            r#","rules":[
            {"name":"summaries","task":"summarize","min_score":0.8,"match":{"models":["chat"]},"alias":"cheap"},
            {"name":"eu-data","match":{"zones":["eu"]},"alias":"eu"}]"#,
        );
        assert!(c.validate().is_ok());
        let pick = |f: CallFacts| c.choose(&f).map(|ch| (ch.alias, ch.route)).unwrap();
        let summary = CallFacts { task: Some("summarize"), ..facts("chat", "r") };
        assert_eq!(pick(summary), ("cheap".into(), "summaries".into()));
        // Another task, no task, or another model: the rule does not apply.
        let other = CallFacts { task: Some("extract"), ..facts("chat", "r") };
        assert_eq!(pick(other).1, "default");
        assert_eq!(pick(facts("chat", "r")).1, "default");
        let eu = CallFacts { task: Some("summarize"), zone: Some("eu"), ..facts("eu", "r") };
        assert_eq!(pick(eu), ("eu".into(), "eu-data".into()));
        // Unresolved (no alias: not rendered from the benchmarks), or a score without a task.
        let e = with(r#","rules":[{"name":"s","task":"summarize","min_score":0.8}]"#).validate().unwrap_err();
        assert_eq!(e.field, "rules[0].alias");
        assert!(e.problem.contains("envoy/benchmarks.json"), "{e}");
        let e = with(r#","rules":[{"name":"s","min_score":0.8,"alias":"cheap"}]"#).validate().unwrap_err();
        assert_eq!(e.field, "rules[0].min_score");
    }

    #[test]
    fn canary_slice_is_sticky_and_near_its_percentage() {
        let c = with("");
        let mut canary = 0;
        for i in 0..10_000 {
            let rid = format!("req-{i}");
            let a = c.choose(&facts("chat", &rid)).unwrap();
            let b = c.choose(&facts("chat", &rid)).unwrap();
            assert_eq!(a, b);
            if a.slice == Some("canary") {
                assert_eq!(a.alias, "chat-next");
                canary += 1;
            }
        }
        assert!((1_800..=2_200).contains(&canary), "{canary}");
        assert_eq!(c.choose(&facts("cheap", "r")).unwrap().slice, None);
    }

    #[test]
    fn deprecation_calendar_warns_then_moves_to_the_successor() {
        let c = with(r#","deprecations":{"m-old":{"sunset":"2027-01-15","successor":"m-new"}}"#);
        assert!(c.validate().is_ok());
        let before = crate::time::parse_utc_ms("2027-01-14T23:59:59Z").unwrap();
        let (m, replaced, warn) = c.model_at("m-old", before);
        assert_eq!((m, replaced), ("m-old", None));
        assert_eq!(warn.map(|d| d.sunset.as_str()), Some("2027-01-15"));
        let (m, replaced, warn) = c.model_at("m-old", before + 1000);
        assert_eq!((m, replaced, warn.is_none()), ("m-new", Some("m-old"), true));
        // The configured clock wins over the real one.
        let pinned =
            with(r#","deprecations":{"m-old":{"sunset":"2027-01-15","successor":"m-new"}},"now":"2030-01-01""#);
        assert_eq!(pinned.model_at("m-old", 0).0, "m-new");
        assert_eq!(c.model_at("m-other", before).0, "m-other");
    }

    #[test]
    fn privacy_zones_allow_only_their_regions_and_fail_closed() {
        let c = with(r#","zones":{"eu":["eu-west-1"],"global":["*"]}"#);
        assert!(c.region_allowed(Some("eu"), Some("eu-west-1")));
        assert!(!c.region_allowed(Some("eu"), Some("us-east-1")));
        assert!(!c.region_allowed(Some("eu"), None));
        assert!(c.region_allowed(Some("global"), Some("us-east-1")));
        assert!(!c.region_allowed(Some("mars"), Some("eu-west-1")));
        assert!(c.region_allowed(None, Some("us-east-1")));
    }

    #[test]
    fn bad_references_are_config_errors() {
        let bad_rule = with(r#","rules":[{"name":"r","alias":"nope"}]"#);
        let e = bad_rule.validate().unwrap_err();
        assert_eq!(e.field, "rules[0].alias");
        assert!(e.problem.contains("unknown alias"), "{e}");
        let bad_date = with(r#","deprecations":{"m":{"sunset":"soon","successor":"x"}}"#);
        let e = bad_date.validate().unwrap_err();
        assert_eq!(e.field, "deprecations.m.sunset");
        assert!(e.problem.contains("not a UTC date"), "{e}");
    }

    #[test]
    fn exhausted_chain_lists_every_attempt_with_a_stable_code() {
        use crate::audit::{Attempt, ErrorClass};
        let at = |p: &str, s: Option<u16>, c: Option<ErrorClass>| Attempt {
            provider: p.into(),
            region: None,
            model: Some(format!("{p}-m")),
            status: s,
            latency_ms: None,
            error_class: c,
            credential: None,
            started_ms: 0,
        };
        let (status, body) = chain_refusal(
            "chat",
            &[
                at("anthropic", Some(529), Some(ErrorClass::Overloaded)),
                at("openai", None, Some(ErrorClass::NoResponse)),
            ],
            None,
        );
        let v: crate::wire::tree::Value = crate::wire::from_str(&body).unwrap();
        assert_eq!(status, 503);
        assert_eq!(v["error"]["code"], "fallback_chain_exhausted");
        assert_eq!(
            v["error"]["attempts"][0],
            crate::json!(
            {"provider": "anthropic", "model": "anthropic-m", "status": 529, "reason": "overloaded"})
        );
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic answered 529 (overloaded); openai (no_response)"));
        let (status, _) = chain_refusal("chat", &[at("a", Some(429), Some(ErrorClass::RateLimited))], None);
        assert_eq!(status, 429);
        let (status, body) = chain_refusal("chat", &[], Some(("no_eligible_provider_in_zone", "zone".into())));
        assert!(status == 503 && body.contains("no_eligible_provider_in_zone"));
    }

    #[test]
    fn an_embeddings_chain_keeps_one_model_on_providers_with_embeddings() {
        let embed = |steps: &str| {
            cfg(&format!(
                r#"{{"aliases":{{"e":{{"kind":"embeddings","chain":"c","steps":[{steps}]}}}},
                   "providers":{{"openai":{{"api":"openai"}},"azure":{{"api":"azure"}},"anthropic":{{"api":"anthropic"}}}}}}"#
            ))
            .validate()
        };
        assert!(embed(r#"{"provider":"openai","model":"m"},{"provider":"azure","model":"m"}"#).is_ok());
        let e = embed(r#"{"provider":"openai","model":"m"},{"provider":"azure","model":"m2"}"#).unwrap_err();
        assert_eq!(e.field, "aliases.e.steps[1].model");
        assert!(e.problem.contains("not comparable"), "{e}");
        let e = embed(r#"{"provider":"anthropic","model":"m"}"#).unwrap_err();
        assert_eq!(e.field, "aliases.e.steps[0].provider");
        // A chat alias may move between models.
        assert!(cfg(OK).validate().is_ok());
    }

    #[test]
    fn dangling_provider_is_a_config_error() {
        let c = cfg(r#"{"aliases":{"a":{"chain":"c","steps":[{"provider":"p","model":"m"}]}},"providers":{}}"#);
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "route-select: invalid configuration at `aliases.a.steps[0].provider`: unknown provider \"p\""
        );
    }
}
