//! The quota plane's policy: which buckets a call is charged to, its token and cost estimate,
//! and the budget arithmetic. The filter moves these numbers in and out of shared data.

pub mod bucket;
pub mod fleet;

use crate::config::NameMap;
use std::rc::Rc;

use crate::wire::tree::Value;

use crate::audit::price::{parse_usd, PriceBook, PriceBookConfig};
use crate::config::{At, FromConfig, Obj, Read};
use crate::error::ConfigError;
use crate::quota::bucket::Limit;
use crate::text::{PutBytes, Text};
use crate::time::{civil_from_days, days_from_civil};
use crate::wire::usage::Usage;

// ---------------------------------------------------------------------------------------------
// Configuration

/// Limits for one scope. Every field is optional: what is absent is not limited at this scope.
#[derive(Debug, Clone, Default)]
pub struct LimitSpec {
    pub requests_per_minute: Option<u64>,
    /// Defaults to `requests_per_minute`.
    pub requests_burst: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    /// Defaults to `tokens_per_minute`.
    pub tokens_burst: Option<u64>,
    /// Calls in flight at once.
    pub concurrent: Option<u64>,
    pub budget: Option<BudgetSpec>,
}

#[derive(Debug, Clone, Default)]
pub struct BudgetSpec {
    /// USD per UTC day, as a decimal string (`"25.00"`).
    pub daily_usd: Option<String>,
    /// USD per calendar month (UTC).
    pub monthly_usd: Option<String>,
    /// Spending beyond this percentage of a cap adds a warning; default 80.
    pub soft_percent: Option<u8>,
}

/// A tenant's limits, and those of its features and model aliases.
#[derive(Debug, Clone, Default)]
pub struct TenantSpec {
    pub requests_per_minute: Option<u64>,
    pub requests_burst: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_burst: Option<u64>,
    pub concurrent: Option<u64>,
    pub budget: Option<BudgetSpec>,
    /// Per (tenant, feature); the key `*` applies to every feature not named.
    pub features: NameMap<LimitSpec>,
    /// Per (tenant, model alias); the key `*` applies to every alias not named.
    pub models: NameMap<LimitSpec>,
}

#[derive(Debug, Clone)]
pub struct EstimateConfig {
    /// Output tokens assumed when the call sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Tokens assumed per image in the prompt.
    pub tokens_per_image: u64,
}

const LIMIT_FIELDS: [&str; 6] =
    ["requests_per_minute", "requests_burst", "tokens_per_minute", "tokens_burst", "concurrent", "budget"];

impl FromConfig for LimitSpec {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "LimitSpec", Some(&LIMIT_FIELDS))?;
        let mut x = LimitSpec::default();
        x.requests_per_minute = o.opt("requests_per_minute")?;
        x.requests_burst = o.opt("requests_burst")?;
        x.tokens_per_minute = o.opt("tokens_per_minute")?;
        x.tokens_burst = o.opt("tokens_burst")?;
        x.concurrent = o.opt("concurrent")?;
        x.budget = o.opt("budget")?;
        Ok(x)
    }
}

impl FromConfig for BudgetSpec {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "BudgetSpec", Some(&["daily_usd", "monthly_usd", "soft_percent"]))?;
        let mut x = BudgetSpec::default();
        x.daily_usd = o.opt("daily_usd")?;
        x.monthly_usd = o.opt("monthly_usd")?;
        x.soft_percent = o.opt("soft_percent")?;
        Ok(x)
    }
}

impl FromConfig for TenantSpec {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let [a, b, c, d, e, f] = LIMIT_FIELDS;
        let o = Obj::new(v, at, "TenantSpec", Some(&[a, b, c, d, e, f, "features", "models"]))?;
        let mut x = TenantSpec::default();
        x.requests_per_minute = o.opt(a)?;
        x.requests_burst = o.opt(b)?;
        x.tokens_per_minute = o.opt(c)?;
        x.tokens_burst = o.opt(d)?;
        x.concurrent = o.opt(e)?;
        x.budget = o.opt(f)?;
        x.features = o.or("features", NameMap::new)?;
        x.models = o.or("models", NameMap::new)?;
        Ok(x)
    }
}

impl FromConfig for EstimateConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let o = Obj::new(v, at, "EstimateConfig", Some(&["default_max_tokens", "tokens_per_image"]))?;
        let mut x = EstimateConfig::default();
        x.default_max_tokens = o.or("default_max_tokens", default_max_tokens)?;
        x.tokens_per_image = o.or("tokens_per_image", default_image_tokens)?;
        Ok(x)
    }
}

impl FromConfig for QuotaConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &Value, at: &At) -> Read<Self> {
        let fields = ["tenants", "providers", "estimate", "price_book", "fleet"];
        let o = Obj::new(v, at, "QuotaConfig", Some(&fields))?;
        let mut x = QuotaConfig::default();
        x.tenants = o.or("tenants", NameMap::new)?;
        x.providers = o.or("providers", NameMap::new)?;
        x.estimate = o.or("estimate", EstimateConfig::default)?;
        x.price_book = o.opt("price_book")?;
        x.fleet = o.opt("fleet")?;
        Ok(x)
    }
}

impl TenantSpec {
    /// The tenant's own limits (the same fields as a [`LimitSpec`]; spelled out rather than
    /// flattened so a config error names its exact path).
    pub fn limits(&self) -> LimitSpec {
        LimitSpec {
            requests_per_minute: self.requests_per_minute,
            requests_burst: self.requests_burst,
            tokens_per_minute: self.tokens_per_minute,
            tokens_burst: self.tokens_burst,
            concurrent: self.concurrent,
            budget: self.budget.clone(),
        }
    }
}

fn default_max_tokens() -> u64 {
    1024
}

fn default_image_tokens() -> u64 {
    1000
}

impl Default for EstimateConfig {
    fn default() -> Self {
        Self { default_max_tokens: default_max_tokens(), tokens_per_image: default_image_tokens() }
    }
}

#[derive(Debug, Clone, Default)]
pub struct QuotaConfig {
    /// Per tenant; the key `*` is the default for every tenant not named (each tenant still
    /// gets buckets of its own). A named tenant inherits every field it does not set from `*`.
    pub tenants: NameMap<TenantSpec>,
    /// Per provider (the `provider` value in the cluster's endpoint metadata), to stay under the
    /// provider's own limits; charged once per upstream attempt. Requests and tokens only: in-flight
    /// limits per provider belong to Envoy's circuit breakers on the provider cluster.
    pub providers: NameMap<LimitSpec>,
    pub estimate: EstimateConfig,
    /// Needed when any budget is set; the same book as the audit record's.
    pub price_book: Option<PriceBookConfig>,
    /// Fleet mode: the tenant, feature and model request and token buckets shared by every
    /// replica, in Redis (see `fleet`).
    pub fleet: Option<fleet::FleetConfig>,
}

// ---------------------------------------------------------------------------------------------
// Compiled form

/// Which kind of scope a bucket belongs to; names the refusal `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    Tenant,
    Feature,
    Model,
    Provider,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    Requests,
    Tokens,
    Concurrent,
}

impl ScopeKind {
    /// The refusal `code` for a bucket of this scope and kind.
    pub fn code(self, kind: BucketKind) -> &'static str {
        use BucketKind::*;
        use ScopeKind::*;
        match (self, kind) {
            (Tenant, Requests) => "tenant_requests_per_minute",
            (Tenant, Tokens) => "tenant_tokens_per_minute",
            (Tenant, Concurrent) => "tenant_concurrent_requests",
            (Feature, Requests) => "feature_requests_per_minute",
            (Feature, Tokens) => "feature_tokens_per_minute",
            (Feature, Concurrent) => "feature_concurrent_requests",
            (Model, Requests) => "model_requests_per_minute",
            (Model, Tokens) => "model_tokens_per_minute",
            (Model, Concurrent) => "model_concurrent_requests",
            (Provider, Requests) => "provider_requests_per_minute",
            (Provider, Tokens) => "provider_tokens_per_minute",
            (Provider, Concurrent) => "provider_concurrent_requests",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            ScopeKind::Tenant => "this tenant",
            ScopeKind::Feature => "this feature",
            ScopeKind::Model => "this model alias",
            ScopeKind::Provider => "the provider",
        }
    }

    /// The `code` of a refused budget at this scope.
    pub fn budget_code(self, period: Period) -> &'static str {
        match (self, period) {
            (ScopeKind::Feature, Period::Day) => "feature_daily_budget",
            (ScopeKind::Feature, Period::Month) => "feature_monthly_budget",
            (ScopeKind::Model, Period::Day) => "model_daily_budget",
            (ScopeKind::Model, Period::Month) => "model_monthly_budget",
            (_, Period::Day) => "tenant_daily_budget",
            (_, Period::Month) => "tenant_monthly_budget",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Month,
}

/// Budget caps in pico-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub daily: Option<u128>,
    pub monthly: Option<u128>,
    pub soft_percent: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub requests: Option<Limit>,
    pub tokens: Option<Limit>,
    pub concurrent: Option<u64>,
    pub budget: Option<Budget>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// One scope a call is charged to: its shared-data key stem and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: ScopeKind,
    pub key: String,
    pub limits: Limits,
}

#[derive(Debug, Clone)]
struct CompiledTenant {
    limits: Limits,
    features: NameMap<Limits>,
    models: NameMap<Limits>,
}

/// The quota configuration, validated and compiled once.
#[derive(Debug, Clone)]
pub struct Quota {
    default: Option<CompiledTenant>,
    tenants: NameMap<CompiledTenant>,
    providers: NameMap<Limits>,
    pub estimate: EstimateConfig,
    /// Shared with the audit stage when both run in one filter (compiled once).
    pub prices: Option<Rc<PriceBook>>,
    /// Shared (`Rc`): calls and the ticker hold it while they wait for Webdis.
    pub fleet: Option<Rc<fleet::Fleet>>,
}

fn merge(over: &LimitSpec, base: &LimitSpec) -> LimitSpec {
    LimitSpec {
        requests_per_minute: over.requests_per_minute.or(base.requests_per_minute),
        requests_burst: over.requests_burst.or(if over.requests_per_minute.is_some() {
            None
        } else {
            base.requests_burst
        }),
        tokens_per_minute: over.tokens_per_minute.or(base.tokens_per_minute),
        tokens_burst: over.tokens_burst.or(if over.tokens_per_minute.is_some() { None } else { base.tokens_burst }),
        concurrent: over.concurrent.or(base.concurrent),
        budget: over.budget.clone().or_else(|| base.budget.clone()),
    }
}

/// A quota configuration error at `field`.
fn refused(field: String, problem: impl Into<String>) -> ConfigError {
    ConfigError::new("quota", field, problem)
}

/// Compiles the limits of the object at `at` (`tenants.acme`, `providers.openai`, ...).
fn compile_limits(at: &str, s: &LimitSpec) -> Result<Limits, ConfigError> {
    let limit = |what: &str, rate: Option<u64>, burst: Option<u64>| -> Result<Option<Limit>, ConfigError> {
        match (rate, burst) {
            (None, None) => Ok(None),
            (None, Some(_)) => {
                Err(refused(format!("{at}.{what}_burst"), format!("is set without `{what}_per_minute`")))
            }
            (Some(r), b) => {
                let burst = b.unwrap_or(r);
                if r == 0 {
                    return Err(refused(format!("{at}.{what}_per_minute"), "must be at least 1"));
                }
                if burst == 0 {
                    return Err(refused(format!("{at}.{what}_burst"), "must be at least 1"));
                }
                Ok(Some(Limit { rate_per_minute: r, burst }))
            }
        }
    };
    if s.concurrent == Some(0) {
        return Err(refused(format!("{at}.concurrent"), "must be at least 1"));
    }
    let budget = match &s.budget {
        None => None,
        Some(b) => {
            let usd = |what: &str, v: &Option<String>| -> Result<Option<u128>, ConfigError> {
                v.as_deref()
                    .map(|v| {
                        parse_usd(v).filter(|p| *p > 0).ok_or_else(|| {
                            refused(format!("{at}.budget.{what}"), format!("{v:?} is not a positive USD amount"))
                        })
                    })
                    .transpose()
            };
            let soft_percent = b.soft_percent.unwrap_or(80);
            if !(1..=100).contains(&soft_percent) {
                return Err(refused(format!("{at}.budget.soft_percent"), "must be 1..=100"));
            }
            let budget = Budget {
                daily: usd("daily_usd", &b.daily_usd)?,
                monthly: usd("monthly_usd", &b.monthly_usd)?,
                soft_percent,
            };
            if budget.daily.is_none() && budget.monthly.is_none() {
                return Err(refused(format!("{at}.budget"), "sets neither `daily_usd` nor `monthly_usd`"));
            }
            Some(budget)
        }
    };
    Ok(Limits {
        requests: limit("requests", s.requests_per_minute, s.requests_burst)?,
        tokens: limit("tokens", s.tokens_per_minute, s.tokens_burst)?,
        concurrent: s.concurrent,
        budget,
    })
}

/// Compiles a map of limits (a tenant's `features` or `models`, at `at`), each entry merged
/// over the default tenant's entry of the same name.
fn compile_map(at: &str, m: &NameMap<LimitSpec>, base: &NameMap<LimitSpec>) -> Result<NameMap<Limits>, ConfigError> {
    let mut out = NameMap::new();
    for name in m.keys().chain(base.keys()) {
        if out.contains_key(name) {
            continue;
        }
        // (An entry on one side only is compiled where it is, not copied.)
        let at = format!("{at}.{name}");
        let limits = match (m.get(name), base.get(name)) {
            (Some(o), Some(b)) => compile_limits(&at, &merge(o, b))?,
            (Some(spec), None) | (None, Some(spec)) => compile_limits(&at, spec)?,
            (None, None) => continue,
        };
        out.insert(name.own(), limits);
    }
    Ok(out)
}

impl TryFrom<&QuotaConfig> for Quota {
    type Error = ConfigError;

    fn try_from(cfg: &QuotaConfig) -> Result<Quota, ConfigError> {
        Quota::compile_with(cfg, None)
    }
}

impl Quota {
    pub fn compile(cfg: &QuotaConfig) -> Result<Quota, ConfigError> {
        Quota::try_from(cfg)
    }

    /// Compiles with `shared`, the gateway's one price book, when the configuration has none
    /// of its own.
    pub fn compile_with(cfg: &QuotaConfig, shared: Option<Rc<PriceBook>>) -> Result<Quota, ConfigError> {
        let empty = TenantSpec::default();
        let base = cfg.tenants.get("*").unwrap_or(&empty);
        let tenant = |name: &str, spec: &TenantSpec| -> Result<CompiledTenant, ConfigError> {
            let at = format!("tenants.{name}");
            let limits = compile_limits(&at, &merge(&spec.limits(), &base.limits()))?;
            let features = compile_map(&format!("{at}.features"), &spec.features, &base.features)?;
            let models = compile_map(&format!("{at}.models"), &spec.models, &base.models)?;
            Ok(CompiledTenant { limits, features, models })
        };
        let default = match cfg.tenants.get("*") {
            Some(spec) => Some(tenant("*", spec)?),
            None => None,
        };
        let mut tenants = NameMap::new();
        for (name, spec) in cfg.tenants.iter().filter(|(n, _)| n.as_str() != "*") {
            tenants.insert(name.own(), tenant(name, spec)?);
        }
        let mut providers = NameMap::new();
        for (name, spec) in &cfg.providers {
            let l = compile_limits(&format!("providers.{name}"), spec)?;
            if l.concurrent.is_some() || l.budget.is_some() {
                return Err(refused(
                    format!("providers.{name}"),
                    "only requests and tokens per minute can be limited per provider (limit calls in flight with \
                     the provider cluster's circuit breakers)",
                ));
            }
            providers.insert(name.own(), l);
        }
        let prices = match &cfg.price_book {
            Some(b) => Some(Rc::new(PriceBook::compile(b).map_err(|e| e.at("quota", "price_book"))?)),
            None => shared,
        };
        let fleet = cfg.fleet.as_ref().map(fleet::Fleet::compile).transpose()?.map(Rc::new);
        let q = Quota { default, tenants, providers, estimate: cfg.estimate.clone(), prices, fleet };
        if q.prices.is_none() && q.any_budget() {
            return Err(refused("price_book".own(), "is required: a budget is set, and calls are priced with it"));
        }
        Ok(q)
    }

    fn any_budget(&self) -> bool {
        self.tenants.values().chain(self.default.iter()).any(|t| {
            t.limits.budget.is_some()
                || t.features.values().any(|l| l.budget.is_some())
                || t.models.values().any(|l| l.budget.is_some())
        })
    }

    /// The scopes a call by `tenant` for `feature` and `alias` is charged to, broadest first.
    /// Scopes with no limits are left out.
    pub fn scopes(&self, tenant: &str, feature: Option<&str>, alias: Option<&str>) -> Vec<Scope> {
        let Some(t) = self.tenants.get(tenant).or(self.default.as_ref()) else { return Vec::new() };
        let mut out = Vec::with_capacity(3);
        let tkey = key_with("t.".own(), tenant);
        if !t.limits.is_empty() {
            out.push(Scope { kind: ScopeKind::Tenant, key: tkey.own(), limits: t.limits });
        }
        let pick = |m: &NameMap<Limits>, name: &str| m.get(name).or_else(|| m.get("*")).copied();
        if let Some(f) = feature {
            if let Some(l) = pick(&t.features, f).filter(|l| !l.is_empty()) {
                out.push(Scope { kind: ScopeKind::Feature, key: key_with(format!("{tkey}.f."), f), limits: l });
            }
        }
        if let Some(a) = alias {
            if let Some(l) = pick(&t.models, a).filter(|l| !l.is_empty()) {
                out.push(Scope { kind: ScopeKind::Model, key: key_with(format!("{tkey}.m."), a), limits: l });
            }
        }
        out
    }

    pub fn provider(&self, provider: &str) -> Option<Scope> {
        let l = self.providers.get(provider)?;
        Some(Scope { kind: ScopeKind::Provider, key: key_with("p.".own(), provider), limits: *l })
    }

    pub fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }
}

/// `prefix` followed by `name` as a shared-data key part (at most 128 characters; anything
/// but ASCII letters, digits, `-` and `_` becomes `_`), written without `format!` (these keys
/// are made for every call).
fn key_with(mut prefix: String, name: &str) -> String {
    prefix.reserve(name.len().min(128));
    prefix.extend(
        name.chars().take(128).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }),
    );
    prefix
}

// ---------------------------------------------------------------------------------------------
// Estimates

/// A call's up-front estimate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Estimate {
    pub prompt_tokens: u64,
    /// The caller's `max_tokens` (or `max_completion_tokens`), else the configured default.
    pub output_tokens: u64,
    /// The `model` the caller named.
    pub model: Option<String>,
}

impl Estimate {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.output_tokens)
    }
}

/// Bytes of text per estimated token: an over-estimate for English (about 4 characters per
/// token) that stays safe for other scripts, which take more bytes per character.
pub const BYTES_PER_TOKEN: u64 = 4;
/// Tokens added per message for its role and framing.
pub const TOKENS_PER_MESSAGE: u64 = 4;

/// Counts a JSON string (as written, quotes and escapes included) or any JSON text in pieces
/// that byte-pair tokenizers (OpenAI's cl100k/o200k, Anthropic's, Gemini's) never merge into one
/// token, so the count is at most the number of tokens for ordinary text:
///
/// - a run of ASCII letters: one piece per 4 letters, at least one (a word is at least one
///   token, however short: "a a a" is three);
/// - a run of digits: one piece per 3 digits (tokenizers split numbers in groups of up to 3);
/// - each other ASCII symbol: one piece (punctuation is rarely merged with a neighbour);
/// - a run of whitespace longer than one space, or holding a line break: one piece;
/// - each other character: one piece per 2 bytes of UTF-8 (CJK, Devanagari and emoji take one
///   token or more each).
///
/// A JSON escape counts as the character it stands for. It is an estimate, not a tokenizer:
/// random letter strings take more tokens than this says (README, "How the estimate bounds a
/// call").
pub fn text_pieces(raw: &str) -> u64 {
    #[derive(PartialEq, Eq, Clone, Copy)]
    enum Run {
        None,
        Letters(u64),
        Digits(u64),
        Space { len: u64, newline: bool },
    }
    fn close(run: Run) -> u64 {
        match run {
            Run::None => 0,
            Run::Letters(n) => n.div_ceil(4).max(1),
            Run::Digits(n) => n.div_ceil(3).max(1),
            Run::Space { len, newline } => u64::from(len > 1 || newline),
        }
    }
    let mut total = 0u64;
    let mut run = Run::None;
    let inner = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw);
    let mut chars = inner.chars();
    while let Some(mut c) = chars.next() {
        if c == '\\' {
            c = match chars.next() {
                Some('n' | 'r') => '\n',
                Some('t') => '\t',
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).unwrap_or('\u{fffd}')
                }
                Some(other) => other,
                None => break,
            };
        }
        run = match (run, c) {
            (Run::Letters(n), c) if c.is_ascii_alphabetic() => Run::Letters(n + 1),
            (Run::Digits(n), c) if c.is_ascii_digit() => Run::Digits(n + 1),
            (Run::Space { len, newline }, c) if c.is_whitespace() => {
                Run::Space { len: len + 1, newline: newline || c == '\n' }
            }
            (prev, c) => {
                total += close(prev);
                if c.is_ascii_alphabetic() {
                    Run::Letters(1)
                } else if c.is_ascii_digit() {
                    Run::Digits(1)
                } else if c.is_whitespace() {
                    Run::Space { len: 1, newline: c == '\n' }
                } else {
                    total += if c.is_ascii() { 1 } else { (c.len_utf8() as u64).div_ceil(2) };
                    Run::None
                }
            }
        };
    }
    total + close(run)
}

/// What the quota plane needs to know of a chat completion request (OpenAI shape, or a Messages
/// request: its system prompt and blocks are counted too), read once
/// (by route-select when it runs, which hands it on in filter state; by quota otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestFacts {
    pub model: Option<String>,
    pub stream: bool,
    pub include_usage: bool,
    /// Bytes of message text, tool calls and tool definitions, as written in the JSON.
    pub text_bytes: u64,
    /// The same text counted in pieces no tokenizer merges (see [`text_pieces`]).
    pub text_pieces: u64,
    pub messages: u64,
    pub images: u64,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_output: Option<u64>,
    /// The request's `response_format`, as written (not encoded: it is handed on by itself).
    pub output_format: Option<String>,
    /// A Messages request's `output_config`, as written (its `format` is what `response_format`
    /// is to chat: the route stage hands it on as that; not encoded either).
    pub output_config: Option<String>,
    /// The request has a `messages` list (what the Messages door requires; not encoded).
    pub messages_listed: bool,
}

impl RequestFacts {
    /// Reads a request body without building a tree: only the fields counted are looked at.
    /// Text is measured as it is written in the JSON (escapes included): never less than the text.
    pub fn read(body: &[u8]) -> Result<RequestFacts, crate::wire::read::Error> {
        use crate::wire::read::Raw;

        struct Req<'a> {
            messages: Option<Vec<Msg<'a>>>,
            tools: Option<Raw<'a>>,
            max_tokens: Option<u64>,
            max_completion_tokens: Option<u64>,
            model: Option<std::borrow::Cow<'a, str>>,
            stream: Option<bool>,
            stream_options: Option<StreamOptions>,
            /// Embeddings: a string, strings, or token arrays.
            input: Option<Raw<'a>>,
            response_format: Option<Raw<'a>>,
            /// Messages: the system prompt (a string or text blocks), and structured outputs
            /// (`output_config.format`, as a Responses request's `text.format`).
            system: Option<Raw<'a>>,
            output_config: Option<Raw<'a>>,
        }
        crate::wire::object::from_object!(Req<'a> {
            messages: "messages" [],
            tools: "tools" [],
            max_tokens: "max_tokens" [],
            max_completion_tokens: "max_completion_tokens" [],
            model: "model" [],
            stream: "stream" [],
            stream_options: "stream_options" [],
            input: "input" [],
            response_format: "response_format" [],
            system: "system" [],
            output_config: "output_config" [],
        });
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        crate::wire::object::from_object!(StreamOptions {
            include_usage: "include_usage" [],
        });
        struct Msg<'a> {
            content: Option<Raw<'a>>,
            tool_calls: Option<Raw<'a>>,
        }
        crate::wire::object::from_object!(Msg<'a> {
            content: "content" [],
            tool_calls: "tool_calls" [],
        });
        struct Part<'a> {
            kind: Option<std::borrow::Cow<'a, str>>,
            text: Option<Raw<'a>>,
            /// Messages blocks: a tool call's input, a tool result's content.
            input: Option<Raw<'a>>,
            content: Option<Raw<'a>>,
        }
        crate::wire::object::from_object!(Part<'a> {
            kind: "type" [],
            text: "text" [],
            input: "input" [],
            content: "content" [],
        });
        let raw_len = |r: Raw<'_>| r.get().len().saturating_sub(2) as u64;
        let pieces = |r: Raw<'_>| text_pieces(r.get());
        let req: Req = crate::wire::from_slice(body)?;
        let mut f = RequestFacts {
            model: req.model.map(|m| m.into_owned()),
            stream: req.stream == Some(true),
            include_usage: req.stream_options.and_then(|o| o.include_usage) == Some(true),
            messages: req.messages.as_ref().map_or(0, |m| m.len() as u64),
            messages_listed: req.messages.is_some(),
            max_output: req.max_completion_tokens.or(req.max_tokens),
            output_format: req.response_format.map(|r| r.get().own()).filter(|r| r != "null"),
            output_config: req.output_config.map(|r| r.get().own()).filter(|r| r != "null"),
            ..RequestFacts::default()
        };
        for m in req.messages.iter().flatten() {
            match m.content {
                Some(c) if c.get().starts_with('"') => {
                    f.text_bytes += raw_len(c);
                    f.text_pieces += pieces(c);
                }
                Some(c) if c.get().starts_with('[') => {
                    for p in crate::wire::from_str::<Vec<Part>>(c.get())? {
                        match p.kind.as_deref() {
                            Some("image_url" | "image" | "input_audio" | "file" | "document") => f.images += 1,
                            _ => {
                                for r in [p.text, p.input, p.content].into_iter().flatten() {
                                    f.text_bytes += raw_len(r);
                                    f.text_pieces += pieces(r);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            f.text_bytes += m.tool_calls.map(|t| t.get().len() as u64).unwrap_or(0);
            f.text_pieces += m.tool_calls.map(pieces).unwrap_or(0);
        }
        f.text_bytes += req.tools.map(|t| t.get().len() as u64).unwrap_or(0);
        f.text_pieces += req.tools.map(pieces).unwrap_or(0);
        if let Some(system) = req.system.filter(|s| s.get() != "null") {
            f.text_bytes += raw_len(system);
            f.text_pieces += pieces(system);
            f.messages += 1;
        }
        if let Some(input) = req.input.filter(|_| req.messages.as_ref().is_none_or(Vec::is_empty)) {
            // Embeddings: the input is all there is, and nothing is generated. Token arrays
            // count one per number (a comma or bracket each, at least).
            let raw = input.get();
            f.text_bytes += raw.len() as u64;
            f.text_pieces += if raw.bytes().any(|b| b == b'"') {
                text_pieces(raw)
            } else {
                raw.bytes().filter(|b| *b == b',').count() as u64 + 1
            };
            f.max_output = Some(0);
        }
        Ok(f)
    }

    /// Reads a Responses request (`POST /v1/responses`) as the facts of the chat request it
    /// stands for, without building a tree: `instructions` and each input item count as a
    /// message, their text (as written in the JSON, never less than the text) and the tools as
    /// text, `input_image` parts as images, `max_output_tokens` as the output bound.
    pub fn read_responses(body: &[u8]) -> Result<RequestFacts, crate::wire::read::Error> {
        use crate::wire::read::Raw;

        struct Req<'a> {
            model: Option<std::borrow::Cow<'a, str>>,
            instructions: Option<Raw<'a>>,
            input: Option<Raw<'a>>,
            tools: Option<Raw<'a>>,
            max_output_tokens: Option<u64>,
            stream: Option<bool>,
            text: Option<Raw<'a>>,
        }
        crate::wire::object::from_object!(Req<'a> {
            model: "model" [],
            instructions: "instructions" [],
            input: "input" [],
            tools: "tools" [],
            max_output_tokens: "max_output_tokens" [],
            stream: "stream" [],
            text: "text" [],
        });
        struct Item<'a> {
            content: Option<Raw<'a>>,
            /// A function call: its id, name and arguments are text the model reads.
            call_id: Option<Raw<'a>>,
            name: Option<Raw<'a>>,
            arguments: Option<Raw<'a>>,
            output: Option<Raw<'a>>,
        }
        crate::wire::object::from_object!(Item<'a> {
            content: "content" [],
            call_id: "call_id" [],
            name: "name" [],
            arguments: "arguments" [],
            output: "output" [],
        });
        let req: Req = crate::wire::from_slice(body)?;
        let mut f = RequestFacts {
            model: req.model.map(|m| m.into_owned()),
            stream: req.stream == Some(true),
            include_usage: true,
            max_output: req.max_output_tokens,
            // `text.format`, as the chat `response_format` it stands for (what attempts check).
            output_format: req.text.and_then(|t| crate::guard::schema::response_format_of_text(t.get())),
            ..RequestFacts::default()
        };
        let mut text = |r: Raw<'_>| {
            f.text_bytes += r.get().len().saturating_sub(2) as u64;
            f.text_pieces += text_pieces(r.get());
        };
        if let Some(i) = req.instructions.filter(|i| i.get() != "null") {
            text(i);
            f.messages += 1;
        }
        match req.input {
            Some(i) if i.get().starts_with('[') => {
                for item in crate::wire::from_str::<Vec<Item>>(i.get())? {
                    f.messages += 1;
                    for r in [item.content, item.call_id, item.name, item.arguments, item.output].into_iter().flatten()
                    {
                        let mut rest = r.get();
                        while let Some(i) = rest.find_str("\"input_image\"") {
                            f.images += 1;
                            rest = rest.get(i + 13..).unwrap_or_default();
                        }
                        text(r);
                    }
                }
            }
            Some(i) => {
                text(i);
                f.messages += 1;
            }
            None => {}
        }
        if let Some(t) = req.tools {
            text(t);
        }
        Ok(f)
    }

    /// One line for filter state: `text_bytes text_pieces messages images max_output|- model`.
    pub fn encode(&self) -> String {
        // (Written without `format!`: this runs for every call.)
        let mut out = Vec::with_capacity(64);
        for n in [self.text_bytes, self.text_pieces, self.messages, self.images] {
            crate::headers::push_decimal(&mut out, n);
            out.push(b' ');
        }
        match self.max_output {
            Some(m) => crate::headers::push_decimal(&mut out, m),
            None => out.push(b'-'),
        }
        out.push(b' ');
        out.put(self.model.as_deref().unwrap_or("").as_bytes());
        // Digits, spaces and the model's (UTF-8) name only.
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn decode(s: &str) -> Option<RequestFacts> {
        let mut it = s.splitn(6, ' ');
        let text_bytes = it.next()?.int_as()?;
        let text_pieces = it.next()?.int_as()?;
        let messages = it.next()?.int_as()?;
        let images = it.next()?.int_as()?;
        let max_output = match it.next()? {
            "-" => None,
            m => Some(m.int_as()?),
        };
        let model = it.next().filter(|m| !m.is_empty()).map(str::to_string);
        Some(RequestFacts { model, text_bytes, text_pieces, messages, images, max_output, ..RequestFacts::default() })
    }

    /// prompt = the larger of ceil(text bytes / 4) and the text's pieces, + 4 per message +
    /// `tokens_per_image` per image; output = the caller's bound, else the configured default.
    pub fn estimate(&self, cfg: &EstimateConfig) -> Estimate {
        let prompt_tokens = self.text_bytes.div_ceil(BYTES_PER_TOKEN).max(self.text_pieces)
            + self.messages * TOKENS_PER_MESSAGE
            + self.images.saturating_mul(cfg.tokens_per_image);
        Estimate {
            prompt_tokens,
            output_tokens: self.max_output.unwrap_or(cfg.default_max_tokens),
            model: self.model.clone(),
        }
    }
}

/// Estimates a chat completion request (OpenAI shape). `None` when the body is not JSON.
pub fn estimate(body: &[u8], cfg: &EstimateConfig) -> Option<Estimate> {
    RequestFacts::read(body).ok().map(|f| f.estimate(cfg))
}

impl Quota {
    /// The most a call could cost: its estimate priced at the dearest of the models it may be
    /// served by. A model missing from the price book is priced at the book's dearest rates.
    pub fn upper_bound_cost(&self, est: &Estimate, candidates: &[&str]) -> Option<u128> {
        let book = self.prices.as_ref()?;
        let worst = Usage { input: est.prompt_tokens, cached_input: 0, output: est.output_tokens, ..Usage::default() };
        let mut best: Option<u128> = None;
        for m in candidates {
            let c = book.cost_pico(m, &worst).unwrap_or_else(|| book.max_cost_pico(&worst));
            best = Some(best.map_or(c, |b| b.max(c)));
        }
        Some(best.unwrap_or_else(|| book.max_cost_pico(&worst)))
    }
}

// ---------------------------------------------------------------------------------------------
// Budgets

/// The number of the budget period containing `now_ms`: days since the epoch, or months since
/// year 0 (UTC).
pub fn period_id(period: Period, now_ms: u64) -> u64 {
    let day = now_ms / 86_400_000;
    match period {
        Period::Day => day,
        Period::Month => {
            let (y, m, _) = civil_from_days(i64::try_from(day).unwrap_or(0));
            u64::try_from(y).unwrap_or(0) * 12 + u64::from(m) - 1
        }
    }
}

/// A budget's stored state: the period it counts and what was spent (or reserved) in it. One
/// key per scope and kind of period, rolled over in place, so the store does not grow by a key
/// a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetState {
    pub period: u64,
    pub spent: u128,
}

impl BudgetState {
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.period.to_le_bytes());
        out[8..].copy_from_slice(&self.spent.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Option<BudgetState> {
        Some(BudgetState {
            period: u64::from_le_bytes(b.get(..8)?.try_into().ok()?),
            spent: u128::from_le_bytes(b.get(8..24)?.try_into().ok()?),
        })
    }

    /// What is spent in `period` (nothing, when the state is of an earlier period).
    pub fn spent_in(&self, period: u64) -> u128 {
        if self.period == period {
            self.spent
        } else {
            0
        }
    }

    /// Replaces a reservation made in `period` by the real cost. When the period has rolled over
    /// since, the cost counts in the new one (never lost, never refunded from a period that is
    /// gone).
    pub fn settled(&self, period: u64, reserved: u128, actual: u128) -> BudgetState {
        if self.period == period {
            BudgetState { period, spent: settle(self.spent, reserved, actual) }
        } else {
            BudgetState { period: self.period, spent: self.spent.saturating_add(actual) }
        }
    }
}

/// The ms until the period containing `now_ms` ends.
pub fn ms_to_period_end(period: Period, now_ms: u64) -> u64 {
    let day = now_ms / 86_400_000;
    let end_day = match period {
        Period::Day => day + 1,
        Period::Month => {
            let (y, m, _) = civil_from_days(i64::try_from(day).unwrap_or(0));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            u64::try_from(days_from_civil(ny, nm, 1)).unwrap_or(day + 1)
        }
    };
    (end_day * 86_400_000).saturating_sub(now_ms)
}

/// What reserving a call's upper-bound cost against a budget decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetDecision {
    /// Reserved: the new amount spent (including reservations), and whether it is now past the
    /// soft threshold.
    Reserved { spent: u128, soft: bool },
    /// The cap would be passed.
    Refused,
}

/// Reserves `cost` against `cap` when `spent` is already used or reserved.
pub fn reserve(spent: u128, cost: u128, cap: u128, soft_percent: u8) -> BudgetDecision {
    let after = spent.saturating_add(cost);
    if after > cap {
        return BudgetDecision::Refused;
    }
    BudgetDecision::Reserved { spent: after, soft: past_soft(after, cap, soft_percent) }
}

/// Whether `spent` is past `soft_percent` of `cap`.
pub fn past_soft(spent: u128, cap: u128, soft_percent: u8) -> bool {
    spent.saturating_mul(100) >= cap.saturating_mul(u128::from(soft_percent))
}

/// Replaces a reservation with what the call really cost.
pub fn settle(spent: u128, reserved: u128, actual: u128) -> u128 {
    spent.saturating_sub(reserved).saturating_add(actual)
}

// ---------------------------------------------------------------------------------------------
// Reconciliation

/// How a call ended, as far as what it costs. One rule, used by the budget (quota) and by the
/// audit record (audit-emit hands its figure to quota in filter state), so spend reports from
/// the audit log and the budget counters agree:
///
/// - the provider reported usage: exactly that;
/// - a streamed answer was cut (the provider dropped it, or sent an in-stream error) before it
///   reported usage: the prompt estimate plus one output token per content event streamed;
/// - a complete answer that reported no usage: the whole estimate (the caller's output bound);
/// - the caller left while a provider was working on the call, before any answer: the prompt
///   estimate (input is billed even when the caller leaves early);
/// - the provider billed nothing: every attempt failed with an error status, the answer could not
///   be read, the gateway refused the call, or no provider was reached: nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    Reported(Usage),
    Partial { content_events: u64 },
    Unreported,
    Abandoned,
    Nothing,
}

/// What the end of a call shows, for [`Billing::of`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CallEnd {
    /// Usage the provider reported.
    pub usage: Option<Usage>,
    /// The status the caller got; `None` when the caller left before any answer.
    pub status: Option<u16>,
    /// The answer was a success that could not be read (replaced by a 502).
    pub unreadable: bool,
    /// A streamed answer: (content events seen, whether it ended cleanly with its end marker).
    pub stream: Option<(u64, bool)>,
    /// A provider was sent the call.
    pub attempted: bool,
}

impl Billing {
    pub fn of(end: &CallEnd) -> Billing {
        if let Some(u) = end.usage {
            return Billing::Reported(u);
        }
        match end.status {
            Some(s) if !(200..300).contains(&s) || end.unreadable => Billing::Nothing,
            Some(_) => match end.stream {
                Some((content_events, false)) => Billing::Partial { content_events },
                _ => Billing::Unreported,
            },
            None if end.attempted => Billing::Abandoned,
            None => Billing::Nothing,
        }
    }

    /// The usage charged (`None`: nothing), and whether it is an estimate.
    pub fn charged(self, est: &Estimate) -> Option<(Usage, bool)> {
        let (input, output) = match self {
            Billing::Reported(u) => return Some((u, false)),
            Billing::Partial { content_events } => (est.prompt_tokens, content_events),
            Billing::Unreported => (est.prompt_tokens, est.output_tokens),
            Billing::Abandoned => (est.prompt_tokens, 0),
            Billing::Nothing => return None,
        };
        Some((Usage { input, output, ..Usage::default() }, true))
    }
}

/// What a call was charged, as audit-emit settled it, handed to quota in filter state so both
/// use one figure: `input cached output reasoning estimated cost_pico` (`-`: not priced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settled {
    /// `None`: the call costs nothing.
    pub usage: Option<Usage>,
    pub estimated: bool,
    pub cost_pico: Option<u128>,
}

impl Settled {
    pub fn encode(&self) -> String {
        let cost = self.cost_pico.map(crate::headers::decimal_u128).unwrap_or_else(|| "-".own());
        match self.usage {
            None => format!("- {cost}"),
            Some(u) => format!(
                "{} {} {} {} {} {cost} {} {}",
                u.input,
                u.cached_input,
                u.output,
                u.reasoning,
                u8::from(self.estimated),
                u.cache_write,
                u.cache_write_1h
            ),
        }
    }

    /// What [`Settled::encode`] wrote (or a module before cache writes were counted, without
    /// the last two numbers, or before their hour was, without the last).
    pub fn decode(s: &str) -> Option<Settled> {
        let f: Vec<&str> = s.parts(b' ').collect();
        let cost = |c: &str| if c == "-" { Some(None) } else { c.parse().ok().map(Some) };
        let (f, cache_write, cache_write_1h) = match f.as_slice() {
            [rest @ .., w, h] if rest.len() == 6 => (rest, w.int()?, h.int()?),
            [rest @ .., w] if rest.len() == 6 => (rest, w.int()?, 0),
            all => (all, 0, 0),
        };
        match f {
            ["-", c] => Some(Settled { usage: None, estimated: false, cost_pico: cost(c)? }),
            [i, ci, o, r, e, c] => Some(Settled {
                usage: Some(Usage {
                    input: i.int()?,
                    cached_input: ci.int()?,
                    output: o.int()?,
                    reasoning: r.int()?,
                    cache_write,
                    cache_write_1h,
                }),
                estimated: *e == "1",
                cost_pico: cost(c)?,
            }),
            _ => None,
        }
    }
}

/// The up-front estimate in filter state (`prompt output`), for the per-attempt quota filter
/// and for audit-emit (which settles a call that reported no usage with it).
pub fn encode_estimate(e: &Estimate) -> String {
    format!("{} {}", e.prompt_tokens, e.output_tokens)
}

pub fn decode_estimate(s: &str) -> Option<Estimate> {
    let (p, o) = s.cut(b' ')?;
    Some(Estimate { prompt_tokens: p.int_as()?, output_tokens: o.int_as()?, model: None })
}

pub mod stage;

#[cfg(test)]
mod tests;
