//! Tuning: each segment's scheme weights for the next period.
//!
//! A **weight** is the probability that a partner of the segment who is not
//! held out gets the scheme next period; a segment's weights sum to 1. This
//! first tuner gives each scheme a floor and shares the rest in proportion to
//! the positive part of its estimated net value per treated partner: simple,
//! monotone in the evidence, and never starving a scheme of the data needed
//! to learn about it.

/// Why weights cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TuningError {
    /// The floors alone exceed 1.
    #[error("a floor of {floor} for each of {n_schemes} schemes exceeds 1")]
    InfeasibleFloor {
        /// The floor.
        floor: f64,
        /// Number of schemes.
        n_schemes: usize,
    },
    /// No schemes.
    #[error("no schemes to weigh")]
    NoSchemes,
}

/// How a weight was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightBasis {
    /// Proportional to positive net value.
    Proportional,
    /// The floor: net value not positive, or not estimated.
    Floor,
    /// Equal weights: no scheme had a positive estimate.
    Equal,
}

/// Weights from net values per treated partner (`None`: not estimated).
pub fn proportional_weights(
    net_per_partner: &[Option<f64>],
    floor: f64,
) -> Result<Vec<(f64, WeightBasis)>, TuningError> {
    let n = net_per_partner.len();
    if n == 0 {
        return Err(TuningError::NoSchemes);
    }
    if !(0.0..=1.0).contains(&(floor * n as f64)) || floor < 0.0 {
        return Err(TuningError::InfeasibleFloor {
            floor,
            n_schemes: n,
        });
    }
    let positive: Vec<f64> = net_per_partner
        .iter()
        .map(|v| v.map_or(0.0, |v| v.max(0.0)))
        .collect();
    let total: f64 = positive.iter().sum();
    if total <= 0.0 {
        return Ok(vec![(1.0 / n as f64, WeightBasis::Equal); n]);
    }
    let free = 1.0 - floor * n as f64;
    Ok(positive
        .iter()
        .map(|p| {
            let weight = floor + free * p / total;
            (
                weight,
                if *p > 0.0 {
                    WeightBasis::Proportional
                } else {
                    WeightBasis::Floor
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_positive_net_value_above_the_floor() {
        let weights = proportional_weights(&[Some(3.0), Some(1.0), Some(-2.0), None], 0.05)
            .expect("feasible");
        let values: Vec<f64> = weights.iter().map(|w| w.0).collect();
        assert!((values.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((values[0] - (0.05 + 0.8 * 0.75)).abs() < 1e-12);
        assert!((values[1] - (0.05 + 0.8 * 0.25)).abs() < 1e-12);
        assert_eq!((values[2], values[3]), (0.05, 0.05));
        assert_eq!(weights[2].1, WeightBasis::Floor);
    }

    #[test]
    fn no_positive_evidence_gives_equal_weights() {
        let weights = proportional_weights(&[Some(-1.0), None], 0.1).expect("feasible");
        assert_eq!(weights, vec![(0.5, WeightBasis::Equal); 2]);
    }

    #[test]
    fn floors_above_one_are_infeasible() {
        assert!(proportional_weights(&[Some(1.0); 5], 0.25).is_err());
        assert!(proportional_weights(&[], 0.0).is_err());
    }
}
