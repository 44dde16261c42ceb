//! Stage 5, tune: each segment's scheme weights for the target period.
//!
//! Evidence for a segment is this period's lift of the tuning outcome in the
//! stratum with the same segment id, as net value per treated partner. The
//! posterior of each (segment, scheme) is the previous run's posterior,
//! faded by `tuning.forgetting`, updated with that evidence; a segment
//! without a previous posterior starts from the scheme's pooled distribution
//! across segments ([`segtune_models::tuning`]). The target weights are the
//! probabilities of being the best scheme, projected onto the limits (floor,
//! caps, pins, switched-off schemes, at most `tuning.max-step` of change).
//! A scheme without any belief keeps its weight; a segment without any
//! evidence keeps the initial (or previous) weights. Every weight carries its
//! reason in words, and the posterior is written for the next run.

use std::collections::BTreeMap;

use segtune_models::tuning::{
    bounds, pooled_prior, probability_best, project, update, Belief, Evidence, SchemeLimits,
};

use crate::config::RunSettings;
use crate::evaluate::{Evaluation, LiftRow};
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

/// One row of `posterior.json`: the belief about a scheme's net value per
/// treated partner in a segment after this period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PosteriorRow {
    /// Segment id.
    pub segment_id: u32,
    /// Scheme.
    pub scheme_id: String,
    /// Posterior mean.
    pub mean: f64,
    /// Posterior variance.
    pub variance: f64,
    /// Probability of being the segment's best scheme.
    pub probability_best: Option<f64>,
}

/// Weights and the posterior behind them.
#[derive(Debug, Clone, Default)]
pub struct Tuned {
    /// Weights, by segment then scheme.
    pub weights: Vec<WeightRow>,
    /// The posterior, by segment then scheme.
    pub posterior: Vec<PosteriorRow>,
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

/// Net value per treated partner of a lift cell, with its standard error.
fn evidence(row: &LiftRow, value_per_unit: f64) -> Option<Evidence> {
    let (lift, se) = (row.lift?, row.se?);
    let n = row.n_treated.max(1) as f64;
    Some(Evidence {
        net_per_partner: value_per_unit * lift
            - row.cost / (n + row.n_treated_missing_outcome as f64),
        se: value_per_unit * se,
    })
}

/// Seed of a segment's posterior draws.
fn draws_seed(seed: u64, segment: u32) -> u64 {
    (seed ^ u64::from(segment).wrapping_mul(0xA24B_AED4_963E_E407)).rotate_left(23) ^ 0x7E57
}

/// Weights for every segment and scheme, and the posterior.
pub fn tune(
    evaluation: &Evaluation,
    segments: &Segments,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
    notes: &std::collections::BTreeMap<(u32, String), String>,
) -> anyhow::Result<Tuned> {
    let schemes = schemes(evaluation, settings)?;
    let tuning = &settings.tuning;
    let tune_outcome = settings.evaluation.tune_outcome.as_deref();
    let value_per_unit = settings
        .outcomes
        .iter()
        .find(|o| Some(o.name.as_str()) == tune_outcome)
        .map_or(1.0, |o| o.value_per_unit);
    // This period's evidence by (stratum, scheme); refused strata give none.
    let mut evidence_of: BTreeMap<(u32, &str), Evidence> = BTreeMap::new();
    for row in &evaluation.rows {
        if Some(row.outcome.as_str()) != tune_outcome
            || evaluation.refused.contains_key(&row.segment_id)
        {
            continue;
        }
        if let Some(e) = evidence(row, value_per_unit) {
            evidence_of.insert((row.segment_id, row.scheme_id.as_str()), e);
        }
    }
    let pooled: Vec<Option<Belief>> = schemes
        .iter()
        .map(|scheme| {
            let across: Vec<Evidence> = evidence_of
                .iter()
                .filter(|((_, s), _)| s == scheme)
                .map(|(_, e)| *e)
                .collect();
            pooled_prior(&across)
        })
        .collect();
    let initial: Vec<f64> = {
        let configured = &tuning.initial_weights;
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
        raw.iter().map(|w| w / total).collect()
    };

    let mut ordered: Vec<_> = segments.segments.iter().collect();
    ordered.sort_by_key(|s| s.id);
    let mut tuned = Tuned::default();
    for segment in ordered {
        let previous_weights: Option<Vec<f64>> = previous.and_then(|p| {
            schemes
                .iter()
                .map(|s| p.weights.get(&(segment.id, s.clone())).copied())
                .collect()
        });
        let limits: Vec<SchemeLimits> = schemes
            .iter()
            .map(|s| tuning.limits(segment.id, s))
            .collect();
        let evidence: Vec<Option<Evidence>> = schemes
            .iter()
            .map(|s| evidence_of.get(&(segment.id, s.as_str())).copied())
            .collect();
        // Whether a scheme has a posterior from earlier runs here (else its
        // prior is the other segments').
        let earlier: Vec<bool> = schemes
            .iter()
            .map(|scheme| {
                previous.is_some_and(|p| p.posterior.contains_key(&(segment.id, scheme.clone())))
            })
            .collect();
        let posterior: Vec<Option<Belief>> = schemes
            .iter()
            .enumerate()
            .map(|(i, scheme)| {
                let prior = previous
                    .and_then(|p| p.posterior.get(&(segment.id, scheme.clone())).copied())
                    .or(pooled[i]);
                update(prior, evidence[i], tuning.forgetting)
            })
            .collect();
        let p_best = probability_best(
            &posterior,
            tuning.draws,
            draws_seed(settings.seed, segment.id),
        );
        let start = previous_weights.clone().unwrap_or_else(|| initial.clone());
        let refused = evaluation.refused.get(&segment.id);
        let any_belief = posterior.iter().any(Option::is_some);
        // Schemes without a belief (or every scheme of a refused stratum)
        // keep their weight; the others share the rest by probability best.
        let held: Vec<bool> = (0..schemes.len())
            .map(|i| refused.is_some() || posterior[i].is_none())
            .collect();
        let held_total: f64 = (0..schemes.len())
            .filter(|i| held[*i])
            .map(|i| start[i])
            .sum();
        let free_total: f64 = p_best
            .iter()
            .zip(&held)
            .filter(|(_, h)| !**h)
            .map(|(p, _)| p.unwrap_or(0.0))
            .sum();
        let target: Vec<f64> = (0..schemes.len())
            .map(|i| {
                if held[i] || free_total <= 0.0 {
                    start[i]
                } else {
                    (1.0 - held_total) * p_best[i].unwrap_or(0.0) / free_total
                }
            })
            .collect();
        let mut segment_bounds = bounds(&limits, previous_weights.as_deref(), tuning.max_step);
        for (i, bound) in segment_bounds.iter_mut().enumerate() {
            if held[i] && !limits[i].off && limits[i].pinned.is_none() {
                // Held where it was, unless a cap or the floor moved.
                let kept = start[i].clamp(bound.0, bound.1);
                *bound = (kept, kept);
            }
        }
        let weights = project(&target, &segment_bounds)
            .or_else(|_| {
                // Held weights may not fit new limits: let them move.
                project(
                    &target,
                    &bounds(&limits, previous_weights.as_deref(), tuning.max_step),
                )
            })
            .map_err(|error| {
                UsageError(format!(
                    "segment {} (\"{}\"): {error}; check tuning.floor, caps, pinned and off",
                    segment.id, segment.name
                ))
            })?;
        tracing::debug!(
            segment = segment.id,
            estimates = evidence.iter().filter(|e| e.is_some()).count(),
            earlier = earlier.iter().filter(|e| **e).count(),
            held = refused.is_some(),
            "segment tuned"
        );
        for (i, scheme) in schemes.iter().enumerate() {
            let weight = weights[i];
            tracing::trace!(segment = segment.id, scheme = %scheme, weight, target = target[i], "weight");
            let before = previous_weights.as_ref().map(|p| p[i]);
            let change = match before {
                Some(p) if format!("{weight:.2}") == format!("{p:.2}") => {
                    format!("kept at {weight:.2}")
                }
                Some(p) if weight > p => format!("raised from {p:.2} to {weight:.2}"),
                Some(p) => format!("lowered from {p:.2} to {weight:.2}"),
                None => format!("set to {weight:.2}"),
            };
            // Who limited it: ops at approval (their note), else the
            // configuration.
            let note = notes.get(&(segment.id, scheme.clone()));
            let why = if limits[i].off {
                note.map_or_else(
                    || "switched off by the configuration".to_string(),
                    Clone::clone,
                )
            } else if limits[i].pinned.is_some() {
                note.map_or_else(|| "pinned by the configuration".to_string(), Clone::clone)
            } else if let Some(p) = refused {
                format!(
                    "held: this segment's draw in {} failed the randomisation check (p = {p:.1e}), so its lift is not used",
                    settings.period
                )
            } else if !any_belief {
                if tuning.initial_weights.is_empty() {
                    "no evidence yet: equal initial weight".to_string()
                } else {
                    "no evidence yet: configured initial weight".to_string()
                }
            } else if let Some(belief) = posterior[i] {
                let (low, high) = belief.interval();
                let source = if evidence[i].is_some() {
                    ""
                } else if earlier[i] {
                    " (no new estimate: earlier evidence)"
                } else {
                    " (no estimate in this segment: from the other segments)"
                };
                format!(
                    "expected net {} per partner (95 % interval {} to {}){source}, best in segment with probability {:.2}",
                    money(belief.mean),
                    money(low),
                    money(high),
                    p_best[i].unwrap_or(0.0)
                )
            } else {
                "no evidence for this scheme: weight held".to_string()
            };
            let (low, high) = segment_bounds[i];
            let binding = if limits[i].off || limits[i].pinned.is_some() || held[i] {
                ""
            } else if before.is_some_and(|p| (weight - (p + tuning.max_step)).abs() < 1e-9)
                || before.is_some_and(|p| (weight - (p - tuning.max_step)).abs() < 1e-9)
            {
                "; limited by the max step"
            } else if (weight - low).abs() < 1e-9 && (low - limits[i].floor).abs() < 1e-9 {
                "; at the floor"
            } else if (weight - high).abs() < 1e-9 && (high - limits[i].cap).abs() < 1e-9 {
                "; at its cap"
            } else {
                ""
            };
            tuned.weights.push(WeightRow {
                target_period: settings.target_period.clone(),
                segment_id: segment.id,
                segment_name: segment.name.clone(),
                scheme_id: scheme.clone(),
                weight,
                previous_weight: before,
                holdout_share: tuning.holdout_share,
                reason: match note.filter(|_| !limits[i].off && limits[i].pinned.is_none()) {
                    Some(note) => format!("{change}: {why}{binding} ({note})"),
                    None => format!("{change}: {why}{binding}"),
                },
            });
            if let Some(belief) = posterior[i] {
                tuned.posterior.push(PosteriorRow {
                    segment_id: segment.id,
                    scheme_id: scheme.clone(),
                    mean: belief.mean,
                    variance: belief.variance,
                    probability_best: p_best[i],
                });
            }
        }
    }
    Ok(tuned)
}

/// A run folder's proposed weights: `weights_proposed.parquet` once it was
/// approved with overrides, else `weights.parquet`.
pub fn proposal(run_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    ["weights_proposed.parquet", "weights.parquet"]
        .iter()
        .map(|name| run_dir.join(name))
        .find(|path| path.exists())
        .with_context(|| format!("`{}` has no weights.parquet", run_dir.display()))
}

/// Keeps the proposal for the segments an approval with overrides did not
/// touch: their weights, reasons and posterior as proposed (their holdout
/// shares are re-derived after, from the same evidence, as proposed)
/// (from the run folder `run_dir`: `weights_proposed.parquet`, else
/// `weights.parquet`, and `posterior.json`), under their current names. So
/// what ops reviewed and left alone is what they approve: re-deriving the
/// run would otherwise move them too where pinned partners change the
/// evidence the other segments' priors pool. `touched` holds the segments a
/// scheme override limits and those pinned partners join or leave.
pub fn keep_proposal(
    run_dir: &std::path::Path,
    touched: &std::collections::BTreeSet<u32>,
    tuned: &mut Tuned,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt32Type};
    use arrow_array::Array;
    let path = proposal(run_dir)?;
    // (segment, scheme) -> (weight, previous weight, holdout share, reason)
    let mut proposed = BTreeMap::new();
    for batch in crate::output::read_batches(&path)? {
        let column = |name: &str| crate::output::batch_column(&batch, name, &path);
        let segment = column("segment_id")?.as_primitive::<UInt32Type>().clone();
        let scheme = column("scheme_id")?.as_string::<i32>().clone();
        let weight = column("weight")?.as_primitive::<Float64Type>().clone();
        let previous = column("previous_weight")?
            .as_primitive::<Float64Type>()
            .clone();
        let holdout = column("holdout_share")?
            .as_primitive::<Float64Type>()
            .clone();
        let reason = column("reason")?.as_string::<i32>().clone();
        for row in 0..batch.num_rows() {
            proposed.insert(
                (segment.value(row), scheme.value(row).to_string()),
                (
                    weight.value(row),
                    previous.is_valid(row).then(|| previous.value(row)),
                    holdout.value(row),
                    reason.value(row).to_string(),
                ),
            );
        }
    }
    for row in &mut tuned.weights {
        if touched.contains(&row.segment_id) {
            continue;
        }
        let key = (row.segment_id, row.scheme_id.clone());
        let (weight, previous, holdout, reason) = proposed.get(&key).with_context(|| {
            format!(
                "`{}` has no proposed weight for segment {} and scheme {}",
                path.display(),
                key.0,
                key.1
            )
        })?;
        row.weight = *weight;
        row.previous_weight = *previous;
        row.holdout_share = *holdout;
        row.reason.clone_from(reason);
    }
    let posterior: Vec<PosteriorRow> =
        serde_json::from_str(&fs_err::read_to_string(run_dir.join("posterior.json"))?)?;
    tuned
        .posterior
        .retain(|row| touched.contains(&row.segment_id));
    tuned.posterior.extend(
        posterior
            .into_iter()
            .filter(|row| !touched.contains(&row.segment_id)),
    );
    // Segment by segment, each in its scheme order, as tuned.
    tuned.posterior.sort_by_key(|row| row.segment_id);
    Ok(())
}
