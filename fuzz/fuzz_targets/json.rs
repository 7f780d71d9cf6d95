//! The gateway's own JSON reader and writer (`wire::read`, `wire::write`) against serde_json's:
//! any bytes read as a tree (the gateway's `wire::tree`, `serde_json`'s `Value`) are read alike (the same tree, or both refused with the same
//! message), a tree written back is the same text, a value kept as its text is the
//! text of that value, and what is written reads back as the same tree.
#![no_main]

use aigw_core::wire::read::{self, Raw};
use aigw_core::wire::write;
use libfuzzer_sys::fuzz_target;
use aigw_core::wire::tree::Value;

/// An error's message without its place.
fn words(e: &str) -> &str {
    e.rfind(" at line ").map_or(e, |i| &e[..i])
}

fuzz_target!(|data: &[u8]| {
    let ours = read::from_slice::<Value>(data).map_err(|e| e.to_string());
    let theirs = serde_json::from_slice::<serde_json::Value>(data).map_err(|e| e.to_string());
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            // The same tree written the same: keys in the same order, the same numbers (a float
            // written as its shortest text, so the same text is the same bits).
            let written = write::to_vec(a);
            assert_eq!(written, serde_json::to_vec(b).unwrap(), "read or written differently");
            assert_eq!(read::from_slice::<Value>(&written).as_ref().ok(), Some(a), "does not read back");
            let raw = read::from_slice::<Raw>(data).expect("a value is a raw value");
            assert_eq!(read::from_str::<Value>(raw.get()).ok().as_ref(), Some(a), "raw text is another value");
        }
        // The same words; the place may differ by a few bytes in a string with escapes and bytes
        // that are not UTF-8 (serde_json places that error by its own reckoning).
        (Err(a), Err(b)) => assert_eq!(words(a), words(b), "refused differently"),
        _ => panic!("one reads it, the other does not: ours {ours:?}, serde_json {theirs:?}"),
    }
    // The typed readers on the same bytes: never a panic.
    let _ = read::from_slice::<Vec<Option<u64>>>(data);
    let _ = read::from_slice::<Option<std::borrow::Cow<str>>>(data);
    let _ = read::from_slice::<f64>(data);
});
