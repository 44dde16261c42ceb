//! Walkthrough 04: does tuning pay? The closed loop of `segtune simulate`,
//! small enough for CI: a generated program runs period after period, each
//! period's outcomes generated for exactly the draw segtune proposed, and
//! three policies (uniform, segtune, a myopic oracle that knows the true
//! effects) are scored on the same partners by their true expected net value.
//! Then one segment's weights over the periods, against the truth.
//!
//! `cargo run -p segtune-notebooks --example 04_simulate [-- --mode write|check|dry-run]`
//! writes `notebooks-equivalent/output/04_simulate.md` and its charts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use plotters::prelude::*;
use segtune::simulate::{simulate, Simulation, SimulationParams};
use segtune_data::generator::{GeneratorParams, World, DEFAULT_PARTNERS, SCHEMES};
use segtune_models::tuning::{best_allocation, bounds, SchemeLimits};
use segtune_notebooks::coverage::segment_of;
use segtune_notebooks::{grouped, table, Mode, Page};

/// Partners per simulated program.
const PARTNERS: usize = 20_000;
/// Periods per program (the first is the generator's own draw).
const PERIODS: usize = 6;
/// Generator seeds 0 .. SEEDS.
const SEEDS: u64 = 3;
/// The first period (1-based) of the headline sum.
const FROM_PERIOD: usize = 4;
/// Appended to each period's generated configuration: k fixed, no bootstrap
/// stability resamples (the k sweep is what makes a run slow).
const EXTRA_CONFIG: &str = "[segments]\nk = 4\nbootstrap = 0\n";
/// The seed whose weights are followed in the last section.
const FOLLOWED_SEED: u64 = 0;

/// `segtune simulate`'s defaults (pipeline/src/main.rs): periods, seeds and
/// the first headline period; the partners are the generator's default.
const FULL_PERIODS: usize = 8;
/// See [`FULL_PERIODS`].
const FULL_SEEDS: u64 = 10;
/// See [`FULL_PERIODS`].
const FULL_FROM_PERIOD: usize = 4;
// The page says the headline starts where the full-size run's does.
const _: () = assert!(FROM_PERIOD == FULL_FROM_PERIOD);

/// The full-size target: mean share of the oracle's gain over seeds.
const TARGET_MEAN: f64 = 0.6;
/// The full-size target: share of the oracle's gain on every seed.
const TARGET_EVERY_SEED: f64 = 0.3;

/// The policies, in the order of every table and chart.
const POLICIES: [&str; 3] = ["uniform", "segtune", "oracle"];

/// Chart colours.
const GREY: RGBColor = RGBColor(140, 149, 159);
const BLUE: RGBColor = RGBColor(9, 105, 218);
const GREEN: RGBColor = RGBColor(26, 127, 55);
const ORANGE: RGBColor = RGBColor(207, 102, 0);
const PURPLE: RGBColor = RGBColor(130, 80, 223);
const RED: RGBColor = RGBColor(207, 34, 46);

/// A policy's colour.
fn policy_colour(policy: usize) -> RGBColor {
    [GREY, BLUE, GREEN][policy % 3]
}

/// Money per partner as segtune's reasons write it.
fn money(value: f64) -> String {
    if value.abs() >= 100.0 {
        grouped(value)
    } else {
        format!("{value:.2}")
    }
}

/// Rounded to cents. The simulator sums over a hash map, so its totals can
/// differ in the last bits from one process to the next; everything on the
/// page is computed from the rounded values.
fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// One policy in one period of one seed, rounded.
#[derive(Debug, Clone, Copy, Default)]
struct Score {
    partners: f64,
    revenue: f64,
    cost: f64,
    net: f64,
}

/// The simulation, rounded and indexed.
struct Results {
    /// Label of every period (1-based), the first included.
    labels: BTreeMap<usize, String>,
    /// (seed, period, policy) -> score.
    scores: BTreeMap<(u64, usize, usize), Score>,
}

/// One seed's headline: summed net value over the headline periods.
struct Headline {
    seed: u64,
    totals: [f64; 3],
    captured: f64,
}

impl Results {
    fn new(simulation: &Simulation, first_label: &str) -> anyhow::Result<Self> {
        let mut labels = BTreeMap::from([(1, first_label.to_string())]);
        let mut scores = BTreeMap::new();
        for row in &simulation.periods {
            let policy = POLICIES
                .iter()
                .position(|p| *p == row.policy)
                .ok_or_else(|| anyhow::anyhow!("unknown policy `{}`", row.policy))?;
            labels.insert(row.period, row.period_label.clone());
            scores.insert(
                (row.seed, row.period, policy),
                Score {
                    partners: row.partners as f64,
                    revenue: cents(row.incremental_revenue),
                    cost: cents(row.cost),
                    net: cents(row.net),
                },
            );
        }
        Ok(Self { labels, scores })
    }

    /// The scored periods (2 onwards).
    fn periods(&self) -> Vec<usize> {
        self.labels.keys().copied().filter(|p| *p >= 2).collect()
    }

    fn seeds(&self) -> Vec<u64> {
        let mut seeds: Vec<u64> = self.scores.keys().map(|k| k.0).collect();
        seeds.dedup();
        seeds
    }

    fn score(&self, seed: u64, period: usize, policy: usize) -> Score {
        self.scores
            .get(&(seed, period, policy))
            .copied()
            .unwrap_or_default()
    }

    /// Mean over seeds of one period and policy.
    fn mean(&self, period: usize, policy: usize) -> Score {
        let seeds = self.seeds();
        let n = seeds.len().max(1) as f64;
        let mut sum = Score::default();
        for seed in seeds {
            let s = self.score(seed, period, policy);
            sum.partners += s.partners;
            sum.revenue += s.revenue;
            sum.cost += s.cost;
            sum.net += s.net;
        }
        Score {
            partners: sum.partners / n,
            revenue: sum.revenue / n,
            cost: sum.cost / n,
            net: sum.net / n,
        }
    }

    /// Each seed's headline over periods `from` onwards.
    fn headlines(&self, from: usize) -> Vec<Headline> {
        self.seeds()
            .into_iter()
            .map(|seed| {
                let mut totals = [0.0; 3];
                for period in self.periods().into_iter().filter(|p| *p >= from) {
                    for (policy, total) in totals.iter_mut().enumerate() {
                        *total += self.score(seed, period, policy).net;
                    }
                }
                Headline {
                    seed,
                    totals,
                    captured: (totals[1] - totals[0]) / (totals[2] - totals[0]),
                }
            })
            .collect()
    }
}

/// The label of an axis position when it is (close to) a whole number.
fn label_at(labels: &BTreeMap<usize, String>, position: f64) -> String {
    let index = position.round();
    if (position - index).abs() > 1e-6 || index < 0.0 {
        return String::new();
    }
    labels.get(&(index as usize)).cloned().unwrap_or_default()
}

/// One line of a line chart.
struct Line {
    name: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
    width: u32,
}

/// A line chart over periods.
struct LineChart<'a> {
    title: &'a str,
    y_desc: &'a str,
    /// Tick labels at whole x positions.
    ticks: &'a BTreeMap<usize, String>,
    x_range: (f64, f64),
    y_range: (f64, f64),
    y_format: fn(f64) -> String,
    /// A shaded band of x: (from, to, legend).
    band: Option<(f64, f64, String)>,
    /// A dashed horizontal reference: (y, legend).
    reference: Option<(f64, String)>,
}

/// A legend entry drawn beside a chart.
enum Sample {
    Band,
    Dashed,
    Line(RGBColor, u32),
}

fn line_chart(spec: &LineChart, lines: &[Line]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(36);
        top.draw(&Text::new(spec.title, (16, 10), ("sans-serif", 17)))?;
        let (left, right) = rest.split_horizontally(690);
        let (x_low, x_high) = spec.x_range;
        let (y_low, y_high) = spec.y_range;
        let mut chart = ChartBuilder::on(&left)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(96)
            .build_cartesian_2d(x_low..x_high, y_low..y_high)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .disable_x_mesh()
            .x_labels(spec.ticks.len() * 2 + 1)
            .x_label_formatter(&|x| label_at(spec.ticks, *x))
            .y_label_formatter(&|y| (spec.y_format)(*y))
            .x_desc("period")
            .y_desc(spec.y_desc)
            .draw()?;
        let mut legend: Vec<(Sample, String)> = Vec::new();
        if let Some((from, to, name)) = &spec.band {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(*from, y_low), (*to, y_high)],
                BLUE.mix(0.07).filled(),
            )))?;
            legend.push((Sample::Band, name.clone()));
        }
        if y_low < 0.0 && y_high > 0.0 {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x_low, 0.0), (x_high, 0.0)],
                BLACK.mix(0.4),
            )))?;
        }
        if let Some((y, name)) = &spec.reference {
            chart.draw_series(DashedLineSeries::new(
                vec![(x_low, *y), (x_high, *y)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))?;
            legend.push((Sample::Dashed, name.clone()));
        }
        for line in lines {
            let colour = line.colour;
            chart.draw_series(LineSeries::new(
                line.points.clone(),
                colour.stroke_width(line.width),
            ))?;
            chart.draw_series(
                line.points
                    .iter()
                    .map(|p| Circle::new(*p, 3, colour.filled())),
            )?;
            legend.push((Sample::Line(colour, line.width), line.name.clone()));
        }
        // The legend beside the plot, so that it never hides a line.
        for (i, (sample, name)) in legend.iter().enumerate() {
            let y = 30 + 24 * i as i32;
            match sample {
                Sample::Band => right.draw(&Rectangle::new(
                    [(4, y - 6), (26, y + 6)],
                    BLUE.mix(0.15).filled(),
                ))?,
                Sample::Dashed => {
                    for (from, to) in [(4, 11), (16, 26)] {
                        right.draw(&PathElement::new(vec![(from, y), (to, y)], BLACK.mix(0.5)))?;
                    }
                }
                Sample::Line(colour, width) => {
                    right.draw(&PathElement::new(
                        vec![(4, y), (26, y)],
                        colour.stroke_width(*width),
                    ))?;
                    right.draw(&Circle::new((15, y), 3, colour.filled()))?;
                }
            }
            right.draw(&Text::new(name.clone(), (34, y - 7), ("sans-serif", 13)))?;
        }
        root.present()?;
    }
    Ok(svg)
}

/// Each seed's share of the oracle's gain, with the full-size targets.
fn captured_chart(
    headlines: &[Headline],
    mean: f64,
    from: usize,
    to: usize,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = headlines.len() as f64;
        let y_low = headlines
            .iter()
            .map(|h| h.captured)
            .fold(0.0f64, f64::min)
            .min(0.0);
        let y_high = headlines.iter().map(|h| h.captured).fold(1.0f64, f64::max) + 0.1;
        let labels: BTreeMap<usize, String> = headlines
            .iter()
            .enumerate()
            .map(|(i, h)| (i, format!("seed {}", h.seed)))
            .collect();
        let caption = format!(
            "Share of the oracle's gain over uniform that segtune captured, periods {from} to {to}"
        );
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(caption, ("sans-serif", 16))
            .x_label_area_size(34)
            .y_label_area_size(54)
            .build_cartesian_2d(-0.5..(n - 0.5), y_low..y_high)?;
        chart
            .configure_mesh()
            .light_line_style(BLACK.mix(0.04))
            .disable_x_mesh()
            .x_labels(headlines.len() * 2 + 1)
            .x_label_formatter(&|x| label_at(&labels, *x))
            .y_label_formatter(&|y| format!("{y:.1}"))
            .y_desc("(segtune - uniform) / (oracle - uniform)")
            .draw()?;
        chart.draw_series(headlines.iter().enumerate().map(|(i, h)| {
            let x = i as f64;
            Rectangle::new([(x - 0.3, 0.0), (x + 0.3, h.captured)], BLUE.filled())
        }))?;
        chart.draw_series(headlines.iter().enumerate().map(|(i, h)| {
            Text::new(
                format!("{:.2}", h.captured),
                (i as f64 - 0.08, h.captured + 0.06),
                ("sans-serif", 14),
            )
        }))?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(-0.5, mean), (n - 0.5, mean)],
                BLUE.stroke_width(2),
            )))?
            .label(format!("this page's mean, {mean:.2}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        for (value, colour, name) in [
            (TARGET_MEAN, GREEN, "full-size target for the mean"),
            (TARGET_EVERY_SEED, ORANGE, "full-size target for every seed"),
        ] {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(-0.5, value), (n - 0.5, value)],
                    8,
                    5,
                    colour.stroke_width(2),
                ))?
                .label(format!("{name}, {value:.1}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .border_style(BLACK.mix(0.3))
            .background_style(WHITE.mix(0.9))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

/// A JSON file.
fn json(path: &Path) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&fs_err::read_to_string(path)?)?)
}

/// A number at a JSON pointer.
fn number(value: &serde_json::Value, pointer: &str) -> anyhow::Result<f64> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| anyhow::anyhow!("no number at {pointer}"))
}

/// A text at a JSON pointer.
fn text(value: &serde_json::Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no text at {pointer}"))
}

/// One row of a run's `weights.json`.
struct WeightRow {
    segment: u32,
    segment_name: String,
    scheme: String,
    weight: f64,
    reason: String,
}

fn weight_rows(run: &Path) -> anyhow::Result<(String, Vec<WeightRow>)> {
    let value = json(&run.join("weights.json"))?;
    let rows = value
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("weights.json is not a list"))?;
    let mut target = String::new();
    let mut out = Vec::new();
    for row in rows {
        target = text(row, "/target_period")?;
        out.push(WeightRow {
            segment: number(row, "/segment_id")? as u32,
            segment_name: text(row, "/segment_name")?,
            scheme: text(row, "/scheme_id")?,
            weight: number(row, "/weight")?,
            reason: text(row, "/reason")?,
        });
    }
    Ok((target, out))
}

/// What the followed seed's runs say about its largest segment.
struct Followed {
    segment: u32,
    name: String,
    /// Mean partners per run.
    mean_size: f64,
    /// Period (1-based) -> segtune's weight per scheme ([`SCHEMES`] order).
    segtune: BTreeMap<usize, Vec<f64>>,
    /// Period -> the oracle's weight per scheme.
    oracle: BTreeMap<usize, Vec<f64>>,
    /// Period -> true net value per partner per scheme in the segment.
    truth: BTreeMap<usize, Vec<f64>>,
    /// Period -> reason per scheme (periods 2 onwards: the run before it).
    reasons: BTreeMap<usize, Vec<String>>,
    /// The last run's posterior per scheme: (mean, variance, probability best).
    posterior: Vec<Option<(f64, f64, f64)>>,
    /// The label of the period after the last (the last run's target).
    next_label: String,
}

/// The run settings the simulation used, from the first run's manifest.
struct Tuning {
    holdout: f64,
    floor: f64,
    max_step: f64,
    forgetting: f64,
    draws: f64,
    margin: f64,
    /// The k sweep a run makes when k is not fixed.
    k_range: (f64, f64),
}

fn tuning(run: &Path) -> anyhow::Result<Tuning> {
    let manifest = json(&run.join("manifest.json"))?;
    Ok(Tuning {
        holdout: number(&manifest, "/config/tuning/holdout_share")?,
        floor: number(&manifest, "/config/tuning/floor")?,
        max_step: number(&manifest, "/config/tuning/max_step")?,
        forgetting: number(&manifest, "/config/tuning/forgetting")?,
        draws: number(&manifest, "/config/tuning/draws")?,
        margin: number(&manifest, "/config/margin_rate")?,
        k_range: (
            number(&manifest, "/config/segments/k_min")?,
            number(&manifest, "/config/segments/k_max")?,
        ),
    })
}

/// Follows the largest segment (most partners summed over the runs) of one
/// seed: segtune's weights and reasons from each run folder, the truth from
/// the generator's expected values on the draw segtune proposed, and the
/// oracle's weights recomputed from that truth as the simulator does.
fn follow(
    runs: &Path,
    labels: &[String],
    generator: &segtune_data::generator::GeneratorValidParams,
    tuning: &Tuning,
) -> anyhow::Result<Followed> {
    let schemes: Vec<&str> = SCHEMES.iter().map(|s| s.id).collect();
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for label in labels {
        for (_, segment) in segment_of(&runs.join(label).join("segments.parquet"))? {
            *sizes.entry(segment).or_default() += 1;
        }
    }
    let (segment, total) = sizes
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(s, n)| (*s, *n))
        .ok_or_else(|| anyhow::anyhow!("no segments"))?;

    let mut name = String::new();
    let mut next_label = String::new();
    let mut segtune_weights =
        BTreeMap::from([(1, vec![1.0 / schemes.len() as f64; schemes.len()])]);
    let mut reasons = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        let (target, rows) = weight_rows(&runs.join(label))?;
        let mut weights = vec![0.0; schemes.len()];
        let mut why = vec![String::new(); schemes.len()];
        for row in rows.iter().filter(|r| r.segment == segment) {
            let s = schemes
                .iter()
                .position(|s| *s == row.scheme)
                .ok_or_else(|| anyhow::anyhow!("unknown scheme `{}`", row.scheme))?;
            weights[s] = row.weight;
            why[s] = row.reason.clone();
            name = row.segment_name.clone();
        }
        segtune_weights.insert(i + 2, weights);
        reasons.insert(i + 2, why);
        next_label = target;
    }

    // The truth and the oracle, period 2 onwards: the partners of the draw
    // the run before proposed, in the segment they were drawn in.
    let world = World::new(generator.clone());
    let mut truth = BTreeMap::new();
    let mut oracle = BTreeMap::from([(1, vec![1.0 / schemes.len() as f64; schemes.len()])]);
    let limits = vec![
        SchemeLimits {
            floor: tuning.floor,
            ..SchemeLimits::default()
        };
        schemes.len()
    ];
    for period in 2..=labels.len() {
        let draw: HashMap<String, u32> = segment_of(
            &runs
                .join(&labels[period - 2])
                .join("assignments_next.parquet"),
        )?
        .into_iter()
        .collect();
        let mut sum = vec![0.0; schemes.len()];
        let mut n = 0usize;
        for partner in world.expected_values(period - 1) {
            if draw.get(&partner.partner_id) == Some(&segment) {
                n += 1;
                for (s, (lift, cost)) in sum.iter_mut().zip(partner.values) {
                    *s += tuning.margin * lift - cost;
                }
            }
        }
        let means: Vec<f64> = sum.iter().map(|s| s / n.max(1) as f64).collect();
        let previous = oracle
            .get(&(period - 1))
            .cloned()
            .unwrap_or_else(|| vec![1.0 / schemes.len() as f64; schemes.len()]);
        let w = best_allocation(&means, &bounds(&limits, Some(&previous), tuning.max_step))?;
        oracle.insert(period, w);
        truth.insert(period, means);
    }

    let last = labels.last().ok_or_else(|| anyhow::anyhow!("no periods"))?;
    let posterior_json = json(&runs.join(last).join("posterior.json"))?;
    let mut posterior = vec![None; schemes.len()];
    for row in posterior_json
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("posterior.json is not a list"))?
    {
        if number(row, "/segment_id")? as u32 != segment {
            continue;
        }
        let scheme = text(row, "/scheme_id")?;
        if let Some(s) = schemes.iter().position(|s| *s == scheme) {
            posterior[s] = Some((
                number(row, "/mean")?,
                number(row, "/variance")?,
                number(row, "/probability_best").unwrap_or(0.0),
            ));
        }
    }
    Ok(Followed {
        segment,
        name,
        mean_size: total as f64 / labels.len() as f64,
        segtune: segtune_weights,
        oracle,
        truth,
        reasons,
        posterior,
        next_label,
    })
}

/// The index of the largest value (the first on ties).
fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, v)| {
            if *v > bv {
                (i, *v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The index of the smallest value (the first on ties).
fn argmin(values: &[f64]) -> usize {
    let negated: Vec<f64> = values.iter().map(|v| -v).collect();
    argmax(&negated)
}

/// The followed segment's section: chart, tables and quoted reasons.
fn weights_section(
    page: &mut Page,
    followed: &Followed,
    labels: &BTreeMap<usize, String>,
    tuning: &Tuning,
) -> anyhow::Result<String> {
    let schemes: Vec<&str> = SCHEMES.iter().map(|s| s.id).collect();
    let last_period = *followed
        .segtune
        .keys()
        .last()
        .ok_or_else(|| anyhow::anyhow!("no weights"))?;
    let mut ticks: BTreeMap<usize, String> = labels
        .iter()
        .map(|(p, l)| (*p, format!("{p} · {l}")))
        .collect();
    ticks.insert(
        last_period,
        format!("{last_period} · {}", followed.next_label),
    );

    // The truly best scheme: best in the most scored periods, then by mean.
    let scored: Vec<usize> = followed.truth.keys().copied().collect();
    let mean_truth: Vec<f64> = (0..schemes.len())
        .map(|s| {
            followed.truth.values().map(|v| v[s]).sum::<f64>() / followed.truth.len().max(1) as f64
        })
        .collect();
    let best = argmax(&mean_truth);
    let best_count = followed
        .truth
        .values()
        .filter(|v| argmax(v) == best)
        .count();
    let mut ranked: Vec<usize> = (0..schemes.len()).collect();
    ranked.sort_by(|a, b| mean_truth[*b].total_cmp(&mean_truth[*a]).then(a.cmp(b)));
    let runner_up = ranked[1];

    let colours = [BLUE, ORANGE, GREEN, PURPLE, RED];
    let lines: Vec<Line> = schemes
        .iter()
        .enumerate()
        .map(|(s, scheme)| Line {
            name: if s == best {
                format!("{scheme} (truly best)")
            } else {
                scheme.to_string()
            },
            colour: colours[s % colours.len()],
            points: followed
                .segtune
                .iter()
                .map(|(p, w)| (*p as f64, w[s]))
                .collect(),
            width: if s == best { 3 } else { 2 },
        })
        .collect();
    let y_high = followed
        .segtune
        .values()
        .flatten()
        .copied()
        .fold(0.5f64, f64::max)
        + 0.1;
    let title = format!(
        "segtune's weights in segment {} ({}), seed {FOLLOWED_SEED}",
        followed.segment, followed.name
    );
    page.add(
        "04_simulate/weights.svg",
        line_chart(
            &LineChart {
                title: &title,
                y_desc: "weight (share of non-held-out partners)",
                ticks: &ticks,
                x_range: (0.6, last_period as f64 + 0.4),
                y_range: (0.0, y_high),
                y_format: |y| format!("{y:.2}"),
                band: None,
                reference: Some((tuning.floor, format!("floor, {:.2}", tuning.floor))),
            },
            &lines,
        )?,
    );

    let mut header = vec!["period".to_string()];
    header.extend(schemes.iter().map(|s| format!("{s}: segtune / oracle")));
    header.push("truly best (net per partner)".to_string());
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let weight_rows: Vec<Vec<String>> = followed
        .segtune
        .iter()
        .map(|(period, w)| {
            let mut row = vec![ticks.get(period).cloned().unwrap_or_default()];
            for (s, weight) in w.iter().enumerate() {
                let oracle = followed
                    .oracle
                    .get(period)
                    .map_or("–".to_string(), |o| format!("{:.3}", o[s]));
                row.push(format!("{weight:.3} / {oracle}"));
            }
            row.push(followed.truth.get(period).map_or("–".to_string(), |t| {
                let b = argmax(t);
                format!("{} ({})", schemes[b], money(t[b]))
            }));
            row
        })
        .collect();

    let posterior_rows: Vec<Vec<String>> = (0..schemes.len())
        .map(|s| {
            let belief = followed.posterior[s].map_or("–".to_string(), |(mean, variance, _)| {
                let half = 1.959_963_984_540_054 * variance.max(0.0).sqrt();
                format!(
                    "{} ({} to {})",
                    money(mean),
                    money(mean - half),
                    money(mean + half)
                )
            });
            vec![
                schemes[s].to_string(),
                money(mean_truth[s]),
                belief,
                followed.posterior[s].map_or("–".to_string(), |p| format!("{:.2}", p.2)),
                format!("{:.3}", followed.segtune[&last_period][s]),
            ]
        })
        .collect();

    // Three reasons: the first proposal's for the scheme it raised most, and
    // the last proposal's for its highest and lowest weight.
    let first = 2;
    let uniform = 1.0 / schemes.len() as f64;
    let first_w = &followed.segtune[&first];
    let raised = argmax(&first_w.iter().map(|w| w - uniform).collect::<Vec<_>>());
    let last_w = &followed.segtune[&last_period];
    let (top, bottom) = (argmax(last_w), argmin(last_w));
    let quote = |period: usize, s: usize| -> String {
        format!(
            "- for period {} (the run of period {}), `{}`: *{}*",
            ticks.get(&period).map_or("", String::as_str),
            period - 1,
            schemes[s],
            followed.reasons[&period][s]
        )
    };
    let quotes = [
        quote(first, raised),
        quote(last_period, top),
        quote(last_period, bottom),
    ]
    .join("\n");

    let best_weight_at = |period: usize| followed.segtune[&period][best];
    // The first proposal has no previous weights, so the max step does not
    // bind it; the oracle starts from equal weights.
    let jumps: Vec<f64> = first_w.iter().map(|w| (w - uniform).abs()).collect();
    let jumped = argmax(&jumps);
    let first_step = if jumps[jumped] > tuning.max_step + 1e-9 {
        let ahead = if first_w[best] > followed.oracle[&first][best] + 1e-9 {
            format!(
                " Here segtune put {:.3} on `{}` in period {first}, the oracle {:.3}.",
                first_w[best], schemes[best], followed.oracle[&first][best]
            )
        } else {
            String::new()
        };
        format!(
            "\n\nsegtune's first proposal (for period {first}) moved `{}` by {:.3} from equal weights, more than the max step of \
             {:.2}: the max step limits the change from the previous run's weights, and the first run has none (the generator's \
             draw was not segtune's proposal). The oracle starts from equal weights and moves at most {:.2} a period, so in the \
             first periods segtune can be ahead of it.{ahead}",
            schemes[jumped], jumps[jumped], tuning.max_step, tuning.max_step
        )
    } else {
        String::new()
    };
    let at_floor = followed.segtune.values().any(|w| {
        w.iter()
            .filter(|v| (**v - tuning.floor).abs() < 1e-9)
            .count()
            >= 2
    });
    let overlap = if at_floor {
        " Lines at the floor lie on top of each other."
    } else {
        ""
    };
    let oracle_last = scored.last().copied().unwrap_or(2);
    Ok(format!(
        "## How segtune's weights moved in one segment\n\n\
         Seed {seed}'s largest segment over the {runs} runs is segment {segment}, *{name}* ({size} partners per period on average). \
         Each run folder (`<dir>/seed-{seed}/runs/<period>/`) holds the weights that run proposed for the next period in \
         `weights.json` (and `weights.parquet`), each with its reason, and the posterior behind them in `posterior.json`. \
         Period 1 is the generator's own draw, {uniform:.2} for each scheme.\n\n\
         In truth, `{best_scheme}` is the best scheme in this segment in {best_count} of the {n_scored} scored periods, \
         at {best_value} net per partner on average, ahead of `{runner_up}` at {runner_value}. segtune's weight on it went \
         from {uniform:.2} in period 1 to {w_scored:.3} in period {oracle_last} and it proposes {w_next:.3} for period {last_period}; \
         the oracle, which knows the truth and is held to the same floor and max step, had {oracle_weight:.3} in period {oracle_last}.\
         {first_step}\n\n\
         ![segtune's weights by period](04_simulate/weights.svg)\n\n\
         The weight of period {last_period} is the last run's proposal for the quarter after the simulation.{overlap}\n\n\
         Weights by period (segtune's, then the oracle's; each is the share of the segment's non-held-out partners drawn into the \
         scheme; the last column is the truth the oracle used, which segtune never sees):\n\n{weights_table}\n\
         What segtune believed after its last run (period {last_run}, proposing period {last_period}) against the truth: the posterior \
         mean of net value per treated partner with its 95 % interval, and the probability that each scheme is the best, which is the \
         tuner's target before the floor and the max step are applied.\n\n{posterior_table}\n\
         The reasons segtune wrote, quoted from `weights.json`:\n\n{quotes}\n",
        seed = FOLLOWED_SEED,
        runs = followed.segtune.len() - 1,
        segment = followed.segment,
        name = followed.name,
        size = grouped(followed.mean_size),
        best_scheme = schemes[best],
        n_scored = scored.len(),
        best_value = money(mean_truth[best]),
        runner_up = schemes[runner_up],
        runner_value = money(mean_truth[runner_up]),
        w_scored = best_weight_at(oracle_last),
        w_next = best_weight_at(last_period),
        oracle_weight = followed.oracle[&oracle_last][best],
        last_run = last_period - 1,
        weights_table = table(&header_refs, &weight_rows),
        posterior_table = table(
            &[
                "scheme",
                "true net per partner (mean of scored periods)",
                "segtune's posterior mean (95 % interval)",
                "probability best",
                "weight proposed",
            ],
            &posterior_rows
        ),
    ))
}

fn main() -> anyhow::Result<()> {
    let mode = Mode::from_args()?;
    let mut page = Page::default();

    // The closed loop, in-process, into a temporary folder.
    let work = tempfile::tempdir()?;
    let params = SimulationParams {
        partners: PARTNERS,
        periods: PERIODS,
        seeds: SEEDS,
        from_period: FROM_PERIOD,
        extra_config: EXTRA_CONFIG.to_string(),
        // No change of the truth mid-simulation.
        shock_period: None,
    };
    let simulation = simulate(&params, work.path())?;
    let generator = GeneratorParams::new()
        .with_partners(PARTNERS)
        .with_periods(PERIODS)
        .with_seed(FOLLOWED_SEED)
        .check()?;
    let first_label = generator
        .periods
        .first()
        .ok_or_else(|| anyhow::anyhow!("no periods"))?
        .clone();
    let results = Results::new(&simulation, &first_label)?;
    let periods = results.periods();
    let headlines = results.headlines(FROM_PERIOD);
    // The page's headline agrees with the simulator's own.
    for (mine, theirs) in headlines.iter().zip(&simulation.seeds) {
        anyhow::ensure!(
            mine.seed == theirs.seed && (mine.captured - theirs.captured).abs() < 1e-6,
            "seed {}: captured {} here, {} in the simulation",
            mine.seed,
            mine.captured,
            theirs.captured
        );
    }
    let mean_captured = headlines.iter().map(|h| h.captured).sum::<f64>() / headlines.len() as f64;
    let min_captured = headlines
        .iter()
        .map(|h| h.captured)
        .fold(f64::INFINITY, f64::min);
    let runs = work.path().join(format!("seed-{FOLLOWED_SEED}/runs"));
    let tuning = tuning(&runs.join(&first_label))?;

    // (a) Net value per period per policy.
    let ticks: BTreeMap<usize, String> = results
        .labels
        .iter()
        .filter(|(p, _)| **p >= 2)
        .map(|(p, l)| (*p, format!("{p} · {l}")))
        .collect();
    let last = *periods
        .last()
        .ok_or_else(|| anyhow::anyhow!("no scored periods"))?;
    let band = Some((
        FROM_PERIOD as f64 - 0.5,
        last as f64 + 0.4,
        format!("headline periods {FROM_PERIOD} to {last}"),
    ));
    let net_lines: Vec<Line> = POLICIES
        .iter()
        .enumerate()
        .map(|(policy, name)| Line {
            name: name.to_string(),
            colour: policy_colour(policy),
            points: periods
                .iter()
                .map(|p| (*p as f64, results.mean(*p, policy).net))
                .collect(),
            width: 2,
        })
        .collect();
    let (net_low, net_high) = net_lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold((0.0f64, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    page.add(
        "04_simulate/net_by_period.svg",
        line_chart(
            &LineChart {
                title: "True expected net value per period, mean over seeds",
                y_desc: "net value (margin x revenue lift - cost)",
                ticks: &ticks,
                x_range: (1.6, last as f64 + 0.4),
                y_range: (net_low, net_high * 1.08),
                y_format: grouped,
                band: band.clone(),
                reference: None,
            },
            &net_lines,
        )?,
    );

    // (b) Cumulative gain over uniform.
    let cumulative = |policy: usize| -> Vec<(f64, f64)> {
        let mut total = 0.0;
        let mut out = vec![(1.0, 0.0)];
        for p in &periods {
            total += results.mean(*p, policy).net - results.mean(*p, 0).net;
            out.push((*p as f64, total));
        }
        out
    };
    let gain_lines: Vec<Line> = [(1, "segtune"), (2, "oracle")]
        .iter()
        .map(|(policy, name)| Line {
            name: format!("{name} - uniform"),
            colour: policy_colour(*policy),
            points: cumulative(*policy),
            width: 2,
        })
        .collect();
    let gain_high = gain_lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let gain_low = gain_lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::min);
    let mut cumulative_ticks = ticks.clone();
    cumulative_ticks.insert(1, format!("1 · {first_label}"));
    page.add(
        "04_simulate/cumulative_gain.svg",
        line_chart(
            &LineChart {
                title: "Cumulative net value above the uniform program, mean over seeds",
                y_desc: "cumulative gain over uniform",
                ticks: &cumulative_ticks,
                x_range: (0.6, last as f64 + 0.4),
                y_range: (gain_low.min(0.0) - 0.04 * gain_high, gain_high * 1.12),
                y_format: grouped,
                band,
                reference: None,
            },
            &gain_lines,
        )?,
    );

    // (c) Each seed's captured share.
    page.add(
        "04_simulate/captured.svg",
        captured_chart(&headlines, mean_captured, FROM_PERIOD, last)?,
    );

    // The per-period table, mean over seeds.
    let period_rows: Vec<Vec<String>> = periods
        .iter()
        .flat_map(|p| {
            let uniform = results.mean(*p, 0);
            let oracle = results.mean(*p, 2);
            let results = &results;
            POLICIES.iter().enumerate().map(move |(policy, name)| {
                let s = results.mean(*p, policy);
                let roi = if s.cost != 0.0 {
                    format!("{:.2}", s.net / s.cost)
                } else {
                    "–".to_string()
                };
                let (gain, share) = match policy {
                    0 => ("–".to_string(), "–".to_string()),
                    1 => (
                        grouped(s.net - uniform.net),
                        format!("{:.2}", (s.net - uniform.net) / (oracle.net - uniform.net)),
                    ),
                    _ => (grouped(s.net - uniform.net), "–".to_string()),
                };
                vec![
                    format!("{p} · {}", results.labels[p]),
                    grouped(s.partners),
                    name.to_string(),
                    grouped(s.revenue),
                    grouped(s.cost),
                    grouped(s.net),
                    roi,
                    gain,
                    share,
                ]
            })
        })
        .collect();
    let period_table = table(
        &[
            "period",
            "partners in the draw",
            "policy",
            "incremental revenue",
            "cost",
            "net",
            "ROI",
            "net − uniform",
            "segtune's share of the oracle's gain",
        ],
        &period_rows,
    );

    // The per-seed headline.
    let mut seed_rows: Vec<Vec<String>> = headlines
        .iter()
        .map(|h| {
            vec![
                h.seed.to_string(),
                grouped(h.totals[0]),
                grouped(h.totals[1]),
                grouped(h.totals[2]),
                grouped(h.totals[1] - h.totals[0]),
                grouped(h.totals[2] - h.totals[0]),
                format!("**{:.2}**", h.captured),
            ]
        })
        .collect();
    let mean_total =
        |i: usize| headlines.iter().map(|h| h.totals[i]).sum::<f64>() / headlines.len() as f64;
    seed_rows.push(vec![
        "mean".to_string(),
        grouped(mean_total(0)),
        grouped(mean_total(1)),
        grouped(mean_total(2)),
        grouped(mean_total(1) - mean_total(0)),
        grouped(mean_total(2) - mean_total(0)),
        format!("**{mean_captured:.2}** (mean of the shares)"),
    ]);
    let seed_table = table(
        &[
            "seed",
            "uniform",
            "segtune",
            "oracle",
            "segtune − uniform",
            "oracle − uniform",
            "captured",
        ],
        &seed_rows,
    );

    // Over every scored period, for the summary.
    let all_total =
        |policy: usize| -> f64 { periods.iter().map(|p| results.mean(*p, policy).net).sum() };
    let shares: Vec<String> = periods
        .iter()
        .map(|p| {
            let (u, g, o) = (
                results.mean(*p, 0).net,
                results.mean(*p, 1).net,
                results.mean(*p, 2).net,
            );
            format!("{:.2}", (g - u) / (o - u))
        })
        .collect();

    // How one segment's weights moved.
    let labels: Vec<String> = generator.periods.clone();
    let followed = follow(&runs, &labels, &generator, &tuning)?;
    let weights = weights_section(&mut page, &followed, &results.labels, &tuning)?;

    let markdown = format!(
        "# 04 · Does tuning pay? The closed loop\n\n\
         *Generated by `cargo run -p segtune-notebooks --example 04_simulate`; CI checks it is current.*\n\n\
         **In short.** In {seeds} generated programs of {partners} partners over {periods} quarters, segtune's weights earned \
         {segtune_gain} more true expected net value per program than equal weights over periods 2 to {last} \
         (mean over seeds), where an oracle that knows the true effects, held to the same rules, earned {oracle_gain} more. \
         Over the headline periods {from} to {last}, segtune captured **{mean_captured:.2}** of the oracle's gain on the mean over seeds \
         (lowest seed {min_captured:.2}). Period by period, from {first_period} to {last}, the share of the mean gain was {shares}. \
         This is a small run, sized for CI; the full-size result is in `bench/RESULTS.md`.\n\n\
         ## The closed loop\n\n\
         `segtune simulate` (`segtune::simulate::simulate`) runs, for each seed, a generated program quarter after quarter:\n\n\
         1. **Period 1** is the generator's own draw: {holdout_pct} of partners held out, the rest spread over the {n_schemes} schemes \
         at equal weights. segtune evaluates it (segments, lift against the holdout of the same segment) and proposes weights and \
         the draw of each partner for period 2.\n\
         2. **Each later period**, the generator computes the outcomes for exactly the draw segtune proposed, with common random numbers: \
         the same partners, the same noise, only the schemes differ from what the generator would have drawn itself. segtune runs on \
         those outcomes with its previous run (so segment ids and the posterior carry over) and proposes the next period.\n\n\
         Each scored period (2 to {last}), three policies are compared on the same partners, the partners of the draw, in the segments \
         segtune drew them in:\n\n\
         - **uniform**: equal weights in every segment, the program without segtune;\n\
         - **segtune**: the weights segtune proposed for that period;\n\
         - **oracle**: on segtune's own segments, the weights that maximise the true expected net value of the period under the same \
         holdout share ({holdout_pct}), floor ({floor:.2} per scheme) and max step ({max_step:.2} per period, from the oracle's own \
         previous weights): the best any tuner could do with these segments and rules, one period at a time (myopic).\n\n\
         The score is the **true expected** net value, not a realised one: for each partner of the draw, the chance of not being held \
         out (1 − {holdout_pct}) times the sum over schemes of the scheme's weight times (margin × the generator's expected revenue \
         lift for that partner − the expected incentive cost), margin {margin}. The outcome noise \
         and the luck of the draw are left out, so a policy is not rewarded for a lucky quarter. segtune itself only ever sees the \
         realised outcomes of its draw. The **headline** of a seed is (segtune − uniform) / (oracle − uniform) on the value summed over \
         periods {from} to {last}: the share of the attainable gain segtune captures. Like the full-size run's, it starts at \
         period {full_from}, after a few periods of evidence.\n\n\
         segtune's tuner in one paragraph (`models/src/tuning.rs`): for each segment and scheme a normal posterior of net value per \
         treated partner, whose prior is last period's posterior with its variance divided by the forgetting factor ({forgetting}), \
         so old evidence fades; a segment without a posterior yet starts from the scheme's distribution across segments (partial \
         pooling). The target weights are each scheme's probability of being the segment's best ({draws} seeded draws), projected \
         onto the floor, caps, pins and the max step. The module's documentation has the details.\n\n\
         **This run:** {partners} partners, {periods} periods ({first_label} to {last_label}), seeds 0 to {last_seed}, \
         headline periods {from} to {last}, in-process (`segtune::simulate::simulate`) into a temporary folder. To keep the page \
         under a minute and a half in CI on two cores, each period's generated configuration gets `[segments] k = 4, bootstrap = 0` \
         appended: four k-means segments (plus the two rule segments, new and dormant partners) and no bootstrap stability \
         resamples, instead of the sweep of k from {k_min} to {k_max} with stability resamples that `segtune simulate` runs.\n\n\
         ## Net value per period\n\n\
         ![Net value per period per policy](04_simulate/net_by_period.svg)\n\n\
         Means over the {seeds} seeds; ROI is net / cost of the means. \"Partners in the draw\" counts every partner drawn, the \
         holdout included; each counts in the values with its chance of not being held out.\n\n{period_table}\n\
         ## The gain over uniform, period after period\n\n\
         ![Cumulative gain over uniform](04_simulate/cumulative_gain.svg)\n\n\
         Summed over periods 2 to {last}, segtune is {segtune_gain} above uniform and the oracle {oracle_gain} (mean over seeds), \
         on a uniform program worth {uniform_total}.\n\n\
         ## Per seed: the headline\n\n\
         Net value summed over periods {from} to {last}, and segtune's share of the oracle's gain:\n\n\
         ![Captured share per seed](04_simulate/captured.svg)\n\n{seed_table}\n\
         {weights}\n\
         ## The full-size result\n\n\
         This page is a small version, sized for CI: with {partners} partners each segment's lift is noisier, so the tuner learns \
         more slowly, and {seeds} seeds say little about the spread. Its numbers are not an estimate of the full-size ones. \
         The full-size result is recorded in **`bench/RESULTS.md`**, produced by `segtune simulate` with its defaults: \
         {full_partners} partners, {full_periods} periods, seeds 0 to {full_last_seed}, headline over periods {full_from} to \
         {full_periods} (the command writes `simulation.json` with every seed, period and policy, and `simulation.svg`). \
         The target there is (segtune − uniform) / (oracle − uniform) ≥ {target_mean:.1} on the mean over seeds and ≥ \
         {target_every:.1} on every seed; the dashed lines of the per-seed chart above mark those targets for comparison only.\n",
        seeds = SEEDS,
        partners = grouped(PARTNERS as f64),
        periods = PERIODS,
        last = last,
        from = FROM_PERIOD,
        segtune_gain = grouped(all_total(1) - all_total(0)),
        oracle_gain = grouped(all_total(2) - all_total(0)),
        uniform_total = grouped(all_total(0)),
        first_period = periods[0],
        shares = shares.join(", "),
        holdout_pct = format!("{:.0} %", tuning.holdout * 100.0),
        n_schemes = SCHEMES.len(),
        floor = tuning.floor,
        max_step = tuning.max_step,
        margin = tuning.margin,
        forgetting = tuning.forgetting,
        draws = grouped(tuning.draws),
        k_min = tuning.k_range.0,
        k_max = tuning.k_range.1,
        first_label = first_label,
        last_label = results.labels[&last],
        last_seed = SEEDS - 1,
        full_partners = grouped(DEFAULT_PARTNERS as f64),
        full_periods = FULL_PERIODS,
        full_last_seed = FULL_SEEDS - 1,
        full_from = FULL_FROM_PERIOD,
        target_mean = TARGET_MEAN,
        target_every = TARGET_EVERY_SEED,
    );
    page.add("04_simulate.md", markdown);
    page.finish(mode)
}
