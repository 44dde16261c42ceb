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

/// Per chunk: labels, squared distances, per-centroid sums and counts.
struct ChunkPartial {
    labels: Vec<usize>,
    distances: Vec<f64>,
    sums: Array2<f64>,
    counts: Vec<f64>,
}

fn assign_chunk(
    x: ArrayView2<f64>,
    norms: &[f64],
    centroids: ArrayView2<f64>,
    centroid_norms: &[f64],
    start: usize,
) -> ChunkPartial {
    let k = centroids.nrows();
    let rows = x.nrows();
    // Dot products of the chunk with every centroid, as one matrix product.
    let dots = x.dot(&centroids.t());
    let mut labels = Vec::with_capacity(rows);
    let mut distances = Vec::with_capacity(rows);
    let mut sums = Array2::<f64>::zeros((k, x.ncols()));
    let mut counts = vec![0.0; k];
    for i in 0..rows {
        let mut best = 0;
        let mut best_distance = f64::INFINITY;
        for j in 0..k {
            let d = centroid_norms[j] - 2.0 * dots[[i, j]];
            if d < best_distance {
                best_distance = d;
                best = j;
            }
        }
        labels.push(best);
        distances.push((best_distance + norms[start + i]).max(0.0));
        let mut target = sums.row_mut(best);
        target += &x.row(i);
        counts[best] += 1.0;
    }
    ChunkPartial {
        labels,
        distances,
        sums,
        counts,
    }
}

/// One assignment pass: labels, squared distances, and centroid sums and counts
/// combined in chunk order.
fn assign_all(
    x: ArrayView2<f64>,
    norms: &[f64],
    centroids: ArrayView2<f64>,
) -> (Vec<usize>, Vec<f64>, Array2<f64>, Vec<f64>) {
    let centroid_norms = row_norms(centroids);
    let n = x.nrows();
    let starts: Vec<usize> = (0..n).step_by(CHUNK_ROWS).collect();
    let partials: Vec<ChunkPartial> = starts
        .par_iter()
        .map(|start| {
            let end = (start + CHUNK_ROWS).min(n);
            assign_chunk(
                x.slice_axis(Axis(0), ndarray::Slice::from(*start..end)),
                norms,
                centroids,
                &centroid_norms,
                *start,
            )
        })
        .collect();
    let k = centroids.nrows();
    let mut labels = Vec::with_capacity(n);
    let mut distances = Vec::with_capacity(n);
    let mut sums = Array2::<f64>::zeros((k, x.ncols()));
    let mut counts = vec![0.0; k];
    for partial in partials {
        labels.extend(partial.labels);
        distances.extend(partial.distances);
        sums += &partial.sums;
        for (total, count) in counts.iter_mut().zip(partial.counts) {
            *total += count;
        }
    }
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
        let (_, _, sums, counts) = assign_all(x, &norms, centroids.view());
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
    let (labels, distances, _, _) = assign_all(x, &norms, centroids.view());
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
/// nearest chosen centre.
pub fn kmeans_plus_plus(x: ArrayView2<f64>, k: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let n = x.nrows();
    let mut centres = Array2::<f64>::zeros((k, x.ncols()));
    if n == 0 || k == 0 {
        return centres;
    }
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.gen_range(0..n);
    centres.row_mut(0).assign(&x.row(first));
    let squared = |a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>| -> f64 {
        a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum()
    };
    let mut closest: Array1<f64> = Array1::from_vec(
        (0..n)
            .into_par_iter()
            .map(|i| squared(x.row(i), x.row(first)))
            .collect(),
    );
    for c in 1..k {
        let potential: f64 = closest.sum();
        let mut best: Option<(f64, usize, Array1<f64>)> = None;
        for _ in 0..trials {
            let candidate = if potential > 0.0 {
                // Inverse-CDF draw over the cumulative squared distances.
                let target = rng.gen::<f64>() * potential;
                let mut cumulative = 0.0;
                let mut chosen = n - 1;
                for (i, d) in closest.iter().enumerate() {
                    cumulative += d;
                    if cumulative >= target {
                        chosen = i;
                        break;
                    }
                }
                chosen
            } else {
                rng.gen_range(0..n)
            };
            let with_candidate: Array1<f64> = Array1::from_vec(
                (0..n)
                    .into_par_iter()
                    .map(|i| closest[i].min(squared(x.row(i), x.row(candidate))))
                    .collect(),
            );
            let total = with_candidate.sum();
            if best.as_ref().is_none_or(|(b, _, _)| total < *b) {
                best = Some((total, candidate, with_candidate));
            }
        }
        if let Some((_, candidate, with_candidate)) = best {
            centres.row_mut(c).assign(&x.row(candidate));
            closest = with_candidate;
        }
    }
    centres
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
