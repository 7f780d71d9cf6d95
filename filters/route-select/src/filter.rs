//! The routing and transform planes in Envoy: a thin adapter that runs
//! `aigw_core::route::stage` in proxy-wasm callbacks. `route_select` (listener) picks the chain;
//! `route_select_upstream` (per attempt) translates for the provider the attempt goes to.

use std::rc::Rc;

use aigw_core::call_state::{Side, Stateful, Writers};
use aigw_core::route::stage::{RouteAttempt, Select};
use aigw_core::route::RouteConfig;
use aigw_host::{self as host, Forward, HttpContext, LogLevel, RootContext};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Downstream,
    Upstream,
}

struct Root {
    cfg: Option<Rc<RouteConfig>>,
    role: Role,
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.role = match host::root_id().as_str() {
            "route_select" => Role::Downstream,
            "route_select_upstream" => Role::Upstream,
            other => {
                host::log(
                    LogLevel::Error,
                    &format!("route-select: unknown root_id {other:?}; use route_select (listener) or route_select_upstream (cluster)"),
                );
                return false;
            }
        };
        self.cfg = host::configure("route-select", |cfg: RouteConfig| cfg.compiled()).map(Rc::new);
        self.cfg.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let cfg = self.cfg.clone()?;
        Some(match self.role {
            Role::Downstream => Box::new(Forward(Stateful::new(Select::new(cfg), Side::Listener, Writers::Many)))
                as Box<dyn HttpContext>,
            Role::Upstream => Box::new(Forward(Stateful::new(RouteAttempt::new(cfg), Side::Attempt, Writers::Many))),
        })
    }
}

/// A new root context of this filter (what `aigw_host::main!` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { cfg: None, role: Role::Downstream })
}
