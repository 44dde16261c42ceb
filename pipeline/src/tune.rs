//! Stage 5, tune: each segment's scheme weights for the target period.
//!
//! Evidence for a segment is the lift of the tuning outcome in the stratum
//! with the same segment id. With evidence, each scheme gets the floor plus a
//! share of the rest in proportion to its positive net value per treated
//! partner; without any, the initial weights (equal unless configured) with
//! the reason "no evidence yet". Every weight carries its reason in words.

use segtune_models::tuning::{proportional_weights, WeightBasis};

use crate::config::RunSettings;
use crate::evaluate::Evaluation;
use crate::exit::UsageError;
use crate::previous::PreviousRun;
use crate::segment::Segments;

/// One row of `weights.parquet` / `weights.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightRow {
    /// The period the weight applies to.
    pub target_period: String,
    /// Segment id.
    pub segment_id: u32,
    /// Segment name.
    pub segment_name: String,
    /// Scheme.
    pub scheme_id: String,
    /// Probability a non-held-out partner of the segment gets the scheme.
    pub weight: f64,
    /// The previous run's weight for this segment and scheme.
    pub previous_weight: Option<f64>,
    /// Share of the segment held out.
    pub holdout_share: f64,
    /// Why, in words.
    pub reason: String,
}

/// The schemes to weigh: configured, else those in the assignments.
pub fn schemes(evaluation: &Evaluation, settings: &RunSettings) -> Result<Vec<String>, UsageError> {
    match &settings.tuning.schemes {
        Some(schemes) => Ok(schemes.clone()),
        None if !evaluation.schemes.is_empty() => Ok(evaluation.schemes.clone()),
        None => Err(UsageError(
            "no schemes to weigh: set `tuning.schemes` in the configuration (there are no assignments to take them from)".into(),
        )),
    }
}

fn money(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// Weights for every segment and scheme.
pub fn tune(
    evaluation: &Evaluation,
    segments: &Segments,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
) -> anyhow::Result<Vec<WeightRow>> {
    let schemes = schemes(evaluation, settings)?;
    let tune_outcome = settings.evaluation.tune_outcome.as_deref();
    let mut rows = Vec::new();
    for segment in &segments.segments {
        let evidence: Vec<Option<&crate::evaluate::LiftRow>> = schemes
            .iter()
            .map(|scheme| {
                evaluation.rows.iter().find(|r| {
                    Some(r.outcome.as_str()) == tune_outcome
                        && r.segment_id == segment.id
                        && &r.scheme_id == scheme
                })
            })
            .collect();
        let net_per_partner: Vec<Option<f64>> = evidence
            .iter()
            .map(|row| row.and_then(|r| r.net.map(|net| net / r.n_treated.max(1) as f64)))
            .collect();
        let previous_weights: Option<Vec<f64>> = previous.and_then(|p| {
            schemes
                .iter()
                .map(|s| p.weights.get(&(segment.id, s.clone())).copied())
                .collect()
        });
        let weights: Vec<(f64, String)> = if let Some(p_value) = evaluation.refused.get(&segment.id)
        {
            // A broken draw: its lift cannot be trusted, so nothing moves.
            let held = previous_weights.unwrap_or_else(|| vec![1.0; schemes.len()]);
            let total: f64 = held.iter().sum::<f64>().max(f64::MIN_POSITIVE);
            held.iter()
                .map(|w| {
                    (
                        w / total,
                        format!(
                            "held: this segment's draw in {} failed the randomisation check \
                             (p = {p_value:.1e}), so its lift is not used",
                            settings.period
                        ),
                    )
                })
                .collect()
        } else if net_per_partner.iter().all(Option::is_none) {
            let configured = &settings.tuning.initial_weights;
            let raw: Vec<f64> = schemes
                .iter()
                .map(|s| {
                    if configured.is_empty() {
                        1.0
                    } else {
                        configured.get(s).copied().unwrap_or(0.0)
                    }
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let basis = if configured.is_empty() {
                "equal initial weight"
            } else {
                "configured initial weight"
            };
            raw.iter()
                .map(|w| (w / total, format!("no evidence yet: {basis}")))
                .collect()
        } else {
            let value_per_unit = settings
                .outcomes
                .iter()
                .find(|o| Some(o.name.as_str()) == tune_outcome)
                .map_or(1.0, |o| o.value_per_unit);
            let weights = proportional_weights(&net_per_partner, settings.tuning.floor)?;
            weights
                .into_iter()
                .zip(&evidence)
                .zip(&net_per_partner)
                .map(|(((weight, basis), row), net)| {
                    let reason = match (basis, row, net) {
                        (WeightBasis::Equal, _, _) => {
                            "equal weight: no scheme shows a positive net value in this segment"
                                .to_string()
                        }
                        (_, Some(row), Some(net)) => {
                            let interval = match (row.ci_low, row.ci_high) {
                                (Some(low), Some(high)) => format!(
                                    " ({} to {})",
                                    money(
                                        value_per_unit * low
                                            - row.cost / row.n_treated.max(1) as f64
                                    ),
                                    money(
                                        value_per_unit * high
                                            - row.cost / row.n_treated.max(1) as f64
                                    )
                                ),
                                _ => String::new(),
                            };
                            if basis == WeightBasis::Proportional {
                                format!(
                                    "in proportion to net value {} per partner{interval}",
                                    money(*net)
                                )
                            } else {
                                format!(
                                    "floor: net value {} per partner{interval} is not positive",
                                    money(*net)
                                )
                            }
                        }
                        (_, Some(row), None) => format!("floor: no estimate ({})", row.method),
                        (_, None, _) => {
                            "floor: the scheme was not assigned in this segment".to_string()
                        }
                    };
                    (weight, reason)
                })
                .collect()
        };
        for (scheme, (weight, reason)) in schemes.iter().zip(weights) {
            rows.push(WeightRow {
                target_period: settings.target_period.clone(),
                segment_id: segment.id,
                segment_name: segment.name.clone(),
                scheme_id: scheme.clone(),
                weight,
                previous_weight: previous
                    .and_then(|p| p.weights.get(&(segment.id, scheme.clone())).copied()),
                holdout_share: settings.tuning.holdout_share,
                reason,
            });
        }
    }
    Ok(rows)
}
