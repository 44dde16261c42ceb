//! Power for the next draw: per outcome with a configured `min-effect` and
//! per segment, the smallest holdout share at which every scheme's lift of
//! that size would be detected (5 % two-sided, 80 % power), from the residual
//! variances the evaluated cells showed, the segment's size in this run and
//! its tuned weights.

use segtune_models::lift::{smallest_holdout_share, PlannedArm};

use crate::config::RunSettings;
use crate::evaluate::Evaluation;
use crate::segment::Segments;
use crate::tune::WeightRow;

/// One row of `power.parquet`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PowerRow {
    /// Outcome.
    pub outcome: String,
    /// Segment (and the stratum of the same id the variances come from).
    pub segment_id: u32,
    /// The segment's partners in this run.
    pub n_partners: u64,
    /// The configured minimum effect of interest.
    pub min_effect: f64,
    /// The configured holdout share.
    pub holdout_share: f64,
    /// The largest scheme mde at that share.
    pub mde_at_holdout_share: Option<f64>,
    /// The smallest share <= 0.5 that detects `min_effect` for every scheme.
    pub recommended_holdout_share: Option<f64>,
    /// Whether such a share exists.
    pub reachable: bool,
}

/// Power rows for every outcome with a `min-effect`.
pub fn power(
    evaluation: &Evaluation,
    segments: &Segments,
    weights: &[WeightRow],
    settings: &RunSettings,
) -> Vec<PowerRow> {
    let mut rows = Vec::new();
    for outcome in &settings.outcomes {
        let Some(min_effect) = outcome.min_effect else {
            continue;
        };
        let mut ordered: Vec<_> = segments.segments.iter().collect();
        ordered.sort_by_key(|s| s.id);
        for segment in ordered {
            let arms: Vec<PlannedArm> = weights
                .iter()
                .filter(|w| w.segment_id == segment.id && w.weight > 0.0)
                .filter_map(|w| {
                    let cell = evaluation.rows.iter().find(|r| {
                        r.outcome == outcome.name
                            && r.segment_id == segment.id
                            && r.scheme_id == w.scheme_id
                    })?;
                    Some(PlannedArm {
                        weight: w.weight,
                        variance_treated: cell.residual_variance_treated?,
                        variance_holdout: cell.residual_variance_holdout?,
                    })
                })
                .collect();
            if arms.is_empty() {
                continue;
            }
            let n = segment.size as f64;
            let h = settings.tuning.holdout_share;
            let at_share = arms
                .iter()
                .map(|arm| arm.mde(h, n))
                .try_fold(0.0f64, |worst, m| m.map(|m| worst.max(m)));
            let recommended = smallest_holdout_share(min_effect, n, &arms);
            rows.push(PowerRow {
                outcome: outcome.name.clone(),
                segment_id: segment.id,
                n_partners: segment.size as u64,
                min_effect,
                holdout_share: h,
                mde_at_holdout_share: at_share,
                recommended_holdout_share: recommended,
                reachable: recommended.is_some(),
            });
        }
    }
    rows
}

/// Sets each segment's holdout share for the next draw: a share fixed for
/// the segment (`[[tuning.segment]] holdout-share`), else by the policy:
/// `fixed` keeps `tuning.holdout-share`; `recommended` takes the tuning
/// outcome's recommended share from `power`, within [min, max] (the max
/// where the minimum effect is unreachable, the configured share where the
/// segment has no power row).
pub fn apply_holdout_policy(weights: &mut [WeightRow], power: &[PowerRow], settings: &RunSettings) {
    let tuning = &settings.tuning;
    for row in weights.iter_mut() {
        row.holdout_share = if let Some(share) = tuning.segment_holdout.get(&row.segment_id) {
            *share
        } else {
            match tuning.holdout_policy {
                crate::config::HoldoutPolicy::Fixed => tuning.holdout_share,
                crate::config::HoldoutPolicy::Recommended { min, max } => power
                    .iter()
                    .find(|p| {
                        p.segment_id == row.segment_id
                            && Some(p.outcome.as_str())
                                == settings.evaluation.tune_outcome.as_deref()
                    })
                    .map_or(tuning.holdout_share, |p| {
                        p.recommended_holdout_share.unwrap_or(max).clamp(min, max)
                    }),
            }
        };
    }
}
