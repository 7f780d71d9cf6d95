//! The route stage: on the listener ([`Select`]) it reads the request once, picks the model
//! alias and its fallback chain (route rules, canary), and on the way back explains a failed
//! chain and gives the Messages door's errors its shape; per
//! attempt ([`RouteAttempt`]) it checks the privacy zone, translates the request for the provider
//! this attempt goes to, records the attempt, and translates the provider's answer back.

use std::rc::Rc;

use crate::wire::tree::Value;

use super::{chain_refusal, models, AliasKind, Api, CallFacts, RouteConfig};
use crate::audit::{parse_attempts, Attempt as AttemptRecord, ErrorClass};
use crate::auth::keys::{check_scope, KeyScope};
use crate::error::GatewayError;
use crate::headers;
use crate::host::{messages_door, Flow, Host, HttpAnswer};
use crate::provider;
use crate::quota::RequestFacts;
use crate::text::{Joined, Put, PutBytes, Text};
use crate::wire::obj;
use crate::wire::{embeddings, messages_in, responses_in, sse};

const CHAT_PATH: &str = "/v1/chat/completions";

impl Select {
    pub fn new(cfg: Rc<RouteConfig>) -> Select {
        Select {
            cfg,
            active: false,
            door: Door::Chat,
            alias: String::new(),
            route: String::new(),
            hide_usage: false,
            answer: Answer::Pass,
        }
    }
}

impl RouteAttempt {
    pub fn new(cfg: Rc<RouteConfig>) -> RouteAttempt {
        RouteAttempt {
            cfg,
            target: None,
            response: ResponseMode::Pass,
            status: 0,
            record: None,
            attempts: Vec::new(),
            deprecation: None,
            sends_parts: false,
        }
    }

    /// The stage in a context that sends the other parts of a split embeddings batch (with the
    /// attempt's credential: the `gateway_upstream` filter). Alone, the stage refuses a batch
    /// larger than its provider takes in one call.
    pub fn sending_parts(mut self) -> RouteAttempt {
        self.sends_parts = true;
        self
    }
}

fn refuse(h: &impl Host, err: &GatewayError) -> Flow {
    h.set_property(headers::PROP_REFUSAL, "route");
    h.send_error(err, messages_door(h), &[]);
    Flow::Refused
}

/// The route of a call the guard stage rerouted.
pub const REROUTE: &str = "injection_reroute";

/// Which front door the call came in by.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Door {
    /// OpenAI chat completions (the unified format).
    Chat,
    /// Anthropic Messages: passed to a provider that speaks it, else translated to the
    /// unified request by each attempt, its answer translated back to Messages.
    Messages,
    /// OpenAI embeddings (`/v1/embeddings`): each attempt translates for its provider.
    Embeddings,
    /// OpenAI Responses (`/v1/responses`): translated to the unified request, its answer
    /// translated back to a Response object or the Responses event sequence.
    Responses,
}

/// Refuses the call; `send_error` gives the error the shape of the door it came in by.
fn refuse_at(h: &impl Host, _door: Door, err: &GatewayError) -> Flow {
    refuse(h, err)
}

/// What the listener filter does with the answer.
enum Answer {
    Pass,
    /// Messages door, an error (or the refusal that replaces an answer): given the door's
    /// shape once complete.
    ToMessages {
        status: u16,
        replaced: Option<Vec<u8>>,
    },
    /// Replace the body with this (the chain's refusal), once it is all here.
    Replace(Vec<u8>),
    /// A stream the caller asked no usage for: take the usage chunk out (after quota saw it).
    HideUsage(Box<sse::Parser>),
}

/// Downstream: chooses the fallback chain.
pub struct Select {
    cfg: Rc<RouteConfig>,
    active: bool,
    door: Door,
    alias: String,
    route: String,
    hide_usage: bool,
    answer: Answer,
}

impl Select {
    fn choose(&mut self, h: &impl Host, body: &[u8]) -> Result<(), GatewayError> {
        // One read of the body, for routing and (handed on) for quota.
        let read = if self.door == Door::Responses { RequestFacts::read_responses } else { RequestFacts::read };
        let facts = read(body).map_err(|e| {
            GatewayError::bad_request("invalid_json", format!("The request body is not valid JSON: {e}"))
        })?;
        let Some(model) = facts.model.as_deref().filter(|m| !m.is_empty()) else {
            return Err(GatewayError::bad_request("missing_model", "The request names no `model`.").with_param("model"));
        };
        if self.door == Door::Messages {
            // What Messages requires, refused here (before any provider is asked) in its words,
            // from the facts just read (no second pass over the body).
            if facts.max_output.is_none() {
                return Err(GatewayError::bad_request("invalid_request", "max_tokens: Field required"));
            }
            if !facts.messages_listed {
                return Err(GatewayError::bad_request("invalid_request", "messages: Field required"));
            }
        }
        let id = h.call_identity();
        // The aliases the caller's key may use (set by auth-key-swap; absent: no restriction).
        if let Some(id) = &id {
            check_scope("alias", &KeyScope::from_list_str(&id.alias_scope), model)?;
        }
        let hint = |name: &str| h.request_header(name).filter(|v| !v.is_empty());
        let latency_budget_ms = match hint(headers::CALLER_LATENCY_BUDGET) {
            None => None,
            Some(v) => Some(v.trim().int().filter(|b| *b > 0).ok_or_else(|| {
                GatewayError::bad_request(
                    "invalid_latency_budget",
                    format!("{} must be a whole number of milliseconds", headers::CALLER_LATENCY_BUDGET),
                )
            })?),
        };
        let cost_ceiling_pico = match hint(headers::CALLER_COST_CEILING) {
            None => None,
            Some(v) => Some(crate::audit::price::parse_usd(&v).ok_or_else(|| {
                GatewayError::bad_request(
                    "invalid_cost_ceiling",
                    format!("{} must be a USD amount such as 0.05", headers::CALLER_COST_CEILING),
                )
            })?),
        };
        let request_id = h.request_header("x-request-id").unwrap_or_default();
        // An embeddings call is of the `embeddings` workload class, whatever its key says.
        let workload = if self.door == Door::Embeddings {
            Some(crate::auth::keys::WorkloadClass::Embeddings.as_str())
        } else {
            id.as_ref().and_then(|i| i.workload_class.map(|w| w.as_str()))
        };
        let call = CallFacts {
            model,
            tenant: id.as_ref().map(|i| i.tenant.as_str()),
            feature: id.as_ref().and_then(|i| i.feature.as_deref()),
            task: id.as_ref().and_then(|i| i.task.as_deref()),
            workload_class: workload,
            zone: id.as_ref().and_then(|i| i.zone.as_deref()),
            latency_budget_ms,
            cost_ceiling_pico,
            request_id: &request_id,
        };
        let choice = self.cfg.choose(&call)?;
        let alias = self.cfg.alias(&choice.alias)?;
        // An alias serves one kind of call: its chain's models answer only that.
        let embeddings = self.door == Door::Embeddings;
        if embeddings != (alias.kind == AliasKind::Embeddings) {
            let (what, path) = if embeddings { ("a chat", CHAT_PATH) } else { ("an embeddings", embeddings::PATH) };
            return Err(GatewayError::bad_request(
                "wrong_model_kind",
                format!("`{model}` is {what} model; call it on {path}."),
            )
            .with_param("model"));
        }
        // Latency-aware order: the chain from the provider with the best live figures, for a
        // caller no privacy zone restricts (a zone's order stays the configured one).
        let mut chain = alias.chain.as_str();
        let mut route = choice.route.own();
        let unrestricted = call.zone.is_none_or(|z| self.cfg.zones.get(z).is_none_or(|r| r.iter().any(|x| x == "*")));
        if alias.prefer == Some(crate::route::Prefer::Fastest) && unrestricted {
            let providers: Vec<&str> = alias.steps.iter().map(|s| s.provider.as_str()).collect();
            let first = crate::route::health::fastest(h, &providers, h.now_ms(), alias.probe_ms);
            let best = providers.get(first).copied().unwrap_or_default();
            let order = if first == 0 { Some(chain) } else { alias.orders.get(best).map(String::as_str) };
            if let Some(c) = order {
                chain = c;
                route = format!("{route}+fastest:{best}");
            }
        }
        h.set_request_header(headers::CHAIN, Some(chain));
        for name in [headers::CALLER_LATENCY_BUDGET, headers::CALLER_COST_CEILING] {
            if hint(name).is_some() {
                h.set_request_header(name, None);
            }
        }
        if let Some(budget) = latency_budget_ms {
            // The whole call within the budget; each attempt within its share, so a slow
            // provider leaves time for the next one.
            let steps = u64::try_from(alias.steps.len()).unwrap_or(1).max(1);
            let per_try = crate::headers::decimal((budget / steps).max(1));
            h.set_request_header("x-envoy-upstream-rq-timeout-ms", Some(&crate::headers::decimal(budget)));
            h.set_request_header("x-envoy-upstream-rq-per-try-timeout-ms", Some(&per_try));
            h.set_property(headers::PROP_PER_TRY_MS, &per_try);
        }
        h.set_property(headers::PROP_ALIAS, &choice.alias);
        h.set_property(headers::PROP_ROUTE, &route);
        if let Some(slice) = choice.slice {
            h.set_property(headers::PROP_SLICE, slice);
        }
        let now = h.now_ms();
        let candidates: Vec<&str> = alias.steps.iter().map(|s| self.cfg.model_at(&s.model, now).0).collect();
        h.set_property(headers::PROP_CANDIDATES, &candidates.joined(","));
        self.hide_usage = facts.stream && !facts.include_usage;
        // Each attempt checks its answer against it (guard::schema); a Messages request's
        // structured outputs stand for the same.
        let structured = facts.output_config.as_deref().and_then(crate::guard::schema::response_format_of_text);
        if let Some(format) = facts.output_format.as_ref().or(structured.as_ref()) {
            h.set_property(headers::PROP_OUTPUT_FORMAT, format);
        }
        h.set_property(headers::PROP_REQUEST, &facts.encode());
        self.alias = choice.alias;
        self.route = route;
        h.clear_route_cache();
        Ok(())
    }
}

impl Select {
    /// The shadow of the alias this call was routed to, if it has one: (the path of the leg's
    /// door, the policy). Embeddings are not shadowed. No host call: every call asks.
    pub fn shadow_policy(&self) -> Option<(&'static str, &crate::route::shadow::ShadowPolicy)> {
        let s = self.cfg.aliases.get(&self.alias)?.shadow.as_ref()?;
        let path = match self.door {
            Door::Chat => CHAT_PATH,
            Door::Messages => messages_in::PATH,
            Door::Responses => responses_in::PATH,
            Door::Embeddings => return None,
        };
        Some((path, s))
    }

    /// Sends the call to another alias than the one chosen (the guard stage's reroute of a
    /// suspected prompt injection to a more restricted alias); the route is `injection_reroute`.
    pub fn reroute(&mut self, h: &impl Host, to: &str) -> Result<(), GatewayError> {
        let alias = self.cfg.alias(to)?;
        h.set_request_header(headers::CHAIN, Some(&alias.chain));
        h.set_property(headers::PROP_ALIAS, to);
        h.set_property(headers::PROP_ROUTE, REROUTE);
        let now = h.now_ms();
        let candidates: Vec<&str> = alias.steps.iter().map(|s| self.cfg.model_at(&s.model, now).0).collect();
        h.set_property(headers::PROP_CANDIDATES, &candidates.joined(","));
        self.alias = to.own();
        self.route = REROUTE.own();
        h.clear_route_cache();
        Ok(())
    }

    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        let path = h.request_header(":path").unwrap_or_default();
        self.door = match path.before(b'?') {
            CHAT_PATH => Door::Chat,
            messages_in::PATH => Door::Messages,
            embeddings::PATH => Door::Embeddings,
            responses_in::PATH => Door::Responses,
            p if models::is_models_path(p) => return self.models(h, &path),
            _ => return Flow::Continue,
        };
        if h.request_header(":method").as_deref() != Some("POST") {
            return refuse_at(
                h,
                self.door,
                &GatewayError::new(405, "invalid_request_error", "method_not_allowed", "Use POST for this path."),
            );
        }
        if eos {
            return refuse_at(h, self.door, &GatewayError::bad_request("missing_body", "The request has no body."));
        }
        self.active = true;
        // Hold the headers until the body has told us where the call goes.
        Flow::Pause
    }

    /// `GET /v1/models[/{id}]`: answers with the aliases the caller's key may use (see
    /// `route::models`). Nothing after this stage runs: no provider is called, nothing charged.
    fn models(&mut self, h: &impl Host, path: &str) -> Flow {
        if h.request_header(":method").as_deref() != Some("GET") {
            return refuse(
                h,
                &GatewayError::new(405, "invalid_request_error", "method_not_allowed", "Use GET for this path."),
            );
        }
        let scope = h.call_identity().map(|id| KeyScope::from_list_str(&id.alias_scope));
        let names = models::visible(&self.cfg, scope.as_ref());
        match models::answer(&names, path, h.request_header("anthropic-version").is_some()) {
            Ok(body) => {
                h.set_property(headers::PROP_ROUTE, "models");
                h.set_property(headers::PROP_ANSWERED, "models");
                if !h.send_response(200, &[("content-type", "application/json")], &body) {
                    h.warn("route-select: could not send the model list");
                }
                Flow::Refused
            }
            Err(e) => refuse(h, &e),
        }
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        if !self.active {
            return Flow::Continue;
        }
        if !eos {
            return Flow::Pause;
        }
        let body = h.request_body(size);
        // Said for every call, so filters that see the provider's path later (per attempt)
        // still know which door the caller used.
        h.set_property(
            headers::PROP_DOOR,
            match self.door {
                Door::Chat => "chat",
                Door::Messages => "messages",
                Door::Embeddings => "embeddings",
                Door::Responses => "responses",
            },
        );
        if matches!(self.door, Door::Responses | Door::Messages) {
            // The Responses and Messages doors: the body goes on as the caller wrote it (each
            // attempt passes it to a provider that speaks the door's API, and translates it for
            // the others). Here only what routing and the estimate need is read of it; the
            // chains' routes match the chat path.
            h.set_request_header(":path", Some(CHAT_PATH));
        }
        match self.choose(h, &body) {
            Ok(()) => {
                if matches!(self.door, Door::Messages | Door::Responses) {
                    self.hide_usage = false;
                }
                Flow::Continue
            }
            Err(e) => refuse_at(h, self.door, &e),
        }
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        if !self.active {
            return Flow::Continue;
        }
        if !self.route.is_empty() {
            h.set_response_header(headers::ROUTE, Some(&self.route));
        }
        let status: u16 = h.response_header(":status").and_then(|s| s.int_as()).unwrap_or(0);
        // The attempts list is read only when it may be needed to explain a failure; for an
        // answer, Envoy's own attempt count says how many providers were tried.
        let envoy_count = if status < 400 { h.response_header("x-envoy-attempt-count") } else { None };
        let attempts = if envoy_count.is_some() {
            Vec::new()
        } else {
            let mut a = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
            h.close_unanswered(&mut a);
            a
        };
        match envoy_count {
            Some(n) => h.set_response_header(headers::ATTEMPTS, Some(&n)),
            None if !attempts.is_empty() => {
                h.set_response_header(headers::ATTEMPTS, Some(&headers::decimal(attempts.len() as u64)))
            }
            None => {}
        }
        let ours = h.property(&[headers::PROP_REFUSAL]).is_some();
        let action = self.replace_failure(h, status, ours, &attempts, eos);
        // The Messages door: each attempt gave its success the door's shape; an error (the
        // provider's, in the unified shape, or the chain's refusal) is given it here.
        if self.door == Door::Messages && !eos && (status != 200 || matches!(self.answer, Answer::Replace(_))) {
            h.set_response_header("content-length", None);
            self.answer = match std::mem::replace(&mut self.answer, Answer::Pass) {
                Answer::Replace(b) => Answer::ToMessages { status: self.final_status(h, status), replaced: Some(b) },
                _ => Answer::ToMessages { status, replaced: None },
            };
            h.set_response_header("content-type", Some("application/json"));
        }
        action
    }

    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        match &mut self.answer {
            Answer::Pass => Flow::Continue,
            Answer::ToMessages { status, replaced } => {
                if !eos {
                    return Flow::Pause;
                }
                let body = replaced.take().unwrap_or_else(|| h.response_body(size));
                let out = messages_in::error_from_openai(*status, &body);
                h.replace_response_body(size, &out);
                Flow::Continue
            }
            Answer::Replace(body) => {
                if !eos {
                    return Flow::Pause;
                }
                h.replace_response_body(size, body);
                Flow::Continue
            }
            Answer::HideUsage(parser) => {
                let mut out = Vec::with_capacity(size);
                parser.push_each(&h.response_body(size), |_, data| {
                    // The event without its `"usage":null` member, which the gateway's
                    // translators and OpenAI write last: found with one comparison.
                    if let Some(head) = data.strip_suffix(",\"usage\":null}") {
                        out.put(b"data: ");
                        out.put(head.as_bytes());
                        out.put(b"}\n\n");
                        return;
                    }
                    if data.has("\"choices\":[]") && data.has("\"usage\":{") {
                        // The usage chunk the caller did not ask for: keep it for the audit record.
                        if let Ok(v) = crate::wire::from_str::<Value>(data) {
                            record_usage(h, v.get("usage").and_then(crate::wire::usage::Usage::from_openai));
                        }
                        return;
                    }
                    sse::data_event(&mut out, &data.replace_all(",\"usage\":null", ""));
                });
                h.replace_response_body(size, &out);
                Flow::Continue
            }
        }
    }
}

/// Keeps a call's usage for the audit stage: the usage an attempt read in the answer it passed
/// on (so the listener need not hold and read the answer again), or, on the listener, the usage
/// of an answer the caller no longer sees in OpenAI's format.
/// Adds a flag to the audit record's (route-select's flags, comma-separated).
pub(crate) fn add_route_flag(h: &impl Host, flag: &str) {
    let flags = match h.property_string(&[headers::PROP_ROUTE_FLAGS]) {
        Some(f) if f.parts(b',').any(|x| x == flag) => return,
        Some(f) if !f.is_empty() => format!("{f},{flag}"),
        _ => flag.own(),
    };
    h.set_property(headers::PROP_ROUTE_FLAGS, &flags);
}

/// Keeps what the attempt saw of the answer it passed on, for the audit stage (`PROP_ANSWER`).
fn record_facts(h: &impl Host, facts: &crate::wire::facts::AnswerFacts) {
    h.set_property_bytes(headers::PROP_ANSWER, &facts.encode());
}

fn record_usage(h: &impl Host, usage: Option<crate::wire::usage::Usage>) {
    if let Some(u) = usage {
        h.set_property_bytes(headers::PROP_USAGE, &u.encode());
    }
}

impl Select {
    /// The status a replaced answer was given.
    fn final_status(&self, h: &impl Host, status: u16) -> u16 {
        h.response_header(":status").and_then(|s| s.int_as()).unwrap_or(status)
    }

    /// Replaces a provider's failure with the gateway's explanation (see the cases below).
    fn replace_failure(
        &mut self,
        h: &impl Host,
        status: u16,
        ours: bool,
        attempts: &[AttemptRecord],
        eos: bool,
    ) -> Flow {
        if (status == 401 || status == 403) && !ours && !attempts.is_empty() && !eos {
            // The provider rejected the gateway's credential, not the caller's key: a 401 would
            // tell the caller's SDK its own key is wrong.
            let provider = attempts.last().map(|a| a.provider.as_str()).unwrap_or("the provider");
            let err = GatewayError::new(
                502,
                "server_error",
                "upstream_authentication",
                format!(
                    "{provider} rejected the gateway's credential ({status}). Your key is fine; the gateway \
                     uses its next credential for {provider} from now on. Retry the call."
                ),
            );
            self.replace_with(h, 502, err.body().into_bytes());
            return Flow::Continue;
        }
        if (status == 429 || status >= 500) && !ours && !attempts.is_empty() && !eos {
            // The chain ended without an answer: say what each step did (and, when the last
            // answer was not the JSON asked for, what was wrong with it).
            let note = (attempts.last().and_then(|a| a.error_class) == Some(ErrorClass::InvalidOutput)).then(|| {
                let problem = h.property_string(&[headers::PROP_OUTPUT_PROBLEM]).unwrap_or_default();
                ("invalid_model_output", format!("The last answer is not the JSON the request asked for: {problem}."))
            });
            let (status, body) = chain_refusal(&self.alias, attempts, note);
            self.replace_with(h, status, body.into_bytes());
            return Flow::Continue;
        }
        let sse = h.response_header("content-type").is_some_and(|c| c.starts_with("text/event-stream"));
        if self.hide_usage && sse && !eos {
            h.set_response_header("content-length", None);
            self.answer = Answer::HideUsage(Box::default());
        }
        Flow::Continue
    }

    fn replace_with(&mut self, h: &impl Host, status: u16, body: Vec<u8>) {
        h.set_response_header(":status", Some(&crate::headers::decimal(u64::from(status))));
        h.set_response_header("content-type", Some("application/json"));
        h.set_response_header("content-length", Some(&crate::headers::decimal(body.len() as u64)));
        self.answer = Answer::Replace(body);
    }
}

/// What the upstream filter does with the provider's response.
enum ResponseMode {
    /// OpenAI-format provider: pass through untouched.
    Pass,
    /// Anthropic JSON (success or error): buffer, then translate whole.
    Buffer,
    /// An OpenAI-format success: buffer, check it is readable, pass it on unchanged.
    Check,
    /// A provider's stream (Anthropic or Gemini SSE, Bedrock's binary event stream): translate
    /// it to OpenAI chunks as it arrives.
    Stream(Box<dyn sse::Translate>),
    /// A unified stream whose request asked for JSON output (translated, or passed through):
    /// collected as it goes on, and checked at its end; an answer that is not the JSON asked
    /// for ends with an error event after its content.
    Checked(Option<Box<dyn sse::Translate>>, Box<OutputWatch>),
}

/// The stream an [`OutputWatch`] reads: what the caller gets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum WatchKind {
    /// Unified chunks.
    Chat,
    /// A Responses door's events.
    Responses,
    /// A Messages door's events.
    Messages,
}

/// A stream's text, collected to be checked at its end (see [`ResponseMode::Checked`]).
struct OutputWatch {
    format: crate::guard::schema::OutputFormat,
    collector: crate::wire::chat::StreamCollector,
    /// The `[DONE]` the stream sent last, held back until the check is made.
    done: bool,
    /// A Responses door's stream (events, not chunks): its `response.completed` holds the
    /// whole Response, checked there. A Messages door's: its text deltas, checked at its
    /// `message_stop`.
    events: Option<(WatchKind, sse::Parser)>,
    /// A Messages stream's text so far (`None`: past [`WATCH_LIMIT`]).
    text: Option<String>,
}

/// The most of a stream's text an [`OutputWatch`] keeps to check.
const WATCH_LIMIT: usize = 1 << 20;

impl OutputWatch {
    fn new(format: crate::guard::schema::OutputFormat, kind: WatchKind) -> OutputWatch {
        let chat = kind == WatchKind::Chat;
        OutputWatch {
            format,
            collector: crate::wire::chat::StreamCollector::new(if chat { WATCH_LIMIT } else { 0 }),
            done: false,
            events: (!chat).then(|| (kind, sse::Parser::default())),
            text: Some(String::new()),
        }
    }

    /// Passes `out` on, minus a final `[DONE]`; at the end, the check (an error event if it
    /// fails), then `[DONE]`. A Responses stream: a `response.completed` whose Response is not
    /// the JSON asked for becomes `response.failed` (same number, the output as it came, an
    /// `error` whose code is `invalid_model_output`). A Messages stream: its `message_stop`
    /// becomes an `error` event (type `api_error`) when its text is not the JSON asked for.
    fn watch(&mut self, out: &mut Vec<u8>, eos: bool) {
        if let Some((kind, parser)) = &mut self.events {
            let mut events = Vec::new();
            parser.push(out, &mut events);
            if eos && !parser.is_idle() {
                parser.push(b"\n\n", &mut events);
            }
            out.clear();
            for ev in events {
                let mut data = ev.data;
                let mut name = ev.event;
                match (*kind, name.as_deref()) {
                    (WatchKind::Responses, Some("response.completed")) => {
                        if let Some(failed) = responses_failed(&self.format, &data) {
                            data = failed;
                            name = Some("response.failed".own());
                        }
                    }
                    (WatchKind::Messages, Some("content_block_delta")) => {
                        if let Ok(v) = crate::wire::from_str::<Value>(&data) {
                            if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
                                // (Past the chat collector's bound, as there, the text is not
                                // checked: `None`.)
                                match &mut self.text {
                                    Some(all) if all.len() + t.len() <= WATCH_LIMIT => all.put(t),
                                    _ => self.text = None,
                                }
                            }
                        }
                    }
                    (WatchKind::Messages, Some("message_stop")) => {
                        if let Some(Err(problem)) = self.text.as_deref().map(|t| self.format.check(t)) {
                            let message =
                                format!("The model's answer is not the JSON the request asked for: {problem}.");
                            data = crate::wire::write::to_string(
                                &obj! {"type" => "error", "error" = obj!{"type" => "api_error", "message" => message}},
                            );
                            name = Some("error".own());
                        }
                    }
                    _ => {}
                }
                if let Some(n) = &name {
                    out.put(b"event: ");
                    out.put(n.as_bytes());
                    out.push(b'\n');
                }
                sse::data_event(out, &data);
            }
            return;
        }
        self.collector.push(out);
        const DONE: &[u8] = b"data: [DONE]\n\n";
        if out.ends_with(DONE) {
            out.truncate(out.len() - DONE.len());
            self.done = true;
        }
        if !eos {
            return;
        }
        let text = self.collector.answer().map(|a| check_output(&self.format, &a));
        if let Some(Err(problem)) = text {
            let err = obj! {"error" = obj!{
                "message" => format!("The model's answer is not the JSON the request asked for: {problem}."),
                "type" => "server_error",
                "param" = crate::wire::tree::Value::Null,
                "code" => "invalid_model_output",
            }};
            sse::tree_event(out, &err);
        }
        if self.done {
            out.put(DONE);
        }
    }
}

/// A `response.completed` event's data, as `response.failed` when its Response is not the
/// JSON `format` asks for (`None`: it is, or it cannot be read).
fn responses_failed(format: &crate::guard::schema::OutputFormat, data: &str) -> Option<String> {
    let mut v: Value = crate::wire::from_str(data).ok()?;
    let response = v.get_mut("response")?;
    let problem = check_output(format, &crate::wire::write::to_vec(response)).err()?;
    response["status"] = Value::String("failed".own());
    response["error"] = obj! {
        "code" => "invalid_model_output",
        "message" => format!("The model's answer is not the JSON the request asked for: {problem}."),
    };
    v["type"] = Value::String("response.failed".own());
    Some(crate::wire::write::to_string(&v))
}

struct Target {
    provider: String,
    /// The provider's Envoy cluster (for the calls a split batch makes).
    cluster: String,
    api: Api,
    /// The API's path for this request, and for it when it streams.
    path: String,
    stream_path: String,
    model: String,
    max_tokens_default: u64,
    /// Bedrock's `x-amzn-ErrorType` of an error answer.
    error_type: String,
    /// An embeddings call: how the caller wants the vectors, and the estimate of its input
    /// tokens (what the answer says when the provider reports none).
    embeddings: Option<(embeddings::Encoding, u64)>,
    /// The input tokens a provider reported in a response header (Bedrock's Cohere models).
    reported_tokens: Option<u64>,
    /// The answer's content-type is already the translated answer's (`application/json`).
    answer_is_json: bool,
    /// A Responses call: passed to the API's own Responses endpoint, or translated.
    responses: Option<ResponsesStep>,
    /// A Messages call: passed to an API that speaks Messages, or translated.
    messages: Option<MessagesStep>,
    /// An embeddings call: how many inputs each part embeds (the request's first, then the
    /// other parts'), and the other parts of a batch split for this provider.
    part_sizes: Vec<usize>,
    split: Option<Split>,
    /// What a chat answer must be (the request's `response_format`), checked before Envoy
    /// decides on a retry: an answer that is not is the attempt's failure (502).
    output: Option<crate::guard::schema::OutputFormat>,
}

/// An embeddings batch larger than the provider embeds in one call: the attempt's own request
/// carries the first part, and the other parts go as calls of their own to the provider's
/// cluster, made and answered before the attempt's request is sent.
struct Split {
    /// The provider's cluster.
    cluster: String,
    /// The other parts' bodies, until they are sent.
    bodies: Vec<Vec<u8>>,
    /// Per other part, in order: its call (none: the proxy refused to make it) and its answer.
    calls: Vec<(Option<u32>, Option<PartAnswer>)>,
}

/// What one part's call came back with.
enum PartAnswer {
    /// Its vectors, and the input tokens the provider reported (in the body or a header).
    Vectors(Vec<Vec<f64>>, Option<u64>),
    /// Anything but a readable success: its status (0: no answer) and what it said.
    Failed { status: u16, error_type: String, body: Vec<u8> },
}

/// How long a part's call may take.
pub const PART_TIMEOUT_MS: u64 = 60_000;

/// How an attempt serves a call that came in by the Responses door.
enum ResponsesStep {
    /// The API has a Responses endpoint (OpenAI, Azure): the request and the answer pass.
    Native,
    /// Translated to the API's chat and back; what the answer echoes of the request, and the
    /// seed of its ids (set with the body).
    Translated(Option<(responses_in::Echo, String)>),
}

/// How an attempt serves a call that came in by the Messages door.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MessagesStep {
    /// The API speaks Messages (Anthropic): the request passes as the caller wrote it but for
    /// `model`, and the answer passes as the provider sent it.
    Native,
    /// Translated to the unified request and on to the API's own format; the answer comes back
    /// the same way, as a Messages answer or its events.
    Translated,
}

/// Upstream, once per attempt: translates for the provider this attempt goes to.
pub struct RouteAttempt {
    cfg: Rc<RouteConfig>,
    target: Option<Target>,
    response: ResponseMode,
    status: u16,
    /// This attempt's index in the call's attempts list, and when it was sent.
    record: Option<(usize, u64)>,
    /// The call's attempts list as this attempt last wrote it (attempts of one call run one
    /// after another, so no one else changes it meanwhile: no need to read it back).
    attempts: Vec<AttemptRecord>,
    /// The deprecation warning for the caller, when this attempt's model is deprecated.
    deprecation: Option<String>,
    /// Whether its context sends the other parts of a split batch ([`RouteAttempt::sending_parts`]).
    sends_parts: bool,
}

impl RouteAttempt {
    fn write_attempts(&self, h: &impl Host) {
        h.set_property_bytes(headers::PROP_ATTEMPTS, &crate::audit::encode_attempts(&self.attempts));
    }

    /// Appends this attempt to the call's attempts list in filter state (as "no response" until
    /// one arrives, so an attempt that never gets one is still on record).
    fn start_record(&mut self, h: &impl Host, provider: &str, region: Option<String>, model: Option<&str>) {
        let now = h.now_ms();
        self.attempts = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
        h.close_unanswered(&mut self.attempts);
        self.record = Some((self.attempts.len(), now));
        self.attempts.push(AttemptRecord {
            provider: provider.own(),
            region,
            model: model.map(str::to_string),
            status: None,
            latency_ms: None,
            error_class: Some(ErrorClass::NoResponse),
            credential: None,
            started_ms: now,
        });
        self.write_attempts(h);
    }

    /// The chain's steps this attempt passed over: between the previous attempt's step (or the
    /// start) and its own. Envoy's aggregate cluster skips a step only when its provider has no
    /// healthy endpoint (outlier detection ejected it): each is counted and noted for the audit
    /// record.
    fn note_skipped(&self, h: &impl Host, alias: &str, provider: &str) {
        let Some(a) = self.cfg.aliases.get(alias) else { return };
        let index = |p: &str| a.steps.iter().position(|s| s.provider == p);
        let Some(here) = index(provider) else { return };
        let previous = self.attempts.len().checked_sub(2).and_then(|i| self.attempts.get(i));
        let from = previous.and_then(|p| index(&p.provider)).map_or(0, |i| i + 1);
        let Some(skipped) = a.steps.get(from..here).filter(|s| !s.is_empty()) else { return };
        let mut list = h.property_string(&[headers::PROP_SKIPPED]).unwrap_or_default();
        for s in skipped {
            h.counter_add(
                &format!("aigw_provider_skipped_total.provider.{}", crate::audit::stage::label(&s.provider)),
                1,
            );
            if !list.is_empty() {
                list.push(',');
            }
            list.put(&s.provider);
        }
        h.set_property(headers::PROP_SKIPPED, &list);
    }

    fn finish_record(&mut self, h: &impl Host, status: u16, credential: Option<String>) {
        let Some((index, started)) = self.record else { return };
        let latency = h.now_ms().saturating_sub(started);
        // Live figures for latency-aware order, for a provider an alias ranks by them.
        if let Some(a) = self.attempts.get(index).filter(|a| self.cfg.ranked.contains(&a.provider)) {
            self.cfg.live.record(h, &a.provider, latency, status >= 500 || status == 429);
        }
        if let Some(a) = self.attempts.get_mut(index) {
            a.status = Some(status);
            a.latency_ms = Some(latency);
            a.error_class = ErrorClass::of_status(status);
            a.credential = credential;
        }
        self.write_attempts(h);
    }

    /// This attempt's answer is not the JSON its request asked for: it becomes a 502 (Envoy
    /// moves on to the next step), on record with the class `invalid_output`, and what was
    /// wrong is handed to the listener for the caller's error if no step does better.
    fn fail_output(&mut self, h: &impl Host, size: usize, problem: &str) {
        let err = invalid_output(problem);
        h.set_response_header(":status", Some("502"));
        h.set_response_header("content-type", Some("application/json"));
        h.set_response_header("content-length", Some(&crate::headers::decimal(err.len() as u64)));
        h.replace_response_body(size, &err);
        h.set_property(headers::PROP_OUTPUT_PROBLEM, problem);
        let Some((index, _)) = self.record else { return };
        if let Some(a) = self.attempts.get_mut(index) {
            a.status = Some(502);
            a.error_class = Some(ErrorClass::InvalidOutput);
        }
        self.write_attempts(h);
    }

    /// This attempt failed with `status` after its provider's 200 (a part of its batch failed).
    fn mark_status(&mut self, h: &impl Host, status: u16) {
        let Some((index, _)) = self.record else { return };
        if let Some(a) = self.attempts.get_mut(index) {
            a.status = Some(status);
            a.error_class = ErrorClass::of_status(status);
        }
        self.write_attempts(h);
    }

    /// This attempt's provider said 200 but its answer could not be read: the attempt record
    /// says so (the call moves on to the next provider, as for a 5xx).
    fn mark_invalid(&mut self, h: &impl Host) {
        let Some((index, _)) = self.record else { return };
        if let Some(a) = self.attempts.get_mut(index) {
            a.error_class = Some(ErrorClass::InvalidResponse);
        }
        self.write_attempts(h);
    }

    fn translate_request(
        h: &impl Host,
        t: &mut Target,
        body: &[u8],
        sends_parts: bool,
    ) -> Result<Vec<u8>, GatewayError> {
        if t.embeddings.is_some() {
            // One read of the body here; the input's estimate is the listener's (handed on).
            let req = embeddings::EmbeddingsRequest::read(body)?;
            let facts = h.property_string(&[headers::PROP_REQUEST]).and_then(|f| RequestFacts::decode(&f));
            let estimate = facts
                .or_else(|| RequestFacts::read(body).ok())
                .map(|f| f.estimate(&crate::quota::EstimateConfig::default()).prompt_tokens)
                .unwrap_or(0);
            t.embeddings = Some((req.encoding()?, estimate));
            let api = provider::api(t.api);
            let Some(cap) = api.embeddings_batch(&t.model) else {
                return api.embeddings_request(&req, &[], body, &t.model);
            };
            // A provider that caps its batch: one call per part of at most `cap` inputs.
            let texts = req.texts()?;
            let parts = embeddings::parts(&texts, cap)?;
            if parts.len() > 1 && !sends_parts {
                return Err(GatewayError::bad_request(
                    "unsupported_for_provider",
                    format!(
                        "This provider embeds at most {cap} input(s) per call; send {} in smaller batches (the \
                         gateway_upstream filter splits them).",
                        texts.len()
                    ),
                )
                .with_param("input"));
            }
            t.part_sizes = parts.iter().map(|p| p.len()).collect();
            let mut bodies = Vec::with_capacity(parts.len());
            for part in &parts {
                bodies.push(api.embeddings_request(&req, part, body, &t.model)?);
            }
            let mut bodies = bodies.into_iter();
            let first = bodies.next().unwrap_or_default();
            let rest: Vec<Vec<u8>> = bodies.collect();
            if !rest.is_empty() {
                add_route_flag(h, &format!("embeddings_split:{}", parts.len()));
                t.split = Some(Split { cluster: t.cluster.own(), bodies: rest, calls: Vec::new() });
            }
            return Ok(first);
        }
        let translated;
        let body = match &mut t.responses {
            Some(ResponsesStep::Native) => return provider::openai::with_model(body, &t.model),
            Some(ResponsesStep::Translated(slot)) => {
                // What only OpenAI serves is refused here, by name: this step cannot honour it.
                let (unified, echo) = responses_in::request_to_chat(body)?;
                *slot = Some((echo, format!("{}{}", h.request_header("x-request-id").unwrap_or_default(), h.now_ms())));
                translated = unified;
                &translated[..]
            }
            None => match t.messages {
                // The same format on both sides: only the model changes.
                Some(MessagesStep::Native) => return provider::openai::with_model(body, &t.model),
                Some(MessagesStep::Translated) => {
                    let request = crate::wire::from_slice::<Value>(body).map_err(provider::invalid_json)?;
                    translated = crate::wire::write::to_vec(&messages_in::request_to_openai(&request)?);
                    &translated[..]
                }
                None => body,
            },
        };
        let (out, stream) = provider::api(t.api).request(body, &t.model, t.max_tokens_default)?;
        if stream && t.stream_path != t.path {
            // Some APIs stream on a path of their own.
            h.set_request_header(":path", Some(&t.stream_path));
        }
        Ok(out)
    }

    /// An embeddings success, with the vectors of the batch's other parts after its own, as
    /// OpenAI's answer, and its usage: the tokens the provider reported for every part (in a
    /// body or a header), else the estimate, which the answer gives, the call is billed at, and
    /// the audit record flags. `Ok(Err(..))`: a part failed, and the whole batch fails with
    /// its status (Envoy moves on as for any failure).
    #[allow(clippy::type_complexity)]
    fn embeddings_whole(
        h: &impl Host,
        t: &Target,
        body: &[u8],
        encoding: embeddings::Encoding,
        estimate: u64,
    ) -> Result<Result<(Vec<u8>, Option<crate::wire::usage::Usage>), (u16, Vec<u8>)>, String> {
        let api = provider::api(t.api);
        let calls = t.split.as_ref().map_or(&[][..], |s| &s.calls[..]);
        for (i, (_, answer)) in calls.iter().enumerate() {
            match answer {
                Some(PartAnswer::Vectors(..)) => {}
                Some(PartAnswer::Failed { status, error_type, body }) if *status != 0 => {
                    return Ok(Err(api.error(*status, error_type, body)));
                }
                _ => {
                    let e = GatewayError::new(
                        503,
                        "server_error",
                        "upstream_part_unanswered",
                        format!(
                            "Part {} of {} of the embeddings batch got no answer from the provider.",
                            i + 2,
                            calls.len() + 1
                        ),
                    );
                    return Ok(Err((503, e.body().into_bytes())));
                }
            }
        }
        let (mut vectors, in_body) = api.embeddings_vectors(body, &t.model)?;
        let mut reported = in_body.or(t.reported_tokens);
        let mut counts = vec![vectors.len()];
        for (_, answer) in calls {
            if let Some(PartAnswer::Vectors(v, tokens)) = answer {
                counts.push(v.len());
                vectors.extend(v.iter().cloned());
                reported = reported.zip(*tokens).map(|(a, b)| a + b);
            }
        }
        // Each part has a vector per input, or the vectors would be matched to the wrong inputs.
        if !t.part_sizes.is_empty() && counts != t.part_sizes {
            // (As `{:?}` writes the lists, without linking `Debug` for them.)
            let list = |l: &[usize]| {
                format!("[{}]", l.iter().map(|n| crate::headers::decimal(*n as u64)).collect::<Vec<_>>().joined(", "))
            };
            return Err(format!("provider sent {} vectors for parts of {} inputs", list(&counts), list(&t.part_sizes)));
        }
        let input = reported.unwrap_or_else(|| {
            add_route_flag(h, "usage_estimated");
            estimate
        });
        let usage = crate::wire::usage::Usage { input, ..Default::default() };
        Ok(Ok((embeddings::answer(vectors, &t.model, encoding, input), Some(usage))))
    }

    /// A provider's whole (non-streamed) answer, translated to OpenAI's format: (status, body,
    /// what a chat answer says).
    fn translate_whole(
        &self,
        h: &impl Host,
        t: &Target,
        body: &[u8],
    ) -> (u16, Vec<u8>, Option<crate::wire::facts::AnswerFacts>) {
        let api = provider::api(t.api);
        if self.status != 200 {
            let (status, out) = api.error(self.status, &t.error_type, body);
            return (status, out, None);
        }
        let answer = match t.embeddings {
            Some((encoding, estimate)) => match Self::embeddings_whole(h, t, body, encoding, estimate) {
                Ok(Ok((out, usage))) => Ok((out, usage, None)),
                Ok(Err((status, out))) => return (status, out, None),
                Err(e) => Err(e),
            },
            None => api.answer(body, &t.model, h.now_ms()),
        };
        // A translated Responses step: the unified answer becomes a Response object (the same
        // text and tool calls: the same facts).
        let answer = match (&t.responses, answer) {
            (Some(ResponsesStep::Translated(Some((echo, seed)))), Ok((out, usage, facts))) => {
                responses_in::response_from_chat(&out, echo, seed).map(|(r, _)| (r, usage, facts))
            }
            (_, Ok((out, usage, facts))) if t.messages == Some(MessagesStep::Translated) => {
                messages_in::response_from_openai(&out).map(|(m, _)| (m, usage, facts))
            }
            (_, a) => a,
        };
        match answer {
            Ok((out, usage, facts)) => {
                record_usage(h, usage);
                (200, out, facts)
            }
            Err(e) => {
                h.warn(&format!("route-select: {e}"));
                (502, invalid_response(), None)
            }
        }
    }
}

impl RouteAttempt {
    /// The other parts of an embeddings batch split for this attempt's provider, to send (once):
    /// the provider's cluster and each part's body, in order. Report each call with
    /// [`RouteAttempt::part_sent`], in the same order.
    pub fn take_parts(&mut self) -> Option<(String, Vec<Vec<u8>>)> {
        let split = self.target.as_mut()?.split.as_mut()?;
        if split.bodies.is_empty() {
            return None;
        }
        Some((split.cluster.own(), std::mem::take(&mut split.bodies)))
    }

    /// A part's call was made (its token), or the proxy refused to make it (`None`).
    pub fn part_sent(&mut self, token: Option<u32>) {
        if let Some(split) = self.target.as_mut().and_then(|t| t.split.as_mut()) {
            let answer = match token {
                Some(_) => None,
                None => Some(PartAnswer::Failed { status: 0, error_type: String::new(), body: Vec::new() }),
            };
            split.calls.push((token, answer));
        }
    }

    /// Whether some part's answer is still out.
    pub fn parts_pending(&self) -> bool {
        self.target.as_ref().and_then(|t| t.split.as_ref()).is_some_and(|s| s.calls.iter().any(|(_, a)| a.is_none()))
    }

    /// A part's answer came: read now (the vectors, or the failure). Returns whether it was the
    /// last one out (the attempt's request may go now).
    pub fn part_answered(&mut self, token: u32, answer: &HttpAnswer) -> bool {
        let Some(t) = self.target.as_mut() else { return false };
        let api = provider::api(t.api);
        let Some(split) = t.split.as_mut() else { return false };
        let Some((_, slot)) = split.calls.iter_mut().find(|(k, a)| *k == Some(token) && a.is_none()) else {
            return false;
        };
        let header = |name: &str| answer.headers.iter().find(|(k, _)| k.same_letters(name)).map(|(_, v)| v);
        let read = if answer.status == 200 { api.embeddings_vectors(&answer.body, &t.model).ok() } else { None };
        *slot = Some(match read {
            Some((vectors, in_body)) => {
                let in_header = header("x-amzn-bedrock-input-token-count").and_then(|n| n.trim().int_as());
                PartAnswer::Vectors(vectors, in_body.or(in_header))
            }
            None => PartAnswer::Failed {
                // A 200 that cannot be read fails the batch as an unreadable answer does.
                status: if answer.status == 200 { 502 } else { answer.status },
                error_type: header("x-amzn-errortype").cloned().unwrap_or_default(),
                body: if answer.status == 200 { invalid_response() } else { answer.body.clone() },
            },
        });
        !split.calls.iter().any(|(_, a)| a.is_none())
    }

    /// Whether this stage removes every credential header from the attempt's request (none is
    /// on the operator's allow-list).
    pub fn drops_credentials(&self) -> bool {
        !crate::auth::PROVIDER_AUTH_HEADERS
            .iter()
            .any(|n| headers::forwarded_to_provider(n, &self.cfg.forward_request_headers))
    }

    pub fn on_request_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        // Upstream filters edit the router's request headers in place, so what one attempt
        // changes is what the next attempt starts from. Everything an attempt depends on comes
        // from filter state (set downstream) and the host metadata, and every header it
        // depends on is set afresh here.
        let alias = h.property_string(&[headers::PROP_ALIAS]);
        // Only an allow-list of the caller's headers reaches a provider (headers::FORWARDED_REQUEST).
        // (Not content-type, set below where it is not already what every attempt sends, nor
        // content-length, set with the translated body.)
        let extra = &self.cfg.forward_request_headers;
        h.remove_request_headers_where(&|n| {
            !matches!(n, "content-type" | "content-length") && !headers::forwarded_to_provider(n, extra)
        });
        let provider = h.upstream_metadata(headers::METADATA_PROVIDER);
        let (Some(alias), Some(provider)) = (alias, provider) else {
            h.warn("route-select: upstream attempt without alias or provider metadata; passing it through");
            return Flow::Continue;
        };
        // Privacy zone: never to a region outside the caller's zone, fallback included.
        let zone = if self.cfg.zones.is_empty() { None } else { h.call_zone() };
        let region = h.upstream_metadata(headers::METADATA_REGION);
        if !self.cfg.region_allowed(zone.as_deref(), region.as_deref()) {
            let attempts = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
            let note = format!(
                "The next step, {provider} ({}), is outside privacy zone `{}`, so the call stops here.",
                region.as_deref().unwrap_or("unknown region"),
                zone.as_deref().unwrap_or("")
            );
            let (status, body) = chain_refusal(&alias, &attempts, Some(("no_eligible_provider_in_zone", note)));
            h.set_property(headers::PROP_REFUSAL, "route");
            h.send_response(status, &[("content-type", "application/json")], body.as_bytes());
            return Flow::Refused;
        }
        let now = h.now_ms();
        let step_model = self.cfg.step(&alias, &provider).map(|(s, _)| self.cfg.model_at(&s.model, now).0.own());
        self.start_record(h, &provider, region, step_model.as_deref());
        self.note_skipped(h, &alias, &provider);
        let Some((step, p)) = self.cfg.step(&alias, &provider) else {
            h.warn(&format!("route-select: alias {alias:?} has no step for provider {provider:?}; passing it through"));
            return Flow::Continue;
        };
        let (model, replaced, warning) = self.cfg.model_at(&step.model, now);
        if let Some(old) = replaced {
            // Past its sunset: the successor serves, with no caller change; the record says so.
            add_route_flag(h, &format!("deprecated_model_replaced:{old}->{model}"));
        }
        self.deprecation = warning
            .map(|d| format!("model {} is deprecated; sunset {}; successor {}", step.model, d.sunset, d.successor));
        let api = provider::api(p.api);
        let door = h.property_string(&[headers::PROP_DOOR]);
        let embeddings_call = door.as_deref() == Some("embeddings");
        let responses = (door.as_deref() == Some("responses")).then(|| match api.responses_path(p) {
            Some(_) => ResponsesStep::Native,
            None => ResponsesStep::Translated(None),
        });
        let messages = (door.as_deref() == Some("messages")).then(|| {
            if api.speaks_messages() {
                MessagesStep::Native
            } else {
                MessagesStep::Translated
            }
        });
        let path = match (&responses, embeddings_call) {
            (_, true) => api.embeddings_path(model, p),
            (Some(ResponsesStep::Native), _) => api.responses_path(p),
            _ => Some(api.path(model, p, false)),
        };
        let Some(path) = path else {
            h.set_property(headers::PROP_REFUSAL, "route");
            h.send_error(&provider::no_embeddings(), false, &[]);
            return Flow::Refused;
        };
        let cluster = p.cluster.clone().unwrap_or_else(|| format!("provider_{provider}"));
        let target = Target {
            provider,
            cluster,
            api: p.api,
            stream_path: if embeddings_call || matches!(responses, Some(ResponsesStep::Native)) {
                path.own()
            } else {
                api.path(model, p, true)
            },
            path,
            model: model.own(),
            max_tokens_default: p.max_tokens_default,
            error_type: String::new(),
            // Set with the body (see translate_request).
            embeddings: embeddings_call.then_some((embeddings::Encoding::Float, 0)),
            reported_tokens: None,
            answer_is_json: false,
            responses,
            messages,
            part_sizes: Vec::new(),
            split: None,
            output: if embeddings_call {
                None
            } else {
                h.property_string(&[headers::PROP_OUTPUT_FORMAT])
                    .and_then(|f| crate::wire::from_str::<Value>(&f).ok())
                    .and_then(|f| crate::guard::schema::OutputFormat::of_response_format(&f))
            },
        };
        h.set_request_header(":path", Some(&target.path));
        // Every provider API takes JSON, and the gateway writes the body each attempt sends.
        if h.request_header("content-type").as_deref() != Some("application/json") {
            h.set_request_header("content-type", Some("application/json"));
        }
        if let Some((name, value)) = api.version_header() {
            h.set_request_header(name, Some(value));
        }
        self.target = Some(target);
        if eos {
            return Flow::Continue;
        }
        // content-length is set again once the body is translated.
        Flow::Pause
    }

    pub fn on_request_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        let Some(t) = &mut self.target else { return Flow::Continue };
        if !eos {
            return Flow::Pause;
        }
        let body = h.request_body(size);
        match Self::translate_request(h, t, &body, self.sends_parts) {
            Ok(out) => {
                h.set_request_header("content-length", Some(&headers::decimal(out.len() as u64)));
                h.replace_request_body(size, &out);
                Flow::Continue
            }
            Err(e) => {
                h.set_property(headers::PROP_REFUSAL, "route");
                h.send_error(&e, messages_door(h), &[]);
                Flow::Refused
            }
        }
    }

    pub fn on_response_headers(&mut self, h: &impl Host, eos: bool) -> Flow {
        // All of the provider's headers in one read: what this attempt needs is taken from
        // them, and only an allow-list goes on to the caller (headers::provider_response_header).
        let (status, ct, error_type, reported_tokens, provider_request_id, dropped) = h.with_response_headers(|all| {
            let get = |name: &str| all.get(name);
            let mut provider_request_id = None;
            let mut dropped = Vec::new();
            for (name, value) in all.iter() {
                match headers::provider_response_header(name) {
                    headers::ResponseHeader::Keep | headers::ResponseHeader::Envoys => continue,
                    headers::ResponseHeader::ProviderRequestId => provider_request_id = Some(value.own()),
                    headers::ResponseHeader::Drop => {}
                }
                dropped.push(name.own());
            }
            (
                get(":status").and_then(|s| s.int_as()).unwrap_or(0),
                get("content-type").unwrap_or_default().own(),
                get("x-amzn-errortype").unwrap_or_default().own(),
                get("x-amzn-bedrock-input-token-count").and_then(|n| n.trim().int_as()),
                provider_request_id,
                dropped,
            )
        });
        self.status = status;
        for name in &dropped {
            h.set_response_header(name, None);
        }
        // Said by the credential stage, for this attempt's record only.
        let credential = h.property_string(&[headers::PROP_CREDENTIAL]);
        if credential.is_some() {
            h.set_property(headers::PROP_CREDENTIAL, "");
        }
        if let Some(id) = &provider_request_id {
            h.set_response_header(headers::PROVIDER_REQUEST_ID, Some(id));
        }
        self.finish_record(h, self.status, credential);
        let Some(t) = &mut self.target else { return Flow::Continue };
        h.set_response_header(headers::PROVIDER, Some(&t.provider));
        h.set_response_header(headers::MODEL, Some(&t.model));
        if let Some(w) = &self.deprecation {
            h.set_response_header(headers::DEPRECATION, Some(w));
        }
        if eos {
            return Flow::Continue;
        }
        let api = provider::api(t.api);
        // Streams are checked as the caller gets them: unified chunks, a Responses door's
        // events, or a Messages door's.
        let watch = |t: &Target| {
            let kind = match (&t.responses, t.messages) {
                (Some(_), _) => WatchKind::Responses,
                (None, Some(_)) => WatchKind::Messages,
                (None, None) => WatchKind::Chat,
            };
            t.output.clone().map(|format| Box::new(OutputWatch::new(format, kind)))
        };
        let sse = ct.starts_with("text/event-stream");
        if t.messages == Some(MessagesStep::Native) && self.status == 200 {
            // A Messages answer to a Messages call: passed as the provider sent it, a whole one
            // read once (usage, facts, the output check) before Envoy decides on a retry.
            if !sse {
                self.response = ResponseMode::Check;
                return Flow::Pause;
            }
            if let Some(w) = watch(t) {
                h.set_response_header("content-length", None);
                self.response = ResponseMode::Checked(None, w);
            }
            return Flow::Continue;
        }
        if api.answers_unified() {
            // Passed through untouched, but a success is read once before Envoy decides on a
            // retry: a 200 whose body cannot be read becomes a 502, which moves the call on. A
            // Messages call's success is translated to Messages as it passes.
            if self.status == 200 && ct.starts_with("application/json") {
                self.response = ResponseMode::Check;
                return Flow::Pause;
            }
            let to_messages = (t.messages.is_some() && self.status == 200 && sse)
                .then(|| Box::new(messages_in::StreamToMessages::default()) as Box<dyn sse::Translate>);
            if self.status == 200 && sse && (to_messages.is_some() || t.output.is_some()) {
                h.set_response_header("content-length", None);
                self.response = match (to_messages, watch(t)) {
                    (tr, Some(w)) => ResponseMode::Checked(tr, w),
                    (Some(tr), None) => ResponseMode::Stream(tr),
                    (None, None) => ResponseMode::Pass,
                };
            }
            return Flow::Continue;
        }
        t.error_type = error_type;
        t.reported_tokens = reported_tokens;
        t.answer_is_json = ct == "application/json";
        let created = h.now_ms() / 1000;
        let stream =
            if self.status == 200 { api.stream(&ct, &t.model, provider_request_id.as_deref(), created) } else { None };
        // A translated Responses or Messages step: the unified chunks become the door's events.
        let stream = match (stream, &t.responses, t.messages) {
            (Some(inner), Some(ResponsesStep::Translated(Some((echo, seed)))), _) => {
                let outer = Box::new(responses_in::StreamToResponses::new(echo.clone(), seed, created));
                Some(Box::new(sse::Chained { inner, outer }) as Box<dyn sse::Translate>)
            }
            (Some(inner), None, Some(MessagesStep::Translated)) => {
                let outer = Box::new(messages_in::StreamToMessages::default());
                Some(Box::new(sse::Chained { inner, outer }) as Box<dyn sse::Translate>)
            }
            (s, _, _) => s,
        };
        match stream {
            Some(translator) => {
                h.set_response_header("content-length", None);
                if !ct.starts_with("text/event-stream") {
                    h.set_response_header("content-type", Some("text/event-stream"));
                }
                self.response = match watch(t) {
                    Some(w) => ResponseMode::Checked(Some(translator), w),
                    None => ResponseMode::Stream(translator),
                };
                Flow::Continue
            }
            None => {
                // Held whole, and its content-length set when it is rewritten.
                self.response = ResponseMode::Buffer;
                Flow::Pause
            }
        }
    }

    pub fn on_response_body(&mut self, h: &impl Host, size: usize, eos: bool) -> Flow {
        match &mut self.response {
            ResponseMode::Pass => Flow::Continue,
            ResponseMode::Checked(tr, watch) => {
                let body = h.response_body(size);
                let mut out = match tr {
                    Some(tr) => {
                        let mut out = tr.push(&body);
                        if eos {
                            out.extend(tr.finish());
                        }
                        out
                    }
                    None => body,
                };
                // (The listener reads a stream's facts as it passes, the check's end included.)
                watch.watch(&mut out, eos);
                h.replace_response_body(size, &out);
                Flow::Continue
            }
            ResponseMode::Stream(tr) => {
                let mut out = tr.push(&h.response_body(size));
                if eos {
                    out.extend(tr.finish());
                }
                h.replace_response_body(size, &out);
                Flow::Continue
            }
            ResponseMode::Check => {
                if !eos {
                    return Flow::Pause;
                }
                // Read once, here: the answer's usage and facts go to the listener with the
                // attempt (an answer of an unexpected shape: its usage alone).
                let body = h.response_body(size);
                let messages = self.target.as_ref().and_then(|t| t.messages);
                let read = if messages == Some(MessagesStep::Native) {
                    provider::anthropic::read_answer(&body).map(|(u, f)| (Some(u), Some(f))).map_err(|_| ())
                } else {
                    crate::wire::facts::read_whole(&body)
                        .map(|(u, f)| (u, Some(f)))
                        .or_else(|_| crate::wire::usage::from_openai_body(&body).map(|u| (u, None)))
                        .map_err(|_| ())
                };
                // A unified answer to a Messages call: translated for it.
                let read = match (read, messages) {
                    (Ok((usage, facts)), Some(MessagesStep::Translated)) => messages_in::response_from_openai(&body)
                        .map(|(out, _)| (usage, facts, Some(out)))
                        .map_err(|_| ()),
                    (read, _) => read.map(|(u, f)| (u, f, None)),
                };
                match read {
                    Ok((usage, facts, translated)) => {
                        let format = self.target.as_ref().and_then(|t| t.output.as_ref());
                        let answer = translated.as_deref().unwrap_or(&body);
                        match format.and_then(|f| check_output(f, answer).err()) {
                            Some(p) => self.fail_output(h, size, &p),
                            None => {
                                record_usage(h, usage);
                                if let Some(mut f) = facts {
                                    f.json_valid = format.map(|_| true);
                                    record_facts(h, &f);
                                }
                                if let Some(out) = translated {
                                    h.set_response_header("content-length", Some(&headers::decimal(out.len() as u64)));
                                    h.replace_response_body(size, &out);
                                }
                            }
                        }
                    }
                    Err(_) => {
                        let err = invalid_response();
                        h.set_response_header(":status", Some("502"));
                        h.set_response_header("content-length", Some(&crate::headers::decimal(err.len() as u64)));
                        h.replace_response_body(size, &err);
                        self.mark_invalid(h);
                    }
                }
                Flow::Continue
            }
            ResponseMode::Buffer => {
                if !eos {
                    return Flow::Pause;
                }
                let body = h.response_body(size);
                let Some(t) = &self.target else { return Flow::Continue };
                let (status, out, facts) = self.translate_whole(h, t, &body);
                let answer_is_json = t.answer_is_json;
                let problem = match (&t.output, status) {
                    (Some(f), 200) => check_output(f, &out).err(),
                    _ => None,
                };
                if let Some(p) = problem {
                    self.fail_output(h, size, &p);
                    return Flow::Continue;
                }
                if let (200, Some(mut f)) = (status, facts) {
                    f.json_valid = t.output.as_ref().map(|_| true);
                    record_facts(h, &f);
                }
                if status != self.status {
                    h.set_response_header(":status", Some(&crate::headers::decimal(u64::from(status))));
                }
                let part_failed = t
                    .split
                    .as_ref()
                    .is_some_and(|s| s.calls.iter().any(|(_, a)| matches!(a, Some(PartAnswer::Failed { .. }) | None)));
                if self.status == 200 && part_failed {
                    // The attempt is on record with the status its batch failed with.
                    self.mark_status(h, status);
                } else if self.status == 200 && status == 502 {
                    self.mark_invalid(h);
                }
                if !answer_is_json {
                    h.set_response_header("content-type", Some("application/json"));
                }
                h.set_response_header("content-length", Some(&headers::decimal(out.len() as u64)));
                h.replace_response_body(size, &out);
                Flow::Continue
            }
        }
    }
}

/// Whether an answer (a chat completion, or a Response object) is what `format` asks: `Err`
/// says what is not. An answer of tool calls only has no text to check.
fn check_output(format: &crate::guard::schema::OutputFormat, answer: &[u8]) -> Result<(), String> {
    match crate::guard::schema::answer_text(answer)? {
        Some(text) => format.check(&text),
        None => Ok(()),
    }
}

/// The 502 an attempt answers with when its answer is not the JSON the request asked for
/// (Envoy then retries it at the chain's next provider; the last one's reaches the caller).
fn invalid_output(problem: &str) -> Vec<u8> {
    GatewayError::new(
        502,
        "server_error",
        "invalid_model_output",
        format!("The model's answer is not the JSON the request asked for: {problem}."),
    )
    .body()
    .into_bytes()
}

/// The 502 an attempt answers with when its provider's success could not be read (Envoy then
/// retries it at the chain's next provider).
fn invalid_response() -> Vec<u8> {
    GatewayError::new(
        502,
        "server_error",
        "upstream_invalid_response",
        "The provider sent a response the gateway could not read.",
    )
    .body()
    .into_bytes()
}

crate::callbacks!(Select: on_request_headers, on_request_body, on_response_headers, on_response_body);
crate::callbacks!(RouteAttempt: on_request_headers, on_request_body, on_response_headers, on_response_body);

#[cfg(test)]
mod tests;
