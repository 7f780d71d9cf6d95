//! Header maps as the host hands them over (any bytes), and the allow-lists applied to them.
#![no_main]

use aigw_core::headers::{decode_map, forwarded_to_provider, is_internal, provider_response_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let extra = vec!["x-fake-fault".to_string()];
    for (name, value) in decode_map(data) {
        let _ = forwarded_to_provider(&name, &extra);
        let _ = provider_response_header(&name);
        let _ = is_internal(&name);
        let _ = value.len();
    }
});
