//! Benchmark (not a test): native cost of one Argon2id verify at the site's parameters.
//! `cargo run --release -p course-core --example password_bench`

use std::time::Instant;

fn main() {
    let hash = course_core::password::hash("bench-password").expect("hashing works");
    let rounds = 30;
    let mut samples: Vec<f64> = (0..rounds + 3)
        .map(|_| {
            let t = Instant::now();
            assert!(course_core::password::verify("bench-password", &hash));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .skip(3)
        .collect();
    samples.sort_by(f64::total_cmp);
    println!(
        "native Argon2id verify (m={} KiB, t={}, p={}), {rounds} rounds: median {:.1} ms, min {:.1} ms",
        course_core::password::M_COST_KIB,
        course_core::password::T_COST,
        course_core::password::P_COST,
        samples[samples.len() / 2],
        samples[0]
    );
}
