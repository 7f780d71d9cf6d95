//! Server-sent events, split anywhere, and the stream scanner that reads usage from them.
#![no_main]

use aigw_core::wire::sse::Parser;
use aigw_core::wire::usage::StreamScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut p = Parser::default();
    let mut out = Vec::new();
    let mut sc = StreamScanner::default();
    for chunk in data.chunks(cut) {
        p.push(chunk, &mut out);
        sc.push(chunk);
    }
    let _ = p.is_idle();
});
