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

/// AVX2 + FMA: four 8-wide accumulators (32 floats per step) keep both FMA units busy.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(kernel: Kernel, a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY (all loads): i + 32 <= n, and both slices hold at least n values.
    match kernel {
        Kernel::L2Squared => {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    let d = _mm256_sub_ps(
                        _mm256_loadu_ps(pa.add(i + 8 * j)),
                        _mm256_loadu_ps(pb.add(i + 8 * j)),
                    );
                    *acc = _mm256_fmadd_ps(d, d, *acc);
                }
                i += 32;
            }
        }
        Kernel::Dot => {
            while i + 32 <= n {
                for (j, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i + 8 * j)),
                        _mm256_loadu_ps(pb.add(i + 8 * j)),
                        *acc,
                    );
                }
                i += 32;
            }
        }
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let head: f32 = lanes.iter().sum();
    head + portable(kernel, &a[i..n], &b[i..n])
}

/// The kernel against every row of a row-major block (`rows.len() / dim` vectors): one dispatch for the block,
/// and the inner loop inlined into it, which is what an exact scan spends its time in.
pub fn l2_squared_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut Vec<f32>) {
    rows_dispatch(Kernel::L2Squared, query, rows, dim, out)
}

/// Inner products of a query with every row of a row-major block.
pub fn dot_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut Vec<f32>) {
    rows_dispatch(Kernel::Dot, query, rows, dim, out)
}

#[inline(always)]
fn rows_portable(kernel: Kernel, query: &[f32], rows: &[f32], dim: usize, out: &mut Vec<f32>) {
    out.clear();
    if dim == 0 {
        return;
    }
    out.extend(
        rows.chunks_exact(dim)
            .map(|row| portable(kernel, query, row)),
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(kernel: Kernel, query: &[f32], rows: &[f32], dim: usize, out: &mut Vec<f32>) {
    out.clear();
    if dim == 0 {
        return;
    }
    // SAFETY: called only where AVX2 and FMA are present, like this function.
    out.extend(
        rows.chunks_exact(dim)
            .map(|row| unsafe { avx2(kernel, query, row) }),
    );
}

fn rows_dispatch(kernel: Kernel, query: &[f32], rows: &[f32], dim: usize, out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            // SAFETY: AVX2 and FMA are present (checked at run time); the function is safe code compiled with them.
            return unsafe { rows_avx2(kernel, query, rows, dim, out) };
        }
    }
    rows_portable(kernel, query, rows, dim, out)
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
    fn row_blocks_match_single_rows() {
        let dim = 37;
        let rows: Vec<f32> = (0..dim * 5).map(|i| (i % 11) as f32 * 0.25 - 1.0).collect();
        let q: Vec<f32> = (0..dim).map(|i| (i % 7) as f32 * 0.5).collect();
        let mut out = Vec::new();
        l2_squared_rows(&q, &rows, dim, &mut out);
        assert_eq!(out.len(), 5);
        for (r, d) in rows.chunks_exact(dim).zip(&out) {
            assert_eq!(*d, l2_squared(&q, r));
        }
        dot_rows(&q, &rows, dim, &mut out);
        for (r, d) in rows.chunks_exact(dim).zip(&out) {
            assert_eq!(*d, dot(&q, r));
        }
    }

    #[test]
    fn cratedb_documented_figure() {
        // CrateDB: VECTOR_SIMILARITY([1.2, 1.3], [10.2, 10.3]) = 0.006134969
        let d = l2_squared(&[1.2, 1.3], &[10.2, 10.3]);
        assert_eq!(format!("{}", 1.0f32 / (1.0 + d)), "0.006134969");
    }
}
