//! The quota plane in Envoy: a thin adapter that runs `aigw_core::quota::stage` in proxy-wasm
//! callbacks. `quota` on the listener (tenant, feature and model buckets, concurrency, budgets,
//! reconciliation) and `quota_upstream` in a chain's aggregate cluster (per-provider buckets,
//! charged once per attempt).

use std::rc::Rc;

use aigw_core::auth::marks::MarkSync;
use aigw_core::call_state::{Side, Stateful, Writers};
use aigw_core::quota::stage::ticker::Ticker;
use aigw_core::quota::stage::{init_store, ProviderAttempt, QuotaCall};
use aigw_core::quota::{Quota, QuotaConfig};
use aigw_host::{self as host, Forward, HttpContext, LogLevel, ProxyHost, RootContext};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Listener,
    Attempt,
}

struct Root {
    quota: Option<Rc<Quota>>,
    role: Role,
    /// Fleet mode's ticker (see `quota::stage::ticker`).
    ticker: Option<Ticker>,
    /// `quota_upstream` in fleet mode: the bad-credential marks `auth_key_swap_upstream` makes
    /// in the same shared data, shared with the fleet (see `auth::marks`).
    marks: Option<MarkSync>,
}

impl RootContext for Root {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let answer = host::http_call_answer(body_size);
        if self.marks.as_mut().is_some_and(|m| m.on_http_call_response(&ProxyHost, token, &answer)) {
            return;
        }
        if let Some(t) = &mut self.ticker {
            t.on_http_call_response(&ProxyHost, token, &answer);
        }
    }

    fn on_tick(&mut self) {
        if let Some(t) = &mut self.ticker {
            t.on_tick(&ProxyHost);
        }
        if let Some(m) = &mut self.marks {
            m.on_tick(&ProxyHost);
        }
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        self.role = match host::root_id().as_str() {
            "quota" => Role::Listener,
            "quota_upstream" => Role::Attempt,
            other => {
                host::log(
                    LogLevel::Error,
                    &format!("quota: unknown root_id {other:?}; use quota (listener) or quota_upstream (cluster)"),
                );
                return false;
            }
        };
        self.quota = host::configure("quota", |cfg: QuotaConfig| Quota::compile(&cfg)).map(|mut q| {
            // Fleet mode's credentials for Webdis, from Envoy's environment.
            // (Just compiled: the one holder of it.)
            if let Some(f) = q.fleet.as_mut().and_then(Rc::get_mut) {
                f.read_env(&|name| std::env::var(name).ok());
            }
            Rc::new(q)
        });
        self.ticker = None;
        self.marks = None;
        if let Some(q) = &self.quota {
            init_store(&ProxyHost);
            if let Some(f) = &q.fleet {
                if host::set_tick_period(f.tick_ms) {
                    match self.role {
                        Role::Listener => self.ticker = Some(Ticker::new(q.clone())),
                        Role::Attempt => self.marks = Some(MarkSync::new(f.clone())),
                    }
                }
            }
        }
        self.quota.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let quota = self.quota.clone()?;
        Some(match self.role {
            Role::Listener => Box::new(Forward(Stateful::new(QuotaCall::new(quota), Side::Listener, Writers::Many)))
                as Box<dyn HttpContext>,
            Role::Attempt => {
                Box::new(Forward(Stateful::new(ProviderAttempt::new(quota), Side::Attempt, Writers::Many)))
            }
        })
    }
}

/// A new root context of this filter (what `aigw_host::main!` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { quota: None, role: Role::Listener, ticker: None, marks: None })
}
