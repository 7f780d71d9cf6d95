//! The credential path of the auth stage: the caller's three credential headers (any bytes,
//! decoded as the host layer does), the key ring, the scope checks and the identity hand-off.
#![no_main]

use aigw_core::auth::keys::{check_scope, presented_credential, usable_at, CallIdentity, KeyEntry, KeyRing};
use aigw_core::headers::text;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        let entries: Vec<KeyEntry> = aigw_core::config::from_str(&format!(
            r#"[{{"id": "k1", "tenant": "t", "sha256": "{}", "features": ["search"], "aliases": ["chat"]}},
                {{"id": "k2", "tenant": "u", "sha256": "{}", "status": "revoked"}},
                {{"id": "k3", "tenant": "v", "sha256": "{}", "not_before": "2030-01-01"}}]"#,
            aigw_core::auth::keys::digest_hex("aigw_sk_one"),
            aigw_core::auth::keys::digest_hex("aigw_sk_two"),
            aigw_core::auth::keys::digest_hex("aigw_sk_three"),
        ))
        .unwrap_or_default();
        KeyRing::compile(&entries).unwrap_or_else(|_| KeyRing::compile(&[]).unwrap_or_else(|_| unreachable!()))
    })
}

fuzz_target!(|data: &[u8]| {
    // Three header values, split by 0xFF (never valid in UTF-8 on its own).
    let mut parts = data.splitn(4, |b| *b == 0xff).map(|p| text(p.to_vec()));
    let (a, x, k, rest) = (parts.next(), parts.next(), parts.next(), parts.next().unwrap_or_default());
    if let Some(p) = presented_credential(a.as_deref(), x.as_deref(), k.as_deref()) {
        if let Ok(id) = ring().authenticate(p) {
            let _ = usable_at(id, 1_900_000_000_000);
            let _ = check_scope("feature", &id.features, &rest);
            let _ = check_scope("alias", &id.aliases, &rest);
            let call = CallIdentity::of(id);
            assert!(CallIdentity::parse(&call.encode()).is_some());
        }
    }
    let _ = CallIdentity::parse(data);
});
