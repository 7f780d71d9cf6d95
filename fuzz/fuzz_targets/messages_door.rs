//! The Messages door: a caller's Anthropic request (checked as it goes on, or translated), and
//! the answers translated back to it or replayed from the cache.
#![no_main]

use aigw_core::wire::messages_in::{
    check_required, error_from_openai, request_to_openai, response_from_openai, stream_from_message, StreamToMessages,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = request_to_openai(&v);
    }
    // What the listener checks of a request that goes on as written, and a stored answer
    // replayed as a stream (the cache).
    let _ = check_required(data);
    let _ = stream_from_message(data);
    let _ = response_from_openai(data);
    let _ = error_from_openai(400, data);
    let mut s = StreamToMessages::default();
    for chunk in data.chunks(7) {
        let _ = s.push(chunk);
    }
    let _ = s.finish();
});
