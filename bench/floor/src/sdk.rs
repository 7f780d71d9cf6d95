//! The few proxy-wasm SDK names the floor's contexts use, over the gateway's own host calls and
//! entry points (`aigw_host`), for the floor linked into the gateway's module (`in-bundle`):
//! that module has no SDK (its exports would clash with the gateway's), and the floor's code
//! stays the same in both builds.

pub use aigw_host::{Action, HttpContext};

#[derive(Clone, Copy)]
pub enum MapType {
    HttpRequestHeaders,
    HttpResponseHeaders,
}

#[derive(Clone, Copy)]
pub enum BufferType {
    HttpRequestBody,
    HttpResponseBody,
}

#[derive(Clone, Copy)]
pub enum MetricType {
    Counter,
    Histogram,
}

pub mod hc {
    use super::{BufferType, MapType, MetricType};
    use aigw_host::abi;

    type Status = u32;

    fn map(m: MapType) -> u32 {
        match m {
            MapType::HttpRequestHeaders => abi::REQUEST_HEADERS,
            MapType::HttpResponseHeaders => abi::RESPONSE_HEADERS,
        }
    }

    fn buffer(b: BufferType) -> u32 {
        match b {
            BufferType::HttpRequestBody => abi::REQUEST_BODY,
            BufferType::HttpResponseBody => abi::RESPONSE_BODY,
        }
    }

    pub fn get_map(m: MapType) -> Result<Vec<(String, String)>, Status> {
        abi::header_pairs(map(m)).map(|b| aigw_core::headers::decode_map(&b))
    }

    pub fn get_map_value(m: MapType, name: &str) -> Result<Option<Vec<u8>>, Status> {
        abi::header(map(m), name).map(Some)
    }

    pub fn set_map_value(m: MapType, name: &str, value: Option<&str>) -> Result<(), Status> {
        abi::set_header(map(m), name, value.map(str::as_bytes))
    }

    pub fn add_map_value(m: MapType, name: &str, value: &str) -> Result<(), Status> {
        abi::add_header(map(m), name, value.as_bytes())
    }

    pub fn set_map(m: MapType, pairs: Vec<(&str, &str)>) -> Result<(), Status> {
        abi::set_header_pairs(map(m), &abi::encode_map(&pairs))
    }

    pub fn get_buffer(b: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, Status> {
        abi::buffer(buffer(b), start, max).map(Some)
    }

    pub fn set_buffer(b: BufferType, start: usize, size: usize, data: &[u8]) -> Result<(), Status> {
        abi::set_buffer(buffer(b), start, size, data)
    }

    pub fn get_property(path: Vec<&str>) -> Result<Option<Vec<u8>>, Status> {
        abi::property(&abi::property_path(&path)).map(Some)
    }

    pub fn set_property(path: Vec<&str>, value: Option<&[u8]>) -> Result<(), Status> {
        abi::set_property(&abi::property_path(&path), value.unwrap_or_default())
    }

    pub fn get_shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Status> {
        abi::shared_data(key).map(|(v, cas)| (v, (cas != 0).then_some(cas)))
    }

    pub fn set_shared_data(key: &str, value: Option<&[u8]>, cas: Option<u32>) -> Result<(), Status> {
        abi::set_shared_data(key, value.unwrap_or_default(), cas.unwrap_or(0))
    }

    pub fn call_foreign_function(name: &str, arguments: Option<&[u8]>) -> Result<Vec<u8>, Status> {
        abi::call_foreign_function(name, arguments.unwrap_or_default())
    }

    pub fn get_current_time() -> Result<u64, Status> {
        abi::now_ns()
    }

    pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, Status> {
        let kind = match kind {
            MetricType::Counter => abi::COUNTER,
            MetricType::Histogram => abi::HISTOGRAM,
        };
        abi::define_metric(kind, name)
    }

    pub fn increment_metric(id: u32, by: i64) -> Result<(), Status> {
        abi::increment_metric(id, by)
    }

    pub fn record_metric(id: u32, value: u64) -> Result<(), Status> {
        abi::record_metric(id, value)
    }
}
