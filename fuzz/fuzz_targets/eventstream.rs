//! Bedrock's binary AWS event stream, split anywhere, and its translation to chat chunks.
#![no_main]

use aigw_core::provider::bedrock::StreamTranslator;
use aigw_core::wire::eventstream::Decoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cut = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut d = Decoder::default();
    let mut t = StreamTranslator::new("m", "id", 0);
    for chunk in data.chunks(cut) {
        let _ = d.push(chunk);
        let _ = t.push(chunk);
    }
    let _ = t.finish();
});
