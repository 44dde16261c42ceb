//! Stage 4, evaluate: the lift of each scheme in each stratum, with money,
//! power and a randomisation check.
//!
//! A **stratum** is the segment a partner had when its scheme was drawn:
//! `assignments.segment_id` when the assignments carry it, else the
//! partner's segment in the previous run, else (a first run) the segment this
//! run puts it in, in which case every row is marked `post_hoc`: the strata
//! were not fixed before the outcomes, so read those lifts with care. Each
//! (outcome, stratum, scheme) cell compares the scheme's partners with the
//! holdout of the same stratum only, by Lin's covariate-adjusted regression
//! with HC2 errors (`segtune_models::lift`); cells are estimated in parallel
//! and written in a fixed order.
//!
//! The **randomisation check** compares, in each stratum, the number of
//! partners in each arm with what the previous run's published weights and
//! holdout share promised (a chi-square test of the sample ratio); a stratum
//! below `evaluation.srm-p-threshold` is reported and its evidence is not
//! used for tuning.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use segtune_data::HOLDOUT;
use segtune_models::lift::{
    benjamini_hochberg, bootstrap_interval, design, estimate, mde, sample_ratio_test, Arm,
    CovariateUse, Design,
};

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
    /// Lin's covariate-adjusted regression, HC2 errors.
    pub const LIN_HC2: &str = "lin_hc2";
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
    /// How the covariate entered: `none`, `centred`, `centred_with_indicator`.
    pub covariate: String,
    /// Welch's standard error of the plain difference in means.
    pub se_unadjusted: Option<f64>,
    /// Percentile bootstrap 95 % interval, low end (when configured).
    pub boot_ci_low: Option<f64>,
    /// Percentile bootstrap 95 % interval, high end.
    pub boot_ci_high: Option<f64>,
    /// Mean outcome of the holdout arm (for relative charts; not written).
    #[serde(skip)]
    pub mean_holdout: Option<f64>,
    /// Residual variance per treated partner (for power; not written).
    #[serde(skip)]
    pub residual_variance_treated: Option<f64>,
    /// Residual variance per holdout partner (for power; not written).
    #[serde(skip)]
    pub residual_variance_holdout: Option<f64>,
}

/// One row of `randomisation.parquet`: an arm of a stratum against its
/// published share.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RandomisationRow {
    /// Stratum.
    pub segment_id: u32,
    /// Scheme or `holdout`.
    pub scheme_id: String,
    /// Partners drawn into the arm.
    pub n_observed: u64,
    /// The published share of the stratum for the arm.
    pub expected_share: f64,
    /// expected_share x the stratum's partners.
    pub n_expected: f64,
    /// The stratum's chi-square statistic.
    pub chi_square: f64,
    /// Its degrees of freedom.
    pub df: u32,
    /// Its p-value.
    pub p_value: f64,
    /// p_value below `evaluation.srm-p-threshold`.
    pub mismatch: bool,
}

/// A cell's design as fitted (the `--dump-design` debug output).
#[derive(Debug, Clone)]
pub struct CellDesign {
    /// Outcome.
    pub outcome: String,
    /// Stratum.
    pub segment_id: u32,
    /// Scheme.
    pub scheme_id: String,
    /// The design.
    pub design: Design,
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
    /// The randomisation check, by stratum and arm (empty without published weights).
    pub randomisation: Vec<RandomisationRow>,
    /// Strata whose draw failed the randomisation check, with the p-value.
    pub refused: BTreeMap<u32, f64>,
    /// Designs as fitted, when asked for.
    pub designs: Vec<CellDesign>,
}

/// Outcome values of one cell's arm, with covariates and money.
#[derive(Debug, Default)]
struct ArmData {
    y: Vec<f64>,
    x: Vec<f64>,
    missing_outcome: u64,
    cost: f64,
}

impl ArmData {
    fn arm(&self, with_covariate: bool) -> Arm<'_> {
        Arm {
            y: &self.y,
            x: with_covariate.then_some(&self.x[..]),
        }
    }
}

fn covariate_name(covariate: CovariateUse) -> &'static str {
    match covariate {
        CovariateUse::NotUsed => "none",
        CovariateUse::Centred => "centred",
        CovariateUse::CentredWithIndicator => "centred_with_indicator",
    }
}

/// Seed of a cell's bootstrap: the run's seed mixed with the cell.
fn cell_seed(seed: u64, outcome: usize, stratum: u32, scheme: u32) -> u64 {
    let key = ((outcome as u64) << 48) ^ (u64::from(stratum) << 16) ^ u64::from(scheme);
    (seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(17)
}

/// Estimates every cell; `keep_designs` keeps each cell's fitted design.
pub fn evaluate(
    inputs: &Inputs,
    segments: &Segments,
    previous: Option<&PreviousRun>,
    settings: &RunSettings,
    keep_designs: bool,
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
    let (randomisation, refused) = previous.map_or_else(Default::default, |previous| {
        randomisation_check(assignments, &strata_of, previous, settings)
    });

    let column_values = |name: &str| -> Option<Vec<f64>> {
        let column = outcomes.columns.iter().find(|c| c.name == name)?;
        let mut value = vec![f64::NAN; n_partners];
        for (row, v) in outcomes.partner_row.iter().zip(&column.values) {
            value[*row as usize] = *v;
        }
        Some(value)
    };
    let mut rows = Vec::new();
    let mut designs = Vec::new();
    for (outcome_index, outcome) in settings.outcomes.iter().enumerate() {
        let Some(value) = column_values(&outcome.name) else {
            continue;
        };
        let covariate = outcome.covariate.as_deref().and_then(column_values);
        let mut cells: BTreeMap<(u32, u32), ArmData> = BTreeMap::new();
        for (assignment, stratum) in strata_of.iter().enumerate() {
            let Some(stratum) = stratum else { continue };
            let row = assignments.partner_row[assignment] as usize;
            if inputs.strategic.get(row).copied().unwrap_or(false) {
                // Strategic partners are never held out: counting them would
                // bias the treated arm.
                continue;
            }
            let cell = cells
                .entry((*stratum, assignments.scheme[assignment]))
                .or_default();
            if value[row].is_nan() {
                cell.missing_outcome += 1;
            } else {
                cell.y.push(value[row]);
                cell.x
                    .push(covariate.as_ref().map_or(f64::NAN, |values| values[row]));
            }
            cell.cost += assignments.cost[assignment];
        }
        let jobs: Vec<(u32, u32, &String)> = all_strata
            .iter()
            .flat_map(|stratum| {
                assignments
                    .schemes
                    .iter()
                    .enumerate()
                    .filter(|(_, scheme)| *scheme != HOLDOUT)
                    .map(|(code, scheme)| (*stratum, code as u32, scheme))
            })
            .collect();
        let empty = ArmData::default();
        let estimated: Vec<(LiftRow, Option<Design>)> = jobs
            .par_iter()
            .map(|(stratum, code, scheme)| {
                let holdout = holdout_code
                    .and_then(|holdout| cells.get(&(*stratum, holdout as u32)))
                    .unwrap_or(&empty);
                let treated = cells.get(&(*stratum, *code)).unwrap_or(&empty);
                let cell = Cell {
                    outcome_index,
                    outcome: &outcome.name,
                    value_per_unit: outcome.value_per_unit,
                    with_covariate: covariate.is_some(),
                    stratum: *stratum,
                    code: *code,
                    scheme,
                    post_hoc: strata == StrataSource::PostHoc,
                };
                cell.estimate(treated, holdout, settings, keep_designs)
            })
            .collect();
        let first_row = rows.len();
        for (row, design) in estimated {
            if let Some(design) = design {
                designs.push(CellDesign {
                    outcome: row.outcome.clone(),
                    segment_id: row.segment_id,
                    scheme_id: row.scheme_id.clone(),
                    design,
                });
            }
            rows.push(row);
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
        randomisation,
        refused,
        designs,
    }
}

/// One (outcome, stratum, scheme) cell to estimate.
struct Cell<'a> {
    outcome_index: usize,
    outcome: &'a str,
    value_per_unit: f64,
    with_covariate: bool,
    stratum: u32,
    code: u32,
    scheme: &'a str,
    post_hoc: bool,
}

impl Cell<'_> {
    fn estimate(
        &self,
        treated: &ArmData,
        holdout: &ArmData,
        settings: &RunSettings,
        keep_design: bool,
    ) -> (LiftRow, Option<Design>) {
        let mut row = LiftRow {
            outcome: self.outcome.to_string(),
            segment_id: self.stratum,
            scheme_id: self.scheme.to_string(),
            n_treated: treated.y.len() as u64,
            n_holdout: holdout.y.len() as u64,
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
            cost: treated.cost,
            net: None,
            roi: None,
            method: String::new(),
            n_treated_missing_outcome: treated.missing_outcome,
            covariate: covariate_name(CovariateUse::NotUsed).into(),
            se_unadjusted: None,
            boot_ci_low: None,
            boot_ci_high: None,
            mean_holdout: None,
            residual_variance_treated: None,
            residual_variance_holdout: None,
        };
        let min_n = settings.evaluation.min_n_per_arm;
        let (t, h) = (
            treated.arm(self.with_covariate),
            holdout.arm(self.with_covariate),
        );
        let estimate = if holdout.y.is_empty() {
            row.method = method::NO_HOLDOUT.into();
            None
        } else if treated.y.len() < min_n || holdout.y.len() < min_n {
            row.method = method::INSUFFICIENT_N.into();
            None
        } else {
            estimate(t, h)
        };
        let Some(estimate) = estimate else {
            if row.method.is_empty() {
                row.method = method::INSUFFICIENT_N.into();
            }
            return (row, None);
        };
        row.lift = Some(estimate.lift);
        row.lift_rel =
            (estimate.mean_holdout != 0.0).then(|| estimate.lift / estimate.mean_holdout);
        row.se = Some(estimate.se);
        row.ci_low = Some(estimate.ci_low);
        row.ci_high = Some(estimate.ci_high);
        row.p_value = Some(estimate.p_value);
        row.mde = Some(mde(estimate.se));
        let incremental = estimate.lift * treated.y.len() as f64;
        let net = self.value_per_unit * incremental - treated.cost;
        row.incremental_outcome = Some(incremental);
        row.net = Some(net);
        row.roi = (treated.cost != 0.0).then(|| net / treated.cost);
        row.covariate = covariate_name(estimate.covariate).into();
        row.se_unadjusted = Some(estimate.se_unadjusted);
        row.mean_holdout = Some(estimate.mean_holdout);
        row.residual_variance_treated = Some(estimate.residual_variance_treated);
        row.residual_variance_holdout = Some(estimate.residual_variance_holdout);
        row.method = if self.post_hoc {
            method::POST_HOC
        } else if estimate.covariate == CovariateUse::NotUsed {
            method::DIFF_MEANS
        } else {
            method::LIN_HC2
        }
        .into();
        if settings.evaluation.bootstrap > 0 {
            let seed = cell_seed(settings.seed, self.outcome_index, self.stratum, self.code);
            if let Some((low, high)) = bootstrap_interval(t, h, settings.evaluation.bootstrap, seed)
            {
                row.boot_ci_low = Some(low);
                row.boot_ci_high = Some(high);
            }
        }
        (row, keep_design.then(|| design(t, h)))
    }
}

/// The chi-square test of each stratum's arm counts against the previous
/// run's published weights and holdout share.
fn randomisation_check(
    assignments: &crate::ingest::AssignmentsTable,
    strata_of: &[Option<u32>],
    previous: &PreviousRun,
    settings: &RunSettings,
) -> (Vec<RandomisationRow>, BTreeMap<u32, f64>) {
    let mut counts: BTreeMap<u32, BTreeMap<&str, u64>> = BTreeMap::new();
    for (assignment, stratum) in strata_of.iter().enumerate() {
        let Some(stratum) = stratum else { continue };
        let scheme = assignments.schemes[assignments.scheme[assignment] as usize].as_str();
        *counts
            .entry(*stratum)
            .or_default()
            .entry(scheme)
            .or_default() += 1;
    }
    let mut rows = Vec::new();
    let mut refused = BTreeMap::new();
    for (stratum, observed) in counts {
        let Some(holdout_share) = previous.holdout_share.get(&stratum).copied() else {
            continue;
        };
        // Arms: the holdout, every published scheme, and any scheme drawn
        // that was not published (expected share 0).
        let mut arms: BTreeMap<&str, f64> = BTreeMap::new();
        arms.insert(HOLDOUT, holdout_share);
        for ((segment, scheme), weight) in &previous.weights {
            if *segment == stratum {
                arms.insert(scheme.as_str(), (1.0 - holdout_share) * weight);
            }
        }
        for scheme in observed.keys() {
            arms.entry(scheme).or_insert(0.0);
        }
        let counts: Vec<u64> = arms
            .keys()
            .map(|arm| observed.get(arm).copied().unwrap_or(0))
            .collect();
        let shares: Vec<f64> = arms.values().copied().collect();
        let Some(test) = sample_ratio_test(&counts, &shares) else {
            continue;
        };
        let mismatch = test.p_value < settings.evaluation.srm_p_threshold;
        if mismatch {
            refused.insert(stratum, test.p_value);
        }
        let total: u64 = counts.iter().sum();
        let share_total: f64 = shares.iter().sum();
        for ((arm, share), count) in arms.iter().zip(&counts) {
            rows.push(RandomisationRow {
                segment_id: stratum,
                scheme_id: (*arm).to_string(),
                n_observed: *count,
                expected_share: share / share_total,
                n_expected: total as f64 * share / share_total,
                chi_square: test.chi_square,
                df: test.df as u32,
                p_value: test.p_value,
                mismatch,
            });
        }
    }
    (rows, refused)
}

/// Money of an outcome summed over a segment's cells, or the program's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MoneyTotal {
    /// Outcome.
    pub outcome: String,
    /// Stratum; `None` for the whole program.
    pub segment_id: Option<u32>,
    /// Cells with an estimate (the sums below are over these).
    pub cells_estimated: usize,
    /// All cells.
    pub cells: usize,
    /// Sum of incremental outcome.
    pub incremental_outcome: f64,
    /// Sum of cost.
    pub cost: f64,
    /// Sum of net value.
    pub net: f64,
    /// net / cost (`None` when cost is 0).
    pub roi: Option<f64>,
    /// Cost paid in cells without an estimate (not in `cost`).
    pub cost_not_estimated: f64,
}

impl Evaluation {
    /// The outcomes evaluated, in configured order.
    pub fn outcomes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for row in &self.rows {
            if !out.contains(&row.outcome) {
                out.push(row.outcome.clone());
            }
        }
        out
    }

    /// Money totals per outcome: each stratum, then the program.
    pub fn totals(&self) -> Vec<MoneyTotal> {
        let mut groups: BTreeMap<(String, Option<u32>), MoneyTotal> = BTreeMap::new();
        for row in &self.rows {
            for segment_id in [Some(row.segment_id), None] {
                let total = groups
                    .entry((row.outcome.clone(), segment_id))
                    .or_insert_with(|| MoneyTotal {
                        outcome: row.outcome.clone(),
                        segment_id,
                        cells_estimated: 0,
                        cells: 0,
                        incremental_outcome: 0.0,
                        cost: 0.0,
                        net: 0.0,
                        roi: None,
                        cost_not_estimated: 0.0,
                    });
                total.cells += 1;
                match (row.incremental_outcome, row.net) {
                    (Some(incremental), Some(net)) => {
                        total.cells_estimated += 1;
                        total.incremental_outcome += incremental;
                        total.cost += row.cost;
                        total.net += net;
                    }
                    _ => total.cost_not_estimated += row.cost,
                }
            }
        }
        let mut totals: Vec<MoneyTotal> = groups.into_values().collect();
        // Per outcome: strata in id order, then the program (None sorts first).
        totals.sort_by(|a, b| {
            a.outcome
                .cmp(&b.outcome)
                .then(a.segment_id.is_none().cmp(&b.segment_id.is_none()))
                .then(a.segment_id.cmp(&b.segment_id))
        });
        for total in &mut totals {
            total.roi = (total.cost != 0.0).then(|| total.net / total.cost);
        }
        totals
    }
}
