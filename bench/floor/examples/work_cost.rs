//! Times `floor+work10`'s extra Wasm work natively: `cargo run --release -p aigw-bench-floor
//! --example work_cost`. With the bench's `floor` and `floor+work10` rows, it tells what a µs
//! of the Rust side, timed natively, costs in Envoy.

use std::time::Instant;

const ANSWER: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"Hello! I am fine, thank you."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":9}}"#;

fn main() {
    let n = 20_000;
    let mut sink = 0;
    for _ in 0..1000 {
        sink += aigw_bench_floor::work(ANSWER.as_bytes(), 10);
    }
    let t0 = Instant::now();
    for _ in 0..n {
        sink += aigw_bench_floor::work(ANSWER.as_bytes(), 10);
    }
    println!("{:.2} µs per call ({sink} bytes written)", t0.elapsed().as_secs_f64() * 1e6 / f64::from(n));
}
