//! Host access for the filters. Every call goes through `proxy_wasm::hostcalls` and handles the
//! `Result`, because the SDK's convenience methods trap the VM on a host error.

use std::time::UNIX_EPOCH;

use aigw_core::error::GatewayError;
use aigw_core::headers;
use proxy_wasm::hostcalls as hc;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

pub use proxy_wasm;

pub fn log(level: LogLevel, msg: &str) {
    let _ = hc::log(level, msg);
}

pub fn warn(msg: &str) {
    log(LogLevel::Warn, msg);
}

/// The plugin configuration bytes (empty when none was given).
pub fn plugin_config() -> Vec<u8> {
    hc::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default()
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hc::get_property(path.to_vec()).ok().flatten()
}

pub fn property_string(path: &[&str]) -> Option<String> {
    property(path).and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty())
}

pub fn set_property(name: &str, value: &str) {
    let _ = hc::set_property(vec![name], Some(value.as_bytes()));
}

/// The caller's identity recorded by auth-key-swap, if it ran.
pub fn identity() -> Option<aigw_core::keys::CallIdentity> {
    aigw_core::keys::CallIdentity::parse(&property(&[headers::PROP_IDENTITY])?)
}

/// All request headers in one host call (names are lowercase).
pub fn request_headers() -> Vec<(String, String)> {
    hc::get_map(MapType::HttpRequestHeaders).unwrap_or_default()
}

/// Removes, from the request, the headers in `present` (as returned by [`request_headers`])
/// that `drop` selects: only headers that exist cost a host call.
pub fn remove_request_headers(present: &[(String, String)], drop: impl Fn(&str) -> bool) {
    for (name, _) in present.iter().filter(|(n, _)| drop(n)) {
        set_request_header(name, None);
    }
}

/// The root id this plugin instance was configured with.
pub fn root_id() -> String {
    property_string(&["plugin_root_id"]).unwrap_or_default()
}

/// A value of the gateway's endpoint metadata on the upstream host this attempt goes to.
pub fn upstream_metadata(key: &str) -> Option<String> {
    property_string(&["xds", "upstream_host_metadata", "filter_metadata", headers::METADATA_NAMESPACE, key])
}

/// The provider name of the upstream host this attempt goes to.
pub fn upstream_provider() -> Option<String> {
    upstream_metadata(headers::METADATA_PROVIDER)
}

pub fn now_ms() -> u64 {
    hc::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn request_header(name: &str) -> Option<String> {
    hc::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    let _ = hc::set_map_value(MapType::HttpRequestHeaders, name, value);
}

pub fn response_header(name: &str) -> Option<String> {
    hc::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    let _ = hc::set_map_value(MapType::HttpResponseHeaders, name, value);
}

pub fn request_body(size: usize) -> Vec<u8> {
    hc::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default()
}

/// Replaces the whole buffered request body (`size` bytes) with `body`.
pub fn replace_request_body(size: usize, body: &[u8]) {
    let _ = hc::set_buffer(BufferType::HttpRequestBody, 0, size, body);
}

pub fn response_body(size: usize) -> Vec<u8> {
    hc::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten().unwrap_or_default()
}

pub fn replace_response_body(size: usize, body: &[u8]) {
    let _ = hc::set_buffer(BufferType::HttpResponseBody, 0, size, body);
}

/// Whether the call came in by the Messages door (`/v1/messages`): route-select says so in filter
/// state; before it has run, the request path still says so.
pub fn messages_door() -> bool {
    match property_string(&[headers::PROP_DOOR]) {
        Some(door) => door == "messages",
        None => request_header(":path").is_some_and(|p| p.split('?').next() == Some(aigw_core::messages_in::PATH)),
    }
}

/// Answers the caller with the gateway's error: OpenAI's shape, or Anthropic's on the Messages door.
pub fn send_error(err: &GatewayError, extra_headers: &[(&str, &str)]) {
    let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    h.extend_from_slice(extra_headers);
    let body = if messages_door() {
        aigw_core::messages_in::error_from_openai(err.status, err.body().as_bytes())
    } else {
        err.body().into_bytes()
    };
    if hc::send_http_response(u32::from(err.status), h, Some(&body)).is_err() {
        warn("aigw: could not send a local reply");
    }
}

/// Makes Envoy pick the route again, so headers set by a filter reach `cluster_header`.
pub fn clear_route_cache() {
    if hc::call_foreign_function("clear_route_cache", None).is_err() {
        warn("aigw: clear_route_cache is not available on this host");
    }
}

/// Reads and parses the plugin configuration, logging what is wrong when it is invalid.
pub fn load_config<T: aigw_core::serde_de_owned::DeserializeOwned>(filter: &str) -> Option<T> {
    match aigw_core::parse_config::<T>(filter, &plugin_config()) {
        Ok(c) => Some(c),
        Err(e) => {
            log(LogLevel::Error, &e);
            None
        }
    }
}

/// Reads, parses and compiles the plugin configuration once; on failure logs a line that names
/// the filter and the problem and returns `None` (so `on_configure` returns false).
pub fn configure<C: aigw_core::serde_de_owned::DeserializeOwned, T>(
    filter: &str,
    compile: impl FnOnce(C) -> Result<T, String>,
) -> Option<T> {
    match compile(load_config::<C>(filter)?) {
        Ok(t) => Some(t),
        Err(e) => {
            log(LogLevel::Error, &e);
            None
        }
    }
}
