use super::*;
use crate::host::FakeHost;

fn cache(slots: u32, max: u32) -> Cache {
    Cache::try_from(&CacheConfig { slots, max_entry_bytes: max, now: None, semantic: None, shared: None }).unwrap()
}

#[test]
fn the_key_ignores_key_order_whitespace_and_what_does_not_change_the_answer() {
    let k = |body: &str| key("acme", None, "chat", "default", body.as_bytes()).map(|(d, _)| d);
    let a = k(r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"temperature":0}"#);
    let b = k(r#"{ "temperature": 0, "messages": [ {"content":"hi", "role":"user"} ],
                 "model": "other", "user": "u-1", "stream": true, "stream_options": {"include_usage": true} }"#);
    assert!(a.is_some());
    assert_eq!(a, b);
    assert_ne!(a, k(r#"{"messages":[{"role":"user","content":"hi"}],"temperature":1}"#));
    assert_ne!(a, k(r#"{"messages":[{"role":"user","content":"hi!"}],"temperature":0}"#));
    let body = br#"{"messages":[]}"#;
    let base = key("acme", None, "chat", "default", body).unwrap().0;
    // Partitioned by tenant (and key, when asked), alias and route.
    assert_ne!(base, key("globex", None, "chat", "default", body).unwrap().0);
    assert_ne!(base, key("acme", Some("k1"), "chat", "default", body).unwrap().0);
    assert_ne!(base, key("acme", None, "chat-mini", "default", body).unwrap().0);
    assert_ne!(base, key("acme", None, "chat", "rule-a", body).unwrap().0);
    // No run-together ambiguity between the parts.
    assert_ne!(key("ab", None, "c", "d", body).unwrap().0, key("a", None, "bc", "d", body).unwrap().0);
    assert_eq!(key("a", None, "c", "d", br#"{"stream":true}"#).map(|(_, s)| s), Some(true));
    assert!(key("a", None, "c", "d", b"[1]").is_none());
    assert!(key("a", None, "c", "d", b"{nope").is_none());
}

#[test]
fn an_entry_round_trips_and_anything_else_is_no_entry() {
    let e = Entry {
        digest: [7; 32],
        stored_ms: 123,
        meta: Meta { ttl_ms: 5, model: Some("m".into()), request_id: "r".into(), ..Meta::default() },
        body: b"{\"x\":1}".to_vec(),
    };
    assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
    let bytes = e.encode();
    for cut in [0, 3, 40, 47, 50] {
        assert!(Entry::decode(&bytes[..cut]).is_none(), "cut at {cut}");
    }
    assert!(Entry::decode(b"XGC1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_none());
}

#[test]
fn entries_are_fresh_then_stale_then_gone_by_their_stored_time() {
    let h = FakeHost::new();
    let c = cache(16, 4096);
    let e = Entry {
        digest: [1; 32],
        stored_ms: 1_000,
        meta: Meta { ttl_ms: 100, stale_ms: 50, ..Meta::default() },
        body: b"{}".to_vec(),
    };
    assert!(c.store(&h, &e));
    h.now.set(1_099);
    assert_eq!(c.lookup(&h, &[1; 32]), Lookup::Fresh(e.clone()));
    h.now.set(1_100);
    assert_eq!(c.lookup(&h, &[1; 32]), Lookup::Stale(e.clone()));
    h.now.set(1_150);
    assert_eq!(c.lookup(&h, &[1; 32]), Lookup::Miss);
    // Another key that falls in the same slot is a miss, not its neighbour's answer.
    h.now.set(1_000);
    let mut other = [1; 32];
    other[31] = 2;
    assert_eq!(c.slot_key(&other), c.slot_key(&[1; 32]));
    assert_eq!(c.lookup(&h, &other), Lookup::Miss);
}

#[test]
fn memory_stays_bounded_by_slots_times_the_largest_entry() {
    let h = FakeHost::new();
    let c = cache(8, 1024);
    for i in 0..1000u32 {
        let (digest, _) = key("t", None, "a", "r", format!(r#"{{"n":{i}}}"#).as_bytes()).unwrap();
        let e = Entry { digest, stored_ms: 0, meta: Meta { ttl_ms: 1, ..Meta::default() }, body: vec![b'x'; 600] };
        assert!(c.store(&h, &e));
    }
    let big = Entry { digest: [9; 32], stored_ms: 0, meta: Meta::default(), body: vec![b'x'; 2000] };
    assert!(!c.store(&h, &big), "larger than max_entry_bytes: not kept");
    let shared = h.shared.borrow();
    let keys: Vec<_> = shared.keys().filter(|k| k.starts_with("aigw.cache.")).collect();
    assert!(keys.len() <= 8, "{} keys", keys.len());
    let bytes: usize = shared.iter().filter(|(k, _)| k.starts_with("aigw.cache.")).map(|(_, (v, _))| v.len()).sum();
    assert!(bytes <= 8 * 1024, "{bytes} bytes");
}

#[test]
fn the_store_is_configured_within_bounds_and_refused_by_field() {
    let cfg = |s: &str| {
        crate::config::from_str::<CacheConfig>(s)
            .map_err(|e| e.to_string())
            .and_then(|c| Cache::try_from(&c).map_err(|e| e.to_string()))
    };
    assert_eq!(cfg("{}").map(|c| (c.slots, c.max_entry_bytes)), Ok((256, 65536)));
    assert!(cfg(r#"{"slots": 0}"#).unwrap_err().contains("slots"));
    assert!(cfg(r#"{"max_entry_bytes": 10}"#).unwrap_err().contains("max_entry_bytes"));
    assert!(cfg(r#"{"now": "soon"}"#).unwrap_err().contains("now"));
    assert!(cfg(r#"{"bogus": 1}"#).is_err());
}

#[test]
fn a_request_that_needs_the_providers_state_is_marked_and_the_semantic_text_is_the_last_user_message() {
    let k = |b: &str| keys("t", None, "a", "r", b.as_bytes()).unwrap();
    assert!(k(r#"{"input":"hi","previous_response_id":"resp_1"}"#).stateful);
    assert!(k(r#"{"input":"hi","conversation":"conv_1"}"#).stateful);
    assert!(!k(r#"{"input":"hi","previous_response_id":null}"#).stateful);
    let chat = k(r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"one"},
                                 {"role":"assistant","content":"A"},{"role":"user","content":[{"type":"text","text":"two"}]}]}"#);
    let (text, partition) = chat.semantic.unwrap();
    assert_eq!(text, "two");
    // The same history with another last question: the same partition; another system prompt: not.
    let other = k(r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"one"},
                                  {"role":"assistant","content":"A"},{"role":"user","content":"three"}]}"#);
    assert_eq!(other.semantic.unwrap().1, partition);
    let sys = k(r#"{"messages":[{"role":"system","content":"T"},{"role":"user","content":"one"},
                                {"role":"assistant","content":"A"},{"role":"user","content":"two"}]}"#);
    assert_ne!(sys.semantic.unwrap().1, partition);
    assert!(k(r#"{"input":"hi"}"#).semantic.is_none(), "a Responses request is cached exactly only");
}
