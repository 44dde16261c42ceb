//! Fitting and assigning.
//!
//! ```
//! use ndarray::array;
//! use segtune_models::segmentation::SegmentationParams;
//! let x = array![[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]];
//! let fitted = SegmentationParams::new(2).with_seed(1).check()?.fit_view(x.view())?;
//! // Segment 0 is the larger one.
//! assert_eq!(fitted.assignment.labels, vec![1, 1, 0, 0, 0]);
//! # Ok::<(), segtune_models::segmentation::SegmentationError>(())
//! ```

use linfa::prelude::Fit;
use linfa::DatasetBase;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::errors::SegmentationError;
use super::hyperparams::{Precision, SegmentationValidParams};
use super::lloyd::{kmeans_plus_plus, lloyd, LloydResult};

/// Each row's nearest and second-nearest centroid.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Nearest centroid per row.
    pub labels: Vec<usize>,
    /// Euclidean distance to it.
    pub distances: Vec<f64>,
    /// Second-nearest centroid (none with one centroid).
    pub second: Vec<Option<usize>>,
    /// Distance to the second-nearest minus distance to the nearest.
    pub margins: Vec<Option<f64>>,
}

/// A fitted segmentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// Centroids, one row per segment, largest segment first.
    pub centroids: Array2<f64>,
    /// Members per segment.
    pub sizes: Vec<usize>,
    /// Sum of squared distances of rows to their centroid.
    pub inertia: f64,
    /// Per-row assignment.
    pub assignment: Assignment,
}

/// A fit whose rows carry only their segment: what the k sweep keeps for
/// every candidate k (8 bytes a row instead of the 48 of a full
/// [`Assignment`]); [`Labelled::assign`] completes the chosen one.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// Centroids, one row per segment, largest segment first.
    pub centroids: Array2<f64>,
    /// Members per segment.
    pub sizes: Vec<usize>,
    /// Sum of squared distances of rows to their centroid.
    pub inertia: f64,
    /// Nearest centroid per row (as [`assign_to_centroids`] gives it).
    pub labels: Vec<usize>,
}

impl Labelled {
    /// The full segmentation: every row's distance, second-nearest centroid
    /// and margin, from the same rows `x` this fit labelled.
    pub fn assign(self, x: ArrayView2<f64>) -> Segmentation {
        let assignment = assign_to_centroids(x, self.centroids.view());
        debug_assert_eq!(assignment.labels, self.labels);
        Segmentation {
            centroids: self.centroids,
            sizes: self.sizes,
            inertia: self.inertia,
            assignment,
        }
    }
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// A row's nearest and second-nearest centroid with their squared
/// distances (`usize::MAX` and infinity when there is none; the first of
/// equals is the nearer).
fn nearest_two(row: &[f64], centres: &[f64]) -> ((usize, f64), (usize, f64)) {
    let mut best = (usize::MAX, f64::INFINITY);
    let mut second = (usize::MAX, f64::INFINITY);
    for (j, centre) in centres.chunks_exact(row.len().max(1)).enumerate() {
        let d = squared_distance(row, centre);
        if d < best.1 {
            second = best;
            best = (j, d);
        } else if d < second.1 {
            second = (j, d);
        }
    }
    (best, second)
}

/// Rows per parallel task of the assignment passes.
const ASSIGN_CHUNK: usize = 4096;

/// Assigns every row to its nearest centroid. Rows are independent, so the
/// parallel pass gives the same result whatever the thread count.
pub fn assign_to_centroids(x: ArrayView2<f64>, centroids: ArrayView2<f64>) -> Assignment {
    let n = x.nrows();
    let d = x.ncols().max(1);
    let centres = centroids.as_standard_layout();
    let centres = centres.as_slice().expect("contiguous");
    let rows = x.as_standard_layout();
    let rows = rows.as_slice().expect("contiguous");
    let mut assignment = Assignment {
        labels: vec![0; n],
        distances: vec![0.0; n],
        second: vec![None; n],
        margins: vec![None; n],
    };
    rows.par_chunks(ASSIGN_CHUNK * d)
        .zip(assignment.labels.par_chunks_mut(ASSIGN_CHUNK))
        .zip(assignment.distances.par_chunks_mut(ASSIGN_CHUNK))
        .zip(assignment.second.par_chunks_mut(ASSIGN_CHUNK))
        .zip(assignment.margins.par_chunks_mut(ASSIGN_CHUNK))
        .for_each(|((((rows, labels), distances), seconds), margins)| {
            for ((((row, label), distance), second), margin) in rows
                .chunks_exact(d)
                .zip(labels)
                .zip(distances)
                .zip(seconds)
                .zip(margins)
            {
                let (best, runner_up) = nearest_two(row, centres);
                *label = best.0;
                *distance = best.1.sqrt();
                *second = (runner_up.0 != usize::MAX).then_some(runner_up.0);
                *margin = second.map(|_| runner_up.1.sqrt() - *distance);
            }
        });
    assignment
}

/// Each row's nearest centroid (as [`assign_to_centroids`]) and the sum of
/// the squared distances (as [`canonical`] sums them), without the rest.
fn nearest_labels(x: ArrayView2<f64>, centroids: ArrayView2<f64>) -> (Vec<usize>, f64) {
    let n = x.nrows();
    let d = x.ncols().max(1);
    let centres = centroids.as_standard_layout();
    let centres = centres.as_slice().expect("contiguous");
    let rows = x.as_standard_layout();
    let rows = rows.as_slice().expect("contiguous");
    let mut labels = vec![0; n];
    let mut distances = vec![0.0; n];
    rows.par_chunks(ASSIGN_CHUNK * d)
        .zip(labels.par_chunks_mut(ASSIGN_CHUNK))
        .zip(distances.par_chunks_mut(ASSIGN_CHUNK))
        .for_each(|((rows, labels), distances)| {
            for ((row, label), distance) in rows.chunks_exact(d).zip(labels).zip(distances) {
                let (best, _) = nearest_two(row, centres);
                *label = best.0;
                *distance = best.1.sqrt();
            }
        });
    let inertia = distances.iter().map(|d| d * d).sum();
    (labels, inertia)
}

impl SegmentationValidParams {
    /// Fits k-means (k-means++ starts, best of `n_runs` by inertia) and
    /// assigns every row. The same data and seed give the same result on any
    /// number of threads.
    pub fn fit_view(&self, x: ArrayView2<f64>) -> Result<Segmentation, SegmentationError> {
        let single = (self.precision == Precision::F32).then(|| to_f32(x));
        Ok(self
            .fit_rows(x, single.as_ref().map(Array2::view))?
            .assign(x))
    }

    /// [`Self::fit_view`] with the f32 copy of `x` already made (used when
    /// the precision is f32), each row given only its label.
    pub(crate) fn fit_rows(
        &self,
        x: ArrayView2<f64>,
        single: Option<ArrayView2<f32>>,
    ) -> Result<Labelled, SegmentationError> {
        if x.nrows() < self.n_clusters {
            return Err(SegmentationError::TooFewRows {
                rows: x.nrows(),
                n_clusters: self.n_clusters,
            });
        }
        if let Some(((row, column), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(SegmentationError::NonFinite { row, column });
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut best: Option<LloydResult> = None;
        for _ in 0..self.n_runs {
            let start = kmeans_plus_plus(x, self.n_clusters, &mut rng);
            let result = match single {
                Some(single) => lloyd(single, start, self.max_n_iterations, self.tolerance),
                None => lloyd(x, start, self.max_n_iterations, self.tolerance),
            };
            if best.as_ref().is_none_or(|b| result.inertia < b.inertia) {
                best = Some(result);
            }
        }
        let best = best.ok_or_else(|| SegmentationError::KMeans("no run".into()))?;
        Ok(canonical(x, best.centroids, &best.labels))
    }
}

/// An f32 copy of the rows (for [`Precision::F32`]).
pub(crate) fn to_f32(x: ArrayView2<f64>) -> Array2<f32> {
    x.mapv(|v| v as f32)
}

/// Numbers segments largest first (ties by centroid coordinates), drops
/// empty ones, and labels every row.
fn canonical(x: ArrayView2<f64>, centroids: Array2<f64>, labels: &[usize]) -> Labelled {
    let k = centroids.nrows();
    let mut sizes = vec![0usize; k];
    for label in labels {
        sizes[*label] += 1;
    }
    let mut order: Vec<usize> = (0..k).filter(|j| sizes[*j] > 0).collect();
    order.sort_by(|a, b| {
        sizes[*b].cmp(&sizes[*a]).then_with(|| {
            let (ca, cb) = (centroids.row(*a), centroids.row(*b));
            ca.iter()
                .zip(cb.iter())
                .map(|(p, q)| p.total_cmp(q))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        })
    });
    let mut ordered = Array2::<f64>::zeros((order.len(), centroids.ncols()));
    for (target, source) in order.iter().enumerate() {
        ordered.row_mut(target).assign(&centroids.row(*source));
    }
    let (labels, inertia) = nearest_labels(x, ordered.view());
    let mut sizes = vec![0usize; ordered.nrows()];
    for label in &labels {
        sizes[*label] += 1;
    }
    Labelled {
        centroids: ordered,
        sizes,
        inertia,
        labels,
    }
}

/// linfa's model interface: `params.fit(&dataset)`.
impl<T> Fit<Array2<f64>, T, SegmentationError> for SegmentationValidParams {
    type Object = Segmentation;

    fn fit(
        &self,
        dataset: &DatasetBase<Array2<f64>, T>,
    ) -> Result<Segmentation, SegmentationError> {
        self.fit_view(dataset.records().view())
    }
}

/// Column means of the rows with each label (for profiles in scaled space).
pub fn label_means(x: ArrayView2<f64>, labels: &[usize], n_labels: usize) -> Array2<f64> {
    let mut sums = Array2::<f64>::zeros((n_labels, x.ncols()));
    let mut counts = Array1::<f64>::zeros(n_labels);
    for (row, label) in x.axis_iter(Axis(0)).zip(labels) {
        let mut target = sums.row_mut(*label);
        target += &row;
        counts[*label] += 1.0;
    }
    for (mut row, count) in sums.axis_iter_mut(Axis(0)).zip(counts.iter()) {
        if *count > 0.0 {
            row /= *count;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segmentation::SegmentationParams;
    use ndarray::array;

    fn blobs() -> Array2<f64> {
        let mut rows = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        use rand::Rng;
        for (cx, cy, n) in [(0.0, 0.0, 60), (10.0, 0.0, 40), (0.0, 10.0, 20)] {
            for _ in 0..n {
                rows.push([cx + rng.gen_range(-1.0..1.0), cy + rng.gen_range(-1.0..1.0)]);
            }
        }
        Array2::from_shape_vec((rows.len(), 2), rows.concat()).expect("shape")
    }

    #[test]
    fn well_separated_blobs_are_found_largest_first() {
        let x = blobs();
        let fitted = SegmentationParams::new(3)
            .with_seed(5)
            .check()
            .expect("valid")
            .fit_view(x.view())
            .expect("fits");
        assert_eq!(fitted.sizes, vec![60, 40, 20]);
        assert!(fitted.assignment.labels[..60].iter().all(|l| *l == 0));
        assert!(fitted.assignment.labels[60..100].iter().all(|l| *l == 1));
        assert!(fitted
            .assignment
            .margins
            .iter()
            .all(|m| m.expect("k > 1") > 0.0));
    }

    #[test]
    fn same_seed_same_segments_whatever_the_threads() {
        let x = blobs();
        let params = SegmentationParams::new(4)
            .with_seed(9)
            .check()
            .expect("valid");
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("pool")
            .install(|| params.fit_view(x.view()));
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .expect("pool")
            .install(|| params.fit_view(x.view()));
        assert_eq!(one, four);
    }

    #[test]
    fn too_few_rows_are_refused() {
        let x = array![[0.0], [1.0]];
        let params = SegmentationParams::new(3).check().expect("valid");
        assert_eq!(
            params.fit_view(x.view()),
            Err(SegmentationError::TooFewRows {
                rows: 2,
                n_clusters: 3
            })
        );
    }

    #[test]
    fn inertia_is_the_sum_of_squared_distances() {
        let x = array![[0.0], [2.0], [10.0], [12.0]];
        let fitted = SegmentationParams::new(2)
            .check()
            .expect("valid")
            .fit_view(x.view())
            .expect("fits");
        assert!((fitted.inertia - 4.0).abs() < 1e-12, "{}", fitted.inertia);
    }

    #[test]
    fn label_means_average_each_label() {
        let x = array![[0.0, 2.0], [2.0, 4.0], [10.0, 0.0]];
        let means = label_means(x.view(), &[0, 0, 1], 2);
        assert_eq!(means, array![[1.0, 3.0], [10.0, 0.0]]);
    }

    #[test]
    fn the_same_clustering_as_linfa_from_the_same_centres() {
        use linfa_clustering::{KMeans, KMeansInit};
        let x = blobs();
        let start =
            super::super::lloyd::kmeans_plus_plus(x.view(), 3, &mut ChaCha8Rng::seed_from_u64(8));
        let ours = lloyd(x.view(), start.clone(), 100, 0.0);
        let theirs = KMeans::params_with_rng(3, ChaCha8Rng::seed_from_u64(0))
            .init_method(KMeansInit::Precomputed(start))
            .n_runs(1)
            .max_n_iterations(100)
            .tolerance(1e-12)
            .fit(&DatasetBase::from(x.clone()))
            .expect("linfa fits");
        let difference = (&ours.centroids - theirs.centroids())
            .mapv(f64::abs)
            .fold(0.0f64, |a, b| a.max(*b));
        assert!(difference < 1e-9, "centroids differ by {difference}");
        let their_labels = assign_to_centroids(x.view(), theirs.centroids().view()).labels;
        assert_eq!(ours.labels, their_labels);
        // linfa reports the mean inertia; ours is the sum.
        assert!(
            (ours.inertia / x.nrows() as f64 - theirs.inertia()).abs()
                < 1e-9 * ours.inertia.max(1.0)
        );
    }

    #[test]
    fn linfa_fit_interface_gives_the_same_as_fit_view() {
        let x = blobs();
        let params = SegmentationParams::new(3)
            .with_seed(2)
            .check()
            .expect("valid");
        let via_trait = params.fit(&DatasetBase::from(x.clone())).expect("fits");
        assert_eq!(via_trait, params.fit_view(x.view()).expect("fits"));
    }
}
