//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`), as Bedrock Runtime checks it: signing name
//! `bedrock`, canonical URI percent-encoded a second time, payload hash of the exact body.

use sha2::{Digest, Sha256};

use crate::auth::keys::to_hex;
use crate::text::{Joined, Put, Text};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Percent-encodes everything but the unreserved characters (and `/` when `keep_slash`).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.put(&format!("%{b:02X}"));
        }
    }
    out
}

/// `20260115T120000Z` for a time in ms since the epoch.
pub fn amz_date(now_ms: u64) -> String {
    let secs = now_ms / 1000;
    let (y, m, d) = crate::time::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let s = secs % 86_400;
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", s / 3600, (s / 60) % 60, s % 60)
}

/// What is signed.
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (already percent-encoded once), without the query.
    pub path: &'a str,
    /// The raw query string (without `?`), or empty.
    pub query: &'a str,
    /// Headers to sign (any case); `host` and `x-amz-date` must be among them.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

pub struct Key<'a> {
    pub access_key_id: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

fn canonical_query(q: &str) -> String {
    if q.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = q
        .parts(b'&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.cut(b'=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    crate::sort::sort(&mut pairs);
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().joined("&")
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical request and the signed-headers list.
pub fn canonical_request(r: &Request, payload_hash: &str) -> (String, String) {
    let mut hs: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(k, v)| (k.lower(), v.split_ascii_whitespace().collect::<Vec<_>>().joined(" ")))
        .collect();
    crate::sort::sort(&mut hs);
    let canonical_headers: String = hs.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: String = hs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().joined(";");
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.method.to_ascii_uppercase(),
        uri_encode(r.path, true),
        canonical_query(r.query),
        canonical_headers,
        signed,
        payload_hash
    );
    (text, signed)
}

/// The `Authorization` header value for `r`, signed at `amz_date` (which must also be the
/// request's `x-amz-date` header).
pub fn authorization(r: &Request, key: &Key, amz_date: &str) -> String {
    let payload_hash = r
        .headers
        .iter()
        .find(|(k, _)| k.same_letters("x-amz-content-sha256"))
        .map(|(_, v)| v.own())
        .unwrap_or_else(|| sha256_hex(r.body));
    let (canonical, signed) = canonical_request(r, &payload_hash);
    let date = amz_date.get(..8).unwrap_or("");
    let scope = format!("{date}/{}/{}/aws4_request", key.region, key.service);
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
    let k_date = hmac_sha256(format!("AWS4{}", key.secret).as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, key.region.as_bytes());
    let k_service = hmac_sha256(&k_region, key.service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    let signature = to_hex(&hmac_sha256(&k_signing, to_sign.as_bytes()));
    format!("AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}", key.access_key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of the provider reference (shared/reference/providers.md §6.2-6.3),
    // there verified against botocore.
    const BODY: &[u8] =
        br#"{"messages": [{"role": "user", "content": [{"text": "Hello"}]}], "inferenceConfig": {"maxTokens": 64}}"#;
    const KEY: Key = Key {
        access_key_id: "AKIDEXAMPLE",
        secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        region: "us-east-1",
        service: "bedrock",
    };

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        assert_eq!(
            to_hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn signs_converse_like_botocore() {
        assert_eq!(BODY.len(), 102);
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("X-Amz-Date", "20260115T120000Z"),
        ];
        let r = Request {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            query: "",
            headers: &headers,
            body: BODY,
        };
        let (canonical, signed) = canonical_request(&r, &sha256_hex(BODY));
        assert!(canonical.starts_with("POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"));
        assert_eq!(signed, "content-type;host;x-amz-date");
        assert_eq!(
            authorization(&r, &KEY, "20260115T120000Z"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260115/us-east-1/bedrock/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=ee027cc321c3d696979ffa388f6926c72ff78e42905ea27716a1e9f2e82040d5"
        );
    }

    #[test]
    fn signs_with_session_token_and_content_hash_like_botocore() {
        let hash = sha256_hex(BODY);
        assert_eq!(hash, "98644814032608171fc91ddee4ee8ca3b52243efaa0b89c4186738df69b40071");
        let headers = [
            ("content-type", "application/json"),
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("x-amz-content-sha256", hash.as_str()),
            ("x-amz-date", "20260115T120000Z"),
            ("x-amz-security-token", "EXAMPLE-SESSION-TOKEN"),
        ];
        let r = Request {
            method: "POST",
            path: "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
            query: "",
            headers: &headers,
            body: BODY,
        };
        assert!(authorization(&r, &KEY, "20260115T120000Z")
            .ends_with("Signature=37db66b0463bd6d341d78bd5bdda1273d8bb2c0b1f170a0fb61572e181bb3662"));
    }

    #[test]
    fn encodes_and_dates() {
        assert_eq!(uri_encode("anthropic.claude-v1:0", false), "anthropic.claude-v1%3A0");
        assert_eq!(uri_encode("/a b/~x", true), "/a%20b/~x");
        assert_eq!(canonical_query("b=2&a=x%20y"), "a=x%20y&b=2");
        let t = crate::time::parse_utc_ms("2026-01-15T12:00:00Z").unwrap();
        assert_eq!(amz_date(t), "20260115T120000Z");
    }
}
