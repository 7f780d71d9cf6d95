//! The audit stage: it watches the answer on its way to the caller (usage, time to first byte,
//! how it ended), settles what the call costs by the one rule of `quota::Billing`, and at the
//! end writes the audit record and the metrics.

use super::{parse_attempts, upstream_failed, AnswerRecord, AuditRecord, Outcome, Tokens, RECORD_VERSION};
use crate::audit::price::{format_usd, PriceBook, PriceBookConfig};
use crate::error::{ConfigError, GatewayError};
use crate::headers;
use crate::host::{Flow, Host};
use crate::quota::{self, Billing, CallEnd, Settled};
use crate::text::Text;
use crate::wire::facts::{AnswerFacts, Finish};
use crate::wire::usage::{self, StreamScanner, Usage};

/// The largest non-streamed answer held back to put its cost in the response headers; a larger
/// one passes through and its cost is in the audit record only.
pub const MAX_HELD_BODY: usize = 4 << 20;

/// The filter configuration of `audit_emit`.
pub struct AuditConfig {
    /// Required for audit-emit alone; in the `gateway` filter, its one `price_book` instead.
    pub price_book: Option<PriceBookConfig>,
    pub metrics: MetricsConfig,
    /// Phrases that mark an answer as a refusal when its text opens with one (within its first
    /// 160 characters; case and the apostrophe's form ignored). Absent: [`REFUSAL_PHRASES`].
    pub refusal_phrases: Option<Vec<String>>,
}

/// The refusal phrases used when the configuration names none.
pub const REFUSAL_PHRASES: &[&str] = &[
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm unable to help",
    "i am unable to help",
    "i won't be able to help",
    "i must decline",
];

#[derive(Default)]
pub struct MetricsConfig {
    /// Tenants that get their own `tenant` label; all others are counted as `other`, so label
    /// cardinality stays bounded.
    pub tenant_labels: Vec<String>,
}

/// The compiled audit configuration.
pub struct Audit {
    pub prices: std::rc::Rc<PriceBook>,
    /// (A tree: a lookup is a few comparisons of short names, no hashing.)
    pub tenant_labels: crate::config::NameMap<()>,
    /// Lower-case, with a plain apostrophe.
    pub refusal_phrases: Vec<String>,
    /// The bytes a refusal phrase starts with (see [`says_refusal`]).
    refusal_starts: [bool; 256],
}

/// Lower case, curly apostrophes as plain ones, final sigmas as others: how refusal phrases are
/// compared.
fn fold(s: &str) -> String {
    if s.is_ascii() {
        return s.lower();
    }
    // One pass: lowered, then the apostrophe and the sigma made one character each.
    s.chars()
        .flat_map(crate::case::lowercase)
        .map(|c| match c {
            '\u{2019}' => '\'',
            'ς' => 'σ',
            c => c,
        })
        .collect()
}

/// Whether `head` holds one of the refusal phrases, compared as [`fold`] compares them. An
/// ASCII head (curly apostrophes aside), as answers mostly are, is compared byte by byte,
/// folding as it goes, and only where a phrase could start: no folded copy of it and no
/// substring search per phrase (they were 11 per call). Any other head is folded whole.
fn says_refusal(head: &str, audit: &Audit) -> bool {
    let phrases = &audit.refusal_phrases;
    if !(head.is_ascii() || head.chars().all(|c| c.is_ascii() || c == '\u{2019}')) {
        let head = fold(head);
        return phrases.iter().any(|p| head.has(p));
    }
    let b = head.as_bytes();
    (0..b.len()).any(|i| {
        let first = if b[i] == 0xE2 { b'\'' } else { b[i].to_ascii_lowercase() };
        audit.refusal_starts[usize::from(first)] && phrases.iter().any(|p| folded_at(&b[i..], p.as_bytes()))
    })
}

/// Whether `text` (ASCII but for curly apostrophes) starts with the folded `phrase`.
fn folded_at(mut text: &[u8], phrase: &[u8]) -> bool {
    const CURLY: &[u8] = "\u{2019}".as_bytes();
    for &c in phrase {
        match text.first() {
            Some(&x) if x.to_ascii_lowercase() == c => text = &text[1..],
            _ if c == b'\'' && text.starts_with(CURLY) => text = &text[CURLY.len()..],
            _ => return false,
        }
    }
    true
}

impl TryFrom<&AuditConfig> for Audit {
    type Error = ConfigError;

    fn try_from(cfg: &AuditConfig) -> Result<Audit, ConfigError> {
        Audit::compile_with(cfg, None)
    }
}

impl Audit {
    pub fn compile(cfg: &AuditConfig) -> Result<Audit, ConfigError> {
        Audit::try_from(cfg)
    }

    /// Compiles with `shared`, the gateway's one price book, when the configuration has none
    /// of its own.
    pub fn compile_with(cfg: &AuditConfig, shared: Option<std::rc::Rc<PriceBook>>) -> Result<Audit, ConfigError> {
        let prices = match (&cfg.price_book, shared) {
            (Some(b), _) => std::rc::Rc::new(PriceBook::compile(b).map_err(|e| e.at("audit-emit", "price_book"))?),
            (None, Some(book)) => book,
            (None, None) => return Err(ConfigError::new("audit-emit", "price_book", "is required")),
        };
        let refusal_phrases: Vec<String> = match &cfg.refusal_phrases {
            Some(list) => list.iter().map(|p| fold(p)).collect(),
            None => REFUSAL_PHRASES.iter().map(|p| p.own()).collect(),
        };
        if let Some(i) = refusal_phrases.iter().position(|p| p.trim().is_empty()) {
            return Err(ConfigError::new("audit-emit", format!("refusal_phrases[{i}]"), "must not be empty"));
        }
        let mut refusal_starts = [false; 256];
        for p in &refusal_phrases {
            if let Some(&b) = p.as_bytes().first() {
                refusal_starts[usize::from(b)] = true;
            }
        }
        Ok(Audit {
            prices,
            tenant_labels: cfg.metrics.tenant_labels.iter().map(|t| (t.own(), ())).collect(),
            refusal_phrases,
            refusal_starts,
        })
    }
}

/// The front door a call came in by: as the route stage said, else from its path (a call refused
/// before the route stage ran).
fn door_of(h: &impl Host) -> Option<String> {
    if let Some(d) = h.property_string(&[headers::PROP_DOOR]) {
        return Some(d);
    }
    let path = h.request_header(":path").unwrap_or_default();
    let door = match path.before(b'?') {
        "/v1/chat/completions" => "chat",
        crate::wire::messages_in::PATH => "messages",
        crate::wire::responses_in::PATH => "responses",
        crate::wire::embeddings::PATH => "embeddings",
        p if crate::route::models::is_models_path(p) => "models",
        _ => return None,
    };
    Some(door.own())
}

/// A label value safe inside an Envoy stat name (dots separate tags there).
pub fn label(v: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    // (Bytes: a name that is not all ASCII is rewritten character by character below.)
    if v.bytes().all(|b| ok(char::from(b))) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(v.chars().map(|c| if ok(c) { c } else { '_' }).collect())
}

/// Records one call's metrics (see README, "Metrics"). Each name is given in parts (the host
/// finds a known metric's id without writing its name), and only for a metric that counts
/// something.
pub fn record_metrics(h: &impl Host, audit: &Audit, r: &AuditRecord, cost_pico: Option<u128>) {
    let add = |parts: &[&str], by: u64| {
        if by > 0 {
            h.counter_add_parts(parts, by);
        }
    };
    let nano = |pico: u128| u64::try_from((pico + 500) / 1000).unwrap_or(u64::MAX);
    let p = label(r.provider.as_deref().unwrap_or("none"));
    let m = label(r.model.as_deref().unwrap_or("none"));
    let (p, m) = (p.as_ref(), m.as_ref());
    let outcome = r.outcome.as_str();
    add(&["aigw_requests_total.provider.", p, ".model.", m, ".outcome.", outcome], 1);
    if let Some(t) = &r.tokens {
        for (kind, n) in
            [("input", t.input), ("cached_input", t.cached_input), ("output", t.output), ("reasoning", t.reasoning)]
        {
            add(&["aigw_tokens_total.provider.", p, ".model.", m, ".token_type.", kind], n);
        }
    }
    if let Some(c) = cost_pico {
        // Nano-dollars, rounded half up: a u64 counter then holds 18 billion USD.
        add(&["aigw_cost_nano_usd_total.provider.", p, ".model.", m], nano(c));
    }
    if r.outcome != Outcome::RefusedAuth && r.outcome != Outcome::RefusedQuota {
        h.histogram_record_parts(&["gen_ai_client_operation_duration_ms.provider.", p, ".model.", m], r.latency_ms);
    }
    if let Some(t) = r.ttft_ms {
        h.histogram_record_parts(&["gen_ai_server_time_to_first_token_ms.provider.", p, ".model.", m], t);
    }
    if r.attempts.len() > 1 {
        add(&["aigw_fallbacks_total.alias.", &label(r.alias.as_deref().unwrap_or("none"))], 1);
    }
    if let Some(saved) = r.cost_saved_usd.as_deref().and_then(crate::audit::price::parse_usd) {
        add(&["aigw_cache_saved_nano_usd_total.alias.", &label(r.alias.as_deref().unwrap_or("none"))], nano(saved));
    }
    for a in &r.attempts {
        // Attempts that reached the provider (or failed trying): not one cancelled while it
        // waited (the caller left), nor one the gateway's own provider bucket stopped.
        let cancelled = a.error_class.is_none() && a.status.is_none();
        let ours = a.error_class == Some(crate::audit::ErrorClass::ProviderLimit);
        let (ap, am) = (label(&a.provider), label(a.model.as_deref().unwrap_or("none")));
        if !cancelled && !ours {
            add(&["aigw_provider_attempts_total.provider.", &ap, ".model.", &am], 1);
        }
        if let Some(class) = a.error_class {
            add(&["aigw_provider_errors_total.provider.", &ap, ".model.", &am, ".error_class.", class.as_str()], 1);
        }
    }
    if let Some(a) = &r.answer {
        let finish = a.finish_reason.map_or("none", |f| f.as_str());
        add(&["aigw_answers_total.provider.", p, ".model.", m, ".finish.", finish], 1);
        add(&["aigw_answer_refusals_total.provider.", p, ".model.", m], u64::from(a.refusal));
        add(&["aigw_answer_tool_calls_total.provider.", p, ".model.", m], u64::from(a.tool_calls > 0));
        if let Some(v) = a.json_valid {
            add(
                &["aigw_json_answers_total.provider.", p, ".model.", m, ".valid.", if v { "true" } else { "false" }],
                1,
            );
        }
    }
    for a in r.attempts.iter().filter(|a| a.error_class == Some(crate::audit::ErrorClass::InvalidOutput)) {
        // An answer that was not the JSON asked for, retried at the next step (or refused).
        let (ap, am) = (label(&a.provider), label(a.model.as_deref().unwrap_or("none")));
        add(&["aigw_json_answers_total.provider.", &ap, ".model.", &am, ".valid.false"], 1);
    }
    if r.shadow_of.is_some() {
        let alias = label(r.alias.as_deref().unwrap_or("none"));
        add(&["aigw_shadow_legs_total.alias.", &alias, ".outcome.", outcome], 1);
        if r.outcome == Outcome::RefusedQuota {
            // Over the shadow budget (or another of the shadow tenant's limits): not sent.
            add(&["aigw_shadow_skipped_total.alias.", &alias], 1);
        }
    }
    if let (Outcome::RefusedQuota, Some(code)) = (r.outcome, &r.error_code) {
        add(&["aigw_quota_refusals_total.code.", &label(code)], 1);
    }
    if let Some(t) = &r.tenant {
        let t = if audit.tenant_labels.contains_key(t) { label(t) } else { "other".into() };
        add(&["aigw_tenant_requests_total.tenant.", &t, ".outcome.", outcome], 1);
        if let Some(tk) = &r.tokens {
            add(&["aigw_tenant_tokens_total.tenant.", &t, ".token_type.input"], tk.input);
            add(&["aigw_tenant_tokens_total.tenant.", &t, ".token_type.output"], tk.output);
        }
        if let Some(c) = cost_pico {
            add(&["aigw_tenant_cost_nano_usd_total.tenant.", &t], nano(c));
        }
    }
}

enum Watched {
    None,
    /// A non-streamed JSON answer, held until complete.
    Held,
    Sse(Box<StreamScanner>),
}

/// The usage a stage kept for the audit record (`PROP_USAGE`).
fn read_usage(h: &impl Host) -> Option<Usage> {
    h.property(&[headers::PROP_USAGE]).and_then(|u| Usage::decode(&u))
}

/// One call, as the audit stage sees it.
pub struct AuditCall {
    start_ms: u64,
    request_id: String,
    status: Option<u16>,
    provider: Option<String>,
    model: Option<String>,
    body: Watched,
    usage: Option<Usage>,
    ttft_ms: Option<u64>,
    completed: bool,
    /// The provider's success body was not JSON (replaced by a 502).
    invalid_body: bool,
}

impl AuditCall {
    pub fn new(h: &impl Host) -> AuditCall {
        AuditCall {
            start_ms: h.now_ms(),
            request_id: String::new(),
            status: None,
            provider: None,
            model: None,
            body: Watched::None,
            usage: None,
            ttft_ms: None,
            completed: false,
            invalid_body: false,
        }
    }

    fn cost_pico(&self, audit: &Audit) -> Option<u128> {
        audit.prices.cost_pico(self.model.as_deref()?, self.usage.as_ref()?)
    }

    pub fn on_request_headers(&mut self, h: &impl Host) {
        self.request_id = h.request_header("x-request-id").unwrap_or_default();
    }

    pub fn on_response_headers(&mut self, h: &impl Host, audit: &Audit, eos: bool) -> Flow {
        self.status = h.response_header(":status").and_then(|s| s.int_as());
        self.provider = h.response_header(headers::PROVIDER);
        self.model = h.response_header(headers::MODEL);
        if !self.request_id.is_empty() {
            h.set_response_header(headers::REQUEST_ID, Some(&self.request_id));
        }
        if eos {
            self.completed = true;
            return Flow::Continue;
        }
        let ct = h.response_header("content-type").unwrap_or_default();
        if ct.starts_with("text/event-stream") {
            self.body = Watched::Sse(Box::default());
            Flow::Continue
        } else if ct.starts_with("application/json") {
            // The attempt that passed this success on read its usage already: the answer need
            // not be held and read again.
            if let Some(u) = self.status.filter(|s| (200..300).contains(s)).and_then(|_| read_usage(h)) {
                self.usage = Some(u);
                self.usage_headers(h, audit);
                return Flow::Continue;
            }
            self.body = Watched::Held;
            Flow::Pause
        } else {
            Flow::Continue
        }
    }

    /// What the answer says (README, "The audit record"): from the stream as it passed, or from
    /// what the attempt that passed a whole answer on saw of it.
    fn answer_record(&self, h: &impl Host, audit: &Audit) -> Option<AnswerRecord> {
        let attempt: Option<AnswerFacts> = h.property(&[headers::PROP_ANSWER]).and_then(|b| AnswerFacts::decode(&b));
        let facts = match &self.body {
            Watched::Sse(s) => {
                // Asked for JSON: valid unless the stream ended with the gateway's error saying
                // it was not.
                let asked = h.property_string(&[headers::PROP_OUTPUT_FORMAT]).is_some_and(|f| !f.is_empty());
                let mut f = s.facts.clone();
                f.json_valid = asked.then_some(f.json_valid != Some(false));
                f
            }
            _ => attempt?,
        };
        let phrase = says_refusal(&facts.head, audit);
        Some(AnswerRecord {
            finish_reason: facts.finish,
            tool_calls: facts.tool_calls,
            refusal: facts.refused || facts.finish == Some(Finish::ContentFilter) || phrase,
            json_valid: facts.json_valid,
            output_chars: facts.chars,
            output_digest: facts.digest,
        })
    }

    /// The call's tokens and cost, for the caller, in the response headers.
    fn usage_headers(&self, h: &impl Host, audit: &Audit) {
        if let Some(u) = self.usage {
            h.set_response_header("x-aigw-tokens-input", Some(&headers::decimal(u.input)));
            h.set_response_header("x-aigw-tokens-output", Some(&headers::decimal(u.output)));
            if let Some(c) = self.cost_pico(audit) {
                h.set_response_header("x-aigw-cost-usd", Some(&format_usd(c)));
            }
        }
    }

    pub fn on_response_body(&mut self, h: &impl Host, audit: &Audit, size: usize, eos: bool) -> Flow {
        if eos {
            self.completed = true;
        }
        match &mut self.body {
            Watched::None => Flow::Continue,
            Watched::Sse(scanner) => {
                if self.ttft_ms.is_none() && size > 0 {
                    self.ttft_ms = Some(h.now_ms().saturating_sub(self.start_ms));
                }
                scanner.push(&h.response_body(usize::MAX));
                if eos {
                    self.usage = scanner.usage;
                }
                Flow::Continue
            }
            Watched::Held if !eos => {
                if size > MAX_HELD_BODY {
                    // Too large to hold: let it through; the usage is then unknown.
                    self.body = Watched::None;
                    return Flow::Continue;
                }
                Flow::Pause
            }
            Watched::Held => {
                let parsed = usage::from_openai_body(&h.response_body(usize::MAX));
                if parsed.is_err() && self.status.is_some_and(|s| (200..300).contains(&s)) {
                    // A provider's success that is not JSON: the caller's SDK would fail to parse
                    // it; answer with a clear error instead.
                    let body = GatewayError::new(
                        502,
                        "server_error",
                        "upstream_invalid_response",
                        "The provider answered with a body that is not valid JSON.",
                    )
                    .body();
                    h.set_response_header(":status", Some("502"));
                    h.set_response_header("content-length", Some(&crate::headers::decimal(body.len() as u64)));
                    h.replace_response_body(usize::MAX, body.as_bytes());
                    self.status = Some(502);
                    self.invalid_body = true;
                    return Flow::Continue;
                }
                // An answer translated for the Messages door carries usage in Anthropic's format;
                // route-select kept it in OpenAI's meaning.
                self.usage = parsed.ok().flatten().or_else(|| read_usage(h));
                self.usage_headers(h, audit);
                Flow::Continue
            }
        }
    }

    /// The end of the call: settles its cost (handed to quota in filter state), writes the
    /// audit record to filter state (the access log prints it) and records the metrics.
    pub fn on_log(&mut self, h: &impl Host, audit: &Audit) -> AuditRecord {
        let prop = |name: &str| h.property_string(&[name]);
        let refusal = prop(headers::PROP_REFUSAL);
        // A stream whose own end marker went through is whole, even when the body's end never
        // came: the caller may close the call there (the OpenAI SDK does at `[DONE]`).
        let whole = self.completed || matches!(&self.body, Watched::Sse(s) if s.saw_end && !s.saw_error);
        let (stream, stream_error, stream_end) = match &self.body {
            Watched::Sse(s) => {
                if self.usage.is_none() {
                    self.usage = s.usage;
                }
                let error = s.saw_error || (self.completed && !s.saw_end);
                (true, error, Some((s.content_events, s.saw_end && !error)))
            }
            _ => (false, false, None),
        };
        let mut attempts = parse_attempts(h.property(&[headers::PROP_ATTEMPTS]).as_deref());
        // The last attempt got no answer: was it cut by a timer?
        h.close_unanswered(&mut attempts);
        // The start times served that; the record does not carry them.
        for a in &mut attempts {
            a.started_ms = 0;
        }
        // Cut short: by the provider's side (a reset, a timeout), or by the caller leaving?
        let cut_upstream =
            !whole && h.property_string(&["response", "code_details"]).is_some_and(|d| upstream_failed(&d));
        let outcome =
            Outcome::classify(refusal.as_deref(), self.status, whole, stream_error, !attempts.is_empty(), cut_upstream);
        if outcome == Outcome::ClientAborted {
            // An attempt still waiting when the caller left did not fail: it was cancelled.
            for a in attempts.iter_mut().filter(|a| a.status.is_none()) {
                a.error_class = None;
            }
        }
        if self.provider.is_none() {
            if let Some(last) = attempts.last() {
                self.provider = Some(last.provider.own());
                self.model = last.model.clone();
            }
        }
        if self.usage.is_none() {
            // A stream whose usage chunk was taken out before it reached us (route-select).
            self.usage = read_usage(h);
        }
        // The cache's word: an answer from it used and cost nothing, and saved what its
        // original call cost.
        let cache_word = prop(headers::PROP_CACHE);
        let (cache_status, cache_meta) = match cache_word.as_deref().map(crate::cache::stage::read_status) {
            Some((status, meta)) => (status.own(), meta),
            None => ("none".own(), None),
        };
        let from_cache = matches!(cache_status.as_str(), "hit" | "semantic_hit" | "shared_hit" | "stale");
        let mut cost_saved = None;
        if from_cache {
            let meta = cache_meta.unwrap_or_default();
            cost_saved = meta.model.as_deref().zip(meta.usage.as_ref()).and_then(|(m, u)| audit.prices.cost_pico(m, u));
            self.provider = None;
            self.model = meta.model;
        }
        // A call the gateway answered itself (a model list, a cached answer) used and cost
        // nothing.
        let answered = prop(headers::PROP_ANSWERED).is_some() || from_cache;
        if answered {
            self.usage = Some(Usage::default());
        }
        let mut flags = Vec::new();
        if outcome == Outcome::Ok && self.usage.is_none() {
            flags.push("usage_missing".own());
        }
        // What the call costs, by the one rule quota's budgets use too (quota::Billing); the
        // figure is handed to quota, so the audit record and the budget agree.
        let billing = Billing::of(&CallEnd {
            usage: self.usage,
            status: self.status,
            unreadable: self.invalid_body,
            stream: stream_end,
            attempted: !attempts.is_empty(),
        });
        let mut estimated = false;
        if self.usage.is_none() {
            // No usage reported: what the rule charges, from the up-front estimate.
            let estimate = prop(headers::PROP_QUOTA_ESTIMATE).and_then(|e| quota::decode_estimate(&e));
            if let Some((u, est)) = estimate.as_ref().and_then(|e| billing.charged(e)) {
                self.usage = Some(u);
                estimated = est;
                flags.push("usage_estimated".own());
            }
        }
        let cost = if answered { Some(0) } else { self.cost_pico(audit) };
        if self.usage.is_some() && cost.is_none() {
            flags.push("unpriced_model".own());
        }
        h.set_property(headers::PROP_SETTLED, &Settled { usage: self.usage, estimated, cost_pico: cost }.encode());
        if self.invalid_body {
            flags.push("upstream_invalid_response".own());
        }
        if let Some(skipped) = prop(headers::PROP_SKIPPED) {
            flags.extend(skipped.parts(b',').filter(|p| !p.is_empty()).map(|p| format!("skipped_unhealthy:{p}")));
        }
        for p in [headers::PROP_QUOTA_FLAGS, headers::PROP_ROUTE_FLAGS] {
            if let Some(q) = prop(p) {
                flags.extend(q.parts(b',').filter(|f| !f.is_empty()).map(str::to_string));
            }
        }
        // An answer reached the caller (a stream that ended in an error after content too).
        let answer = if self.status == Some(200) && !answered && !attempts.is_empty() {
            self.answer_record(h, audit)
        } else {
            None
        };
        let end = h.now_ms();
        let id = h.call_identity().map(std::rc::Rc::unwrap_or_clone).unwrap_or_default();
        let some = |s: String| if s.is_empty() { None } else { Some(s) };
        let record = AuditRecord {
            version: RECORD_VERSION,
            request_id: std::mem::take(&mut self.request_id),
            start_time_ms: self.start_ms,
            end_time_ms: end,
            tenant: some(id.tenant),
            feature: id.feature,
            agent: id.agent,
            task: id.task,
            shadow_of: id.shadow_of,
            key_id: some(id.key_id),
            key_fingerprint: some(id.key_fingerprint),
            door: door_of(h),
            route: prop(headers::PROP_ROUTE),
            slice: prop(headers::PROP_SLICE),
            alias: prop(headers::PROP_ALIAS),
            // An embeddings call is of the `embeddings` class, whatever its key says.
            workload_class: if prop(headers::PROP_DOOR).as_deref() == Some("embeddings") {
                Some(crate::auth::keys::WorkloadClass::Embeddings.as_str().own())
            } else {
                id.workload_class.map(|w| w.as_str().own())
            },
            privacy_zone: id.zone,
            provider: self.provider.take(),
            model: self.model.take(),
            attempts,
            status: self.status,
            outcome,
            error_code: prop(headers::PROP_ERROR_CODE),
            stream,
            tokens: self.usage.map(Tokens::from),
            cost_usd: cost.map(format_usd),
            price_book_version: audit.prices.version.own(),
            latency_ms: end.saturating_sub(self.start_ms),
            ttft_ms: self.ttft_ms,
            cache_status,
            cost_saved_usd: cost_saved.map(format_usd),
            cache_semantic: prop(headers::PROP_CACHE_SEMANTIC).and_then(|n| crate::wire::from_str(&n).ok()),
            compliance_flags: prop(headers::PROP_COMPLIANCE).map(|c| c.list()).unwrap_or_default(),
            flags,
            answer,
        };
        record_metrics(h, audit, &record, cost);
        // (Room for a typical record at once: a growing buffer would move it five times.)
        let mut line = Vec::with_capacity(2048);
        crate::wire::write::WriteJson::write_json(&record, &mut line);
        h.set_property_bytes(headers::PROP_AUDIT, &line);
        record
    }
}

// Read by hand (`crate::config`), not derived: see its module comment.

impl crate::config::FromConfig for AuditConfig {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "AuditConfig", Some(&["price_book", "metrics", "refusal_phrases"]))?;
        Ok(AuditConfig {
            price_book: o.opt("price_book")?,
            metrics: o.or("metrics", Default::default)?,
            refusal_phrases: o.opt("refusal_phrases")?,
        })
    }
}

impl crate::config::FromConfig for MetricsConfig {
    #[inline(never)]
    fn read(v: &crate::wire::tree::Value, at: &crate::config::At) -> crate::config::Read<Self> {
        let o = crate::config::Obj::new(v, at, "MetricsConfig", Some(&["tenant_labels"]))?;
        Ok(MetricsConfig { tenant_labels: o.or("tenant_labels", Default::default)? })
    }
}

#[cfg(test)]
mod tests;
