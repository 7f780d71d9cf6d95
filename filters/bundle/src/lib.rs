//! The gateway's plugins, for its two modules: every plugin runs one of the two contexts of
//! `aigw_core::pipeline`, chosen by `root_id`:
//!
//! - `gateway` (listener) and `gateway_upstream` (per attempt, in a chain's aggregate cluster):
//!   every stage whose configuration is present (`{"auth": …, "route": …, "quota": …,
//!   "audit": …}`), in one filter instance each: the default layout.
//! - The design card's four filters, each the same context with one stage enabled, taking that
//!   filter's own configuration: `auth_key_swap`, `route_select`, `quota`, `audit_emit` and
//!   the per-attempt `auth_key_swap_upstream`, `route_select_upstream`, `quota_upstream`.
//!
//! One module per side: `aigw_gateway.wasm` ([`listener_root`]) serves the listener's plugins,
//! `aigw_gateway_upstream.wasm` ([`upstream_root`]) the per-attempt ones, and each links only
//! its side's code (the listener no provider translation, the attempt no door, guardrail, cache
//! or audit). The plugins of a side share one `vm_config`, so Envoy runs one VM per worker for
//! each side; both name the same `vm_id`, so they share data.

use std::rc::Rc;

use aigw_core::auth::marks::MarkSync;
use aigw_core::cache::shared::Writer;
use aigw_core::call_state::{Side, Stateful, Writers};
use aigw_core::host::HttpCallProbe;
use aigw_core::pipeline::{AttemptCall, GatewayConfig, Listener, ListenerCall, Upstream};
use aigw_core::quota::stage::ticker::Ticker;
use aigw_host::{self as host, Action, Forward, HttpContext, LogLevel, ProxyHost, RootContext};

/// Which side of Envoy a plugin runs on, and which of its configuration's stages.
#[derive(Clone, Copy)]
enum Plugin {
    Listener(Only),
    Attempt(Only),
}

/// `All`: the configuration names its stages; otherwise the plugin is that one filter, whose
/// configuration is the stage's own.
#[derive(Clone, Copy)]
enum Only {
    All,
    Auth,
    Route,
    Quota,
    Audit,
}

fn plugin(root_id: &str) -> Option<Plugin> {
    Some(match root_id {
        "gateway" => Plugin::Listener(Only::All),
        "gateway_upstream" => Plugin::Attempt(Only::All),
        "auth_key_swap" => Plugin::Listener(Only::Auth),
        "route_select" => Plugin::Listener(Only::Route),
        "quota" => Plugin::Listener(Only::Quota),
        "audit_emit" => Plugin::Listener(Only::Audit),
        "auth_key_swap_upstream" => Plugin::Attempt(Only::Auth),
        "route_select_upstream" => Plugin::Attempt(Only::Route),
        "quota_upstream" => Plugin::Attempt(Only::Quota),
        _ => return None,
    })
}

/// The plugin's configuration, as a gateway configuration.
fn config(only: Only, filter: &str) -> Option<GatewayConfig> {
    let mut g = GatewayConfig::default();
    match only {
        Only::All => return host::load_config::<GatewayConfig>(filter),
        Only::Auth => g.auth = Some(host::load_config(filter)?),
        Only::Route => g.route = Some(host::load_config(filter)?),
        Only::Quota => g.quota = Some(host::load_config(filter)?),
        Only::Audit => g.audit = Some(host::load_config(filter)?),
    }
    Some(g)
}

enum Compiled {
    Listener(Rc<Listener>),
    Attempt(Rc<Upstream>),
}

/// A side's root context: `UPSTREAM` false in `aigw_gateway.wasm`, true in
/// `aigw_gateway_upstream.wasm` (a constant, so the other side's code is not linked).
struct Root<const UPSTREAM: bool> {
    compiled: Option<Compiled>,
    /// Fleet mode's ticker (the listener's quota stage with `fleet`): see `quota::stage::ticker`.
    ticker: Option<Ticker>,
    /// The shared cache's writer (the listener's cache with `shared`): see `cache::shared`.
    writer: Option<Writer>,
    /// Fleet mode's bad-credential marks (per attempt, the quota stage with `fleet`): see
    /// `auth::marks`.
    marks: Option<MarkSync>,
    /// `gateway`/`gateway_upstream`: the side's only writer of the call state; a design-card
    /// filter shares its side with the others.
    writers: Writers,
}

impl<const UPSTREAM: bool> Root<UPSTREAM> {
    fn new() -> Self {
        Root { compiled: None, ticker: None, writer: None, marks: None, writers: Writers::Many }
    }
}

/// The root context of `aigw_gateway.wasm`: the listener's plugins.
pub fn listener_root() -> Box<dyn RootContext> {
    Box::new(Root::<false>::new())
}

/// The root context of `aigw_gateway_upstream.wasm`: the per-attempt plugins.
pub fn upstream_root() -> Box<dyn RootContext> {
    Box::new(Root::<true>::new())
}

/// The module a side's plugins load.
const MODULE: [&str; 2] = ["aigw_gateway.wasm", "aigw_gateway_upstream.wasm"];

impl<const UPSTREAM: bool> RootContext for Root<UPSTREAM> {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let answer = host::http_call_answer(body_size);
        if UPSTREAM {
            if let Some(m) = &mut self.marks {
                m.on_http_call_response(&ProxyHost, token, &answer);
            }
            return;
        }
        if self.writer.as_mut().is_some_and(|w| w.on_http_call_response(&ProxyHost, token, &answer)) {
            return;
        }
        if let Some(t) = &mut self.ticker {
            t.on_http_call_response(&ProxyHost, token, &answer);
        }
    }

    fn on_tick(&mut self) {
        if UPSTREAM {
            if let Some(m) = &mut self.marks {
                m.on_tick(&ProxyHost);
            }
            return;
        }
        if let Some(t) = &mut self.ticker {
            t.on_tick(&ProxyHost);
        }
        if let Some(w) = &mut self.writer {
            w.on_tick(&ProxyHost);
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let id = host::root_id();
        if !UPSTREAM && (id == TRAP_ROOT_ID || id == HTTP_CALL_ROOT_ID) {
            return true;
        }
        #[cfg(feature = "bench-floor")]
        if id.starts_with("floor") {
            return true;
        }
        let Some(p) = plugin(&id) else {
            host::log(
                LogLevel::Error,
                &format!(
                    "aigw-gateway: unknown root_id {id:?}; use gateway, gateway_upstream, auth_key_swap, \
                     auth_key_swap_upstream, quota, quota_upstream, route_select, route_select_upstream or audit_emit"
                ),
            );
            return false;
        };
        // Errors name the filter as its operators know it (`quota`, `route-select`, ...).
        let filter = id.trim_end_matches("_upstream").replace('_', "-");
        self.writers = match p {
            Plugin::Listener(Only::All) | Plugin::Attempt(Only::All) => Writers::One,
            _ => Writers::Many,
        };
        let compiled = match p {
            Plugin::Listener(only) if !UPSTREAM => config(only, &filter).map(|c| {
                Listener::compile_env(c, &|name| std::env::var(name).ok()).map(|l| Compiled::Listener(Rc::new(l)))
            }),
            Plugin::Attempt(only) if UPSTREAM => config(only, &filter)
                .map(|c| Upstream::compile(c, &|name| std::env::var(name).ok()).map(|u| Compiled::Attempt(Rc::new(u)))),
            _ => {
                let (this, other) = if UPSTREAM { (MODULE[1], MODULE[0]) } else { (MODULE[0], MODULE[1]) };
                host::log(
                    LogLevel::Error,
                    &format!("aigw-gateway: root_id {id:?} is not served by {this}: its vm_config loads {other}"),
                );
                return false;
            }
        };
        self.compiled = match compiled {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(e)) => {
                // The gateway names the field from the top of its configuration; a design-card
                // filter, from the top of its own.
                let e = if filter == "gateway" { e.in_gateway() } else { e };
                host::log(LogLevel::Error, &e.to_string());
                None
            }
        };
        self.ticker = None;
        self.writer = None;
        if let Some(Compiled::Listener(l)) = self.compiled.as_ref().filter(|_| !UPSTREAM) {
            let mut tick_ms = None;
            if let Some(q) = &l.quota {
                aigw_core::quota::stage::init_store(&ProxyHost);
                if let Some(f) = &q.fleet {
                    tick_ms = Some(f.tick_ms);
                    self.ticker = Some(Ticker::new(q.clone()));
                }
            }
            if let Some((c, s)) = l.cache.as_ref().and_then(|c| c.shared.clone().map(|s| (c.clone(), s))) {
                tick_ms = Some(tick_ms.unwrap_or(200).min(200));
                self.writer = Some(Writer::new(c, s));
            }
            if tick_ms.is_some_and(|ms| !host::set_tick_period(ms)) {
                host::log(LogLevel::Error, "aigw-filters: the proxy refused a tick period: fleet mode cannot work");
                self.ticker = None;
                self.writer = None;
            }
        }
        self.marks = None;
        if let Some(Compiled::Attempt(u)) = self.compiled.as_ref().filter(|_| UPSTREAM) {
            if let Some(q) = &u.quota {
                aigw_core::quota::stage::init_store(&ProxyHost);
                // (The design card's `auth_key_swap_upstream` makes marks in the same shared
                // data: `quota_upstream`, whose configuration holds `fleet`, shares them.)
                if let Some(f) = &q.fleet {
                    if host::set_tick_period(f.tick_ms) {
                        self.marks = Some(MarkSync::new(f.clone()));
                    }
                }
            }
        }
        self.compiled.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.compiled {
            Some(Compiled::Listener(l)) if !UPSTREAM => {
                let call = ListenerCall::new(&ProxyHost, l.clone());
                Some(Box::new(Forward(Stateful::new(call, Side::Listener, self.writers))))
            }
            Some(Compiled::Attempt(u)) if UPSTREAM => {
                Some(Box::new(Forward(Stateful::new(AttemptCall::new(u.clone()), Side::Attempt, self.writers))))
            }
            Some(_) => None,
            #[cfg(feature = "bench-floor")]
            None if host::root_id().starts_with("floor") => {
                aigw_bench_floor::context(&host::root_id(), aigw_bench_floor::Extras::default())
            }
            None if !UPSTREAM && host::root_id() == TRAP_ROOT_ID => Some(Box::new(Trap)),
            None if !UPSTREAM && host::root_id() == HTTP_CALL_ROOT_ID => {
                Some(Box::new(Forward(HttpCallProbe::default())))
            }
            None => None,
        }
    }
}

/// Test only: the root id of a filter that traps the VM when a request carries
/// `x-aigw-test-trap`, so that a test can show Envoy replacing a failed VM (`failure_policy:
/// FAIL_RELOAD`). Nothing reaches it unless a configuration names this root id; the gateway's
/// configurations never do.
const TRAP_ROOT_ID: &str = "aigw_test_trap";

/// Test only: the root id of a filter that makes an outgoing HTTP call through the Host trait
/// (`aigw_core::host::HttpCallProbe`), so a test shows it working in Envoy.
const HTTP_CALL_ROOT_ID: &str = "aigw_test_http_call";

struct Trap;

impl HttpContext for Trap {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if host::request_header("x-aigw-test-trap").is_some() {
            trap();
        }
        Action::Continue
    }
}

/// What a panic does in this module (`panic = "abort"`): the VM traps.
fn trap() {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
}
