//! Choosing k by evidence: quality scores for each candidate k, and the rule
//! that picks one.
//!
//! Scores (each over the clustered partners):
//! - **silhouette**: mean over rows of (b - a) / max(a, b), a the mean
//!   distance to the own segment, b to the nearest other; exact on a seeded
//!   sample of at most `silhouette_sample` rows (all rows below it), as
//!   scikit-learn's `silhouette_score(sample_size=..)`;
//! - **Calinski-Harabasz**: between- over within-segment dispersion, scaled by
//!   degrees of freedom (higher is better);
//! - **Davies-Bouldin**: mean over segments of the worst (s_i + s_j) / d_ij
//!   (lower is better);
//! - **smallest share** of the clustered partners in one segment;
//! - **stability**: the mean adjusted Rand index between the full fit's
//!   labels and the labels of k-means (one k-means++ start) refitted on B
//!   seeded bootstrap resamples, on the same partners.
//!
//! Rule (documented in the README): among the k whose smallest share and
//! stability pass their gates, the best silhouette; ties to the smaller k.

use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::algorithm::to_f32;
use super::hyperparams::{Precision, SegmentationParams};
use super::lloyd::{kmeans_plus_plus, lloyd};
use super::{Labelled, SegmentationError};

/// Adjusted Rand index of two labellings of the same rows (1 = identical partitions).
///
/// The contingency table is dense (labels are small segment indices); its
/// pair counts are integers, exact in f64, so the order of summing does not
/// matter.
pub fn adjusted_rand_index(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let comb2 = |x: f64| x * (x - 1.0) / 2.0;
    let (ka, kb) = (
        a.iter().max().map_or(0, |m| m + 1),
        b.iter().max().map_or(0, |m| m + 1),
    );
    let mut table = vec![0.0f64; ka * kb];
    for (x, y) in a.iter().zip(b) {
        table[x * kb + y] += 1.0;
    }
    let rows = table
        .chunks_exact(kb.max(1))
        .map(|row| comb2(row.iter().sum()));
    let sum_rows: f64 = rows.sum();
    let sum_columns: f64 = (0..kb)
        .map(|y| comb2((0..ka).map(|x| table[x * kb + y]).sum()))
        .sum();
    let index: f64 = table.iter().map(|v| comb2(*v)).sum();
    let expected = sum_rows * sum_columns / comb2(n);
    let maximum = (sum_rows + sum_columns) / 2.0;
    if maximum == expected {
        return 1.0;
    }
    (index - expected) / (maximum - expected)
}

fn distance(a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (p - q) * (p - q))
        .sum::<f64>()
        .sqrt()
}

/// Mean silhouette over `rows` (computed among those rows only).
pub fn silhouette(x: ArrayView2<f64>, labels: &[usize], rows: &[usize]) -> f64 {
    silhouettes(x, &[labels], rows)[0]
}

/// Mean silhouette over `rows` of each labelling of the same rows, from one
/// pass over their distances.
///
/// Per block of rows, the distances to every sample row come from the Gram
/// matrix (||a||^2 + ||b||^2 - 2 a.b, as scikit-learn computes them), once
/// for all labellings; each row's distance sums per segment, for every
/// labelling at once, are one more matrix product with the labellings'
/// one-hot columns. Blocks are fixed by the row count and summed in order, so
/// the result does not depend on the number of threads.
pub fn silhouettes(x: ArrayView2<f64>, labelings: &[&[usize]], rows: &[usize]) -> Vec<f64> {
    const BLOCK: usize = 128;
    let m = rows.len();
    let ks: Vec<usize> = labelings
        .iter()
        .map(|labels| rows.iter().map(|r| labels[*r]).max().map_or(0, |k| k + 1))
        .collect();
    let offsets: Vec<usize> = ks
        .iter()
        .scan(0, |total, k| {
            let offset = *total;
            *total += k;
            Some(offset)
        })
        .collect();
    let columns: usize = ks.iter().sum();
    let mut sample = Array2::<f64>::zeros((m, x.ncols()));
    let mut one_hot = Array2::<f64>::zeros((m, columns));
    let mut counts = vec![0usize; columns];
    for (j, row) in rows.iter().enumerate() {
        sample.row_mut(j).assign(&x.row(*row));
        for (labels, offset) in labelings.iter().zip(&offsets) {
            let column = offset + labels[*row];
            one_hot[[j, column]] = 1.0;
            counts[column] += 1;
        }
    }
    let norms: Vec<f64> = sample.axis_iter(Axis(0)).map(|r| r.dot(&r)).collect();
    let starts: Vec<usize> = (0..m).step_by(BLOCK).collect();
    // Per block, per row: each labelling's silhouette value.
    let per_block: Vec<Vec<f64>> = starts
        .par_iter()
        .map(|start| {
            let end = (start + BLOCK).min(m);
            let block = sample.slice_axis(Axis(0), ndarray::Slice::from(*start..end));
            // Row-major, so each row is one slice.
            let mut distances = Array2::<f64>::zeros((end - start, m));
            ndarray::linalg::general_mat_mul(1.0, &block, &sample.t(), 0.0, &mut distances);
            for (offset, mut row) in distances.outer_iter_mut().enumerate() {
                let i = start + offset;
                dots_to_distances(
                    row.as_slice_mut().expect("a row of a row-major array"),
                    norms[i],
                    &norms,
                );
                row[i] = 0.0;
            }
            let sums = distances.dot(&one_hot);
            let mut values = Vec::with_capacity((end - start) * labelings.len());
            for (offset, row_sums) in sums.outer_iter().enumerate() {
                let row = rows[start + offset];
                for ((labels, offset), k) in labelings.iter().zip(&offsets).zip(&ks) {
                    let own = labels[row];
                    let count = |c: usize| counts[offset + c];
                    if count(own) <= 1 {
                        values.push(0.0);
                        continue;
                    }
                    let a = row_sums[offset + own] / (count(own) - 1) as f64;
                    let b = (0..*k)
                        .filter(|c| *c != own && count(*c) > 0)
                        .map(|c| row_sums[offset + c] / count(c) as f64)
                        .fold(f64::INFINITY, f64::min);
                    let denominator = a.max(b);
                    values.push(if b.is_finite() && denominator > 0.0 {
                        (b - a) / denominator
                    } else {
                        0.0
                    });
                }
            }
            values
        })
        .collect();
    let mut totals = vec![0.0; labelings.len()];
    for values in &per_block {
        for (l, value) in values.iter().enumerate() {
            totals[l % labelings.len().max(1)] += value;
        }
    }
    totals.iter().map(|t| t / m.max(1) as f64).collect()
}

/// Calinski-Harabasz index.
pub fn calinski_harabasz(x: ArrayView2<f64>, labels: &[usize], centroids: ArrayView2<f64>) -> f64 {
    let (n, k) = (x.nrows() as f64, centroids.nrows() as f64);
    if k < 2.0 || n <= k {
        return f64::NAN;
    }
    let mean = x
        .mean_axis(Axis(0))
        .unwrap_or_else(|| ndarray::Array1::zeros(x.ncols()));
    let mut sizes = vec![0.0; centroids.nrows()];
    let mut within = 0.0;
    for (row, label) in x.axis_iter(Axis(0)).zip(labels) {
        sizes[*label] += 1.0;
        within += distance(row, centroids.row(*label)).powi(2);
    }
    let between: f64 = centroids
        .axis_iter(Axis(0))
        .zip(&sizes)
        .map(|(c, size)| size * distance(c, mean.view()).powi(2))
        .sum();
    if within == 0.0 {
        return f64::INFINITY;
    }
    (between / (k - 1.0)) / (within / (n - k))
}

/// Davies-Bouldin index.
pub fn davies_bouldin(x: ArrayView2<f64>, labels: &[usize], centroids: ArrayView2<f64>) -> f64 {
    let k = centroids.nrows();
    if k < 2 {
        return f64::NAN;
    }
    let mut scatter = vec![0.0f64; k];
    let mut sizes = vec![0.0f64; k];
    for (row, label) in x.axis_iter(Axis(0)).zip(labels) {
        scatter[*label] += distance(row, centroids.row(*label));
        sizes[*label] += 1.0;
    }
    for (s, size) in scatter.iter_mut().zip(&sizes) {
        *s /= size.max(1.0);
    }
    let mut total = 0.0;
    for i in 0..k {
        let worst = (0..k)
            .filter(|j| *j != i)
            .map(|j| {
                let d = distance(centroids.row(i), centroids.row(j));
                if d > 0.0 {
                    (scatter[i] + scatter[j]) / d
                } else {
                    f64::INFINITY
                }
            })
            .fold(0.0, f64::max);
        total += worst;
    }
    total / k as f64
}

/// Settings of a k sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepParams {
    /// Candidate k, in order.
    pub ks: Vec<usize>,
    /// Restarts of each full fit.
    pub n_runs: usize,
    /// Iteration cap.
    pub max_n_iterations: u64,
    /// Tolerance (scikit-learn's relative tolerance).
    pub tolerance: f64,
    /// Seed.
    pub seed: u64,
    /// Rows in the silhouette sample (all rows when there are fewer).
    pub silhouette_sample: usize,
    /// Bootstrap resamples for stability.
    pub n_bootstrap: usize,
    /// Rows per bootstrap resample (at most all rows).
    pub bootstrap_size: usize,
    /// The rows' number type in Lloyd's iterations.
    pub precision: Precision,
}

/// The scores of one k.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KScore {
    /// k.
    pub k: usize,
    /// Sum of squared distances.
    pub inertia: f64,
    /// Mean silhouette (sampled above `silhouette_sample` rows).
    pub silhouette: f64,
    /// Calinski-Harabasz.
    pub calinski_harabasz: f64,
    /// Davies-Bouldin.
    pub davies_bouldin: f64,
    /// Smallest segment's share of the rows.
    pub smallest_share: f64,
    /// Mean bootstrap adjusted Rand index.
    pub stability: f64,
}

/// Every candidate's fit and scores.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Scores, in the order of `ks`.
    pub scores: Vec<KScore>,
    /// The fits, in the same order, each row with its label only
    /// ([`Labelled::assign`] gives the chosen one's distances and margins).
    pub fits: Vec<Labelled>,
}

/// Dot products of one row with every sample row, turned into Euclidean
/// distances in place (vectorised for the CPU at hand).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn dots_to_distances(row: &mut [f64], norm: f64, norms: &[f64]) {
    for (value, other) in row.iter_mut().zip(norms) {
        *value = (norm + other - 2.0 * *value).max(0.0).sqrt();
    }
}

fn derived_seed(seed: u64, k: usize, stream: u64) -> u64 {
    seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Fits and scores every candidate k.
pub fn sweep(x: ArrayView2<f64>, params: &SweepParams) -> Result<Sweep, SegmentationError> {
    let n = x.nrows();
    let silhouette_rows: Vec<usize> = if n <= params.silhouette_sample {
        (0..n).collect()
    } else {
        let mut rows = sample(
            &mut ChaCha8Rng::seed_from_u64(derived_seed(params.seed, 0, 1)),
            n,
            params.silhouette_sample,
        )
        .into_vec();
        rows.sort_unstable();
        rows
    };
    // Rows as slices (for the resamples).
    let contiguous = x.as_standard_layout();
    let xs = contiguous
        .as_slice()
        .expect("a standard-layout array is contiguous");
    // One f32 copy for every k's full fits.
    let single = (params.precision == Precision::F32).then(|| to_f32(x));
    // Every k at once (each has its own seeds, so the order of work does not
    // matter): the serial parts of one k's fits (k-means++'s cumulative sums,
    // the indices) overlap another k's parallel ones.
    let per_k: Vec<(KScore, Labelled)> = params
        .ks
        .par_iter()
        .map(|&k| -> Result<(KScore, Labelled), SegmentationError> {
            let fit = SegmentationParams::new(k)
                .with_n_runs(params.n_runs)
                .with_max_n_iterations(params.max_n_iterations)
                .with_tolerance(params.tolerance)
                .with_seed(derived_seed(params.seed, k, 0))
                .with_precision(params.precision)
                .check()?
                .fit_rows(x, single.as_ref().map(Array2::view))?;
            let labels = &fit.labels;
            let size = params.bootstrap_size.min(n);
            let stabilities: Vec<f64> = (0..params.n_bootstrap)
                .into_par_iter()
                .map(|b| {
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(derived_seed(params.seed, k, 2 + b as u64));
                    let rows: Vec<usize> = (0..size).map(|_| rng.gen_range(0..n)).collect();
                    let d = x.ncols();
                    let mut resample = Vec::with_capacity(size * d);
                    for source in &rows {
                        resample.extend_from_slice(&xs[source * d..(source + 1) * d]);
                    }
                    let resample =
                        Array2::from_shape_vec((size, d), resample).expect("size x d values");
                    let start = kmeans_plus_plus(resample.view(), k, &mut rng);
                    let refit = match params.precision {
                        Precision::F64 => lloyd(
                            resample.view(),
                            start,
                            params.max_n_iterations,
                            params.tolerance,
                        ),
                        Precision::F32 => lloyd(
                            to_f32(resample.view()).view(),
                            start,
                            params.max_n_iterations,
                            params.tolerance,
                        ),
                    };
                    let full: Vec<usize> = rows.iter().map(|r| labels[*r]).collect();
                    adjusted_rand_index(&refit.labels, &full)
                })
                .collect();
            let stability = if stabilities.is_empty() {
                f64::NAN
            } else {
                stabilities.iter().sum::<f64>() / stabilities.len() as f64
            };
            let score = KScore {
                k,
                inertia: fit.inertia,
                // Filled in below, for every k from one pass.
                silhouette: f64::NAN,
                calinski_harabasz: calinski_harabasz(x, labels, fit.centroids.view()),
                davies_bouldin: davies_bouldin(x, labels, fit.centroids.view()),
                smallest_share: fit.sizes.iter().copied().min().unwrap_or(0) as f64
                    / n.max(1) as f64,
                stability,
            };
            Ok((score, fit))
        })
        .collect::<Result<_, _>>()?;
    let (mut scores, fits): (Vec<KScore>, Vec<Labelled>) = per_k.into_iter().unzip();
    let labelings: Vec<&[usize]> = fits.iter().map(|f| f.labels.as_slice()).collect();
    for (score, value) in scores
        .iter_mut()
        .zip(silhouettes(x, &labelings, &silhouette_rows))
    {
        score.silhouette = value;
    }
    Ok(Sweep { scores, fits })
}

/// The gates of the choice rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gates {
    /// Smallest segment share at least this.
    pub min_share: f64,
    /// Stability at least this.
    pub min_stability: f64,
}

/// Why a k passed or failed.
pub fn gate_failures(score: &KScore, gates: &Gates) -> Vec<String> {
    let mut out = Vec::new();
    if score.smallest_share.is_nan() || score.smallest_share < gates.min_share {
        out.push(format!(
            "smallest segment {:.1} % < {:.1} %",
            score.smallest_share * 100.0,
            gates.min_share * 100.0
        ));
    }
    // NaN: stability not measured (no bootstrap resamples configured).
    if score.stability < gates.min_stability {
        out.push(format!(
            "stability {:.3} < {:.3}",
            score.stability, gates.min_stability
        ));
    }
    out
}

/// The index (into `scores`) of the chosen k: best silhouette among those
/// passing the gates, ties to the smaller k; `None` when none passes.
pub fn choose(scores: &[KScore], gates: &Gates) -> Option<usize> {
    scores
        .iter()
        .enumerate()
        .filter(|(_, s)| gate_failures(s, gates).is_empty())
        .max_by(|(_, a), (_, b)| a.silhouette.total_cmp(&b.silhouette).then(b.k.cmp(&a.k)))
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn ari_is_one_for_the_same_partition_under_other_names() {
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1, 2], &[5, 5, 3, 3, 9]), 1.0);
    }

    #[test]
    fn ari_matches_a_hand_worked_example() {
        // scikit-learn: adjusted_rand_score([0,0,1,1],[0,0,1,2]) = 0.5714285714285715
        assert!(
            (adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.5714285714285715).abs() < 1e-12
        );
    }

    #[test]
    fn silhouette_matches_a_hand_worked_example() {
        // Two tight pairs far apart: a = 1, b ~ 10 for every point.
        let x = array![[0.0], [1.0], [10.0], [11.0]];
        let s = silhouette(x.view(), &[0, 0, 1, 1], &[0, 1, 2, 3]);
        // point 0: a = 1, b = (10 + 11) / 2 = 10.5 -> 0.904762; point 1: a = 1, b = 9.5 -> 0.894737; symmetric
        let expected = ((1.0 - 1.0 / 10.5) + (1.0 - 1.0 / 9.5)) / 2.0;
        assert!((s - expected).abs() < 1e-12, "{s}");
    }

    #[test]
    fn calinski_harabasz_and_davies_bouldin_match_hand_worked_values() {
        let x = array![[0.0], [2.0], [10.0], [12.0]];
        let centroids = array![[1.0], [11.0]];
        let labels = [0, 0, 1, 1];
        // between = 2*25 + 2*25 = 100 (k-1 = 1); within = 4 (n-k = 2) -> 100 / 2 = 50
        assert!((calinski_harabasz(x.view(), &labels, centroids.view()) - 50.0).abs() < 1e-12);
        // scatter 1 and 1, centroid distance 10 -> 0.2
        assert!((davies_bouldin(x.view(), &labels, centroids.view()) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn the_rule_takes_the_best_silhouette_among_gated_k() {
        let score = |k, silhouette, share, stability| KScore {
            k,
            inertia: 0.0,
            silhouette,
            calinski_harabasz: 0.0,
            davies_bouldin: 0.0,
            smallest_share: share,
            stability,
        };
        let gates = Gates {
            min_share: 0.02,
            min_stability: 0.8,
        };
        let scores = [
            score(3, 0.30, 0.10, 0.95),
            score(4, 0.40, 0.05, 0.90),
            score(5, 0.50, 0.01, 0.99),
            score(6, 0.45, 0.05, 0.70),
        ];
        assert_eq!(choose(&scores, &gates), Some(1));
        assert_eq!(choose(&scores[2..], &gates), None);
        assert_eq!(
            gate_failures(&scores[2], &gates),
            vec!["smallest segment 1.0 % < 2.0 %".to_string()]
        );
    }
}
