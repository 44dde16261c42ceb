//! Lift: how much a scheme changed an outcome, per partner, against the
//! holdout of the same stratum.
//!
//! **Estimator.** Lin's (2013) interacted regression on the cell's two arms
//! only: `y ~ 1 + T + Xc + T*Xc`, where `T` is 1 for a treated partner and
//! `Xc` is the pre-period covariate centred on the cell's pooled mean (and
//! divided by its pooled standard deviation, which changes no estimate and
//! keeps the normal equations well conditioned). The coefficient of `T` is
//! the lift; its standard error is HC2 (heteroskedasticity-consistent, each
//! squared residual divided by `1 - h_ii`). Without a covariate the design is
//! `1 + T`, whose coefficient is the difference in means and whose HC2 error
//! is exactly Welch's: one code path for both. Intervals and p-values use the
//! normal quantile.
//!
//! **Missing covariates.** A missing pre-period value is set to the pooled
//! mean (0 after centring); when each arm has at least two such partners a
//! centred missing indicator `Mc` (and `T*Mc`) joins the design, so that
//! "no history" can have its own level. A covariate that does not vary within
//! an arm cannot be adjusted for and is left out (the fit is then the
//! difference in means), as is any column that would give a partner a
//! leverage of 1.
//!
//! **Money, power and checks.** [`mde`] is the minimum detectable effect at
//! 5 % two-sided and 80 % power; [`smallest_holdout_share`] inverts it for a
//! planned draw; [`benjamini_hochberg`] gives step-up q-values;
//! [`sample_ratio_test`] is the chi-square test of assignment counts against
//! the published shares.

use linfa_linalg::cholesky::InverseC;
use ndarray::{Array1, Array2, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Two-sided level of the contract's intervals.
pub const CONFIDENCE: f64 = 0.95;

/// Leverages at or above this count as 1: the design is degenerate.
const MAX_LEVERAGE: f64 = 1.0 - 1e-10;

/// The standard normal quantile.
pub fn normal_quantile(p: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(f64::NAN, |normal| normal.inverse_cdf(p))
}

/// One arm of a cell: outcomes and, when configured, the pre-period
/// covariate of the same partners (NaN = missing).
#[derive(Debug, Clone, Copy)]
pub struct Arm<'a> {
    /// Outcomes (no NaN).
    pub y: &'a [f64],
    /// Covariate, same length as `y`.
    pub x: Option<&'a [f64]>,
}

/// How the covariate entered a cell's regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovariateUse {
    /// No covariate (none configured, or it cannot be adjusted for).
    NotUsed,
    /// Centred and interacted; missing values (if any) at the pooled mean.
    Centred,
    /// As `Centred`, plus a centred missing indicator and its interaction.
    CentredWithIndicator,
}

/// A cell's regression design, exactly as fitted.
#[derive(Debug, Clone)]
pub struct Design {
    /// Column names, `const` and `treated` first.
    pub columns: Vec<&'static str>,
    /// One row per partner: treated partners first, then holdout.
    pub x: Array2<f64>,
    /// Outcomes, same rows.
    pub y: Array1<f64>,
    /// What the covariate columns are.
    pub covariate: CovariateUse,
}

/// Column of the lift coefficient in every [`Design`].
pub const TREATED_COLUMN: usize = 1;

struct CovariateSummary {
    mean: f64,
    scale: f64,
    missing_share: f64,
}

/// Decides how the covariate can enter: it must vary within each arm.
fn covariate_summary(treated: Arm, holdout: Arm) -> Option<(CovariateSummary, bool)> {
    let (xt, xh) = (treated.x?, holdout.x?);
    let observed = |x: &[f64]| {
        x.iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect::<Vec<_>>()
    };
    let (ot, oh) = (observed(xt), observed(xh));
    let varies = |o: &[f64]| o.iter().any(|v| *v != o[0]);
    if ot.len() < 2 || oh.len() < 2 || !varies(&ot) || !varies(&oh) {
        return None;
    }
    let n_observed = (ot.len() + oh.len()) as f64;
    let mean = ot.iter().chain(&oh).sum::<f64>() / n_observed;
    let variance = ot
        .iter()
        .chain(&oh)
        .map(|v| (v - mean).powi(2))
        .sum::<f64>()
        / n_observed;
    let (missing_t, missing_h) = (xt.len() - ot.len(), xh.len() - oh.len());
    let n = (xt.len() + xh.len()) as f64;
    let summary = CovariateSummary {
        mean,
        scale: variance.sqrt(),
        missing_share: (missing_t + missing_h) as f64 / n,
    };
    Some((summary, missing_t >= 2 && missing_h >= 2))
}

/// Builds the design of a cell with the richest covariate use allowed, at
/// most `limit`.
fn build_design(treated: Arm, holdout: Arm, limit: CovariateUse) -> Design {
    let n = treated.y.len() + holdout.y.len();
    let summary = match limit {
        CovariateUse::NotUsed => None,
        _ => covariate_summary(treated, holdout),
    };
    let covariate = match (&summary, limit) {
        (None, _) => CovariateUse::NotUsed,
        (Some((_, true)), CovariateUse::CentredWithIndicator) => CovariateUse::CentredWithIndicator,
        (Some(_), _) => CovariateUse::Centred,
    };
    let columns: Vec<&'static str> = match covariate {
        CovariateUse::NotUsed => vec!["const", "treated"],
        CovariateUse::Centred => vec!["const", "treated", "x_c", "treated_x_c"],
        CovariateUse::CentredWithIndicator => vec![
            "const",
            "treated",
            "x_c",
            "missing_c",
            "treated_x_c",
            "treated_missing_c",
        ],
    };
    let mut x = Array2::zeros((n, columns.len()));
    let mut y = Array1::zeros(n);
    let arms = [(treated, 1.0), (holdout, 0.0)];
    let rows = arms
        .iter()
        .flat_map(|(arm, t)| (0..arm.y.len()).map(move |i| (arm, *t, i)));
    for (row, (arm, t, i)) in rows.enumerate() {
        y[row] = arm.y[i];
        x[[row, 0]] = 1.0;
        x[[row, 1]] = t;
        if let Some((summary, _)) = &summary {
            let value = arm.x.map_or(f64::NAN, |x| x[i]);
            let centred = if value.is_nan() {
                0.0
            } else {
                (value - summary.mean) / summary.scale
            };
            match covariate {
                CovariateUse::NotUsed => {}
                CovariateUse::Centred => {
                    x[[row, 2]] = centred;
                    x[[row, 3]] = t * centred;
                }
                CovariateUse::CentredWithIndicator => {
                    let missing = f64::from(u8::from(value.is_nan())) - summary.missing_share;
                    x[[row, 2]] = centred;
                    x[[row, 3]] = missing;
                    x[[row, 4]] = t * centred;
                    x[[row, 5]] = t * missing;
                }
            }
        }
    }
    Design {
        columns,
        x,
        y,
        covariate,
    }
}

/// An ordinary least squares fit with HC2 errors.
#[derive(Debug, Clone)]
pub struct OlsHc2 {
    /// Coefficients, in the design's column order.
    pub beta: Array1<f64>,
    /// HC2 standard errors of the coefficients.
    pub se: Array1<f64>,
    /// Residuals.
    pub residuals: Array1<f64>,
}

/// Fits OLS with HC2 errors; `None` when the design is singular or gives a
/// row a leverage of 1.
pub fn ols_hc2(x: &Array2<f64>, y: &Array1<f64>) -> Option<OlsHc2> {
    let inverse = x.t().dot(x).invc().ok()?;
    if inverse.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let beta = inverse.dot(&x.t().dot(y));
    let residuals = y - &x.dot(&beta);
    let leverage = (&x.dot(&inverse) * x).sum_axis(Axis(1));
    if leverage.iter().any(|h| h.is_nan() || *h >= MAX_LEVERAGE) {
        return None;
    }
    let weights = &residuals * &residuals / leverage.mapv(|h| 1.0 - h);
    let weighted = x * &weights.insert_axis(Axis(1));
    let covariance = inverse.dot(&x.t().dot(&weighted)).dot(&inverse);
    let se = covariance.diag().mapv(|v| v.max(0.0).sqrt());
    Some(OlsHc2 {
        beta,
        se,
        residuals,
    })
}

/// The lift of one cell.
#[derive(Debug, Clone, PartialEq)]
pub struct LiftEstimate {
    /// Treated partners.
    pub n_treated: usize,
    /// Holdout partners.
    pub n_holdout: usize,
    /// Mean outcome of the holdout arm (for the relative lift).
    pub mean_holdout: f64,
    /// The lift per partner (the coefficient of `T`).
    pub lift: f64,
    /// Its HC2 standard error.
    pub se: f64,
    /// Lower end of the 95 % interval.
    pub ci_low: f64,
    /// Upper end of the 95 % interval.
    pub ci_high: f64,
    /// Two-sided p-value of "no lift".
    pub p_value: f64,
    /// How the covariate entered.
    pub covariate: CovariateUse,
    /// Welch's standard error of the plain difference in means, for the
    /// variance reduction the covariate bought.
    pub se_unadjusted: f64,
    /// Residual variance per partner in the treated arm (for power).
    pub residual_variance_treated: f64,
    /// Residual variance per partner in the holdout arm.
    pub residual_variance_holdout: f64,
}

/// The design [`estimate`] fits for a cell (for inspection: a debug dump).
pub fn design(treated: Arm, holdout: Arm) -> Design {
    fitted(treated, holdout).map_or_else(
        || build_design(treated, holdout, CovariateUse::NotUsed),
        |(design, _)| design,
    )
}

/// The richest design that fits, with its fit.
fn fitted(treated: Arm, holdout: Arm) -> Option<(Design, OlsHc2)> {
    if treated.y.len() < 2 || holdout.y.len() < 2 {
        return None;
    }
    [
        CovariateUse::CentredWithIndicator,
        CovariateUse::Centred,
        CovariateUse::NotUsed,
    ]
    .into_iter()
    .find_map(|limit| {
        let design = build_design(treated, holdout, limit);
        (design.covariate == limit || limit == CovariateUse::NotUsed)
            .then(|| ols_hc2(&design.x, &design.y))
            .flatten()
            .map(|fit| (design, fit))
    })
}

fn arm_residual_variance(residuals: &[f64], parameters: usize) -> f64 {
    let dof = residuals.len().saturating_sub(parameters).max(1) as f64;
    residuals.iter().map(|e| e * e).sum::<f64>() / dof
}

/// Lin's estimate with HC2 errors for a cell (the difference in means when
/// no covariate is given); `None` with fewer than two partners in an arm.
pub fn estimate(treated: Arm, holdout: Arm) -> Option<LiftEstimate> {
    let (design, fit) = fitted(treated, holdout)?;
    let first = treated.y[0];
    let (lift, se) = if treated.y.iter().chain(holdout.y).all(|y| *y == first) {
        // All equal: exactly no lift (the fit would leave rounding noise).
        (0.0, 0.0)
    } else {
        (fit.beta[TREATED_COLUMN], fit.se[TREATED_COLUMN])
    };
    let (ci_low, ci_high, p_value) = normal_interval(lift, se);
    let se_unadjusted = if design.covariate == CovariateUse::NotUsed {
        se
    } else {
        welch_se(treated.y, holdout.y)
    };
    let n_t = treated.y.len();
    // Half the columns belong to each arm once the design is split by T.
    let per_arm = design.columns.len() / 2;
    let residuals = fit.residuals.as_slice().unwrap_or(&[]);
    Some(LiftEstimate {
        n_treated: n_t,
        n_holdout: holdout.y.len(),
        mean_holdout: holdout.y.iter().sum::<f64>() / holdout.y.len() as f64,
        lift,
        se,
        ci_low,
        ci_high,
        p_value,
        covariate: design.covariate,
        se_unadjusted,
        residual_variance_treated: arm_residual_variance(&residuals[..n_t], per_arm),
        residual_variance_holdout: arm_residual_variance(&residuals[n_t..], per_arm),
    })
}

/// Normal 95 % interval and two-sided p-value of an estimate.
pub fn normal_interval(estimate: f64, se: f64) -> (f64, f64, f64) {
    if se > 0.0 {
        let half_width = normal_quantile(0.5 + CONFIDENCE / 2.0) * se;
        let z = (estimate / se).abs();
        let p = Normal::new(0.0, 1.0).map_or(f64::NAN, |n| 2.0 * n.sf(z));
        (
            estimate - half_width,
            estimate + half_width,
            p.clamp(0.0, 1.0),
        )
    } else {
        let p = if estimate == 0.0 { 1.0 } else { 0.0 };
        (estimate, estimate, p)
    }
}

/// Welch's standard error of a difference in means.
pub fn welch_se(treated: &[f64], holdout: &[f64]) -> f64 {
    let variance_of_mean = |v: &[f64]| {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) / n
    };
    (variance_of_mean(treated) + variance_of_mean(holdout)).sqrt()
}

/// Percentile bootstrap 95 % interval of [`estimate`]'s lift: `resamples`
/// resamples drawn with replacement within each arm, resample `b` from the
/// ChaCha8 stream `b` of `seed` (the same interval whatever the thread
/// count). `None` when fewer than 20 resamples give an estimate.
pub fn bootstrap_interval(
    treated: Arm,
    holdout: Arm,
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    let resample = |arm: Arm, rng: &mut ChaCha8Rng| -> (Vec<f64>, Option<Vec<f64>>) {
        let n = arm.y.len();
        let picks: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
        let y = picks.iter().map(|&i| arm.y[i]).collect();
        let x = arm.x.map(|x| picks.iter().map(|&i| x[i]).collect());
        (y, x)
    };
    let mut lifts: Vec<f64> = (0..resamples)
        .into_par_iter()
        .filter_map(|b| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(b as u64);
            let (ty, tx) = resample(treated, &mut rng);
            let (hy, hx) = resample(holdout, &mut rng);
            let treated = Arm {
                y: &ty,
                x: tx.as_deref(),
            };
            let holdout = Arm {
                y: &hy,
                x: hx.as_deref(),
            };
            let fit = fitted(treated, holdout)?;
            Some(fit.1.beta[TREATED_COLUMN])
        })
        .collect();
    if lifts.len() < 20 {
        return None;
    }
    lifts.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let position = q * (lifts.len() - 1) as f64;
        let (low, high) = (position.floor() as usize, position.ceil() as usize);
        lifts[low] + (lifts[high] - lifts[low]) * (position - low as f64)
    };
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some((at(tail), at(1.0 - tail)))
}

/// Minimum detectable effect at 5 % two-sided and 80 % power: (z_0.975 + z_0.8) x se.
pub fn mde(se: f64) -> f64 {
    (normal_quantile(0.975) + normal_quantile(0.8)) * se
}

/// One scheme of a planned draw, for [`smallest_holdout_share`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedArm {
    /// Share of the non-held-out partners drawn into the scheme.
    pub weight: f64,
    /// Residual variance per treated partner.
    pub variance_treated: f64,
    /// Residual variance per holdout partner.
    pub variance_holdout: f64,
}

/// The smallest holdout share `h <= 0.5` (on a 0.005 grid) at which every
/// scheme's [`mde`] is at most `min_effect`, for a segment of `n_partners`:
/// `n_holdout = h N`, `n_treated = (1 - h) w N`. `None`: unreachable.
pub fn smallest_holdout_share(
    min_effect: f64,
    n_partners: f64,
    arms: &[PlannedArm],
) -> Option<f64> {
    if arms.is_empty() || min_effect.is_nan() || min_effect <= 0.0 {
        return None;
    }
    (1..=100).map(|step| step as f64 * 0.005).find(|h| {
        arms.iter()
            .all(|arm| arm.mde(*h, n_partners).is_some_and(|m| m <= min_effect))
    })
}

impl PlannedArm {
    /// The [`mde`] of this scheme at holdout share `h` of `n_partners`
    /// (`None` with fewer than two partners in an arm).
    pub fn mde(&self, h: f64, n_partners: f64) -> Option<f64> {
        let n_treated = (1.0 - h) * self.weight * n_partners;
        let n_holdout = h * n_partners;
        (n_treated >= 2.0 && n_holdout >= 2.0).then(|| {
            mde((self.variance_treated / n_treated + self.variance_holdout / n_holdout).sqrt())
        })
    }
}

/// Benjamini-Hochberg step-up q-values; `None` p-values are left out and stay `None`.
pub fn benjamini_hochberg(p_values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut present: Vec<(usize, f64)> = p_values
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.map(|p| (i, p)))
        .collect();
    present.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let m = present.len() as f64;
    let mut q = vec![None; p_values.len()];
    let mut running_min = 1.0f64;
    for (rank, (index, p)) in present.iter().enumerate().rev() {
        running_min = running_min.min(p * m / (rank as f64 + 1.0));
        q[*index] = Some(running_min.min(1.0));
    }
    q
}

/// A chi-square goodness-of-fit test of assignment counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRatioTest {
    /// The chi-square statistic.
    pub chi_square: f64,
    /// Degrees of freedom (arms with a positive expected count, minus 1).
    pub df: usize,
    /// Its p-value (0 when a partner sits in an arm that should be empty).
    pub p_value: f64,
}

/// Sample ratio mismatch: observed counts per arm against expected shares
/// (which need not be normalised). `None` with fewer than two arms expected
/// or no partner.
pub fn sample_ratio_test(observed: &[u64], expected_shares: &[f64]) -> Option<SampleRatioTest> {
    let total: u64 = observed.iter().sum();
    let share_total: f64 = expected_shares.iter().filter(|s| **s > 0.0).sum();
    let df = expected_shares
        .iter()
        .filter(|s| **s > 0.0)
        .count()
        .checked_sub(1)?;
    if total == 0 || df == 0 {
        return None;
    }
    let mut chi_square = 0.0;
    let mut impossible = false;
    for (count, share) in observed.iter().zip(expected_shares) {
        if *share > 0.0 {
            let expected = total as f64 * share / share_total;
            chi_square += (*count as f64 - expected).powi(2) / expected;
        } else if *count > 0 {
            impossible = true;
        }
    }
    let p_value = if impossible {
        0.0
    } else {
        ChiSquared::new(df as f64).map_or(f64::NAN, |c| c.sf(chi_square))
    };
    Some(SampleRatioTest {
        chi_square,
        df,
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm<'a>(y: &'a [f64], x: Option<&'a [f64]>) -> Arm<'a> {
        Arm { y, x }
    }

    #[test]
    fn without_a_covariate_the_lift_is_the_difference_in_means_with_welch_errors() {
        // treated: mean 5, var 2.5; holdout: mean 2, var 1 (n 5 and 3)
        let estimate = estimate(
            arm(&[3.0, 4.0, 5.0, 6.0, 7.0], None),
            arm(&[1.0, 2.0, 3.0], None),
        )
        .expect("estimable");
        assert!((estimate.lift - 3.0).abs() < 1e-12);
        let se = (2.5f64 / 5.0 + 1.0 / 3.0).sqrt();
        assert!((estimate.se - se).abs() < 1e-12, "{} vs {se}", estimate.se);
        assert_eq!(estimate.se, estimate.se_unadjusted);
        assert_eq!(estimate.covariate, CovariateUse::NotUsed);
        let half = 1.959963984540054 * se;
        assert!((estimate.ci_low - (3.0 - half)).abs() < 1e-9);
        assert!(estimate.p_value < 0.01);
    }

    #[test]
    fn a_covariate_that_explains_the_outcome_removes_its_noise() {
        // y = 2 x + noise-free lift 1.5: the adjusted lift is exact, se ~ 0.
        let xt: Vec<f64> = (0..40).map(|i| f64::from(i % 7)).collect();
        let xh: Vec<f64> = (0..30).map(|i| f64::from(i % 5)).collect();
        let yt: Vec<f64> = xt.iter().map(|x| 2.0 * x + 1.5).collect();
        let yh: Vec<f64> = xh.iter().map(|x| 2.0 * x).collect();
        let e = estimate(arm(&yt, Some(&xt)), arm(&yh, Some(&xh))).expect("estimable");
        assert_eq!(e.covariate, CovariateUse::Centred);
        assert!((e.lift - 1.5).abs() < 1e-9, "{}", e.lift);
        assert!(e.se < 1e-9 && e.se_unadjusted > 0.5);
    }

    #[test]
    fn missing_covariates_get_an_indicator_when_each_arm_has_two() {
        let xt = [1.0, 2.0, f64::NAN, 4.0, f64::NAN, 6.0];
        let xh = [1.0, f64::NAN, 3.0, f64::NAN, 5.0];
        let yt = [2.0, 3.0, 9.0, 6.0, 8.5, 8.0];
        let yh = [1.0, 7.0, 3.0, 7.5, 5.0];
        let d = design(arm(&yt, Some(&xt)), arm(&yh, Some(&xh)));
        assert_eq!(d.covariate, CovariateUse::CentredWithIndicator);
        assert_eq!(d.columns.len(), 6);
        // Centred columns sum to zero over the cell.
        for column in 2..4 {
            assert!(d.x.column(column).sum().abs() < 1e-12);
        }
        // One missing value in an arm: imputed at the mean, no indicator.
        let d = design(
            arm(&yt, Some(&[1.0, 2.0, f64::NAN, 4.0, 5.0, 6.0])),
            arm(&yh, Some(&xh)),
        );
        assert_eq!(d.covariate, CovariateUse::Centred);
    }

    #[test]
    fn a_covariate_constant_in_an_arm_is_left_out() {
        let e = estimate(
            arm(&[1.0, 2.0, 3.0], Some(&[5.0, 5.0, 5.0])),
            arm(&[1.0, 2.0, 4.0], Some(&[1.0, 2.0, 3.0])),
        )
        .expect("estimable");
        assert_eq!(e.covariate, CovariateUse::NotUsed);
    }

    #[test]
    fn equal_outcomes_give_a_zero_width_interval() {
        let e = estimate(arm(&[2.0, 2.0, 2.0], None), arm(&[2.0, 2.0], None)).expect("estimable");
        assert_eq!((e.lift, e.se, e.p_value), (0.0, 0.0, 1.0));
    }

    #[test]
    fn one_value_per_arm_is_not_estimable() {
        assert!(estimate(arm(&[1.0], None), arm(&[1.0, 2.0], None)).is_none());
    }

    #[test]
    fn the_bootstrap_interval_is_seeded_and_brackets_the_estimate() {
        let yt: Vec<f64> = (0..200).map(|i| f64::from(i % 13) + 1.0).collect();
        let yh: Vec<f64> = (0..150).map(|i| f64::from(i % 11)).collect();
        let a = bootstrap_interval(arm(&yt, None), arm(&yh, None), 200, 7).expect("interval");
        let b = bootstrap_interval(arm(&yt, None), arm(&yh, None), 200, 7).expect("interval");
        assert_eq!(a, b);
        let e = estimate(arm(&yt, None), arm(&yh, None)).expect("estimable");
        assert!(a.0 < e.lift && e.lift < a.1);
        // Close to the normal interval at this size.
        assert!(((a.1 - a.0) / (e.ci_high - e.ci_low) - 1.0).abs() < 0.25);
    }

    #[test]
    fn benjamini_hochberg_matches_a_hand_worked_example() {
        let q = benjamini_hochberg(&[Some(0.01), Some(0.04), None, Some(0.03), Some(0.5)]);
        // m = 4: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.0533, 0.0533, 0.5
        let expected = [
            Some(0.04),
            Some(0.04 * 4.0 / 3.0),
            None,
            Some(0.04 * 4.0 / 3.0),
            Some(0.5),
        ];
        for (got, want) in q.iter().zip(expected) {
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-12, "{g} vs {w}"),
                (None, None) => {}
                _ => panic!("{q:?}"),
            }
        }
    }

    #[test]
    fn mde_is_about_2_8_standard_errors() {
        assert!((mde(1.0) - 2.8016).abs() < 1e-3);
    }

    #[test]
    fn the_smallest_holdout_share_reaches_the_effect_or_says_unreachable() {
        let arm = PlannedArm {
            weight: 0.5,
            variance_treated: 100.0,
            variance_holdout: 100.0,
        };
        let h = smallest_holdout_share(1.0, 20_000.0, &[arm]).expect("reachable");
        let se = |h: f64| (100.0 / ((1.0 - h) * 0.5 * 20_000.0) + 100.0 / (h * 20_000.0)).sqrt();
        assert!(mde(se(h)) <= 1.0 && mde(se(h - 0.005)) > 1.0, "h = {h}");
        assert_eq!(smallest_holdout_share(0.01, 20_000.0, &[arm]), None);
    }

    #[test]
    fn the_sample_ratio_test_passes_a_fair_draw_and_fires_on_a_skewed_one() {
        let fair = sample_ratio_test(&[100, 452, 448], &[0.1, 0.45, 0.45]).expect("test");
        assert_eq!(fair.df, 2);
        assert!(fair.p_value > 0.5, "{fair:?}");
        let skewed = sample_ratio_test(&[40, 480, 480], &[0.1, 0.45, 0.45]).expect("test");
        assert!(skewed.p_value < 1e-4, "{skewed:?}");
        let impossible = sample_ratio_test(&[1, 50, 50], &[0.0, 0.5, 0.5]).expect("test");
        assert_eq!(impossible.p_value, 0.0);
    }
}
