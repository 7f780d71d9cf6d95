//! All four filters in one module. Each plugin picks its filter by `root_id` (the same root ids
//! as the separate modules), so one `.wasm` and one `vm_config` serve every filter and Envoy runs
//! one VM per worker instead of one per module. The filters' code is shared with their own
//! crates: each crate's `filter.rs` is compiled here too.

use aigw_host as host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

#[path = "../../audit-emit/src/filter.rs"]
mod audit_emit;
#[path = "../../auth-key-swap/src/filter.rs"]
mod auth_key_swap;
#[path = "../../quota/src/filter.rs"]
mod quota;
#[path = "../../route-select/src/filter.rs"]
mod route_select;

/// Becomes the root context of whichever filter the plugin's root id names.
struct Dispatch {
    inner: Option<Box<dyn RootContext>>,
}

impl Context for Dispatch {}

impl RootContext for Dispatch {
    fn on_configure(&mut self, size: usize) -> bool {
        let id = host::root_id();
        let mut inner = match id.as_str() {
            "auth_key_swap" | "auth_key_swap_upstream" => auth_key_swap::root(),
            "quota" | "quota_upstream" => quota::root(),
            "route_select" | "route_select_upstream" => route_select::root(),
            "audit_emit" => audit_emit::root(),
            TRAP_ROOT_ID => Box::new(TrapRoot),
            other => {
                host::log(
                    LogLevel::Error,
                    &format!(
                        "aigw-filters: unknown root_id {other:?}; use auth_key_swap, auth_key_swap_upstream, quota, quota_upstream, \
                         route_select, route_select_upstream or audit_emit"
                    ),
                );
                return false;
            }
        };
        let ok = inner.on_configure(size);
        self.inner = Some(inner);
        ok
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.inner.as_ref()?.create_http_context(context_id)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Test only: the root id of a filter that traps the VM when a request carries
/// `x-aigw-test-trap`, so that a test can show Envoy replacing a failed VM (`failure_policy:
/// FAIL_RELOAD`). Nothing reaches it unless a configuration names this root id; the gateway's
/// configurations never do.
const TRAP_ROOT_ID: &str = "aigw_test_trap";

struct TrapRoot;

impl Context for TrapRoot {}

impl RootContext for TrapRoot {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Trap))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Trap;

impl Context for Trap {}

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

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Dispatch { inner: None }) });
}}
