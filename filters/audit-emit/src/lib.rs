//! `audit-emit`: the observability plane. First in the listener's filter chain, so it sees every
//! response, local refusals of the later filters included. It reads token usage from the
//! (already OpenAI-format) response as it streams past, prices it with the price book, and in
//! `on_log` stores the audit record as filter state `wasm.aigw_audit`, which Envoy's access log
//! writes as one JSON line per call.

use std::rc::Rc;

use aigw_core::audit::{AuditRecord, Outcome, RECORD_VERSION};
use aigw_core::headers;
use aigw_core::price::{format_usd, PriceBook, PriceBookConfig};
use aigw_core::usage::{self, StreamScanner, Usage};
use aigw_host as host;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

/// The most of a non-streamed response body kept for reading its usage.
const MAX_BODY: usize = 8 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    price_book: PriceBookConfig,
}

struct Root {
    prices: Option<Rc<PriceBook>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(cfg) = host::load_config::<Config>("audit-emit") else { return false };
        match PriceBook::compile(&cfg.price_book) {
            Ok(b) => {
                self.prices = Some(Rc::new(b));
                true
            }
            Err(e) => {
                host::log(LogLevel::Error, &format!("audit-emit: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let prices = self.prices.clone()?;
        Some(Box::new(Call {
            prices,
            start_ms: host::now_ms(),
            request_id: String::new(),
            status: None,
            provider: None,
            model: None,
            attempts: 0,
            body: Body::None,
            completed: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

enum Body {
    None,
    Json(Vec<u8>),
    Sse(Box<StreamScanner>),
}

struct Call {
    prices: Rc<PriceBook>,
    start_ms: u64,
    request_id: String,
    status: Option<u16>,
    provider: Option<String>,
    model: Option<String>,
    attempts: u32,
    body: Body,
    completed: bool,
}

impl Context for Call {}

impl HttpContext for Call {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        self.request_id = host::request_header("x-request-id").unwrap_or_default();
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        self.status = host::response_header(":status").and_then(|s| s.parse().ok());
        self.provider = host::response_header(headers::PROVIDER);
        self.model = host::response_header(headers::MODEL);
        self.attempts = host::response_header("x-envoy-attempt-count").and_then(|s| s.parse().ok()).unwrap_or(0);
        if !self.request_id.is_empty() {
            host::set_response_header(headers::REQUEST_ID, Some(&self.request_id));
        }
        let ct = host::response_header("content-type").unwrap_or_default();
        self.body = if ct.starts_with("text/event-stream") {
            Body::Sse(Box::default())
        } else if ct.starts_with("application/json") {
            Body::Json(Vec::new())
        } else {
            Body::None
        };
        self.completed = eos;
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        match &mut self.body {
            Body::None => {}
            Body::Json(buf) => {
                if buf.len() + size <= MAX_BODY {
                    buf.extend_from_slice(&host::response_body(size));
                }
            }
            Body::Sse(scanner) => scanner.push(&host::response_body(size)),
        }
        if eos {
            self.completed = true;
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let refusal = host::property_string(&[headers::PROP_REFUSAL]);
        let (usage, stream, stream_error): (Option<Usage>, bool, bool) = match &self.body {
            Body::None => (None, false, false),
            Body::Json(b) => (usage::from_openai_body(b), false, false),
            Body::Sse(s) => (s.usage, true, s.saw_error || (self.completed && !s.saw_done)),
        };
        let outcome = Outcome::classify(refusal.as_deref(), self.status, self.completed, stream_error);
        let mut flags = Vec::new();
        let cost = match (&usage, &self.model) {
            (Some(u), Some(m)) => match self.prices.cost_pico(m, u) {
                Some(c) => Some(format_usd(c)),
                None => {
                    flags.push("unpriced_model");
                    None
                }
            },
            _ => None,
        };
        if outcome == Outcome::Ok && usage.is_none() {
            flags.push("usage_missing");
        }
        let record = AuditRecord {
            version: RECORD_VERSION,
            request_id: std::mem::take(&mut self.request_id),
            start_time_ms: self.start_ms,
            tenant: host::property_string(&[headers::PROP_TENANT]),
            key_id: host::property_string(&[headers::PROP_KEY_ID]),
            alias: host::property_string(&[headers::PROP_ALIAS]),
            provider: self.provider.take(),
            model: self.model.take(),
            status: self.status,
            outcome,
            attempts: self.attempts,
            stream,
            tokens: usage.map(Into::into),
            cost_usd: cost,
            price_book_version: self.prices.version.clone(),
            latency_ms: host::now_ms().saturating_sub(self.start_ms),
            flags,
        };
        match serde_json::to_string(&record) {
            Ok(line) => host::set_property(headers::PROP_AUDIT, &line),
            Err(e) => host::warn(&format!("audit-emit: could not serialise the audit record: {e}")),
        }
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { prices: None }) });
}}
