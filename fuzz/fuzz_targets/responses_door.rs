//! The Responses door: a caller's Responses request, and the unified answers (whole and
//! streamed) translated back to it.
#![no_main]

use aigw_core::quota::RequestFacts;
use aigw_core::wire::responses_in::{request_to_chat, response_from_chat, Echo, StreamToResponses};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Read to route (the listener's facts), and translated for a step.
    if let Ok(f) = RequestFacts::read_responses(data) {
        let round = RequestFacts::decode(&f.encode());
        assert!(round.is_some() || f.model.as_deref().is_some_and(|m| m.contains(' ')));
    }
    let echo = match request_to_chat(data) {
        Ok((chat, echo)) => {
            // What the door writes is a unified request every later reader accepts.
            assert!(serde_json::from_slice::<serde_json::Value>(&chat).is_ok());
            echo
        }
        Err(_) => Echo::default(),
    };
    let _ = response_from_chat(data, &echo, "seed");
    let cut = usize::from(data.first().copied().unwrap_or(7)).max(1);
    let mut s = StreamToResponses::new(echo, "seed", 0);
    for chunk in data.chunks(cut) {
        let _ = s.push(chunk);
    }
    let _ = s.finish();
});
