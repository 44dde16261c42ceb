//! Walkthrough 03: how segtune measures the lift of each scheme in each
//! segment, whether its 95 % intervals can be trusted, and what the
//! pre-period revenue buys.
//!
//! Generates a seeded program and runs segtune on it (the forest plot of
//! revenue lift per segment and scheme), then repeats a smaller program over
//! ten generator seeds and compares every cell's interval with the
//! generator's hidden truth (coverage), and compares each revenue cell's
//! covariate-adjusted error with the unadjusted one (variance reduction).
//!
//! `cargo run -p segtune-notebooks --example 03_lift [-- --mode write|check|dry-run]`
//! writes `notebooks-equivalent/output/03_lift.md` and its charts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use plotters::prelude::*;
use rayon::prelude::*;
use segtune::evaluate::LiftRow;
use segtune_data::schema::{PARTNER_ID, SCHEME_ID, SEGMENT_ID};
use segtune_data::HOLDOUT;
use segtune_notebooks::coverage::{coverage_by_bucket, coverage_cells, CoverageCell};
use segtune_notebooks::{batches, grouped, table, Mode, Page};

/// Partners of the program whose lifts are plotted.
const PARTNERS: usize = 50_000;
/// Its generator seed.
const SEED: u64 = 0;
/// Generator seeds of the coverage runs on this page.
const COVERAGE_SEEDS: std::ops::Range<u64> = 0..10;
/// Generator seeds of the coverage test in CI.
const CI_COVERAGE_SEEDS: std::ops::Range<u64> = 0..40;
/// Partners of each coverage run.
const COVERAGE_PARTNERS: usize = 20_000;
/// k-means segments of each coverage run (fixed, so every seed has the same cells).
const COVERAGE_K: usize = 4;
/// The outcome with a pre-period covariate.
const REVENUE: &str = "revenue";
/// The coverage test's accepted range of coverage, per outcome.
const CI_BAND: (f64, f64) = (0.92, 0.975);
/// Partners per arm from which the CI check compares the error ratio with theory.
const LARGE_ARM: u64 = 1_000;

/// Chart colours.
const BLUE: RGBColor = RGBColor(9, 105, 218);
const ORANGE: RGBColor = RGBColor(207, 102, 0);
const GREEN: RGBColor = RGBColor(26, 127, 55);
const PURPLE: RGBColor = RGBColor(130, 80, 223);

/// A share as a percentage with one decimal.
fn percent(share: f64) -> String {
    format!("{:.1} %", share * 100.0)
}

/// The median of some values (NaN when there are none).
fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// Linear-interpolation quantile of some values (NaN when there are none).
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q * (sorted.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

/// Half-width of the range in which 95 % of experiments with `n` cells
/// would put the coverage of a perfect 95 % interval (normal approximation).
fn binomial_half_width(n: usize) -> f64 {
    1.96 * (0.95 * 0.05 / n.max(1) as f64).sqrt()
}

/// A named column of a batch, as text.
fn text_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> anyhow::Result<&'a arrow_array::StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| anyhow::anyhow!("no text column `{name}`"))
}

/// A named column of a batch, as numbers (`None` where null).
fn number_column(batch: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
    let column = batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<Float64Type>())
        .ok_or_else(|| anyhow::anyhow!("no number column `{name}`"))?;
    Ok((0..column.len())
        .map(|i| (!column.is_null(i)).then(|| column.value(i)))
        .collect())
}

/// One arm's outcome spread and its correlation with the covariate.
#[derive(Debug, Clone, Copy)]
struct ArmMoments {
    /// Partners with an outcome.
    n: f64,
    /// Sample variance of the outcome.
    variance: f64,
    /// Correlation of outcome and covariate (partners with both).
    rho: f64,
    /// The largest leverage of one partner in the arm's part of Lin's
    /// design (intercept and slope per arm): 1/m + (x - mean)^2 / Sxx.
    max_leverage: f64,
}

/// An arm's moments from its (covariate, outcome) pairs; `None` below two partners.
fn arm_moments(values: &[(Option<f64>, f64)]) -> Option<ArmMoments> {
    let n = values.len() as f64;
    if n < 2.0 {
        return None;
    }
    let mean_y = values.iter().map(|v| v.1).sum::<f64>() / n;
    let variance = values.iter().map(|v| (v.1 - mean_y).powi(2)).sum::<f64>() / (n - 1.0);
    let pairs: Vec<(f64, f64)> = values
        .iter()
        .filter_map(|v| v.0.map(|x| (x, v.1)))
        .collect();
    let m = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / m,
        pairs.iter().map(|p| p.1).sum::<f64>() / m,
    );
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = pairs.iter().map(|p| (p.1 - my).powi(2)).sum();
    let rho = if sxx > 0.0 && syy > 0.0 {
        sxy / (sxx * syy).sqrt()
    } else {
        0.0
    };
    let max_leverage = if sxx > 0.0 {
        pairs
            .iter()
            .map(|p| 1.0 / m + (p.0 - mx).powi(2) / sxx)
            .fold(0.0f64, f64::max)
    } else {
        1.0
    };
    Some(ArmMoments {
        n,
        variance,
        rho,
        max_leverage,
    })
}

/// The large-sample ratio of the adjusted to the unadjusted error:
/// each arm's variance shrinks by 1 - rho^2, so with equal rho in both arms
/// the ratio is sqrt(1 - rho^2).
fn predicted_ratio(treated: ArmMoments, holdout: ArmMoments) -> f64 {
    let share = |a: ArmMoments| a.variance / a.n;
    let adjusted =
        share(treated) * (1.0 - treated.rho.powi(2)) + share(holdout) * (1.0 - holdout.rho.powi(2));
    (adjusted / (share(treated) + share(holdout))).sqrt()
}

/// One revenue cell of the single program: its error ratio against theory.
struct Compared {
    /// Stratum.
    segment: u32,
    /// Scheme.
    scheme: String,
    /// The smaller arm's partners.
    n_per_arm: u64,
    /// Correlation of pre-period and current revenue: (treated, holdout).
    rho: (f64, f64),
    /// [`predicted_ratio`].
    predicted: f64,
    /// se / se_unadjusted as segtune reported them.
    actual: f64,
    /// The largest leverage of one partner, either arm.
    leverage: f64,
}

/// (covariate, outcome) pairs of each (stratum, arm).
type CellValues = BTreeMap<(u32, String), Vec<(Option<f64>, f64)>>;

/// Each (stratum, arm)'s (covariate, outcome) pairs in a run's inputs: the
/// stratum from the assignments when they carry it, else the run's segment.
fn cell_values(
    walkthrough: &segtune_notebooks::Walkthrough,
    outcome: &str,
    covariate: &str,
) -> anyhow::Result<CellValues> {
    let inputs = &walkthrough.settings.inputs;
    let (Some(assignments), Some(outcomes)) = (&inputs.assignments, &inputs.outcomes) else {
        anyhow::bail!("the run has no assignments or outcomes");
    };
    let mut segment_of: HashMap<String, u32> = HashMap::new();
    for batch in batches(&walkthrough.run_dir.join("segments.parquet"))? {
        let ids = text_column(&batch, PARTNER_ID)?;
        let segments = batch
            .column_by_name(SEGMENT_ID)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| anyhow::anyhow!("segments.parquet lacks {SEGMENT_ID}"))?;
        for row in 0..batch.num_rows() {
            segment_of.insert(ids.value(row).to_string(), segments.value(row));
        }
    }
    let mut arm_of: HashMap<String, (u32, String)> = HashMap::new();
    for batch in batches(assignments)? {
        let ids = text_column(&batch, PARTNER_ID)?;
        let schemes = text_column(&batch, SCHEME_ID)?;
        let strata = batch
            .column_by_name(SEGMENT_ID)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>());
        for row in 0..batch.num_rows() {
            let id = ids.value(row);
            let stratum = strata
                .filter(|s| !s.is_null(row))
                .map(|s| s.value(row))
                .or_else(|| segment_of.get(id).copied());
            if let Some(stratum) = stratum {
                arm_of.insert(id.to_string(), (stratum, schemes.value(row).to_string()));
            }
        }
    }
    let mut cells = CellValues::new();
    for batch in batches(outcomes)? {
        let ids = text_column(&batch, PARTNER_ID)?;
        let (y, x) = (
            number_column(&batch, outcome)?,
            number_column(&batch, covariate)?,
        );
        for row in 0..batch.num_rows() {
            if let (Some(arm), Some(y)) = (arm_of.get(ids.value(row)), y[row]) {
                cells.entry(arm.clone()).or_default().push((x[row], y));
            }
        }
    }
    Ok(cells)
}

/// The label of an axis position when it is (close to) a whole number.
fn label_at(labels: &[String], position: f64) -> String {
    let index = position.round();
    if (position - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    labels.get(index as usize).cloned().unwrap_or_default()
}

/// One interval of the forest plot.
struct ForestRow {
    scheme: String,
    lift: f64,
    low: f64,
    high: f64,
    significant: bool,
}

/// One segment's panel of the forest plot.
struct ForestPanel {
    title: String,
    rows: Vec<ForestRow>,
}

/// The forest plot: one panel per segment, each on its own scale.
fn forest_chart(panels: &[ForestPanel], fdr: f64) -> anyhow::Result<String> {
    let rows_per_panel = panels.iter().map(|p| p.rows.len()).max().unwrap_or(1);
    let panel_height = 70 + 24 * rows_per_panel as u32;
    let mut svg = String::new();
    {
        let root =
            SVGBackend::with_string(&mut svg, (820, 64 + panel_height * panels.len() as u32))
                .into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(64);
        top.draw(&Text::new(
            "Revenue lift per treated partner and 95 % interval, by segment (own scale per panel)",
            (14, 10),
            ("sans-serif", 17),
        ))?;
        top.draw(&PathElement::new(
            vec![(24, 44), (44, 44)],
            BLUE.stroke_width(2),
        ))?;
        top.draw(&Circle::new((34, 44), 4, BLUE.filled()))?;
        top.draw(&Text::new("not significant", (52, 38), ("sans-serif", 13)))?;
        top.draw(&PathElement::new(
            vec![(184, 44), (204, 44)],
            ORANGE.stroke_width(3),
        ))?;
        top.draw(&Rectangle::new([(190, 40), (198, 48)], ORANGE.filled()))?;
        top.draw(&Text::new(
            format!("significant (q <= {fdr:.2})"),
            (212, 38),
            ("sans-serif", 13),
        ))?;
        top.draw(&PathElement::new(
            vec![(420, 36), (420, 52)],
            BLACK.mix(0.6),
        ))?;
        top.draw(&Text::new("no lift", (428, 38), ("sans-serif", 13)))?;
        for (area, panel) in rest.split_evenly((panels.len(), 1)).iter().zip(panels) {
            let low = panel.rows.iter().map(|r| r.low).fold(0.0f64, f64::min);
            let high = panel.rows.iter().map(|r| r.high).fold(0.0f64, f64::max);
            let pad = ((high - low) * 0.06).max(1e-9);
            let n = panel.rows.len();
            let labels: Vec<String> = panel.rows.iter().rev().map(|r| r.scheme.clone()).collect();
            let mut chart = ChartBuilder::on(area)
                .margin_left(14)
                .margin_right(24)
                .margin_top(4)
                .margin_bottom(6)
                .caption(panel.title.clone(), ("sans-serif", 14))
                .x_label_area_size(24)
                .y_label_area_size(140)
                .build_cartesian_2d((low - pad)..(high + pad), -0.6..(n as f64 - 0.4))?;
            chart
                .configure_mesh()
                .light_line_style(BLACK.mix(0.04))
                .disable_y_mesh()
                .y_labels(n)
                .x_labels(7)
                .y_label_formatter(&|y| label_at(&labels, *y))
                .x_label_formatter(&|x| grouped(*x))
                .draw()?;
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -0.6), (0.0, n as f64 - 0.4)],
                BLACK.mix(0.6),
            )))?;
            for (i, row) in panel.rows.iter().enumerate() {
                let y = (n - 1 - i) as f64;
                if row.significant {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(row.low, y), (row.high, y)],
                        ORANGE.stroke_width(3),
                    )))?;
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((row.lift, y))
                            + Rectangle::new([(-4, -4), (4, 4)], ORANGE.filled()),
                    ))?;
                } else {
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(row.low, y), (row.high, y)],
                        BLUE.stroke_width(2),
                    )))?;
                    chart.draw_series(std::iter::once(Circle::new(
                        (row.lift, y),
                        4,
                        BLUE.filled(),
                    )))?;
                }
            }
        }
        root.present()?;
    }
    Ok(svg)
}

/// Coverage per bucket and outcome, with the 95 % target and the CI band.
fn coverage_chart(
    categories: &[String],
    series: &[(String, Vec<Option<f64>>)],
    band: (f64, f64),
) -> anyhow::Result<String> {
    let colours = [BLUE, ORANGE, PURPLE];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let lowest = series
            .iter()
            .flat_map(|(_, values)| values.iter().flatten().copied())
            .fold(band.0, f64::min);
        // Room below the lowest point for the legend.
        let y_low = ((1.0 - (1.0 - lowest) / 0.6) * 50.0).floor() / 50.0;
        let m = categories.len() as f64;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(
                "Share of 95 % intervals that hold the truth, by partners per arm",
                ("sans-serif", 17),
            )
            .x_label_area_size(34)
            .y_label_area_size(54)
            .build_cartesian_2d(-0.5..(m - 0.5), y_low..1.0)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .disable_x_mesh()
            .x_labels(categories.len())
            .x_label_formatter(&|x| label_at(categories, *x))
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .x_desc("partners in the smaller arm")
            .y_desc("coverage")
            .draw()?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(-0.5, band.0), (m - 0.5, band.1)],
                GREEN.mix(0.12).filled(),
            )))?
            .label(format!(
                "CI band {:.0} % to {:.1} %",
                band.0 * 100.0,
                band.1 * 100.0
            ))
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], GREEN.mix(0.25).filled())
            });
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, 0.95), (m - 0.5, 0.95)],
                GREEN.stroke_width(2),
            )))?
            .label("target 95 %")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN.stroke_width(2)));
        let width = 0.5;
        for (s, ((name, values), colour)) in series.iter().zip(colours.iter().cycle()).enumerate() {
            let offset = if series.len() > 1 {
                -width / 2.0 + width * s as f64 / (series.len() - 1) as f64
            } else {
                0.0
            };
            let colour = *colour;
            chart
                .draw_series(values.iter().enumerate().filter_map(|(i, v)| {
                    v.map(|v| Circle::new((i as f64 + offset, v), 5, colour.filled()))
                }))?
                .label(name.replace('_', " "))
                .legend(move |(x, y)| Circle::new((x + 9, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE)
            .position(SeriesLabelPosition::LowerLeft)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// Which kind of segment a coverage stratum is: on a first run segtune gives
/// the rule segments the first ids, in rule order, and k-means the rest.
fn stratum_group(segment_id: u32, rules: &[String]) -> usize {
    (segment_id as usize)
        .checked_sub(1)
        .filter(|i| *i < rules.len())
        .unwrap_or(rules.len())
}

/// The revenue error ratio of each coverage cell against its smaller arm.
fn ratio_chart(
    points: &[(f64, f64, usize)],
    groups: &[String],
    overall_median: f64,
) -> anyhow::Result<String> {
    let colours = [ORANGE, PURPLE, BLUE, GREEN];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_high = points.iter().map(|p| p.0).fold(0.0f64, f64::max) * 1.05;
        let y_high = points.iter().map(|p| p.1).fold(1.1f64, f64::max) + 0.05;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(
                "Revenue: adjusted error / unadjusted error, per cell",
                ("sans-serif", 17),
            )
            .x_label_area_size(36)
            .y_label_area_size(54)
            .build_cartesian_2d(0.0..x_high, 0.0..y_high)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .x_desc("partners in the smaller arm")
            .y_desc("se / se_unadjusted")
            .x_label_formatter(&|x| grouped(*x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .draw()?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 1.0), (x_high, 1.0)],
                BLACK.mix(0.5),
            )))?
            .label("no gain (1.0)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.5)));
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, overall_median), (x_high, overall_median)],
                GREEN.stroke_width(2),
            )))?
            .label(format!("median {overall_median:.3}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN.stroke_width(2)));
        for (g, (name, colour)) in groups.iter().zip(colours.iter().cycle()).enumerate() {
            let colour = *colour;
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.2 == g)
                        .map(|p| Circle::new((p.0, p.1), 3, colour.mix(0.8).filled())),
                )?
                .label(name.clone())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
        }
        chart
            .configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE)
            .position(SeriesLabelPosition::LowerRight)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// The revenue lift table of the single run.
fn lift_table(rows: &[&LiftRow], names: &BTreeMap<u32, String>) -> String {
    let number = |v: Option<f64>| v.map_or("–".to_string(), grouped);
    table(
        &[
            "segment",
            "scheme",
            "treated / holdout",
            "lift",
            "95 % interval",
            "q",
            "mde",
            "net",
            "ROI",
            "method (covariate)",
        ],
        &rows
            .iter()
            .map(|r| {
                let q = r.q_value.map_or("–".to_string(), |q| format!("{q:.3}"));
                vec![
                    format!(
                        "{} {}",
                        r.segment_id,
                        names.get(&r.segment_id).map_or("", String::as_str)
                    ),
                    r.scheme_id.clone(),
                    format!("{} / {}", r.n_treated, r.n_holdout),
                    number(r.lift),
                    match (r.ci_low, r.ci_high) {
                        (Some(low), Some(high)) => format!("{} to {}", grouped(low), grouped(high)),
                        _ => "–".to_string(),
                    },
                    if r.significant == Some(true) {
                        format!("**{q}**")
                    } else {
                        q
                    },
                    number(r.mde),
                    number(r.net),
                    r.roi.map_or("–".to_string(), |v| format!("{v:.2}")),
                    format!("{} ({})", r.method, r.covariate),
                ]
            })
            .collect::<Vec<_>>(),
    )
}

/// Section 2: the revenue lifts of one program, as a forest plot and a table.
fn lift_section(
    page: &mut Page,
    walkthrough: &segtune_notebooks::Walkthrough,
    names: &BTreeMap<u32, String>,
) -> anyhow::Result<String> {
    let settings = &walkthrough.settings;
    let fdr = settings.evaluation.fdr;
    let revenue: Vec<&LiftRow> = walkthrough
        .summary
        .lift
        .iter()
        .filter(|r| r.outcome == REVENUE)
        .collect();
    let estimated: Vec<&LiftRow> = revenue
        .iter()
        .copied()
        .filter(|r| r.lift.is_some())
        .collect();
    let name = |id: u32| names.get(&id).map_or("", String::as_str);
    let mut panels: Vec<ForestPanel> = Vec::new();
    for row in &estimated {
        let (Some(lift), Some(low), Some(high)) = (row.lift, row.ci_low, row.ci_high) else {
            continue;
        };
        let title = format!(
            "segment {} · {} ({} holdout partners)",
            row.segment_id,
            name(row.segment_id),
            grouped(row.n_holdout as f64)
        );
        if panels.last().is_none_or(|p| p.title != title) {
            panels.push(ForestPanel {
                title,
                rows: Vec::new(),
            });
        }
        if let Some(panel) = panels.last_mut() {
            panel.rows.push(ForestRow {
                scheme: row.scheme_id.clone(),
                lift,
                low,
                high,
                significant: row.significant == Some(true),
            });
        }
    }
    page.add("03_lift/forest.svg", forest_chart(&panels, fdr)?);

    let significant: Vec<String> = estimated
        .iter()
        .filter(|r| r.significant == Some(true))
        .map(|r| {
            format!(
                "{} in segment {} ({}: {} per partner, q = {:.3})",
                r.scheme_id,
                r.segment_id,
                name(r.segment_id),
                r.lift.map_or("–".to_string(), grouped),
                r.q_value.unwrap_or(f64::NAN)
            )
        })
        .collect();
    let above_zero = estimated
        .iter()
        .filter(|r| r.ci_low.is_some_and(|low| low > 0.0))
        .count();
    let methods: BTreeSet<String> = estimated
        .iter()
        .map(|r| format!("`{}` (covariate `{}`)", r.method, r.covariate))
        .collect();
    // Median interval width per segment: the widest and the narrowest.
    let mut widths: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for r in &estimated {
        if let (Some(low), Some(high)) = (r.ci_low, r.ci_high) {
            widths.entry(r.segment_id).or_default().push(high - low);
        }
    }
    let widths: Vec<(u32, f64)> = widths.into_iter().map(|(id, w)| (id, median(&w))).collect();
    let widest = widths.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    let narrowest = widths.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    let scale_sentence = match (widest, narrowest) {
        (Some(w), Some(n)) => format!(
            " Each panel has its own scale: a typical interval spans {} in segment {} ({}) but {} in segment {} ({}).",
            grouped(w.1),
            w.0,
            name(w.0),
            grouped(n.1),
            n.0,
            name(n.0)
        ),
        _ => String::new(),
    };
    let revenue_settings = settings.outcomes.iter().find(|o| o.name == REVENUE);
    let powered_sentence = match revenue_settings.and_then(|o| o.min_effect) {
        Some(min_effect) => format!(
            " The configuration's `min-effect` for revenue is {} per partner: {} of {} cells have an mde at or below it, \
             so only those could reliably detect a lift of that size.",
            grouped(min_effect),
            estimated
                .iter()
                .filter(|r| r.mde.is_some_and(|mde| mde <= min_effect))
                .count(),
            estimated.len()
        ),
        None => String::new(),
    };
    let not_estimated = revenue.len() - estimated.len();
    let not_estimated_sentence = if not_estimated > 0 {
        format!(" {not_estimated} cells had too few partners to estimate (`method` says why).")
    } else {
        String::new()
    };
    Ok(format!(
        "## One program: revenue lift by segment and scheme\n\n\
         segtune evaluated {period} of {partners} generated partners (seed {seed}). This is a first run, so the strata are the run's own \
         segments, decided after the outcomes, and every row is marked {methods}. In a running program the assignments \
         carry the segment at draw time and the method reads `lin_hc2`.{scale_sentence}\n\n\
         ![Revenue lift forest plot](03_lift/forest.svg)\n\n\
         {above_zero} of {n_est} intervals lie above zero, but after the false-discovery control {n_sig} cells are significant \
         (q ≤ {fdr}){sig_list}.{powered_sentence}{not_estimated_sentence}\n\n\
         {table}",
        period = settings.period,
        partners = grouped(PARTNERS as f64),
        seed = SEED,
        methods = methods.into_iter().collect::<Vec<_>>().join(", "),
        n_est = estimated.len(),
        n_sig = significant.len(),
        sig_list = if significant.is_empty() {
            String::new()
        } else {
            format!(": {}", significant.join("; "))
        },
        table = lift_table(&revenue, names),
    ))
}

/// What the coverage section found, for the summary and the variance section.
struct CoverageFindings {
    markdown: String,
    overall: Vec<(String, f64)>,
}

/// Coverage by bucket: (label, cells, covered share).
type Buckets = Vec<(String, usize, f64)>;

/// Section 3: every coverage cell's interval against its truth.
fn coverage_section(page: &mut Page, cells: &[CoverageCell]) -> anyhow::Result<CoverageFindings> {
    let mut outcomes: Vec<String> = Vec::new();
    for cell in cells {
        if !outcomes.contains(&cell.outcome) {
            outcomes.push(cell.outcome.clone());
        }
    }
    let of = |outcome: &str| -> Vec<CoverageCell> {
        cells
            .iter()
            .filter(|c| c.outcome == outcome)
            .cloned()
            .collect()
    };
    let strata_per_seed: BTreeSet<usize> = COVERAGE_SEEDS
        .map(|seed| {
            cells
                .iter()
                .filter(|c| c.seed == seed)
                .map(|c| c.segment_id)
                .collect::<BTreeSet<_>>()
                .len()
        })
        .collect();
    let schemes: BTreeSet<&str> = cells.iter().map(|c| c.scheme_id.as_str()).collect();
    let mut coverage_rows = Vec::new();
    let mut overall: Vec<(String, f64)> = Vec::new();
    for outcome in &outcomes {
        let cells = of(outcome);
        let covered = cells.iter().filter(|c| c.covered()).count();
        let share = covered as f64 / cells.len().max(1) as f64;
        let half = binomial_half_width(cells.len());
        overall.push((outcome.clone(), share));
        coverage_rows.push(vec![
            outcome.replace('_', " "),
            cells.len().to_string(),
            covered.to_string(),
            format!("**{}**", percent(share)),
            format!("{} to {}", percent(0.95 - half), percent(0.95 + half)),
            if (CI_BAND.0..=CI_BAND.1).contains(&share) {
                "inside".to_string()
            } else {
                "outside".to_string()
            },
        ]);
    }
    let by_bucket: Vec<(String, Buckets)> = outcomes
        .iter()
        .map(|o| (o.clone(), coverage_by_bucket(&of(o))))
        .collect();
    let mut buckets: Vec<String> = Vec::new();
    for (_, rows) in &by_bucket {
        for (label, _, _) in rows {
            if !buckets.contains(label) {
                buckets.push(label.clone());
            }
        }
    }
    let mut bucket_header = vec!["partners per arm".to_string()];
    bucket_header.extend(outcomes.iter().map(|o| o.replace('_', " ")));
    bucket_header.push("perfect 95 % would show".to_string());
    let bucket_rows: Vec<Vec<String>> = buckets
        .iter()
        .map(|bucket| {
            let mut row = vec![bucket.clone()];
            row.extend(by_bucket.iter().map(|(_, rows)| {
                rows.iter()
                    .find(|(label, _, _)| label == bucket)
                    .map_or("–".to_string(), |(_, n, share)| {
                        format!("{} of {n} cells", percent(*share))
                    })
            }));
            let fewest = by_bucket
                .iter()
                .filter_map(|(_, rows)| rows.iter().find(|r| &r.0 == bucket).map(|r| r.1))
                .min()
                .unwrap_or(0);
            let half = binomial_half_width(fewest);
            row.push(format!(
                "{} to {}",
                percent(0.95 - half),
                percent((0.95 + half).min(1.0))
            ));
            row
        })
        .collect();
    let mut categories = buckets.clone();
    categories.push("all cells".to_string());
    let series: Vec<(String, Vec<Option<f64>>)> = by_bucket
        .iter()
        .zip(&overall)
        .map(|((outcome, rows), (_, all))| {
            let mut values: Vec<Option<f64>> = buckets
                .iter()
                .map(|b| rows.iter().find(|r| &r.0 == b).map(|r| r.2))
                .collect();
            values.push(Some(*all));
            (outcome.clone(), values)
        })
        .collect();
    page.add(
        "03_lift/coverage.svg",
        coverage_chart(&categories, &series, CI_BAND)?,
    );
    let smallest_bucket = by_bucket
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|r| r.1))
        .min()
        .unwrap_or(0);
    let markdown = format!(
        "## Do the 95 % intervals hold the truth?\n\n\
         The generator knows each partner's true effect; segtune never sees it. For each generator seed {seed_first} to {seed_last} \
         we simulate one quarter of {partners} partners, run segtune with k = {k} ({strata} strata with the rule segments, \
         × {n_schemes} schemes; a first run, so strata post hoc as above) and compare each cell's interval with its truth: the mean true effect of the cell's treated partners. \
         A correct 95 % interval misses in about one cell in twenty.\n\n\
         {coverage_table}\n\
         *Perfect 95 % would show* is the range in which the coverage of an exact 95 % interval would fall in 95 % of experiments with \
         that many cells: inside it, the intervals are as good as this many cells can tell. The CI test \
         `notebooks-equivalent/tests/coverage.rs` runs seeds {ci_first} to {ci_last} ({ci_seeds} programs, {ci_factor} times the cells) \
         and fails unless every outcome's coverage is between {band_low} and {band_high}.\n\n\
         By partners in the smaller arm: the normal approximation behind the intervals is weakest in small cells, so that is where \
         under-coverage would show first. With as few as {smallest_bucket} cells in a bucket, a few points either way are noise: \
         the last column gives the range a perfect interval would show with that many cells.\n\n\
         ![Coverage by partners per arm](03_lift/coverage.svg)\n\n\
         {bucket_table}",
        seed_first = COVERAGE_SEEDS.start,
        seed_last = COVERAGE_SEEDS.end - 1,
        partners = grouped(COVERAGE_PARTNERS as f64),
        k = COVERAGE_K,
        strata = strata_per_seed
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" or "),
        n_schemes = schemes.len(),
        coverage_table = table(
            &[
                "outcome",
                "cells",
                "covered",
                "coverage",
                "perfect 95 % would show",
                "CI band",
            ],
            &coverage_rows
        ),
        ci_first = CI_COVERAGE_SEEDS.start,
        ci_last = CI_COVERAGE_SEEDS.end - 1,
        ci_seeds = CI_COVERAGE_SEEDS.end - CI_COVERAGE_SEEDS.start,
        ci_factor = (CI_COVERAGE_SEEDS.end - CI_COVERAGE_SEEDS.start)
            / (COVERAGE_SEEDS.end - COVERAGE_SEEDS.start),
        band_low = percent(CI_BAND.0),
        band_high = percent(CI_BAND.1),
        bucket_table = table(
            &bucket_header.iter().map(String::as_str).collect::<Vec<_>>(),
            &bucket_rows
        ),
    );
    Ok(CoverageFindings { markdown, overall })
}

/// What the variance section found, for the summary.
struct VarianceFindings {
    markdown: String,
    median_ratio: f64,
    median_variance_ratio: f64,
}

/// Section 4: the covariate-adjusted error against the unadjusted one, over
/// the coverage cells and, against theory, in the one program.
fn variance_section(
    page: &mut Page,
    cells: &[CoverageCell],
    walkthrough: &segtune_notebooks::Walkthrough,
    names: &BTreeMap<u32, String>,
) -> anyhow::Result<VarianceFindings> {
    let settings = &walkthrough.settings;
    let covariate = settings
        .outcomes
        .iter()
        .find(|o| o.name == REVENUE)
        .and_then(|o| o.covariate.clone())
        .ok_or_else(|| anyhow::anyhow!("`{REVENUE}` has no covariate in the configuration"))?;
    let rules: Vec<String> = settings.rules.iter().map(|r| r.name.clone()).collect();
    let mut groups: Vec<String> = settings
        .rules
        .iter()
        .map(|r| format!("{} (rule)", r.segment_name))
        .collect();
    groups.push("k-means segments".to_string());
    let points: Vec<(f64, f64, usize)> = cells
        .iter()
        .filter(|c| c.outcome == REVENUE && c.se_unadjusted > 0.0)
        .map(|c| {
            (
                c.n_per_arm as f64,
                c.se / c.se_unadjusted,
                stratum_group(c.segment_id, &rules),
            )
        })
        .collect();
    let ratios: Vec<f64> = points.iter().map(|p| p.1).collect();
    let median_ratio = median(&ratios);
    let median_variance_ratio = median(&ratios.iter().map(|r| r * r).collect::<Vec<_>>());
    page.add(
        "03_lift/se_ratio.svg",
        ratio_chart(&points, &groups, median_ratio)?,
    );
    let above_one = |values: &[f64]| values.iter().filter(|r| **r > 1.0).count();
    let group_rows: Vec<Vec<String>> = groups
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let of_group: Vec<f64> = points.iter().filter(|p| p.2 == g).map(|p| p.1).collect();
            let m = median(&of_group);
            vec![
                name.clone(),
                of_group.len().to_string(),
                format!("{m:.3}"),
                format!("{:.3}", m * m),
                above_one(&of_group).to_string(),
            ]
        })
        .chain(std::iter::once(vec![
            "all revenue cells".to_string(),
            ratios.len().to_string(),
            format!("**{median_ratio:.3}**"),
            format!("**{median_variance_ratio:.3}**"),
            above_one(&ratios).to_string(),
        ]))
        .collect();
    let largest_arm = cells
        .iter()
        .filter(|c| c.outcome == REVENUE)
        .map(|c| c.n_per_arm)
        .max()
        .unwrap_or(0);

    // The one program: each revenue cell's ratio against sqrt(1 - rho^2).
    let values = cell_values(walkthrough, REVENUE, &covariate)?;
    let moments = |segment: u32, arm: &str| {
        values
            .get(&(segment, arm.to_string()))
            .and_then(|v| arm_moments(v))
    };
    let mut compared: Vec<Compared> = Vec::new();
    for row in walkthrough
        .summary
        .lift
        .iter()
        .filter(|r| r.outcome == REVENUE)
    {
        let (Some(se), Some(unadjusted)) = (row.se, row.se_unadjusted) else {
            continue;
        };
        let (Some(treated), Some(holdout)) = (
            moments(row.segment_id, &row.scheme_id),
            moments(row.segment_id, HOLDOUT),
        ) else {
            continue;
        };
        if unadjusted > 0.0 {
            compared.push(Compared {
                segment: row.segment_id,
                scheme: row.scheme_id.clone(),
                n_per_arm: row.n_treated.min(row.n_holdout),
                rho: (treated.rho, holdout.rho),
                predicted: predicted_ratio(treated, holdout),
                actual: se / unadjusted,
                leverage: treated.max_leverage.max(holdout.max_leverage),
            });
        }
    }
    let segments: BTreeSet<u32> = compared.iter().map(|c| c.segment).collect();
    let theory_rows: Vec<Vec<String>> = segments
        .iter()
        .map(|segment| {
            let of: Vec<&Compared> = compared.iter().filter(|c| c.segment == *segment).collect();
            let rhos: Vec<f64> = of
                .iter()
                .map(|c| c.rho.0)
                .chain(of.first().map(|c| c.rho.1))
                .collect();
            let actual: Vec<f64> = of.iter().map(|c| c.actual).collect();
            vec![
                format!(
                    "{segment} {}",
                    names.get(segment).map_or("", String::as_str)
                ),
                of.len().to_string(),
                grouped(of.iter().map(|c| c.n_per_arm).min().unwrap_or(0) as f64),
                format!(
                    "{:.2} to {:.2}",
                    rhos.iter().copied().fold(f64::INFINITY, f64::min),
                    rhos.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                ),
                format!(
                    "{:.3}",
                    median(&of.iter().map(|c| c.predicted).collect::<Vec<_>>())
                ),
                format!("{:.3}", median(&actual)),
                format!(
                    "{:.3} to {:.3}",
                    actual.iter().copied().fold(f64::INFINITY, f64::min),
                    actual.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                ),
            ]
        })
        .collect();
    let large: Vec<&Compared> = compared
        .iter()
        .filter(|c| c.n_per_arm >= LARGE_ARM)
        .collect();
    let large_sentence = if large.is_empty() {
        format!(
            "No cell of this program has {} partners per arm.",
            grouped(LARGE_ARM as f64)
        )
    } else {
        let gap = |c: &Compared| (c.actual / c.predicted - 1.0).abs();
        let gaps: Vec<f64> = large.iter().map(|c| gap(c)).collect();
        let largest = large
            .iter()
            .copied()
            .max_by(|a, b| gap(a).total_cmp(&gap(b)));
        format!(
            "Here {} cells have at least {} partners per arm (segments {}): their ratio is off the prediction by {} \
             at the median and {} at most{}.",
            large.len(),
            grouped(LARGE_ARM as f64),
            large
                .iter()
                .map(|c| c.segment.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
            percent(median(&gaps)),
            percent(gaps.iter().copied().fold(0.0f64, f64::max)),
            largest.map_or(String::new(), |c| format!(
                " (segment {}, {}: predicted {:.3}, reported {:.3})",
                c.segment, c.scheme, c.predicted, c.actual
            )),
        )
    };
    let worse: Vec<&Compared> = compared.iter().filter(|c| c.actual > 1.0).collect();
    let worse_sentence = if worse.is_empty() {
        String::new()
    } else {
        format!(
            "\n\n{} cells come out above 1, where the adjustment cost a little precision instead of buying some:\n\n{}\n\
             Two things push the ratio up. A weak correlation leaves little to remove (the prediction is then close to 1). \
             And a partner whose pre-period revenue is far from everyone else's carries much of the fitted slope \
             (a high leverage h: the partner's own outcome makes up h of its fitted value); the HC2 error weighs its squared residual by 1 / (1 − leverage), \
             and the large-sample prediction does not hold for such a cell. The median largest leverage over all {} cells is {:.2}.",
            worse.len(),
            table(
                &[
                    "segment",
                    "scheme",
                    "smaller arm",
                    "ρ treated / holdout",
                    "predicted ratio",
                    "se ratio",
                    "largest leverage",
                ],
                &worse
                    .iter()
                    .map(|c| {
                        vec![
                            format!(
                                "{} {}",
                                c.segment,
                                names.get(&c.segment).map_or("", String::as_str)
                            ),
                            c.scheme.clone(),
                            grouped(c.n_per_arm as f64),
                            format!("{:.2} / {:.2}", c.rho.0, c.rho.1),
                            format!("{:.3}", c.predicted),
                            format!("{:.3}", c.actual),
                            format!("{:.2}", c.leverage),
                        ]
                    })
                    .collect::<Vec<_>>()
            ),
            compared.len(),
            median(&compared.iter().map(|c| c.leverage).collect::<Vec<_>>()),
        )
    };
    let markdown = format!(
        "## What the pre-period revenue buys\n\n\
         For every revenue cell segtune also reports `se_unadjusted`, Welch's error of the plain difference in means on the same \
         partners. Over the {n_ratio} revenue cells of the coverage runs, the ratio se / se_unadjusted has median **{median_ratio:.3}** \
         (quartiles {q1:.3} to {q3:.3}). Precision goes with the square: the median variance ratio is **{median_variance_ratio:.3}**, \
         so the adjusted estimate is as precise as a plain comparison on {inflation:.2} times as many partners. Put the other way, \
         for the precision a plain comparison reaches, the adjusted one needs {variance_pct} of the partners in each arm: \
         a holdout (and treated arms) {saved_pct} smaller, which is fewer partners kept away from incentives.\n\n\
         ![se / se_unadjusted per cell](03_lift/se_ratio.svg)\n\n\
         {group_table}\n\
         **Against theory.** In large cells the ratio approaches √(1 − ρ²), ρ the correlation between a partner's pre-period and \
         current revenue within the cell (with a different ρ in each arm, each arm's variance shrinks by its own 1 − ρ²). \
         The CI check `pipeline/tests/it/lift_checks.rs` compares the two, on a much larger generated program, for cells with at \
         least {large_arm} partners per arm, where that approximation is tight. The {coverage_partners}-partner runs above have at \
         most {largest_arm} per arm, so here is the {partners}-partner program of the forest plot, by segment \
         (median se ratio over its {n_compared} revenue cells: {program_median:.3}).\n\n\
         {theory_table}\n\
         How much a segment gains depends on the program: compare a rule segment's row here with its row for the coverage runs \
         above. {large_sentence}{worse_sentence}\n",
        n_ratio = ratios.len(),
        n_compared = compared.len(),
        program_median = median(&compared.iter().map(|c| c.actual).collect::<Vec<_>>()),
        q1 = quantile(&ratios, 0.25),
        q3 = quantile(&ratios, 0.75),
        inflation = 1.0 / median_variance_ratio,
        variance_pct = percent(median_variance_ratio),
        saved_pct = percent(1.0 - median_variance_ratio),
        group_table = table(
            &[
                "segments (coverage runs)",
                "cells",
                "median se ratio",
                "its square",
                "cells above 1",
            ],
            &group_rows
        ),
        large_arm = grouped(LARGE_ARM as f64),
        coverage_partners = grouped(COVERAGE_PARTNERS as f64),
        largest_arm = grouped(largest_arm as f64),
        partners = grouped(PARTNERS as f64),
        theory_table = table(
            &[
                "segment",
                "cells",
                "smallest arm",
                "ρ (arms)",
                "predicted ratio (median)",
                "se ratio (median)",
                "se ratio (range)",
            ],
            &theory_rows
        ),
    );
    Ok(VarianceFindings {
        markdown,
        median_ratio,
        median_variance_ratio,
    })
}

fn main() -> anyhow::Result<()> {
    let mode = Mode::from_args()?;
    let mut page = Page::default();

    // One program, segtune run on its last quarter.
    let walkthrough = segtune_notebooks::generate_and_run(PARTNERS, SEED)?;
    let settings = &walkthrough.settings;
    let names: BTreeMap<u32, String> = walkthrough
        .summary
        .segment_list
        .iter()
        .map(|s| (s.id, s.name.clone()))
        .collect();
    let lift = lift_section(&mut page, &walkthrough, &names)?;

    // Many smaller programs, every cell against the generator's truth.
    let cells: Vec<CoverageCell> = COVERAGE_SEEDS
        .into_par_iter()
        .map(|seed| coverage_cells(seed, COVERAGE_PARTNERS, COVERAGE_K))
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let coverage = coverage_section(&mut page, &cells)?;
    let variance = variance_section(&mut page, &cells, &walkthrough, &names)?;

    let revenue = walkthrough
        .summary
        .lift
        .iter()
        .filter(|r| r.outcome == REVENUE && r.lift.is_some());
    let fdr = settings.evaluation.fdr;
    let covariate = settings
        .outcomes
        .iter()
        .find(|o| o.name == REVENUE)
        .and_then(|o| o.covariate.clone())
        .unwrap_or_default();
    let margin = settings
        .outcomes
        .iter()
        .find(|o| o.name == REVENUE)
        .map_or(settings.margin_rate, |o| o.value_per_unit);
    let markdown = format!(
        "# 03 · Lift against the holdout, and can the intervals be trusted?\n\n\
         *Generated by `cargo run -p segtune-notebooks --example 03_lift`; CI checks it is current.*\n\n\
         **In short.** In one generated program of {partners} partners (seed {seed}), {n_sig} of {n_est} revenue cells \
         (segment × scheme) show a lift that survives the false-discovery control. Over {n_seeds} smaller generated programs, \
         segtune's 95 % intervals held the true lift in {coverage_summary} of cells. \
         Adjusting for the pre-period revenue made the median revenue error {ratio:.3} of the unadjusted one: \
         the same precision with {variance_pct} of the partners.\n\n\
         ## How lift is measured\n\n\
         - **Against the holdout of the same stratum.** A stratum is the segment a partner was in when its scheme was drawn. \
         In each stratum some partners get no incentive (the holdout). The lift of a scheme in a stratum, for one outcome, \
         is how much more the scheme's partners produced than the stratum's holdout, per treated partner, in outcome units. \
         Partners of other segments never enter the comparison, so a scheme is not credited with a segment's own strength.\n\
         - **Adjusted for last quarter.** Revenue has a pre-period column (`{covariate}`, the same partner's revenue a quarter earlier). \
         segtune fits Lin's regression on the cell's two arms, `y ~ T + Xc + T·Xc` (T = 1 for a treated partner, Xc the pre-period \
         revenue centred on the cell's mean); the coefficient of T is the lift. The draw was random, so the adjustment does not change \
         what is estimated; it removes the part of each partner's revenue that its own history predicts, and with it much of the noise. \
         A partner without history gets the mean, plus a missing-history indicator when each arm has at least two such partners. \
         Deal registrations and certifications have no pre-period column: their lift is the plain difference in means.\n\
         - **Errors and intervals.** The standard error is HC2 (robust to arms and partners with different spreads; without a covariate \
         it is exactly Welch's error). The 95 % interval is lift ± 1.96 × error.\n\
         - **Many cells at once.** With dozens of cells some look good by chance, so each outcome's p-values become \
         Benjamini–Hochberg q-values; a cell is *significant* when q ≤ {fdr} (among the cells called significant, on average at most \
         {fdr_pct} are false alarms).\n\
         - **What a cell can detect.** `mde` = (1.96 + 0.84) × error is the smallest true lift the cell would find at 5 % \
         (two-sided) with 80 % power. A cell whose mde is larger than any lift worth paying for cannot answer the question, whatever its estimate.\n\
         - **Money.** `net` = value per unit × lift × treated partners − incentive paid in the cell (revenue is valued at the margin \
         rate, {margin}); `ROI` = net / cost. Both use the point estimate: where the interval crosses zero, so could the net.\n\n\
         {lift}\n{coverage}\n{variance}",
        partners = grouped(PARTNERS as f64),
        seed = SEED,
        n_sig = walkthrough
            .summary
            .lift
            .iter()
            .filter(|r| r.outcome == REVENUE && r.significant == Some(true))
            .count(),
        n_est = revenue.count(),
        n_seeds = COVERAGE_SEEDS.end - COVERAGE_SEEDS.start,
        coverage_summary = coverage
            .overall
            .iter()
            .map(|(o, s)| format!("{} {}", o.replace('_', " "), percent(*s)))
            .collect::<Vec<_>>()
            .join(", "),
        ratio = variance.median_ratio,
        variance_pct = percent(variance.median_variance_ratio),
        fdr_pct = percent(fdr),
        lift = lift,
        coverage = coverage.markdown,
        variance = variance.markdown,
    );
    page.add("03_lift.md", markdown);
    page.finish(mode)
}
