//! The proxy-wasm host calls the filters use, declared here with `u32` statuses.
//!
//! The SDK's `hostcalls` wrappers `panic!` on any status they did not expect (a header written
//! in a phase where Envoy refuses it, a buffer that is not there), and decode header maps with
//! `String::from_utf8(..).unwrap()`. A panic traps the worker's VM, and every later call on that
//! worker fails until Envoy replaces the VM. Here every status is a value and every byte from
//! outside stays bytes: nothing on these paths can panic.
//!
//! Natively (clippy, unit tests of the crates that depend on this one) there is no host: reads
//! find nothing and writes fail with `NOT_FOUND`.

/// The ABI's status codes that the filters act on.
pub const OK: u32 = 0;
pub const NOT_FOUND: u32 = 1;
pub const CAS_MISMATCH: u32 = 8;

/// Map types (`proxy_get_header_map_*`).
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// Stream types (`proxy_continue_stream`).
pub const STREAM_REQUEST: u32 = 0;
pub const STREAM_RESPONSE: u32 = 1;

/// Buffer types (`proxy_get_buffer_bytes`).
pub const REQUEST_BODY: u32 = 0;
pub const RESPONSE_BODY: u32 = 1;
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

/// Metric types (`proxy_define_metric`).
pub const COUNTER: u32 = 0;
pub const HISTOGRAM: u32 = 2;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::OK;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_get_buffer_bytes(buffer: u32, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_set_buffer_bytes(buffer: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
        fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
        fn proxy_get_shared_data(
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
            cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32)
            -> u32;
        #[allow(clippy::too_many_arguments)]
        fn proxy_send_local_response(
            status: u32,
            details: *const u8,
            details_size: usize,
            body: *const u8,
            body_size: usize,
            headers: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_continue_stream(stream: u32) -> u32;
        fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_call_foreign_function(
            name: *const u8,
            name_size: usize,
            arguments: *const u8,
            arguments_size: usize,
            results: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
        fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
        fn proxy_increment_metric(id: u32, offset: i64) -> u32;
        fn proxy_record_metric(id: u32, value: u64) -> u32;
        fn proxy_http_call(
            upstream: *const u8,
            upstream_size: usize,
            headers: *const u8,
            headers_size: usize,
            body: *const u8,
            body_size: usize,
            trailers: *const u8,
            trailers_size: usize,
            timeout_ms: u32,
            token: *mut u32,
        ) -> u32;
        fn proxy_set_effective_context(context_id: u32) -> u32;
    }

    #[link(wasm_import_module = "wasi_snapshot_preview1")]
    extern "C" {
        fn random_get(buf: *mut u8, buf_len: usize) -> u32;
    }

    fn status(s: u32) -> Result<(), u32> {
        if s == OK {
            Ok(())
        } else {
            Err(s)
        }
    }

    pub fn log(level: u32, message: &str) -> Result<(), u32> {
        // SAFETY: `message` is valid for the call.
        status(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
    }

    pub fn now_ns() -> Result<u64, u32> {
        let mut t = 0u64;
        // SAFETY: the out-pointer is valid for the call.
        status(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).map(|()| t)
    }

    /// Eight random bytes from the runtime (WASI's `random_get`; its errno on failure).
    pub fn random_u64() -> Result<u64, u32> {
        let mut b = [0u8; 8];
        // SAFETY: the buffer is valid for its 8 bytes for the call.
        status(unsafe { random_get(b.as_mut_ptr(), b.len()) }).map(|()| u64::from_le_bytes(b))
    }

    pub fn set_tick_period(ms: u32) -> Result<(), u32> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_tick_period_milliseconds(ms) })
    }

    pub fn call_foreign_function(name: &str, arguments: &[u8]) -> Result<Vec<u8>, u32> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the slices and the out-pointers are valid for the call.
        status(unsafe {
            proxy_call_foreign_function(
                name.as_ptr(),
                name.len(),
                arguments.as_ptr(),
                arguments.len(),
                &mut data,
                &mut size,
            )
        })
        .map(|()| owned(data, size))
    }

    pub fn define_metric(kind: u32, name: &str) -> Result<u32, u32> {
        let mut id = 0u32;
        // SAFETY: `name` and the out-pointer are valid for the call.
        status(unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) }).map(|()| id)
    }

    pub fn increment_metric(id: u32, by: i64) -> Result<(), u32> {
        // SAFETY: no pointers.
        status(unsafe { proxy_increment_metric(id, by) })
    }

    pub fn record_metric(id: u32, value: u64) -> Result<(), u32> {
        // SAFETY: no pointers.
        status(unsafe { proxy_record_metric(id, value) })
    }

    /// An outgoing HTTP call; its token. `headers` as [`super::encode_map`] writes a map.
    pub fn http_call(upstream: &str, headers: &[u8], body: &[u8], timeout_ms: u32) -> Result<u32, u32> {
        let mut token = 0u32;
        // SAFETY: the slices and the out-pointer are valid for the call.
        status(unsafe {
            proxy_http_call(
                upstream.as_ptr(),
                upstream.len(),
                headers.as_ptr(),
                headers.len(),
                body.as_ptr(),
                body.len(),
                std::ptr::null(),
                0,
                timeout_ms,
                &mut token,
            )
        })
        .map(|()| token)
    }

    pub fn set_effective_context(context_id: u32) -> Result<(), u32> {
        // SAFETY: no pointers.
        status(unsafe { proxy_set_effective_context(context_id) })
    }

    /// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`
    /// ([`crate::dispatch`]: a boxed slice of exactly `size` bytes from this module's global
    /// allocator).
    fn owned(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            return Vec::new();
        }
        // SAFETY: the host wrote `size` bytes into memory it allocated with the allocator the
        // SDK exports (`Vec::with_capacity(size)`), and hands it over to us.
        unsafe { Vec::from_raw_parts(data, size, size) }
    }

    pub fn header_pairs(map: u32) -> Result<Vec<u8>, u32> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the out-pointers are valid for the call.
        let status = unsafe { proxy_get_header_map_pairs(map, &mut data, &mut size) };
        if status == OK {
            Ok(owned(data, size))
        } else {
            Err(status)
        }
    }

    /// Replaces a whole header map (`pairs` as [`super::encode_map`] writes it).
    pub fn set_header_pairs(map: u32, pairs: &[u8]) -> Result<(), u32> {
        // SAFETY: `pairs` is valid for the call.
        status(unsafe { proxy_set_header_map_pairs(map, pairs.as_ptr(), pairs.len()) })
    }

    pub fn header(map: u32, name: &str) -> Result<Vec<u8>, u32> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: `name` and the out-pointers are valid for the call.
        let status = unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut data, &mut size) };
        if status == OK {
            Ok(owned(data, size))
        } else {
            Err(status)
        }
    }

    pub fn set_header(map: u32, name: &str, value: Option<&[u8]>) -> Result<(), u32> {
        // SAFETY: the slices are valid for the call.
        let status = unsafe {
            match value {
                Some(v) => proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
                None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
            }
        };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    /// Adds a value for `name` (another one, if the map has it: only for a header known absent).
    pub fn add_header(map: u32, name: &str, value: &[u8]) -> Result<(), u32> {
        // SAFETY: the slices are valid for the call.
        let status = unsafe { proxy_add_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    pub fn buffer(buffer: u32, start: usize, max: usize) -> Result<Vec<u8>, u32> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: the out-pointers are valid for the call.
        let status = unsafe { proxy_get_buffer_bytes(buffer, start, max, &mut data, &mut size) };
        if status == OK {
            Ok(owned(data, size))
        } else {
            Err(status)
        }
    }

    pub fn set_buffer(buffer: u32, start: usize, size: usize, data: &[u8]) -> Result<(), u32> {
        // SAFETY: `data` is valid for the call.
        let status = unsafe { proxy_set_buffer_bytes(buffer, start, size, data.as_ptr(), data.len()) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    pub fn property(path: &[u8]) -> Result<Vec<u8>, u32> {
        let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
        // SAFETY: `path` and the out-pointers are valid for the call.
        let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
        if status == OK {
            Ok(owned(data, size))
        } else {
            Err(status)
        }
    }

    pub fn set_property(path: &[u8], value: &[u8]) -> Result<(), u32> {
        // SAFETY: the slices are valid for the call.
        let status = unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
        let (mut data, mut size, mut cas) = (std::ptr::null_mut(), 0usize, 0u32);
        // SAFETY: `key` and the out-pointers are valid for the call.
        let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
        if status == OK {
            Ok(((!data.is_null()).then(|| owned(data, size)), cas))
        } else {
            Err(status)
        }
    }

    pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
        // SAFETY: the slices are valid for the call.
        let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    pub fn continue_stream(stream: u32) -> Result<(), u32> {
        // SAFETY: no pointers.
        let status = unsafe { proxy_continue_stream(stream) };
        if status == OK {
            Ok(())
        } else {
            Err(status)
        }
    }

    pub fn send_local_response(status: u32, headers: &[u8], body: &[u8]) -> Result<(), u32> {
        // SAFETY: the slices are valid for the call.
        let r = unsafe {
            proxy_send_local_response(
                status,
                std::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        };
        if r == OK {
            Ok(())
        } else {
            Err(r)
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::NOT_FOUND;

    pub fn header_pairs(_map: u32) -> Result<Vec<u8>, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_header_pairs(_map: u32, _pairs: &[u8]) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn header(_map: u32, _name: &str) -> Result<Vec<u8>, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_header(_map: u32, _name: &str, _value: Option<&[u8]>) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn add_header(_map: u32, _name: &str, _value: &[u8]) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn buffer(_buffer: u32, _start: usize, _max: usize) -> Result<Vec<u8>, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_buffer(_buffer: u32, _start: usize, _size: usize, _data: &[u8]) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn property(_path: &[u8]) -> Result<Vec<u8>, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_property(_path: &[u8], _value: &[u8]) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn shared_data(_key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
        Err(NOT_FOUND)
    }
    pub fn set_shared_data(_key: &str, _value: &[u8], _cas: u32) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn send_local_response(_status: u32, _headers: &[u8], _body: &[u8]) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn continue_stream(_stream: u32) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn log(_level: u32, _message: &str) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn now_ns() -> Result<u64, u32> {
        Err(NOT_FOUND)
    }
    pub fn random_u64() -> Result<u64, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_tick_period(_ms: u32) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn call_foreign_function(_name: &str, _arguments: &[u8]) -> Result<Vec<u8>, u32> {
        Err(NOT_FOUND)
    }
    pub fn define_metric(_kind: u32, _name: &str) -> Result<u32, u32> {
        Err(NOT_FOUND)
    }
    pub fn increment_metric(_id: u32, _by: i64) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn record_metric(_id: u32, _value: u64) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
    pub fn http_call(_upstream: &str, _headers: &[u8], _body: &[u8], _timeout_ms: u32) -> Result<u32, u32> {
        Err(NOT_FOUND)
    }
    pub fn set_effective_context(_context_id: u32) -> Result<(), u32> {
        Err(NOT_FOUND)
    }
}

pub use imp::*;

/// A property path as the ABI takes it: the segments joined by NUL.
pub fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// A header map as the ABI takes it (see `aigw_core::headers::decode_map` for the layout).
pub use aigw_core::headers::encode_map;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_paths_round_trip_through_the_core_decoder() {
        let m = encode_map(&[(":status", "200"), ("x-a", "")]);
        assert_eq!(
            aigw_core::headers::decode_map(&m),
            vec![(":status".to_string(), "200".to_string()), ("x-a".to_string(), String::new())]
        );
        assert_eq!(property_path(&["xds", "upstream_host_metadata"]), b"xds\0upstream_host_metadata".to_vec());
        assert!(property_path(&[]).is_empty());
    }
}
