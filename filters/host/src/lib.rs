//! Host access for the filters: the proxy-wasm ABI's host calls ([`abi`]), each status a value
//! (the SDK's wrappers trap the VM on a status they did not expect), and its entry points
//! ([`dispatch`]), which hand each callback to the context it names.

use aigw_core::headers;

pub use dispatch::{Action, HttpContext, RootContext};

pub mod abi;
pub mod alloc;
pub mod dispatch;

/// Envoy's log levels, as the ABI numbers them.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
    Critical = 5,
}

pub fn log(level: LogLevel, msg: &str) {
    let _ = abi::log(level as u32, msg);
}

pub fn warn(msg: &str) {
    log(LogLevel::Warn, msg);
}

/// The plugin configuration bytes (empty when none was given).
pub fn plugin_config() -> Vec<u8> {
    abi::buffer(abi::PLUGIN_CONFIGURATION, 0, usize::MAX).unwrap_or_default()
}

/// A property's value; `None` when it is absent or empty.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::property(&abi::property_path(path)).ok().filter(|v| !v.is_empty())
}

pub fn property_string(path: &[&str]) -> Option<String> {
    property(path).and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty())
}

pub fn set_property(name: &str, value: &str) {
    let _ = abi::set_property(name.as_bytes(), value.as_bytes());
}

/// All request headers in one host call (names are lowercase). Bytes that are not UTF-8 are
/// replaced, never trusted.
pub fn request_headers() -> Vec<(String, String)> {
    headers::decode_map(&abi::header_pairs(abi::REQUEST_HEADERS).unwrap_or_default())
}

/// The root id this plugin instance was configured with.
pub fn root_id() -> String {
    property_string(&["plugin_root_id"]).unwrap_or_default()
}

pub fn now_ms() -> u64 {
    abi::now_ns().map_or(0, |ns| ns / 1_000_000)
}

/// One request header (bytes that are not UTF-8 are replaced, never trusted).
pub fn request_header(name: &str) -> Option<String> {
    abi::header(abi::REQUEST_HEADERS, name).ok().map(headers::text)
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = abi::set_header(abi::REQUEST_HEADERS, name, value.map(str::as_bytes));
}

/// All response headers in one host call.
pub fn response_headers() -> Vec<(String, String)> {
    headers::decode_map(&abi::header_pairs(abi::RESPONSE_HEADERS).unwrap_or_default())
}

pub fn response_header(name: &str) -> Option<String> {
    abi::header(abi::RESPONSE_HEADERS, name).ok().map(headers::text)
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = abi::set_header(abi::RESPONSE_HEADERS, name, value.map(str::as_bytes));
}

pub fn request_body(size: usize) -> Vec<u8> {
    abi::buffer(abi::REQUEST_BODY, 0, size).unwrap_or_default()
}

/// Replaces the whole buffered request body (`size` bytes) with `body`.
pub fn replace_request_body(size: usize, body: &[u8]) {
    let _ = abi::set_buffer(abi::REQUEST_BODY, 0, size, body);
}

pub fn response_body(size: usize) -> Vec<u8> {
    abi::buffer(abi::RESPONSE_BODY, 0, size).unwrap_or_default()
}

pub fn replace_response_body(size: usize, body: &[u8]) {
    let _ = abi::set_buffer(abi::RESPONSE_BODY, 0, size, body);
}

/// A shared-data value (shared by every worker of the VM) and its compare-and-swap token.
/// `Err(())`: the store failed.
#[allow(clippy::result_unit_err)]
pub fn shared_get(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
    match abi::shared_data(key) {
        Ok((v, cas)) => Ok((v, (cas != 0).then_some(cas))),
        Err(abi::NOT_FOUND) => Ok((None, None)),
        Err(_) => Err(()),
    }
}

pub use aigw_core::host::SharedSetError;

/// Writes a shared-data value; with `cas`, only if nobody wrote it since it was read.
pub fn shared_set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
    match abi::set_shared_data(key, value, cas.unwrap_or(0)) {
        Ok(()) => Ok(()),
        Err(abi::CAS_MISMATCH) => Err(SharedSetError::CasMismatch),
        Err(_) => Err(SharedSetError::Failed),
    }
}

/// Answers the caller directly (a local reply). `false` when the host refused.
pub fn send_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
    abi::send_local_response(u32::from(status), &abi::encode_map(headers), body).is_ok()
}

/// Makes Envoy pick the route again, so headers set by a filter reach `cluster_header`.
pub fn clear_route_cache() {
    if abi::call_foreign_function("clear_route_cache", &[]).is_err() {
        warn("aigw: clear_route_cache is not available on this host");
    }
}

/// Reads and parses the plugin configuration, logging what is wrong when it is invalid.
pub fn load_config<T: aigw_core::config::FromConfig>(filter: &str) -> Option<T> {
    match aigw_core::parse_config::<T>(filter, &plugin_config()) {
        Ok(c) => Some(c),
        Err(e) => {
            log(LogLevel::Error, &e.to_string());
            None
        }
    }
}

/// Reads, parses and compiles the plugin configuration once; on failure logs a line that names
/// the filter and the problem and returns `None` (so `on_configure` returns false).
pub fn configure<C: aigw_core::config::FromConfig, T>(
    filter: &str,
    compile: impl FnOnce(C) -> Result<T, aigw_core::error::ConfigError>,
) -> Option<T> {
    match compile(load_config::<C>(filter)?) {
        Ok(t) => Some(t),
        Err(e) => {
            log(LogLevel::Error, &e.to_string());
            None
        }
    }
}

/// What Envoy should do after a stage's callback.
pub fn action(f: aigw_core::host::Flow) -> Action {
    match f {
        aigw_core::host::Flow::Continue => Action::Continue,
        aigw_core::host::Flow::Pause | aigw_core::host::Flow::Refused => Action::Pause,
    }
}

/// The answer to an outgoing HTTP call, read in its `on_http_call_response`.
pub fn http_call_answer(body_size: usize) -> aigw_core::host::HttpAnswer {
    let headers = headers::decode_map(&abi::header_pairs(abi::HTTP_CALL_RESPONSE_HEADERS).unwrap_or_default());
    let body = if body_size > 0 {
        abi::buffer(abi::HTTP_CALL_RESPONSE_BODY, 0, body_size).unwrap_or_default()
    } else {
        Vec::new()
    };
    aigw_core::host::HttpAnswer::new(headers, body)
}

/// Asks for `on_tick` every `ms` (a root context); false when the proxy refused.
pub fn set_tick_period(ms: u64) -> bool {
    abi::set_tick_period(u32::try_from(ms).unwrap_or(u32::MAX)).is_ok()
}

/// The proxy-wasm HTTP context of any of the core's call contexts: each callback is handed on
/// with the proxy as its host.
pub struct Forward<C>(pub C);

impl<C: aigw_core::host::Callbacks> HttpContext for Forward<C> {
    fn on_http_call_response(&mut self, token: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        trace::hit("cb:http_call_response");
        let answer = http_call_answer(body_size);
        self.0.on_http_call_response(&ProxyHost, token, &answer);
    }

    fn on_http_request_headers(&mut self, _n: usize, eos: bool) -> Action {
        trace::hit("cb:request_headers");
        action(self.0.on_request_headers(&ProxyHost, eos))
    }

    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        trace::hit("cb:request_body");
        action(self.0.on_request_body(&ProxyHost, size, eos))
    }

    fn on_http_response_headers(&mut self, _n: usize, eos: bool) -> Action {
        trace::hit("cb:response_headers");
        action(self.0.on_response_headers(&ProxyHost, eos))
    }

    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        trace::hit("cb:response_body");
        action(self.0.on_response_body(&ProxyHost, size, eos))
    }

    fn on_log(&mut self) {
        trace::hit("cb:log");
        self.0.on_log(&ProxyHost);
        trace::call_ended();
    }
}

/// The proxy-wasm host as the core's stages see it (`aigw_core::host::Host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyHost;

impl aigw_core::host::Host for ProxyHost {
    fn request_headers(&self) -> Vec<(String, String)> {
        trace::hit("request_headers");
        request_headers()
    }
    fn request_header(&self, name: &str) -> Option<String> {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("request_header:{name}"));
        request_header(name)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("set_request_header:{name}"));
        set_request_header(name, value)
    }
    fn response_headers(&self) -> Vec<(String, String)> {
        trace::hit("response_headers");
        response_headers()
    }
    fn request_header_list(&self) -> aigw_core::headers::HeaderList {
        trace::hit("request_headers");
        aigw_core::headers::HeaderList::decode(abi::header_pairs(abi::REQUEST_HEADERS).unwrap_or_default())
    }
    fn response_header_list(&self) -> aigw_core::headers::HeaderList {
        trace::hit("response_headers");
        aigw_core::headers::HeaderList::decode(abi::header_pairs(abi::RESPONSE_HEADERS).unwrap_or_default())
    }
    fn response_header(&self, name: &str) -> Option<String> {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("response_header:{name}"));
        response_header(name)
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("set_response_header:{name}"));
        set_response_header(name, value)
    }
    fn add_response_header(&self, name: &str, value: &str) {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("add_response_header:{name}"));
        let _ = abi::add_header(abi::RESPONSE_HEADERS, name, value.as_bytes());
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        trace::hit("request_body");
        request_body(size)
    }
    fn replace_request_body(&self, size: usize, body: &[u8]) {
        trace::hit("replace_request_body");
        replace_request_body(size, body)
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        trace::hit("response_body");
        response_body(size)
    }
    fn replace_response_body(&self, size: usize, body: &[u8]) {
        trace::hit("replace_response_body");
        replace_response_body(size, body)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("property:{}", path.join(".")));
        property(path)
    }
    fn upstream_metadata_all(&self) -> Option<Vec<(String, String)>> {
        trace::hit("upstream_metadata_all");
        // Envoy gives a map of strings as a header map is given (pairs); a map with any other
        // value fails to serialise, and the caller then reads values one by one.
        let path = ["xds", "upstream_host_metadata", "filter_metadata", aigw_core::headers::METADATA_NAMESPACE];
        let bytes = abi::property(&abi::property_path(&path)).ok().filter(|v| !v.is_empty())?;
        Some(headers::decode_map(&bytes))
    }
    fn set_property_bytes(&self, name: &str, value: &[u8]) {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("set_property:{name}"));
        let _ = abi::set_property(name.as_bytes(), value);
    }
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("shared_get:{}", key.split(':').next().unwrap_or("")));
        shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        #[cfg(feature = "trace-calls")]
        trace::hit(&format!("shared_set:{}", key.split(':').next().unwrap_or("")));
        shared_set(key, value, cas)
    }
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        trace::hit("send_response");
        send_response(status, headers, body)
    }
    fn now_ms(&self) -> u64 {
        trace::hit("now_ms");
        now_ms()
    }
    fn random_u64(&self) -> u64 {
        trace::hit("random_u64");
        // (Should the runtime refuse, the clock's nanoseconds: a replica's id still differs from
        // others started at another instant.)
        abi::random_u64().or_else(|_| abi::now_ns()).unwrap_or(0)
    }
    fn warn(&self, msg: &str) {
        trace::hit("warn");
        warn(msg)
    }
    fn clear_route_cache(&self) {
        trace::hit("clear_route_cache");
        clear_route_cache()
    }
    fn counter_add(&self, name: &str, by: u64) {
        self.counter_add_parts(&[name], by);
    }
    fn counter_add_parts(&self, parts: &[&str], by: u64) {
        trace::hit("counter_add");
        if let Some(id) = metric_id(abi::COUNTER, parts) {
            let _ = abi::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
        }
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, ()> {
        trace::hit("http_call");
        let timeout = u32::try_from(timeout_ms).unwrap_or(u32::MAX);
        let token = abi::http_call(cluster, &abi::encode_map(headers), body, timeout).map_err(|_| ())?;
        // The answer goes to the context running now, the one that made the call.
        dispatch::register_callout(token);
        Ok(token)
    }
    fn resume_request(&self) {
        trace::hit("resume_request");
        let _ = abi::continue_stream(abi::STREAM_REQUEST);
    }
    fn resume_response(&self) {
        trace::hit("resume_response");
        let _ = abi::continue_stream(abi::STREAM_RESPONSE);
    }
    fn histogram_record(&self, name: &str, value: u64) {
        self.histogram_record_parts(&[name], value);
    }
    fn histogram_record_parts(&self, parts: &[&str], value: u64) {
        trace::hit("histogram_record");
        if let Some(id) = metric_id(abi::HISTOGRAM, parts) {
            let _ = abi::record_metric(id, value);
        }
    }
}

thread_local! {
    /// Metric ids, defined on first use and kept for the life of the VM (Envoy keeps a metric
    /// defined by name: defining it again returns the same id). Found by the fingerprint of the
    /// name's parts (see [`metric_id`]): the names are the gateway's own (from configured
    /// providers, models and aliases), and a call looks up about ten of them.
    static METRIC_IDS: std::cell::RefCell<MetricIds> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Metric ids by their names' fingerprints ([`fingerprint`]), sorted by fingerprint and found
/// by binary search (a few hundred names at most: no hash table's code for this).
type MetricIds = Vec<((u64, u64), u32)>;

/// A 128-bit fingerprint of a metric name given in parts: two 64-bit lanes over each part 8
/// bytes at a time, each part's last word tagged with its length (so a part boundary counts:
/// the same name in other parts is another fingerprint, and gets an entry of its own with the
/// same id). The names are the gateway's own (configured providers, models, aliases, tenants
/// and fixed words), never a caller's; names are told apart by fingerprint alone, without
/// comparing their bytes (two names with one fingerprint: about 2^-128 apart).
fn fingerprint(parts: &[&str]) -> (u64, u64) {
    let (mut a, mut b) = (0xcbf2_9ce4_8422_2325_u64, 0x9e37_79b9_7f4a_7c15_u64);
    let mut mix = |w: u64| {
        a = (a ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
        b = (b ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd).rotate_left(31);
    };
    for p in parts {
        // (Words read as arrays and the tail byte by byte: no memory copy, which the Wasm
        // engine makes a call out of the module.)
        let mut chunks = p.as_bytes().chunks_exact(8);
        for c in &mut chunks {
            mix(u64::from_le_bytes(<[u8; 8]>::try_from(c).unwrap_or_default()));
        }
        let mut tail = u64::from(0x80 | (p.len() % 8) as u8) << 56;
        for (i, &byte) in chunks.remainder().iter().enumerate() {
            tail |= u64::from(byte) << (8 * i);
        }
        mix(tail);
    }
    (a ^ (a >> 29), b ^ (b >> 32))
}

/// A metric's id, by its name given in parts (the name is the parts joined): found by the
/// parts' fingerprint without writing the name, which is written only to define a metric the
/// first time (Envoy returns a defined metric's id again).
fn metric_id(kind: u32, parts: &[&str]) -> Option<u32> {
    let key = fingerprint(parts);
    METRIC_IDS.with(|ids| {
        let at = ids.borrow().binary_search_by(|(k, _)| k.cmp(&key));
        match at {
            Ok(i) => ids.borrow().get(i).map(|(_, id)| *id),
            Err(i) => {
                let id = abi::define_metric(kind, &parts.concat()).ok()?;
                ids.borrow_mut().insert(i, (key, id));
                Some(id)
            }
        }
    })
}

/// Host-call counts per call, for measuring (feature `trace-calls`; off in every build we ship):
/// every 1000 calls that end on the listener, the per-call average of each host call is logged.
mod trace {
    #[cfg(feature = "trace-calls")]
    thread_local! {
        static COUNTS: std::cell::RefCell<std::collections::BTreeMap<String, u64>> = Default::default();
    }

    #[cfg(feature = "trace-calls")]
    pub fn hit(name: &str) {
        COUNTS.with(|c| *c.borrow_mut().entry(name.own()).or_default() += 1);
    }

    #[cfg(not(feature = "trace-calls"))]
    #[inline(always)]
    pub fn hit(_name: &str) {}

    #[cfg(feature = "trace-calls")]
    pub fn call_ended() {
        COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            let n = c.entry("calls".own()).or_default();
            *n += 1;
            if *n == 1000 {
                let line: Vec<String> = c.iter().map(|(k, v)| format!("{k}={:.2}", *v as f64 / 1000.0)).collect();
                super::log(super::LogLevel::Error, &format!("aigw trace: {}", line.join(" ")));
                c.clear();
            }
        });
    }

    #[cfg(not(feature = "trace-calls"))]
    #[inline(always)]
    pub fn call_ended() {}
}

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn a_metric_name_in_parts_has_one_fingerprint() {
        let parts = ["aigw_requests_total.provider.", "anthropic", ".model.", "m", ".outcome.", "ok"];
        // The same parts (other strings with the same bytes): the same fingerprint.
        let owned = parts.map(str::to_string);
        assert_eq!(fingerprint(&parts), fingerprint(&owned.each_ref().map(String::as_str)));
        // Another name, a prefix of it, or more than it: another fingerprint, in both lanes.
        for other in [
            &["aigw_requests_total.provider.", "anthropic", ".model.", "m", ".outcome.", "o"][..],
            &["aigw_requests_total.provider.", "openai", ".model.", "m", ".outcome.", "ok"],
            &["aigw_requests_total.provider.", "anthropic", ".model.", "m", ".outcome."],
            &["aigw_requests_total.provider.", "anthropic", ".model.", "m", ".outcome.", "ok", "x"],
            &["aigw_requests_total.provider.", "anthropic", ".model.", "m", ".outcome.", "ok\0"],
        ] {
            let (x, y) = (fingerprint(&parts), fingerprint(other));
            assert!(x.0 != y.0 && x.1 != y.1, "{other:?}");
        }
        // Part boundaries count; so does a part's length where its bytes alone would not.
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_ne!(fingerprint(&["a"]), fingerprint(&["a", ""]));
        assert_ne!(fingerprint(&["abcdefgh"]), fingerprint(&["abcdefgh", ""]));
        assert_ne!(fingerprint(&[""]), fingerprint(&[]));
    }
}
