//! Fitting and assigning.
//!
//! ```
//! use ndarray::array;
//! use segtune_models::segmentation::SegmentationParams;
//! let x = array![[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]];
//! let fitted = SegmentationParams::new(2).with_seed(1).check()?.fit(x.view())?;
//! // Segment 0 is the larger one.
//! assert_eq!(fitted.assignment.labels, vec![1, 1, 0, 0, 0]);
//! # Ok::<(), segtune_models::segmentation::SegmentationError>(())
//! ```

use linfa::prelude::Fit;
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::errors::SegmentationError;
use super::hyperparams::SegmentationValidParams;

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

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Assigns every row to its nearest centroid. Rows are independent, so the
/// parallel pass gives the same result whatever the thread count.
pub fn assign_to_centroids(x: ArrayView2<f64>, centroids: ArrayView2<f64>) -> Assignment {
    let centres: Vec<Vec<f64>> = centroids.axis_iter(Axis(0)).map(|c| c.to_vec()).collect();
    let rows: Vec<(usize, f64, Option<usize>, Option<f64>)> = (0..x.nrows())
        .into_par_iter()
        .map(|i| {
            let row = x.row(i);
            let row = row
                .as_slice()
                .map(<[f64]>::to_vec)
                .unwrap_or_else(|| row.to_vec());
            let mut best = (usize::MAX, f64::INFINITY);
            let mut second = (usize::MAX, f64::INFINITY);
            for (j, centre) in centres.iter().enumerate() {
                let d = squared_distance(&row, centre);
                if d < best.1 {
                    second = best;
                    best = (j, d);
                } else if d < second.1 {
                    second = (j, d);
                }
            }
            let distance = best.1.sqrt();
            let second_label = (second.0 != usize::MAX).then_some(second.0);
            (
                best.0,
                distance,
                second_label,
                second_label.map(|_| second.1.sqrt() - distance),
            )
        })
        .collect();
    let mut assignment = Assignment {
        labels: Vec::with_capacity(rows.len()),
        distances: Vec::with_capacity(rows.len()),
        second: Vec::with_capacity(rows.len()),
        margins: Vec::with_capacity(rows.len()),
    };
    for (label, distance, second, margin) in rows {
        assignment.labels.push(label);
        assignment.distances.push(distance);
        assignment.second.push(second);
        assignment.margins.push(margin);
    }
    assignment
}

impl SegmentationValidParams {
    /// Fits k-means (linfa-clustering, k-means++ starts, best of `n_runs`)
    /// and assigns every row.
    pub fn fit(&self, x: ArrayView2<f64>) -> Result<Segmentation, SegmentationError> {
        if x.nrows() < self.n_clusters {
            return Err(SegmentationError::TooFewRows {
                rows: x.nrows(),
                n_clusters: self.n_clusters,
            });
        }
        if let Some(((row, column), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(SegmentationError::NonFinite { row, column });
        }
        let dataset = DatasetBase::from(x.to_owned());
        let model = KMeans::params_with_rng(self.n_clusters, ChaCha8Rng::seed_from_u64(self.seed))
            .n_runs(self.n_runs)
            .max_n_iterations(self.max_n_iterations)
            .tolerance(self.tolerance)
            .fit(&dataset)
            .map_err(|error| SegmentationError::KMeans(error.to_string()))?;
        let raw = assign_to_centroids(x, model.centroids().view());
        // Canonical order: largest segment first, ties by centroid coordinates.
        let mut sizes = vec![0usize; self.n_clusters];
        for label in &raw.labels {
            sizes[*label] += 1;
        }
        let mut order: Vec<usize> = (0..self.n_clusters).filter(|j| sizes[*j] > 0).collect();
        order.sort_by(|a, b| {
            sizes[*b].cmp(&sizes[*a]).then_with(|| {
                let (ca, cb) = (model.centroids().row(*a), model.centroids().row(*b));
                ca.iter()
                    .zip(cb.iter())
                    .map(|(x, y)| x.total_cmp(y))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
        });
        let centroids = ndarray::stack(
            Axis(0),
            &order
                .iter()
                .map(|j| model.centroids().row(*j))
                .collect::<Vec<_>>(),
        )
        .map_err(|error| SegmentationError::KMeans(error.to_string()))?;
        // linfa stops within its tolerance, one update short of the means of
        // its final memberships: finish with Lloyd steps until the labels are
        // stable (bounded), so centroids are the means of their members and
        // the inertia is the one of the reported labels.
        let mut centroids = centroids;
        let mut assignment = assign_to_centroids(x, centroids.view());
        for _ in 0..self.max_n_iterations.min(100) {
            let means = label_means(x, &assignment.labels, centroids.nrows());
            let next = assign_to_centroids(x, means.view());
            centroids = means;
            let stable = next.labels == assignment.labels;
            assignment = next;
            if stable {
                break;
            }
        }
        let mut sizes = vec![0usize; centroids.nrows()];
        for label in &assignment.labels {
            sizes[*label] += 1;
        }
        let inertia = assignment.distances.iter().map(|d| d * d).sum();
        Ok(Segmentation {
            centroids,
            sizes,
            inertia,
            assignment,
        })
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
            .fit(x.view())
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
            .install(|| params.fit(x.view()));
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .expect("pool")
            .install(|| params.fit(x.view()));
        assert_eq!(one, four);
    }

    #[test]
    fn too_few_rows_are_refused() {
        let x = array![[0.0], [1.0]];
        let params = SegmentationParams::new(3).check().expect("valid");
        assert_eq!(
            params.fit(x.view()),
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
            .fit(x.view())
            .expect("fits");
        assert!((fitted.inertia - 4.0).abs() < 1e-12, "{}", fitted.inertia);
    }

    #[test]
    fn label_means_average_each_label() {
        let x = array![[0.0, 2.0], [2.0, 4.0], [10.0, 0.0]];
        let means = label_means(x.view(), &[0, 0, 1], 2);
        assert_eq!(means, array![[1.0, 3.0], [10.0, 0.0]]);
    }
}
