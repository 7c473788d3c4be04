//! How long one 384-dimension squared-L2 distance takes in hora 0.1.1 and in Kestrel's kernel (bench notes).
use hora::core::metrics::{metric, Metric};
use kestrel_engine::vector::kernels;
use std::time::Instant;
fn main() {
    let dim = 384;
    let n = 20_000;
    let rows: Vec<f32> = (0..n * dim)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let q: Vec<f32> = (0..dim).map(|i| (i % 13) as f32 / 13.0).collect();
    for _ in 0..2 {
        let t = Instant::now();
        let mut s = 0.0;
        for r in rows.chunks_exact(dim) {
            s += metric(&q, r, Metric::Euclidean).unwrap_or(0.0);
        }
        let hora = t.elapsed().as_secs_f64() / n as f64;
        let t = Instant::now();
        let mut s2 = 0.0;
        for r in rows.chunks_exact(dim) {
            s2 += kernels::l2_squared(&q, r);
        }
        let ours = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "hora {:.0} ns, kestrel {:.0} ns per distance ({:.1}x) [{s} {s2}]",
            hora * 1e9,
            ours * 1e9,
            hora / ours
        );
    }
}
