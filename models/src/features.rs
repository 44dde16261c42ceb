//! The feature transform: per column an optional `log1p`, median imputation
//! and standardisation, fitted on one period and applied unchanged to others.
//!
//! Design choice: the transform is a value (`FeatureTransform`) fitted once
//! and stored with the run, rather than recomputed wherever features are
//! needed: the same partner then gets the same scaled vector in `run`,
//! `assign` and the next period's continuity check.

use ndarray::Array2;

/// What is applied to a column before imputation and scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Transform {
    /// The raw value.
    #[default]
    None,
    /// `ln(1 + max(x, 0))`: for heavy-tailed money and counts (negatives clip to 0).
    Log1p,
}

impl Transform {
    /// Applies the transform to one value (NaN stays NaN).
    pub fn apply(self, value: f64) -> f64 {
        match self {
            Transform::None => value,
            // `f64::max` would turn NaN into 0: keep missing values missing.
            Transform::Log1p if value.is_nan() => value,
            Transform::Log1p => value.max(0.0).ln_1p(),
        }
    }
}

/// One fitted column.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ColumnTransform {
    /// Column name.
    pub name: String,
    /// Transform before imputation.
    pub transform: Transform,
    /// Median of the transformed non-missing values: replaces missing ones.
    pub median: f64,
    /// Mean after imputation.
    pub mean: f64,
    /// Standard deviation after imputation (1 when the column is constant).
    pub scale: f64,
}

/// A fitted transform of several columns.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FeatureTransform {
    /// Columns in matrix order.
    pub columns: Vec<ColumnTransform>,
}

/// Why a transform cannot be fitted or applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeatureError {
    /// A column has no non-missing value.
    #[error("column `{0}` has no values to fit")]
    AllMissing(String),
    /// No rows or no columns.
    #[error("nothing to fit: {rows} rows, {columns} columns")]
    Empty {
        /// Rows given.
        rows: usize,
        /// Columns given.
        columns: usize,
    },
    /// Columns of different lengths, or a different number of columns than fitted.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// The median of the non-NaN values (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if present.is_empty() {
        return None;
    }
    let middle = present.len() / 2;
    let (_, upper, _) = present.select_nth_unstable_by(middle, f64::total_cmp);
    let upper = *upper;
    if present.len() % 2 == 1 {
        return Some(upper);
    }
    let lower = present[..middle]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    Some((lower + upper) / 2.0)
}

impl FeatureTransform {
    /// Fits on named columns of equal length.
    pub fn fit(columns: &[(&str, &[f64], Transform)]) -> Result<Self, FeatureError> {
        let rows = columns.first().map_or(0, |c| c.1.len());
        if rows == 0 || columns.is_empty() {
            return Err(FeatureError::Empty {
                rows,
                columns: columns.len(),
            });
        }
        let mut fitted = Vec::with_capacity(columns.len());
        for (name, values, transform) in columns {
            if values.len() != rows {
                return Err(FeatureError::Shape(format!(
                    "column `{name}` has {} rows, expected {rows}",
                    values.len()
                )));
            }
            let transformed: Vec<f64> = values.iter().map(|v| transform.apply(*v)).collect();
            let median = median(&transformed)
                .ok_or_else(|| FeatureError::AllMissing((*name).to_string()))?;
            let imputed = transformed
                .iter()
                .map(|v| if v.is_nan() { median } else { *v });
            let mean = imputed.clone().sum::<f64>() / rows as f64;
            let variance = imputed.map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows as f64;
            let scale = if variance > 0.0 { variance.sqrt() } else { 1.0 };
            fitted.push(ColumnTransform {
                name: (*name).to_string(),
                transform: *transform,
                median,
                mean,
                scale,
            });
        }
        Ok(Self { columns: fitted })
    }

    /// Applies the transform: one row per partner, one column per feature.
    pub fn apply(&self, columns: &[&[f64]]) -> Result<Array2<f64>, FeatureError> {
        if columns.len() != self.columns.len() {
            return Err(FeatureError::Shape(format!(
                "{} columns given, {} fitted",
                columns.len(),
                self.columns.len()
            )));
        }
        let rows = columns.first().map_or(0, |c| c.len());
        let mut matrix = Array2::zeros((rows, columns.len()));
        for (j, (values, fitted)) in columns.iter().zip(&self.columns).enumerate() {
            if values.len() != rows {
                return Err(FeatureError::Shape(format!(
                    "column `{}` has {} rows, expected {rows}",
                    fitted.name,
                    values.len()
                )));
            }
            for (i, value) in values.iter().enumerate() {
                let transformed = fitted.transform.apply(*value);
                let imputed = if transformed.is_nan() {
                    fitted.median
                } else {
                    transformed
                };
                matrix[[i, j]] = (imputed - fitted.mean) / fitted.scale;
            }
        }
        Ok(matrix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_handles_odd_even_and_missing() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, f64::NAN, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn fitted_columns_are_standardised_with_missing_values_at_the_median() {
        let revenue = [0.0, 9.0, f64::NAN, 99.0];
        let rate = [0.5, 0.5, 0.5, 0.5];
        let transform = FeatureTransform::fit(&[
            ("revenue", &revenue, Transform::Log1p),
            ("rate", &rate, Transform::None),
        ])
        .expect("fits");
        let matrix = transform.apply(&[&revenue, &rate]).expect("applies");
        // log1p: 0, ln 10, missing -> median ln 10, ln 100
        let column = matrix.column(0);
        assert!((column.sum()).abs() < 1e-12, "centred");
        assert!(
            (column.mapv(|v| v * v).sum() / 4.0 - 1.0).abs() < 1e-12,
            "unit variance"
        );
        assert_eq!(column[1], column[2], "missing imputed with the median");
        // A constant column scales by 1 and centres to 0.
        assert!(matrix.column(1).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn an_all_missing_column_cannot_be_fitted() {
        let missing = [f64::NAN, f64::NAN];
        assert_eq!(
            FeatureTransform::fit(&[("x", &missing, Transform::None)]),
            Err(FeatureError::AllMissing("x".into()))
        );
    }

    #[test]
    fn applying_to_new_rows_uses_the_fitted_values() {
        let fit_on = [1.0, 2.0, 3.0];
        let transform = FeatureTransform::fit(&[("x", &fit_on, Transform::None)]).expect("fits");
        let later = [2.0, f64::NAN];
        let matrix = transform.apply(&[&later]).expect("applies");
        assert_eq!(matrix[[0, 0]], 0.0);
        assert_eq!(matrix[[1, 0]], 0.0, "missing -> fitted median 2 -> 0");
    }
}
