//! Continuity: which of this run's k-means segments are last run's segments.
//!
//! This run's segments' members are transformed with the previous run's
//! saved transform, so both runs are compared in the same space; each new
//! segment's mean is compared with each previous centroid, and segments are
//! matched by an optimal assignment (Kuhn-Munkres, from the pathfinding
//! crate; rectangular when k changed) that minimises the total distance. A
//! match farther than the threshold is no match: that segment is new and gets
//! a new id. Matching by profile, not by membership, keeps an id when a
//! segment's members churn but its meaning holds.

use ndarray::{Array2, ArrayView2};
use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;
use segtune_models::features::FeatureTransform;
use segtune_models::segmentation::label_means;

use crate::ingest::PartnersTable;

/// What continuity needs from the previous run's `model.json`.
#[derive(Debug, Clone)]
pub struct PreviousModel {
    /// The fitted transform.
    pub transform: FeatureTransform,
    /// Segment id of each centroid row.
    pub segment_ids: Vec<u32>,
    /// Centroids of the previous k-means segments, in its scaled space.
    pub centroids: Array2<f64>,
}

impl PreviousModel {
    /// Reads the parts of a `model.json` value; `None` when they are missing.
    pub fn from_json(model: &serde_json::Value) -> Option<Self> {
        let transform: FeatureTransform =
            serde_json::from_value(model.get("transform")?.clone()).ok()?;
        let segment_ids: Vec<u32> = model
            .get("kmeans_segment_ids")?
            .as_array()?
            .iter()
            .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect::<Option<_>>()?;
        let rows: Vec<Vec<f64>> = model
            .get("centroids")?
            .as_array()?
            .iter()
            .map(|row| {
                row.as_array()
                    .map(|r| r.iter().filter_map(serde_json::Value::as_f64).collect())
            })
            .collect::<Option<_>>()?;
        let width = rows.first().map_or(0, Vec::len);
        if rows.len() != segment_ids.len() || rows.iter().any(|r| r.len() != width) {
            return None;
        }
        let centroids = Array2::from_shape_vec((rows.len(), width), rows.concat()).ok()?;
        Some(Self {
            transform,
            segment_ids,
            centroids,
        })
    }

    /// The given partner rows in the previous run's scaled space; `None` when
    /// a column it was fitted on is not among this run's columns.
    pub fn transform_rows(&self, partners: &PartnersTable, rows: &[usize]) -> Option<Array2<f64>> {
        let slices: Vec<&[f64]> = self
            .transform
            .columns
            .iter()
            .map(|fitted| {
                partners
                    .numeric
                    .iter()
                    .find(|c| c.name == fitted.name)
                    .map(|c| c.values.as_slice())
            })
            .collect::<Option<_>>()?;
        let categorical: Vec<Vec<Option<&str>>> = self
            .transform
            .one_hot
            .iter()
            .map(|group| {
                partners
                    .categorical
                    .iter()
                    .find(|c| c.name == group.name)
                    .map(|c| {
                        rows.iter()
                            .map(|r| c.codes[*r].map(|code| c.levels[code as usize].as_str()))
                            .collect()
                    })
            })
            .collect::<Option<_>>()?;
        let matrix = self
            .transform
            .apply_selected(&slices, &categorical, rows)
            .ok()?;
        (matrix.ncols() == self.centroids.ncols()).then_some(matrix)
    }
}

/// For each new segment (row of `new_means`), the matched previous centroid,
/// by minimum total distance, or `None` beyond `threshold`.
pub fn match_to_previous(
    new_means: ArrayView2<f64>,
    previous: ArrayView2<f64>,
    threshold: f64,
) -> Vec<Option<usize>> {
    let (n_new, n_old) = (new_means.nrows(), previous.nrows());
    if n_new == 0 || n_old == 0 {
        return vec![None; n_new];
    }
    let distance = |i: usize, j: usize| -> f64 {
        new_means
            .row(i)
            .iter()
            .zip(previous.row(j))
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt()
    };
    // Integer weights for the solver: distances in millionths.
    let scaled = |d: f64| -> i64 { (d * 1e6).round().min(1e15) as i64 };
    let transposed = n_new > n_old;
    let (rows, columns) = if transposed {
        (n_old, n_new)
    } else {
        (n_new, n_old)
    };
    let mut values = Vec::with_capacity(rows * columns);
    for r in 0..rows {
        for c in 0..columns {
            values.push(if transposed {
                scaled(distance(c, r))
            } else {
                scaled(distance(r, c))
            });
        }
    }
    let Ok(weights) = Matrix::from_vec(rows, columns, values) else {
        return vec![None; n_new];
    };
    let (_, assignment) = kuhn_munkres_min(&weights);
    let mut matched = vec![None; n_new];
    for (r, c) in assignment.into_iter().enumerate() {
        let (new, old) = if transposed { (c, r) } else { (r, c) };
        if distance(new, old) <= threshold {
            matched[new] = Some(old);
        }
    }
    matched
}

/// Means of each label's rows.
pub fn means_by_label(x: ArrayView2<f64>, labels: &[usize], n_labels: usize) -> Array2<f64> {
    label_means(x, labels, n_labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_optimal_assignment_beats_greedy_matching() {
        // Total distance 1.5 (0-0, 1-1) beats 3.5 (0-1, 1-0).
        let new = array![[0.0], [2.5]];
        let old = array![[1.0], [2.0]];
        assert_eq!(
            match_to_previous(new.view(), old.view(), 5.0),
            vec![Some(0), Some(1)]
        );
        // Total distance 2.2 (0-1, 1-0) beats 4.2 (0-0, 1-1).
        let new = array![[0.0], [1.2]];
        let old = array![[1.0], [-2.0]];
        assert_eq!(
            match_to_previous(new.view(), old.view(), 5.0),
            vec![Some(1), Some(0)]
        );
    }

    #[test]
    fn rectangular_matches_leave_the_extra_segments_new() {
        let old = array![[0.0, 0.0], [10.0, 0.0]];
        let new = array![[0.1, 0.0], [5.0, 5.0], [9.9, 0.1]];
        assert_eq!(
            match_to_previous(new.view(), old.view(), 1.0),
            vec![Some(0), None, Some(1)]
        );
        let fewer = array![[9.8, 0.0]];
        assert_eq!(
            match_to_previous(fewer.view(), old.view(), 1.0),
            vec![Some(1)]
        );
    }

    #[test]
    fn beyond_the_threshold_a_segment_is_new() {
        assert_eq!(
            match_to_previous(array![[3.0]].view(), array![[0.0]].view(), 1.0),
            vec![None]
        );
    }
}
