//! The observability plane in Envoy: a thin adapter that runs `aigw_core::audit::stage` in
//! proxy-wasm callbacks (listener, first filter, so it sees every answer, refusals included).

use std::rc::Rc;

use aigw_core::audit::stage::{Audit, AuditCall, AuditConfig};
use aigw_core::call_state::{Side, Stateful, Writers};
use aigw_core::host::{Callbacks, Flow, Host};
use aigw_host::{self as host, Forward, HttpContext, ProxyHost, RootContext};

struct Root {
    audit: Option<Rc<Audit>>,
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.audit = host::configure("audit-emit", |cfg: AuditConfig| Audit::compile(&cfg)).map(Rc::new);
        self.audit.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let audit = self.audit.clone()?;
        let call = Call { call: AuditCall::new(&ProxyHost), audit };
        Some(Box::new(Forward(Stateful::new(call, Side::Listener, Writers::Many))))
    }
}

struct Call {
    audit: Rc<Audit>,
    call: AuditCall,
}

impl Callbacks for Call {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        self.call.on_request_headers(h);
        Flow::Continue
    }

    fn on_response_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        self.call.on_response_headers(h, &self.audit, eos)
    }

    fn on_response_body<H: Host>(&mut self, h: &H, size: usize, eos: bool) -> Flow {
        self.call.on_response_body(h, &self.audit, size, eos)
    }

    fn on_log<H: Host>(&mut self, h: &H) {
        self.call.on_log(h, &self.audit);
    }
}

/// A new root context of this filter (what `aigw_host::main!` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { audit: None })
}
