//! The cache stage, on the listener, after route (it keys on the resolved alias and route) and
//! before quota (a hit is charged to no bucket):
//!
//! - on the request (its body complete and routed): looks the call up; a fresh entry answers
//!   it (`x-aigw-cache: hit`), as JSON or replayed as a stream, in the format of the caller's
//!   door (entries are keyed by the request as written, so each door's answers are its own);
//! - on the answer: stores a whole, successful, non-streamed answer; or, when every provider
//!   failed (a 429 or 5xx that is not the gateway's own refusal) and the policy allows stale
//!   answers, answers with a stale entry instead (`x-aigw-cache: stale`).

use std::rc::Rc;

use super::semantic::{self, SemanticNote};
use super::{keys, keys_of, Cache, CacheMode, CachePolicy, Digest32, Entry, Lookup, Meta};
use crate::headers;
use crate::host::HttpAnswer;
use crate::host::{Flow, Host};
use crate::route::RouteConfig;
use crate::text::Text;
use crate::wire::chat::StreamCollector;
use crate::wire::messages_in::MessagesCollector;
use crate::wire::responses_in::ResponsesCollector;
use crate::wire::usage::Usage;

enum State {
    Off,
    /// Looked up and missed (or skipped for a refresh): the answer may be stored, or a stale
    /// entry may stand in for a failed chain.
    Miss {
        digest: Digest32,
        policy: CachePolicy,
        stream: bool,
        stale: Option<Box<Entry>>,
        storing: bool,
    },
    /// A streamed miss: the stream goes on as it comes, and what it amounts to is stored once
    /// it ended well (at its last event, not at the body's end: see [`Collector::ended`]).
    Collecting {
        digest: Digest32,
        policy: CachePolicy,
        collector: Box<Collector>,
    },
    /// A fresh entry answers the call, once the pipeline let it ([`CacheCall::serve`]).
    Hit {
        entry: Box<Entry>,
        stream: bool,
    },
    /// Waiting for the fleet's shared cache (Redis), after a local miss.
    Remote {
        token: u32,
        digest: Digest32,
        policy: CachePolicy,
        stream: bool,
        stale: Option<Box<Entry>>,
        semantic: Option<(String, Digest32)>,
    },
    /// Waiting for the request's embedding (the semantic modes), after an exact miss.
    Embedding {
        token: u32,
        digest: Digest32,
        partition: Digest32,
        policy: CachePolicy,
        stream: bool,
        stale: Option<Box<Entry>>,
    },
    /// The call was answered from the cache.
    Served,
    /// A stale entry replaces the failed chain's answer, once the failure's body is all here.
    Replacing(Vec<u8>),
}

pub struct CacheCall {
    cache: Rc<Cache>,
    route: Rc<RouteConfig>,
    alias: String,
    state: State,
    charge_requests: bool,
    /// The request's embedding and partition, indexed with its answer once stored.
    indexable: Option<(Digest32, Vec<i8>)>,
    /// The word a hit is recorded with: `hit`, or `semantic_hit`.
    hit_word: &'static str,
    /// The call's request id (kept with its answer: the request headers are not there to read
    /// once the answer comes).
    request_id: String,
    /// The door the call came by: its answers and streams are in that door's format.
    door: AnswerFormat,
}

/// The format of a call's answers (its door's): chat completions, Response objects and the
/// Responses events, or Messages and their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerFormat {
    Chat,
    Responses,
    Messages,
}

/// Collects a streamed answer as it goes on, into the whole answer stored.
enum Collector {
    Chat(StreamCollector),
    Responses(ResponsesCollector),
    Messages(MessagesCollector),
}

impl Collector {
    fn push(&mut self, chunk: &[u8]) {
        match self {
            Collector::Chat(c) => c.push(chunk),
            Collector::Responses(c) => c.push(chunk),
            Collector::Messages(c) => c.push(chunk),
        }
    }

    /// Whether the stream's own end came (chat's `[DONE]`, the Responses' `response.completed`):
    /// nothing the caller needs follows it, and a caller may close the call there, before the
    /// body's end reaches the gateway (the OpenAI SDK does).
    fn ended(&self) -> bool {
        match self {
            Collector::Chat(c) => c.ended(),
            Collector::Responses(c) => c.ended(),
            Collector::Messages(c) => c.ended(),
        }
    }

    fn answer(&self) -> Option<(Vec<u8>, Option<crate::wire::usage::Usage>)> {
        match self {
            Collector::Chat(c) => c.answer().map(|a| (a, c.usage())),
            Collector::Responses(c) => c.answer().map(|a| (a, c.usage())),
            Collector::Messages(c) => c.answer().map(|a| (a, c.usage())),
        }
    }
}

/// What the cache stage decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not answered from the cache: the call goes on.
    GoOn,
    /// A fresh entry answers it ([`CacheCall::serve`]), charged to the request buckets (`true`)
    /// or to nothing, as its policy says.
    Hit(bool),
    /// Waiting for the request's embedding ([`CacheCall::on_embedding`]).
    Wait,
}

impl CacheCall {
    pub fn new(cache: Rc<Cache>, route: Rc<RouteConfig>) -> CacheCall {
        CacheCall {
            cache,
            route,
            alias: String::new(),
            state: State::Off,
            charge_requests: false,
            indexable: None,
            hit_word: "hit",
            request_id: String::new(),
            door: AnswerFormat::Chat,
        }
    }

    /// The request, complete and routed; `handed`: the request as the guard stage read (and
    /// masked) it, when it ran, so that it is not read again.
    pub fn on_request(&mut self, h: &impl Host, handed: Option<crate::guard::stage::Handed>) -> Decision {
        self.look_up(h, handed);
        self.decision()
    }

    fn decision(&self) -> Decision {
        match self.state {
            State::Hit { .. } => Decision::Hit(self.charge_requests),
            State::Embedding { .. } | State::Remote { .. } => Decision::Wait,
            _ => Decision::GoOn,
        }
    }

    fn look_up(&mut self, h: &impl Host, handed: Option<crate::guard::stage::Handed>) {
        // Chat completions, Messages and Responses: the request as the caller wrote it, the
        // answer in the door's format (whole or streamed, whichever step served it).
        self.door = match h.property_string(&[headers::PROP_DOOR]).as_deref() {
            Some("chat") => AnswerFormat::Chat,
            Some("messages") => AnswerFormat::Messages,
            Some("responses") => AnswerFormat::Responses,
            _ => return,
        };
        let (Some(alias), Some(route)) =
            (h.property_string(&[headers::PROP_ALIAS]), h.property_string(&[headers::PROP_ROUTE]))
        else {
            return;
        };
        let Some(policy) = self.route.cache_policy(&alias, &route).cloned() else { return };
        if h.request_header("cache-control").is_some_and(|c| c.lower().has("no-store")) {
            h.set_property(headers::PROP_CACHE, "no_store");
            return;
        }
        let id = h.call_identity().unwrap_or_default();
        let key_id = policy.per_key.then_some(id.key_id.as_str());
        // The request as routed (the guard stage's, masked, when it ran); what it masked keys
        // the call too, and so does the Messages door (a request may read the same through two
        // doors, and its answers are in each door's format).
        let keyed = if self.door == AnswerFormat::Messages { format!("{route} messages") } else { route.own() };
        let k = match handed {
            Some((v, masked)) => {
                let keyed = masked.map_or(keyed.own(), |m| format!("{keyed}#{m}"));
                keys_of(&id.tenant, key_id, &alias, &keyed, v)
            }
            None => keys(&id.tenant, key_id, &alias, &keyed, &h.request_body(usize::MAX)),
        };
        let Some(k) = k else { return };
        if k.stateful {
            return;
        }
        let (digest, stream) = (k.exact, k.stream);
        self.alias = alias;
        self.request_id = h.request_header("x-request-id").unwrap_or_default();
        let refresh = h.request_header(headers::CALLER_CACHE).is_some_and(|v| v.same_letters("refresh"));
        let found = if refresh { Lookup::Miss } else { self.cache.lookup(h, &digest) };
        let stale = match found {
            Lookup::Fresh(entry) => {
                self.charge_requests = policy.charge_requests;
                self.state = State::Hit { entry: Box::new(entry), stream };
                return;
            }
            Lookup::Stale(entry) if policy.stale_ttl_s > 0 => Some(Box::new(entry)),
            _ => None,
        };
        // Not here: the fleet's shared cache may have it (one round trip).
        if let (false, Some(shared)) = (refresh, &self.cache.shared) {
            if let Some(token) = shared.get(h, &digest) {
                self.state = State::Remote { token, digest, policy, stream, stale, semantic: k.semantic };
                return;
            }
        }
        self.exact_missed(h, digest, policy, stream, stale, k.semantic);
    }

    /// No exact entry: the semantic modes ask for the request's embedding first.
    fn exact_missed(
        &mut self,
        h: &impl Host,
        digest: Digest32,
        policy: CachePolicy,
        stream: bool,
        stale: Option<Box<Entry>>,
        semantic: Option<(String, Digest32)>,
    ) {
        if let (true, Some(sem), Some((text, partition))) = (policy.semantic(), &self.cache.semantic, semantic) {
            let (headers, body) = sem.request(&text, &self.request_id);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            match h.http_call(&sem.cluster, &headers, &body, sem.timeout_ms) {
                Ok(token) => {
                    self.state = State::Embedding { token, digest, partition, policy, stream, stale };
                    return;
                }
                Err(()) => self.embedding_failed(h),
            }
        }
        self.missed(h, digest, policy, stream, stale);
    }

    fn missed(
        &mut self,
        h: &impl Host,
        digest: Digest32,
        policy: CachePolicy,
        stream: bool,
        stale: Option<Box<Entry>>,
    ) {
        h.counter_add(&format!("aigw_cache_misses_total.alias.{}", crate::audit::stage::label(&self.alias)), 1);
        h.set_property(headers::PROP_CACHE, "miss");
        self.state = State::Miss { digest, policy, stream, stale, storing: false };
    }

    fn embedding_failed(&self, h: &impl Host) {
        let alias = crate::audit::stage::label(&self.alias);
        h.counter_add(&format!("aigw_cache_embedding_failures_total.alias.{alias}"), 1);
    }

    /// The answer to an embedding call: the nearest stored request of the partition answers
    /// this one when their similarity reaches the threshold (`semantic`), or is only recorded
    /// (`semantic-shadow`). `None`: not this stage's call.
    /// The answer to a call this stage made: the shared cache's lookup, or the embedding.
    /// `None`: not this stage's call.
    pub fn on_call(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) -> Option<Decision> {
        if !matches!(self.state, State::Remote { token: t, .. } if t == token) {
            return self.on_embedding(h, token, answer);
        }
        let State::Remote { digest, policy, stream, stale, semantic, .. } =
            std::mem::replace(&mut self.state, State::Off)
        else {
            return None;
        };
        let now = self.cache.now_ms(h);
        let mut stale = stale;
        if let Some(entry) = super::shared::read_entry(answer, &digest) {
            let age = now.saturating_sub(entry.stored_ms);
            if age < entry.meta.ttl_ms {
                // Kept here too, for the next call on this replica.
                self.cache.store(h, &entry);
                self.charge_requests = policy.charge_requests;
                self.hit_word = "shared_hit";
                self.state = State::Hit { entry: Box::new(entry), stream };
                return Some(self.decision());
            }
            if stale.is_none() && policy.stale_ttl_s > 0 && age < entry.meta.ttl_ms.saturating_add(entry.meta.stale_ms)
            {
                stale = Some(Box::new(entry));
            }
        }
        self.exact_missed(h, digest, policy, stream, stale, semantic);
        Some(self.decision())
    }

    pub fn on_embedding(&mut self, h: &impl Host, token: u32, answer: &HttpAnswer) -> Option<Decision> {
        if !matches!(self.state, State::Embedding { token: t, .. } if t == token) {
            return None;
        }
        let State::Embedding { digest, partition, policy, stream, stale, .. } =
            std::mem::replace(&mut self.state, State::Off)
        else {
            return None;
        };
        let (Some(sem), Some(v)) =
            (&self.cache.semantic, (answer.status == 200).then(|| semantic::vector_of(&answer.body)).flatten())
        else {
            self.embedding_failed(h);
            self.missed(h, digest, policy, stream, stale);
            return Some(Decision::GoOn);
        };
        let threshold = policy.threshold.unwrap_or(1.0);
        let mut note = SemanticNote::default();
        let mut served = None;
        if let Some((similarity, nearest)) = sem.nearest(h, &partition, &v) {
            note.similarity = Some((similarity * 10_000.0).round() / 10_000.0);
            if similarity >= threshold {
                if let Lookup::Fresh(entry) = self.cache.lookup(h, &nearest) {
                    note.would_serve = Some(entry.meta.request_id.own());
                    if policy.mode == CacheMode::Semantic {
                        note.served = true;
                        served = Some(entry);
                    }
                }
            }
        }
        h.set_property(headers::PROP_CACHE_SEMANTIC, &crate::wire::write::to_string(&note));
        if let Some(entry) = served {
            self.charge_requests = policy.charge_requests;
            self.hit_word = "semantic_hit";
            self.state = State::Hit { entry: Box::new(entry), stream };
            return Some(self.decision());
        }
        self.indexable = Some((partition, v));
        self.missed(h, digest, policy, stream, stale);
        Some(Decision::GoOn)
    }

    /// Answers the call with the fresh entry [`CacheCall::on_request`] found. Returns whether
    /// the answer was sent (else the call goes on as a miss).
    pub fn serve(&mut self, h: &impl Host) -> bool {
        let State::Hit { entry, stream } = std::mem::replace(&mut self.state, State::Off) else { return false };
        if self.answer(h, &entry, stream) {
            return true;
        }
        h.set_property(headers::PROP_CACHE, "miss");
        false
    }

    fn answer(&mut self, h: &impl Host, entry: &Entry, stream: bool) -> bool {
        let body = if stream { self.replay(&entry.body) } else { Some(entry.body.clone()) };
        let Some(body) = body else { return false };
        h.set_property(headers::PROP_CACHE, &said(self.hit_word, &entry.meta));
        let mut reply = vec![
            ("content-type", if stream { "text/event-stream" } else { "application/json" }),
            (headers::CACHE, self.hit_word),
        ];
        if let Some(m) = &entry.meta.model {
            reply.push((headers::MODEL, m));
        }
        if !h.send_response(200, &reply, &body) {
            return false;
        }
        h.counter_add(&format!("aigw_cache_hits_total.alias.{}", crate::audit::stage::label(&self.alias)), 1);
        self.state = State::Served;
        true
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        let State::Miss { stream, stale, storing, .. } = &mut self.state else { return Flow::Continue };
        let status: u16 = h.response_header(":status").and_then(|s| s.int_as()).unwrap_or(0);
        let ours = h.property(&[headers::PROP_REFUSAL]).is_some();
        let json = h.response_header("content-type").is_some_and(|c| c.starts_with("application/json"));
        if status == 200 && json && !*stream && !eos && !ours {
            // Held until complete, then stored as it goes on.
            *storing = true;
            h.set_response_header(headers::CACHE, Some("miss"));
            return Flow::Pause;
        }
        if (status == 429 || status >= 500) && !ours && !eos {
            if let Some(entry) = stale.take() {
                // Every provider failed: the stale answer stands in for the chain's refusal.
                let body =
                    if *stream { replay(self.door, &entry.body).unwrap_or_default() } else { entry.body.clone() };
                h.set_response_header(":status", Some("200"));
                let ct = if *stream { "text/event-stream" } else { "application/json" };
                h.set_response_header("content-type", Some(ct));
                h.set_response_header("content-length", None);
                h.set_response_header(headers::CACHE, Some("stale"));
                if let Some(m) = &entry.meta.model {
                    h.set_response_header(headers::MODEL, Some(m));
                }
                h.set_property(headers::PROP_CACHE, &said("stale", &entry.meta));
                h.counter_add(
                    &format!("aigw_cache_stale_served_total.alias.{}", crate::audit::stage::label(&self.alias)),
                    1,
                );
                self.state = State::Replacing(body);
                return Flow::Pause;
            }
        }
        let sse = h.response_header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
        if status == 200 && sse && *stream && !eos && !ours {
            if let State::Miss { digest, policy, .. } = std::mem::replace(&mut self.state, State::Off) {
                let limit = self.cache.max_entry_bytes;
                let collector = Box::new(match self.door {
                    AnswerFormat::Responses => Collector::Responses(ResponsesCollector::new(limit)),
                    AnswerFormat::Messages => Collector::Messages(MessagesCollector::new(limit)),
                    AnswerFormat::Chat => Collector::Chat(StreamCollector::new(limit)),
                });
                self.state = State::Collecting { digest, policy, collector };
            }
        }
        if status == 200 {
            h.set_response_header(headers::CACHE, Some("miss"));
        }
        Flow::Continue
    }

    /// The answer's body; returns the flow and the body's size after this stage (a stale
    /// answer replaces a failure's body).
    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> (Flow, usize) {
        match std::mem::replace(&mut self.state, State::Off) {
            State::Collecting { digest, policy, mut collector } => {
                if size > 0 {
                    collector.push(&h.response_body(size));
                }
                if !eos && !collector.ended() {
                    self.state = State::Collecting { digest, policy, collector };
                } else if let Some((body, usage)) = collector.answer() {
                    self.store(h, digest, &policy, body, usage);
                }
                (Flow::Continue, size)
            }
            State::Miss { digest, policy, stream, stale, storing: true } => {
                if !eos {
                    self.state = State::Miss { digest, policy, stream, stale, storing: true };
                    return (Flow::Pause, size);
                }
                let usage = h.property(&[headers::PROP_USAGE]).and_then(|u| Usage::decode(&u));
                self.store(h, digest, &policy, h.response_body(size), usage);
                (Flow::Continue, size)
            }
            State::Replacing(body) => {
                if !eos {
                    self.state = State::Replacing(body);
                    return (Flow::Pause, size);
                }
                h.replace_response_body(size, &body);
                (Flow::Continue, body.len())
            }
            other => {
                self.state = other;
                (Flow::Continue, size)
            }
        }
    }

    /// Stores a whole answer of this call (counting one too large to keep), and indexes its
    /// request's embedding, if it has one.
    fn store(&mut self, h: &impl Host, digest: Digest32, policy: &CachePolicy, body: Vec<u8>, usage: Option<Usage>) {
        let meta = Meta {
            ttl_ms: policy.ttl_s.saturating_mul(1000),
            stale_ms: policy.stale_ttl_s.saturating_mul(1000),
            model: h.response_header(headers::MODEL),
            provider: h.response_header(headers::PROVIDER),
            usage,
            request_id: self.request_id.own(),
        };
        let entry = Entry { digest, stored_ms: self.cache.now_ms(h), meta, body };
        if !self.cache.store(h, &entry) {
            let alias = crate::audit::stage::label(&self.alias);
            h.counter_add(&format!("aigw_cache_too_large_total.alias.{alias}"), 1);
            return;
        }
        if let (Some(sem), Some((partition, v))) = (&self.cache.semantic, self.indexable.take()) {
            sem.insert(h, &partition, &entry.digest, v);
        }
        if self.cache.shared.is_some() {
            // The root context's ticker sends it to the fleet's shared cache.
            super::shared::enqueue(h, &entry.digest);
        }
    }
}

/// A stored answer replayed as a stream: a Response object as the Responses events, a Messages
/// answer as its events, a chat completion as chat chunks.
fn replay(door: AnswerFormat, body: &[u8]) -> Option<Vec<u8>> {
    match door {
        AnswerFormat::Responses => crate::wire::responses_in::stream_from_response(body),
        AnswerFormat::Messages => crate::wire::messages_in::stream_from_message(body),
        AnswerFormat::Chat => crate::wire::chat::stream_from_answer(body),
    }
}

impl CacheCall {
    fn replay(&self, body: &[u8]) -> Option<Vec<u8>> {
        replay(self.door, body)
    }
}

/// The cache's word for the audit record: `hit` or `stale`, and what the entry recorded.
fn said(status: &str, meta: &Meta) -> String {
    format!("{status} {}", crate::wire::write::to_string(meta))
}

/// The cache's word on a call, as the audit stage reads it: the status (`hit`, `stale`,
/// `miss`, `no_store`), and for an answer from the cache, what its entry recorded.
pub fn read_status(word: &str) -> (&str, Option<Meta>) {
    match word.cut(b' ') {
        Some((status, meta)) => (status, crate::wire::from_str(meta).ok()),
        None => (word, None),
    }
}

#[cfg(test)]
mod tests;
