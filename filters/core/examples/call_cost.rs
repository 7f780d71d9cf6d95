//! Times one whole call natively (listener stages + one attempt, against `FakeHost`), to find
//! where the Wasm code's time goes, and counts its allocations per callback:
//!
//! ```sh
//! scripts/bench --gateway-config full > /tmp/gateway.json
//! cargo run --release -p aigw-core --example call_cost -- /tmp/gateway.json 20000
//! ```
//!
//! With `--stream FILE` (an Anthropic SSE answer, e.g. the fake's, captured with `curl`), the call
//! is streamed: the request asks for a stream, and the answer reaches the attempt and then the
//! listener one event per callback, as Envoy hands over a stream whose events come apart; it
//! prints the time spent in those body callbacks per event.
//!
//! Envoy's side (host calls) is not in it; `scripts/bench` measures the whole.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Instant;

use aigw_core::call_state::{CallState, Side, Stateful, Writers};
use aigw_core::host::{Callbacks, FakeHost, Flow, Host};
use aigw_core::pipeline::{AttemptCall, GatewayConfig, Listener, ListenerCall, Upstream};

const BODY: &str = r#"{"model":"chat","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello, how are you today?"}]}"#;
const STREAM_BODY: &str = r#"{"model":"chat","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello, how are you today?"}]}"#;
const ANSWER: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello! I am fine, thank you."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9}}"#;

/// Counts allocations (and reallocations), so that each callback's count can be printed: the
/// Wasm side's time is mostly allocation (natively about 45% of it is malloc and free).
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

thread_local! {
    /// Allocations per step of the last call: (step, count), the harness's own excluded.
    static STEPS: std::cell::RefCell<Vec<(&'static str, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs one step of the call and notes how many allocations it made.
fn step<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    let before = allocs();
    let out = f();
    let n = allocs() - before;
    STEPS.with(|s| s.borrow_mut().push((name, n)));
    out
}

/// One call: answered whole, or (`events`) streamed one event per body callback; returns the
/// time spent in the streamed answer's body callbacks.
fn one_call(store: &FakeHost, l: &Rc<Listener>, u: &Rc<Upstream>, events: Option<&[&[u8]]>) -> std::time::Duration {
    let body = if events.is_some() { STREAM_BODY } else { BODY };
    let mut in_events = std::time::Duration::ZERO;
    STEPS.with(|s| s.borrow_mut().clear());
    let h = store
        .worker()
        .with_request_header(":method", "POST")
        .with_request_header(":path", "/v1/chat/completions")
        .with_request_header(":authority", "gw")
        .with_request_header("content-type", "application/json")
        .with_request_header("authorization", "Bearer aigw-demo-key-acme")
        .with_request_header("x-request-id", "rid");
    *h.request_body.borrow_mut() = body.as_bytes().to_vec();
    let mut c = step("listener: new", || Stateful::new(ListenerCall::new(&h, l.clone()), Side::Listener, Writers::One));
    let mut f = step("listener: request headers", || c.on_request_headers(&h, false));
    if f == Flow::Pause {
        f = step("listener: request body", || c.on_request_body(&h, body.len(), true));
    }
    assert_eq!(f, Flow::Continue, "{:?}", h.reply());
    // The attempt sees the listener's filter state and headers.
    let a = FakeHost { shared: store.shared.clone(), ..FakeHost::default() };
    *a.request_headers.borrow_mut() = h.request_headers.borrow().clone();
    *a.request_body.borrow_mut() = h.request_body.borrow().clone();
    *a.properties.borrow_mut() = h.properties.borrow().clone();
    for (k, v) in [("provider", "anthropic"), ("region", "us-east-1")] {
        a.properties
            .borrow_mut()
            .insert(format!("xds.upstream_host_metadata.filter_metadata.aigw.{k}"), v.as_bytes().to_vec());
    }
    let mut t = step("attempt: new", || Stateful::new(AttemptCall::new(u.clone()), Side::Attempt, Writers::One));
    let mut f = step("attempt: request headers", || t.on_request_headers(&a, false));
    if f == Flow::Pause {
        let n = a.request_body.borrow().len();
        f = step("attempt: request body", || t.on_request_body(&a, n, true));
    }
    assert_eq!(f, Flow::Continue);
    if let Some(events) = events {
        a.response_headers.borrow_mut().extend([
            (":status".to_string(), "200".to_string()),
            ("content-type".to_string(), "text/event-stream; charset=utf-8".to_string()),
        ]);
        step("attempt: response headers", || t.on_response_headers(&a, false));
        *h.response_headers.borrow_mut() = a.response_headers.borrow().clone();
        h.response_headers.borrow_mut().push(("x-envoy-attempt-count".into(), "1".into()));
        for (k, v) in a.properties.borrow().iter() {
            h.properties.borrow_mut().insert(k.clone(), v.clone());
        }
        step("listener: response headers", || c.on_response_headers(&h, false));
        let t0 = Instant::now();
        for (i, e) in events.iter().enumerate() {
            let last = i + 1 == events.len();
            *a.response_body.borrow_mut() = e.to_vec();
            t.on_response_body(&a, e.len(), last);
            let out = std::mem::take(&mut *a.response_body.borrow_mut());
            let n = out.len();
            *h.response_body.borrow_mut() = out;
            if last {
                // The attempt's last word (usage, how it ended) reaches the listener with the end.
                for (k, v) in a.properties.borrow().iter() {
                    h.properties.borrow_mut().insert(k.clone(), v.clone());
                }
            }
            c.on_response_body(&h, n, last);
        }
        in_events = t0.elapsed();
    } else {
        a.response_headers.borrow_mut().extend([
            (":status".to_string(), "200".to_string()),
            ("content-type".to_string(), "application/json".to_string()),
            ("content-length".to_string(), ANSWER.len().to_string()),
        ]);
        *a.response_body.borrow_mut() = ANSWER.as_bytes().to_vec();
        step("attempt: response headers", || t.on_response_headers(&a, false));
        step("attempt: response body", || t.on_response_body(&a, ANSWER.len(), true));
        // Back on the listener.
        *h.response_headers.borrow_mut() = a.response_headers.borrow().clone();
        h.response_headers.borrow_mut().push(("x-envoy-attempt-count".into(), "1".into()));
        *h.response_body.borrow_mut() = a.response_body.borrow().clone();
        for (k, v) in a.properties.borrow().iter() {
            h.properties.borrow_mut().insert(k.clone(), v.clone());
        }
        step("listener: response headers", || c.on_response_headers(&h, false));
        let n = h.response_body.borrow().len();
        step("listener: response body", || c.on_response_body(&h, n, true));
    }
    step("listener: log", || c.on_log(&h));
    // (With the audit and quota stages configured: the record written, the charge settled, in
    // the listener's memory.)
    assert!(l.audit.is_none() || h.property(&["aigw_audit"]).is_some());
    assert!(l.quota.is_none() || CallState { inner: &h, data: &c.data }.property(&["aigw_settled"]).is_some());
    step("drop", || {
        drop(t);
        drop(c);
    });
    in_events
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: call_cost GATEWAY.json [CALLS] [--stream ANSWER.sse [--group K]] (scripts/bench --gateway-config full > GATEWAY.json)";
    let Some(text) = args.get(1).and_then(|p| std::fs::read_to_string(p).ok()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let n: u32 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20000);
    let stream = match args.iter().position(|a| a == "--stream") {
        Some(i) => match args.get(i + 1).and_then(|p| std::fs::read(p).ok()) {
            Some(b) => Some(b),
            None => {
                eprintln!("call_cost: --stream needs a readable file\n{usage}");
                std::process::exit(2);
            }
        },
        None => None,
    };
    // The answer's events, each with its blank line.
    let events: Option<Vec<&[u8]>> = stream.as_deref().map(|b| {
        let mut out = Vec::new();
        let mut rest = b;
        while let Some(at) = rest.windows(2).position(|w| w == b"\n\n") {
            let (e, r) = rest.split_at(at + 2);
            out.push(e);
            rest = r;
        }
        if !rest.is_empty() {
            out.push(rest);
        }
        out
    });
    // `--group K`: K events per body callback (Envoy hands over what has arrived: a fast
    // provider's events come packed).
    let group: usize = args
        .iter()
        .position(|a| a == "--group")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let event_count = events.as_ref().map_or(0, Vec::len);
    let events: Option<Vec<&[u8]>> = match (stream.as_deref(), events) {
        (Some(b), Some(evs)) if group > 1 => {
            // Consecutive events are consecutive bytes of the file.
            let mut out = Vec::new();
            let mut at = 0;
            for g in evs.chunks(group) {
                let len: usize = g.iter().map(|e| e.len()).sum();
                out.push(&b[at..at + len]);
                at += len;
            }
            Some(out)
        }
        (_, evs) => evs,
    };
    let key = |n: &str| Some(format!("key-{n}"));
    let compiled = aigw_core::config::from_str::<GatewayConfig>(&text)
        .map_err(|e| e.to_string())
        .and_then(|cfg| Listener::compile_env(cfg, &key).map_err(|e| e.to_string()))
        .and_then(|l| {
            let cfg: GatewayConfig = aigw_core::config::from_str(&text).map_err(|e| e.to_string())?;
            Ok((l, Upstream::compile(cfg, &key).map_err(|e| e.to_string())?))
        });
    let (l, u) = match compiled {
        Ok((l, u)) => (Rc::new(l), Rc::new(u)),
        Err(e) => {
            eprintln!("call_cost: {e}\n{usage}");
            std::process::exit(2);
        }
    };
    let store = FakeHost::new();
    for _ in 0..200 {
        one_call(&store, &l, &u, None);
    }
    // The fastest of five rounds: the machine's other work only ever adds.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..n / 5 {
            one_call(&store, &l, &u, None);
        }
        best = best.min(t0.elapsed().as_secs_f64() * 1e6 / f64::from((n / 5).max(1)));
    }
    println!("{best:.1} µs per call (the fastest of 5 rounds)");
    one_call(&store, &l, &u, None);
    let steps = STEPS.with(|s| s.borrow().clone());
    println!("allocations per call: {}", steps.iter().map(|s| s.1).sum::<u64>());
    for (name, n) in steps {
        println!("  {n:5}  {name}");
    }
    if let Some(events) = &events {
        let calls = (n / 100).max(2);
        let before = allocs();
        one_call(&store, &l, &u, Some(events));
        let per_stream_allocs = allocs() - before;
        let (mut whole, mut per_event) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let mut in_events = std::time::Duration::ZERO;
            let t0 = Instant::now();
            for _ in 0..calls {
                in_events += one_call(&store, &l, &u, Some(events));
            }
            whole = whole.min(t0.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
            per_event = per_event.min(in_events.as_secs_f64() * 1e6 / f64::from(calls) / event_count as f64);
        }
        println!(
            "streamed call, {event_count} events in {} body callbacks: {whole:.1} µs per call, {per_event:.2} µs per event in the answer's body callbacks (attempt and listener; the fastest of 5 rounds), {per_stream_allocs} allocations per call",
            events.len()
        );
    }
}
