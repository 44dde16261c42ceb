//! Stage 7, report: one self-contained HTML page for channel ops.
//!
//! The page comes from a minijinja template with HTML escaping on (segment
//! names may one day come from people), and its chart is an inline SVG drawn
//! with plotters, so the file needs no network and no JavaScript. Numbers
//! are formatted here, not in the template, so the template stays readable.

use minijinja::{context, Environment};
use plotters::prelude::*;

use crate::evaluate::{Evaluation, StrataSource};
use crate::ingest::PartnersTable;
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
                let index = n.saturating_sub(1).saturating_sub(y.floor() as usize);
                segments.get(index).map(|s| s.0.clone()).unwrap_or_default()
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
}

/// Renders the page.
pub fn render(input: &ReportInput) -> anyhow::Result<String> {
    let mut environment = Environment::new();
    environment.add_template("report.html", TEMPLATE)?;
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
                interval => match (row.ci_low, row.ci_high) {
                    (Some(low), Some(high)) => format!("{} to {}", number(Some(low), 2), number(Some(high), 2)),
                    _ => "–".into(),
                },
                q_value => number(row.q_value, 3),
                significant => row.significant.unwrap_or(false),
                net => number(row.net, 0),
                roi => number(row.roi, 2),
                method => row.method.replace('_', " "),
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
    let page = environment.get_template("report.html")?.render(context! {
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
    })?;
    Ok(page)
}
