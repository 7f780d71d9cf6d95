//! What a stage may ask of the proxy it runs in: headers, bodies, properties (filter state and
//! Envoy's attributes), shared data with compare-and-swap, local replies, the clock and logs.
//!
//! `aigw_host::ProxyHost` implements it over the proxy-wasm ABI; [`FakeHost`] implements it in
//! memory, so a stage's whole behaviour (its refusals, the headers it sets, what it leaves in
//! filter state) is tested natively.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::error::GatewayError;
use crate::headers::HeaderList;
use crate::text::Text;

/// Why a shared-data write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedSetError {
    /// Another worker wrote the key since it was read.
    CasMismatch,
    Failed,
}

/// The proxy, as the stages see it. Every method is infallible or returns what failed: a host
/// error never panics.
pub trait Host {
    /// All request headers (names lowercase; bytes that are not UTF-8 replaced).
    fn request_headers(&self) -> Vec<(String, String)>;
    fn request_header(&self, name: &str) -> Option<String>;
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn response_headers(&self) -> Vec<(String, String)>;
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&self, name: &str, value: Option<&str>);
    /// All request headers as one [`HeaderList`] (the proxy's host decodes its read into one,
    /// without a string per header).
    fn request_header_list(&self) -> HeaderList {
        HeaderList::from_pairs(&self.request_headers())
    }
    /// [`Host::request_header_list`], for the response headers.
    fn response_header_list(&self) -> HeaderList {
        HeaderList::from_pairs(&self.response_headers())
    }
    /// `f` over all request headers, borrowed where the host keeps them (the call state keeps
    /// a callback's one read): no copy of the list. `f` must not call the host.
    fn with_request_headers<R>(&self, f: impl FnOnce(&HeaderList) -> R) -> R {
        f(&self.request_header_list())
    }
    /// [`Host::with_request_headers`], for the response headers.
    fn with_response_headers<R>(&self, f: impl FnOnce(&HeaderList) -> R) -> R {
        f(&self.response_header_list())
    }
    /// Adds a value for a response header the caller knows the map lacks (a host call cheaper
    /// than [`Host::set_response_header`]'s replace; on a map that has it, the header would
    /// have two values).
    fn add_response_header(&self, name: &str, value: &str) {
        self.set_response_header(name, Some(value));
    }
    /// The buffered request body (`size` bytes).
    fn request_body(&self, size: usize) -> Vec<u8>;
    fn replace_request_body(&self, size: usize, body: &[u8]);
    fn response_body(&self, size: usize) -> Vec<u8>;
    fn replace_response_body(&self, size: usize, body: &[u8]);
    /// A property (filter state, or an Envoy attribute such as `xds.upstream_host_metadata`);
    /// `None` when absent or empty.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    fn set_property_bytes(&self, name: &str, value: &[u8]);
    fn set_property(&self, name: &str, value: &str) {
        self.set_property_bytes(name, value.as_bytes())
    }
    /// A shared-data value and its CAS token; `Err(())` when the store failed.
    #[allow(clippy::result_unit_err)]
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()>;
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError>;
    /// Answers the caller directly; `false` when the host refused.
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool;
    fn now_ms(&self) -> u64;
    /// A random number (for ids that must differ between replicas, not for secrets).
    fn random_u64(&self) -> u64;
    fn warn(&self, msg: &str);
    /// Makes Envoy pick the route again, so headers set by a stage reach `cluster_header`.
    fn clear_route_cache(&self);
    /// Adds `by` to the counter `name` (defined on first use).
    fn counter_add(&self, name: &str, by: u64);
    /// Records `value` in the histogram `name` (defined on first use).
    fn histogram_record(&self, name: &str, value: u64);
    /// [`Host::counter_add`] of the name that is `parts` joined: a host that keeps metric ids
    /// finds one without writing the name out.
    fn counter_add_parts(&self, parts: &[&str], by: u64) {
        self.counter_add(&parts.concat(), by);
    }
    /// [`Host::histogram_record`] of the name that is `parts` joined.
    fn histogram_record_parts(&self, parts: &[&str], value: u64) {
        self.histogram_record(&parts.concat(), value);
    }
    /// Sends an HTTP request to the Envoy cluster `cluster` (`headers` include `:method`,
    /// `:path` and `:authority`); the answer comes to the context's
    /// [`Callbacks::on_http_call_response`] with the returned token. `Err(())`: the proxy
    /// refused it (no such cluster, bad headers).
    #[allow(clippy::result_unit_err)]
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, ()>;
    /// Lets a paused request go on (after a callback returned [`Flow::Pause`]). A context that
    /// waits for a call's answer holds the request body as well, or the body lets the request
    /// go on early.
    fn resume_request(&self);
    /// Lets a paused response go on.
    fn resume_response(&self);

    fn property_string(&self, path: &[&str]) -> Option<String> {
        self.property(path).and_then(|b| String::from_utf8(b).ok()).filter(|s| !s.is_empty())
    }

    /// A value of the gateway's endpoint metadata (`aigw.<key>`) on the upstream host this
    /// attempt goes to.
    fn upstream_metadata(&self, key: &str) -> Option<String> {
        self.property_string(&[
            "xds",
            "upstream_host_metadata",
            "filter_metadata",
            crate::headers::METADATA_NAMESPACE,
            key,
        ])
    }

    /// All of the gateway's endpoint metadata (`aigw.*`) on the upstream host this attempt goes
    /// to, in one read; `None` when the proxy cannot give it as one map of strings (then
    /// [`Host::upstream_metadata`] reads each value alone).
    fn upstream_metadata_all(&self) -> Option<Vec<(String, String)>> {
        None
    }

    /// The caller's identity, as the auth stage recorded it.
    fn call_identity(&self) -> Option<std::rc::Rc<crate::auth::keys::CallIdentity>> {
        crate::auth::keys::CallIdentity::parse(&self.property(&[crate::headers::PROP_IDENTITY])?).map(std::rc::Rc::new)
    }

    /// The caller's privacy zone, as the auth stage recorded it (the identity's, read once).
    fn call_zone(&self) -> Option<String> {
        self.call_identity()?.zone.clone()
    }

    /// Closes the last of `attempts` if a timer cut it (see `audit::close_unanswered`).
    fn close_unanswered(&self, attempts: &mut [crate::audit::Attempt]) {
        if attempts.last().is_none_or(|a| a.status.is_some()) {
            return;
        }
        let per_try = self.property_string(&[crate::headers::PROP_PER_TRY_MS]).and_then(|v| v.int_as());
        let details = self.property_string(&["response", "code_details"]);
        crate::audit::close_unanswered(attempts, per_try, details.as_deref(), self.now_ms());
    }

    /// Removes, from the request, the headers of `present` that `drop` selects: only headers
    /// that exist cost a host call.
    fn remove_request_headers(&self, present: &[(String, String)], drop: &dyn Fn(&str) -> bool) {
        for (name, _) in present.iter().filter(|(n, _)| drop(n)) {
            self.set_request_header(name, None);
        }
    }

    /// Removes the request headers `drop` names, of those present now.
    fn remove_request_headers_where(&self, drop: &dyn Fn(&str) -> bool) {
        self.remove_request_headers(&self.request_headers(), drop);
    }

    /// Answers with the gateway's error, in OpenAI's shape or, on the Messages door, Anthropic's.
    fn send_error(&self, err: &GatewayError, messages_door: bool, extra_headers: &[(&str, &str)]) {
        // For the audit record (in the side's one entry, written before the reply).
        self.set_property(crate::headers::PROP_ERROR_CODE, err.code);
        let mut h: Vec<(&str, &str)> = vec![("content-type", "application/json")];
        h.extend_from_slice(extra_headers);
        let body = if messages_door {
            crate::wire::messages_in::error_body(err.status, &err.message)
        } else {
            err.body().into_bytes()
        };
        if !self.send_response(err.status, &h, &body) {
            self.warn("aigw: could not send a local reply");
        }
    }
}

/// Shared data: each key's value and its compare-and-swap token.
pub type SharedData = HashMap<String, (Vec<u8>, u32)>;

/// Whether the caller speaks Anthropic's API: it came in by the Messages door (`/v1/messages`),
/// or asked for the model list with `anthropic-version` (as Anthropic's SDK does). route-select
/// says so in filter state; before it has run, the request still says so. Refusals take that
/// shape.
pub fn messages_door(h: &impl Host) -> bool {
    match h.property_string(&[crate::headers::PROP_DOOR]) {
        Some(door) => door == "messages",
        None => {
            let path = h.request_header(":path").unwrap_or_default();
            let path = path.before(b'?');
            path == crate::wire::messages_in::PATH
                || (crate::route::models::is_models_path(path) && h.request_header("anthropic-version").is_some())
        }
    }
}

/// What a stage tells the proxy to do with the stream after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Hold the headers (or this body chunk) until more arrives.
    Pause,
    /// The stage answered the caller itself (a local reply was sent): nothing after it runs
    /// (for the proxy, the same as `Pause`).
    Refused,
}

/// A call's context as the proxy drives it: one method per callback, each letting the stream go
/// on unless the context says otherwise. The proxy-wasm adapter (`aigw_host::Forward`) is the
/// same for every context.
pub trait Callbacks {
    fn on_request_headers<H: Host>(&mut self, _h: &H, _eos: bool) -> Flow {
        Flow::Continue
    }
    fn on_request_body<H: Host>(&mut self, _h: &H, _size: usize, _eos: bool) -> Flow {
        Flow::Continue
    }
    fn on_response_headers<H: Host>(&mut self, _h: &H, _eos: bool) -> Flow {
        Flow::Continue
    }
    fn on_response_body<H: Host>(&mut self, _h: &H, _size: usize, _eos: bool) -> Flow {
        Flow::Continue
    }
    fn on_log<H: Host>(&mut self, _h: &H) {}
    /// The answer to an [`Host::http_call`] this context made.
    fn on_http_call_response<H: Host>(&mut self, _h: &H, _token: u32, _answer: &HttpAnswer) {}
}

/// The answer to an outgoing HTTP call: status 0 when there was none (the call failed or
/// timed out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn new(headers: Vec<(String, String)>, body: Vec<u8>) -> HttpAnswer {
        let status = headers.iter().find(|(k, _)| k == ":status").and_then(|(_, v)| v.int_as()).unwrap_or(0);
        HttpAnswer { status, headers, body }
    }
}

/// An outgoing HTTP call a [`FakeHost`] was asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

/// Test only: a context that makes one outgoing HTTP call per request, to show the proxy's
/// implementation of [`Host::http_call`] end to end (root id `aigw_test_http_call` of the
/// module; no gateway configuration names it). A request with `x-aigw-test-call: CLUSTER`
/// is held while `GET /aigw-test-call` goes to that cluster (with the request's `x-fake-fault`,
/// if any), then answered with the call's status and size; with `x-aigw-test-call: CLUSTER
/// resume` it goes on instead, carrying the call's status as `x-fake-fault: probe=status-N`
/// (a fault no fake acts on, forwarded to the provider, whose request log then shows that the
/// request went on only after the answer).
#[derive(Debug, Default)]
pub struct HttpCallProbe {
    pending: Option<(u32, bool)>,
}

impl Callbacks for HttpCallProbe {
    fn on_request_headers<H: Host>(&mut self, h: &H, _eos: bool) -> Flow {
        let Some(v) = h.request_header("x-aigw-test-call") else { return Flow::Continue };
        let (cluster, resume) = match v.cut(b' ') {
            Some((c, "resume")) => (c.own(), true),
            _ => (v.own(), false),
        };
        let mut headers = vec![(":method", "GET"), (":path", "/aigw-test-call"), (":authority", "aigw-test")];
        // The demo fakes' faults (a delay, to have the answer come after the body) go along.
        let fault = h.request_header("x-fake-fault");
        if let Some(f) = &fault {
            headers.push(("x-fake-fault", f));
        }
        match h.http_call(&cluster, &headers, b"", 5000) {
            Ok(token) => {
                self.pending = Some((token, resume));
                Flow::Pause
            }
            Err(()) => {
                h.send_response(502, &[("content-type", "application/json")], br#"{"refused":true}"#);
                Flow::Refused
            }
        }
    }

    fn on_request_body<H: Host>(&mut self, _h: &H, _size: usize, _eos: bool) -> Flow {
        // While the call is out, the body is held too: letting it go would let the request go
        // on before the answer (and a later resume would find nothing to resume).
        if self.pending.is_some() {
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    fn on_http_call_response<H: Host>(&mut self, h: &H, token: u32, answer: &HttpAnswer) {
        let Some((_, resume)) = self.pending.filter(|(t, _)| *t == token) else { return };
        self.pending = None;
        if resume {
            h.set_request_header("x-fake-fault", Some(&format!("probe=status-{}", answer.status)));
            h.resume_request();
        } else {
            let body = format!(r#"{{"status":{},"body_bytes":{}}}"#, answer.status, answer.body.len());
            h.send_response(200, &[("content-type", "application/json")], body.as_bytes());
        }
    }
}

/// Implements [`Callbacks`] for a context by its inherent methods of the same names.
#[macro_export]
macro_rules! callbacks {
    ($t:ty: $($cb:ident),*) => {
        impl $crate::host::Callbacks for $t {
            $($crate::callbacks!(@one $t, $cb);)*
        }
    };
    (@one $t:ty, on_request_headers) => {
        fn on_request_headers<H: $crate::host::Host>(&mut self, h: &H, eos: bool) -> $crate::host::Flow {
            <$t>::on_request_headers(self, h, eos)
        }
    };
    (@one $t:ty, on_request_body) => {
        fn on_request_body<H: $crate::host::Host>(&mut self, h: &H, size: usize, eos: bool) -> $crate::host::Flow {
            <$t>::on_request_body(self, h, size, eos)
        }
    };
    (@one $t:ty, on_response_headers) => {
        fn on_response_headers<H: $crate::host::Host>(&mut self, h: &H, eos: bool) -> $crate::host::Flow {
            <$t>::on_response_headers(self, h, eos)
        }
    };
    (@one $t:ty, on_response_body) => {
        fn on_response_body<H: $crate::host::Host>(&mut self, h: &H, size: usize, eos: bool) -> $crate::host::Flow {
            <$t>::on_response_body(self, h, size, eos)
        }
    };
    (@one $t:ty, on_http_call_response) => {
        fn on_http_call_response<H: $crate::host::Host>(&mut self, h: &H, token: u32, answer: &$crate::host::HttpAnswer) {
            <$t>::on_http_call_response(self, h, token, answer)
        }
    };
    (@one $t:ty, on_log) => {
        fn on_log<H: $crate::host::Host>(&mut self, h: &H) {
            <$t>::on_log(self, h)
        }
    };
}

/// A local reply a stage sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An in-memory proxy for tests: set the request (and response) up, run a stage, read what it
/// did. Shared data is shared by clones made with [`FakeHost::worker`], as Envoy shares it
/// between workers.
#[derive(Debug, Default)]
pub struct FakeHost {
    pub request_headers: RefCell<Vec<(String, String)>>,
    pub response_headers: RefCell<Vec<(String, String)>>,
    pub request_body: RefCell<Vec<u8>>,
    pub response_body: RefCell<Vec<u8>>,
    pub properties: RefCell<HashMap<String, Vec<u8>>>,
    pub shared: std::rc::Rc<RefCell<SharedData>>,
    pub replies: RefCell<Vec<Reply>>,
    pub logs: RefCell<Vec<String>>,
    pub now: Cell<u64>,
    /// Counters and histograms (every value recorded), by name.
    pub counters: RefCell<HashMap<String, u64>>,
    /// How many times the route cache was cleared.
    pub route_cache_cleared: Cell<u32>,
    pub histograms: RefCell<HashMap<String, Vec<u64>>>,
    /// How many properties were read and written (host calls that cost the most: a read about
    /// 1 µs in Envoy).
    pub property_reads: Cell<u32>,
    pub property_writes: Cell<u32>,
    /// How many single headers were read, and how many times all request headers were.
    pub header_reads: Cell<u32>,
    pub header_list_reads: Cell<u32>,
    /// Every header set or removed, in order: `request NAME` or `response NAME`.
    pub header_writes: RefCell<Vec<String>>,
    /// How many shared-data values were read and written (by every worker sharing the store).
    pub shared_reads: std::rc::Rc<Cell<u32>>,
    pub shared_writes: std::rc::Rc<Cell<u32>>,
    /// Outgoing HTTP calls (token = index + 1), and how often the request and the response
    /// were resumed.
    pub http_calls: RefCell<Vec<HttpCall>>,
    pub resumed: RefCell<Vec<&'static str>>,
}

impl FakeHost {
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    /// A host for another call on another worker, sharing this one's shared data.
    pub fn worker(&self) -> FakeHost {
        FakeHost {
            shared: self.shared.clone(),
            now: self.now.clone(),
            shared_reads: self.shared_reads.clone(),
            shared_writes: self.shared_writes.clone(),
            ..FakeHost::default()
        }
    }

    pub fn with_request_header(self, name: &str, value: &str) -> FakeHost {
        self.request_headers.borrow_mut().push((name.to_ascii_lowercase(), value.own()));
        self
    }

    pub fn with_property(self, path: &[&str], value: &str) -> FakeHost {
        self.properties.borrow_mut().insert(path.join("."), value.as_bytes().to_vec());
        self
    }

    pub fn reply(&self) -> Option<Reply> {
        self.replies.borrow().last().cloned()
    }

    fn get(map: &RefCell<Vec<(String, String)>>, name: &str) -> Option<String> {
        map.borrow().iter().find(|(k, _)| k == name).map(|(_, v)| v.own())
    }

    fn set(map: &RefCell<Vec<(String, String)>>, name: &str, value: Option<&str>) {
        let mut m = map.borrow_mut();
        m.retain(|(k, _)| k != name);
        if let Some(v) = value {
            m.push((name.own(), v.own()));
        }
    }
}

impl Host for FakeHost {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.header_list_reads.set(self.header_list_reads.get() + 1);
        self.request_headers.borrow().clone()
    }
    fn request_header(&self, name: &str) -> Option<String> {
        self.header_reads.set(self.header_reads.get() + 1);
        Self::get(&self.request_headers, name)
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.header_writes.borrow_mut().push(format!("request {name}"));
        Self::set(&self.request_headers, name, value)
    }
    fn response_headers(&self) -> Vec<(String, String)> {
        self.header_list_reads.set(self.header_list_reads.get() + 1);
        self.response_headers.borrow().clone()
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.header_reads.set(self.header_reads.get() + 1);
        Self::get(&self.response_headers, name)
    }
    fn set_response_header(&self, name: &str, value: Option<&str>) {
        self.header_writes.borrow_mut().push(format!("response {name}"));
        Self::set(&self.response_headers, name, value)
    }
    fn add_response_header(&self, name: &str, value: &str) {
        self.header_writes.borrow_mut().push(format!("response {name}"));
        self.response_headers.borrow_mut().push((name.own(), value.own()));
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        let b = self.request_body.borrow();
        b.get(..size.min(b.len())).unwrap_or_default().to_vec()
    }
    fn replace_request_body(&self, _size: usize, body: &[u8]) {
        *self.request_body.borrow_mut() = body.to_vec();
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        let b = self.response_body.borrow();
        b.get(..size.min(b.len())).unwrap_or_default().to_vec()
    }
    fn replace_response_body(&self, _size: usize, body: &[u8]) {
        *self.response_body.borrow_mut() = body.to_vec();
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.property_reads.set(self.property_reads.get() + 1);
        self.properties.borrow().get(&path.join(".")).filter(|v| !v.is_empty()).cloned()
    }
    fn upstream_metadata_all(&self) -> Option<Vec<(String, String)>> {
        // One read, as the proxy's; absent (as a test that sets no metadata) when no value is set.
        self.property_reads.set(self.property_reads.get() + 1);
        let prefix = "xds.upstream_host_metadata.filter_metadata.aigw.";
        let all: Vec<(String, String)> = self
            .properties
            .borrow()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.own(), String::from_utf8(v.clone()).ok()?)))
            .collect();
        (!all.is_empty()).then_some(all)
    }
    fn set_property_bytes(&self, name: &str, value: &[u8]) {
        self.property_writes.set(self.property_writes.get() + 1);
        self.properties.borrow_mut().insert(name.own(), value.to_vec());
    }
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
        self.shared_reads.set(self.shared_reads.get() + 1);
        Ok(match self.shared.borrow().get(key) {
            // As the proxy's: an empty value reads as no value (its CAS still counts).
            Some((v, cas)) if v.is_empty() => (None, Some(*cas)),
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        self.shared_writes.set(self.shared_writes.get() + 1);
        let mut m = self.shared.borrow_mut();
        let current = m.get(key).map(|(_, c)| *c);
        // As Envoy: a CAS on a key that does not exist (or changed) fails; no CAS always writes.
        if cas.is_some() && cas != current {
            return Err(SharedSetError::CasMismatch);
        }
        m.insert(key.own(), (value.to_vec(), current.unwrap_or(0).wrapping_add(1).max(1)));
        Ok(())
    }
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        self.replies.borrow_mut().push(Reply {
            status,
            headers: headers.iter().map(|(k, v)| (k.own(), v.own())).collect(),
            body: body.to_vec(),
        });
        true
    }
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn random_u64(&self) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(self.now.get())
    }
    fn warn(&self, msg: &str) {
        self.logs.borrow_mut().push(msg.own());
    }
    fn clear_route_cache(&self) {
        self.route_cache_cleared.set(self.route_cache_cleared.get() + 1);
    }
    fn counter_add(&self, name: &str, by: u64) {
        *self.counters.borrow_mut().entry(name.own()).or_default() += by;
    }
    fn histogram_record(&self, name: &str, value: u64) {
        self.histograms.borrow_mut().entry(name.own()).or_default().push(value);
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, ()> {
        if cluster.is_empty() {
            return Err(());
        }
        let mut calls = self.http_calls.borrow_mut();
        calls.push(HttpCall {
            cluster: cluster.own(),
            headers: headers.iter().map(|(k, v)| (k.own(), v.own())).collect(),
            body: body.to_vec(),
            timeout_ms,
        });
        u32::try_from(calls.len()).map_err(|_| ())
    }
    fn resume_request(&self) {
        self.resumed.borrow_mut().push("request");
    }
    fn resume_response(&self) {
        self.resumed.borrow_mut().push("response");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_shared_data_behaves_like_envoys() {
        let a = FakeHost::new();
        let b = a.worker();
        assert_eq!(a.shared_get("k"), Ok((None, None)));
        // A CAS on a missing key fails, as in Envoy.
        assert_eq!(a.shared_set("k", b"1", Some(1)), Err(SharedSetError::CasMismatch));
        assert_eq!(a.shared_set("k", b"1", None), Ok(()));
        let Ok((Some(v), Some(cas))) = b.shared_get("k") else { panic!("not shared") };
        assert_eq!(v, b"1");
        assert_eq!(a.shared_set("k", b"2", Some(cas)), Ok(()));
        // The other worker's token is stale now.
        assert_eq!(b.shared_set("k", b"3", Some(cas)), Err(SharedSetError::CasMismatch));
    }

    #[test]
    fn an_outgoing_call_holds_the_request_until_its_answer() {
        let h = FakeHost::new().with_request_header("x-aigw-test-call", "provider_openai");
        let mut p = HttpCallProbe::default();
        assert_eq!(p.on_request_headers(&h, true), Flow::Pause);
        let call = h.http_calls.borrow()[0].clone();
        assert_eq!((call.cluster.as_str(), call.timeout_ms), ("provider_openai", 5000));
        assert!(call.headers.contains(&(":path".to_string(), "/aigw-test-call".to_string())));
        // An answer to another call changes nothing; its own answer is the reply.
        p.on_http_call_response(&h, 9, &HttpAnswer::default());
        assert!(h.reply().is_none());
        p.on_http_call_response(&h, 1, &HttpAnswer::new(vec![(":status".into(), "404".into())], b"nope".to_vec()));
        assert_eq!(h.reply().map(|r| r.body), Some(br#"{"status":404,"body_bytes":4}"#.to_vec()));
        // Resume mode: the request goes on, carrying the status.
        let h = FakeHost::new().with_request_header("x-aigw-test-call", "c resume");
        let mut p = HttpCallProbe::default();
        assert_eq!(p.on_request_headers(&h, false), Flow::Pause);
        assert_eq!(p.on_request_body(&h, 10, true), Flow::Pause, "the body waits for the answer too");
        p.on_http_call_response(&h, 1, &HttpAnswer::new(Vec::new(), Vec::new()));
        assert_eq!(p.on_request_body(&h, 10, true), Flow::Continue);
        assert_eq!(h.request_header("x-fake-fault").as_deref(), Some("probe=status-0"), "no answer: status 0");
        assert_eq!(*h.resumed.borrow(), ["request"]);
        // A call the proxy refuses is answered at once.
        let h = FakeHost::new().with_request_header("x-aigw-test-call", "");
        assert_eq!(HttpCallProbe::default().on_request_headers(&h, true), Flow::Refused);
    }

    #[test]
    fn errors_take_the_door_shape() {
        let h = FakeHost::new();
        let e = GatewayError::new(401, "invalid_request_error", "missing_api_key", "no key");
        h.send_error(&e, false, &[("x-a", "1")]);
        h.send_error(&e, true, &[]);
        let r = h.replies.borrow();
        assert_eq!(r[0].status, 401);
        assert!(r[0].headers.contains(&("x-a".to_string(), "1".to_string())));
        let openai: crate::wire::tree::Value = crate::wire::from_slice(&r[0].body).unwrap_or_default();
        assert_eq!(openai["error"]["code"], "missing_api_key");
        let anthropic: crate::wire::tree::Value = crate::wire::from_slice(&r[1].body).unwrap_or_default();
        assert_eq!(anthropic["type"], "error");
    }
}
