//! Header maps as the host hands them over (any bytes), and the allow-lists applied to them;
//! what a map decodes to encodes and decodes back the same, and the call state's list follows
//! a set and a removal.
#![no_main]

use aigw_core::headers::{
    decode_map, encode_map, forwarded_to_provider, is_internal, provider_response_header, HeaderList,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let extra = vec!["x-fake-fault".to_string()];
    let pairs = decode_map(data);
    let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(decode_map(&encode_map(&borrowed)), pairs);
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
