use std::collections::HashMap;
use std::rc::Rc;

use aigw_core::bucket::{retry_after_secs, Decision, Limit, State};
use aigw_core::error::GatewayError;
use aigw_core::headers;
use aigw_host as host;
use proxy_wasm::hostcalls as hc;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, Status};
use serde::Deserialize;

/// How often a worker retries after losing a compare-and-swap race before giving up.
const CAS_ATTEMPTS: usize = 32;

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    requests_per_minute: u64,
    /// Defaults to `requests_per_minute`.
    #[serde(default)]
    burst: Option<u64>,
}

impl LimitConfig {
    fn limit(self) -> Limit {
        Limit { rate_per_minute: self.requests_per_minute, burst: self.burst.unwrap_or(self.requests_per_minute) }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    default: LimitConfig,
    #[serde(default)]
    tenants: HashMap<String, LimitConfig>,
}

struct Limits {
    default: Limit,
    tenants: HashMap<String, Limit>,
}

fn compile(cfg: Config) -> Result<Limits, String> {
    let check = |who: &str, l: LimitConfig| {
        let lim = l.limit();
        if lim.burst == 0 || lim.rate_per_minute == 0 {
            Err(format!("quota: {who}: requests_per_minute and burst must be at least 1"))
        } else {
            Ok(lim)
        }
    };
    let default = check("default", cfg.default)?;
    let mut tenants = HashMap::new();
    for (t, l) in cfg.tenants {
        let lim = check(&format!("tenant {t:?}"), l)?;
        tenants.insert(t, lim);
    }
    Ok(Limits { default, tenants })
}

struct Root {
    limits: Option<Rc<Limits>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.limits = host::configure("quota", compile).map(Rc::new);
        self.limits.is_some()
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        self.limits.clone().map(|limits| Box::new(Stream { limits, headers: None }) as Box<dyn HttpContext>)
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    limits: Rc<Limits>,
    /// (limit, remaining, reset seconds) for the response headers.
    headers: Option<(u64, u64, u64)>,
}

impl Context for Stream {}

/// Takes one request from the shared bucket `key`; exact across workers.
fn take_shared(key: &str, limit: Limit, now: u64) -> Option<Decision> {
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = hc::get_shared_data(key).ok()?;
        let prev = bytes.as_deref().and_then(State::decode);
        let decision = limit.take(prev, now, 1);
        let Decision::Allowed { state, .. } = decision else { return Some(decision) };
        match hc::set_shared_data(key, Some(&state.encode()), cas) {
            Ok(()) => return Some(decision),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let tenant = host::identity().map(|i| i.tenant).unwrap_or_else(|| "_anonymous".into());
        let limit = self.limits.tenants.get(&tenant).copied().unwrap_or(self.limits.default);
        let key = format!("aigw.quota.rpm.{tenant}");
        match take_shared(&key, limit, host::now_ms()) {
            Some(Decision::Allowed { remaining, reset_ms, .. }) => {
                self.headers = Some((limit.burst, remaining, retry_after_secs(reset_ms)));
                Action::Continue
            }
            Some(Decision::Refused { retry_after_ms, .. }) => {
                let secs = retry_after_secs(retry_after_ms).to_string();
                host::set_property(headers::PROP_REFUSAL, "quota");
                host::send_error(
                    &GatewayError::new(
                        429,
                        "rate_limit_exceeded",
                        "tenant_requests_per_minute",
                        format!(
                            "Rate limit reached: {} requests per minute for this tenant. Retry after {secs} s.",
                            limit.rate_per_minute
                        ),
                    ),
                    &[
                        ("retry-after", &secs),
                        ("x-ratelimit-limit-requests", &limit.burst.to_string()),
                        ("x-ratelimit-remaining-requests", "0"),
                        ("x-ratelimit-reset-requests", &format!("{secs}s")),
                    ],
                );
                Action::Pause
            }
            None => {
                host::set_property(headers::PROP_REFUSAL, "quota");
                host::send_error(
                    &GatewayError::new(
                        429,
                        "rate_limit_exceeded",
                        "quota_unavailable",
                        "The quota store is busy; retry shortly.",
                    ),
                    &[("retry-after", "1")],
                );
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        if let Some((limit, remaining, reset)) = self.headers {
            host::set_response_header("x-ratelimit-limit-requests", Some(&limit.to_string()));
            host::set_response_header("x-ratelimit-remaining-requests", Some(&remaining.to_string()));
            host::set_response_header("x-ratelimit-reset-requests", Some(&format!("{reset}s")));
        }
        Action::Continue
    }
}

/// A new root context of this filter (what `proxy_wasm::set_root_context` needs).
pub fn root() -> Box<dyn RootContext> {
    Box::new(Root { limits: None })
}
