//! Drift: how far a feature's distribution moved since the previous run,
//! as the population stability index (PSI).
//!
//! The previous run saves, per feature, the decile edges of its values and
//! the share of partners in each bin (missing values are a bin of their
//! own); this run puts its values into the same bins and compares:
//! PSI = sum over bins of (now - before) x ln(now / before), with shares
//! floored at 1e-4 so an empty bin does not make it infinite. Rules of thumb:
//! below 0.1 stable, 0.1 to 0.2 moderate, above 0.2 a shift worth a look.

/// Bins of a feature in the reference period.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DriftReference {
    /// Feature name.
    pub feature: String,
    /// Inner bin edges (ascending, distinct): values at most `edges[i]` fall in bin `i`.
    pub edges: Vec<f64>,
    /// Share of partners per bin (edges.len() + 1 bins), then the missing share.
    pub shares: Vec<f64>,
}

const FLOOR: f64 = 1e-4;

fn shares(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() + 2];
    for value in values {
        let bin = if value.is_nan() {
            edges.len() + 1
        } else {
            edges.partition_point(|e| e < value)
        };
        counts[bin] += 1.0;
    }
    let total = values.len().max(1) as f64;
    counts.iter().map(|c| c / total).collect()
}

impl DriftReference {
    /// Decile bins of `values` (NaN: missing).
    pub fn fit(feature: &str, values: &[f64]) -> Self {
        let deciles: Vec<f64> = (1..10).map(|d| f64::from(d) / 10.0).collect();
        let mut edges = crate::features::quantiles(values, &deciles);
        edges.dedup();
        let shares = shares(&edges, values);
        Self {
            feature: feature.to_string(),
            edges,
            shares,
        }
    }

    /// PSI of `values` against this reference.
    pub fn psi(&self, values: &[f64]) -> f64 {
        let now = shares(&self.edges, values);
        now.iter()
            .zip(&self.shares)
            .map(|(n, b)| {
                let (n, b) = (n.max(FLOOR), b.max(FLOOR));
                (n - b) * (n / b).ln()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_distribution_has_no_drift() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let reference = DriftReference::fit("x", &values);
        assert_eq!(reference.edges.len(), 9);
        assert!(reference.psi(&values).abs() < 1e-12);
    }

    #[test]
    fn a_shift_shows_as_drift_and_matches_a_hand_worked_value() {
        // Two bins of 50 % each; now 80 % / 20 %: PSI = 0.3 ln 1.6 + (-0.3) ln 0.4
        let reference = DriftReference {
            feature: "x".into(),
            edges: vec![0.5],
            shares: vec![0.5, 0.5, 0.0],
        };
        let now = [0.0, 0.0, 0.0, 0.0, 1.0];
        let expected = 0.3 * (1.6f64).ln() - 0.3 * (0.4f64).ln();
        assert!(
            (reference.psi(&now) - expected).abs() < 1e-3,
            "{}",
            reference.psi(&now)
        );
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let shifted: Vec<f64> = values.iter().map(|v| v + 300.0).collect();
        assert!(DriftReference::fit("x", &values).psi(&shifted) > 0.5);
    }

    #[test]
    fn missing_values_are_a_bin_of_their_own() {
        let before = [1.0, 2.0, 3.0, 4.0];
        let after = [1.0, f64::NAN, f64::NAN, 4.0];
        assert!(DriftReference::fit("x", &before).psi(&after) > 0.2);
    }
}
