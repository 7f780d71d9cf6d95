//! What one call's stages know, and how it crosses from one context to another: one filter-state
//! entry per side of Envoy.
//!
//! The stages name what they hand on (`aigw_identity`, `aigw_alias`, `aigw_attempts`, ... in
//! [`crate::headers`]) and read and write it as properties. Those writes do not each become an
//! Envoy filter-state object: a context keeps them in memory and writes them, at the end of a
//! callback (or before a local reply), as one entry for its side. A context that is its side's
//! only writer skips the write while nothing else can read it yet (it holds the request for
//! its body) or any more (the listener, once the attempts are over):
//!
//! - [`CALL_ENTRY`] (`aigw_call`), written by the listener's stages: identity, route decision,
//!   request facts, estimate, ... The per-attempt context reads it once per attempt.
//! - [`UPSTREAM_ENTRY`] (`aigw_upstream`), written by the attempts: the attempt records, the
//!   providers charged, an attempt's refusal. The listener reads it once per callback that needs
//!   it (attempts run between the listener's callbacks).
//!
//! A read looks in the context's own side first, then in the other side's entry. The audit
//! record ([`crate::headers::PROP_AUDIT`]) is not internal: the access log reads it, so it stays
//! an entry of its own, as does every property that is not the gateway's (Envoy's attributes).
//!
//! When the stages of a side run in one context (the `gateway` and `gateway_upstream` filters),
//! that context is the side's only writer and never reads its own entry back ([`Writers::One`]).
//! When they run as separate filters (the design card's four), each filter reads its side's
//! entry again at its first use in each callback, adds what it knows, and writes it back
//! ([`Writers::Many`]).

use crate::text::Text;
use std::cell::RefCell;

use crate::headers;
use crate::host::{Callbacks, Flow, Host, HttpAnswer, SharedSetError};

/// The listener side's entry.
pub const CALL_ENTRY: &str = "aigw_call";
/// The attempts' entry.
pub const UPSTREAM_ENTRY: &str = "aigw_upstream";

/// Which side of Envoy a context runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The listener's filter chain: once per call.
    Listener,
    /// An aggregate cluster's upstream filters: once per attempt.
    Attempt,
}

/// Whether this context is its side's only writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// All of the side's stages run in this context.
    One,
    /// Other filters of the same side write the entry too.
    Many,
}

/// Whether a property is one the stages hand on (kept in the side's entry).
fn internal(name: &str) -> bool {
    name.starts_with("aigw_") && name != headers::PROP_AUDIT && name != CALL_ENTRY && name != UPSTREAM_ENTRY
}

/// The properties of one side, in the order first set, kept as their encoding:
/// `[u16 name length][name][u32 value length][value]`, repeated (little-endian). Reading an
/// entry from filter state takes the host's bytes as they are, and writing it back writes them:
/// no part is copied out (a call reads and writes the entries about ten times).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entry(Vec<u8>);

/// One part of an entry: its name, and where its value lies in the bytes.
struct Part<'a> {
    name: &'a [u8],
    value: std::ops::Range<usize>,
}

/// The parts of encoded bytes, in order (stops at the first whose lengths overrun the bytes).
/// Names are compared as bytes here; [`Entry::from_bytes`] keeps only parts whose names are
/// UTF-8, once, when the entry is read.
fn parts(b: &[u8]) -> impl Iterator<Item = Part<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let rest = b.get(at..)?;
        let (kl, after) = rest.split_first_chunk::<2>()?;
        let kl = usize::from(u16::from_le_bytes(*kl));
        let (name, after) = after.split_at_checked(kl)?;
        let (vl, after) = after.split_first_chunk::<4>()?;
        let vl = usize::try_from(u32::from_le_bytes(*vl)).ok()?;
        after.get(..vl)?;
        let value_start = at + 2 + kl + 4;
        at = value_start + vl;
        Some(Part { name, value: value_start..at })
    })
}

impl Entry {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let p = parts(&self.0).find(|p| p.name == name.as_bytes())?;
        self.0.get(p.value)
    }

    pub fn set(&mut self, name: &str, value: &[u8]) {
        let (Ok(kl), Ok(vl)) = (u16::try_from(name.len()), u32::try_from(value.len())) else { return };
        let found = parts(&self.0).find(|p| p.name == name.as_bytes()).map(|p| p.value);
        match found {
            // The value and its length, replaced in place.
            Some(v) => {
                self.0.splice(v.start - 4..v.end, vl.to_le_bytes().into_iter().chain(value.iter().copied()));
            }
            None => {
                self.0.reserve(name.len() + value.len() + 6);
                self.0.extend_from_slice(&kl.to_le_bytes());
                self.0.extend_from_slice(name.as_bytes());
                self.0.extend_from_slice(&vl.to_le_bytes());
                self.0.extend_from_slice(value);
            }
        }
    }

    /// The entry's bytes, as written to filter state.
    pub fn encode(&self) -> &[u8] {
        &self.0
    }

    /// Reads what [`Entry::encode`] wrote; stops at the first malformed part.
    pub fn decode(b: &[u8]) -> Entry {
        Entry::from_bytes(b.to_vec())
    }

    /// [`Entry::decode`], keeping the bytes read (no copy when they are well-formed).
    pub fn from_bytes(mut b: Vec<u8>) -> Entry {
        let whole = parts(&b).take_while(|p| std::str::from_utf8(p.name).is_ok()).last().map_or(0, |p| p.value.end);
        b.truncate(whole);
        Entry(b)
    }

    /// How many parts the entry holds.
    pub fn len(&self) -> usize {
        parts(&self.0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A context's view of the call's state across its callbacks.
#[derive(Debug)]
pub struct CallData {
    side: Side,
    writers: Writers,
    /// This side's entry: `None` until read (or known to be empty).
    own: Option<Entry>,
    own_changed: bool,
    /// The other side's entry, as last read.
    other: Option<Entry>,
    /// Listener: the answer's headers have come, so the attempts are over and their entry no
    /// longer changes (an attempt holds its answer's headers until it has read the answer).
    attempts_over: bool,
    /// Listener: a request callback has let the request go on, so attempts may have started.
    /// Until then no attempt can have written anything, and the attempts' entry is not read.
    passed_on: bool,
    /// The upstream host's metadata, as read (an attempt's host does not change).
    metadata: Metadata,
    /// The caller's identity, parsed once.
    identity: Option<Option<std::rc::Rc<crate::auth::keys::CallIdentity>>>,
    /// Within one callback: all request headers and all response headers, each read at most
    /// once (one host call serves every header the stages read; kept up to date with what this
    /// context changes or removes, and noting what it adds: see [`HeaderView`]), and the time.
    /// Headers change between callbacks only; within one, only through this context.
    request_headers: HeaderView,
    response_headers: HeaderView,
    now_ms: Option<u64>,
}

/// A callback's view of one header map, in Envoy's order: kept in step with a header this
/// context sets (replacing every value of it) or removes (every value). A header new to the
/// list is not added to it (a callback seldom reads back a header it added): a set that finds
/// it absent says so, and a read the list cannot answer then goes to the host.
use crate::headers::HeaderList;

/// A callback's one read of a header map, and the headers added to the map since (see
/// [`set_in`]), by a hash of their names.
#[derive(Debug, Default)]
struct HeaderView {
    list: Option<HeaderList>,
    added: Vec<u64>,
}

/// Whether a name of this hash was added (one copy of the loop for both uses).
#[inline(never)]
fn was_added(added: &[u64], hash: u64) -> bool {
    // (A plain loop: `contains` on a slice of integers is unrolled, larger for a list this short.)
    for &h in added {
        if h == hash {
            return true;
        }
    }
    false
}

/// FNV-1a of a header name: which names were added, without copying them.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl HeaderView {
    /// The list, read from the host when not yet read or when it lacks added headers.
    fn whole(&mut self, read: impl FnOnce() -> HeaderList) -> &HeaderList {
        if !self.added.is_empty() {
            self.list = None;
            self.added.clear();
        }
        self.list.get_or_insert_with(read)
    }

    /// One header's value: `Err(())` when the list cannot tell (the header was added since
    /// the list was read).
    fn one(&mut self, name: &str, read: impl FnOnce() -> HeaderList) -> Result<Option<String>, ()> {
        let list = self.list.get_or_insert_with(read);
        match list.get(name) {
            Some(v) => Ok(Some(v.own())),
            None if was_added(&self.added, name_hash(name)) => Err(()),
            None => Ok(None),
        }
    }

    /// Keeps the list in step with a header this context sets or removes; says whether the
    /// map had it before.
    fn set(&mut self, name: &str, value: Option<&str>) -> Had {
        let Some(list) = &mut self.list else { return Had::Unknown };
        if list.set(name, value) {
            return Had::Yes;
        }
        let hash = name_hash(name);
        if was_added(&self.added, hash) {
            return Had::Unknown;
        }
        if value.is_some() {
            self.added.push(hash);
        }
        Had::No
    }
}

/// Whether a header map had a header a context is about to set or remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Had {
    Yes,
    /// Not in the list read in this callback, nor added since: a value can be added (a
    /// cheaper host call than a replace), and there is nothing to remove.
    No,
    /// No list was read in this callback, or this context added the header since.
    Unknown,
}

/// What an attempt read of its upstream host's metadata.
#[derive(Debug, Default)]
struct Metadata {
    /// The whole map was asked for (once).
    all_read: bool,
    /// The values known: from the whole map, and each one read alone that it did not have.
    values: Vec<(String, Option<String>)>,
}

impl CallData {
    pub fn new(side: Side, writers: Writers) -> CallData {
        // The listener's only writer starts the call: nothing to read.
        let own = (side == Side::Listener && writers == Writers::One).then(Entry::default);
        CallData {
            side,
            writers,
            own,
            own_changed: false,
            other: None,
            attempts_over: false,
            passed_on: false,
            metadata: Metadata::default(),
            identity: None,
            request_headers: HeaderView::default(),
            response_headers: HeaderView::default(),
            now_ms: None,
        }
    }

    fn own_key(&self) -> &'static str {
        match self.side {
            Side::Listener => CALL_ENTRY,
            Side::Attempt => UPSTREAM_ENTRY,
        }
    }

    fn other_key(&self) -> &'static str {
        match self.side {
            Side::Listener => UPSTREAM_ENTRY,
            Side::Attempt => CALL_ENTRY,
        }
    }

    /// A callback begins: forget what other contexts may have changed since.
    pub fn begin(&mut self) {
        // The listener's only writer holds the request until it lets it go on: until then no
        // one else changes the request's headers (the attempts edit them once it has gone), so
        // its body callbacks use the list its headers callback read.
        if !(self.side == Side::Listener && self.writers == Writers::One && !self.passed_on) {
            self.request_headers = HeaderView::default();
        }
        self.response_headers = HeaderView::default();
        self.now_ms = None;
        if self.writers == Writers::Many {
            self.own = None;
            if self.side == Side::Listener {
                self.identity = None;
            }
        }
        // Attempts run between the listener's callbacks until the answer's headers come; the
        // listener's entry does not change while an attempt runs.
        if self.side == Side::Listener && !self.attempts_over {
            self.other = if self.passed_on { None } else { Some(Entry::default()) };
        }
    }

    fn own(&mut self, h: &impl Host) -> &mut Entry {
        let key = self.own_key();
        self.own.get_or_insert_with(|| Entry::from_bytes(h.property(&[key]).unwrap_or_default()))
    }

    fn get(&mut self, h: &impl Host, name: &str) -> Option<Vec<u8>> {
        if let Some(v) = self.own(h).get(name) {
            return (!v.is_empty()).then(|| v.to_vec());
        }
        let key = self.other_key();
        let other = self.other.get_or_insert_with(|| Entry::from_bytes(h.property(&[key]).unwrap_or_default()));
        other.get(name).filter(|v| !v.is_empty()).map(<[u8]>::to_vec)
    }

    fn set(&mut self, h: &impl Host, name: &str, value: &[u8]) {
        if name == headers::PROP_IDENTITY {
            self.identity = None;
        }
        self.own(h).set(name, value);
        self.own_changed = true;
    }

    /// Whether anyone reads this side's entry after this callback: the other filters of the
    /// side, the listener (reading the attempts'), or the attempts (reading the listener's,
    /// until the answer's headers come). Once the attempts are over, the listener's only writer
    /// is the only reader of its entry, and keeps it in memory.
    fn read_later(&self) -> bool {
        self.writers == Writers::Many || self.side == Side::Attempt || !self.attempts_over
    }

    /// Writes this side's entry, if it changed.
    pub fn flush(&mut self, h: &impl Host) {
        if !self.own_changed {
            return;
        }
        self.own_changed = false;
        if let Some(own) = &self.own {
            h.set_property_bytes(self.own_key(), own.encode());
        }
    }
}

/// A host whose internal properties live in the call's state (see the module's description).
pub struct CallState<'a, H: Host> {
    pub inner: &'a H,
    pub data: &'a RefCell<CallData>,
}

impl<H: Host> Host for CallState<'_, H> {
    fn request_headers(&self) -> Vec<(String, String)> {
        self.data.borrow_mut().request_headers.whole(|| self.inner.request_header_list()).to_pairs()
    }
    fn request_header_list(&self) -> HeaderList {
        self.data.borrow_mut().request_headers.whole(|| self.inner.request_header_list()).clone()
    }
    fn response_header_list(&self) -> HeaderList {
        self.data.borrow_mut().response_headers.whole(|| self.inner.response_header_list()).clone()
    }
    fn with_request_headers<R>(&self, f: impl FnOnce(&HeaderList) -> R) -> R {
        let mut data = self.data.borrow_mut();
        f(data.request_headers.whole(|| self.inner.request_header_list()))
    }
    fn with_response_headers<R>(&self, f: impl FnOnce(&HeaderList) -> R) -> R {
        let mut data = self.data.borrow_mut();
        f(data.response_headers.whole(|| self.inner.response_header_list()))
    }
    fn request_header(&self, name: &str) -> Option<String> {
        // One read of the whole map serves every header of the callback.
        let found = self.data.borrow_mut().request_headers.one(name, || self.inner.request_header_list());
        found.unwrap_or_else(|()| self.inner.request_header(name))
    }
    fn remove_request_headers_where(&self, drop: &dyn Fn(&str) -> bool) {
        // From the callback's one list: only the names removed are copied out of it.
        let names: Vec<String> = {
            let mut data = self.data.borrow_mut();
            let list = data.request_headers.whole(|| self.inner.request_header_list());
            list.iter().filter(|(k, _)| drop(k)).map(|(k, _)| k.own()).collect()
        };
        for n in &names {
            self.set_request_header(n, None);
        }
    }
    #[inline(never)]
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        // (A request header is set afresh by each attempt, most of them present: replaced.)
        let had = self.data.borrow_mut().request_headers.set(name, value);
        if !(had == Had::No && value.is_none()) {
            self.inner.set_request_header(name, value)
        }
    }
    fn response_headers(&self) -> Vec<(String, String)> {
        self.data.borrow_mut().response_headers.whole(|| self.inner.response_header_list()).to_pairs()
    }
    fn response_header(&self, name: &str) -> Option<String> {
        let found = self.data.borrow_mut().response_headers.one(name, || self.inner.response_header_list());
        found.unwrap_or_else(|()| self.inner.response_header(name))
    }
    #[inline(never)]
    fn set_response_header(&self, name: &str, value: Option<&str>) {
        let had = self.data.borrow_mut().response_headers.set(name, value);
        match (had, value) {
            (Had::No, None) => {}
            (Had::No, Some(v)) => self.inner.add_response_header(name, v),
            _ => self.inner.set_response_header(name, value),
        }
    }
    fn request_body(&self, size: usize) -> Vec<u8> {
        self.inner.request_body(size)
    }
    fn replace_request_body(&self, size: usize, body: &[u8]) {
        self.inner.replace_request_body(size, body)
    }
    fn response_body(&self, size: usize) -> Vec<u8> {
        self.inner.response_body(size)
    }
    fn replace_response_body(&self, size: usize, body: &[u8]) {
        self.inner.replace_response_body(size, body)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            [name] if internal(name) => self.data.borrow_mut().get(self.inner, name),
            _ => self.inner.property(path),
        }
    }
    fn set_property_bytes(&self, name: &str, value: &[u8]) {
        if internal(name) {
            self.data.borrow_mut().set(self.inner, name, value);
        } else {
            self.inner.set_property_bytes(name, value)
        }
    }
    fn call_identity(&self) -> Option<std::rc::Rc<crate::auth::keys::CallIdentity>> {
        if let Some(id) = &self.data.borrow().identity {
            return id.clone();
        }
        let id =
            crate::auth::keys::CallIdentity::parse(&self.property(&[headers::PROP_IDENTITY])?).map(std::rc::Rc::new);
        self.data.borrow_mut().identity = Some(id.clone());
        id
    }
    fn upstream_metadata(&self, key: &str) -> Option<String> {
        // The first value asked for reads them all, once (an attempt's host does not change).
        if !self.data.borrow().metadata.all_read {
            let all = self.inner.upstream_metadata_all().unwrap_or_default();
            let mut data = self.data.borrow_mut();
            data.metadata.all_read = true;
            data.metadata.values.extend(all.into_iter().map(|(k, v)| (k, Some(v).filter(|v| !v.is_empty()))));
        }
        if let Some((_, v)) = self.data.borrow().metadata.values.iter().find(|(k, _)| k == key) {
            return v.clone();
        }
        // Not in the whole map (or none was given): the value alone, as the proxy reads it.
        let v = self.inner.upstream_metadata(key);
        self.data.borrow_mut().metadata.values.push((key.own(), v.clone()));
        v
    }
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), ()> {
        self.inner.shared_get(key)
    }
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedSetError> {
        self.inner.shared_set(key, value, cas)
    }
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) -> bool {
        // Envoy runs the reply through the filters before this one at once: they must see what
        // this call knows (a refusal, the door) by then.
        self.data.borrow_mut().flush(self.inner);
        self.inner.send_response(status, headers, body)
    }
    fn now_ms(&self) -> u64 {
        let cached = self.data.borrow().now_ms;
        cached.unwrap_or_else(|| {
            let now = self.inner.now_ms();
            self.data.borrow_mut().now_ms = Some(now);
            now
        })
    }
    fn random_u64(&self) -> u64 {
        self.inner.random_u64()
    }
    fn warn(&self, msg: &str) {
        self.inner.warn(msg)
    }
    fn clear_route_cache(&self) {
        self.inner.clear_route_cache()
    }
    fn counter_add(&self, name: &str, by: u64) {
        self.inner.counter_add(name, by)
    }
    fn histogram_record(&self, name: &str, value: u64) {
        self.inner.histogram_record(name, value)
    }
    fn counter_add_parts(&self, parts: &[&str], by: u64) {
        self.inner.counter_add_parts(parts, by)
    }
    fn histogram_record_parts(&self, parts: &[&str], value: u64) {
        self.inner.histogram_record_parts(parts, value)
    }
    fn http_call(&self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u32, ()> {
        self.inner.http_call(cluster, headers, body, timeout_ms)
    }
    fn resume_request(&self) {
        // The stream goes on at once (an attempt may start): it must see the call's state, and
        // this context must read what the attempts write from now on.
        let mut data = self.data.borrow_mut();
        data.flush(self.inner);
        data.passed_on = true;
        drop(data);
        self.inner.resume_request()
    }
    fn resume_response(&self) {
        self.data.borrow_mut().flush(self.inner);
        self.inner.resume_response()
    }
}

/// A call context with its call state: every callback sees the host through [`CallState`], and
/// the side's entry is written when the callback ends.
pub struct Stateful<C> {
    pub ctx: C,
    pub data: RefCell<CallData>,
}

impl<C> Stateful<C> {
    pub fn new(ctx: C, side: Side, writers: Writers) -> Stateful<C> {
        Stateful { ctx, data: RefCell::new(CallData::new(side, writers)) }
    }

    fn passed_on_if(&mut self, flow: Flow) {
        if flow == Flow::Continue {
            self.data.borrow_mut().passed_on = true;
        }
    }

    fn run<H: Host, R>(&mut self, h: &H, f: impl FnOnce(&mut C, &CallState<'_, H>) -> R) -> R {
        self.data.borrow_mut().begin();
        let r = f(&mut self.ctx, &CallState { inner: h, data: &self.data });
        let mut data = self.data.borrow_mut();
        if data.read_later() {
            data.flush(h);
        }
        r
    }

    /// A request callback: as [`Stateful::run`], except that the side's only writer keeps its
    /// entry in memory while it holds the request for more of it. Nothing of the call moves on
    /// (no later filter, no attempt) until this context lets it go, in a later callback that
    /// writes the entry (a body callback, a call's answer, a local reply, the log).
    fn run_request<H: Host>(&mut self, h: &H, eos: bool, f: impl FnOnce(&mut C, &CallState<'_, H>) -> Flow) -> Flow {
        self.data.borrow_mut().begin();
        let flow = f(&mut self.ctx, &CallState { inner: h, data: &self.data });
        let mut data = self.data.borrow_mut();
        if eos || flow != Flow::Pause || data.writers == Writers::Many {
            data.flush(h);
        }
        drop(data);
        self.passed_on_if(flow);
        flow
    }
}

impl<C: Callbacks> Callbacks for Stateful<C> {
    fn on_request_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        self.run_request(h, eos, |c, s| c.on_request_headers(s, eos))
    }
    fn on_request_body<H: Host>(&mut self, h: &H, size: usize, eos: bool) -> Flow {
        self.run_request(h, eos, |c, s| c.on_request_body(s, size, eos))
    }
    fn on_response_headers<H: Host>(&mut self, h: &H, eos: bool) -> Flow {
        self.data.borrow_mut().begin();
        let flow = self.ctx.on_response_headers(&CallState { inner: h, data: &self.data }, eos);
        let mut data = self.data.borrow_mut();
        data.attempts_over = true;
        if data.read_later() {
            data.flush(h);
        }
        flow
    }
    fn on_response_body<H: Host>(&mut self, h: &H, size: usize, eos: bool) -> Flow {
        self.run(h, |c, s| c.on_response_body(s, size, eos))
    }
    fn on_log<H: Host>(&mut self, h: &H) {
        self.run(h, |c, s| c.on_log(s))
    }
    fn on_http_call_response<H: Host>(&mut self, h: &H, token: u32, answer: &HttpAnswer) {
        self.run(h, |c, s| c.on_http_call_response(s, token, answer))
    }
}

/// Reads one property the stages hand on, from a host's filter state as the entries hold it
/// (for tests and tools that look at what a call left behind).
pub fn handed_on(h: &impl Host, name: &str) -> Option<Vec<u8>> {
    [CALL_ENTRY, UPSTREAM_ENTRY].iter().find_map(|key| {
        Entry::from_bytes(h.property(&[key]).unwrap_or_default())
            .get(name)
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec)
    })
}

#[cfg(test)]
mod tests;
