//! Stage 2, features: the partners' numeric columns as one scaled matrix.
//!
//! Each configured numeric column is optionally `log1p`-transformed, missing
//! values take the column's median, and every column is standardised, so that
//! k-means distances weigh features alike. The fitted transform is kept (and
//! saved with the run) so later partners are scaled exactly as these were.

use ndarray::Array2;
use segtune_models::features::{FeatureTransform, Transform};

use crate::config::FeatureSettings;
use crate::ingest::PartnersTable;

/// The scaled feature matrix and how it was made.
#[derive(Debug, Clone)]
pub struct FeatureMatrix {
    /// Column names, in matrix order.
    pub names: Vec<String>,
    /// One row per partner (partners-table order), one column per feature.
    pub matrix: Array2<f64>,
    /// The fitted transform.
    pub transform: FeatureTransform,
}

/// Fits the transform on the partners and applies it.
pub fn build(
    partners: &PartnersTable,
    settings: &FeatureSettings,
) -> anyhow::Result<FeatureMatrix> {
    let columns: Vec<(&str, &[f64], Transform)> = partners
        .numeric
        .iter()
        .map(|column| {
            let transform = if settings.log1p.contains(&column.name) {
                Transform::Log1p
            } else {
                Transform::None
            };
            (column.name.as_str(), column.values.as_slice(), transform)
        })
        .collect();
    let transform = FeatureTransform::fit(&columns)?;
    let slices: Vec<&[f64]> = columns.iter().map(|c| c.1).collect();
    let matrix = transform.apply(&slices)?;
    Ok(FeatureMatrix {
        names: columns.iter().map(|c| c.0.to_string()).collect(),
        matrix,
        transform,
    })
}
