//! One call, one context: the stages of the gateway run in order inside one filter.
//!
//! - [`ListenerCall`] runs, on the listener: audit (first, so it sees every answer) → auth →
//!   route → quota, and on the way back the same stages in reverse, as Envoy would run four
//!   filters, without four filter instances.
//! - [`AttemptCall`] runs, once per upstream attempt: route (privacy zone, translation, the
//!   attempt record) → quota (the provider's buckets) → credential.
//!
//! A stage that is not configured is skipped, so the design card's four filters are these same
//! contexts with one stage enabled. The stages still hand the call over in filter state (the
//! identity, the request facts, the attempts), as they must when they run as separate filters.

use crate::config::NameMap;
use crate::text::Text;
use std::rc::Rc;

use crate::audit::price::{PriceBook, PriceBookConfig};
use crate::audit::stage::{Audit, AuditCall, AuditConfig};
use crate::auth::keys::KeyRing;
use crate::auth::{self, AttemptCredential, AuthConfig, CredentialPlane};
use crate::cache::stage::{CacheCall, Decision};
use crate::cache::Cache;
use crate::error::ConfigError;
use crate::guard::stage::{GuardCall, GuardDecision};
use crate::headers;
use crate::host::{Flow, Host, HttpAnswer};
use crate::provider::ProviderConfig;
use crate::quota::stage::{ProviderAttempt, QuotaCall};
use crate::quota::{Quota, QuotaConfig};
use crate::route::stage::{RouteAttempt, Select};
use crate::route::{Api, RouteConfig};

/// The configuration of the `gateway` and `gateway_upstream` filters: each stage's own
/// configuration (the same JSON as its filter's) under its name; a stage left out is not run.
/// Both filters take the same JSON: the listener uses `auth.keys`, the attempts
/// `auth.providers`.
#[derive(Default)]
pub struct GatewayConfig {
    /// One table of the providers, for every stage (their API, credentials and limits),
    /// instead of a table in each stage's configuration.
    pub providers: Option<NameMap<ProviderConfig>>,
    /// One price book, compiled once, for quota's budgets and the audit record.
    pub price_book: Option<PriceBookConfig>,
    pub auth: Option<AuthConfig>,
    pub route: Option<RouteConfig>,
    pub quota: Option<QuotaConfig>,
    pub audit: Option<AuditConfig>,
}

impl GatewayConfig {
    /// Hands the one `providers` table to the stages that use it (and refuses a second table
    /// in a stage), and compiles the one price book.
    fn resolve(&mut self) -> Result<Option<Rc<PriceBook>>, ConfigError> {
        if let Some(table) = self.providers.take() {
            if let Some(r) = &mut self.route {
                if !r.providers.is_empty() {
                    return Err(both("route.providers", "providers"));
                }
                r.providers = table.clone();
            }
            if let Some(a) = &mut self.auth {
                if !a.providers.is_empty() {
                    return Err(both("auth.providers", "providers"));
                }
                a.providers = table.clone();
            }
            if let Some(q) = &mut self.quota {
                if !q.providers.is_empty() {
                    return Err(both("quota.providers", "providers"));
                }
                q.providers = table.iter().filter_map(|(n, p)| Some((n.own(), p.limits.clone()?))).collect();
            }
        }
        let Some(book) = &self.price_book else { return Ok(None) };
        if self.quota.as_ref().is_some_and(|q| q.price_book.is_some()) {
            return Err(both("quota.price_book", "price_book"));
        }
        if self.audit.as_ref().is_some_and(|a| a.price_book.is_some()) {
            return Err(both("audit.price_book", "price_book"));
        }
        PriceBook::compile(book).map(|b| Some(Rc::new(b))).map_err(|e| e.at("gateway", "price_book"))
    }
}

/// The quota stage, with the gateway's one price book (both sides compile it the same way).
fn compile_quota(
    cfg: Option<&QuotaConfig>,
    book: &Option<Rc<PriceBook>>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Rc<Quota>>, ConfigError> {
    cfg.map(|q| Quota::compile_with(q, book.clone()))
        .transpose()
        .map(|q| {
            q.map(|mut q| {
                // Fleet mode's credentials for Webdis, from Envoy's environment.
                // (Just compiled: the one holder of it.)
                if let Some(f) = q.fleet.as_mut().and_then(Rc::get_mut) {
                    f.read_env(env);
                }
                Rc::new(q)
            })
        })
        .map_err(|e| e.in_stage("quota"))
}

fn both(stage: &str, shared: &str) -> ConfigError {
    ConfigError::new("gateway", stage, format!("the gateway's one `{shared}` is given too; keep one"))
}

/// The listener's compiled stages.
#[derive(Default)]
pub struct Listener {
    pub auth: Option<KeyRing>,
    pub route: Option<Rc<RouteConfig>>,
    /// How shadow legs are sent (the route's `shadow`, its key from the environment).
    pub shadow: Option<Rc<crate::route::shadow::ShadowLeg>>,
    pub cache: Option<Rc<Cache>>,
    pub quota: Option<Rc<Quota>>,
    pub audit: Option<Audit>,
}

impl TryFrom<GatewayConfig> for Listener {
    type Error = ConfigError;

    /// Compiles the listener's stages with no environment (see [`Listener::compile_env`]).
    fn try_from(cfg: GatewayConfig) -> Result<Listener, ConfigError> {
        Listener::compile_env(cfg, &|_| None)
    }
}

impl Listener {
    /// Compiles the listener's stages; `env` is the VM's environment (the semantic cache's
    /// embedder key). An error in a stage's part names that stage ([`ConfigError::in_stage`]);
    /// the `gateway` filter reports it from the top of its configuration
    /// ([`ConfigError::in_gateway`]), a design-card filter as its own.
    pub fn compile_env(cfg: GatewayConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Listener, ConfigError> {
        let mut cfg = cfg;
        let book = cfg.resolve()?;
        // (Moved out and compiled, not copied: the cache and the shadow leg read the compiled
        // one, which keeps their parts as configured.)
        let route = match cfg.route.take() {
            Some(r) => Some(Rc::new(r.compiled().map_err(|e| e.in_stage("route"))?)),
            None => None,
        };
        // The cache store: the route's `cache` bound, or the default one when an alias or rule
        // names a cache policy.
        let cache = match route.as_deref() {
            Some(r) if r.cache.is_some() || r.caches() => {
                let default_store;
                let store = match &r.cache {
                    Some(c) => c,
                    None => {
                        default_store = crate::cache::CacheConfig::default();
                        &default_store
                    }
                };
                let mut cache = Cache::try_from(store).map_err(|e| e.in_stage("route"))?;
                if let Some(s) = &store.shared {
                    cache.shared =
                        Some(crate::cache::shared::Shared::compile(s, env).map_err(|e| e.in_stage("route"))?);
                }
                match &store.semantic {
                    Some(s) => {
                        cache.semantic =
                            Some(crate::cache::semantic::Semantic::compile(s, env).map_err(|e| e.in_stage("route"))?)
                    }
                    None if r.caches_by_meaning() => {
                        return Err(ConfigError::new(
                            "route-select",
                            "cache.semantic",
                            "a policy in a semantic mode needs the semantic cache's embedder",
                        )
                        .in_stage("route"));
                    }
                    None => {}
                }
                Some(Rc::new(cache))
            }
            _ => None,
        };
        let shadow = match route.as_ref().and_then(|r| r.shadow.as_ref()) {
            Some(s) => {
                Some(Rc::new(crate::route::shadow::ShadowLeg::compile(s, env).map_err(|e| e.in_stage("route"))?))
            }
            None => None,
        };
        Ok(Listener {
            auth: cfg.auth.as_ref().map(KeyRing::try_from).transpose().map_err(|e| e.in_stage("auth"))?,
            cache,
            route,
            shadow,
            quota: compile_quota(cfg.quota.as_ref(), &book, env)?,
            audit: cfg
                .audit
                .as_ref()
                .map(|a| Audit::compile_with(a, book.clone()))
                .transpose()
                .map_err(|e| e.in_stage("audit"))?,
        })
    }
}

impl Listener {
    pub fn compile(cfg: GatewayConfig) -> Result<Listener, ConfigError> {
        Listener::try_from(cfg)
    }
}

/// The stages that may answer the caller themselves, in the listener's order (audit, first,
/// never does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Auth,
    Route,
    Guard,
    Cache,
    Quota,
}

/// A shadow leg kept until the call ends, with what it needs of the request (its headers are
/// not read at the end).
struct PendingLeg {
    path: &'static str,
    body: Vec<u8>,
    candidate: String,
    request_id: String,
    zone: Option<String>,
}

/// One call on the listener.
pub struct ListenerCall {
    cfg: Rc<Listener>,
    audit: Option<AuditCall>,
    route: Option<Select>,
    guard: Option<GuardCall>,
    cache: Option<CacheCall>,
    quota: Option<QuotaCall>,
    /// The stage that answered the caller itself: its answer goes back only through it and the
    /// stages before it, as a local reply from filter N is encoded only through filters 1..N.
    refused_at: Option<Stage>,
    /// The route stage holds the request headers until the body is complete: the stages after
    /// it see the headers then.
    route_holds_headers: bool,
    /// The cache or guard stage holds the answer's headers until its body is complete.
    cache_holds: bool,
    /// The cache stage waits for the request's embedding: the request is held.
    cache_waits: bool,
    /// A shadow leg, and whether the call went on to its provider (then the leg is sent when
    /// the call ends).
    shadow: Option<PendingLeg>,
    shadow_goes: bool,
}

impl ListenerCall {
    pub fn new(h: &impl Host, cfg: Rc<Listener>) -> ListenerCall {
        ListenerCall {
            audit: cfg.audit.as_ref().map(|_| AuditCall::new(h)),
            route: cfg.route.clone().map(Select::new),
            guard: cfg.route.clone().filter(|r| r.guards()).map(GuardCall::new),
            cache: cfg.cache.clone().zip(cfg.route.clone()).map(|(c, r)| CacheCall::new(c, r)),
            quota: cfg.quota.clone().map(QuotaCall::new),
            cfg,
            refused_at: None,
            route_holds_headers: false,
            cache_holds: false,
            cache_waits: false,
            shadow: None,
            shadow_goes: false,
        }
    }

    /// Keeps a copy of the request for its shadow leg, when its alias has one and the call is
    /// in the sample (never for a shadow leg itself). The body is as it goes upstream.
    fn keep_shadow(&mut self, h: &impl Host, size: usize) {
        // Only a call whose alias has a shadow reads anything more.
        let Some((path, policy)) = self.cfg.shadow.as_ref().and(self.route.as_ref()).and_then(|r| r.shadow_policy())
        else {
            return;
        };
        let id = h.call_identity();
        if id.as_ref().is_some_and(|i| i.shadow_of.is_some()) {
            return;
        }
        let rid = h.request_header("x-request-id").unwrap_or_default();
        if !crate::route::shadow::sampled(&rid, policy.percent) {
            return;
        }
        let candidate = policy.alias.own();
        if let Some(body) = crate::route::shadow::body(&h.request_body(size), &candidate) {
            let zone = id.and_then(|i| i.zone.clone());
            self.shadow = Some(PendingLeg { path, body, candidate, request_id: rid, zone });
        }
    }

    /// The call goes on to its provider: its shadow leg (if any) will be sent. The record says
    /// so now (a design-card audit filter may end before this one).
    fn send_shadow(&mut self, h: &impl Host) {
        if let Some(leg) = &self.shadow {
            crate::route::stage::add_route_flag(h, &format!("shadow_sent:{}", leg.candidate));
            self.shadow_goes = true;
        }
    }

    /// The call has ended: its leg goes now, so that its work never delays the caller's answer
    /// on this worker, and is not waited for.
    fn dispatch_shadow(&mut self, h: &impl Host) {
        let (Some(p), Some(leg), true) = (self.shadow.take(), self.cfg.shadow.as_ref(), self.shadow_goes) else {
            return;
        };
        if crate::route::shadow::send(h, leg, p.path, &p.body, &p.request_id, p.zone.as_deref()).is_err() {
            h.warn("route-select: the proxy refused to send a shadow leg");
        }
    }

    /// Whether the answer reaches `stage` on its way back.
    fn reaches(&self, stage: Stage) -> bool {
        self.refused_at.is_none_or(|r| stage <= r)
    }

    fn refused(&mut self, stage: Stage) -> Flow {
        self.refused_at = Some(stage);
        Flow::Refused
    }

    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if let Some(a) = &mut self.audit {
            a.on_request_headers(h);
        }
        if let Some(ring) = &self.cfg.auth {
            if auth::authenticate(h, ring).is_err() {
                return self.refused(Stage::Auth);
            }
        }
        if let Some(r) = &mut self.route {
            match r.on_request_headers(h, eos) {
                Flow::Continue => {}
                Flow::Pause => {
                    self.route_holds_headers = true;
                    return Flow::Pause;
                }
                Flow::Refused => return self.refused(Stage::Route),
            }
        }
        self.quota_headers(h, eos)
    }

    fn quota_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        match self.quota.as_mut().map(|q| q.on_request_headers(h, eos)) {
            Some(Flow::Refused) => self.refused(Stage::Quota),
            Some(f) => f,
            None => Flow::Continue,
        }
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        if self.route_holds_headers {
            match self.route.as_mut().map(|r| r.on_request_body(h, size, eos)) {
                Some(Flow::Pause) => return Flow::Pause,
                Some(Flow::Refused) => return self.refused(Stage::Route),
                _ => {}
            }
            // The route stage let the headers go: the later stages see them now, then the body.
            self.route_holds_headers = false;
            // The request is complete and routed: guardrails, then the cache.
            match self.guard.as_mut().map(|g| g.on_request(h)) {
                Some(GuardDecision::Refused) => return self.refused(Stage::Guard),
                Some(GuardDecision::Reroute(to)) => {
                    if let Some(Err(e)) = self.route.as_mut().map(|r| r.reroute(h, &to)) {
                        h.set_property(headers::PROP_REFUSAL, "guard");
                        h.send_error(&e, crate::host::messages_door(h), &[]);
                        return self.refused(Stage::Guard);
                    }
                }
                _ => {}
            }
            self.keep_shadow(h, size);
            let handed = self.guard.as_mut().and_then(GuardCall::take_request);
            let decision = self.cache.as_mut().map_or(Decision::GoOn, |c| c.on_request(h, handed));
            if decision == Decision::Wait {
                // The semantic cache waits for the request's embedding (on_http_call_response).
                self.cache_waits = true;
                return Flow::Pause;
            }
            match self.after_cache(h, decision) {
                Flow::Continue => {}
                f => return f,
            }
        }
        if self.cache_waits {
            return Flow::Pause;
        }
        let flow = match self.quota.as_mut().map(|q| q.on_request_body(h, size, eos)) {
            Some(Flow::Refused) => self.refused(Stage::Quota),
            Some(f) => f,
            None => Flow::Continue,
        };
        if flow == Flow::Continue && eos {
            self.send_shadow(h);
        }
        flow
    }

    /// What follows the cache's decision: a hit is served (charged to the request buckets
    /// first, when its policy says so: then its answer goes back through quota too); otherwise
    /// quota sees the request.
    fn after_cache(&mut self, h: &impl Host, decision: Decision) -> Flow {
        if let (Decision::Hit(charge_requests), Some(c)) = (decision, &mut self.cache) {
            let (charged, at) = match &mut self.quota {
                Some(q) if charge_requests => (q.admit_requests_only(h), Stage::Quota),
                _ => (Flow::Continue, Stage::Cache),
            };
            if charged == Flow::Refused {
                return self.refused(Stage::Quota);
            }
            if c.serve(h) {
                // Answered from the cache: no provider's answer to compare a shadow's with.
                self.shadow = None;
                return self.refused(at);
            }
            if at == Stage::Quota {
                // Not served after all: quota has admitted the call already.
                return Flow::Continue;
            }
        }
        self.quota_headers(h, false)
    }

    /// The answer to a call a stage made: the semantic cache's embedding. The request, held
    /// since, goes on unless the cache or quota answered it.
    pub fn on_http_call_response(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) {
        // Quota's top-up of its fleet leases: the call goes on, waits for another, or was refused.
        if let Some(flow) = self.quota.as_mut().and_then(|q| q.on_http_call_response(h, token, answer)) {
            match flow {
                Flow::Continue => {
                    self.send_shadow(h);
                    h.resume_request()
                }
                Flow::Refused => self.refused_at = Some(Stage::Quota),
                Flow::Pause => {}
            }
            return;
        }
        if !self.cache_waits {
            return;
        }
        let Some(decision) = self.cache.as_mut().and_then(|c| c.on_call(h, token, answer)) else { return };
        self.cache_waits = false;
        if self.after_cache(h, decision) == Flow::Continue {
            self.send_shadow(h);
            h.resume_request();
        }
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if self.reaches(Stage::Quota) {
            if let Some(q) = &mut self.quota {
                q.on_response_headers(h, eos);
            }
        }
        if self.reaches(Stage::Cache) {
            if let Some(c) = &mut self.cache {
                if c.on_response_headers(h, eos) == Flow::Pause {
                    // Held until the answer is complete (to store it, or replace it).
                    self.cache_holds = true;
                }
            }
        }
        if self.reaches(Stage::Guard) {
            if let Some(g) = &mut self.guard {
                if g.on_response_headers(h, eos) == Flow::Pause {
                    self.cache_holds = true;
                }
            }
        }
        if self.reaches(Stage::Route) {
            if let Some(r) = &mut self.route {
                if r.on_response_headers(h, eos) != Flow::Continue {
                    return Flow::Pause;
                }
            }
        }
        let flow = match (&mut self.audit, &self.cfg.audit) {
            (Some(call), Some(audit)) => call.on_response_headers(h, audit, eos),
            _ => Flow::Continue,
        };
        if self.cache_holds {
            return Flow::Pause;
        }
        flow
    }

    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        // With the audit stage, quota charges the figure audit settles: it need not read the
        // answer itself.
        if self.audit.is_none() && self.reaches(Stage::Quota) {
            if let Some(q) = &mut self.quota {
                q.on_response_body(h, size);
            }
        }
        let mut size = size;
        if self.reaches(Stage::Cache) {
            if let Some(c) = &mut self.cache {
                let (flow, after) = c.on_response_body(h, size, eos);
                if flow == Flow::Pause {
                    return Flow::Pause;
                }
                size = after;
            }
        }
        if self.reaches(Stage::Guard) {
            if let Some(g) = &mut self.guard {
                let (flow, after) = g.on_response_body(h, size, eos);
                if flow == Flow::Pause {
                    return Flow::Pause;
                }
                size = after;
            }
        }
        if self.reaches(Stage::Route) {
            if let Some(r) = &mut self.route {
                if r.on_response_body(h, size, eos) != Flow::Continue {
                    // Held until complete: the stages before it see the whole answer then.
                    return Flow::Pause;
                }
            }
        }
        match (&mut self.audit, &self.cfg.audit) {
            (Some(call), Some(audit)) => call.on_response_body(h, audit, size, eos),
            _ => Flow::Continue,
        }
    }

    pub fn on_log(&mut self, h: &impl Host) {
        self.dispatch_shadow(h);
        // Audit first: it settles what the call costs, which quota then charges.
        if let (Some(call), Some(audit)) = (&mut self.audit, &self.cfg.audit) {
            call.on_log(h, audit);
        }
        if let Some(q) = &mut self.quota {
            q.on_log(h);
        }
    }
}

/// The per-attempt compiled stages.
#[derive(Default)]
pub struct Upstream {
    pub route: Option<Rc<RouteConfig>>,
    pub quota: Option<Rc<Quota>>,
    pub credentials: Option<CredentialPlane>,
}

impl<'a> TryFrom<(GatewayConfig, &'a dyn Fn(&str) -> Option<String>)> for Upstream {
    type Error = ConfigError;

    /// Compiles the per-attempt stages, reading provider keys through `env` (the Wasm VM's
    /// environment). Errors as for [`Listener`].
    fn try_from((cfg, env): (GatewayConfig, &'a dyn Fn(&str) -> Option<String>)) -> Result<Upstream, ConfigError> {
        let mut cfg = cfg;
        let book = cfg.resolve()?;
        let route = match cfg.route {
            Some(r) => Some(Rc::new(r.compiled().map_err(|e| e.in_stage("route"))?)),
            None => None,
        };
        Ok(Upstream {
            route,
            quota: compile_quota(cfg.quota.as_ref(), &book, env)?,
            credentials: cfg
                .auth
                .map(|a| auth::compile_credentials(a, env))
                .transpose()
                .map_err(|e| e.in_stage("auth"))?,
        })
    }
}

impl Upstream {
    pub fn compile(cfg: GatewayConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Upstream, ConfigError> {
        Upstream::try_from((cfg, env))
    }
}

/// One upstream attempt.
pub struct AttemptCall {
    cfg: Rc<Upstream>,
    route: Option<RouteAttempt>,
    quota: Option<ProviderAttempt>,
    credential: Option<AttemptCredential>,
    /// The route stage holds the headers until the (translated) body is complete.
    route_holds_headers: bool,
    /// The provider's buckets wait for a fleet top-up (the request waits with them).
    quota_waits: bool,
    /// The whole request body has been seen (while the attempt waited, it was held).
    body_done: bool,
    refused: bool,
    status: u16,
}

impl AttemptCall {
    pub fn new(cfg: Rc<Upstream>) -> AttemptCall {
        AttemptCall {
            route: cfg.route.clone().map(|r| RouteAttempt::new(r).sending_parts()),
            quota: cfg.quota.clone().map(ProviderAttempt::new),
            cfg,
            credential: None,
            route_holds_headers: false,
            quota_waits: false,
            body_done: false,
            refused: false,
            status: 0,
        }
    }

    fn bedrock(&self) -> bool {
        self.credential.as_ref().is_some_and(|c| c.api == Api::Bedrock)
    }

    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        self.body_done = eos;
        if let Some(r) = &mut self.route {
            match r.on_request_headers(h, eos) {
                Flow::Continue => {}
                Flow::Pause => {
                    self.route_holds_headers = true;
                    return Flow::Pause;
                }
                Flow::Refused => {
                    self.refused = true;
                    return Flow::Refused;
                }
            }
        }
        match self.after_route_headers(h) {
            Flow::Continue if self.bedrock() => {
                if eos {
                    self.sign(h, &[]);
                    Flow::Continue
                } else {
                    // SigV4 covers the body as it is sent: sign once it is all here.
                    Flow::Pause
                }
            }
            f => f,
        }
    }

    /// The stages after route, on the request headers: the provider's buckets, then its key.
    fn after_route_headers(&mut self, h: &impl Host) -> Flow {
        if let Some(q) = &mut self.quota {
            match q.on_request_headers(h) {
                Flow::Continue => {}
                Flow::Pause => {
                    self.quota_waits = true;
                    return Flow::Pause;
                }
                Flow::Refused => {
                    self.refused = true;
                    return Flow::Refused;
                }
            }
        }
        self.inject_credential(h);
        Flow::Continue
    }

    fn inject_credential(&mut self, h: &impl Host) {
        if let Some(plane) = &self.cfg.credentials {
            let provider = h.upstream_metadata(headers::METADATA_PROVIDER).unwrap_or_default();
            let region = h.upstream_metadata(headers::METADATA_REGION);
            // The route stage forwards only its allow-list: when no credential header is on it,
            // the request carries none by now.
            let clean = self.route.as_ref().is_some_and(|r| r.drops_credentials());
            self.credential = auth::inject(h, plane, &provider, region.as_deref(), clean);
        }
    }

    fn sign(&self, h: &impl Host, body: &[u8]) {
        if let (Some(plane), Some(used)) = (&self.cfg.credentials, &self.credential) {
            let region = h.upstream_metadata(headers::METADATA_REGION);
            plane.sign(h, used, region.as_deref(), body);
        }
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        self.body_done |= eos;
        if self.quota_waits {
            // Held with the headers until the provider's buckets have a lease.
            return Flow::Pause;
        }
        if self.route_holds_headers {
            match self.route.as_mut().map(|r| r.on_request_body(h, size, eos)) {
                Some(Flow::Pause) => return Flow::Pause,
                Some(Flow::Refused) => {
                    self.refused = true;
                    return Flow::Refused;
                }
                _ => {}
            }
            self.route_holds_headers = false;
            match self.after_route_headers(h) {
                Flow::Continue => {}
                flow => return flow,
            }
        }
        self.after_body(h, eos)
    }

    /// The request body, after the provider's buckets: signed for Bedrock once complete, and an
    /// embeddings batch's other parts sent. `Continue`: the request goes on.
    fn after_body(&mut self, h: &impl Host, eos: bool) -> Flow {
        if self.bedrock() {
            if !eos {
                return Flow::Pause;
            }
            // The body as it is sent (translated by the route stage).
            self.sign(h, &h.request_body(usize::MAX));
        }
        // An embeddings batch split for this provider: the other parts go first, as calls of
        // their own, and this request waits for their answers.
        if eos && self.send_parts(h) {
            return Flow::Pause;
        }
        Flow::Continue
    }

    /// Sends the other parts of a split embeddings batch to the provider's cluster, each with
    /// this attempt's headers (its credential; signed anew over its own body for Bedrock).
    /// Returns whether an answer is out.
    fn send_parts(&mut self, h: &impl Host) -> bool {
        let Some(route) = &mut self.route else { return false };
        let Some((cluster, bodies)) = route.take_parts() else { return false };
        let bedrock = self.credential.as_ref().is_some_and(|c| c.api == Api::Bedrock);
        let all = h.request_headers();
        let get = |name: &str| all.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let base: Vec<(&str, &str)> = all
            .iter()
            .filter(|(k, _)| {
                k != "content-length"
                    && !k.starts_with("x-envoy-")
                    && !(bedrock && auth::SIGNATURE_HEADERS.contains(&k.as_str()))
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let region = h.upstream_metadata(headers::METADATA_REGION);
        let now = h.now_ms();
        for body in bodies {
            let length = crate::headers::decimal(body.len() as u64);
            let signature = match (&self.cfg.credentials, &self.credential, bedrock) {
                (Some(plane), Some(used), true) => {
                    let request = auth::SignedRequest {
                        method: get(":method").unwrap_or("POST"),
                        path: get(":path").unwrap_or("/"),
                        authority: get(":authority").unwrap_or_default(),
                        content_type: get("content-type").unwrap_or("application/json"),
                        body: &body,
                    };
                    plane.signature(used, region.as_deref(), &request, now)
                }
                _ => Vec::new(),
            };
            let mut headers: Vec<(&str, &str)> =
                base.iter().copied().filter(|(k, _)| !signature.iter().any(|(s, _)| s == k)).collect();
            headers.push(("content-length", &length));
            headers.extend(signature.iter().map(|(k, v)| (*k, v.as_str())));
            let token = h.http_call(&cluster, &headers, &body, crate::route::stage::PART_TIMEOUT_MS).ok();
            if token.is_none() {
                h.warn(&format!("route-select: the proxy refused a call to cluster {cluster:?} for a batch part"));
            }
            route.part_sent(token);
        }
        route.parts_pending()
    }

    /// A fleet top-up's answer: the attempt goes on (credential, signature, batch parts) or is
    /// refused. A part's answer: when it is the last one out, the attempt's request goes on.
    pub fn on_http_call_response(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) {
        if self.quota_waits {
            let Some(flow) = self.quota.as_mut().and_then(|q| q.on_http_call_response(h, token, answer)) else {
                return;
            };
            match flow {
                Flow::Pause => return,
                Flow::Refused => {
                    self.quota_waits = false;
                    self.refused = true;
                    return;
                }
                Flow::Continue => self.quota_waits = false,
            }
            self.inject_credential(h);
            // The whole body is held (or there is none): signed, parts sent; otherwise the
            // rest of it comes through `on_request_body` (Bedrock signs it there).
            let go = if self.body_done {
                self.after_body(h, true)
            } else if self.bedrock() {
                Flow::Pause
            } else {
                Flow::Continue
            };
            if go == Flow::Continue {
                h.resume_request();
            }
            return;
        }
        if self.route.as_mut().is_some_and(|r| r.part_answered(token, answer)) {
            h.resume_request();
        }
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if let (Some(plane), Some(used)) = (&self.cfg.credentials, &self.credential) {
            self.status = plane.after_answer(h, used);
        }
        self.route.as_mut().map_or(Flow::Continue, |r| r.on_response_headers(h, eos))
    }

    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        // Gemini says "invalid API key" with a 400 whose body names API_KEY_INVALID.
        if let (Some(plane), Some(used)) = (&self.cfg.credentials, &self.credential) {
            if used.api == Api::Gemini
                && self.status == 400
                && size > 0
                && crate::provider::gemini::is_invalid_key(&h.response_body(size))
            {
                plane.mark_bad(h, used, "400 API_KEY_INVALID");
            }
        }
        self.route.as_mut().map_or(Flow::Continue, |r| r.on_response_body(h, size, eos))
    }
}

crate::callbacks!(
    ListenerCall: on_request_headers,
    on_request_body,
    on_response_headers,
    on_response_body,
    on_log,
    on_http_call_response
);
crate::callbacks!(AttemptCall: on_request_headers, on_request_body, on_response_headers, on_response_body, on_http_call_response);

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for GatewayConfig {
    #[allow(clippy::field_reassign_with_default)]
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(
            v,
            at,
            "GatewayConfig",
            Some(&["providers", "price_book", "auth", "route", "quota", "audit"]),
        )?;
        let mut x = GatewayConfig::default();
        x.providers = o.opt("providers")?;
        x.price_book = o.opt("price_book")?;
        x.auth = o.opt("auth")?;
        x.route = o.opt("route")?;
        x.quota = o.opt("quota")?;
        x.audit = o.opt("audit")?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests;
