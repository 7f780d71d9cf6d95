//! Header maps as the host hands them over (any bytes), and the allow-lists applied to them;
//! what a map decodes to encodes and decodes back the same, and the call state's list follows
//! a set and a removal.
#![no_main]

use aigw_core::headers::{decode_map, forwarded_to_provider, is_internal, provider_response_header, HeaderList};
use libfuzzer_sys::fuzz_target;

/// The proxy-wasm ABI's serialisation of a header map.
fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (k, v) in pairs {
        out.extend(len(k.len()));
        out.extend(len(v.len()));
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let extra = vec!["x-fake-fault".to_string()];
    let pairs = decode_map(data);
    assert_eq!(decode_map(&encode(&pairs)), pairs);
    for (name, value) in &pairs {
        let _ = forwarded_to_provider(name, &extra);
        let _ = provider_response_header(name);
        let _ = is_internal(name);
        let _ = value.len();
    }
    let mut list = HeaderList::decode(data.to_vec());
    assert_eq!(list.len(), pairs.len());
    if let Some((first, _)) = pairs.first() {
        assert!(list.set(first, Some("set")));
        assert_eq!(list.get(first), Some("set"));
        assert!(list.set(first, None));
        assert_eq!(list.get(first), None);
        assert_eq!(list.len(), pairs.iter().filter(|(k, _)| k != first).count());
    }
});
