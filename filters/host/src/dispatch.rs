//! The proxy-wasm ABI's entry points (ABI 0.2.1): the host calls `proxy_on_*` with a context id,
//! and this module hands each call to the context it names.
//!
//! The proxy-wasm SDK's dispatcher did this before, and cost what the filters did not need:
//! - every context type's table of the SDK's traits compiled in full (89 methods each, the
//!   gRPC, TCP and queue callbacks and every host-call helper, for each of the module's context
//!   types: 47 KB of the gateway's module then, with the dispatcher's own exports and maps, 93 KB);
//! - contexts kept in maps hashed with SipHash, one lookup per callback;
//! - a `panic!` (so a trapped VM, and every later call on that worker failing) on a context id or
//!   an HTTP call token it did not know, where the host's order of callbacks was not the one it
//!   expected.
//!
//! Here a context id the module does not know is answered as a context that does nothing would
//! answer (continue), never with a trap; and the contexts implement only the callbacks the
//! filters have ([`HttpContext`], [`RootContext`]).

use std::cell::{Cell, RefCell};

/// What the host should do with the stream after a callback.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// A plugin's root context: its configuration, its timer and its own outgoing calls, and the
/// maker of its HTTP contexts.
pub trait RootContext {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        true
    }
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }
    fn on_tick(&mut self) {}
    /// The answer to an outgoing call this context made (see [`register_callout`]).
    fn on_http_call_response(&mut self, _token: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}
    /// A context for one HTTP stream of this plugin; `None`: the stream goes on without one.
    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>>;
}

/// One HTTP stream's context.
pub trait HttpContext {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_http_response_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
    fn on_log(&mut self) {}
    /// The answer to an outgoing call this context made (see [`register_callout`]).
    fn on_http_call_response(&mut self, _token: u32, _num_headers: usize, _body_size: usize, _num_trailers: usize) {}
}

/// Makes the root context of each plugin the module serves.
pub type NewRoot = fn() -> Box<dyn RootContext>;

/// A context's place: `None` while one of its callbacks runs.
type Slot<T> = Option<Box<T>>;

/// The contexts of one VM. A context is taken out of its slot while one of its callbacks runs,
/// so that no borrow is held across the callback (a callback may create or end other contexts
/// through the host); its slot is `None` meanwhile.
struct Dispatcher {
    new_root: Cell<Option<NewRoot>>,
    roots: RefCell<Vec<(u32, Slot<dyn RootContext>)>>,
    /// By id, in order (context ids are the host's, handed out in sequence: a new one goes at
    /// the end, and a lookup is a binary search over the streams open on this worker).
    streams: RefCell<Vec<(u32, Slot<dyn HttpContext>)>>,
    /// Outgoing calls in flight: token, and the context that made it.
    callouts: RefCell<Vec<(u32, u32)>>,
    /// The context whose callback is running (the maker of an outgoing call).
    active: Cell<u32>,
}

thread_local! {
    static DISPATCHER: Dispatcher = const {
        Dispatcher {
            new_root: Cell::new(None),
            roots: RefCell::new(Vec::new()),
            streams: RefCell::new(Vec::new()),
            callouts: RefCell::new(Vec::new()),
            active: Cell::new(0),
        }
    };
}

/// Names the maker of the module's root contexts (at `_initialize`, see [`crate::main`]).
pub fn set_root_context(new_root: NewRoot) {
    DISPATCHER.with(|d| d.new_root.set(Some(new_root)));
}

/// Notes that the running context made the outgoing call `token`, so that its answer reaches
/// that context.
pub fn register_callout(token: u32) {
    DISPATCHER.with(|d| d.callouts.borrow_mut().push((token, d.active.get())));
}

/// Runs `f` on HTTP context `id`, if the module has it; `None` otherwise.
fn with_stream<T>(id: u32, f: impl FnOnce(&mut dyn HttpContext) -> T) -> Option<T> {
    DISPATCHER.with(|d| {
        let mut ctx = stream_slot(&mut d.streams.borrow_mut(), id)?.take()?;
        d.active.set(id);
        let out = f(ctx.as_mut());
        // (A context ended during its own callback stays ended.)
        if let Some(slot) = stream_slot(&mut d.streams.borrow_mut(), id) {
            *slot = Some(ctx);
        }
        Some(out)
    })
}

/// Where stream `id` is in `streams` (sorted by id), or where it would go.
fn stream_index(streams: &[(u32, Slot<dyn HttpContext>)], id: u32) -> Result<usize, usize> {
    streams.binary_search_by(|(s, _)| s.cmp(&id))
}

fn stream_slot(streams: &mut [(u32, Slot<dyn HttpContext>)], id: u32) -> Option<&mut Slot<dyn HttpContext>> {
    let i = stream_index(streams, id).ok()?;
    streams.get_mut(i).map(|(_, slot)| slot)
}

/// Runs `f` on root context `id`, if the module has it; `None` otherwise.
fn with_root<T>(id: u32, f: impl FnOnce(&mut dyn RootContext) -> T) -> Option<T> {
    DISPATCHER.with(|d| {
        let mut ctx = d.roots.borrow_mut().iter_mut().find(|(r, _)| *r == id)?.1.take()?;
        d.active.set(id);
        let out = f(ctx.as_mut());
        if let Some((_, slot)) = d.roots.borrow_mut().iter_mut().find(|(r, _)| *r == id) {
            *slot = Some(ctx);
        }
        Some(out)
    })
}

pub fn on_context_create(id: u32, parent: u32) {
    DISPATCHER.with(|d| {
        if parent == 0 {
            if let Some(new_root) = d.new_root.get() {
                let root = new_root();
                let mut roots = d.roots.borrow_mut();
                roots.retain(|(r, _)| *r != id);
                roots.push((id, Some(root)));
            }
            return;
        }
        let ctx = {
            let roots = d.roots.borrow();
            match roots.iter().find(|(r, _)| *r == parent) {
                Some((_, Some(root))) => root.create_http_context(id),
                _ => None,
            }
        };
        if let Some(ctx) = ctx {
            let mut streams = d.streams.borrow_mut();
            match stream_index(&streams, id) {
                Ok(i) => {
                    if let Some(slot) = streams.get_mut(i) {
                        slot.1 = Some(ctx);
                    }
                }
                Err(i) => streams.insert(i, (id, Some(ctx))),
            }
        }
    })
}

pub fn on_vm_start(id: u32, size: usize) -> bool {
    with_root(id, |r| r.on_vm_start(size)).unwrap_or(false)
}

pub fn on_configure(id: u32, size: usize) -> bool {
    with_root(id, |r| r.on_configure(size)).unwrap_or(false)
}

pub fn on_tick(id: u32) {
    with_root(id, |r| r.on_tick());
}

pub fn on_request_headers(id: u32, n: usize, eos: bool) -> Action {
    with_stream(id, |c| c.on_http_request_headers(n, eos)).unwrap_or(Action::Continue)
}

pub fn on_request_body(id: u32, size: usize, eos: bool) -> Action {
    with_stream(id, |c| c.on_http_request_body(size, eos)).unwrap_or(Action::Continue)
}

pub fn on_response_headers(id: u32, n: usize, eos: bool) -> Action {
    with_stream(id, |c| c.on_http_response_headers(n, eos)).unwrap_or(Action::Continue)
}

pub fn on_response_body(id: u32, size: usize, eos: bool) -> Action {
    with_stream(id, |c| c.on_http_response_body(size, eos)).unwrap_or(Action::Continue)
}

pub fn on_log(id: u32) {
    with_stream(id, |c| c.on_log());
}

/// Every context is done when asked (none of them has work left after its stream).
pub fn on_done(_id: u32) -> bool {
    true
}

pub fn on_delete(id: u32) {
    DISPATCHER.with(|d| {
        let removed = {
            let mut streams = d.streams.borrow_mut();
            stream_index(&streams, id).map(|i| streams.remove(i))
        };
        if removed.is_err() {
            d.roots.borrow_mut().retain(|(r, _)| *r != id);
        }
    })
}

/// The answer to outgoing call `token` reaches the context that made it (a root's or a
/// stream's), made the host's effective context first so that its host calls act on its own
/// stream. An answer to a call no context is waiting for (it ended) is dropped.
pub fn on_http_call_response(token: u32, num_headers: usize, body_size: usize, num_trailers: usize) {
    let owner = DISPATCHER.with(|d| {
        let mut callouts = d.callouts.borrow_mut();
        let i = callouts.iter().position(|(t, _)| *t == token)?;
        Some(callouts.swap_remove(i).1)
    });
    let Some(id) = owner else { return };
    let _ = crate::abi::set_effective_context(id);
    if with_stream(id, |c| c.on_http_call_response(token, num_headers, body_size, num_trailers)).is_none() {
        with_root(id, |r| r.on_http_call_response(token, num_headers, body_size, num_trailers));
    }
}

/// Defines the module's `_initialize`: the runtime's constructors, the panic log line, and the
/// maker of the root contexts.
#[macro_export]
macro_rules! main {
    ($new_root:expr) => {
        #[no_mangle]
        pub extern "C" fn _initialize() {
            #[cfg(target_arch = "wasm32")]
            {
                extern "C" {
                    fn __wasm_call_ctors();
                }
                // SAFETY: the runtime's constructors, run once, first, as a reactor module must.
                unsafe { __wasm_call_ctors() };
            }
            $crate::dispatch::start($new_root);
        }
    };
}

/// What `_initialize` does after the runtime's constructors.
pub fn start(new_root: NewRoot) {
    // A panic (none is meant to happen: `panic = "abort"` traps the VM) says why in Envoy's log.
    std::panic::set_hook(Box::new(|info| crate::log(crate::LogLevel::Critical, &info.to_string())));
    set_root_context(new_root);
}

/// The exports the host calls.
#[cfg(target_arch = "wasm32")]
pub mod exports {
    use super::Action;

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    /// Memory the host fills and hands over (a header map, a body): exactly `size` bytes, as
    /// `abi`'s readers take them back.
    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        // (Not zeroed: the host writes all of it.)
        Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, parent_context_id: u32) {
        super::on_context_create(context_id, parent_context_id)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(context_id: u32, size: usize) -> bool {
        super::on_vm_start(context_id, size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_configure(context_id: u32, size: usize) -> bool {
        super::on_configure(context_id, size)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_tick(context_id: u32) {
        super::on_tick(context_id)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(context_id: u32, num_headers: usize, end_of_stream: bool) -> Action {
        super::on_request_headers(context_id, num_headers, end_of_stream)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_body(context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
        super::on_request_body(context_id, body_size, end_of_stream)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(context_id: u32, num_headers: usize, end_of_stream: bool) -> Action {
        super::on_response_headers(context_id, num_headers, end_of_stream)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_response_body(context_id: u32, body_size: usize, end_of_stream: bool) -> Action {
        super::on_response_body(context_id, body_size, end_of_stream)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_log(context_id: u32) {
        super::on_log(context_id)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
        super::on_done(context_id)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_delete(context_id: u32) {
        super::on_delete(context_id)
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_http_call_response(
        _context_id: u32,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        super::on_http_call_response(token, num_headers, body_size, num_trailers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// What the test contexts saw, in order.
    type Seen = Rc<RefCell<Vec<String>>>;

    thread_local! {
        static SEEN: Seen = Rc::new(RefCell::new(Vec::new()));
    }

    fn note(s: String) {
        SEEN.with(|v| v.borrow_mut().push(s));
    }

    fn seen() -> Vec<String> {
        SEEN.with(|v| std::mem::take(&mut *v.borrow_mut()))
    }

    struct Root {
        refuse: bool,
    }

    impl RootContext for Root {
        fn on_configure(&mut self, size: usize) -> bool {
            note(format!("configure {size}"));
            !self.refuse
        }
        fn on_tick(&mut self) {
            note("tick".into());
            // An outgoing call made from the root: its answer comes back here.
            register_callout(70);
        }
        fn on_http_call_response(&mut self, token: u32, _h: usize, body: usize, _t: usize) {
            note(format!("root answer {token} {body}"));
        }
        fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
            id.is_multiple_of(2).then(|| Box::new(Stream { id }) as Box<dyn HttpContext>)
        }
    }

    struct Stream {
        id: u32,
    }

    impl HttpContext for Stream {
        fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
            note(format!("{} request headers {n} {eos}", self.id));
            // A context's callback may end another context (the host's doing): no borrow is
            // held across it.
            on_delete(self.id + 4);
            register_callout(self.id * 10);
            Action::Pause
        }
        fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
            note(format!("{} response body {size} {eos}", self.id));
            Action::Continue
        }
        fn on_log(&mut self) {
            note(format!("{} log", self.id));
        }
        fn on_http_call_response(&mut self, token: u32, _h: usize, body: usize, _t: usize) {
            note(format!("{} answer {token} {body}", self.id));
        }
    }

    #[test]
    fn each_callback_reaches_the_context_it_names_and_unknown_ids_continue() {
        set_root_context(|| Box::new(Root { refuse: false }));
        on_context_create(1, 0);
        assert!(on_configure(1, 42));
        // An HTTP context of root 1; root 1 declines odd ids (the stream goes on without one).
        on_context_create(4, 1);
        on_context_create(5, 1);
        on_context_create(8, 1);
        on_context_create(102, 1);
        // An id below the last one (the streams are kept in id order: it goes between).
        on_context_create(12, 1);
        assert_eq!(on_request_headers(4, 3, false), Action::Pause);
        // 4's callback ended 8 (the test's stand-in for the host ending a stream meanwhile).
        assert_eq!(on_request_headers(8, 1, false), Action::Continue);
        assert_eq!(on_request_headers(102, 1, true), Action::Pause);
        assert_eq!(on_response_body(12, 2, false), Action::Continue);
        assert_eq!(on_response_body(4, 9, true), Action::Continue);
        // Ids the module does not know, or declined, continue; nothing traps.
        assert_eq!(on_request_headers(5, 1, false), Action::Continue);
        assert_eq!(on_request_body(77, 1, true), Action::Continue);
        assert_eq!(on_response_headers(0, 0, true), Action::Continue);
        assert!(!on_configure(99, 0));
        on_log(4);
        on_log(12345);
        // Each call's answer reaches the context that made it, once; an unknown token nothing.
        on_http_call_response(40, 2, 11, 0);
        on_http_call_response(40, 2, 11, 0);
        on_http_call_response(999, 0, 0, 0);
        on_tick(1);
        on_http_call_response(70, 0, 5, 0);
        assert!(on_done(4));
        on_delete(4);
        assert_eq!(on_request_headers(4, 1, false), Action::Continue);
        // The answer to a call whose context ended is dropped.
        on_delete(102);
        on_http_call_response(1020, 0, 1, 0);
        // The streams left after those ended are still found.
        assert_eq!(on_response_body(12, 3, true), Action::Continue);
        assert_eq!(
            seen(),
            [
                "configure 42",
                "4 request headers 3 false",
                "102 request headers 1 true",
                "12 response body 2 false",
                "4 response body 9 true",
                "4 log",
                "4 answer 40 11",
                "tick",
                "root answer 70 5",
                "12 response body 3 true",
            ]
        );
        // A root ended: its configure, tick and new streams are nothing.
        on_delete(1);
        assert!(!on_configure(1, 0));
        on_context_create(6, 1);
        assert_eq!(on_request_headers(6, 0, false), Action::Continue);
        // A refusing root says so.
        set_root_context(|| Box::new(Root { refuse: true }));
        on_context_create(2, 0);
        assert!(!on_configure(2, 0));
        assert_eq!(seen(), ["configure 0"]);
    }
}
