//! The hot loop of k-means, owned here: k-means++ starts and Lloyd
//! iterations over row chunks in parallel, deterministic.
//!
//! linfa-clustering 0.8.1 computes distances one scalar at a time and updates
//! centroids on one thread. Here each chunk of [`CHUNK_ROWS`] rows is
//! assigned in parallel using ||x||^2 - 2 x.c + ||c||^2 with precomputed
//! norms, and produces its partial sums; the partials are then added in chunk
//! order. Chunks are fixed by the row count, not the thread count, so the
//! floating-point sums, and thus the result, are the same on 1 or 64 threads.
//!
//! Stopping follows scikit-learn: after an update, stop when the squared
//! centroid shift is at most `tolerance x` the mean per-feature variance of
//! the data. The reported inertia is a sum, computed from the final centroids.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Rows per parallel chunk; fixed so that results do not depend on threads.
pub const CHUNK_ROWS: usize = 4096;

/// Result of one Lloyd run.
#[derive(Debug, Clone, PartialEq)]
pub struct LloydResult {
    /// Final centroids.
    pub centroids: Array2<f64>,
    /// Nearest centroid per row, for the final centroids.
    pub labels: Vec<usize>,
    /// Sum of squared distances to the final centroids.
    pub inertia: f64,
    /// Iterations run.
    pub n_iterations: u64,
}

fn row_norms(x: ArrayView2<f64>) -> Vec<f64> {
    x.axis_iter(Axis(0)).map(|row| row.dot(&row)).collect()
}

/// Per chunk: labels and squared distances (when asked for), per-centroid
/// sums (k x d, row-major) and counts.
struct ChunkPartial {
    labels: Vec<usize>,
    distances: Vec<f64>,
    sums: Vec<f64>,
    counts: Vec<f64>,
}

/// Assigns one chunk of rows: [`assign_rows`] with k known at compile time
/// up to 16 centroids (so the per-row dot products stay in registers), any
/// k beyond.
fn assign_chunk(
    xs: &[f64],
    d: usize,
    norms: &[f64],
    centroids_t: &[f64],
    centroid_norms: &[f64],
    keep_labels: bool,
) -> ChunkPartial {
    // Up to 16 centroids with k known at compile time; 0: any k.
    macro_rules! dispatch {
        ($($k:literal)*) => {
            match centroid_norms.len() {
                $($k => assign_rows::<$k>(xs, d, norms, centroids_t, centroid_norms, keep_labels),)*
                _ => assign_rows::<0>(xs, d, norms, centroids_t, centroid_norms, keep_labels),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// Rows whose dot products are computed together: independent
/// accumulators, so the multiply-adds are not waiting on each other.
const ROWS_TOGETHER: usize = 4;

/// The rows' nearest centroids. Per row, the dot products with every
/// centroid accumulate feature by feature (in that order, whatever the
/// blocking) over the centroids laid out feature-major
/// (`centroids_t[f * k + j]`), vectorised across centroids and
/// [`ROWS_TOGETHER`] rows at a time; `K` is the number of centroids (0: only
/// known at run time). No copy of the rows is made. Compiled for AVX2 with
/// FMA and for AVX as well as the baseline; the best the CPU has is chosen
/// at run time (multiversion), so one binary runs everywhere.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn assign_rows<const K: usize>(
    xs: &[f64],
    d: usize,
    norms: &[f64],
    centroids_t: &[f64],
    centroid_norms: &[f64],
    keep_labels: bool,
) -> ChunkPartial {
    let k = if K == 0 { centroid_norms.len() } else { K };
    let rows = norms.len();
    let capacity = if keep_labels { rows } else { 0 };
    let mut partial = ChunkPartial {
        labels: Vec::with_capacity(capacity),
        distances: Vec::with_capacity(capacity),
        sums: vec![0.0; k * d],
        counts: vec![0.0; k],
    };
    // The nearest centroid (the first of equals), without branches.
    let mut record = |row: &[f64], norm: f64, dot: &[f64]| {
        let mut best = 0;
        let mut best_distance = f64::INFINITY;
        for (j, (c, p)) in centroid_norms.iter().zip(dot).enumerate() {
            let distance = c - 2.0 * p;
            let closer = distance < best_distance;
            best = if closer { j } else { best };
            best_distance = if closer { distance } else { best_distance };
        }
        for (total, value) in partial.sums[best * d..(best + 1) * d].iter_mut().zip(row) {
            *total += value;
        }
        partial.counts[best] += 1.0;
        if keep_labels {
            partial.labels.push(best);
            partial.distances.push((best_distance + norm).max(0.0));
        }
    };
    if K > 0 {
        // Accumulators in registers: K known, ROWS_TOGETHER rows at once.
        let together = rows / ROWS_TOGETHER * ROWS_TOGETHER;
        for (group, group_norms) in xs[..together * d]
            .chunks_exact(ROWS_TOGETHER * d)
            .zip(norms[..together].chunks_exact(ROWS_TOGETHER))
        {
            let mut dots = [[0.0f64; K]; ROWS_TOGETHER];
            for (f, column) in centroids_t.chunks_exact(K).enumerate() {
                let column: &[f64; K] = column.try_into().expect("K centroids");
                for (r, dot) in dots.iter_mut().enumerate() {
                    let value = group[r * d + f];
                    for j in 0..K {
                        dot[j] += value * column[j];
                    }
                }
            }
            for (r, dot) in dots.iter().enumerate() {
                record(&group[r * d..(r + 1) * d], group_norms[r], dot);
            }
        }
        for (row, norm) in xs[together * d..].chunks_exact(d).zip(&norms[together..]) {
            let mut dot = [0.0f64; K];
            for (value, column) in row.iter().zip(centroids_t.chunks_exact(K)) {
                for (acc, c) in dot.iter_mut().zip(column) {
                    *acc += value * c;
                }
            }
            record(row, *norm, &dot);
        }
    } else {
        let mut dot = vec![0.0; k];
        for (row, norm) in xs.chunks_exact(d).zip(norms) {
            dot.fill(0.0);
            for (value, column) in row.iter().zip(centroids_t.chunks_exact(k.max(1))) {
                for (acc, c) in dot.iter_mut().zip(column) {
                    *acc += value * c;
                }
            }
            record(row, *norm, &dot);
        }
    }
    partial
}

/// One assignment pass: labels and squared distances (empty unless
/// `keep_labels`), and centroid sums and counts combined in chunk order.
fn assign_all(
    x: ArrayView2<f64>,
    norms: &[f64],
    centroids: ArrayView2<f64>,
    keep_labels: bool,
) -> (Vec<usize>, Vec<f64>, Array2<f64>, Vec<f64>) {
    let centroid_norms = row_norms(centroids);
    let (n, d) = x.dim();
    let centroids_t: Vec<f64> = centroids.t().iter().copied().collect();
    let contiguous = x.as_standard_layout();
    let xs = contiguous
        .as_slice()
        .expect("a standard-layout array is contiguous");
    let partials: Vec<ChunkPartial> = xs
        .par_chunks(CHUNK_ROWS * d.max(1))
        .zip(norms.par_chunks(CHUNK_ROWS))
        .map(|(chunk, chunk_norms)| {
            assign_chunk(
                chunk,
                d,
                chunk_norms,
                &centroids_t,
                &centroid_norms,
                keep_labels,
            )
        })
        .collect();
    let k = centroids.nrows();
    let mut labels = Vec::with_capacity(if keep_labels { n } else { 0 });
    let mut distances = Vec::with_capacity(if keep_labels { n } else { 0 });
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0.0; k];
    for partial in partials {
        labels.extend(partial.labels);
        distances.extend(partial.distances);
        for (total, value) in sums.iter_mut().zip(partial.sums) {
            *total += value;
        }
        for (total, count) in counts.iter_mut().zip(partial.counts) {
            *total += count;
        }
    }
    let sums = Array2::from_shape_vec((k, d), sums).unwrap_or_else(|_| Array2::zeros((k, d)));
    (labels, distances, sums, counts)
}

/// Mean per-feature variance: scikit-learn's scale of the tolerance.
pub fn mean_variance(x: ArrayView2<f64>) -> f64 {
    if x.nrows() == 0 {
        return 0.0;
    }
    x.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0)
}

/// Lloyd iterations from given centres.
pub fn lloyd(
    x: ArrayView2<f64>,
    initial: Array2<f64>,
    max_iterations: u64,
    tolerance: f64,
) -> LloydResult {
    let norms = row_norms(x);
    let threshold = tolerance * mean_variance(x);
    let mut centroids = initial;
    let mut n_iterations = 0;
    while n_iterations < max_iterations {
        let (_, _, sums, counts) = assign_all(x, &norms, centroids.view(), false);
        let mut next = centroids.clone();
        for (j, count) in counts.iter().enumerate() {
            // An emptied centroid stays where it was (it may win rows back).
            if *count > 0.0 {
                next.row_mut(j).assign(&(&sums.row(j) / *count));
            }
        }
        let shift: f64 = (&next - &centroids).mapv(|v| v * v).sum();
        centroids = next;
        n_iterations += 1;
        if shift <= threshold {
            break;
        }
    }
    let (labels, distances, _, _) = assign_all(x, &norms, centroids.view(), true);
    let inertia = distances.iter().sum();
    LloydResult {
        centroids,
        labels,
        inertia,
        n_iterations,
    }
}

/// Greedy k-means++ (as scikit-learn): each new centre is the best of
/// 2 + ln(k) candidates drawn in proportion to the squared distance to the
/// nearest chosen centre. The candidates of one round are drawn first (from
/// one cumulative sum) and scored in one parallel pass over the rows.
pub fn kmeans_plus_plus(x: ArrayView2<f64>, k: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut centres = Array2::<f64>::zeros((k, d));
    if n == 0 || k == 0 {
        return centres;
    }
    let contiguous = x.as_standard_layout();
    let xs = contiguous
        .as_slice()
        .expect("a standard-layout array is contiguous");
    let row = |i: usize| &xs[i * d..(i + 1) * d];
    let squared =
        |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum() };
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.gen_range(0..n);
    centres.row_mut(0).assign(&x.row(first));
    let mut closest: Array1<f64> = Array1::from_vec(
        xs.par_chunks_exact(d)
            .map(|r| squared(r, row(first)))
            .collect(),
    );
    for c in 1..k {
        let potential: f64 = closest.sum();
        // Inverse-CDF draws over the cumulative squared distances.
        let cumulative: Vec<f64> = closest
            .iter()
            .scan(0.0, |total, d| {
                *total += d;
                Some(*total)
            })
            .collect();
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                if potential > 0.0 {
                    let target = rng.gen::<f64>() * potential;
                    cumulative.partition_point(|c| *c < target).min(n - 1)
                } else {
                    rng.gen_range(0..n)
                }
            })
            .collect();
        // Each row's distance to its nearest centre with each candidate
        // added, row-major (`trials` values per row).
        let candidate_rows: Vec<f64> = candidates.iter().flat_map(|c| row(*c)).copied().collect();
        let closest_slice = closest.as_slice().expect("contiguous");
        let mut with_candidates = vec![0.0; n * trials];
        with_candidates
            .par_chunks_mut(CHUNK_ROWS * trials)
            .zip(xs.par_chunks(CHUNK_ROWS * d))
            .zip(closest_slice.par_chunks(CHUNK_ROWS))
            .for_each(|((out, rows), closest)| {
                nearest_with_candidates(rows, d, &candidate_rows, closest, out)
            });
        let mut best: Option<(f64, usize)> = None;
        for t in 0..trials {
            let total: f64 = with_candidates.iter().skip(t).step_by(trials).sum();
            if best.is_none_or(|(b, _)| total < b) {
                best = Some((total, t));
            }
        }
        if let Some((_, t)) = best {
            centres.row_mut(c).assign(&x.row(candidates[t]));
            closest = with_candidates
                .iter()
                .skip(t)
                .step_by(trials)
                .copied()
                .collect();
        }
    }
    centres
}

/// For each row: its squared distance to the nearest chosen centre with
/// each candidate centre added (`out[row * trials + t]`).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn nearest_with_candidates(
    rows: &[f64],
    d: usize,
    candidates: &[f64],
    closest: &[f64],
    out: &mut [f64],
) {
    let trials = candidates.len() / d.max(1);
    for ((row, nearest), out) in rows
        .chunks_exact(d)
        .zip(closest)
        .zip(out.chunks_exact_mut(trials.max(1)))
    {
        for (value, candidate) in out.iter_mut().zip(candidates.chunks_exact(d)) {
            let squared: f64 = row
                .iter()
                .zip(candidate)
                .map(|(p, q)| (p - q) * (p - q))
                .sum();
            *value = nearest.min(squared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn lloyd_converges_to_the_hand_worked_means() {
        let x = array![[0.0], [2.0], [10.0], [12.0]];
        let result = lloyd(x.view(), array![[0.0], [2.0]], 100, 0.0);
        assert_eq!(result.centroids, array![[1.0], [11.0]]);
        assert_eq!(result.labels, vec![0, 0, 1, 1]);
        assert_eq!(result.inertia, 4.0);
    }

    #[test]
    fn chunked_sums_do_not_depend_on_the_thread_count() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let x = Array2::from_shape_fn((3 * CHUNK_ROWS + 17, 3), |_| rng.gen::<f64>());
        let start = kmeans_plus_plus(x.view(), 5, &mut ChaCha8Rng::seed_from_u64(2));
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| lloyd(x.view(), start.clone(), 20, 0.0));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool")
            .install(|| lloyd(x.view(), start.clone(), 20, 0.0));
        assert_eq!(one, three);
    }

    #[test]
    fn kmeans_plus_plus_picks_distinct_rows() {
        let x = array![[0.0, 0.0], [0.0, 0.1], [9.0, 9.0], [9.1, 9.0], [-9.0, 5.0]];
        let centres = kmeans_plus_plus(x.view(), 3, &mut ChaCha8Rng::seed_from_u64(4));
        let rows: Vec<Vec<f64>> = centres.outer_iter().map(|r| r.to_vec()).collect();
        assert!(
            rows.iter().any(|r| r[0] > 8.0)
                && rows.iter().any(|r| r[0] < -8.0)
                && rows.iter().any(|r| r[0].abs() < 1.0),
            "{rows:?}"
        );
    }
}
