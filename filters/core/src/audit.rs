//! The audit record: one JSON line per call, refused calls included.

use serde::Serialize;

use crate::usage::Usage;

pub const RECORD_VERSION: u32 = 1;

/// How a call ended. A fixed vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// Derives the outcome from what the filters recorded about the call.
    pub fn classify(refusal: Option<&str>, status: Option<u16>, completed: bool, stream_error: bool) -> Outcome {
        match refusal {
            Some("auth") => return Outcome::RefusedAuth,
            Some("quota") => return Outcome::RefusedQuota,
            Some(_) => return Outcome::RefusedRequest,
            None => {}
        }
        match status {
            None | Some(0) => Outcome::ClientAborted,
            Some(s) if s >= 400 => Outcome::UpstreamError,
            Some(_) if stream_error => Outcome::UpstreamError,
            Some(_) if !completed => Outcome::ClientAborted,
            Some(_) => Outcome::Ok,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub version: u32,
    pub request_id: String,
    pub start_time_ms: u64,
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub alias: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub attempts: u32,
    pub stream: bool,
    pub tokens: Option<Tokens>,
    /// Exact cost as a decimal USD string; null when unknown (unpriced model or no usage).
    pub cost_usd: Option<String>,
    pub price_book_version: String,
    pub latency_ms: u64,
    pub flags: Vec<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_vocabulary() {
        assert_eq!(Outcome::classify(Some("auth"), Some(401), true, false), Outcome::RefusedAuth);
        assert_eq!(Outcome::classify(Some("quota"), Some(429), true, false), Outcome::RefusedQuota);
        assert_eq!(Outcome::classify(Some("route"), Some(404), true, false), Outcome::RefusedRequest);
        assert_eq!(Outcome::classify(None, Some(200), true, false), Outcome::Ok);
        assert_eq!(Outcome::classify(None, Some(200), true, true), Outcome::UpstreamError);
        assert_eq!(Outcome::classify(None, Some(503), true, false), Outcome::UpstreamError);
        assert_eq!(Outcome::classify(None, Some(200), false, false), Outcome::ClientAborted);
        assert_eq!(Outcome::classify(None, None, false, false), Outcome::ClientAborted);
    }

    #[test]
    fn record_serialises_snake_case_outcome() {
        let r = AuditRecord {
            version: RECORD_VERSION,
            request_id: "r".into(),
            start_time_ms: 1,
            tenant: Some("t".into()),
            key_id: None,
            alias: None,
            provider: None,
            model: None,
            status: Some(401),
            outcome: Outcome::RefusedAuth,
            attempts: 0,
            stream: false,
            tokens: None,
            cost_usd: None,
            price_book_version: "v".into(),
            latency_ms: 3,
            flags: vec![],
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"outcome\":\"refused_auth\""), "{s}");
        assert!(!s.contains('\n'));
    }
}
