//! Server-sent events, split anywhere, the stream scanner that reads usage from them (with and
//! without the answer's facts, which must agree on usage and the end), the cache's collectors
//! that make a whole answer of a unified, a Responses and a Messages stream (replayed again as a
//! stream), and the guardrails' restorers (streamed and whole, thinking kept or not) and
//! output-term filter.
#![no_main]

use aigw_core::wire::sse::Parser;
use aigw_core::wire::usage::StreamScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut p = Parser::default();
    let mut out = Vec::new();
    let mut sc = StreamScanner::<true>::default();
    let mut lean = StreamScanner::<false>::default();
    let mut collector = aigw_core::wire::chat::StreamCollector::new(1 << 16);
    let mut filter = aigw_core::guard::StreamFilter::new(&["project falcon".to_string()]);
    let mut restorer = aigw_core::guard::Restorer::new(&[("<EMAIL_1>".into(), "a\"b@c.d".into())]);
    let mut responses = aigw_core::wire::responses_in::ResponsesCollector::new(1 << 16);
    let mut messages = aigw_core::wire::messages_in::MessagesCollector::new(1 << 16);
    let masked = [("<EMAIL_1>".to_string(), "a\"b@c.d".to_string())];
    // (A request that asked for thinking when the first byte is odd: thinking deltas pass.)
    let thinking = data.first().is_some_and(|b| b & 1 == 1);
    let mut events = aigw_core::guard::StreamRestorer::new(&masked, thinking);
    for chunk in data.chunks(cut) {
        p.push(chunk, &mut out);
        sc.push(chunk);
        lean.push(chunk);
        collector.push(chunk);
        let _ = filter.push(&restorer.push(chunk));
        responses.push(chunk);
        messages.push(chunk);
        let _ = events.push(chunk);
    }
    let _ = restorer.finish();
    let _ = events.finish();
    // A whole answer restored, thinking blocks kept (the Messages answer's tree when one is there).
    let mut whole = aigw_core::guard::Restorer::new(&masked).thinking(thinking);
    let _ = aigw_core::guard::restore_answer(&mut whole, &masked, data);
    if let Some(m) = messages.answer() {
        assert!(aigw_core::wire::messages_in::stream_from_message(&m).is_some(), "a collected Messages answer replays");
        let _ = messages.usage();
    }
    if let Some(r) = responses.answer() {
        let _ = aigw_core::wire::responses_in::stream_from_response(&r);
    }
    let _ = p.is_idle();
    // Quota's scanner (no answer facts) reads what the audit's reads of usage and the end.
    assert_eq!(
        (lean.usage, lean.content_events, lean.saw_end, lean.saw_error),
        (sc.usage, sc.content_events, sc.saw_end, sc.saw_error)
    );
    if let Some(answer) = collector.answer() {
        assert!(aigw_core::wire::chat::stream_from_answer(&answer).is_some(), "a collected answer replays");
    }
});
