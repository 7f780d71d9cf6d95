//! The observability plane in Envoy: a thin adapter that runs `aigw_core::audit::stage` in
//! proxy-wasm callbacks (listener, first filter, so it sees every answer, refusals included).

use std::rc::Rc;

use aigw_core::audit::stage::{Audit, AuditCall, AuditConfig};
use aigw_host::{self as host, ProxyHost};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

struct Root {
    audit: Option<Rc<Audit>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.audit = host::configure("audit-emit", |cfg: AuditConfig| Audit::compile(&cfg)).map(Rc::new);
        self.audit.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let audit = self.audit.clone()?;
        Some(Box::new(Call { call: AuditCall::new(&ProxyHost), audit }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Call {
    audit: Rc<Audit>,
    call: AuditCall,
}

impl Context for Call {}

impl HttpContext for Call {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.call.on_request_headers(&ProxyHost);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        host::action(self.call.on_response_headers(&ProxyHost, eos))
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        host::action(self.call.on_response_body(&ProxyHost, &self.audit, size, eos))
    }

    fn on_log(&mut self) {
        self.call.on_log(&ProxyHost, &self.audit);
    }
}

/// A new root context of this filter (what `proxy_wasm::set_root_context` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { audit: None })
}
