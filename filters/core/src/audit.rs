//! The audit record: one JSON line per call, refused calls included.

pub mod price;

use serde::{Deserialize, Serialize};

use crate::wire::usage::Usage;

pub mod stage;

pub const RECORD_VERSION: u32 = 2;

/// How a call ended. A fixed vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    code_details.starts_with("upstream_") || code_details.contains("upstream_reset")
}

/// Why an attempt at a provider failed: the per-provider error taxonomy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub credential: Option<String>,
    /// When the attempt was sent (ms since the epoch), while the call is in flight: it tells a
    /// per-try timeout from a reset. Not part of the audit record (cleared before it is written).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub started_ms: u64,
}

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

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The attempts list kept in filter state while a call is in flight.
pub fn parse_attempts(raw: Option<&[u8]>) -> Vec<Attempt> {
    raw.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl From<Usage> for Tokens {
    fn from(u: Usage) -> Self {
        Tokens { input: u.input, cached_input: u.cached_input, output: u.output, reasoning: u.reasoning }
    }
}

/// The audit record (see README, "The audit record"). Field order is the JSON order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub version: u32,
    pub request_id: String,
    pub start_time_ms: u64,
    pub end_time_ms: u64,
    pub tenant: Option<String>,
    pub feature: Option<String>,
    pub agent: Option<String>,
    /// The task category the caller named (`x-gateway-task`).
    #[serde(default)]
    pub task: Option<String>,
    /// A shadow leg: the request id of the call it copies (README, "Shadow dual-run").
    #[serde(default)]
    pub shadow_of: Option<String>,
    pub key_id: Option<String>,
    pub key_fingerprint: Option<String>,
    /// The front door the call came in by: `chat`, `messages`, `responses`, `embeddings` or
    /// `models` (`null`: a path the gateway does not serve).
    #[serde(default)]
    pub door: Option<String>,
    /// The route rule that chose the alias (`default`: the alias the caller named).
    pub route: Option<String>,
    pub alias: Option<String>,
    /// `canary` or `stable` when the alias has a canary slice.
    #[serde(default)]
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
    #[serde(default)]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_saved_usd: Option<String>,
    /// The semantic cache's lookup: the nearest stored request's similarity, the request id of
    /// the entry it would serve, and whether it did (absent when there was none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_semantic: Option<crate::cache::semantic::SemanticNote>,
    pub compliance_flags: Vec<String>,
    pub flags: Vec<String>,
    /// What the answer the caller got says about the model's behaviour (drift signals, shadow
    /// comparison); null when no provider's answer reached the caller.
    #[serde(default)]
    pub answer: Option<AnswerRecord>,
}

/// The audit record's view of an answer (README, "The audit record").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub output_chars: Option<u64>,
    #[serde(default)]
    pub output_digest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let back: AuditRecord = serde_json::from_str(&s).unwrap();
        assert_eq!((back.outcome, back.error_code.as_deref()), (Outcome::RefusedAuth, Some("invalid_api_key")));
        // A record from before `error_code` still reads.
        let old = s.replace(r#""error_code":"invalid_api_key","#, "");
        assert!(serde_json::from_str::<AuditRecord>(&old).unwrap().error_code.is_none());
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
        let raw = serde_json::to_vec(&vec![a.clone()]).unwrap();
        assert_eq!(parse_attempts(Some(&raw)), vec![a]);
        assert!(parse_attempts(Some(b"junk")).is_empty());
        assert!(parse_attempts(None).is_empty());
    }
}
