//! The floor the gateway is measured against (`scripts/bench --configs floor,floor-bundle`):
//! one listener context and one per-attempt context doing the least the gateway's call does
//! with the same Envoy configuration (the same routes, aggregate cluster and retry policy):
//!
//! - listener (`floor`): one read of the request headers, the request body buffered and parsed
//!   once (a JSON tree), the chain header set and the route cache cleared, one filter-state
//!   entry written; the answer buffered, parsed, rewritten; one response header.
//! - attempt (`floor_upstream`): the entry read, the path and a credential header set, the
//!   request body parsed and rewritten; the answer buffered and passed on.
//!
//! `floor` is this crate's own small module; `floor-bundle` runs the same two contexts from
//! the gateway's two modules (`aigw-gateway` and `aigw-gateway-upstream` built with
//! `aigw-filters/bench-floor`), so that the two rows tell what the modules themselves cost from
//! what the gateway's code does.

#[cfg(not(feature = "in-bundle"))]
use proxy_wasm::{
    hostcalls as hc,
    traits::{Context, HttpContext},
    types::{Action, BufferType, MapType, MetricType},
};
#[cfg(feature = "in-bundle")]
use sdk::{hc, Action, BufferType, HttpContext, MapType, MetricType};
use serde_json::Value;

#[cfg(feature = "in-bundle")]
mod sdk;

const ENTRY: &str = "aigw_floor";
const UPSTREAM: &str = "aigw_floor_upstream";

/// The host calls the gateway's route-only call makes beyond the floor's (the configuration
/// names them, comma-separated), to tell what each kind costs:
/// - `meta`: the attempt reads the endpoint's provider and region (`xds.upstream_host_metadata`);
/// - `headers`: single request-header reads, and the attempt setting the headers it sets;
/// - `resp`: the response headers both contexts set;
/// - `props`: the filter-state entries written and read back;
/// - `shared`: one shared-data read and write (a provider's live figures);
/// - `clock`: the clock reads;
/// - `meta20`, `metawhole20`: the endpoint's provider read 20 times by its path, or the
///   endpoint's whole metadata 20 times (one property each): what one such read costs;
/// - `work10`: the attempt parses and writes the answer 10 more times (Wasm code only, no host
///   call): what a µs of the Rust side, timed natively, costs in Envoy;
/// - `add20`: the listener adds 20 response headers it knows are absent (`add`, not `replace`,
///   which first looks for the header to replace);
/// - `resp20`, `respmap20`: the listener sets 20 response headers one call each, or reads the
///   response header map and sets it whole with the 20 added (`set_header_map_pairs`): what
///   batching a callback's header changes would save;
/// - `metrics`: the full call's ten counter increments and one histogram record (metric ids
///   defined once per VM, as the gateway does);
/// - `quota`: the full call's further shared data: a tenant's and a provider's bucket each read
///   and written back by CAS at the charge and again at the settle, plus a credential mark read;
/// - `audit`: the listener writes a 1.5 KB audit entry (filter state) when the call ends;
/// - `holdheaders`: the attempt holds the answer's headers until its body is complete (as the
///   gateway's attempt does when it translates a whole answer), not only the body;
/// - `today`: every host call the `full` call makes beyond the floor's, in the same callbacks
///   and numbers as the `trace-calls` build counted them on 2026-12-02 (bench/README.md,
///   "Counting host calls"): the floor's structure with the gateway's host calls and none of
///   its policy code.
#[derive(Clone, Copy, Default)]
pub struct Extras {
    meta: bool,
    headers: bool,
    resp: bool,
    props: bool,
    shared: bool,
    clock: bool,
    meta20: bool,
    metawhole20: bool,
    work10: bool,
    holdheaders: bool,
    resp20: bool,
    add20: bool,
    respmap20: bool,
    metrics: bool,
    quota: bool,
    audit: bool,
    today: bool,
}

impl Extras {
    pub fn parse(conf: &str) -> Extras {
        let has = |k: &str| conf.split([',', '+']).any(|p| p.trim() == k || p.trim() == "all");
        Extras {
            meta: has("meta"),
            headers: has("headers"),
            resp: has("resp"),
            props: has("props"),
            shared: has("shared"),
            clock: has("clock"),
            meta20: conf.split([',', '+']).any(|p| p == "meta20"),
            metawhole20: conf.split([',', '+']).any(|p| p == "metawhole20"),
            work10: conf.split([',', '+']).any(|p| p == "work10"),
            holdheaders: conf.split([',', '+']).any(|p| p == "holdheaders"),
            resp20: conf.split([',', '+']).any(|p| p == "resp20"),
            add20: conf.split([',', '+']).any(|p| p == "add20"),
            respmap20: conf.split([',', '+']).any(|p| p == "respmap20"),
            metrics: conf.split([',', '+']).any(|p| p == "metrics"),
            quota: conf.split([',', '+']).any(|p| p == "quota"),
            audit: conf.split([',', '+']).any(|p| p == "audit"),
            today: conf.split([',', '+']).any(|p| p == "today"),
        }
    }

    fn clock(self, n: usize) {
        if self.clock || self.today {
            for _ in 0..n {
                let _ = hc::get_current_time();
            }
        }
    }
}

thread_local! {
    static METRICS: std::cell::OnceCell<Vec<u32>> = const { std::cell::OnceCell::new() };
}

/// `metrics`: ten counters and one histogram, as the full call records them.
fn record_metrics() {
    METRICS.with(|m| {
        let ids = m.get_or_init(|| {
            (0..11)
                .filter_map(|i| {
                    let t = if i == 10 { MetricType::Histogram } else { MetricType::Counter };
                    hc::define_metric(t, &format!("aigw_floor_metric_{i}")).ok()
                })
                .collect()
        });
        for (i, id) in ids.iter().enumerate() {
            let _ = if i == 10 { hc::record_metric(*id, 250) } else { hc::increment_metric(*id, 1) };
        }
    });
}

/// `quota`: one bucket read and written back by CAS (created when missing).
fn touch_bucket(key: &str) {
    match hc::get_shared_data(key) {
        Ok((Some(v), cas)) => {
            let mut v = v;
            v.push(b'.');
            v.truncate(64);
            let _ = hc::set_shared_data(key, Some(&v), cas);
        }
        _ => {
            let _ = hc::set_shared_data(key, Some(b"100 0 0"), None);
        }
    }
}

/// `today`: response headers added (known absent), one call each, as the gateway adds them.
fn add_response_headers(names: &[&str]) {
    for n in names {
        let _ = hc::add_map_value(MapType::HttpResponseHeaders, n, "1000000000000");
    }
}

/// The HTTP context for `floor` or `floor_upstream`, or `None` for another root id.
pub fn context(root_id: &str, x: Extras) -> Option<Box<dyn HttpContext>> {
    match root_id {
        "floor" => Some(Box::new(Listener(x))),
        "floor_upstream" => Some(Box::new(Attempt(x))),
        _ => None,
    }
}

fn body(kind: BufferType, size: usize) -> Option<Value> {
    let b = hc::get_buffer(kind, 0, size).ok()??;
    serde_json::from_slice(&b).ok()
}

fn rewrite(kind: BufferType, size: usize, key: &str, value: &str) {
    if let Some(mut v) = body(kind, size) {
        if let Some(o) = v.as_object_mut() {
            o.insert(key.to_string(), Value::String(value.to_string()));
        }
        if let Ok(out) = serde_json::to_vec(&v) {
            let _ = hc::set_buffer(kind, 0, size, &out);
        }
    }
}

/// Parses and writes a JSON body `n` times; the bytes written (kept from being optimised away).
pub fn work(body: &[u8], n: usize) -> usize {
    let mut total = 0;
    for _ in 0..n {
        if let Ok(v) = serde_json::from_slice::<Value>(std::hint::black_box(body)) {
            total += serde_json::to_vec(&v).map_or(0, |o| o.len());
        }
    }
    total
}

/// Headers go on with the body only once it is whole (buffered until then).
fn go_on_at(eos: bool) -> Action {
    if eos {
        Action::Continue
    } else {
        Action::Pause
    }
}

struct Listener(Extras);

#[cfg(not(feature = "in-bundle"))]
impl Context for Listener {}

impl HttpContext for Listener {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        let x = self.0;
        if x.headers {
            for h in [":method", ":path", "x-gateway-cost-ceiling-usd", "x-gateway-latency-budget-ms", "x-request-id"] {
                let _ = hc::get_map_value(MapType::HttpRequestHeaders, h);
            }
        }
        let _ = hc::get_map(MapType::HttpRequestHeaders);
        x.clock(1);
        go_on_at(eos)
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if !eos {
            return Action::Pause;
        }
        let model = body(BufferType::HttpRequestBody, size)
            .and_then(|v| v.get("model").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let _ = hc::set_map_value(MapType::HttpRequestHeaders, "x-aigw-chain", Some("chain_chat"));
        let _ = hc::call_foreign_function("clear_route_cache", None);
        let _ = hc::set_property(vec![ENTRY], Some(model.as_bytes()));
        if self.0.quota || self.0.today {
            touch_bucket("aigw.floor.q.tenant");
        }
        self.0.clock(1);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let _ = hc::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
        let _ = hc::set_map_value(MapType::HttpResponseHeaders, "x-aigw-floor", Some("1"));
        let x = self.0;
        if x.today {
            // The answer's headers read once, the attempts' entry read, the quota's settle
            // (the tenant's and the provider's buckets), and the twelve headers the listener adds.
            let _ = hc::get_map(MapType::HttpResponseHeaders);
            let _ = hc::get_property(vec![UPSTREAM]);
            touch_bucket("aigw.floor.q.tenant");
            touch_bucket("aigw.floor.q.provider");
            add_response_headers(&[
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
                "x-aigw-route",
                "x-aigw-attempts",
                "x-aigw-request-id",
                "x-aigw-tokens-input",
                "x-aigw-tokens-output",
                "x-aigw-cost-usd",
            ]);
            x.clock(1);
        }
        const NAMES: [&str; 20] = [
            "x-floor-00",
            "x-floor-01",
            "x-floor-02",
            "x-floor-03",
            "x-floor-04",
            "x-floor-05",
            "x-floor-06",
            "x-floor-07",
            "x-floor-08",
            "x-floor-09",
            "x-floor-10",
            "x-floor-11",
            "x-floor-12",
            "x-floor-13",
            "x-floor-14",
            "x-floor-15",
            "x-floor-16",
            "x-floor-17",
            "x-floor-18",
            "x-floor-19",
        ];
        if x.add20 {
            for n in NAMES {
                let _ = hc::add_map_value(MapType::HttpResponseHeaders, n, "value");
            }
        }
        if x.resp20 {
            for n in NAMES {
                let _ = hc::set_map_value(MapType::HttpResponseHeaders, n, Some("value"));
            }
        }
        if x.respmap20 {
            if let Ok(mut all) = hc::get_map(MapType::HttpResponseHeaders) {
                all.extend(NAMES.iter().map(|n| (n.to_string(), "value".to_string())));
                let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let _ = hc::set_map(MapType::HttpResponseHeaders, pairs);
            }
        }
        if x.props {
            let _ = hc::get_property(vec![UPSTREAM]);
        }
        if x.resp {
            let _ = hc::get_map_value(MapType::HttpResponseHeaders, ":status");
            let _ = hc::get_map_value(MapType::HttpResponseHeaders, "x-envoy-attempt-count");
            let _ = hc::get_map_value(MapType::HttpResponseHeaders, "content-type");
            for h in ["x-aigw-attempts", "x-aigw-model", "x-aigw-provider", "x-aigw-route"] {
                let _ = hc::set_map_value(MapType::HttpResponseHeaders, h, Some("anthropic"));
            }
        }
        x.clock(1);
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if !eos {
            return Action::Pause;
        }
        rewrite(BufferType::HttpResponseBody, size, "model", "chat");
        if self.0.props {
            let _ = hc::get_property(vec![UPSTREAM]);
        }
        if self.0.quota {
            touch_bucket("aigw.floor.q.tenant");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.0.today {
            let _ = hc::get_property(vec![UPSTREAM]);
            self.0.clock(1);
        }
        if self.0.metrics || self.0.today {
            record_metrics();
        }
        if self.0.audit || self.0.today {
            let record = format!("{{\"version\":2,\"attempts\":[],\"pad\":\"{}\"}}", "x".repeat(1500));
            let _ = hc::set_property(vec!["aigw_floor_audit"], Some(record.as_bytes()));
        }
    }
}

struct Attempt(Extras);

#[cfg(not(feature = "in-bundle"))]
impl Context for Attempt {}

impl HttpContext for Attempt {
    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        let x = self.0;
        let _ = hc::get_property(vec![ENTRY]);
        if x.meta {
            for k in ["provider", "region"] {
                let _ = hc::get_property(vec!["xds", "upstream_host_metadata", "filter_metadata", "aigw", k]);
            }
        }
        for _ in 0..if x.meta20 { 20 } else { 0 } {
            let _ = hc::get_property(vec!["xds", "upstream_host_metadata", "filter_metadata", "aigw", "provider"]);
        }
        for _ in 0..if x.metawhole20 { 20 } else { 0 } {
            let _ = hc::get_property(vec!["xds", "upstream_host_metadata"]);
        }
        if x.headers {
            let _ = hc::get_map(MapType::HttpRequestHeaders);
            for (h, v) in [
                ("content-type", "application/json"),
                ("x-request-id", "rid"),
                ("x-forwarded-proto", "http"),
                ("x-envoy-expected-rq-timeout-ms", "600000"),
                ("anthropic-version", "2023-06-01"),
                ("x-aigw-chain", ""),
            ] {
                let _ = hc::set_map_value(MapType::HttpRequestHeaders, h, if v.is_empty() { None } else { Some(v) });
            }
        }
        if x.props {
            let _ = hc::set_property(vec![UPSTREAM], Some(b"attempt one"));
        }
        if x.quota {
            let _ = hc::get_shared_data("aigw.floor.cred.bad");
            touch_bucket("aigw.floor.q.provider");
        }
        if x.today {
            // The endpoint's metadata (one map), the request's headers once, the provider's
            // bucket charged, and the headers the Anthropic module sets beyond the floor's.
            let _ = hc::get_property(vec!["xds", "upstream_host_metadata", "filter_metadata", "aigw"]);
            let _ = hc::get_map(MapType::HttpRequestHeaders);
            touch_bucket("aigw.floor.q.provider");
            let _ = hc::set_map_value(MapType::HttpRequestHeaders, "anthropic-version", Some("2023-06-01"));
            let _ = hc::set_map_value(MapType::HttpRequestHeaders, "authorization", None);
        }
        x.clock(1);
        let _ = hc::set_map_value(MapType::HttpRequestHeaders, ":path", Some("/v1/messages"));
        let _ = hc::set_map_value(MapType::HttpRequestHeaders, "x-api-key", Some("floor-key"));
        let _ = hc::set_map_value(MapType::HttpRequestHeaders, "content-length", None);
        go_on_at(eos)
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        if !eos {
            return Action::Pause;
        }
        rewrite(BufferType::HttpRequestBody, size, "model", "claude-sonnet-4-5");
        if self.0.today {
            let _ = hc::set_property(vec![UPSTREAM], Some(b"attempt one"));
        }
        if self.0.headers {
            let _ = hc::set_map_value(MapType::HttpRequestHeaders, "content-type", Some("application/json"));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> Action {
        let _ = hc::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
        let x = self.0;
        if x.resp {
            let _ = hc::get_map(MapType::HttpResponseHeaders);
            for (h, v) in [("connection", "keep-alive"), ("server", "aigw"), ("content-type", "application/json")] {
                let _ = hc::set_map_value(MapType::HttpResponseHeaders, h, Some(v));
            }
        }
        if x.props {
            let _ = hc::set_property(vec![UPSTREAM], Some(b"attempt one, status 200"));
        }
        if x.today {
            let _ = hc::get_map(MapType::HttpResponseHeaders);
            let _ = hc::set_map_value(MapType::HttpResponseHeaders, "request-id", None);
            add_response_headers(&["x-aigw-provider-request-id", "x-aigw-provider", "x-aigw-model"]);
            let _ = hc::set_property(vec![UPSTREAM], Some(b"attempt one, status 200"));
        }
        x.clock(1);
        if x.holdheaders {
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        if !eos {
            return Action::Pause;
        }
        let x = self.0;
        if x.work10 {
            if let Ok(Some(b)) = hc::get_buffer(BufferType::HttpResponseBody, 0, size) {
                std::hint::black_box(work(&b, 10));
            }
        }
        rewrite(BufferType::HttpResponseBody, size, "id", "msg_floor");
        if x.shared {
            let _ = hc::get_shared_data("aigw.floor.health");
            let _ = hc::set_shared_data("aigw.floor.health", Some(b"1 2 3"), None);
        }
        if x.props || x.today {
            let _ = hc::set_property(vec![UPSTREAM], Some(b"attempt one, status 200, usage 14 9"));
        }
        if x.quota {
            touch_bucket("aigw.floor.q.provider");
        }
        x.clock(1);
        Action::Continue
    }
}

/// This crate's own module (not when linked into the gateway's): the root id, read once Envoy
/// configures the plugin, chooses the context.
#[cfg(all(target_arch = "wasm32", not(feature = "in-bundle")))]
mod entry {
    use super::{context, Extras};
    use proxy_wasm::hostcalls as hc;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{BufferType, ContextType};

    struct Root {
        root_id: String,
        extras: Extras,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            let id = hc::get_property(vec!["plugin_root_id"]).ok().flatten().unwrap_or_default();
            self.root_id = String::from_utf8_lossy(&id).into_owned();
            let conf =
                hc::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
            self.extras = Extras::parse(&String::from_utf8_lossy(&conf));
            true
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            context(&self.root_id, self.extras)
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { root_id: String::new(), extras: Extras::default() }) });
    }}
}
