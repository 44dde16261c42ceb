//! Lift: how much a scheme changed an outcome, per partner, against the
//! holdout of the same stratum.
//!
//! The estimator here is the difference in means with Welch's standard error
//! and a Welch-Satterthwaite t interval: it assumes nothing about equal
//! variances, which matters because treated and holdout arms differ in size
//! by a factor of ten or more. Benjamini-Hochberg q-values control the false
//! discovery rate over the many cells a run estimates.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Two-sided 95 % level of the contract's intervals.
pub const CONFIDENCE: f64 = 0.95;

/// A difference in means between a treated arm and its holdout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiffInMeans {
    /// Treated partners with an outcome.
    pub n_treated: usize,
    /// Holdout partners with an outcome.
    pub n_holdout: usize,
    /// Mean outcome of the treated arm.
    pub mean_treated: f64,
    /// Mean outcome of the holdout arm.
    pub mean_holdout: f64,
    /// mean_treated - mean_holdout.
    pub lift: f64,
    /// Welch standard error.
    pub se: f64,
    /// Welch-Satterthwaite degrees of freedom (infinite when se is 0).
    pub df: f64,
    /// Lower end of the 95 % interval.
    pub ci_low: f64,
    /// Upper end of the 95 % interval.
    pub ci_high: f64,
    /// Two-sided p-value of "no lift".
    pub p_value: f64,
}

fn mean_and_variance(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (mean, variance)
}

/// The standard normal quantile.
pub fn normal_quantile(p: f64) -> f64 {
    Normal::new(0.0, 1.0).map_or(f64::NAN, |normal| normal.inverse_cdf(p))
}

/// Difference in means with Welch's errors; `None` with fewer than two values in an arm.
pub fn welch(treated: &[f64], holdout: &[f64]) -> Option<DiffInMeans> {
    if treated.len() < 2 || holdout.len() < 2 {
        return None;
    }
    let (mean_treated, var_treated) = mean_and_variance(treated);
    let (mean_holdout, var_holdout) = mean_and_variance(holdout);
    let (n_t, n_h) = (treated.len() as f64, holdout.len() as f64);
    let (a, b) = (var_treated / n_t, var_holdout / n_h);
    let se = (a + b).sqrt();
    let lift = mean_treated - mean_holdout;
    let (df, half_width, p_value) = if se > 0.0 {
        let df = (a + b).powi(2) / (a * a / (n_t - 1.0) + b * b / (n_h - 1.0));
        let t = StudentsT::new(0.0, 1.0, df).ok();
        let quantile = t.as_ref().map_or(normal_quantile(0.975), |t| {
            t.inverse_cdf(0.5 + CONFIDENCE / 2.0)
        });
        let p = t
            .as_ref()
            .map_or(f64::NAN, |t| 2.0 * (1.0 - t.cdf((lift / se).abs())));
        (df, quantile * se, p.clamp(0.0, 1.0))
    } else {
        (f64::INFINITY, 0.0, if lift == 0.0 { 1.0 } else { 0.0 })
    };
    Some(DiffInMeans {
        n_treated: treated.len(),
        n_holdout: holdout.len(),
        mean_treated,
        mean_holdout,
        lift,
        se,
        df,
        ci_low: lift - half_width,
        ci_high: lift + half_width,
        p_value,
    })
}

/// Minimum detectable effect at 5 % two-sided and 80 % power: (z_0.975 + z_0.8) x se.
pub fn mde(se: f64) -> f64 {
    (normal_quantile(0.975) + normal_quantile(0.8)) * se
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welch_matches_a_hand_worked_example() {
        // treated: mean 5, var 2.5; holdout: mean 2, var 1 (n 5 and 3)
        let estimate = welch(&[3.0, 4.0, 5.0, 6.0, 7.0], &[1.0, 2.0, 3.0]).expect("estimable");
        assert_eq!(estimate.lift, 3.0);
        let se = (2.5f64 / 5.0 + 1.0 / 3.0).sqrt();
        assert!((estimate.se - se).abs() < 1e-12);
        let df = (0.5f64 + 1.0 / 3.0).powi(2) / (0.25 / 4.0 + (1.0f64 / 9.0) / 2.0);
        assert!((estimate.df - df).abs() < 1e-12);
        // t quantile at ~5.6 df is about 2.5: the interval excludes 0.
        assert!(estimate.ci_low > 0.0 && estimate.ci_high < 6.0);
        assert!(estimate.p_value < 0.05);
    }

    #[test]
    fn equal_outcomes_give_a_zero_width_interval() {
        let estimate = welch(&[2.0, 2.0, 2.0], &[2.0, 2.0]).expect("estimable");
        assert_eq!(
            (estimate.lift, estimate.se, estimate.p_value),
            (0.0, 0.0, 1.0)
        );
    }

    #[test]
    fn one_value_per_arm_is_not_estimable() {
        assert!(welch(&[1.0], &[1.0, 2.0]).is_none());
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
}
