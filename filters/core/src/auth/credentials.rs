//! Provider credentials: several per provider, each optionally bound to a region and a validity
//! window; one is chosen per upstream attempt, skipping any a provider recently rejected.

use sha2::{Digest, Sha256};

use crate::auth::keys::to_hex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// A non-secret name (in logs and config).
    pub name: String,
    /// The key; for AWS SigV4, the access key id.
    pub key: String,
    /// AWS SigV4: the secret access key, and the session token of temporary credentials.
    pub secret: Option<String>,
    pub session_token: Option<String>,
    /// Only for endpoints whose metadata names this region; `None`: any region.
    pub region: Option<String>,
    pub not_before_ms: Option<u64>,
    pub not_after_ms: Option<u64>,
    /// [`Credential::fingerprint_of`] the key, computed once when the configuration is compiled.
    pub fingerprint: String,
}

impl Credential {
    fn usable(&self, region: Option<&str>, now_ms: u64) -> bool {
        let region_ok = match (&self.region, region) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
        };
        region_ok && self.not_before_ms.is_none_or(|b| now_ms >= b) && self.not_after_ms.is_none_or(|a| now_ms < a)
    }

    /// A short, non-secret fingerprint of a key (the first 12 hex digits of its SHA-256), for
    /// the audit record.
    pub fn fingerprint_of(key: &str) -> String {
        to_hex(&Sha256::digest(key.as_bytes())[..6])
    }
}

/// The credential for an attempt: the first, in configured order, that fits the endpoint's region
/// and is valid now and not marked bad; if every fitting one is marked bad, the first fitting one
/// (a provider may have recovered, and sending a key beats sending none).
pub fn choose<'a>(
    creds: &'a [Credential],
    region: Option<&str>,
    now_ms: u64,
    is_bad: impl Fn(&Credential) -> bool,
) -> Option<&'a Credential> {
    let mut fitting = creds.iter().filter(|c| c.usable(region, now_ms)).peekable();
    let first = fitting.next()?;
    // The only one that fits is the answer whatever its mark says: the mark is not read (a
    // shared-data read per attempt saved where a provider has one key).
    if fitting.peek().is_none() || !is_bad(first) {
        return Some(first);
    }
    fitting.find(|c| !is_bad(c)).or(Some(first))
}

/// The shared-data key that marks a credential bad until a time (ms, little-endian u64).
pub fn bad_mark_key(provider: &str, name: &str) -> String {
    format!("aigw.cred.bad.{provider}.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cred(name: &str, region: Option<&str>, window: (Option<u64>, Option<u64>)) -> Credential {
        Credential {
            secret: None,
            session_token: None,
            name: name.into(),
            key: format!("key-{name}"),
            region: region.map(str::to_string),
            not_before_ms: window.0,
            not_after_ms: window.1,
            fingerprint: Credential::fingerprint_of(&format!("key-{name}")),
        }
    }

    #[test]
    fn first_usable_in_order_skipping_bad_ones() {
        let c = [cred("a", None, (None, None)), cred("b", None, (None, None))];
        assert_eq!(choose(&c, None, 0, |_| false).map(|c| c.name.as_str()), Some("a"));
        assert_eq!(choose(&c, None, 0, |c| c.name == "a").map(|c| c.name.as_str()), Some("b"));
        // All marked bad: still send the first rather than none.
        assert_eq!(choose(&c, None, 0, |_| true).map(|c| c.name.as_str()), Some("a"));
        // Marks are read only while they can change the choice: not past the first good one,
        // and not at all when one credential fits.
        let read = std::cell::RefCell::new(Vec::new());
        let marked = |c: &Credential| {
            read.borrow_mut().push(c.name.clone());
            c.name == "a"
        };
        assert_eq!(choose(&c, None, 0, marked).map(|c| c.name.as_str()), Some("b"));
        assert_eq!(*read.borrow(), ["a", "b"]);
        read.borrow_mut().clear();
        assert_eq!(choose(&c[..1], None, 0, marked).map(|c| c.name.as_str()), Some("a"));
        assert!(read.borrow().is_empty(), "{:?}", read.borrow());
        let one_fits = [cred("eu", Some("eu-west-1"), (None, None)), cred("us", Some("us-east-1"), (None, None))];
        assert_eq!(choose(&one_fits, Some("us-east-1"), 0, marked).map(|c| c.name.as_str()), Some("us"));
        assert!(read.borrow().is_empty());
        assert_eq!(choose(&c, None, 0, |_| false).map(|c| c.name.as_str()), Some("a"));
    }

    #[test]
    fn region_and_validity_window() {
        let c = [
            cred("eu", Some("eu-west-1"), (None, None)),
            cred("old", None, (None, Some(100))),
            cred("new", None, (Some(100), None)),
        ];
        assert_eq!(choose(&c, Some("eu-west-1"), 50, |_| false).map(|c| c.name.as_str()), Some("eu"));
        assert_eq!(choose(&c, Some("us-east-1"), 50, |_| false).map(|c| c.name.as_str()), Some("old"));
        assert_eq!(choose(&c, Some("us-east-1"), 100, |_| false).map(|c| c.name.as_str()), Some("new"));
        assert_eq!(choose(&c[..1], Some("us-east-1"), 0, |_| false), None);
        assert_eq!(c[0].fingerprint.len(), 12);
        assert_eq!(bad_mark_key("anthropic", "eu"), "aigw.cred.bad.anthropic.eu");
    }
}
