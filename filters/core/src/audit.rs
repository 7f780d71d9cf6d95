//! The audit record: one JSON line per call, refused calls included.

pub mod price;

#[cfg(test)]
use serde::Serialize;

use crate::text::Text;
use crate::wire::usage::Usage;
use crate::wire::write::WriteJson;

pub mod stage;

pub const RECORD_VERSION: u32 = 2;

/// How a call ended. A fixed vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
#[cfg_attr(test, serde(rename_all = "snake_case"))]
pub enum Outcome {
    Ok,
    RefusedAuth,
    RefusedQuota,
    RefusedRequest,
    UpstreamError,
    ClientAborted,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::RefusedAuth,
        Outcome::RefusedQuota,
        Outcome::RefusedRequest,
        Outcome::UpstreamError,
        Outcome::ClientAborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RefusedAuth => "refused_auth",
            Outcome::RefusedQuota => "refused_quota",
            Outcome::RefusedRequest => "refused_request",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientAborted => "client_aborted",
        }
    }

    /// Derives the outcome from what the filters recorded about the call. A 4xx that no provider
    /// attempt produced (Envoy's own refusals: unknown path, body too large, ...) is a refused
    /// request, not an upstream error.
    ///
    /// `upstream_failed`: Envoy ended the answer because the provider's connection failed
    /// (a reset mid-stream), not because the caller left.
    pub fn classify(
        refusal: Option<&str>,
        status: Option<u16>,
        completed: bool,
        stream_error: bool,
        attempted: bool,
        upstream_failed: bool,
    ) -> Outcome {
        match refusal {
            Some("auth") => return Outcome::RefusedAuth,
            Some("quota") => return Outcome::RefusedQuota,
            Some(_) => return Outcome::RefusedRequest,
            None => {}
        }
        match status {
            None | Some(0) => Outcome::ClientAborted,
            Some(s) if (400..500).contains(&s) && !attempted => Outcome::RefusedRequest,
            Some(s) if s >= 400 => Outcome::UpstreamError,
            Some(_) if stream_error || (!completed && upstream_failed) => Outcome::UpstreamError,
            Some(_) if !completed => Outcome::ClientAborted,
            Some(_) => Outcome::Ok,
        }
    }
}

/// Whether Envoy's response code details (`response.code_details`) say the answer was cut by
/// the provider's side (`upstream_reset_after_response_started{...}`, a per-try or overall
/// timeout, ...), rather than by the caller leaving (`downstream_remote_disconnect`, ...).
pub fn upstream_failed(code_details: &str) -> bool {
    code_details.starts_with("upstream_") || code_details.has("upstream_reset")
}

/// Why an attempt at a provider failed: the per-provider error taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
#[cfg_attr(test, serde(rename_all = "snake_case"))]
pub enum ErrorClass {
    RateLimited,
    Overloaded,
    ServerError,
    Timeout,
    Auth,
    BadRequest,
    /// No response at all: connection refused or reset, or the call ended first.
    NoResponse,
    /// Not sent: the gateway's own bucket for this provider was empty (quota plane).
    ProviderLimit,
    /// The provider said 200 but its answer could not be read (not JSON, cut short): retried.
    InvalidResponse,
    /// The answer was not the JSON the request asked for (`response_format`): retried.
    InvalidOutput,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::RateLimited,
        ErrorClass::Overloaded,
        ErrorClass::ServerError,
        ErrorClass::Timeout,
        ErrorClass::Auth,
        ErrorClass::BadRequest,
        ErrorClass::NoResponse,
        ErrorClass::ProviderLimit,
        ErrorClass::InvalidResponse,
        ErrorClass::InvalidOutput,
    ];

    /// Its one-byte code in filter state: its place in [`ErrorClass::ALL`], from 1.
    fn code(self) -> u8 {
        ErrorClass::ALL.iter().position(|c| *c == self).map_or(0, |i| i as u8 + 1)
    }

    /// The class of a provider's HTTP status (as the provider sent it); `None` for success.
    pub fn of_status(status: u16) -> Option<ErrorClass> {
        match status {
            200..=399 => None,
            429 => Some(ErrorClass::RateLimited),
            503 | 529 => Some(ErrorClass::Overloaded),
            408 | 504 => Some(ErrorClass::Timeout),
            401 | 403 => Some(ErrorClass::Auth),
            400..=499 => Some(ErrorClass::BadRequest),
            _ => Some(ErrorClass::ServerError),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::ServerError => "server_error",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Auth => "auth",
            ErrorClass::BadRequest => "bad_request",
            ErrorClass::NoResponse => "no_response",
            ErrorClass::ProviderLimit => "provider_limit",
            ErrorClass::InvalidResponse => "invalid_response",
            ErrorClass::InvalidOutput => "invalid_output",
        }
    }
}

/// One upstream attempt, as the per-attempt filter saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct Attempt {
    pub provider: String,
    pub region: Option<String>,
    pub model: Option<String>,
    /// The provider's own status; `None` when no response arrived.
    pub status: Option<u16>,
    /// Milliseconds from sending the attempt to the provider's response headers.
    pub latency_ms: Option<u64>,
    pub error_class: Option<ErrorClass>,
    /// The fingerprint of the provider credential used (never the key).
    pub credential: Option<String>,
    /// When the attempt was sent (ms since the epoch), while the call is in flight: it tells a
    /// per-try timeout from a reset. Not part of the audit record (cleared before it is written).
    #[cfg_attr(test, serde(skip_serializing_if = "is_zero"))]
    pub started_ms: u64,
}
crate::wire::object::json_object!(Attempt {
    provider: "provider" [required],
    region: "region" [],
    model: "model" [],
    status: "status" [],
    latency_ms: "latency_ms" [],
    error_class: "error_class" [],
    credential: "credential" [],
    started_ms: "started_ms" [skip_zero],
});

/// Closes the last attempt if it got no answer because a timer cut it: the latency budget's
/// per-try timeout (`per_try_ms`), or Envoy's own timeout at the end of the call
/// (`code_details` `upstream_response_timeout` / `upstream_per_try_timeout`). Its class becomes
/// `timeout`, not `no_response`, and its latency how long it was given (until `now`).
///
/// Envoy's timer and the filter's clock do not start at the same instant: an attempt that got
/// 90% of its time or more was cut by the timer (a reset or a refused connection comes within
/// milliseconds).
pub fn close_unanswered(attempts: &mut [Attempt], per_try_ms: Option<u64>, code_details: Option<&str>, now: u64) {
    let Some(last) = attempts.last_mut() else { return };
    if last.status.is_some() || last.error_class != Some(ErrorClass::NoResponse) {
        return;
    }
    let elapsed = now.saturating_sub(last.started_ms);
    let per_try = per_try_ms.is_some_and(|t| last.started_ms > 0 && elapsed.saturating_mul(10) >= t.saturating_mul(9));
    let envoy = matches!(code_details, Some("upstream_response_timeout" | "upstream_per_try_timeout"));
    if per_try || envoy {
        last.error_class = Some(ErrorClass::Timeout);
        last.latency_ms = (last.started_ms > 0).then_some(elapsed);
    }
}

#[cfg(test)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The attempts list kept in filter state while a call is in flight.
/// The call's attempts as [`encode_attempts`] wrote them to filter state; nothing when absent
/// or unreadable.
pub fn parse_attempts(raw: Option<&[u8]>) -> Vec<Attempt> {
    raw.and_then(crate::codec::Reader::new).and_then(decode_attempts).unwrap_or_default()
}

/// The call's attempts for filter state, in [`crate::codec`]'s encoding: each attempt's fields
/// in order (the audit record writes them as JSON once, at the end).
pub fn encode_attempts(attempts: &[Attempt]) -> Vec<u8> {
    let mut w = crate::codec::Writer::new();
    w.u64(attempts.len() as u64);
    for a in attempts {
        w.str(&a.provider)
            .opt_str(a.region.as_deref())
            .opt_str(a.model.as_deref())
            .opt_u64(a.status.map(u64::from))
            .opt_u64(a.latency_ms)
            .u8(a.error_class.map_or(0, ErrorClass::code))
            .opt_str(a.credential.as_deref())
            .u64(a.started_ms);
    }
    w.finish()
}

fn decode_attempts(mut r: crate::codec::Reader<'_>) -> Option<Vec<Attempt>> {
    let n = r.u64()?;
    let mut out = Vec::with_capacity(usize::try_from(n.min(16)).unwrap_or(16));
    for _ in 0..n {
        // (A struct's fields are evaluated in the order written: the encoding's order.)
        out.push(Attempt {
            provider: r.str()?.own(),
            region: r.opt_str()?.map(str::to_string),
            model: r.opt_str()?.map(str::to_string),
            status: r.opt_u64()?.map(|s| u16::try_from(s).ok()).unwrap_or(None),
            latency_ms: r.opt_u64()?,
            error_class: match r.u8()? {
                0 => None,
                c => Some(*ErrorClass::ALL.get(usize::from(c) - 1)?),
            },
            credential: r.opt_str()?.map(str::to_string),
            started_ms: r.u64()?,
        });
    }
    r.at_end().then_some(out)
}

#[derive(Debug, Clone)]
#[cfg_attr(test, derive(Serialize))]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    /// Input written to the provider's prompt cache (part of `input`).
    pub cache_write: u64,
    /// Of `cache_write`, what was written for an hour.
    pub cache_write_1h: u64,
    pub output: u64,
    pub reasoning: u64,
}
crate::wire::object::json_object!(Tokens {
    input: "input" [required],
    cached_input: "cached_input" [required],
    cache_write: "cache_write" [],
    cache_write_1h: "cache_write_1h" [],
    output: "output" [required],
    reasoning: "reasoning" [required],
});

impl From<Usage> for Tokens {
    fn from(u: Usage) -> Self {
        Tokens {
            input: u.input,
            cached_input: u.cached_input,
            cache_write: u.cache_write,
            cache_write_1h: u.cache_write_1h,
            output: u.output,
            reasoning: u.reasoning,
        }
    }
}

/// The audit record (see README, "The audit record"). Field order is the JSON order.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(Serialize))]
pub struct AuditRecord {
    pub version: u32,
    pub request_id: String,
    pub start_time_ms: u64,
    pub end_time_ms: u64,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub agent: Option<String>,
    /// The task category the caller named (`x-gateway-task`).
    pub task: Option<String>,
    /// A shadow leg: the request id of the call it copies (README, "Shadow dual-run").
    pub shadow_of: Option<String>,
    pub key_id: Option<String>,
    pub key_fingerprint: Option<String>,
    /// The front door the call came in by: `chat`, `messages`, `responses`, `embeddings` or
    /// `models` (`null`: a path the gateway does not serve).
    pub door: Option<String>,
    /// The route rule that chose the alias (`default`: the alias the caller named).
    pub route: Option<String>,
    pub alias: Option<String>,
    /// `canary` or `stable` when the alias has a canary slice.
    pub slice: Option<String>,
    pub workload_class: Option<String>,
    pub privacy_zone: Option<String>,
    /// The provider and concrete model that produced the answer (the last attempt's).
    pub provider: Option<String>,
    pub model: Option<String>,
    pub attempts: Vec<Attempt>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    /// The stable `code` of the error the gateway answered itself (a refusal: the body's
    /// `error.code`, e.g. `tenant_requests_per_minute`); null when a provider's answer, or its
    /// error, reached the caller.
    pub error_code: Option<String>,
    pub stream: bool,
    pub tokens: Option<Tokens>,
    /// Exact cost as a decimal USD string; null when unknown (unpriced model or no usage).
    pub cost_usd: Option<String>,
    pub price_book_version: String,
    pub latency_ms: u64,
    /// Time to the first byte of a streamed answer.
    pub ttft_ms: Option<u64>,
    /// `none` (the route caches nothing), `miss`, `hit`, `stale` (a stale answer stood in for
    /// a failed chain), `no_store` (the caller said `Cache-Control: no-store`).
    pub cache_status: String,
    /// What an answer from the cache saved: what its original call cost (exact decimal USD).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub cost_saved_usd: Option<String>,
    /// The semantic cache's lookup: the nearest stored request's similarity, the request id of
    /// the entry it would serve, and whether it did (absent when there was none).
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub cache_semantic: Option<crate::cache::semantic::SemanticNote>,
    pub compliance_flags: Vec<String>,
    pub flags: Vec<String>,
    /// What the answer the caller got says about the model's behaviour (drift signals, shadow
    /// comparison); null when no provider's answer reached the caller.
    pub answer: Option<AnswerRecord>,
}
crate::wire::object::json_object!(AuditRecord {
    version: "version" [required],
    request_id: "request_id" [required],
    start_time_ms: "start_time_ms" [required],
    end_time_ms: "end_time_ms" [required],
    tenant: "tenant" [],
    feature: "feature" [],
    agent: "agent" [],
    task: "task" [],
    shadow_of: "shadow_of" [],
    key_id: "key_id" [],
    key_fingerprint: "key_fingerprint" [],
    door: "door" [],
    route: "route" [],
    alias: "alias" [],
    slice: "slice" [],
    workload_class: "workload_class" [],
    privacy_zone: "privacy_zone" [],
    provider: "provider" [],
    model: "model" [],
    attempts: "attempts" [required],
    status: "status" [],
    outcome: "outcome" [required],
    error_code: "error_code" [],
    stream: "stream" [required],
    tokens: "tokens" [],
    cost_usd: "cost_usd" [],
    price_book_version: "price_book_version" [required],
    latency_ms: "latency_ms" [required],
    ttft_ms: "ttft_ms" [],
    cache_status: "cache_status" [required],
    cost_saved_usd: "cost_saved_usd" [skip_none],
    cache_semantic: "cache_semantic" [skip_none],
    compliance_flags: "compliance_flags" [required],
    flags: "flags" [required],
    answer: "answer" [],
});

/// The audit record's view of an answer (README, "The audit record").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(Serialize))]
pub struct AnswerRecord {
    /// `stop`, `length`, `tool_calls`, `content_filter` or `other`, whatever the provider and
    /// door (null: the answer did not say).
    pub finish_reason: Option<crate::wire::facts::Finish>,
    pub tool_calls: u32,
    /// The provider refused (a refusal field or stop reason, a safety stop), or the answer
    /// opens with one of the configured refusal phrases.
    pub refusal: bool,
    /// The request asked for JSON: whether the answer was it (null: it did not ask).
    pub json_valid: Option<bool>,
    /// Characters of text, and the first 16 hex digits of the SHA-256 of the text and tool
    /// calls (non-streamed answers only).
    pub output_chars: Option<u64>,
    pub output_digest: Option<String>,
}
crate::wire::object::json_object!(AnswerRecord {
    finish_reason: "finish_reason" [],
    tool_calls: "tool_calls" [required],
    refusal: "refusal" [required],
    json_valid: "json_valid" [],
    output_chars: "output_chars" [],
    output_digest: "output_digest" [],
});

crate::wire::read::read_variants!(Outcome, ErrorClass);

impl WriteJson for Outcome {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::wire::write::string(out, self.as_str());
    }
}

impl WriteJson for ErrorClass {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::wire::write::string(out, self.as_str());
    }
}

/// Records with every field present and absent, hostile strings and every outcome: for tests
/// that compare two ways of writing out what a record says.
#[cfg(test)]
pub(crate) fn sample_records() -> Vec<AuditRecord> {
    use crate::wire::facts::Finish;
    let odd = "quote \" backslash \\ newline \n tab \t nul \u{0} bell \u{7} del \u{7f} é 漢 😀 </script>";
    let attempt = |i: usize| Attempt {
        provider: format!("p{i}{odd}"),
        region: (i.is_multiple_of(2)).then(|| format!("r{i}")),
        model: (!i.is_multiple_of(3)).then(|| odd.to_string()),
        status: (i % 2 == 1).then_some(200 + i as u16),
        latency_ms: (!i.is_multiple_of(4)).then_some(u64::MAX - i as u64),
        error_class: ErrorClass::ALL.get(i).copied(),
        credential: (i.is_multiple_of(5)).then(|| format!("c{i}")),
        started_ms: if i.is_multiple_of(2) { 0 } else { 1_700_000_000_000 + i as u64 },
    };
    let finishes = [
        None,
        Some(Finish::Stop),
        Some(Finish::Length),
        Some(Finish::ToolCalls),
        Some(Finish::ContentFilter),
        Some(Finish::Other),
    ];
    let mut out = Vec::new();
    for (n, outcome) in Outcome::ALL.iter().copied().enumerate().chain((6..14).map(|n| (n, Outcome::Ok))) {
        let some = |s: &str| (n.is_multiple_of(2)).then(|| format!("{s}{odd}"));
        let r = AuditRecord {
            version: RECORD_VERSION,
            request_id: format!("req-{n}{odd}"),
            start_time_ms: n as u64,
            end_time_ms: u64::MAX,
            tenant: some("t"),
            feature: some("f"),
            agent: (n.is_multiple_of(3)).then(|| "a".into()),
            task: some("k"),
            shadow_of: (n.is_multiple_of(4)).then(|| "s".into()),
            key_id: some("id"),
            key_fingerprint: some("fp"),
            door: some("chat"),
            route: (n % 3 == 1).then(String::new),
            slice: some("canary"),
            alias: some("chat"),
            workload_class: some("w"),
            privacy_zone: some("eu"),
            provider: some("anthropic"),
            model: some("m"),
            attempts: (0..n % 4)
                .map(attempt)
                .chain((n == 13).then(|| (0..10).map(attempt)).into_iter().flatten())
                .collect(),
            status: (n % 3 != 2).then_some(n as u16 * 100),
            outcome,
            error_code: some("code"),
            stream: n % 2 == 1,
            tokens: (n.is_multiple_of(2)).then_some(Tokens {
                input: n as u64,
                cached_input: 0,
                cache_write: n as u64 / 2,
                cache_write_1h: n as u64 / 4,
                output: u64::MAX,
                reasoning: 7,
            }),
            cost_usd: some("0.0001"),
            price_book_version: format!("v{odd}"),
            latency_ms: n as u64 * 1000,
            ttft_ms: (n.is_multiple_of(3)).then_some(5),
            cache_status: "miss".into(),
            cost_saved_usd: (n.is_multiple_of(5)).then(|| "0.5".into()),
            cache_semantic: (n % 4 == 1).then(|| crate::cache::semantic::SemanticNote {
                similarity: (n % 8 == 1).then_some(0.9375 + n as f64 / 7.0),
                would_serve: Some(odd.into()),
                served: n.is_multiple_of(2),
            }),
            compliance_flags: (0..n % 3).map(|i| format!("pii:{i}{odd}")).collect(),
            flags: (0..n % 4).map(|i| format!("f{i}")).collect(),
            answer: (n % 7 != 3).then(|| AnswerRecord {
                finish_reason: finishes[n % finishes.len()],
                tool_calls: n as u32 * 1_000_000,
                refusal: n.is_multiple_of(2),
                json_valid: [None, Some(true), Some(false)][n % 3],
                output_chars: (n % 2 == 1).then_some(123),
                output_digest: (n.is_multiple_of(3)).then(|| "0123456789abcdef".into()),
            }),
        };
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_cross_in_their_binary_encoding_and_nothing_else_reads_as_attempts() {
        let every: Vec<Attempt> = ErrorClass::ALL
            .iter()
            .map(|c| Some(*c))
            .chain([None])
            .enumerate()
            .map(|(i, class)| Attempt {
                provider: format!("p{i}"),
                region: (i % 2 == 0).then(|| "eu-west-1".to_string()),
                model: (i % 3 != 0).then(|| "m\u{e9}".to_string()),
                status: (i % 4 != 0).then_some(500 + i as u16),
                latency_ms: (i % 5 != 0).then_some(i as u64 * 1000),
                error_class: class,
                credential: (i % 2 == 1).then(|| "e1430ac9cf89".to_string()),
                started_ms: 1_796_000_000_000 + i as u64,
            })
            .collect();
        let bytes = encode_attempts(&every);
        assert_eq!(parse_attempts(Some(&bytes)), every);
        assert_eq!(parse_attempts(Some(&encode_attempts(&[]))), Vec::<Attempt>::new());
        // Cut short anywhere, or with bytes after the end: nothing (never a wrong attempt).
        for cut in 0..bytes.len() {
            assert!(parse_attempts(Some(&bytes[..cut])).is_empty(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse_attempts(Some(&longer)).is_empty());
        // JSON (what a module before the encoding wrote) is not read as attempts.
        let json = serde_json::to_vec(&every).unwrap_or_default();
        assert!(parse_attempts(Some(&json)).is_empty());
        assert!(parse_attempts(None).is_empty() && parse_attempts(Some(b"not json")).is_empty());
    }

    #[test]
    fn an_attempt_cut_by_its_per_try_timeout_is_a_timeout() {
        let open = Attempt {
            provider: "p".into(),
            region: None,
            model: None,
            status: None,
            latency_ms: None,
            error_class: Some(ErrorClass::NoResponse),
            credential: None,
            started_ms: 0,
        };
        let open = Attempt { started_ms: 1_000, ..open };
        let mut a = vec![open.clone()];
        close_unanswered(&mut a, Some(600), None, 1_601);
        assert_eq!((a[0].error_class, a[0].latency_ms), (Some(ErrorClass::Timeout), Some(601)));
        // A reset well before the timeout stays `no_response`.
        let mut a = vec![open.clone()];
        close_unanswered(&mut a, Some(600), None, 1_050);
        assert_eq!(a[0].error_class, Some(ErrorClass::NoResponse));
        let mut a = vec![open.clone()];
        close_unanswered(&mut a, Some(600), None, 1_545);
        assert_eq!(a[0].error_class, Some(ErrorClass::Timeout));
        // Cut by Envoy's timeout at the end of the call, before its share ran out.
        let mut a = vec![open.clone()];
        close_unanswered(&mut a, Some(600), Some("upstream_response_timeout"), 1_300);
        assert_eq!((a[0].error_class, a[0].latency_ms), (Some(ErrorClass::Timeout), Some(300)));
        // The caller left: not a timeout.
        let mut a = vec![open.clone()];
        close_unanswered(&mut a, None, Some("downstream_remote_disconnect"), 1_300);
        assert_eq!(a[0].error_class, Some(ErrorClass::NoResponse));
        // An attempt that was answered is left alone.
        let mut a = vec![Attempt { status: Some(503), error_class: Some(ErrorClass::Overloaded), ..open }];
        close_unanswered(&mut a, Some(600), Some("upstream_response_timeout"), 5_000);
        assert_eq!(a[0].error_class, Some(ErrorClass::Overloaded));
        // The start time travels in filter state, but the audit record does not show it.
        let mut a = vec![Attempt { started_ms: 7, ..a[0].clone() }];
        assert!(serde_json::to_string(&a).unwrap_or_default().contains("started_ms"));
        a[0].started_ms = 0;
        assert!(!serde_json::to_string(&a).unwrap_or_default().contains("started_ms"));
    }

    #[test]
    fn outcome_vocabulary() {
        assert_eq!(Outcome::classify(Some("auth"), Some(401), true, false, false, false), Outcome::RefusedAuth);
        assert_eq!(Outcome::classify(Some("quota"), Some(429), true, false, false, false), Outcome::RefusedQuota);
        assert_eq!(Outcome::classify(Some("route"), Some(404), true, false, false, false), Outcome::RefusedRequest);
        assert_eq!(Outcome::classify(None, Some(200), true, false, true, false), Outcome::Ok);
        assert_eq!(Outcome::classify(None, Some(200), true, true, true, false), Outcome::UpstreamError);
        assert_eq!(Outcome::classify(None, Some(503), true, false, true, false), Outcome::UpstreamError);
        assert_eq!(Outcome::classify(None, Some(429), true, false, true, false), Outcome::UpstreamError);
        // Envoy's own 404 (unknown path) or 413 (body too large): no provider was asked.
        assert_eq!(Outcome::classify(None, Some(413), true, false, false, false), Outcome::RefusedRequest);
        assert_eq!(Outcome::classify(None, Some(503), true, false, false, false), Outcome::UpstreamError);
        assert_eq!(Outcome::classify(None, Some(200), false, false, true, false), Outcome::ClientAborted);
        assert_eq!(Outcome::classify(None, None, false, false, true, false), Outcome::ClientAborted);
        // The provider dropped the connection mid-stream: not the caller's doing.
        assert_eq!(Outcome::classify(None, Some(200), false, false, true, true), Outcome::UpstreamError);
        assert!(upstream_failed("upstream_reset_after_response_started{remote_reset}"));
        assert!(upstream_failed("upstream_per_try_timeout"));
        assert!(!upstream_failed("downstream_remote_disconnect"));
        assert!(!upstream_failed(""));
    }

    #[test]
    fn record_serialises_snake_case_outcome_on_one_line() {
        let r = AuditRecord {
            version: RECORD_VERSION,
            request_id: "r".into(),
            start_time_ms: 1,
            end_time_ms: 2,
            tenant: Some("t".into()),
            feature: None,
            agent: None,
            task: None,
            shadow_of: None,
            key_id: None,
            key_fingerprint: None,
            door: Some("chat".into()),
            route: None,
            slice: None,
            alias: None,
            workload_class: None,
            privacy_zone: None,
            provider: None,
            model: None,
            attempts: vec![],
            status: Some(401),
            outcome: Outcome::RefusedAuth,
            error_code: Some("invalid_api_key".into()),
            stream: false,
            tokens: None,
            cost_usd: None,
            price_book_version: "v".into(),
            latency_ms: 3,
            ttft_ms: None,
            cache_status: "none".into(),
            cost_saved_usd: None,
            cache_semantic: None,
            compliance_flags: vec![],
            answer: None,
            flags: vec![],
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"outcome\":\"refused_auth\""), "{s}");
        assert!(!s.contains('\n'));
        let back: AuditRecord = crate::wire::from_str(&s).unwrap();
        assert_eq!((back.outcome, back.error_code.as_deref()), (Outcome::RefusedAuth, Some("invalid_api_key")));
        // A record from before `error_code` still reads.
        let old = s.replace(r#""error_code":"invalid_api_key","#, "");
        assert!(crate::wire::from_str::<AuditRecord>(&old).unwrap().error_code.is_none());
    }

    #[test]
    fn the_direct_writer_writes_what_serde_writes() {
        for (n, r) in super::sample_records().iter().enumerate() {
            let mut direct = b"prefix ".to_vec();
            r.write_json(&mut direct);
            let serde = serde_json::to_vec(&r).unwrap();
            assert_eq!(String::from_utf8_lossy(&direct[7..]), String::from_utf8_lossy(&serde), "record {n}");
            assert_eq!(&direct[..7], b"prefix ");
        }
    }

    #[test]
    fn error_taxonomy() {
        assert_eq!(ErrorClass::of_status(200), None);
        assert_eq!(ErrorClass::of_status(429), Some(ErrorClass::RateLimited));
        assert_eq!(ErrorClass::of_status(529), Some(ErrorClass::Overloaded));
        assert_eq!(ErrorClass::of_status(503), Some(ErrorClass::Overloaded));
        assert_eq!(ErrorClass::of_status(500), Some(ErrorClass::ServerError));
        assert_eq!(ErrorClass::of_status(504), Some(ErrorClass::Timeout));
        assert_eq!(ErrorClass::of_status(403), Some(ErrorClass::Auth));
        assert_eq!(ErrorClass::of_status(404), Some(ErrorClass::BadRequest));
        assert_eq!(ErrorClass::NoResponse.as_str(), "no_response");
        assert_eq!(Outcome::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>().len(), 6);
    }

    #[test]
    fn attempts_roundtrip_through_filter_state() {
        let a = Attempt {
            provider: "openai".into(),
            region: Some("us-east-1".into()),
            model: Some("m".into()),
            status: Some(503),
            latency_ms: Some(4),
            error_class: Some(ErrorClass::Overloaded),
            credential: None,
            started_ms: 0,
        };
        let raw = encode_attempts(std::slice::from_ref(&a));
        assert_eq!(parse_attempts(Some(&raw)), vec![a]);
        assert!(parse_attempts(Some(b"junk")).is_empty());
        assert!(parse_attempts(None).is_empty());
    }
}
