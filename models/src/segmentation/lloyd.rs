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

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for f32 {}
}

/// The element type of the matrix Lloyd's iterations read: `f64`, or `f32`
/// (half the bytes to stream and twice the lanes per instruction). Centroids,
/// per-centroid sums and the stopping rule stay `f64` either way; only the
/// rows, their norms and the distance products are `T`.
pub trait Element:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
    + sealed::Sealed
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 2.
    const TWO: Self;
    /// +inf.
    const INFINITY: Self;
    /// Whether eight rows are taken together for up to eight centroids
    /// (f32: their dot products fill one register per row, and eight rows
    /// give the multiply-adds enough independent chains).
    const EIGHT_ROWS: bool;
    /// Rounds an f64 to this type.
    fn from_f64(value: f64) -> Self;
    /// Widens to f64.
    fn to_f64(self) -> f64;
    /// `self * a + b` rounded once (IEEE fused multiply-add): the same
    /// value on every CPU, one instruction where the CPU has FMA.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Squared norm of each row, as `Self`.
    fn row_norms(x: ArrayView2<Self>) -> Vec<Self>;
    /// Mean per-feature variance (scikit-learn's scale of the tolerance).
    fn mean_variance(x: ArrayView2<Self>) -> f64;
}

impl Element for f64 {
    const ZERO: Self = 0.0;
    const TWO: Self = 2.0;
    const INFINITY: Self = f64::INFINITY;
    const EIGHT_ROWS: bool = false;
    fn from_f64(value: f64) -> Self {
        value
    }
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f64::mul_add(self, a, b)
    }
    fn row_norms(x: ArrayView2<Self>) -> Vec<Self> {
        x.axis_iter(Axis(0)).map(|row| row.dot(&row)).collect()
    }
    fn mean_variance(x: ArrayView2<Self>) -> f64 {
        mean_variance(x)
    }
}

impl Element for f32 {
    const ZERO: Self = 0.0;
    const TWO: Self = 2.0;
    const INFINITY: Self = f32::INFINITY;
    const EIGHT_ROWS: bool = true;
    fn from_f64(value: f64) -> Self {
        value as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline(always)]
    fn mul_add(self, a: Self, b: Self) -> Self {
        f32::mul_add(self, a, b)
    }
    fn row_norms(x: ArrayView2<Self>) -> Vec<Self> {
        x.axis_iter(Axis(0))
            .map(|row| {
                row.iter()
                    .map(|v| f64::from(*v) * f64::from(*v))
                    .sum::<f64>() as f32
            })
            .collect()
    }
    fn mean_variance(x: ArrayView2<Self>) -> f64 {
        if x.nrows() == 0 {
            return 0.0;
        }
        let variances: Vec<f64> = x
            .axis_iter(Axis(1))
            .map(|column| column.mapv(f64::from).var(0.0))
            .collect();
        variances.iter().sum::<f64>() / variances.len().max(1) as f64
    }
}

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
fn assign_chunk<T: Element>(
    xs: &[T],
    d: usize,
    norms: &[T],
    centroids_t: &[T],
    centroid_norms: &[T],
    keep_labels: bool,
) -> ChunkPartial {
    // Up to 16 centroids with k known at compile time; 0: any k. Four rows
    // at a time, or eight (see [`Element::EIGHT_ROWS`]).
    macro_rules! dispatch {
        ($($k:literal)*; $($wide:literal)*) => {
            match centroid_norms.len() {
                $($k if T::EIGHT_ROWS => assign_rows::<T, $k, 8>(xs, d, norms, centroids_t, centroid_norms, keep_labels),)*
                $($k => assign_rows::<T, $k, 4>(xs, d, norms, centroids_t, centroid_norms, keep_labels),)*
                $($wide => assign_rows::<T, $wide, 4>(xs, d, norms, centroids_t, centroid_norms, keep_labels),)*
                _ => assign_rows::<T, 0, 4>(xs, d, norms, centroids_t, centroid_norms, keep_labels),
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8; 9 10 11 12 13 14 15 16)
}

/// The rows' nearest centroids. Per row, the dot products with every
/// centroid accumulate feature by feature (in that order, whatever the
/// blocking) over the centroids laid out feature-major
/// (`centroids_t[f * k + j]`), vectorised across centroids and
/// `ROWS_TOGETHER` rows at a time (independent accumulators, so the
/// multiply-adds do not wait on each other); `K` is the number of centroids (0: only
/// known at run time). No copy of the rows is made. Each multiply-add is an
/// IEEE fused multiply-add (`mul_add`, rounded once), so every CPU computes
/// the same bits: one instruction with FMA, without it a call to the
/// correctly rounded `fma` per multiply-add (the same results, slowly; x86
/// CPUs since 2013 have FMA).
/// Compiled for AVX2 with FMA and for AVX as well as the baseline; the best
/// the CPU has is chosen at run time (multiversion), so one binary runs
/// everywhere.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn assign_rows<T: Element, const K: usize, const ROWS_TOGETHER: usize>(
    xs: &[T],
    d: usize,
    norms: &[T],
    centroids_t: &[T],
    centroid_norms: &[T],
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
    let nearest = |dot: &[T]| {
        let mut best = 0;
        let mut best_distance = T::INFINITY;
        for (j, (c, p)) in centroid_norms.iter().zip(dot).enumerate() {
            let distance = *c - T::TWO * *p;
            let closer = distance < best_distance;
            best = if closer { j } else { best };
            best_distance = if closer { distance } else { best_distance };
        }
        (best, best_distance)
    };
    // The row added to its nearest centroid's sums (rows in order).
    let mut add = |row: &[T], norm: T, (best, best_distance): (usize, T)| {
        for (total, value) in partial.sums[best * d..(best + 1) * d].iter_mut().zip(row) {
            *total += value.to_f64();
        }
        partial.counts[best] += 1.0;
        if keep_labels {
            partial.labels.push(best);
            partial
                .distances
                .push((best_distance + norm).to_f64().max(0.0));
        }
    };
    /// The group's dot products with every centroid. Its own function
    /// with the caller's target features (vectorised across centroids:
    /// inlined into the row loop, LLVM leaves the fused multiply-adds scalar).
    #[multiversion::inherit_target]
    #[inline(never)]
    fn group_dots<T: Element, const K: usize, const R: usize>(
        group: &[T],
        d: usize,
        centroids_t: &[T],
    ) -> [[T; K]; R] {
        let mut dots = [[T::ZERO; K]; R];
        for (f, column) in centroids_t.chunks_exact(K).enumerate() {
            let column: &[T; K] = column.try_into().expect("K centroids");
            for (r, dot) in dots.iter_mut().enumerate() {
                let value = group[r * d + f];
                for j in 0..K {
                    dot[j] = value.mul_add(column[j], dot[j]);
                }
            }
        }
        dots
    }
    if K > 0 {
        // Accumulators in registers: K known, ROWS_TOGETHER rows at once.
        let together = rows / ROWS_TOGETHER * ROWS_TOGETHER;
        for (group, group_norms) in xs[..together * d]
            .chunks_exact(ROWS_TOGETHER * d)
            .zip(norms[..together].chunks_exact(ROWS_TOGETHER))
        {
            let dots = group_dots::<T, K, ROWS_TOGETHER>(group, d, centroids_t);
            if T::EIGHT_ROWS {
                for (r, dot) in dots.iter().enumerate() {
                    add(&group[r * d..(r + 1) * d], group_norms[r], nearest(dot));
                }
            } else {
                // Every row's nearest centroid before any sum is touched:
                // the additions' addresses are all known when they start
                // (3-5 % faster for f64; slower for f32's eight rows).
                let found: [(usize, T); ROWS_TOGETHER] = std::array::from_fn(|r| nearest(&dots[r]));
                for (r, found) in found.into_iter().enumerate() {
                    add(&group[r * d..(r + 1) * d], group_norms[r], found);
                }
            }
        }
        for (row, norm) in xs[together * d..].chunks_exact(d).zip(&norms[together..]) {
            let mut dot = [T::ZERO; K];
            for (value, column) in row.iter().zip(centroids_t.chunks_exact(K)) {
                for (acc, c) in dot.iter_mut().zip(column) {
                    *acc = value.mul_add(*c, *acc);
                }
            }
            add(row, *norm, nearest(&dot));
        }
    } else {
        let mut dot = vec![T::ZERO; k];
        for (row, norm) in xs.chunks_exact(d).zip(norms) {
            dot.fill(T::ZERO);
            for (value, column) in row.iter().zip(centroids_t.chunks_exact(k.max(1))) {
                for (acc, c) in dot.iter_mut().zip(column) {
                    *acc = value.mul_add(*c, *acc);
                }
            }
            add(row, *norm, nearest(&dot));
        }
    }
    partial
}

/// One assignment pass: labels and squared distances (empty unless
/// `keep_labels`), and centroid sums and counts combined in chunk order.
fn assign_all<T: Element>(
    x: ArrayView2<T>,
    norms: &[T],
    centroids: ArrayView2<f64>,
    keep_labels: bool,
) -> (Vec<usize>, Vec<f64>, Array2<f64>, Vec<f64>) {
    let centroid_norms: Vec<T> = f64::row_norms(centroids)
        .into_iter()
        .map(T::from_f64)
        .collect();
    let (n, d) = x.dim();
    let centroids_t: Vec<T> = centroids.t().iter().copied().map(T::from_f64).collect();
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
/// Welford's algorithm over the rows exactly as ndarray's `var_axis` does it
/// (the same operations, so the same values), over plain slices and with the
/// fused multiply-add inlined where the CPU has one.
pub fn mean_variance(x: ArrayView2<f64>) -> f64 {
    if x.nrows() == 0 {
        return 0.0;
    }
    let contiguous = x.as_standard_layout();
    let xs = contiguous
        .as_slice()
        .expect("a standard-layout array is contiguous");
    let sum_sq = welford_sum_sq(xs, x.ncols());
    let dof = x.nrows() as f64;
    Array1::from(sum_sq)
        .mapv_into(|s| s / dof)
        .mean()
        .unwrap_or(0.0)
}

/// Per column, the sum of squared deviations by Welford's algorithm.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn welford_sum_sq(xs: &[f64], d: usize) -> Vec<f64> {
    let mut mean = vec![0.0; d];
    let mut sum_sq = vec![0.0; d];
    for (i, row) in xs.chunks_exact(d.max(1)).enumerate() {
        let count = (i + 1) as f64;
        for ((x, mean), sum_sq) in row.iter().zip(&mut mean).zip(&mut sum_sq) {
            let delta = x - *mean;
            *mean += delta / count;
            *sum_sq = (x - *mean).mul_add(delta, *sum_sq);
        }
    }
    sum_sq
}

/// Lloyd iterations from given centres, over an f64 or f32 matrix
/// ([`Element`]); the centroids are f64 either way.
pub fn lloyd<T: Element>(
    x: ArrayView2<T>,
    initial: Array2<f64>,
    max_iterations: u64,
    tolerance: f64,
) -> LloydResult {
    let norms = T::row_norms(x);
    let threshold = tolerance * T::mean_variance(x);
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

/// Rows of one block of k-means++'s candidate pass: the candidates'
/// distances are computed for a block in parallel, then added to the
/// candidates' potentials in row order, so only a block of them is ever
/// held (a multiple of [`CHUNK_ROWS`]).
const CANDIDATE_BLOCK_ROWS: usize = 64 * CHUNK_ROWS;

/// Greedy k-means++ (as scikit-learn): each new centre is the best of
/// 2 + ln(k) candidates drawn in proportion to the squared distance to the
/// nearest chosen centre. The candidates of one round are drawn in one scan
/// of the running sum of those distances, and scored block by block in
/// parallel passes over the rows; the chosen one's distances then update
/// each row's nearest. Memory: one distance per row, plus a block.
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
    let mut closest: Vec<f64> = xs
        .par_chunks_exact(d)
        .map(|r| squared(r, row(first)))
        .collect();
    let mut block = vec![0.0; CANDIDATE_BLOCK_ROWS.min(n) * trials];
    for c in 1..k {
        // ndarray's sum (its unrolled order), as the draws were always made.
        let potential: f64 = ndarray::ArrayView1::from(&closest[..]).sum();
        let targets: Vec<Option<f64>> = (0..trials)
            .map(|_| {
                if potential > 0.0 {
                    Some(rng.gen::<f64>() * potential)
                } else {
                    None
                }
            })
            .collect();
        let candidates = draw_rows(&closest, &targets, || rng.gen_range(0..n));
        // Feature-major (`candidates_t[f * trials + t]`).
        let candidates_t: Vec<f64> = (0..d)
            .flat_map(|f| candidates.iter().map(move |c| xs[c * d + f]))
            .collect();
        // Each candidate's potential: the rows' distances to their nearest
        // centre with it added, a block at a time, each total a sum in row
        // order (as one pass per candidate would give).
        let mut totals = vec![0.0; trials];
        for (rows, nearest) in xs
            .chunks(CANDIDATE_BLOCK_ROWS * d)
            .zip(closest.chunks(CANDIDATE_BLOCK_ROWS))
        {
            let values = &mut block[..nearest.len() * trials];
            values
                .par_chunks_mut(CHUNK_ROWS * trials)
                .zip(rows.par_chunks(CHUNK_ROWS * d))
                .zip(nearest.par_chunks(CHUNK_ROWS))
                .for_each(|((out, rows), nearest)| match trials {
                    3 => nearest_with_candidates::<3>(rows, d, &candidates_t, nearest, out),
                    4 => nearest_with_candidates::<4>(rows, d, &candidates_t, nearest, out),
                    _ => nearest_with_candidates::<0>(rows, d, &candidates_t, nearest, out),
                });
            for row in values.chunks_exact(trials) {
                for (total, value) in totals.iter_mut().zip(row) {
                    *total += value;
                }
            }
        }
        let mut best: Option<(f64, usize)> = None;
        for (t, total) in totals.into_iter().enumerate() {
            if best.is_none_or(|(b, _)| total < b) {
                best = Some((total, t));
            }
        }
        if let Some((_, t)) = best {
            centres.row_mut(c).assign(&x.row(candidates[t]));
            // The chosen candidate's distances again, alone: the same sums
            // in the same order, so the same values as in its column above.
            let chosen = x.row(candidates[t]).to_vec();
            closest
                .par_chunks_mut(CHUNK_ROWS)
                .zip(xs.par_chunks(CHUNK_ROWS * d))
                .for_each(|(nearest, rows)| {
                    for (row, nearest) in rows.chunks_exact(d).zip(nearest) {
                        *nearest = nearest.min(squared(row, &chosen));
                    }
                });
        }
    }
    centres
}

/// The rows drawn for `targets` (each a point on the running sum of
/// `weights`: the first row whose running sum reaches it, at most the last
/// row), in one scan; a `None` target (no weight at all) draws `uniform()`.
fn draw_rows(
    weights: &[f64],
    targets: &[Option<f64>],
    mut uniform: impl FnMut() -> usize,
) -> Vec<usize> {
    let last = weights.len().saturating_sub(1);
    let mut order: Vec<usize> = (0..targets.len())
        .filter(|t| targets[*t].is_some())
        .collect();
    order.sort_by(|a, b| {
        targets[*a]
            .unwrap_or(0.0)
            .total_cmp(&targets[*b].unwrap_or(0.0))
    });
    let mut rows = vec![last; targets.len()];
    let mut pending = order.into_iter().peekable();
    let mut total = 0.0;
    for (row, weight) in weights.iter().enumerate() {
        total += weight;
        while let Some(t) = pending.next_if(|t| targets[*t].is_some_and(|target| total >= target)) {
            rows[t] = row;
        }
        if pending.peek().is_none() {
            break;
        }
    }
    for (row, target) in rows.iter_mut().zip(targets) {
        if target.is_none() {
            *row = uniform();
        }
    }
    rows
}

/// For each row: its squared distance to the nearest chosen centre with
/// each candidate centre added (`out[row * trials + t]`). The candidates are
/// feature-major (`candidates_t[f * trials + t]`); with `T` candidates known
/// at compile time their squared distances accumulate side by side in
/// registers (each still in feature order, so the same sums as one
/// candidate at a time); `T` = 0: any number.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn nearest_with_candidates<const T: usize>(
    rows: &[f64],
    d: usize,
    candidates_t: &[f64],
    closest: &[f64],
    out: &mut [f64],
) {
    let trials = candidates_t.len() / d.max(1);
    for ((row, nearest), out) in rows
        .chunks_exact(d)
        .zip(closest)
        .zip(out.chunks_exact_mut(trials.max(1)))
    {
        if T > 0 {
            let mut squared = [0.0f64; T];
            for (p, column) in row.iter().zip(candidates_t.chunks_exact(T)) {
                for (total, q) in squared.iter_mut().zip(column) {
                    *total += (p - q) * (p - q);
                }
            }
            for (value, squared) in out.iter_mut().zip(squared) {
                *value = nearest.min(squared);
            }
        } else {
            for (t, value) in out.iter_mut().enumerate() {
                let squared: f64 = row
                    .iter()
                    .zip(candidates_t.iter().skip(t).step_by(trials))
                    .map(|(p, q)| (p - q) * (p - q))
                    .sum();
                *value = nearest.min(squared);
            }
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

    /// The plain scalar reference of one assignment: per centroid the dot
    /// product accumulated feature by feature with IEEE fused multiply-adds,
    /// the first of equal distances. Compiled without target features, so
    /// `mul_add` here is the correctly rounded software or hardware fma,
    /// whichever the build has.
    fn reference_assignment(x: &Array2<f64>, centroids: &Array2<f64>) -> (Vec<usize>, Vec<f64>) {
        let centroid_norms = f64::row_norms(centroids.view());
        let norms = f64::row_norms(x.view());
        let mut labels = Vec::new();
        let mut distances = Vec::new();
        for (row, norm) in x.rows().into_iter().zip(&norms) {
            let mut best = (0, f64::INFINITY);
            for (j, (centroid, centroid_norm)) in centroids
                .rows()
                .into_iter()
                .zip(&centroid_norms)
                .enumerate()
            {
                let dot = row
                    .iter()
                    .zip(centroid)
                    .fold(0.0, |dot, (value, c)| value.mul_add(*c, dot));
                let distance = centroid_norm - 2.0 * dot;
                if distance < best.1 {
                    best = (j, distance);
                }
            }
            labels.push(best.0);
            distances.push((best.1 + norm).max(0.0));
        }
        (labels, distances)
    }

    #[test]
    fn assignment_is_the_scalar_reference_to_the_bit_for_every_k() {
        // The vectorised kernel (AVX2 + FMA here, chosen at run time) must
        // give the plain scalar arithmetic's labels and distances to the
        // bit: so results do not depend on the CPU a run lands on. Every
        // compiled k (1 to 16, four rows at a time and the leftover rows)
        // and a k beyond them (any-k path).
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for k in (1..=17).chain([23]) {
            for d in [1, 5, 16] {
                let x =
                    Array2::from_shape_fn((CHUNK_ROWS + 7, d), |_| rng.gen::<f64>() * 4.0 - 2.0);
                let centroids = Array2::from_shape_fn((k, d), |_| rng.gen::<f64>() * 4.0 - 2.0);
                let norms = f64::row_norms(x.view());
                let (labels, distances, _, _) =
                    assign_all(x.view(), &norms, centroids.view(), true);
                let (expected_labels, expected_distances) = reference_assignment(&x, &centroids);
                assert_eq!(labels, expected_labels, "k = {k}, d = {d}");
                let bits = |v: &[f64]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&distances),
                    bits(&expected_distances),
                    "k = {k}, d = {d}"
                );
            }
        }
    }

    #[test]
    fn f32_rows_give_the_f64_clustering_within_its_tolerance() {
        // Three overlapping clusters, standardised scale, as the pipeline's.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let centres = [[-1.0, 0.5, 0.0], [1.0, 0.0, 0.5], [0.0, -1.0, -0.5]];
        let x = Array2::from_shape_fn((5 * CHUNK_ROWS + 3, 3), |(i, j)| {
            centres[i % 3][j] + rng.gen::<f64>() - 0.5 + rng.gen::<f64>() - 0.5
        });
        let start = kmeans_plus_plus(x.view(), 3, &mut ChaCha8Rng::seed_from_u64(6));
        let exact = lloyd(x.view(), start.clone(), 300, 1e-4);
        let x32 = x.mapv(|v| v as f32);
        let single = lloyd(x32.view(), start, 300, 1e-4);
        let largest_difference = (&single.centroids - &exact.centroids)
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(largest_difference < 1e-3, "{largest_difference}");
        assert!(((single.inertia - exact.inertia) / exact.inertia).abs() < 1e-5);
        let same = single
            .labels
            .iter()
            .zip(&exact.labels)
            .filter(|(a, b)| a == b)
            .count();
        assert!(same as f64 >= 0.999 * x.nrows() as f64, "{same}");
        // And not bit-identical: the f32 path really ran in f32.
        assert_ne!(single.centroids, exact.centroids);
    }

    #[test]
    fn mean_variance_is_ndarrays_to_the_bit() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let x = Array2::from_shape_fn((1003, 7), |(_, j)| {
            1e3 * j as f64 + rng.gen::<f64>() * (j + 1) as f64
        });
        let ndarray_value = x.var_axis(Axis(0), 0.0).mean().expect("columns");
        assert_eq!(mean_variance(x.view()).to_bits(), ndarray_value.to_bits());
        // A transposed view too.
        let t = x.t().to_owned();
        let view = t.t();
        assert_eq!(mean_variance(view).to_bits(), ndarray_value.to_bits());
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
