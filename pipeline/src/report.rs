//! Stage 7, report: one self-contained HTML page for channel ops.
//!
//! The page comes from a minijinja template with HTML escaping on (segment
//! names and override notes may come from people), and its charts are inline
//! SVGs drawn with plotters, so the file needs no network and no JavaScript.
//! Numbers and sentences are formatted here, not in the template, so the
//! template stays readable.
//!
//! Every chart and table aggregates, by segment, scheme or feature: nothing
//! on the page is per partner, so its size does not grow with the partners.
//! The page answers three questions from its own content: which segments
//! exist (one card each, with its profile against all partners), why (how
//! k was chosen, why each name) and what changes next period (the weights,
//! before and after, with the tuner's reasons).

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{context, Environment};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use rayon::prelude::*;

use crate::evaluate::{Evaluation, LiftRow, StrataSource};
use crate::ingest::PartnersTable;
use crate::power::PowerRow;
use crate::segment::{SegmentInfo, SegmentProfile, Segments};
use crate::tune::WeightRow;

const TEMPLATE: &str = include_str!("../templates/report.html");

/// Blue: the main series, significant, above the average partner.
const BLUE: RGBColor = RGBColor(9, 105, 218);
/// Grey: previous values, not significant.
const GREY: RGBColor = RGBColor(140, 149, 159);
/// Orange: below the average partner.
const ORANGE: RGBColor = RGBColor(188, 76, 0);

/// A weight moves when it changes by at least this much (one point).
const MOVE: f64 = 0.01;

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
        Some(v) if v.abs() >= 1e4 => crate::summary::grouped(v),
        Some(v) => format!("{v:.digits$}"),
    }
}

/// A value for a chart label, with as few digits as it needs: 1435.31
/// reads "1435", 0.25 "0.25", 3.0 "3".
fn short(value: Option<f64>) -> String {
    match value {
        None => "no values".into(),
        Some(v) if !v.is_finite() => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => {
            let digits = if v.abs() >= 10.0 { 1 } else { 2 };
            let text = format!("{v:.digits$}");
            let text = text.trim_end_matches('0').trim_end_matches('.');
            if text == "-0" {
                "0".into()
            } else {
                text.into()
            }
        }
    }
}

/// A signed amount: whole units from 100 on, else two decimals.
fn signed(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:+.0}")
    } else {
        format!("{value:+.2}")
    }
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".into(), |v| format!("{:.1} %", v * 100.0))
}

/// A weight as a whole percentage: 0.37925 reads "38 %".
fn weight_percent(weight: f64) -> String {
    format!("{:.0} %", weight * 100.0)
}

/// Up to `max` items joined as "a, b and c", then "and N more".
fn join_words(items: &[String], max: usize) -> String {
    let shown: Vec<&String> = items.iter().take(max).collect();
    let rest = items.len().saturating_sub(max);
    match (shown.as_slice(), rest) {
        ([], _) => String::new(),
        ([only], 0) => (*only).clone(),
        (many, 0) => format!(
            "{} and {}",
            many[..many.len() - 1]
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            many[many.len() - 1]
        ),
        (many, rest) => format!(
            "{} and {rest} more",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The row (0 at the top) of a horizontal chart's y coordinate.
fn row_at(n: usize, y: f64) -> usize {
    n.saturating_sub(1).saturating_sub(y.floor() as usize)
}

/// A linear axis whose ticks (and labels) sit exactly at `ticks`: plotters
/// picks "nice" numbers otherwise, which skips rows of a bar chart.
struct TickedAxis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl TickedAxis {
    /// `n` rows from 0 to `n`, one tick at the middle of each row.
    fn rows(n: usize) -> Self {
        Self {
            range: 0.0..n as f64,
            ticks: (0..n).map(|index| index as f64 + 0.5).collect(),
        }
    }
}

impl Ranged for TickedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let width = self.range.end - self.range.start;
        if width <= 0.0 {
            return limit.0;
        }
        let share = (value - self.range.start) / width;
        limit.0 + (f64::from(limit.1 - limit.0) * share).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// A horizontal bar chart of segment sizes (label, partners), as SVG text.
pub fn segment_size_chart(segments: &[(String, usize)]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = 70 + 30 * segments.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = segments.iter().map(|s| s.1).max().unwrap_or(1).max(1) as f64;
        let n = segments.len();
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption("Partners per segment", ("sans-serif", 18))
            .x_label_area_size(34)
            .y_label_area_size(300)
            .build_cartesian_2d(0.0..max * 1.12, TickedAxis::rows(n))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|y| {
                segments
                    .get(row_at(n, *y))
                    .map(|s| s.0.clone())
                    .unwrap_or_default()
            })
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc("partners")
            .label_style(("sans-serif", 15))
            .draw()?;
        chart.draw_series(segments.iter().enumerate().map(|(index, (_, size))| {
            let y = (n - 1 - index) as f64;
            Rectangle::new([(0.0, y + 0.2), (*size as f64, y + 0.8)], BLUE.filled())
        }))?;
        let style =
            TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(segments.iter().enumerate().map(|(index, (_, size))| {
            let y = (n - 1 - index) as f64 + 0.5;
            Text::new(format!(" {size}"), (*size as f64, y), style.clone())
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
        let height = 90 + 20 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .caption(
                format!("Lift of {outcome}, % of the holdout mean, with 95 % intervals"),
                ("sans-serif", 18),
            )
            .x_label_area_size(40)
            .y_label_area_size(260)
            .build_cartesian_2d((low - pad)..(high + pad), TickedAxis::rows(n))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .y_label_formatter(&|y| {
                cells
                    .get(row_at(n, *y))
                    .map(|c| c.0.clone())
                    .unwrap_or_default()
            })
            .x_label_formatter(&|x| format!("{:.0} %", x * 100.0))
            .x_desc("lift, % of the holdout mean (blue: significant)")
            .label_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (0.0, n as f64)],
            BLACK.stroke_width(1),
        )))?;
        for (index, (_, lift, ci_low, ci_high, significant)) in cells.iter().enumerate() {
            let y = (n - 1 - index) as f64 + 0.5;
            let colour = if *significant { BLUE } else { GREY };
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

/// One feature in a segment's profile: where the segment's typical
/// (median) partner ranks among all partners.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRank {
    /// Feature.
    pub feature: String,
    /// The segment's median, in original units.
    pub median: Option<f64>,
    /// The share of all partners (with a value) below that median, ties
    /// counted half, in percent: 50 is the middle partner.
    pub percentile: Option<f64>,
    /// The share of all partners strictly below the median (0 to 1).
    pub below: Option<f64>,
    /// The share of all partners strictly above the median (0 to 1).
    pub above: Option<f64>,
}

/// Per segment and feature, the percentile rank of the segment's median
/// among all partners' values (missing values left out). One pass over each
/// feature, the features in parallel; the result is per segment, not per
/// partner.
pub fn percentile_ranks(
    partners: &PartnersTable,
    profiles: &[SegmentProfile],
) -> Vec<Vec<FeatureRank>> {
    let by_feature: Vec<Vec<Option<(f64, f64)>>> = partners
        .numeric
        .par_iter()
        .enumerate()
        .map(|(index, column)| {
            let medians: Vec<Option<f64>> = profiles
                .iter()
                .map(|p| p.medians.get(index).copied().flatten())
                .collect();
            let mut below = vec![0u64; medians.len()];
            let mut equal = vec![0u64; medians.len()];
            let mut present = 0u64;
            for value in column.values.iter().filter(|v| !v.is_nan()) {
                present += 1;
                for (segment, median) in medians.iter().enumerate() {
                    if let Some(median) = median {
                        if value < median {
                            below[segment] += 1;
                        } else if value == median {
                            equal[segment] += 1;
                        }
                    }
                }
            }
            medians
                .iter()
                .enumerate()
                .map(|(segment, median)| {
                    median.filter(|_| present > 0).map(|_| {
                        let n = present as f64;
                        let above = present - below[segment] - equal[segment];
                        (below[segment] as f64 / n, above as f64 / n)
                    })
                })
                .collect()
        })
        .collect();
    profiles
        .iter()
        .enumerate()
        .map(|(segment, profile)| {
            partners
                .numeric
                .iter()
                .enumerate()
                .map(|(index, column)| {
                    let shares = by_feature[index][segment];
                    FeatureRank {
                        feature: column.name.clone(),
                        median: profile.medians.get(index).copied().flatten(),
                        percentile: shares
                            .map(|(below, above)| 100.0 * (below + (1.0 - below - above) / 2.0)),
                        below: shares.map(|s| s.0),
                        above: shares.map(|s| s.1),
                    }
                })
                .collect()
        })
        .collect()
}

/// A segment's profile against all partners: per feature, a bar from the
/// middle partner (50) to where the segment's typical partner ranks, blue
/// when higher, orange when lower; the label carries the segment's median.
pub fn profile_chart(ranks: &[FeatureRank]) -> anyhow::Result<String> {
    let n = ranks.len();
    let mut svg = String::new();
    {
        let height = 64 + 22 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (600, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(34)
            .x_label_area_size(42)
            .y_label_area_size(250)
            .build_cartesian_2d(
                TickedAxis {
                    range: 0.0..100.0,
                    ticks: vec![0.0, 25.0, 50.0, 75.0, 100.0],
                },
                TickedAxis::rows(n),
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(234, 238, 242))
            .y_label_formatter(&|y| {
                ranks
                    .get(row_at(n, *y))
                    .map(|r| match r.median {
                        Some(_) => format!("{} (median {})", r.feature, short(r.median)),
                        None => format!("{} (no values)", r.feature),
                    })
                    .unwrap_or_default()
            })
            .x_label_formatter(&|x| match *x as u32 {
                0 => "lowest".into(),
                50 => "middle".into(),
                100 => "highest".into(),
                other => other.to_string(),
            })
            .x_desc("rank of the segment's typical partner among all partners")
            .label_style(("sans-serif", 14))
            .draw()?;
        chart.draw_series(ranks.iter().enumerate().filter_map(|(index, rank)| {
            let percentile = rank.percentile?;
            let y = (n - 1 - index) as f64;
            let colour = if percentile >= 50.0 { BLUE } else { ORANGE };
            Some(Rectangle::new(
                [(50.0, y + 0.2), (percentile, y + 0.8)],
                colour.filled(),
            ))
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(50.0, 0.0), (50.0, n as f64)],
            BLACK.stroke_width(1),
        )))?;
        root.present()?;
    }
    Ok(svg)
}

/// One scheme's bar pair in a weight chart.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightBar {
    /// Scheme.
    pub scheme_id: String,
    /// The weight of the evaluated period (`None` on a first run).
    pub previous: Option<f64>,
    /// The proposed weight.
    pub next: f64,
}

/// A segment's weights before and after: per scheme, the previous weight in
/// grey above the proposed one in blue, both labelled; `max` is the x range
/// (shared by every segment's chart, so that they compare). The legend is
/// the page's, beside the chart.
pub fn weight_chart(bars: &[WeightBar], max: f64) -> anyhow::Result<String> {
    let n = bars.len();
    let any_previous = bars.iter().any(|b| b.previous.is_some());
    let mut svg = String::new();
    {
        let height = 60 + 34 * n as u32;
        let root = SVGBackend::with_string(&mut svg, (440, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let steps = (max / 0.1).ceil().max(1.0) as usize;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .margin_right(20)
            .x_label_area_size(38)
            .y_label_area_size(120)
            .build_cartesian_2d(
                TickedAxis {
                    range: 0.0..max * 1.12,
                    ticks: (0..=steps).map(|s| s as f64 * 0.1).collect(),
                },
                TickedAxis::rows(n),
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(234, 238, 242))
            .y_label_formatter(&|y| {
                bars.get(row_at(n, *y))
                    .map(|b| b.scheme_id.clone())
                    .unwrap_or_default()
            })
            .x_label_formatter(&|x| format!("{:.0} %", x * 100.0))
            .x_desc("weight: chance of the scheme for a partner not held out")
            .label_style(("sans-serif", 14))
            .draw()?;
        let value_style =
            TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        // With a previous weight, two bars per row; without, one thicker bar.
        let (next_low, next_high) = if any_previous {
            (0.14, 0.48)
        } else {
            (0.25, 0.75)
        };
        let mut shapes: Vec<(f64, f64, f64, RGBColor)> = Vec::new();
        for (index, bar) in bars.iter().enumerate() {
            let y = (n - 1 - index) as f64;
            if let Some(previous) = bar.previous {
                shapes.push((previous, y + 0.52, y + 0.86, GREY));
            }
            shapes.push((bar.next, y + next_low, y + next_high, BLUE));
        }
        chart.draw_series(shapes.iter().map(|(value, low, high, colour)| {
            Rectangle::new([(0.0, *low), (*value, *high)], colour.filled())
        }))?;
        chart.draw_series(shapes.iter().map(|(value, low, high, _)| {
            Text::new(
                format!(" {}", weight_percent(*value)),
                (*value, (low + high) / 2.0),
                value_style.clone(),
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
    /// The previous run's status when it was never approved.
    pub unapproved_previous: Option<&'a str>,
    /// What the configuration check warned of (a limit naming a scheme the
    /// assignments do not have).
    pub config_warnings: &'a [String],
    /// The outcomes, with what a unit of each is worth.
    pub outcomes: &'a [crate::config::OutcomeSettings],
    /// The share of revenue that is margin (the default value per unit).
    pub margin_rate: f64,
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
    crate::output::sync_parent(&path)?;
    Ok(path)
}

/// One entry of the page's warnings list.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Warning {
    /// What kind of problem, as a short heading.
    kind: &'static str,
    /// What it is and what it means, in plain words.
    text: String,
}

impl Warning {
    fn new(kind: &'static str, text: String) -> Self {
        Self { kind, text }
    }
}

const INSUFFICIENT_EVIDENCE: &str = "Insufficient evidence";
const RANDOMISATION: &str = "Randomisation check failed";
const UNSTABLE: &str = "Unstable segments";
const NOT_LEARNABLE: &str = "Not learnable at this holdout share";
const DRIFT: &str = "Drift";
const MISSING_DATA: &str = "Missing data";
const UNAPPROVED_PREVIOUS: &str = "Previous run not approved";
const CONFIGURATION: &str = "Configuration";

/// How a segment came about, in words.
fn source_words(source: &str) -> String {
    if source == crate::segment::SOURCE_KMEANS {
        "found by k-means clustering of the partners' features".into()
    } else if let Some(rule) = source.strip_prefix("rule:") {
        format!("defined by the rule `{rule}`, applied before clustering")
    } else if source == "override" {
        "set by an override at approval".into()
    } else {
        source.into()
    }
}

/// The features on which a segment's typical partner differs most from the
/// middle partner (at least 15 points of rank away), in words.
fn profile_words(ranks: &[FeatureRank]) -> String {
    let mut notable: Vec<(usize, f64)> = ranks
        .iter()
        .enumerate()
        .filter_map(|(index, rank)| {
            let distance = (rank.percentile? - 50.0).abs();
            (distance >= 15.0).then_some((index, distance))
        })
        .collect();
    notable.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if notable.is_empty() {
        return "Its typical partner sits near the middle of all partners on every feature.".into();
    }
    let words: Vec<String> = notable
        .iter()
        .take(3)
        .map(|(index, _)| {
            let rank = &ranks[*index];
            let (below, above) = (rank.below.unwrap_or(0.0), rank.above.unwrap_or(0.0));
            if rank.percentile.unwrap_or(50.0) >= 50.0 {
                format!(
                    "higher on {} than {:.0} % of partners",
                    rank.feature,
                    (below * 100.0).floor()
                )
            } else {
                format!(
                    "lower on {} than {:.0} % of partners",
                    rank.feature,
                    (above * 100.0).floor()
                )
            }
        })
        .collect();
    format!("Its typical partner is {}.", join_words(&words, 3))
}

/// A segment's weight rows, the largest weight first.
fn sorted_mix(weights: &[WeightRow], segment_id: u32) -> Vec<&WeightRow> {
    let mut rows: Vec<&WeightRow> = weights
        .iter()
        .filter(|w| w.segment_id == segment_id)
        .collect();
    rows.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then(a.scheme_id.cmp(&b.scheme_id))
    });
    rows
}

/// What to incentivise, in words: the lead scheme and the runners-up.
fn incentive_words(mix: &[&WeightRow]) -> String {
    let Some(lead) = mix.first() else {
        return "No weights were proposed for this segment.".into();
    };
    let others: Vec<String> = mix[1..]
        .iter()
        .filter(|r| r.weight >= MOVE)
        .map(|r| format!("{} ({})", r.scheme_id, weight_percent(r.weight)))
        .collect();
    let mut text = format!(
        "Lead with {} ({} of the partners who get a scheme)",
        lead.scheme_id,
        weight_percent(lead.weight)
    );
    if !others.is_empty() {
        text.push_str(&format!(", then {}", join_words(&others, 4)));
    }
    text.push_str(&format!(
        ". {} of the segment is held out (no scheme), to keep measuring lift.",
        percent(Some(lead.holdout_share))
    ));
    text
}

/// How a segment's mix moves from the evaluated to the target period, in
/// words, and the tuner's reason for its largest move.
fn change_words(mix: &[&WeightRow]) -> (String, Option<String>) {
    if mix.is_empty() {
        return ("No weights were proposed for this segment.".into(), None);
    }
    if mix.iter().all(|r| r.previous_weight.is_none()) {
        return (
            "These are its first weights: there is no previous weight to compare with.".into(),
            mix.first()
                .map(|r| format!("{}: {}", r.scheme_id, r.reason)),
        );
    }
    let delta = |r: &WeightRow| r.weight - r.previous_weight.unwrap_or(0.0);
    let mut moves: Vec<&WeightRow> = mix
        .iter()
        .copied()
        .filter(|r| delta(r).abs() >= MOVE)
        .collect();
    moves.sort_by(|a, b| {
        delta(b)
            .abs()
            .total_cmp(&delta(a).abs())
            .then(a.scheme_id.cmp(&b.scheme_id))
    });
    if moves.is_empty() {
        return (
            "The mix stays as it was: no weight moves by a point or more.".into(),
            None,
        );
    }
    let words = |up: bool| -> Vec<String> {
        moves
            .iter()
            .filter(|r| (delta(r) > 0.0) == up)
            .map(|r| match r.previous_weight {
                Some(previous) => format!(
                    "{} ({} → {})",
                    r.scheme_id,
                    weight_percent(previous),
                    weight_percent(r.weight)
                ),
                None => format!("{} (new, {})", r.scheme_id, weight_percent(r.weight)),
            })
            .collect()
    };
    let (more, less) = (words(true), words(false));
    let mut parts = Vec::new();
    if !more.is_empty() {
        parts.push(format!("more {}", join_words(&more, 3)));
    }
    if !less.is_empty() {
        parts.push(format!("less {}", join_words(&less, 3)));
    }
    let mut text = parts.join("; ");
    if let Some(first) = text.get(..1) {
        text = format!("{}{}.", first.to_uppercase(), &text[1..]);
    }
    let reason = moves
        .first()
        .map(|r| format!("{}: {}", r.scheme_id, r.reason));
    (text, reason)
}

/// The best evidence from lift for a segment, in words: the largest
/// significant positive lift of `outcome`, else the highest estimate with a
/// note that it is not yet evidence.
fn evidence_words(rows: &[LiftRow], outcome: Option<&str>, segment_id: u32) -> String {
    let Some(outcome) = outcome else {
        return "No lift was measured this period (no assignments or outcomes).".into();
    };
    let estimated: Vec<(&LiftRow, f64)> = rows
        .iter()
        .filter(|r| r.outcome == outcome && r.segment_id == segment_id)
        .filter_map(|r| Some((r, r.lift?)))
        .collect();
    let interval = |r: &LiftRow| match (r.ci_low, r.ci_high) {
        (Some(low), Some(high)) => format!("95 % interval {} to {}", signed(low), signed(high)),
        _ => "no interval".into(),
    };
    let best_significant = estimated
        .iter()
        .filter(|(r, lift)| r.significant == Some(true) && *lift > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((row, lift)) = best_significant {
        return format!(
            "Best evidence: {} raised {outcome} by {} per treated partner ({}), significant after the false-discovery correction.",
            row.scheme_id,
            signed(*lift),
            interval(row)
        );
    }
    let harmful: Vec<String> = estimated
        .iter()
        .filter(|(r, lift)| r.significant == Some(true) && *lift < 0.0)
        .map(|(r, _)| r.scheme_id.clone())
        .collect();
    let highest = estimated.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let mut text = match highest {
        None => format!(
            "No lift of {outcome} could be estimated in this segment this period (too few partners with an outcome, or no holdout)."
        ),
        Some((row, lift)) => format!(
            "No scheme has shown a significant lift of {outcome} here yet; the highest estimate is {} at {} per treated partner ({}), {}.",
            row.scheme_id,
            signed(*lift),
            interval(row),
            if row.ci_low.is_some_and(|low| low > 0.0) || row.ci_high.is_some_and(|high| high < 0.0) {
                "which excludes zero but does not hold up once corrected for testing many cells at once"
            } else {
                "which includes zero: not yet evidence either way"
            }
        ),
    };
    if !harmful.is_empty() {
        text.push_str(&format!(
            " Significantly lower {outcome} with {}.",
            join_words(&harmful, 4)
        ));
    }
    text
}

/// The chosen k's quality, in plain words.
fn quality_words(selection: &crate::segment::KSelection) -> String {
    let Some(chosen) = selection
        .candidates
        .iter()
        .find(|c| c.score.k == selection.chosen)
    else {
        return String::new();
    };
    let score = &chosen.score;
    let separation = if score.silhouette >= 0.5 {
        "clearly separated"
    } else if score.silhouette >= 0.25 {
        "reasonably well separated"
    } else if score.silhouette >= 0.1 {
        "distinct but overlapping, as is usual for partner data: a partner near a border could belong to either side"
    } else {
        "barely separated: treat their borders as rough"
    };
    let stability = if score.stability.is_nan() {
        "their stability was not measured (no resamples configured)".to_string()
    } else if score.stability >= 0.9 {
        format!(
            "they are stable: refitting on resampled partners gives nearly the same segments (agreement {:.2} of 1)",
            score.stability
        )
    } else if score.stability >= 0.75 {
        format!(
            "they are mostly stable: refitting on resampled partners gives similar segments (agreement {:.2} of 1)",
            score.stability
        )
    } else {
        format!(
            "they are not stable: refitting on resampled partners gives different segments (agreement {:.2} of 1), so read them with care",
            score.stability
        )
    };
    format!(
        "The clustered segments are {separation} (silhouette {:.2}), and {stability}. The smallest holds {} of the clustered partners.",
        score.silhouette,
        percent(Some(score.smallest_share))
    )
}

/// Migration counts: (previous id, current id) -> partners.
fn migration(segments: &Segments) -> BTreeMap<(u32, u32), usize> {
    let mut counts = BTreeMap::new();
    for (member, previous) in segments.member.iter().zip(&segments.previous_segment_id) {
        if let Some(previous) = previous {
            *counts
                .entry((*previous, segments.segments[*member].id))
                .or_default() += 1;
        }
    }
    counts
}

/// The lift cells without an estimate, in words: per reason, the outcomes
/// and the cells ("segment 1: every scheme; segment 3: attach_bonus"),
/// outcomes with the same cells merged into one entry.
fn insufficient_evidence(rows: &[LiftRow]) -> Vec<(String, Vec<String>, String)> {
    // (method, outcome) -> segment -> (schemes without an estimate, cells).
    type Cells = BTreeMap<u32, (Vec<String>, usize)>;
    let mut by_outcome: BTreeMap<(String, String), Cells> = BTreeMap::new();
    let mut cells: BTreeMap<(String, u32), usize> = BTreeMap::new();
    for row in rows {
        *cells
            .entry((row.outcome.clone(), row.segment_id))
            .or_default() += 1;
    }
    for row in rows.iter().filter(|r| r.lift.is_none()) {
        by_outcome
            .entry((row.method.clone(), row.outcome.clone()))
            .or_default()
            .entry(row.segment_id)
            .or_default()
            .0
            .push(row.scheme_id.clone());
    }
    let mut merged: Vec<(String, Vec<String>, String)> = Vec::new();
    for ((method, outcome), segments) in by_outcome {
        let why = match method.as_str() {
            "insufficient_n" => {
                "too few partners with an outcome in the scheme or the holdout".into()
            }
            "no_holdout" => "no held-out partners to compare with".into(),
            other => other.replace('_', " "),
        };
        let described: Vec<String> = segments
            .iter()
            .map(|(segment, (schemes, _))| {
                let all = cells
                    .get(&(outcome.clone(), *segment))
                    .copied()
                    .unwrap_or(0);
                if schemes.len() == all && all > 1 {
                    format!("segment {segment} (every scheme)")
                } else {
                    format!("segment {segment} ({})", join_words(schemes, 4))
                }
            })
            .collect();
        let described = join_words(&described, 8);
        match merged
            .iter_mut()
            .find(|(w, _, c)| *w == why && *c == described)
        {
            Some(entry) => entry.1.push(outcome),
            None => merged.push((why, vec![outcome], described)),
        }
    }
    merged
}

/// Every warning, in plain words, grouped by kind in the page's order.
fn warnings(input: &ReportInput, moved: &BTreeMap<(u32, u32), usize>) -> Vec<Warning> {
    let mut warnings = Vec::new();
    for (why, outcomes, cells) in insufficient_evidence(&input.evaluation.rows) {
        warnings.push(Warning::new(
            INSUFFICIENT_EVIDENCE,
            format!(
                "The lift of {} could not be estimated ({why}) in {cells}. Those weights do not use this period's lift (see each weight's reason).",
                join_words(&outcomes, usize::MAX)
            ),
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
        warnings.push(Warning::new(
            INSUFFICIENT_EVIDENCE,
            format!(
                "{missing_outcomes} treated partners have no {} outcome; they are left out of the lift but their cost is counted.",
                input.tune_outcome.unwrap_or("tuning")
            ),
        ));
    }
    for (stratum, p_value) in &input.evaluation.refused {
        warnings.push(Warning::new(
            RANDOMISATION,
            format!(
                "In segment {stratum}, the numbers of partners per scheme and holdout do not match the published weights (chi-square p = {p_value:.1e}, below {}). Its lift is not used and its weights are held until the draw is explained.",
                input.srm_p_threshold
            ),
        ));
    }
    // Unstable segments: a k that failed its gates, names that no longer
    // fit, ids that could not be carried over, segments that scattered.
    if let Some(chosen) = input
        .selection
        .candidates
        .iter()
        .find(|c| c.score.k == input.selection.chosen && !c.passed)
    {
        warnings.push(Warning::new(
            UNSTABLE,
            format!(
                "k = {} fails the quality gates ({}); {}. The segments may change a lot from one run to the next.",
                chosen.score.k,
                chosen.failures.join("; "),
                input.selection.reason
            ),
        ));
    }
    for segment in input
        .segments
        .segments
        .iter()
        .filter(|s| s.name_reason.contains("no longer fits"))
    {
        warnings.push(Warning::new(
            UNSTABLE,
            format!(
                "Segment {} keeps its name \"{}\" from the previous run, but its profile no longer fits it.",
                segment.id, segment.name
            ),
        ));
    }
    if input.segments.continuity.contains("could not be applied") {
        warnings.push(Warning::new(
            UNSTABLE,
            format!(
                "Segment ids: {}. Compare the segments with the previous run's before approving.",
                input.segments.continuity
            ),
        ));
    }
    let mut from_totals: BTreeMap<u32, usize> = BTreeMap::new();
    for ((from, _), count) in moved {
        *from_totals.entry(*from).or_default() += count;
    }
    for segment in input
        .segments
        .segments
        .iter()
        .filter(|s| s.source == crate::segment::SOURCE_KMEANS)
    {
        let Some(total) = from_totals.get(&segment.id).filter(|t| **t > 0) else {
            continue;
        };
        let stayed = moved.get(&(segment.id, segment.id)).copied().unwrap_or(0);
        if (stayed as f64) < 0.5 * *total as f64 {
            warnings.push(Warning::new(
                UNSTABLE,
                format!(
                    "Only {stayed} of the {total} partners in segment {} at the previous run are still in it ({}): the segment keeps its id but not most of its members.",
                    segment.id,
                    percent(Some(stayed as f64 / *total as f64))
                ),
            ));
        }
    }
    for outcome in &input.evaluation.outcomes() {
        let unreachable: Vec<&PowerRow> = input
            .power
            .iter()
            .filter(|r| &r.outcome == outcome && !r.reachable)
            .collect();
        if let Some(first) = unreachable.first() {
            warnings.push(Warning::new(
                NOT_LEARNABLE,
                format!(
                    "In segment{} {}, a {} lift of {} per partner cannot be detected for every scheme at any holdout share up to 50 % (see \"Is the holdout large enough?\"): those segments are too small to learn this from one period.",
                    if unreachable.len() > 1 { "s" } else { "" },
                    join_words(
                        &unreachable
                            .iter()
                            .map(|r| r.segment_id.to_string())
                            .collect::<Vec<_>>(),
                        usize::MAX
                    ),
                    outcome,
                    number(Some(first.min_effect), 0),
                ),
            ));
        }
    }
    for row in input.drift.iter().filter(|r| r.warning) {
        warnings.push(Warning::new(
            DRIFT,
            format!(
                "The distribution of {} moved since the previous run (population stability index {:.2}, above {}).",
                row.feature, row.psi, input.drift_threshold
            ),
        ));
    }
    for warning in input.config_warnings {
        warnings.push(Warning::new(CONFIGURATION, warning.clone()));
    }
    if let Some(status) = input.unapproved_previous {
        warnings.push(Warning::new(
            UNAPPROVED_PREVIOUS,
            format!(
                "The previous run was never approved (its status is {status}): its proposed weights and holdout shares are taken as the ones this period's partners were drawn under. If other weights were in force, the randomisation check and the weight changes compare with the wrong ones."
            ),
        ));
    }
    if input.evaluation.n_without_stratum > 0 {
        warnings.push(Warning::new(
            MISSING_DATA,
            format!(
                "{} assigned partners had no stratum (no segment_id and not in the previous run) and were left out of the lift.",
                input.evaluation.n_without_stratum
            ),
        ));
    }
    warnings
}

/// The overview paragraph's facts.
fn overview(input: &ReportInput) -> minijinja::Value {
    let rules: Vec<String> = input
        .segments
        .segments
        .iter()
        .filter(|s| s.source.starts_with("rule:"))
        .map(|s| s.name.clone())
        .collect();
    let strata = input.evaluation.strata.map(|s| match s {
        StrataSource::Assignments => "assignments",
        StrataSource::PreviousRun => "previous_run",
        StrataSource::PostHoc => "post_hoc",
    });
    context! {
        partners => input.partners.ids.len(),
        segments => input.segments.segments.len(),
        k => input.selection.chosen,
        k_reason => input.selection.reason,
        rule_segments => rules.len(),
        rule_names => join_words(&rules, usize::MAX),
        features => input.partners.numeric.len(),
        quality => quality_words(input.selection),
        continuity => input.segments.continuity,
        strata => strata,
    }
}

/// A card's facts and charts for one segment.
fn segment_card(
    input: &ReportInput,
    info: &SegmentInfo,
    profile: &SegmentProfile,
    ranks: &[FeatureRank],
    evidence_outcome: Option<&str>,
) -> anyhow::Result<minijinja::Value> {
    let mix = sorted_mix(input.weights, profile.id);
    let (change, change_reason) = change_words(&mix);
    Ok(context! {
        id => profile.id,
        name => profile.name,
        name_reason => info.name_reason,
        source => source_words(&profile.source),
        n_partners => profile.n_partners,
        share_partners => percent(Some(profile.share_partners)),
        share_revenue => percent(profile.share_revenue),
        profile_chart => profile_chart(ranks)?,
        profile_words => profile_words(ranks),
        incentive => incentive_words(&mix),
        change => change,
        change_reason => change_reason,
        evidence => evidence_words(&input.evaluation.rows, evidence_outcome, profile.id),
    })
}

/// The weight-changes section: per segment, the before/after chart and the
/// reasons.
fn weight_changes(input: &ReportInput) -> anyhow::Result<Vec<minijinja::Value>> {
    let max = input
        .weights
        .iter()
        .flat_map(|w| [Some(w.weight), w.previous_weight])
        .flatten()
        .fold(0.1f64, f64::max);
    input
        .segments
        .segments
        .iter()
        .map(|segment| {
            let mut rows: Vec<&WeightRow> = input
                .weights
                .iter()
                .filter(|w| w.segment_id == segment.id)
                .collect();
            rows.sort_by(|a, b| a.scheme_id.cmp(&b.scheme_id));
            let bars: Vec<WeightBar> = rows
                .iter()
                .map(|r| WeightBar {
                    scheme_id: r.scheme_id.clone(),
                    previous: r.previous_weight,
                    next: r.weight,
                })
                .collect();
            Ok(context! {
                id => segment.id,
                name => segment.name,
                any_previous => bars.iter().any(|b| b.previous.is_some()),
                holdout => rows.first().map(|r| percent(Some(r.holdout_share))),
                chart => (!bars.is_empty()).then(|| weight_chart(&bars, max)).transpose()?,
                rows => rows.iter().map(|r| context! {
                    scheme_id => r.scheme_id,
                    weight => percent(Some(r.weight)),
                    previous_weight => percent(r.previous_weight),
                    change => r.previous_weight.map(|p| format!("{:+.1} pts", (r.weight - p) * 100.0)),
                    reason => r.reason,
                }).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The "what changes next period" section: each segment's move, segments
/// that are new or gone.
fn next_period(input: &ReportInput, moved: &BTreeMap<(u32, u32), usize>) -> minijinja::Value {
    let segments: Vec<minijinja::Value> = input
        .segments
        .segments
        .iter()
        .map(|segment| {
            let mix = sorted_mix(input.weights, segment.id);
            let (change, reason) = change_words(&mix);
            context! {
                id => segment.id,
                name => segment.name,
                change => change,
                reason => reason,
                lead => mix.first().map(|r| format!("{} ({})", r.scheme_id, weight_percent(r.weight))),
                holdout => mix.first().map(|r| percent(Some(r.holdout_share))),
            }
        })
        .collect();
    let changing = input
        .segments
        .segments
        .iter()
        .filter(|s| {
            input.weights.iter().any(|w| {
                w.segment_id == s.id
                    && w.previous_weight
                        .is_some_and(|p| (w.weight - p).abs() >= MOVE)
            })
        })
        .count();
    let current: BTreeSet<u32> = input.segments.segments.iter().map(|s| s.id).collect();
    let from: BTreeSet<u32> = moved.keys().map(|k| k.0).collect();
    let gone: Vec<String> = from
        .difference(&current)
        .map(|id| {
            let mut destinations: Vec<(u32, usize)> = moved
                .iter()
                .filter(|((f, _), _)| f == id)
                .map(|((_, to), n)| (*to, *n))
                .collect();
            destinations.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            format!(
                "Segment {id} of the previous run is gone: its partners are now in {}.",
                join_words(
                    &destinations
                        .iter()
                        .map(|(to, n)| format!("segment {to} ({n})"))
                        .collect::<Vec<_>>(),
                    4
                )
            )
        })
        .collect();
    let new: Vec<String> = if moved.is_empty() {
        Vec::new()
    } else {
        current
            .iter()
            .filter(|id| !from.contains(id))
            .map(|id| {
                format!("Segment {id} is new this run: its weights start from the initial weights.")
            })
            .collect()
    };
    let first_run = input.weights.iter().all(|w| w.previous_weight.is_none());
    context! {
        segments => segments,
        changing => changing,
        first_run => first_run,
        gone => gone,
        new => new,
    }
}

/// The template's context: everything the page shows, formatted.
fn context(input: &ReportInput) -> anyhow::Result<minijinja::Value> {
    let ranks = percentile_ranks(input.partners, input.profiles);
    let evidence_outcome: Option<String> = input
        .tune_outcome
        .map(String::from)
        .or_else(|| input.evaluation.outcomes().into_iter().next());
    let cards = input
        .profiles
        .iter()
        .zip(&input.segments.segments)
        .zip(&ranks)
        .map(|((profile, info), ranks)| {
            segment_card(input, info, profile, ranks, evidence_outcome.as_deref())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let segments: Vec<_> = input
        .profiles
        .iter()
        .map(|profile| context! { id => profile.id, name => profile.name })
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
    let moved = migration(input.segments);
    // Columns in id order, as the rows are.
    let mut to_ids: Vec<u32> = input.segments.segments.iter().map(|s| s.id).collect();
    to_ids.sort_unstable();
    let from_ids: BTreeSet<u32> = moved.keys().map(|k| k.0).collect();
    let migration_rows: Vec<_> = from_ids
        .iter()
        .map(|from| context! { from => from, counts => to_ids.iter().map(|to| moved.get(&(*from, *to)).copied().unwrap_or(0)).collect::<Vec<_>>() })
        .collect();
    Ok(context! {
        run => input.header,
        overview => overview(input),
        warnings => warnings(input, &moved),
        next_period => next_period(input, &moved),
        chart => segment_size_chart(&input.profiles.iter().map(|p| (format!("{} · {}", p.id, p.name), p.n_partners)).collect::<Vec<_>>())?,
        segments => segments,
        cards => cards,
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
            let mut by_stratum: BTreeMap<u32, (f64, bool, u64)> = BTreeMap::new();
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
        weight_changes => weight_changes(input)?,
        migration_to => to_ids,
        values => input.outcomes.iter().map(|o| context! {
            outcome => o.name,
            value => short(Some(o.value_per_unit)),
            margin => (o.value_per_unit - input.margin_rate).abs() < 1e-12,
        }).collect::<Vec<_>>(),
        margin_rate => input.margin_rate,
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
        evidence_outcome => evidence_outcome,
        fdr => input.fdr,
        holdout_percent => percent(Some(input.holdout_share)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::NumericColumn;

    fn weight_row(scheme: &str, previous: Option<f64>, weight: f64) -> WeightRow {
        WeightRow {
            target_period: "2026-Q4".into(),
            segment_id: 3,
            segment_name: "Steady".into(),
            scheme_id: scheme.into(),
            weight,
            previous_weight: previous,
            holdout_share: 0.1,
            reason: format!("reason for {scheme}"),
        }
    }

    /// A lift cell: estimated with the interval given, or not (`method`).
    fn lift_row(
        outcome: &str,
        segment_id: u32,
        scheme: &str,
        estimate: Option<(f64, f64, f64, bool)>,
        method: &str,
    ) -> LiftRow {
        LiftRow {
            outcome: outcome.into(),
            segment_id,
            scheme_id: scheme.into(),
            n_treated: 10,
            n_holdout: 10,
            lift: estimate.map(|e| e.0),
            lift_rel: None,
            se: None,
            ci_low: estimate.map(|e| e.1),
            ci_high: estimate.map(|e| e.2),
            p_value: None,
            q_value: None,
            significant: estimate.map(|e| e.3),
            mde: None,
            incremental_outcome: None,
            cost: 0.0,
            net: None,
            roi: None,
            method: method.into(),
            n_treated_missing_outcome: 0,
            covariate: "none".into(),
            se_unadjusted: None,
            boot_ci_low: None,
            boot_ci_high: None,
            mean_holdout: None,
            residual_variance_treated: None,
            residual_variance_holdout: None,
        }
    }

    #[test]
    fn cells_without_evidence_are_grouped_by_segment_and_merged_across_outcomes() {
        let mut rows = Vec::new();
        for outcome in ["revenue", "deals"] {
            rows.push(lift_row(outcome, 1, "a", None, "insufficient_n"));
            rows.push(lift_row(outcome, 1, "b", None, "insufficient_n"));
            rows.push(lift_row(outcome, 2, "a", None, "insufficient_n"));
            rows.push(lift_row(
                outcome,
                2,
                "b",
                Some((1.0, 0.5, 1.5, true)),
                "lin_hc2",
            ));
        }
        rows.push(lift_row("revenue", 3, "a", None, "no_holdout"));
        let found = insufficient_evidence(&rows);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].1, vec!["deals".to_string(), "revenue".to_string()]);
        assert_eq!(found[0].2, "segment 1 (every scheme) and segment 2 (a)");
        assert_eq!(found[1].0, "no held-out partners to compare with");
        assert_eq!(found[1].2, "segment 3 (a)");
    }

    #[test]
    fn the_evidence_names_the_best_significant_lift_else_says_why_not() {
        let rows = vec![
            lift_row(
                "revenue",
                1,
                "a",
                Some((500.0, 100.0, 900.0, true)),
                "lin_hc2",
            ),
            lift_row(
                "revenue",
                1,
                "b",
                Some((800.0, 200.0, 1400.0, false)),
                "lin_hc2",
            ),
            lift_row(
                "revenue",
                2,
                "a",
                Some((800.0, -200.0, 1800.0, false)),
                "lin_hc2",
            ),
            lift_row("revenue", 3, "a", None, "insufficient_n"),
        ];
        assert!(evidence_words(&rows, Some("revenue"), 1).starts_with("Best evidence: a raised revenue by +500 per treated partner (95 % interval +100 to +900)"));
        assert!(evidence_words(&rows, Some("revenue"), 2).contains("which includes zero"));
        assert!(evidence_words(&rows, Some("revenue"), 3)
            .starts_with("No lift of revenue could be estimated"));
        let only_b = &rows[1..2];
        assert!(evidence_words(only_b, Some("revenue"), 1)
            .contains("which excludes zero but does not hold up"));
    }

    #[test]
    fn chart_labels_use_as_few_digits_as_they_need() {
        assert_eq!(short(Some(1435.31)), "1435");
        assert_eq!(short(Some(0.25)), "0.25");
        assert_eq!(short(Some(3.0)), "3");
        assert_eq!(short(Some(12.34)), "12.3");
        assert_eq!(short(Some(-0.001)), "0");
        assert_eq!(short(None), "no values");
    }

    #[test]
    fn lists_read_as_words_and_count_the_rest() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(join_words(&items[..1], 3), "a");
        assert_eq!(join_words(&items[..3], 3), "a, b and c");
        assert_eq!(join_words(&items, 2), "a, b and 2 more");
        assert_eq!(join_words(&[], 2), "");
    }

    #[test]
    fn a_median_ranks_among_all_partners_with_ties_counted_half() {
        // Values 0, 0, 0, 1, 2, 3, 4, 5, 6, NaN: nine present.
        let values = vec![0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, f64::NAN];
        let partners = PartnersTable {
            ids: (0..values.len()).map(|i| i.to_string()).collect(),
            numeric: vec![NumericColumn {
                name: "certifications".into(),
                values,
            }],
            revenue: NumericColumn {
                name: "revenue".into(),
                values: vec![0.0; 10],
            },
            categorical: Vec::new(),
            files: Vec::new(),
        };
        let profile = |id, median| SegmentProfile {
            id,
            name: format!("Segment {id}"),
            source: "kmeans".into(),
            n_partners: 5,
            share_partners: 0.5,
            share_revenue: None,
            means: vec![median],
            medians: vec![median],
        };
        let ranks = percentile_ranks(
            &partners,
            &[
                profile(1, Some(0.0)),
                profile(2, Some(5.0)),
                profile(3, None),
            ],
        );
        // 0: none below, three equal, six above.
        assert_eq!(ranks[0][0].below, Some(0.0));
        assert!((ranks[0][0].above.expect("above") - 6.0 / 9.0).abs() < 1e-12);
        assert!((ranks[0][0].percentile.expect("rank") - 100.0 * 1.5 / 9.0).abs() < 1e-9);
        // 5: seven below, one equal, one above.
        assert!((ranks[1][0].percentile.expect("rank") - 100.0 * 7.5 / 9.0).abs() < 1e-9);
        assert_eq!(ranks[2][0].percentile, None);
        // The words never overstate: "lower than 66 %", the share strictly above.
        assert_eq!(
            profile_words(&ranks[0]),
            "Its typical partner is lower on certifications than 66 % of partners."
        );
    }

    #[test]
    fn a_mix_change_names_the_moves_and_the_largest_reason() {
        let rows = [
            weight_row("cert_bonus", Some(0.2), 0.4),
            weight_row("cosell_fund", Some(0.5), 0.3),
            weight_row("attach_bonus", Some(0.3), 0.295),
        ];
        let mix: Vec<&WeightRow> = rows.iter().collect();
        let (text, reason) = change_words(&mix);
        assert_eq!(
            text,
            "More cert_bonus (20 % → 40 %); less cosell_fund (50 % → 30 %)."
        );
        // Equal moves: the first scheme by name.
        assert_eq!(reason.as_deref(), Some("cert_bonus: reason for cert_bonus"));
        let steady = [weight_row("cert_bonus", Some(0.5), 0.505)];
        assert!(change_words(&steady.iter().collect::<Vec<_>>())
            .0
            .starts_with("The mix stays as it was"));
        let first = [weight_row("cert_bonus", None, 1.0)];
        assert!(change_words(&first.iter().collect::<Vec<_>>())
            .0
            .starts_with("These are its first weights"));
        let sorted = sorted_mix(&rows, 3);
        assert!(incentive_words(&sorted).starts_with("Lead with cert_bonus (40 % of the partners who get a scheme), then cosell_fund (30 %) and attach_bonus (30 %)."));
    }

    #[test]
    fn the_weight_chart_draws_previous_bars_only_when_there_are_some() {
        let bars = |previous: Option<f64>| {
            vec![
                WeightBar {
                    scheme_id: "a".into(),
                    previous,
                    next: 0.6,
                },
                WeightBar {
                    scheme_id: "b".into(),
                    previous,
                    next: 0.4,
                },
            ]
        };
        let grey = |svg: &str| svg.matches("fill=\"#8C959F\"").count();
        let blue = |svg: &str| svg.matches("fill=\"#0969DA\"").count();
        let before_after = weight_chart(&bars(Some(0.5)), 0.6).expect("chart");
        assert_eq!((grey(&before_after), blue(&before_after)), (2, 2));
        let first_run = weight_chart(&bars(None), 0.6).expect("chart");
        assert_eq!((grey(&first_run), blue(&first_run)), (0, 2));
        assert!(first_run.contains(">\na\n</text>") && first_run.contains("60 %"));
    }

    #[test]
    fn every_row_of_a_bar_chart_has_its_label() {
        let segments: Vec<(String, usize)> =
            (1..=9).map(|i| (format!("label-{i}"), i * 100)).collect();
        let svg = segment_size_chart(&segments).expect("chart");
        for (label, _) in &segments {
            assert!(svg.contains(label.as_str()), "{label} missing");
        }
    }

    #[test]
    fn the_page_lists_overrides_as_text_and_says_when_there_are_no_warnings() {
        let page = render_context(&minijinja::Value::from_serialize(serde_json::json!({
            "run": { "status": "approved", "target_period": "2026-Q4" },
            "overview": { "segments": 0, "rule_segments": 0 },
            "warnings": [],
            "approval": {
                "approved_by": "Ops",
                "approved_at": "2026-10-01T09:00:00Z",
                "overrides": [{ "text": "renamed segment 3 from \"A\" to \"<b>B</b>\"" }],
            },
        })))
        .expect("render");
        assert!(page.contains("No warnings"));
        assert!(page.contains("<ul id=\"overrides\"><li>renamed segment 3 from &quot;A&quot; to &quot;&lt;b&gt;B&lt;&#x2f;b&gt;&quot;</li></ul>"), "{page}");
        let proposed = render_context(&minijinja::Value::from_serialize(serde_json::json!({
            "run": { "status": "proposed" },
            "overview": { "segments": 0, "rule_segments": 0 },
            "warnings": [{ "kind": "Drift", "text": "moved" }],
        })))
        .expect("render");
        assert!(proposed.contains("Proposed, not approved"));
        assert!(proposed.contains("<strong>Drift:</strong> moved"));
        assert!(!proposed.contains("No warnings"));
    }
}
