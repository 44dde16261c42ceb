//! Stage 4, evaluate: the lift of each scheme in each stratum, with money.
//!
//! A **stratum** is the segment a partner had when its scheme was drawn:
//! `assignments.segment_id` when the assignments carry it, else the
//! partner's segment in the previous run, else (a first run) the segment this
//! run puts it in, in which case every row is marked `post_hoc`: the strata
//! were not fixed before the outcomes, so read those lifts with care. Each
//! (outcome, stratum, scheme) cell compares the scheme's partners with the
//! holdout of the same stratum only.

use std::collections::{BTreeMap, BTreeSet};

use segtune_data::HOLDOUT;
use segtune_models::lift::{benjamini_hochberg, mde, welch};

use crate::config::RunSettings;
use crate::ingest::Inputs;
use crate::previous::PreviousRun;
use crate::segment::Segments;

/// Where the strata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StrataSource {
    /// `assignments.segment_id`.
    Assignments,
    /// The previous run's segments.
    PreviousRun,
    /// This run's segments (post hoc).
    PostHoc,
}

/// Estimation methods written to `lift.method`.
pub mod method {
    /// Difference in means, Welch errors.
    pub const DIFF_MEANS: &str = "diff_means";
    /// Difference in means within post-hoc strata.
    pub const POST_HOC: &str = "post_hoc";
    /// Fewer partners than the minimum in an arm.
    pub const INSUFFICIENT_N: &str = "insufficient_n";
    /// No holdout partner with an outcome in the stratum.
    pub const NO_HOLDOUT: &str = "no_holdout";
}

/// One row of `lift.parquet`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiftRow {
    /// Outcome column.
    pub outcome: String,
    /// Stratum (segment id).
    pub segment_id: u32,
    /// Scheme.
    pub scheme_id: String,
    /// Treated partners with an outcome.
    pub n_treated: u64,
    /// Holdout partners with an outcome.
    pub n_holdout: u64,
    /// Lift per partner, outcome units.
    pub lift: Option<f64>,
    /// Lift over the holdout mean.
    pub lift_rel: Option<f64>,
    /// Standard error.
    pub se: Option<f64>,
    /// 95 % interval, low end.
    pub ci_low: Option<f64>,
    /// 95 % interval, high end.
    pub ci_high: Option<f64>,
    /// Two-sided p-value.
    pub p_value: Option<f64>,
    /// Benjamini-Hochberg q-value within the outcome.
    pub q_value: Option<f64>,
    /// q <= the configured FDR.
    pub significant: Option<bool>,
    /// Minimum detectable effect (80 % power, 5 % two-sided).
    pub mde: Option<f64>,
    /// lift x n_treated.
    pub incremental_outcome: Option<f64>,
    /// Total paid to the cell's treated partners.
    pub cost: f64,
    /// value per unit x incremental outcome - cost.
    pub net: Option<f64>,
    /// net / cost (`None` when cost is 0).
    pub roi: Option<f64>,
    /// How the row was estimated.
    pub method: String,
    /// Treated partners without an outcome (not in n_treated).
    pub n_treated_missing_outcome: u64,
}

/// The evaluation of the period.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Rows, by outcome, stratum, scheme.
    pub rows: Vec<LiftRow>,
    /// Where the strata came from (`None` without assignments or outcomes).
    pub strata: Option<StrataSource>,
    /// Schemes seen in the assignments (holdout excluded), sorted.
    pub schemes: Vec<String>,
    /// Assigned partners left out for lack of a stratum.
    pub n_without_stratum: usize,
}

/// Estimates every cell.
pub fn evaluate(
    inputs: &Inputs,
    segments: &Segments,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
) -> Evaluation {
    let Some(assignments) = &inputs.assignments else {
        return Evaluation::default();
    };
    let holdout_code = assignments.schemes.iter().position(|s| s == HOLDOUT);
    let schemes: Vec<String> = assignments
        .schemes
        .iter()
        .filter(|s| *s != HOLDOUT)
        .cloned()
        .collect();
    let Some(outcomes) = &inputs.outcomes else {
        return Evaluation {
            schemes,
            ..Evaluation::default()
        };
    };
    let n_partners = inputs.partners.ids.len();
    let strata = if assignments.segment_id.iter().any(Option::is_some) {
        StrataSource::Assignments
    } else if previous.is_some() {
        StrataSource::PreviousRun
    } else {
        StrataSource::PostHoc
    };
    let stratum_of = |assignment: usize| -> Option<u32> {
        let row = assignments.partner_row[assignment] as usize;
        match strata {
            StrataSource::Assignments => assignments.segment_id[assignment],
            StrataSource::PreviousRun => {
                previous.and_then(|p| p.segment_of.get(&inputs.partners.ids[row]).copied())
            }
            StrataSource::PostHoc => Some(segments.segments[segments.member[row]].id),
        }
    };
    let strata_of: Vec<Option<u32>> = (0..assignments.partner_row.len()).map(stratum_of).collect();
    let n_without_stratum = strata_of.iter().filter(|s| s.is_none()).count();
    let all_strata: BTreeSet<u32> = strata_of.iter().flatten().copied().collect();

    let mut rows = Vec::new();
    for outcome in &settings.outcomes {
        let Some(column) = outcomes.columns.iter().find(|c| c.name == outcome.name) else {
            continue;
        };
        let mut value = vec![f64::NAN; n_partners];
        for (row, v) in outcomes.partner_row.iter().zip(&column.values) {
            value[*row as usize] = *v;
        }
        // (stratum, scheme code) -> outcome values, missing count, cost
        let mut cells: BTreeMap<(u32, u32), (Vec<f64>, u64, f64)> = BTreeMap::new();
        for (assignment, stratum) in strata_of.iter().enumerate() {
            let Some(stratum) = stratum else { continue };
            let row = assignments.partner_row[assignment] as usize;
            let cell = cells
                .entry((*stratum, assignments.scheme[assignment]))
                .or_default();
            if value[row].is_nan() {
                cell.1 += 1;
            } else {
                cell.0.push(value[row]);
            }
            cell.2 += assignments.cost[assignment];
        }
        let first_row = rows.len();
        for stratum in &all_strata {
            let empty = (Vec::new(), 0, 0.0);
            let holdout = holdout_code
                .and_then(|code| cells.get(&(*stratum, code as u32)))
                .unwrap_or(&empty);
            for (code, scheme) in assignments.schemes.iter().enumerate() {
                if scheme == HOLDOUT {
                    continue;
                }
                let treated = cells.get(&(*stratum, code as u32)).unwrap_or(&empty);
                let mut row = LiftRow {
                    outcome: outcome.name.clone(),
                    segment_id: *stratum,
                    scheme_id: scheme.clone(),
                    n_treated: treated.0.len() as u64,
                    n_holdout: holdout.0.len() as u64,
                    lift: None,
                    lift_rel: None,
                    se: None,
                    ci_low: None,
                    ci_high: None,
                    p_value: None,
                    q_value: None,
                    significant: None,
                    mde: None,
                    incremental_outcome: None,
                    cost: treated.2,
                    net: None,
                    roi: None,
                    method: String::new(),
                    n_treated_missing_outcome: treated.1,
                };
                let min_n = settings.evaluation.min_n_per_arm;
                row.method = if holdout.0.is_empty() {
                    method::NO_HOLDOUT.into()
                } else if treated.0.len() < min_n || holdout.0.len() < min_n {
                    method::INSUFFICIENT_N.into()
                } else if let Some(estimate) = welch(&treated.0, &holdout.0) {
                    row.lift = Some(estimate.lift);
                    row.lift_rel = (estimate.mean_holdout != 0.0)
                        .then(|| estimate.lift / estimate.mean_holdout);
                    row.se = Some(estimate.se);
                    row.ci_low = Some(estimate.ci_low);
                    row.ci_high = Some(estimate.ci_high);
                    row.p_value = Some(estimate.p_value);
                    row.mde = Some(mde(estimate.se));
                    let incremental = estimate.lift * treated.0.len() as f64;
                    let net = outcome.value_per_unit * incremental - treated.2;
                    row.incremental_outcome = Some(incremental);
                    row.net = Some(net);
                    row.roi = (treated.2 != 0.0).then(|| net / treated.2);
                    if strata == StrataSource::PostHoc {
                        method::POST_HOC.into()
                    } else {
                        method::DIFF_MEANS.into()
                    }
                } else {
                    method::INSUFFICIENT_N.into()
                };
                rows.push(row);
            }
        }
        let p_values: Vec<Option<f64>> = rows[first_row..].iter().map(|r| r.p_value).collect();
        for (row, q) in rows[first_row..]
            .iter_mut()
            .zip(benjamini_hochberg(&p_values))
        {
            row.q_value = q;
            row.significant = q.map(|q| q <= settings.evaluation.fdr);
        }
    }
    Evaluation {
        rows,
        strata: Some(strata),
        schemes,
        n_without_stratum,
    }
}
