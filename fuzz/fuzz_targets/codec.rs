//! The values the gateway's own contexts hand each other through filter state, in `codec`'s
//! encoding: the call identity, the call's attempts, the answer's facts and the usage. Only
//! the gateway's modules write them, but a decoder must not panic on any bytes, and what it
//! reads must encode back to the same value (a value that does not survive its own round trip
//! would reach the other context changed).
#![no_main]

use aigw_core::audit::{encode_attempts, parse_attempts};
use aigw_core::auth::keys::CallIdentity;
use aigw_core::wire::facts::AnswerFacts;
use aigw_core::wire::usage::Usage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let attempts = parse_attempts(Some(data));
    assert_eq!(parse_attempts(Some(&encode_attempts(&attempts))), attempts);
    if let Some(id) = CallIdentity::parse(data) {
        assert_eq!(CallIdentity::parse(&id.encode()), Some(id));
    }
    if let Some(f) = AnswerFacts::decode(data) {
        assert_eq!(AnswerFacts::decode(&f.encode()), Some(f));
    }
    if let Some(u) = Usage::decode(data) {
        assert_eq!(Usage::decode(&u.encode()), Some(u));
    }
});
