//! Stage 7, report: one self-contained HTML page for channel ops.
//!
//! The page comes from a minijinja template with HTML escaping on (segment
//! names may one day come from people), and its chart is an inline SVG drawn
//! with plotters, so the file needs no network and no JavaScript. Numbers
//! are formatted here, not in the template, so the template stays readable.

use minijinja::{context, Environment};
use plotters::prelude::*;

use crate::evaluate::{Evaluation, LiftRow, StrataSource};
use crate::ingest::PartnersTable;
use crate::power::PowerRow;
use crate::segment::{SegmentProfile, Segments};
use crate::tune::WeightRow;

const TEMPLATE: &str = include_str!("../templates/report.html");

/// One feature's drift since the previous run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriftRow {
    /// Feature.
    pub feature: String,
    /// Population stability index.
    pub psi: f64,
    /// Above the threshold.
    pub warning: bool,
}

/// What the report shows about the run itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunHeader {
    /// Run id.
    pub run_id: String,
    /// Evaluated period.
    pub evaluated_period: String,
    /// Target period.
    pub target_period: String,
    /// proposed, approved, published.
    pub status: String,
    /// Program version.
    pub version: String,
}

fn number(value: Option<f64>, digits: usize) -> String {
    match value {
        None => "–".into(),
        Some(v) if !v.is_finite() => "–".into(),
        Some(v) if v.abs() >= 1e4 => format!("{v:.0}"),
        Some(v) => format!("{v:.digits$}"),
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.1} %", v * 100.0))
}

/// The row (0 at the top) of a horizontal chart's y coordinate.
fn row_at(n: usize, y: f64) -> usize {
    n.saturating_sub(1).saturating_sub(y.floor() as usize)
}

/// A horizontal bar chart of segment sizes (name, partners), as SVG text.
pub fn segment_size_chart(segments: &[(String, usize)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = 60 + 34 * segments.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = segments.iter().map(|s| s.1).max().unwrap_or(1).max(1) as f64;
        let n = segments.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption("Partners per segment", ("sans-serif", 18))
            .x_label_area_size(30)
            .y_label_area_size(330)
            .build_cartesian_2d(0.0..max * 1.1, 0.0..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                segments
                    .get(row_at(n, *y))
                    .map(|s| s.0.clone())
                    .unwrap_or_default()
            })
            .x_desc("partners")
            .draw()?;
        chart.draw_series(segments.iter().enumerate().map(|(index, (_, size))| {
            let y = (n - 1 - index) as f64;
            Rectangle::new(
                [(0.0, y + 0.15), (*size as f64, y + 0.85)],
                RGBColor(9, 105, 218).filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// A forest plot of one outcome's lifts: each estimated cell's lift and 95 %
/// interval as a percentage of its holdout mean (so that segments of very
/// different size read on one axis), significant cells in colour, the rest
/// in grey, and a zero line. Intervals beyond +-150 % are cut at the edge.
/// Aggregated by cell, so its size does not grow with the partners.
pub fn forest_plot(rows: &[LiftRow], outcome: &str) -> anyhow::Result<Option<String>> {
    let cells: Vec<(String, f64, f64, f64, bool)> = rows
        .iter()
        .filter(|r| r.outcome == outcome)
        .filter_map(|r| {
            let mean = r.mean_holdout.filter(|m| *m != 0.0)?;
            Some((
                format!("segment {} · {}", r.segment_id, r.scheme_id),
                r.lift? / mean,
                r.ci_low? / mean,
                r.ci_high? / mean,
                r.significant.unwrap_or(false),
            ))
        })
        .collect();
    if cells.is_empty() {
        return Ok(None);
    }
    const LIMIT: f64 = 1.5;
    let low = cells.iter().map(|c| c.2).fold(0.0f64, f64::min).max(-LIMIT);
    let high = cells.iter().map(|c| c.3).fold(0.0f64, f64::max).min(LIMIT);
    let pad = (high - low).max(0.01) * 0.05;
    let n = cells.len();
    let mut svg = String::new();
    {
        let height = 80 + 22 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption(
                format!("Lift of {outcome}, % of the holdout mean, with 95 % intervals"),
                ("sans-serif", 18),
            )
            .x_label_area_size(34)
            .y_label_area_size(300)
            .build_cartesian_2d((low - pad)..(high + pad), 0.0..n as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                cells
                    .get(row_at(n, *y))
                    .map(|c| c.0.clone())
                    .unwrap_or_default()
            })
            .x_label_formatter(&|x| format!("{:.0} %", x * 100.0))
            .x_desc("lift, % of the holdout mean (blue: significant)")
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, n as f64)],
            BLACK.stroke_width(1),
        )))?;
        for (index, (_, lift, ci_low, ci_high, significant)) in cells.iter().enumerate() {
            let y = (n - 1 - index) as f64 + 0.5;
            let colour = if *significant {
                RGBColor(9, 105, 218)
            } else {
                RGBColor(140, 149, 159)
            };
            let clip = |v: f64| v.clamp(low - pad, high + pad);
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(clip(*ci_low), y), (clip(*ci_high), y)],
                colour.stroke_width(2),
            )))?;
            chart.draw_series(std::iter::once(Circle::new(
                (clip(*lift), y),
                4,
                colour.filled(),
            )))?;
        }
        root.present()?;
    }
    Ok(Some(svg))
}

/// Everything the report needs.
pub struct ReportInput<'a> {
    /// Run header.
    pub header: RunHeader,
    /// Partners.
    pub partners: &'a PartnersTable,
    /// Segments.
    pub segments: &'a Segments,
    /// Profiles.
    pub profiles: &'a [SegmentProfile],
    /// Evaluation.
    pub evaluation: &'a Evaluation,
    /// Weights.
    pub weights: &'a [WeightRow],
    /// Outcome that drives tuning.
    pub tune_outcome: Option<&'a str>,
    /// Significance threshold.
    pub fdr: f64,
    /// Holdout share.
    pub holdout_share: f64,
    /// How k was chosen.
    pub selection: &'a crate::segment::KSelection,
    /// Drift per feature (empty on a first run).
    pub drift: &'a [DriftRow],
    /// Drift warning threshold.
    pub drift_threshold: f64,
    /// Power for the next draw (outcomes with a `min-effect`).
    pub power: &'a [PowerRow],
    /// The sample-ratio p-value below which a stratum is refused.
    pub srm_p_threshold: f64,
}

/// Renders the page.
pub fn render(input: &ReportInput) -> anyhow::Result<(String, minijinja::Value)> {
    let context = context(input)?;
    Ok((render_context(&context)?, context))
}

/// Renders the page from its context (the run's `report.json`).
pub fn render_context(context: &minijinja::Value) -> anyhow::Result<String> {
    let mut environment = Environment::new();
    environment.add_template("report.html", TEMPLATE)?;
    Ok(environment.get_template("report.html")?.render(context)?)
}

/// Re-renders `RUN_DIR/report.html` from `RUN_DIR/report.json` with the
/// manifest's current status and approval (after `approve` or `publish`),
/// atomically.
pub fn rerender(run_dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let read = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = run_dir.join(name);
        let text = fs_err::read_to_string(&path).map_err(|e| {
            crate::exit::UsageError(format!(
                "`{}` is not a segtune run folder with a report: {e}",
                run_dir.display()
            ))
        })?;
        Ok(serde_json::from_str(&text)?)
    };
    let mut context = read("report.json")?;
    let manifest = read("manifest.json")?;
    context["run"]["status"] = manifest["status"].clone();
    context["approval"] = manifest["approval"].clone();
    context["published"] = manifest["published"].clone();
    let page = render_context(&minijinja::Value::from_serialize(&context))?;
    let path = run_dir.join("report.html");
    let temporary = run_dir.join(".report.html.tmp");
    fs_err::write(&temporary, page)?;
    std::fs::File::open(&temporary)?.sync_all()?;
    fs_err::rename(&temporary, &path)?;
    Ok(path)
}

/// The template's context: everything the page shows, formatted.
fn context(input: &ReportInput) -> anyhow::Result<minijinja::Value> {
    let segments: Vec<_> = input
        .profiles
        .iter()
        .zip(&input.segments.segments)
        .map(|(profile, info)| {
            context! {
                id => profile.id,
                name => profile.name,
                name_reason => info.name_reason,
                n_partners => profile.n_partners,
                share_partners => percent(Some(profile.share_partners)),
                share_revenue => percent(profile.share_revenue),
            }
        })
        .collect();
    let profile_rows: Vec<_> = input
        .partners
        .numeric
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let present: Vec<f64> = column.values.iter().copied().filter(|v| !v.is_nan()).collect();
            let overall = (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64);
            context! {
                name => column.name,
                values => input.profiles.iter().map(|p| number(p.means[index], 2)).collect::<Vec<_>>(),
                overall => number(overall, 2),
            }
        })
        .collect();
    let lift: Vec<_> = input
        .evaluation
        .rows
        .iter()
        .map(|row| {
            context! {
                outcome => row.outcome,
                segment_id => row.segment_id,
                scheme_id => row.scheme_id,
                n_treated => row.n_treated,
                n_holdout => row.n_holdout,
                lift => number(row.lift, 2),
                lift_rel => row.lift_rel.map(|r| format!("{:+.1} %", r * 100.0)),
                se => number(row.se, 2),
                p_value => number(row.p_value, 3),
                interval => match (row.ci_low, row.ci_high) {
                    (Some(low), Some(high)) => format!("{} to {}", number(Some(low), 2), number(Some(high), 2)),
                    _ => "–".into(),
                },
                q_value => number(row.q_value, 3),
                significant => row.significant.unwrap_or(false),
                mde => number(row.mde, 2),
                incremental => number(row.incremental_outcome, 0),
                cost => number(Some(row.cost), 0),
                net => number(row.net, 0),
                roi => number(row.roi, 2),
                method => row.method.replace('_', " "),
                variance_saved => match (row.se, row.se_unadjusted) {
                    (Some(se), Some(unadjusted)) if unadjusted > 0.0 && row.covariate != "none" => percent(Some(1.0 - (se / unadjusted).powi(2))),
                    _ => "–".into(),
                },
                missing => row.n_treated_missing_outcome,
            }
        })
        .collect();
    let weights: Vec<_> = input
        .weights
        .iter()
        .map(|row| {
            context! {
                segment_id => row.segment_id,
                scheme_id => row.scheme_id,
                weight => number(Some(row.weight), 3),
                previous_weight => number(row.previous_weight, 3),
                holdout => percent(Some(row.holdout_share)),
                reason => row.reason,
            }
        })
        .collect();
    let mut warnings = Vec::new();
    for row in input.drift.iter().filter(|r| r.warning) {
        warnings.push(format!(
            "The distribution of {} moved since the previous run (population stability index {:.2}, above {}).",
            row.feature, row.psi, input.drift_threshold
        ));
    }
    for segment in input
        .segments
        .segments
        .iter()
        .filter(|s| s.name_reason.contains("no longer fits"))
    {
        warnings.push(format!("Segment {} keeps its name \"{}\" from the previous run, but its profile no longer fits it.", segment.id, segment.name));
    }
    // Migration: partners by previous and current segment.
    let mut migration: std::collections::BTreeMap<(u32, u32), usize> =
        std::collections::BTreeMap::new();
    for (member, previous) in input
        .segments
        .member
        .iter()
        .zip(&input.segments.previous_segment_id)
    {
        if let Some(previous) = previous {
            *migration
                .entry((*previous, input.segments.segments[*member].id))
                .or_default() += 1;
        }
    }
    let to_ids: Vec<u32> = input.segments.segments.iter().map(|s| s.id).collect();
    let from_ids: std::collections::BTreeSet<u32> = migration.keys().map(|k| k.0).collect();
    let migration_rows: Vec<_> = from_ids
        .iter()
        .map(|from| context! { from => from, counts => to_ids.iter().map(|to| migration.get(&(*from, *to)).copied().unwrap_or(0)).collect::<Vec<_>>() })
        .collect();
    for (stratum, p_value) in &input.evaluation.refused {
        warnings.push(format!(
            "Randomisation check failed in segment {stratum}: the numbers of partners per scheme and holdout do not match the published weights (chi-square p = {p_value:.1e}, below {}). Its lift is not used and its weights are held until the draw is explained.",
            input.srm_p_threshold
        ));
    }
    let not_estimated = input
        .evaluation
        .rows
        .iter()
        .filter(|r| r.lift.is_none())
        .count();
    if not_estimated > 0 {
        warnings.push(format!(
            "{not_estimated} of {} lift cells have too little evidence for an estimate (fewer than the minimum partners with an outcome in an arm, or no holdout); they keep their weights at the floor or as before.",
            input.evaluation.rows.len()
        ));
    }
    let missing_outcomes: u64 = input
        .evaluation
        .rows
        .iter()
        .filter(|r| Some(r.outcome.as_str()) == input.tune_outcome)
        .map(|r| r.n_treated_missing_outcome)
        .sum();
    if missing_outcomes > 0 {
        warnings.push(format!(
            "{missing_outcomes} treated partners have no {} outcome; they are left out of the lift but their cost is counted.",
            input.tune_outcome.unwrap_or("tuning")
        ));
    }
    for outcome in &input.evaluation.outcomes() {
        let unreachable: Vec<&PowerRow> = input
            .power
            .iter()
            .filter(|r| &r.outcome == outcome && !r.reachable)
            .collect();
        if let Some(first) = unreachable.first() {
            warnings.push(format!(
                "Not learnable at this holdout share: in segment{} {}, a {} lift of {} per partner cannot be detected for every scheme at any holdout share up to 50 % (see \"Is the holdout large enough?\").",
                if unreachable.len() > 1 { "s" } else { "" },
                unreachable.iter().map(|r| r.segment_id.to_string()).collect::<Vec<_>>().join(", "),
                outcome,
                number(Some(first.min_effect), 0),
            ));
        }
    }
    if input.evaluation.n_without_stratum > 0 {
        warnings.push(format!(
            "{} assigned partners had no stratum (no segment_id and not in the previous run) and were left out of the lift.",
            input.evaluation.n_without_stratum
        ));
    }
    let strata = input.evaluation.strata.map(|s| match s {
        StrataSource::Assignments => "assignments",
        StrataSource::PreviousRun => "previous_run",
        StrataSource::PostHoc => "post_hoc",
    });
    Ok(context! {
        run => input.header,
        overview => context! {
            partners => input.partners.ids.len(),
            segments => input.segments.segments.len(),
            k => input.selection.chosen,
            k_reason => input.selection.reason,
            strata => strata,
        },
        warnings => warnings,
        chart => segment_size_chart(&input.profiles.iter().map(|p| (p.name.clone(), p.n_partners)).collect::<Vec<_>>())?,
        segments => segments,
        profile_rows => profile_rows,
        lift => lift,
        forest => match input.tune_outcome {
            Some(outcome) => forest_plot(&input.evaluation.rows, outcome)?,
            None => None,
        },
        totals => input.evaluation.totals().iter().map(|t| context! {
            outcome => t.outcome,
            segment => t.segment_id.map_or("all".to_string(), |s| s.to_string()),
            cells => format!("{} of {}", t.cells_estimated, t.cells),
            incremental => number(Some(t.incremental_outcome), 0),
            cost => number(Some(t.cost), 0),
            net => number(Some(t.net), 0),
            roi => number(t.roi, 2),
            cost_not_estimated => number(Some(t.cost_not_estimated), 0),
        }).collect::<Vec<_>>(),
        power => input.power.iter().map(|p| context! {
            outcome => p.outcome,
            segment_id => p.segment_id,
            n_partners => p.n_partners,
            min_effect => number(Some(p.min_effect), 2),
            mde_now => number(p.mde_at_holdout_share, 0),
            holdout_share => percent(Some(p.holdout_share)),
            recommended => p.recommended_holdout_share.map_or("unreachable (above 50 %)".to_string(), |h| percent(Some(h))),
        }).collect::<Vec<_>>(),
        randomisation => {
            let mut by_stratum: std::collections::BTreeMap<u32, (f64, bool, u64)> = std::collections::BTreeMap::new();
            for row in &input.evaluation.randomisation {
                let entry = by_stratum.entry(row.segment_id).or_insert((row.p_value, row.mismatch, 0));
                entry.2 += row.n_observed;
            }
            by_stratum.into_iter().map(|(segment, (p, mismatch, n))| context! {
                segment_id => segment,
                partners => n,
                p_value => format!("{p:.3}"),
                verdict => if mismatch { "mismatch: weights held" } else { "as published" },
            }).collect::<Vec<_>>()
        },
        weights => weights,
        migration_to => to_ids,
        migration_rows => migration_rows,
        drift => input.drift.iter().map(|r| context! { feature => r.feature, psi => number(Some(r.psi), 3), warning => r.warning }).collect::<Vec<_>>(),
        candidates => input.selection.candidates.iter().map(|c| context! {
            k => c.score.k,
            chosen => c.score.k == input.selection.chosen,
            silhouette => number(Some(c.score.silhouette), 3),
            calinski_harabasz => number(Some(c.score.calinski_harabasz), 0),
            davies_bouldin => number(Some(c.score.davies_bouldin), 3),
            smallest_share => percent(Some(c.score.smallest_share)),
            stability => number(Some(c.score.stability), 3),
            gates => if c.passed { "pass".to_string() } else { c.failures.join("; ") },
        }).collect::<Vec<_>>(),
        tune_outcome => input.tune_outcome.unwrap_or("outcome"),
        fdr => input.fdr,
        holdout_percent => percent(Some(input.holdout_share)),
    })
}
