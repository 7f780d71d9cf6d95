//! The quota plane in Envoy: a thin adapter that runs `aigw_core::quota::stage` in proxy-wasm
//! callbacks. `quota` on the listener (tenant, feature and model buckets, concurrency, budgets,
//! reconciliation) and `quota_upstream` in a chain's aggregate cluster (per-provider buckets,
//! charged once per attempt).

use std::rc::Rc;

use aigw_core::quota::stage::{init_store, Call, ProviderAttempt};
use aigw_core::quota::{Quota, QuotaConfig};
use aigw_host::{self as host, ProxyHost};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Listener,
    Attempt,
}

struct Root {
    quota: Option<Rc<Quota>>,
    role: Role,
}

impl Context for Root {}

impl RootContext for Root {
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
        self.quota = host::configure("quota", |cfg: QuotaConfig| Quota::compile(&cfg)).map(Rc::new);
        if self.quota.is_some() {
            init_store(&ProxyHost);
        }
        self.quota.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let quota = self.quota.clone()?;
        Some(match self.role {
            Role::Listener => Box::new(Listener(Call::new(quota))) as Box<dyn HttpContext>,
            Role::Attempt => Box::new(Attempt(ProviderAttempt { quota })),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Listener(Call);

impl Context for Listener {}

impl HttpContext for Listener {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        host::action(self.0.on_request_headers(&ProxyHost, eos))
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        host::action(self.0.on_request_body(&ProxyHost, size, eos))
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        host::action(self.0.on_response_headers(&ProxyHost, eos))
    }

    fn on_http_response_body(&mut self, size: usize, _eos: bool) -> Action {
        host::action(self.0.on_response_body(&ProxyHost, size))
    }

    fn on_log(&mut self) {
        self.0.on_log(&ProxyHost);
    }
}

struct Attempt(ProviderAttempt);

impl Context for Attempt {}

impl HttpContext for Attempt {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        host::action(self.0.on_request_headers(&ProxyHost))
    }
}

/// A new root context of this filter (what `proxy_wasm::set_root_context` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { quota: None, role: Role::Listener })
}
