//! The feature transform: how partners' raw columns become the matrix that
//! k-means clusters.
//!
//! Per numeric column, in order: a transform (none, `log1p`, winsorising at
//! two quantiles, or rank), median imputation of missing values (optionally
//! with a 0/1 missing-indicator column), scaling (standard: mean and standard
//! deviation; robust: median and interquartile range), and a weight that
//! multiplies the scaled column. Categorical columns can enter one-hot, each
//! level a 0/1 column times the column's weight.
//!
//! Design choice: the transform is a value ([`FeatureTransform`]) fitted once
//! and stored with the run, rather than recomputed wherever features are
//! needed: the same partner then gets the same vector in `run`, `assign` and
//! the next period's continuity check, even when the population shifts. A
//! rank is therefore a position on the fitted quantile grid, not a re-ranking
//! of whatever rows are given.

use ndarray::Array2;
use rayon::prelude::*;

/// Quantiles kept to apply a rank transform to new rows.
pub const RANK_GRID: usize = 1001;

/// What is applied to a column before imputation and scaling.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Transform {
    /// The raw value.
    #[default]
    None,
    /// `ln(1 + max(x, 0))`: for heavy-tailed money and counts (negatives count as 0).
    Log1p,
    /// Clip to the fitted `low` and `high` quantiles (e.g. 0.01 and 0.99).
    Winsorise {
        /// Lower quantile.
        low: f64,
        /// Upper quantile.
        high: f64,
    },
    /// The value's position in the fitted distribution, in [0, 1].
    Rank,
}

/// How scaled columns are centred and divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum Scaling {
    /// Mean and standard deviation.
    #[default]
    Standard,
    /// Median and interquartile range: robust to outliers.
    Robust,
}

/// How one numeric column is to be fitted.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec<'a> {
    /// Column name.
    pub name: &'a str,
    /// Values, NaN for missing.
    pub values: &'a [f64],
    /// Transform.
    pub transform: Transform,
    /// Weight after scaling (default 1).
    pub weight: f64,
}

/// How one categorical column enters one-hot.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoricalSpec<'a> {
    /// Column name.
    pub name: &'a str,
    /// Value per row (None for missing).
    pub values: Vec<Option<&'a str>>,
    /// Weight of each 0/1 column.
    pub weight: f64,
}

/// Options of the whole transform.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TransformOptions {
    /// Scaling of numeric columns.
    pub scaling: Scaling,
    /// Add a 0/1 column per numeric column that has missing values when fitted.
    pub missing_indicators: bool,
}

/// One fitted numeric column.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ColumnTransform {
    /// Column name.
    pub name: String,
    /// Transform before imputation.
    pub transform: Transform,
    /// Winsorising bounds in raw units (when winsorising).
    pub clip: Option<(f64, f64)>,
    /// Quantile grid of raw values (when ranking).
    pub grid: Vec<f64>,
    /// Median of the transformed non-missing values: replaces missing ones.
    pub median: f64,
    /// Centre after imputation (mean or median).
    pub centre: f64,
    /// Divisor after imputation (standard deviation or IQR; 1 when 0).
    pub scale: f64,
    /// Multiplier after scaling.
    pub weight: f64,
    /// Whether a missing-indicator column follows.
    pub missing_indicator: bool,
}

/// One fitted one-hot column group.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OneHot {
    /// Column name.
    pub name: String,
    /// Levels seen when fitting, sorted; an unseen level or a missing value is all zeros.
    pub levels: Vec<String>,
    /// Value of a set indicator.
    pub weight: f64,
}

/// A fitted transform.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FeatureTransform {
    /// Numeric columns in matrix order.
    pub columns: Vec<ColumnTransform>,
    /// One-hot groups, after the numeric columns.
    pub one_hot: Vec<OneHot>,
    /// Scaling used.
    pub scaling: Scaling,
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
    /// Columns of different lengths, or not the columns that were fitted.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A bad parameter.
    #[error("column `{column}`: {message}")]
    Parameter {
        /// Column.
        column: String,
        /// What is wrong.
        message: String,
    },
}

/// The median of the non-NaN values (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    quantile(values, 0.5)
}

/// The `q` quantile of the non-NaN values, linearly interpolated (numpy's default).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    quantiles(values, &[q]).pop()
}

/// Several quantiles of the non-NaN values from one sort (empty when every
/// value is missing).
pub fn quantiles(values: &[f64], qs: &[f64]) -> Vec<f64> {
    let mut present: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if present.is_empty() {
        return Vec::new();
    }
    present.sort_unstable_by(f64::total_cmp);
    qs.iter().map(|q| sorted_quantile(&present, *q)).collect()
}

fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let fraction = position - lower as f64;
    sorted[lower] + (sorted[upper] - sorted[lower]) * fraction
}

impl ColumnTransform {
    /// The transformed value (NaN stays NaN).
    fn transform(&self, value: f64) -> f64 {
        if value.is_nan() {
            return value;
        }
        match self.transform {
            Transform::None => value,
            Transform::Log1p => value.max(0.0).ln_1p(),
            Transform::Winsorise { .. } => self
                .clip
                .map_or(value, |(low, high)| value.clamp(low, high)),
            Transform::Rank => {
                let grid = &self.grid;
                if grid.is_empty() {
                    return 0.5;
                }
                // Position on the quantile grid, interpolated between grid points.
                let above = grid.partition_point(|g| *g <= value);
                let below = grid.partition_point(|g| *g < value);
                let index = (above + below) as f64 / 2.0;
                ((index - 0.5) / (grid.len() - 1) as f64).clamp(0.0, 1.0)
            }
        }
    }

    /// The scaled, weighted value of a raw value.
    fn scaled(&self, value: f64) -> f64 {
        let transformed = self.transform(value);
        let imputed = if transformed.is_nan() {
            self.median
        } else {
            transformed
        };
        (imputed - self.centre) / self.scale * self.weight
    }
}

/// A column's values in row order, or at the selected rows in their order.
fn selected<'a>(
    values: &'a [f64],
    selection: Option<&'a [usize]>,
) -> impl Iterator<Item = f64> + 'a {
    let (all, some) = match selection {
        None => (Some(values.iter().copied()), None),
        Some(rows) => (None, Some(rows.iter().map(|row| values[*row]))),
    };
    all.into_iter().flatten().chain(some.into_iter().flatten())
}

/// Checks a column's length: `rows` values, or (with a selection) every
/// selected row within the column.
fn check_rows(
    name: &str,
    length: usize,
    rows: usize,
    selection: Option<&[usize]>,
) -> Result<(), FeatureError> {
    match selection {
        None if length != rows => Err(FeatureError::Shape(format!(
            "column `{name}` has {length} rows, expected {rows}"
        ))),
        Some(selected) if selected.iter().any(|row| *row >= length) => Err(FeatureError::Shape(
            format!("column `{name}` has {length} rows, fewer than the rows selected"),
        )),
        _ => Ok(()),
    }
}

/// Fits one numeric column: its transform's parameters, the median that
/// imputes it, and its centre and scale.
fn fit_column(
    spec: &ColumnSpec,
    rows: usize,
    selection: Option<&[usize]>,
    options: TransformOptions,
) -> Result<ColumnTransform, FeatureError> {
    check_rows(spec.name, spec.values.len(), rows, selection)?;
    let parameter = |message: String| FeatureError::Parameter {
        column: spec.name.to_string(),
        message,
    };
    if !spec.weight.is_finite() || spec.weight < 0.0 {
        return Err(parameter(format!(
            "weight must be finite and >= 0, got {}",
            spec.weight
        )));
    }
    let mut present: Vec<f64> = selected(spec.values, selection)
        .filter(|v| !v.is_nan())
        .collect();
    if present.is_empty() {
        return Err(FeatureError::AllMissing(spec.name.to_string()));
    }
    present.sort_unstable_by(f64::total_cmp);
    let mut column = ColumnTransform {
        name: spec.name.to_string(),
        transform: spec.transform,
        clip: None,
        grid: Vec::new(),
        median: 0.0,
        centre: 0.0,
        scale: 1.0,
        weight: spec.weight,
        missing_indicator: options.missing_indicators && present.len() < rows,
    };
    match spec.transform {
        Transform::Winsorise { low, high } => {
            if !(0.0..=1.0).contains(&low) || !(0.0..=1.0).contains(&high) || low >= high {
                return Err(parameter(format!(
                    "winsorise quantiles must satisfy 0 <= low < high <= 1, got {low} and {high}"
                )));
            }
            column.clip = Some((
                sorted_quantile(&present, low),
                sorted_quantile(&present, high),
            ));
        }
        Transform::Rank => {
            column.grid = (0..RANK_GRID)
                .map(|i| sorted_quantile(&present, i as f64 / (RANK_GRID - 1) as f64))
                .collect();
        }
        Transform::None | Transform::Log1p => {}
    }
    let transformed: Vec<f64> = selected(spec.values, selection)
        .map(|v| column.transform(v))
        .collect();
    column.median = median(&transformed).unwrap_or(0.0);
    let imputed: Vec<f64> = transformed
        .iter()
        .map(|v| if v.is_nan() { column.median } else { *v })
        .collect();
    let (centre, scale) = match options.scaling {
        Scaling::Standard => {
            let mean = imputed.iter().sum::<f64>() / rows as f64;
            let variance =
                imputed.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / rows as f64;
            (mean, variance.sqrt())
        }
        Scaling::Robust => {
            let mut sorted = imputed.clone();
            sorted.sort_by(f64::total_cmp);
            (
                sorted_quantile(&sorted, 0.5),
                sorted_quantile(&sorted, 0.75) - sorted_quantile(&sorted, 0.25),
            )
        }
    };
    column.centre = centre;
    column.scale = if scale > 0.0 { scale } else { 1.0 };
    Ok(column)
}

impl FeatureTransform {
    /// Fits on numeric columns of equal length (and optional one-hot groups).
    pub fn fit(
        columns: &[ColumnSpec],
        categorical: &[CategoricalSpec],
        options: TransformOptions,
    ) -> Result<Self, FeatureError> {
        Self::fit_impl(columns, categorical, options, None)
    }

    /// [`Self::fit`] on the selected rows of the numeric columns (in the
    /// selection's order, without copying them); the one-hot groups give one
    /// value per selected row.
    pub fn fit_selected(
        columns: &[ColumnSpec],
        categorical: &[CategoricalSpec],
        options: TransformOptions,
        rows: &[usize],
    ) -> Result<Self, FeatureError> {
        Self::fit_impl(columns, categorical, options, Some(rows))
    }

    fn fit_impl(
        columns: &[ColumnSpec],
        categorical: &[CategoricalSpec],
        options: TransformOptions,
        selection: Option<&[usize]>,
    ) -> Result<Self, FeatureError> {
        let rows = selection.map_or_else(
            || columns.first().map_or(0, |c| c.values.len()),
            <[usize]>::len,
        );
        if rows == 0 || columns.is_empty() {
            return Err(FeatureError::Empty {
                rows,
                columns: columns.len(),
            });
        }
        // Columns are fitted in parallel; the first failing column (in
        // order) is the error reported.
        let fitted = columns
            .par_iter()
            .map(|spec| fit_column(spec, rows, selection, options))
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let mut one_hot = Vec::with_capacity(categorical.len());
        for spec in categorical {
            if spec.values.len() != rows {
                return Err(FeatureError::Shape(format!(
                    "column `{}` has {} rows, expected {rows}",
                    spec.name,
                    spec.values.len()
                )));
            }
            if !spec.weight.is_finite() || spec.weight < 0.0 {
                return Err(FeatureError::Parameter {
                    column: spec.name.to_string(),
                    message: format!("weight must be finite and >= 0, got {}", spec.weight),
                });
            }
            let distinct: std::collections::HashSet<&str> =
                spec.values.iter().flatten().copied().collect();
            let mut levels: Vec<String> = distinct.into_iter().map(str::to_string).collect();
            levels.sort_unstable();
            one_hot.push(OneHot {
                name: spec.name.to_string(),
                levels,
                weight: spec.weight,
            });
        }
        Ok(Self {
            columns: fitted,
            one_hot,
            scaling: options.scaling,
        })
    }

    /// Names of the matrix's columns, in order.
    pub fn output_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for column in &self.columns {
            names.push(column.name.clone());
            if column.missing_indicator {
                names.push(format!("{}_missing", column.name));
            }
        }
        for group in &self.one_hot {
            names.extend(
                group
                    .levels
                    .iter()
                    .map(|level| format!("{}={level}", group.name)),
            );
        }
        names
    }

    /// Applies the transform: one row per partner, one column per output name.
    pub fn apply(
        &self,
        columns: &[&[f64]],
        categorical: &[Vec<Option<&str>>],
    ) -> Result<Array2<f64>, FeatureError> {
        self.apply_impl(columns, categorical, None)
    }

    /// [`Self::apply`] to the selected rows of the numeric columns (one
    /// matrix row per selected row, in that order, without copying the
    /// columns); the one-hot values are one per selected row.
    pub fn apply_selected(
        &self,
        columns: &[&[f64]],
        categorical: &[Vec<Option<&str>>],
        rows: &[usize],
    ) -> Result<Array2<f64>, FeatureError> {
        self.apply_impl(columns, categorical, Some(rows))
    }

    fn apply_impl(
        &self,
        columns: &[&[f64]],
        categorical: &[Vec<Option<&str>>],
        selection: Option<&[usize]>,
    ) -> Result<Array2<f64>, FeatureError> {
        if columns.len() != self.columns.len() || categorical.len() != self.one_hot.len() {
            return Err(FeatureError::Shape(format!(
                "{} numeric and {} categorical columns given, {} and {} fitted",
                columns.len(),
                categorical.len(),
                self.columns.len(),
                self.one_hot.len()
            )));
        }
        let rows = selection.map_or_else(|| columns.first().map_or(0, |c| c.len()), <[usize]>::len);
        let width = self.output_names().len();
        let mut matrix = Array2::zeros((rows, width));
        let mut j = 0;
        for (values, fitted) in columns.iter().zip(&self.columns) {
            check_rows(&fitted.name, values.len(), rows, selection)?;
            for (i, value) in selected(values, selection).enumerate() {
                matrix[[i, j]] = fitted.scaled(value);
                if fitted.missing_indicator {
                    matrix[[i, j + 1]] = if value.is_nan() { fitted.weight } else { 0.0 };
                }
            }
            j += 1 + usize::from(fitted.missing_indicator);
        }
        for (values, group) in categorical.iter().zip(&self.one_hot) {
            if values.len() != rows {
                return Err(FeatureError::Shape(format!(
                    "column `{}` has {} rows, expected {rows}",
                    group.name,
                    values.len()
                )));
            }
            for (i, value) in values.iter().enumerate() {
                if let Some(level) =
                    value.and_then(|v| group.levels.binary_search_by(|l| l.as_str().cmp(v)).ok())
                {
                    matrix[[i, j + level]] = group.weight;
                }
            }
            j += group.levels.len();
        }
        Ok(matrix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(name: &'a str, values: &'a [f64], transform: Transform) -> ColumnSpec<'a> {
        ColumnSpec {
            name,
            values,
            transform,
            weight: 1.0,
        }
    }

    #[test]
    fn median_and_quantiles_match_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, f64::NAN, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        // numpy.quantile([1, 2, 3, 4, 10], 0.9) = 7.6
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0, 10.0], 0.9).expect("some") - 7.6).abs() < 1e-12);
    }

    #[test]
    fn fitted_columns_are_standardised_with_missing_values_at_the_median() {
        let revenue = [0.0, 9.0, f64::NAN, 99.0];
        let rate = [0.5, 0.5, 0.5, 0.5];
        let transform = FeatureTransform::fit(
            &[
                spec("revenue", &revenue, Transform::Log1p),
                spec("rate", &rate, Transform::None),
            ],
            &[],
            TransformOptions::default(),
        )
        .expect("fits");
        let matrix = transform.apply(&[&revenue, &rate], &[]).expect("applies");
        let column = matrix.column(0);
        assert!(column.sum().abs() < 1e-12, "centred");
        assert!(
            (column.mapv(|v| v * v).sum() / 4.0 - 1.0).abs() < 1e-12,
            "unit variance"
        );
        assert_eq!(column[1], column[2], "missing imputed with the median");
        assert!(
            matrix.column(1).iter().all(|v| *v == 0.0),
            "a constant column centres to 0"
        );
    }

    #[test]
    fn an_all_missing_column_cannot_be_fitted() {
        let missing = [f64::NAN, f64::NAN];
        assert_eq!(
            FeatureTransform::fit(
                &[spec("x", &missing, Transform::None)],
                &[],
                TransformOptions::default()
            ),
            Err(FeatureError::AllMissing("x".into()))
        );
    }

    #[test]
    fn applying_to_new_rows_uses_the_fitted_values() {
        let fit_on = [1.0, 2.0, 3.0];
        let transform = FeatureTransform::fit(
            &[spec("x", &fit_on, Transform::None)],
            &[],
            TransformOptions::default(),
        )
        .expect("fits");
        let matrix = transform.apply(&[&[2.0, f64::NAN]], &[]).expect("applies");
        assert_eq!(matrix[[0, 0]], 0.0);
        assert_eq!(matrix[[1, 0]], 0.0, "missing -> fitted median 2 -> 0");
    }

    #[test]
    fn winsorising_clips_at_the_fitted_quantiles() {
        let values: Vec<f64> = (0..=100).map(f64::from).collect();
        let transform = FeatureTransform::fit(
            &[spec(
                "x",
                &values,
                Transform::Winsorise {
                    low: 0.1,
                    high: 0.9,
                },
            )],
            &[],
            TransformOptions {
                scaling: Scaling::Robust,
                missing_indicators: false,
            },
        )
        .expect("fits");
        assert_eq!(transform.columns[0].clip, Some((10.0, 90.0)));
        let matrix = transform
            .apply(&[&[-1000.0, 1000.0, 50.0]], &[])
            .expect("applies");
        // robust: centre 50, IQR of the clipped 0..100 = 75 - 25 = 50
        assert_eq!(matrix.column(0).to_vec(), vec![-0.8, 0.8, 0.0]);
        assert!(FeatureTransform::fit(
            &[spec(
                "x",
                &values,
                Transform::Winsorise {
                    low: 0.9,
                    high: 0.1
                }
            )],
            &[],
            TransformOptions::default()
        )
        .is_err());
    }

    #[test]
    fn rank_is_the_position_in_the_fitted_distribution() {
        let values: Vec<f64> = (1..=1000).map(|v| f64::from(v).powi(3)).collect();
        let transform = FeatureTransform::fit(
            &[spec("x", &values, Transform::Rank)],
            &[],
            TransformOptions::default(),
        )
        .expect("fits");
        let column = &transform.columns[0];
        assert!((column.transform(500.0f64.powi(3)) - 0.5).abs() < 0.002);
        assert_eq!(column.transform(-1.0), 0.0);
        assert_eq!(column.transform(1e12), 1.0);
    }

    #[test]
    fn missing_indicators_weights_and_one_hot_make_their_columns() {
        let x = [1.0, f64::NAN, 3.0];
        let kind = vec![Some("msp"), None, Some("reseller")];
        let transform = FeatureTransform::fit(
            &[ColumnSpec {
                name: "x",
                values: &x,
                transform: Transform::None,
                weight: 2.0,
            }],
            &[CategoricalSpec {
                name: "type",
                values: kind.clone(),
                weight: 0.5,
            }],
            TransformOptions {
                scaling: Scaling::Standard,
                missing_indicators: true,
            },
        )
        .expect("fits");
        assert_eq!(
            transform.output_names(),
            vec!["x", "x_missing", "type=msp", "type=reseller"]
        );
        let matrix = transform
            .apply(&[&x], &[vec![Some("msp"), None, Some("installer")]])
            .expect("applies");
        assert_eq!(matrix.column(1).to_vec(), vec![0.0, 2.0, 0.0]);
        assert_eq!(matrix.row(0).to_vec()[2..], [0.5, 0.0]);
        assert_eq!(
            matrix.row(2).to_vec()[2..],
            [0.0, 0.0],
            "an unseen level is all zeros"
        );
        // weight 2 doubles the standardised value: x = 1 -> (1 - 2) / 0.8165 * 2
        assert!((matrix[[0, 0]] - (-1.0 / (2.0f64 / 3.0).sqrt() * 2.0)).abs() < 1e-12);
    }

    #[test]
    fn selected_rows_are_fitted_and_scaled_as_their_copy() {
        let revenue: Vec<f64> = (0..50)
            .map(|i| if i % 7 == 3 { f64::NAN } else { (i * i) as f64 })
            .collect();
        let rate: Vec<f64> = (0..50).map(|i| (i % 11) as f64 / 10.0).collect();
        let rows: Vec<usize> = (0..50).filter(|i| i % 3 != 0).rev().collect();
        let pick = |values: &[f64]| rows.iter().map(|r| values[*r]).collect::<Vec<f64>>();
        let (revenue_copy, rate_copy) = (pick(&revenue), pick(&rate));
        let kinds = [
            Transform::Log1p,
            Transform::Rank,
            Transform::Winsorise {
                low: 0.1,
                high: 0.9,
            },
        ];
        for (transform, scaling) in
            kinds
                .into_iter()
                .zip([Scaling::Standard, Scaling::Robust, Scaling::Standard])
        {
            let options = TransformOptions {
                scaling,
                missing_indicators: true,
            };
            let copied = FeatureTransform::fit(
                &[
                    spec("revenue", &revenue_copy, transform),
                    spec("rate", &rate_copy, Transform::None),
                ],
                &[],
                options,
            )
            .expect("fits");
            let selected = FeatureTransform::fit_selected(
                &[
                    spec("revenue", &revenue, transform),
                    spec("rate", &rate, Transform::None),
                ],
                &[],
                options,
                &rows,
            )
            .expect("fits");
            assert_eq!(copied, selected);
            let from_copy = copied
                .apply(&[&revenue_copy, &rate_copy], &[])
                .expect("applies");
            let from_selection = selected
                .apply_selected(&[&revenue, &rate], &[], &rows)
                .expect("applies");
            assert!(from_copy
                .iter()
                .map(|v| v.to_bits())
                .eq(from_selection.iter().map(|v| v.to_bits())));
        }
        // A selected row beyond the column is a shape error, not a panic.
        let fitted = FeatureTransform::fit(
            &[spec("rate", &rate, Transform::None)],
            &[],
            TransformOptions::default(),
        )
        .expect("fits");
        assert!(matches!(
            fitted.apply_selected(&[&rate], &[], &[3, 50]),
            Err(FeatureError::Shape(_))
        ));
    }
}
