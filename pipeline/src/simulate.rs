//! `segtune simulate`: the closed loop that shows whether tuning pays.
//!
//! For each seed, a generated program runs period after period: segtune
//! evaluates period t and proposes weights and the draw for t + 1; the
//! generator computes period t + 1's outcomes for exactly that draw (common
//! random numbers); segtune runs on them with its previous run; and so on.
//! Three policies are scored on the same partners each period by their true
//! expected net value (margin x expected revenue lift - expected cost, over
//! the partners in the draw, outside the holdout):
//!
//! - **uniform**: equal weights, the program without segtune;
//! - **segtune**: the weights segtune proposed for the period;
//! - **oracle**: on segtune's own segments, the weights that maximise the
//!   true expected net value under the same holdout share, floor and max
//!   step (from the oracle's own previous weights): the best any tuner could
//!   do with these segments and rules, myopically.
//!
//! The headline is (segtune - uniform) / (oracle - uniform) on the value
//! summed over the later periods: the share of the attainable gain segtune
//! captures.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use segtune_data::generator::{
    generate_world, Archetype, AssignmentOverride, GeneratorParams, Shock, World, SCHEMES,
};
use segtune_models::tuning::{best_allocation, bounds, SchemeLimits};

use crate::config::{Overrides, RunSettings};
use crate::run::{run, RunOptions};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimulationParams {
    /// Partners per program.
    pub partners: usize,
    /// Periods per program (the first is the generator's own uniform draw).
    pub periods: usize,
    /// Seeds 0 .. seeds.
    pub seeds: u64,
    /// The first period (1-based) of the headline sum.
    pub from_period: usize,
    /// Extra configuration appended to the generated one (e.g. a fixed k).
    pub extra_config: String,
    /// From this period (1-based) on, the deal-registration SPIFF has no
    /// revenue lift for growth partners (where it is the best scheme, with the
    /// attach bonus a close second): does segtune move the weight?
    pub shock_period: Option<usize>,
}

/// The archetype of the shock.
pub const SHOCK_ARCHETYPE: Archetype = Archetype::GrowthPartner;
/// The scheme of the shock (`deal_reg_spiff`, index into `SCHEMES`).
pub const SHOCK_SCHEME: usize = 1;

/// What segtune did about the shock in one seed: the shocked scheme's weight
/// in the segment holding most growth partners, in the shock period and two
/// periods later.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShockCheck {
    /// Generator seed.
    pub seed: u64,
    /// The segment.
    pub segment_id: u32,
    /// The weight in the shock period (decided before the shock).
    pub weight_before: f64,
    /// The weight two periods later.
    pub weight_after: f64,
    /// weight_after <= max(floor, weight_before - max step).
    pub passed: bool,
}

/// One policy in one period of one seed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PolicyPeriod {
    /// Generator seed.
    pub seed: u64,
    /// Period number, 1-based.
    pub period: usize,
    /// Period label.
    pub period_label: String,
    /// `uniform`, `segtune` or `oracle`.
    pub policy: String,
    /// Partners in the draw.
    pub partners: usize,
    /// Expected incremental revenue.
    pub incremental_revenue: f64,
    /// Expected cost.
    pub cost: f64,
    /// margin x incremental revenue - cost.
    pub net: f64,
    /// net / cost.
    pub roi: Option<f64>,
}

/// The headline of one seed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeedSummary {
    /// Generator seed.
    pub seed: u64,
    /// Summed net value over the headline periods, per policy.
    pub uniform: f64,
    /// segtune's.
    pub segtune: f64,
    /// The oracle's.
    pub oracle: f64,
    /// (segtune - uniform) / (oracle - uniform).
    pub captured: f64,
}

/// Everything a simulation found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Simulation {
    /// Per seed, period and policy.
    pub periods: Vec<PolicyPeriod>,
    /// Per seed.
    pub seeds: Vec<SeedSummary>,
    /// Mean of `captured` over seeds.
    pub mean_captured: f64,
    /// Smallest `captured`.
    pub min_captured: f64,
    /// Per seed, with a shock.
    pub shock: Vec<ShockCheck>,
}

/// Expected (revenue lift, cost) per scheme for each partner of a period,
/// in partner id order (so that sums are the same bytes every time).
type Values = BTreeMap<String, Vec<(f64, f64)>>;

/// The weight of `scheme` in `segment` from a run's weight rows.
fn weight_of(rows: &[crate::tune::WeightRow], segment: u32, scheme: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.segment_id == segment && r.scheme_id == scheme)
        .map(|r| r.weight)
}

/// Scores weights per segment on the partners of a draw.
fn score(
    values: &Values,
    draw: &HashMap<String, u32>,
    weights: &BTreeMap<u32, (f64, Vec<f64>)>,
) -> (usize, f64, f64) {
    let (mut n, mut lift, mut cost) = (0, 0.0, 0.0);
    for (partner, per_scheme) in values {
        let Some((holdout, w)) = draw.get(partner).and_then(|s| weights.get(s)) else {
            continue;
        };
        n += 1;
        for (weight, (l, c)) in w.iter().zip(per_scheme) {
            lift += (1.0 - holdout) * weight * l;
            cost += (1.0 - holdout) * weight * c;
        }
    }
    (n, lift, cost)
}

fn policy_row(
    seed: u64,
    period: usize,
    label: &str,
    policy: &str,
    (partners, lift, cost): (usize, f64, f64),
    margin: f64,
) -> PolicyPeriod {
    let net = margin * lift - cost;
    PolicyPeriod {
        seed,
        period,
        period_label: label.to_string(),
        policy: policy.to_string(),
        partners,
        incremental_revenue: lift,
        cost,
        net,
        roi: (cost != 0.0).then(|| net / cost),
    }
}

/// Reads a run's `assignments_next.parquet`: partner -> (segment, scheme).
fn read_draw(run_dir: &Path) -> anyhow::Result<HashMap<String, (u32, String)>> {
    use arrow_array::cast::AsArray;
    let path = run_dir.join("assignments_next.parquet");
    let mut draw = HashMap::new();
    for batch in crate::output::read_batches(&path)? {
        let column = |name: &str| crate::output::batch_column(&batch, name, &path);
        let ids = column("partner_id")?.as_string::<i32>().clone();
        let segments = column("segment_id")?
            .as_primitive::<arrow_array::types::UInt32Type>()
            .clone();
        let schemes = column("scheme_id")?.as_string::<i32>().clone();
        for row in 0..batch.num_rows() {
            draw.insert(
                ids.value(row).to_string(),
                (segments.value(row), schemes.value(row).to_string()),
            );
        }
    }
    Ok(draw)
}

/// Runs one seed's closed loop in `dir`.
fn simulate_seed(
    params: &SimulationParams,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<(Vec<PolicyPeriod>, Option<ShockCheck>)> {
    let generator = GeneratorParams::new()
        .with_partners(params.partners)
        .with_periods(params.periods)
        .with_seed(seed)
        .check()?;
    let margin = generator.margin_rate;
    let labels = generator.periods.clone();
    let last = labels.last().context("no periods")?.clone();
    let scheme_ids: Vec<&str> = SCHEMES.iter().map(|s| s.id).collect();
    let mut world = World::new(generator.clone());
    if let Some(period) = params.shock_period {
        world = world.with_shock(Shock {
            from_period: period - 1,
            archetype: SHOCK_ARCHETYPE,
            scheme: SHOCK_SCHEME,
        });
    }
    // (segment, weight in the shock period) once known.
    let mut shocked: Option<(u32, f64)> = None;
    let mut shock_check = None;
    let mut previous_run: Option<PathBuf> = None;
    let mut oracle_previous: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    let mut rows = Vec::new();
    for (t, label) in labels.iter().enumerate() {
        let data = dir.join(format!("data-{label}"));
        fs_err::create_dir_all(&data)?;
        generate_world(&world.clone().only_period(t), &data)
            .with_context(|| format!("generating {label}"))?;
        let config = fs_err::read_to_string(data.join("segtune.toml"))?.replace(&last, label);
        fs_err::write(
            data.join("simulate.toml"),
            format!("{config}\n{}", params.extra_config),
        )?;
        let settings = RunSettings::load(
            &data.join("simulate.toml"),
            &Overrides {
                previous_run: previous_run.clone(),
                ..Overrides::default()
            },
        )?;
        let run_dir = dir.join("runs").join(label);
        let summary = run(
            &settings,
            &RunOptions {
                out: run_dir.clone(),
                force: false,
                progress: false,
                dump_design: None,
                approval: None,
            },
        )
        .with_context(|| format!("seed {seed}, {label}"))?;
        // The data of every period but the next are not needed again.
        fs_err::remove_dir_all(&data)?;
        previous_run = Some(run_dir.clone());
        let Some(next_label) = labels.get(t + 1) else {
            break;
        };
        // segtune's draw for t + 1 becomes the generator's draw of t + 1.
        let draw = read_draw(&run_dir)?;
        let schemes: HashMap<String, Option<usize>> = draw
            .iter()
            .map(|(partner, (_, scheme))| {
                (partner.clone(), scheme_ids.iter().position(|s| s == scheme))
            })
            .collect();
        world = world.with_override(AssignmentOverride {
            period: t + 1,
            schemes,
        });

        // Score the three policies on period t + 1's partners.
        let partners = world.expected_values(t + 1);
        let segment_of: HashMap<String, u32> =
            draw.iter().map(|(p, (s, _))| (p.clone(), *s)).collect();
        let shocked_scheme = scheme_ids[SHOCK_SCHEME];
        if params.shock_period == Some(t + 2) {
            // The weights for the shock period: find the segment of the
            // shocked archetype.
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            for p in partners.iter().filter(|p| p.archetype == SHOCK_ARCHETYPE) {
                if let Some(segment) = segment_of.get(&p.partner_id) {
                    *counts.entry(*segment).or_default() += 1;
                }
            }
            if let Some((segment, _)) = counts
                .iter()
                .max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s)))
            {
                shocked = weight_of(&summary.weight_rows, *segment, shocked_scheme)
                    .map(|w| (*segment, w));
            }
        }
        if let (Some(period), Some((segment, before))) = (params.shock_period, shocked) {
            if t + 2 == period + 2 {
                let after = weight_of(&summary.weight_rows, segment, shocked_scheme).unwrap_or(0.0);
                shock_check = Some(ShockCheck {
                    seed,
                    segment_id: segment,
                    weight_before: before,
                    weight_after: after,
                    passed: after
                        <= (before - settings.tuning.max_step).max(settings.tuning.floor) + 1e-9,
                });
            }
        }
        let values: Values = partners
            .into_iter()
            .map(|p| (p.partner_id, p.values))
            .collect();
        let mut segtune_weights: BTreeMap<u32, (f64, Vec<f64>)> = BTreeMap::new();
        for row in &summary.weight_rows {
            let entry = segtune_weights
                .entry(row.segment_id)
                .or_insert((row.holdout_share, vec![0.0; scheme_ids.len()]));
            if let Some(i) = scheme_ids.iter().position(|s| *s == row.scheme_id) {
                entry.1[i] = row.weight;
            }
        }
        let holdout = settings.tuning.holdout_share;
        let uniform_weights: BTreeMap<u32, (f64, Vec<f64>)> = segtune_weights
            .keys()
            .map(|s| {
                (
                    *s,
                    (
                        holdout,
                        vec![1.0 / scheme_ids.len() as f64; scheme_ids.len()],
                    ),
                )
            })
            .collect();
        // The oracle: per segment, the mean true value of each scheme.
        let mut sums: BTreeMap<u32, (usize, Vec<f64>)> = BTreeMap::new();
        for (partner, per_scheme) in &values {
            if let Some(segment) = segment_of.get(partner) {
                let entry = sums
                    .entry(*segment)
                    .or_insert((0, vec![0.0; scheme_ids.len()]));
                entry.0 += 1;
                for (sum, (l, c)) in entry.1.iter_mut().zip(per_scheme) {
                    *sum += margin * l - c;
                }
            }
        }
        let mut oracle_weights = BTreeMap::new();
        for (segment, (n, sum)) in &sums {
            let means: Vec<f64> = sum.iter().map(|s| s / *n as f64).collect();
            let limits = vec![
                SchemeLimits {
                    floor: settings.tuning.floor,
                    ..SchemeLimits::default()
                };
                scheme_ids.len()
            ];
            let previous = oracle_previous
                .get(segment)
                .cloned()
                .unwrap_or_else(|| vec![1.0 / scheme_ids.len() as f64; scheme_ids.len()]);
            let w = best_allocation(
                &means,
                &bounds(&limits, Some(&previous), settings.tuning.max_step),
            )?;
            oracle_weights.insert(*segment, (holdout, w));
        }
        oracle_previous = oracle_weights
            .iter()
            .map(|(s, (_, w))| (*s, w.clone()))
            .collect();
        for (policy, weights) in [
            ("uniform", &uniform_weights),
            ("segtune", &segtune_weights),
            ("oracle", &oracle_weights),
        ] {
            rows.push(policy_row(
                seed,
                t + 2,
                next_label,
                policy,
                score(&values, &segment_of, weights),
                margin,
            ));
        }
    }
    Ok((rows, shock_check))
}

/// Runs every seed (one after the other; each run uses every core) under
/// `dir`, which keeps each seed's run folders.
pub fn simulate(params: &SimulationParams, dir: &Path) -> anyhow::Result<Simulation> {
    let mut periods = Vec::new();
    let mut seeds = Vec::new();
    let mut shock = Vec::new();
    for seed in 0..params.seeds {
        let seed_dir = dir.join(format!("seed-{seed}"));
        fs_err::create_dir_all(&seed_dir)?;
        tracing::info!(seed, "simulating");
        let (rows, check) = simulate_seed(params, seed, &seed_dir)?;
        shock.extend(check);
        let total = |policy: &str| -> f64 {
            rows.iter()
                .filter(|r| r.policy == policy && r.period >= params.from_period)
                .map(|r| r.net)
                .sum()
        };
        let (uniform, segtune, oracle) = (total("uniform"), total("segtune"), total("oracle"));
        seeds.push(SeedSummary {
            seed,
            uniform,
            segtune,
            oracle,
            captured: (segtune - uniform) / (oracle - uniform),
        });
        periods.extend(rows);
    }
    let captured: Vec<f64> = seeds.iter().map(|s| s.captured).collect();
    Ok(Simulation {
        periods,
        mean_captured: captured.iter().sum::<f64>() / captured.len().max(1) as f64,
        min_captured: captured.iter().copied().fold(f64::INFINITY, f64::min),
        seeds,
        shock,
    })
}

/// The chart: per period, the mean over seeds of each policy's true expected
/// net value minus the uniform policy's.
pub fn chart(simulation: &Simulation) -> anyhow::Result<String> {
    use plotters::prelude::*;
    let mut by_period: BTreeMap<usize, BTreeMap<&str, (f64, usize)>> = BTreeMap::new();
    let uniform: HashMap<(u64, usize), f64> = simulation
        .periods
        .iter()
        .filter(|r| r.policy == "uniform")
        .map(|r| ((r.seed, r.period), r.net))
        .collect();
    for row in &simulation.periods {
        let base = uniform.get(&(row.seed, row.period)).copied().unwrap_or(0.0);
        let entry = by_period
            .entry(row.period)
            .or_default()
            .entry(row.policy.as_str())
            .or_insert((0.0, 0));
        entry.0 += row.net - base;
        entry.1 += 1;
    }
    let series = |policy: &str| -> Vec<(f64, f64)> {
        by_period
            .iter()
            .filter_map(|(period, policies)| {
                policies
                    .get(policy)
                    .map(|(sum, n)| (*period as f64, sum / *n as f64))
            })
            .collect()
    };
    let all: Vec<(f64, f64)> = ["uniform", "segtune", "oracle"]
        .iter()
        .flat_map(|p| series(p))
        .collect();
    let (x_low, x_high) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
    let (y_low, y_high) = all
        .iter()
        .fold((0.0f64, 0.0f64), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    let pad = (y_high - y_low).max(1.0) * 0.08;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (860, 440)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(14)
            .caption(
                "True expected net value above the uniform program, mean over seeds",
                ("sans-serif", 18),
            )
            .x_label_area_size(36)
            .y_label_area_size(90)
            .build_cartesian_2d((x_low - 0.2)..(x_high + 0.2), (y_low - pad)..(y_high + pad))?;
        chart
            .configure_mesh()
            .x_desc("period")
            .y_desc("net value vs uniform")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()?;
        for (policy, colour) in [
            ("uniform", RGBColor(140, 149, 159)),
            ("segtune", RGBColor(9, 105, 218)),
            ("oracle", RGBColor(26, 127, 55)),
        ] {
            chart
                .draw_series(LineSeries::new(series(policy), colour.stroke_width(2)))?
                .label(policy)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart.draw_series(
                series(policy)
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}
