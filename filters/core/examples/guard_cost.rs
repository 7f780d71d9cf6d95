//! Times the guard stage's scan and its prompt-injection rules natively: `cargo run --release -p aigw-core --example guard_cost`.
use std::time::Instant;

fn main() {
    let prose = "The quarterly report covers revenue, churn and the hiring plan for the new office. \
                 Please summarise the main risks and the actions the team agreed on last week. ";
    let piece = format!("{prose}Contact priya.sharma@example.in or +91 98765 43210; id 2345 6789 0124. ");
    let text: String = piece.repeat(64 * 1024 / piece.len() + 1).chars().take(64 * 1024).collect();
    let n = 50;
    let t = Instant::now();
    let mut found = 0;
    for _ in 0..n {
        found += aigw_core::guard::detect::scan(&text, &|_| true, &[]).len();
    }
    println!("scan of 64 KiB of prose with 3 values per KiB: {:?} ({} values)", t.elapsed() / n, found / n as usize);
    let rules = aigw_core::guard::injection::default_rules();
    let matcher = aigw_core::guard::injection::Matcher::new(&rules);
    let small: String = text.chars().take(1024).collect();
    for (name, t_) in [("64 KiB", &text), ("1 KiB", &small)] {
        let t = Instant::now();
        let mut score = 0.0;
        for _ in 0..n {
            score += matcher.score(t_).0;
        }
        println!("injection rules over {name}: {:?} (score {})", t.elapsed() / n, score / f64::from(n));
    }
}
