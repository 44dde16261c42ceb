//! Stage 2, features: the partners' numeric columns as one scaled matrix.
//!
//! Each configured numeric column gets its transform (none, `log1p`,
//! winsorising, rank), missing values take the column's median (with an
//! optional missing indicator), every column is scaled (standard or robust)
//! and weighted, and chosen categorical columns enter one-hot, so that k-means
//! distances weigh features as configured. The fitted transform is kept (and
//! saved with the run) so later partners are scaled exactly as these were.

use ndarray::Array2;
use segtune_models::features::{CategoricalSpec, ColumnSpec, FeatureTransform, TransformOptions};

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

/// Fits the transform on the given partner rows and applies it to them (one
/// matrix row per given row, in that order).
pub fn build(
    partners: &PartnersTable,
    rows: &[usize],
    settings: &FeatureSettings,
) -> anyhow::Result<FeatureMatrix> {
    // The columns whole, with the rows selected (no copy of the subset).
    let columns: Vec<ColumnSpec> = partners
        .numeric
        .iter()
        .map(|column| ColumnSpec {
            name: column.name.as_str(),
            values: column.values.as_slice(),
            transform: settings
                .transforms
                .get(&column.name)
                .copied()
                .unwrap_or_default(),
            weight: settings.weights.get(&column.name).copied().unwrap_or(1.0),
        })
        .collect();
    let categorical: Vec<CategoricalSpec> = partners
        .categorical
        .iter()
        .filter_map(|column| {
            settings
                .one_hot
                .get(&column.name)
                .map(|weight| CategoricalSpec {
                    name: column.name.as_str(),
                    values: rows
                        .iter()
                        .map(|r| column.codes[*r].map(|c| column.levels[c as usize].as_str()))
                        .collect(),
                    weight: *weight,
                })
        })
        .collect();
    let options = TransformOptions {
        scaling: settings.scaling,
        missing_indicators: settings.missing_indicators,
    };
    let transform = FeatureTransform::fit_selected(&columns, &categorical, options, rows)?;
    let slices: Vec<&[f64]> = columns.iter().map(|c| c.values).collect();
    let categorical_values: Vec<Vec<Option<&str>>> =
        categorical.into_iter().map(|c| c.values).collect();
    let matrix = transform.apply_selected(&slices, &categorical_values, rows)?;
    Ok(FeatureMatrix {
        names: transform.output_names(),
        matrix,
        transform,
    })
}
