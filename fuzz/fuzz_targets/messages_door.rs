//! The Messages door: a caller's Anthropic request (translated for a step that does not speak
//! Messages), and the answers translated back to it or replayed from the cache.
#![no_main]

use aigw_core::wire::messages_in::{
    error_from_openai, request_to_openai, response_from_openai, stream_from_message, StreamToMessages,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = aigw_core::wire::from_slice::<aigw_core::wire::tree::Value>(data) {
        let _ = request_to_openai(&v);
    }
    // A stored answer replayed as a stream (the cache).
    let _ = stream_from_message(data);
    let _ = response_from_openai(data);
    let _ = error_from_openai(400, data);
    let mut s = StreamToMessages::default();
    for chunk in data.chunks(7) {
        let _ = s.push(chunk);
    }
    let _ = s.finish();
});
