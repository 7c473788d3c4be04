//! Distance kernels: the inner loops of every vector function and of exact KNN search.
//!
//! Each kernel keeps 16 independent partial sums so the compiler can vectorise the loop without reassociating
//! floating-point additions (a plain `iter().sum()` stays scalar). On x86-64 the same code is also compiled with
//! AVX2+FMA and picked at run time when the CPU has them.

/// Squared euclidean distance Σ(aᵢ−bᵢ)².
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    dispatch(Kernel::L2Squared, a, b)
}

/// Inner product Σaᵢbᵢ.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    dispatch(Kernel::Dot, a, b)
}

/// Squared norm Σaᵢ².
#[inline]
pub fn norm_squared(a: &[f32]) -> f32 {
    dispatch(Kernel::Dot, a, a)
}

#[derive(Clone, Copy)]
enum Kernel {
    L2Squared,
    Dot,
}

const LANES: usize = 16;

#[inline(always)]
fn portable(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks_a = a.chunks_exact(LANES);
    let chunks_b = b.chunks_exact(LANES);
    let (rest_a, rest_b) = (chunks_a.remainder(), chunks_b.remainder());
    match kernel {
        Kernel::L2Squared => {
            for (x, y) in chunks_a.zip(chunks_b) {
                for i in 0..LANES {
                    let d = x[i] - y[i];
                    acc[i] += d * d;
                }
            }
            for (i, (x, y)) in rest_a.iter().zip(rest_b).enumerate() {
                let d = x - y;
                acc[i] += d * d;
            }
        }
        Kernel::Dot => {
            for (x, y) in chunks_a.zip(chunks_b) {
                for i in 0..LANES {
                    acc[i] += x[i] * y[i];
                }
            }
            for (i, (x, y)) in rest_a.iter().zip(rest_b).enumerate() {
                acc[i] += x * y;
            }
        }
    }
    // Pairwise reduction keeps the rounding error as small as the lane layout allows.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            acc[i] += acc[i + width];
        }
        width /= 2;
    }
    acc[0]
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    portable(kernel, a, b)
}

#[inline]
fn dispatch(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time above); `avx2` only enables those
            // instructions for safe code.
            return unsafe { avx2(kernel, a, b) };
        }
    }
    portable(kernel, a, b)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_l2(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum()
    }

    #[test]
    fn kernels_match_a_naive_loop_for_every_length() {
        for n in [0usize, 1, 2, 7, 15, 16, 17, 33, 384, 4099] {
            let a: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 97) as f32 / 13.0 - 3.0)
                .collect();
            let b: Vec<f32> = (0..n)
                .map(|i| ((i * 104729) % 89) as f32 / 11.0 - 4.0)
                .collect();
            let want = naive_l2(&a, &b);
            assert!(
                (l2_squared(&a, &b) as f64 - want).abs() <= 1e-4 * want.max(1.0),
                "n={n}"
            );
            let want_dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - want_dot).abs() <= 1e-4 * want_dot.abs().max(1.0));
            let want_norm: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
            assert!((norm_squared(&a) as f64 - want_norm).abs() <= 1e-4 * want_norm.max(1.0));
        }
    }

    #[test]
    fn cratedb_documented_figure() {
        // CrateDB: VECTOR_SIMILARITY([1.2, 1.3], [10.2, 10.3]) = 0.006134969
        let d = l2_squared(&[1.2, 1.3], &[10.2, 10.3]);
        assert_eq!(format!("{}", 1.0f32 / (1.0 + d)), "0.006134969");
    }
}
