//! Turning simulated slots into Parquet part files and truth tables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;
use serde::Serialize;

use super::model::{revenue_sd, Archetype, SCHEMES, TRUE_LIFT_SD};
use super::simulate::{SlotHistory, Snapshot};
use super::{GeneratorValidParams, World};
use crate::parquet_io::{part_name, write_parquet};
use crate::schema::{self, GENERATED_FEATURES};
use crate::{DataError, Result, HOLDOUT};

/// Where each table goes.
pub(crate) struct Layout {
    root: PathBuf,
    periods: Vec<String>,
    n_parts: usize,
}

impl Layout {
    pub(crate) fn new(root: &Path, periods: &[String], n_parts: usize) -> Self {
        Self {
            root: root.to_path_buf(),
            periods: periods.to_vec(),
            n_parts,
        }
    }

    /// `periods/<p>/<table>.parquet`, or the folder `periods/<p>/<table>/` of part files.
    fn table(&self, truth: bool, period: usize, table: &str) -> PathBuf {
        let base = if truth {
            self.root.join("truth")
        } else {
            self.root.join("periods")
        };
        let folder = base.join(&self.periods[period]);
        if self.n_parts == 1 {
            folder.join(format!("{table}.parquet"))
        } else {
            folder.join(table)
        }
    }

    fn part(&self, truth: bool, period: usize, table: &str, part: usize) -> PathBuf {
        let path = self.table(truth, period, table);
        if self.n_parts == 1 {
            path
        } else {
            path.join(part_name(part))
        }
    }

    pub(crate) fn create_dirs(&self, writes: impl Fn(usize) -> bool) -> Result<()> {
        for period in (0..self.periods.len()).filter(|p| writes(*p)) {
            for (truth, table) in [
                (false, "partners"),
                (false, "assignments"),
                (false, "outcomes"),
                (true, "archetypes"),
                (true, "effects"),
            ] {
                let path = self.table(truth, period, table);
                let dir = if self.n_parts == 1 {
                    path.parent().map(Path::to_path_buf).unwrap_or(path)
                } else {
                    path
                };
                fs_err::create_dir_all(&dir).map_err(|source| DataError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn relative(&self, period: usize, table: &str) -> String {
        let path = self.table(false, period, table);
        path.strip_prefix(&self.root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/")
    }
}

/// Sums over one chunk, combined in chunk order.
#[derive(Debug, Clone)]
pub(crate) struct TruthAccumulator {
    /// Indexed `[period][archetype]`: n, sum y0, sum y0^2, sum effect multiplier.
    population: Vec<[[f64; 4]; 6]>,
    /// Indexed `[period][archetype][scheme]`: n assigned, sum effect, sum cost.
    assigned: Vec<[[[f64; 3]; 5]; 6]>,
    /// Indexed `[period][from][to]`: partners present in both periods.
    migration: Vec<[[u64; 6]; 6]>,
}

impl TruthAccumulator {
    pub(crate) fn new(n_periods: usize) -> Self {
        Self {
            population: vec![[[0.0; 4]; 6]; n_periods],
            assigned: vec![[[[0.0; 3]; 5]; 6]; n_periods],
            migration: vec![[[0; 6]; 6]; n_periods],
        }
    }

    pub(crate) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.population.iter_mut().zip(&other.population) {
            for (a, b) in mine.iter_mut().flatten().zip(theirs.iter().flatten()) {
                *a += b;
            }
        }
        for (mine, theirs) in self.assigned.iter_mut().zip(&other.assigned) {
            for (a, b) in mine
                .iter_mut()
                .flatten()
                .flatten()
                .zip(theirs.iter().flatten().flatten())
            {
                *a += b;
            }
        }
        for (mine, theirs) in self.migration.iter_mut().zip(&other.migration) {
            for (a, b) in mine.iter_mut().flatten().zip(theirs.iter().flatten()) {
                *a += b;
            }
        }
    }

    /// One row per period, archetype and scheme.
    /// The truth cells of the periods `included` keeps.
    pub(crate) fn cells(
        &self,
        params: &GeneratorValidParams,
        included: impl Fn(usize) -> bool,
    ) -> Vec<TruthCell> {
        let mut cells = Vec::new();
        for (period, label) in params.periods.iter().enumerate() {
            if !included(period) {
                continue;
            }
            for archetype in Archetype::ALL {
                let [n, sum, sum_sq, sum_multiplier] = self.population[period][archetype.index()];
                let mean = if n > 0.0 { sum / n } else { 0.0 };
                let sd = if n > 1.0 {
                    ((sum_sq - n * mean * mean) / (n - 1.0)).max(0.0).sqrt()
                } else {
                    f64::NAN
                };
                let mean_multiplier = if n > 0.0 { sum_multiplier / n } else { 1.0 };
                for (index, scheme) in SCHEMES.iter().enumerate() {
                    let [n_assigned, sum_effect, sum_cost] =
                        self.assigned[period][archetype.index()][index];
                    let true_lift = TRUE_LIFT_SD[archetype.index()][index]
                        * revenue_sd(archetype)
                        * mean_multiplier;
                    let true_cost = scheme.cost_sd * revenue_sd(archetype);
                    let net = params.margin_rate * true_lift - true_cost;
                    cells.push(TruthCell {
                        period: label.clone(),
                        archetype: archetype.name(),
                        scheme_id: scheme.id,
                        n_partners: n as u64,
                        n_assigned: n_assigned as u64,
                        mean_revenue: mean,
                        sd_revenue: sd,
                        true_lift,
                        true_cost,
                        true_net: net,
                        lift_sd: true_lift / sd,
                        net_sd: net / sd,
                        realised_lift: if n_assigned > 0.0 {
                            sum_effect / n_assigned
                        } else {
                            f64::NAN
                        },
                        realised_cost: if n_assigned > 0.0 {
                            sum_cost / n_assigned
                        } else {
                            f64::NAN
                        },
                    });
                }
            }
        }
        cells
    }
}

/// One row of `truth/lift.parquet`: the truth of one period, archetype and scheme.
#[derive(Debug, Clone, Serialize)]
pub struct TruthCell {
    /// Period label.
    pub period: String,
    /// Archetype name.
    pub archetype: &'static str,
    /// Scheme id.
    pub scheme_id: &'static str,
    /// Partners of the archetype in the period's draw (present when it was made).
    pub n_partners: u64,
    /// Of those, how many the generator's draw gave this scheme.
    pub n_assigned: u64,
    /// Mean untreated period revenue of the archetype's partners in the draw.
    pub mean_revenue: f64,
    /// Standard deviation of untreated period revenue of the archetype's partners in the draw.
    pub sd_revenue: f64,
    /// True mean revenue lift per partner were every partner of the archetype given the scheme.
    pub true_lift: f64,
    /// Expected cost per treated partner.
    pub true_cost: f64,
    /// margin rate x true_lift - true_cost.
    pub true_net: f64,
    /// true_lift / sd_revenue.
    pub lift_sd: f64,
    /// true_net / sd_revenue.
    pub net_sd: f64,
    /// Mean true effect over the partners actually given the scheme.
    pub realised_lift: f64,
    /// Mean cost over the partners actually given the scheme.
    pub realised_cost: f64,
}

struct PeriodChunk {
    snapshots: Vec<Snapshot>,
    previous: Vec<Option<Archetype>>,
    draws: Vec<Option<Option<usize>>>,
    realised: Vec<super::Realised>,
}

fn period_chunk(world: &World, slots: &[SlotHistory], period: usize) -> PeriodChunk {
    let params = world.params();
    // Slots are independent (keyed random streams): in parallel, in order.
    let (snapshots, previous): (Vec<_>, Vec<_>) = slots
        .par_iter()
        .filter_map(|slot| {
            let snapshot = slot.snapshot(params.seed, period, params.null_rate)?;
            let previous = period
                .checked_sub(1)
                .and_then(|p| slot.periods[p].as_ref())
                .map(|p| p.archetype);
            Some((snapshot, previous))
        })
        .unzip();
    // A replaced draw (partners absent from it were not drawn), else the
    // generator's own.
    let draws: Vec<Option<Option<usize>>> = match world.override_for(period) {
        Some(overrides) => snapshots
            .iter()
            .map(|s| overrides.schemes.get(&s.partner_id).copied())
            .collect(),
        None => snapshots
            .par_iter()
            .map(|s| s.in_draw.then(|| s.draw(params.seed, params.holdout_share)))
            .collect(),
    };
    let realised = snapshots
        .par_iter()
        .zip(&draws)
        .map(|(s, draw)| {
            let scheme = draw.flatten();
            s.realise(
                params.seed,
                scheme,
                world.lift_factor(period, s.archetype, scheme),
            )
        })
        .collect();
    PeriodChunk {
        snapshots,
        previous,
        draws,
        realised,
    }
}

fn accumulate(acc: &mut TruthAccumulator, period: usize, chunk: &PeriodChunk) {
    for (((snapshot, previous), draw), realised) in chunk
        .snapshots
        .iter()
        .zip(&chunk.previous)
        .zip(&chunk.draws)
        .zip(&chunk.realised)
    {
        let a = snapshot.archetype.index();
        if snapshot.in_draw {
            let cell = &mut acc.population[period][a];
            cell[0] += 1.0;
            cell[1] += snapshot.revenue_baseline;
            cell[2] += snapshot.revenue_baseline * snapshot.revenue_baseline;
            cell[3] += snapshot.effect_multiplier;
        }
        if let Some(Some(scheme)) = draw {
            let cell = &mut acc.assigned[period][a][*scheme];
            cell[0] += 1.0;
            cell[1] += realised.effect_revenue;
            cell[2] += realised.cost;
        }
        if let Some(from) = previous {
            acc.migration[period][from.index()][a] += 1;
        }
    }
}

pub(crate) fn accumulate_chunk(world: &World, slots: &[SlotHistory]) -> TruthAccumulator {
    let mut acc = TruthAccumulator::new(world.params().n_periods);
    for period in 0..world.params().n_periods {
        accumulate(&mut acc, period, &period_chunk(world, slots, period));
    }
    acc
}

fn column<T, A: arrow_array::Array + 'static>(
    values: impl Iterator<Item = T>,
    build: impl FnOnce(Vec<T>) -> A,
) -> ArrayRef {
    Arc::new(build(values.collect()))
}

fn partners_batch(chunk: &PeriodChunk) -> Result<RecordBatch> {
    let s = &chunk.snapshots;
    let mut columns: Vec<ArrayRef> = vec![column(
        s.iter().map(|x| x.partner_id.as_str()),
        StringArray::from,
    )];
    for (name, _) in GENERATED_FEATURES {
        let array: ArrayRef = match name {
            "revenue_12m" => column(s.iter().map(|x| x.revenue_12m), Float64Array::from),
            "revenue_growth" => column(s.iter().map(|x| x.revenue_growth), Float64Array::from),
            "deal_registrations_12m" => {
                column(s.iter().map(|x| x.deal_registrations_12m), Int64Array::from)
            }
            "win_rate" => column(s.iter().map(|x| x.win_rate), Float64Array::from),
            "certifications" => column(s.iter().map(|x| x.certifications), Int32Array::from),
            "training_hours_12m" => {
                column(s.iter().map(|x| x.training_hours_12m), Float64Array::from)
            }
            "portal_logins_90d" => column(s.iter().map(|x| x.portal_logins_90d), Int32Array::from),
            "mdf_utilisation" => column(s.iter().map(|x| x.mdf_utilisation), Float64Array::from),
            "tenure_months" => column(s.iter().map(|x| x.tenure_months), Int32Array::from),
            "active_customers" => column(s.iter().map(|x| x.active_customers), Int64Array::from),
            "product_lines_sold" => {
                column(s.iter().map(|x| x.product_lines_sold), Int32Array::from)
            }
            "days_since_last_deal" => {
                column(s.iter().map(|x| x.days_since_last_deal), Int32Array::from)
            }
            other => {
                return Err(DataError::InvalidParams(format!(
                    "no generator for column {other}"
                )))
            }
        };
        columns.push(array);
    }
    columns.push(column(s.iter().map(|x| x.partner_type), StringArray::from));
    columns.push(column(s.iter().map(|x| x.region), StringArray::from));
    columns.push(column(s.iter().map(|x| x.tier), StringArray::from));
    Ok(RecordBatch::try_new(schema::generated_partners(), columns)?)
}

fn scheme_name(draw: Option<usize>) -> &'static str {
    draw.map_or(HOLDOUT, |index| SCHEMES[index].id)
}

/// The partners in the period's draw, with what they got and what happened.
fn drawn(chunk: &PeriodChunk) -> Vec<(&Snapshot, Option<usize>, &super::Realised)> {
    chunk
        .snapshots
        .iter()
        .zip(&chunk.draws)
        .zip(&chunk.realised)
        .filter_map(|((s, draw), r)| draw.map(|d| (s, d, r)))
        .collect()
}

fn assignments_batch(chunk: &PeriodChunk) -> Result<RecordBatch> {
    let rows = drawn(chunk);
    Ok(RecordBatch::try_new(
        schema::assignments(),
        vec![
            column(
                rows.iter().map(|(s, _, _)| s.partner_id.as_str()),
                StringArray::from,
            ),
            column(
                rows.iter().map(|(_, d, _)| scheme_name(*d)),
                StringArray::from,
            ),
            column(rows.iter().map(|(_, _, r)| r.cost), Float64Array::from),
            column(rows.iter().map(|_| None::<u32>), UInt32Array::from),
        ],
    )?)
}

fn outcomes_batch(chunk: &PeriodChunk) -> Result<RecordBatch> {
    let s = &chunk.snapshots;
    let r = &chunk.realised;
    Ok(RecordBatch::try_new(
        schema::generated_outcomes(),
        vec![
            column(s.iter().map(|x| x.partner_id.as_str()), StringArray::from),
            column(r.iter().map(|x| x.revenue), Float64Array::from),
            column(
                s.iter()
                    .map(|x| x.revenue_pre.map(|v| (v * 100.0).round() / 100.0)),
                Float64Array::from,
            ),
            column(r.iter().map(|x| x.deal_registrations), Int64Array::from),
            column(r.iter().map(|x| x.certifications_earned), Int64Array::from),
        ],
    )?)
}

fn truth_archetypes_batch(chunk: &PeriodChunk) -> Result<RecordBatch> {
    let s = &chunk.snapshots;
    Ok(RecordBatch::try_new(
        schema::truth_archetypes(),
        vec![
            column(s.iter().map(|x| x.partner_id.as_str()), StringArray::from),
            column(s.iter().map(|x| x.archetype.name()), StringArray::from),
            column(
                chunk.previous.iter().map(|p| p.map(Archetype::name)),
                StringArray::from,
            ),
        ],
    )?)
}

fn truth_effects_batch(chunk: &PeriodChunk) -> Result<RecordBatch> {
    let rows = drawn(chunk);
    Ok(RecordBatch::try_new(
        schema::truth_effects(),
        vec![
            column(
                rows.iter().map(|(s, _, _)| s.partner_id.as_str()),
                StringArray::from,
            ),
            column(
                rows.iter().map(|(_, d, _)| scheme_name(*d)),
                StringArray::from,
            ),
            column(
                rows.iter().map(|(_, _, r)| r.effect_revenue),
                Float64Array::from,
            ),
            column(
                rows.iter().map(|(_, _, r)| r.effect_deal_registrations),
                Float64Array::from,
            ),
            column(
                rows.iter().map(|(_, _, r)| r.effect_certifications),
                Float64Array::from,
            ),
            column(
                rows.iter().map(|(s, _, _)| s.revenue_baseline),
                Float64Array::from,
            ),
        ],
    )?)
}

/// Simulates and writes one chunk of slots; returns its truth sums.
pub(crate) fn write_chunk(
    world: &World,
    layout: &Layout,
    part: usize,
    slots: Vec<SlotHistory>,
) -> Result<TruthAccumulator> {
    let mut acc = TruthAccumulator::new(world.params().n_periods);
    // A period that is not written is not generated either: its truth too
    // is left out (the demo and the closed loop generate one period at a
    // time, and would otherwise simulate every period each time).
    for period in (0..world.params().n_periods).filter(|p| world.writes(*p)) {
        let chunk = period_chunk(world, &slots, period);
        accumulate(&mut acc, period, &chunk);
        if chunk.snapshots.is_empty() {
            continue;
        }
        let tables: [(bool, &str, RecordBatch); 5] = [
            (false, "partners", partners_batch(&chunk)?),
            (false, "assignments", assignments_batch(&chunk)?),
            (false, "outcomes", outcomes_batch(&chunk)?),
            (true, "archetypes", truth_archetypes_batch(&chunk)?),
            (true, "effects", truth_effects_batch(&chunk)?),
        ];
        for (truth, table, batch) in tables {
            write_parquet(
                &layout.part(truth, period, table, part),
                batch.schema(),
                &[batch],
            )?;
        }
    }
    Ok(acc)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    fs_err::write(path, text).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_truth_tables(
    world: &World,
    layout: &Layout,
    truth: &TruthAccumulator,
) -> Result<()> {
    let params = world.params();
    let cells = truth.cells(params, |period| world.writes(period));
    let truth_dir = layout.root.join("truth");
    let lift_schema = schema::truth_lift();
    let finite = |v: f64| v.is_finite().then_some(v);
    let batch = RecordBatch::try_new(
        lift_schema.clone(),
        vec![
            column(cells.iter().map(|c| c.period.as_str()), StringArray::from),
            column(cells.iter().map(|c| c.archetype), StringArray::from),
            column(cells.iter().map(|c| c.scheme_id), StringArray::from),
            column(cells.iter().map(|c| c.n_partners), UInt64Array::from),
            column(cells.iter().map(|c| c.n_assigned), UInt64Array::from),
            column(cells.iter().map(|c| c.mean_revenue), Float64Array::from),
            column(
                cells.iter().map(|c| finite(c.sd_revenue)),
                Float64Array::from,
            ),
            column(cells.iter().map(|c| c.true_lift), Float64Array::from),
            column(cells.iter().map(|c| c.true_cost), Float64Array::from),
            column(cells.iter().map(|c| c.true_net), Float64Array::from),
            column(cells.iter().map(|c| finite(c.lift_sd)), Float64Array::from),
            column(cells.iter().map(|c| finite(c.net_sd)), Float64Array::from),
            column(
                cells.iter().map(|c| finite(c.realised_lift)),
                Float64Array::from,
            ),
            column(
                cells.iter().map(|c| finite(c.realised_cost)),
                Float64Array::from,
            ),
        ],
    )?;
    write_parquet(&truth_dir.join("lift.parquet"), lift_schema, &[batch])?;
    let json_cells: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            let mut value = serde_json::to_value(c).unwrap_or(serde_json::Value::Null);
            if let Some(object) = value.as_object_mut() {
                for field in object.values_mut() {
                    if field.as_f64().is_some_and(|v| !v.is_finite()) || field.is_null() {
                        *field = serde_json::Value::Null;
                    }
                }
            }
            value
        })
        .collect();
    write_json(&truth_dir.join("lift.json"), &json_cells)?;

    let mut migration_rows = Vec::new();
    for (period, label) in params.periods.iter().enumerate().skip(1) {
        for from in Archetype::ALL {
            for to in Archetype::ALL {
                let n = truth.migration[period][from.index()][to.index()];
                if n > 0 {
                    migration_rows.push((label.as_str(), from.name(), to.name(), n));
                }
            }
        }
    }
    let migration_schema = Arc::new(Schema::new(vec![
        Field::new("period", DataType::Utf8, false),
        Field::new("from_archetype", DataType::Utf8, false),
        Field::new("to_archetype", DataType::Utf8, false),
        Field::new("n_partners", DataType::UInt64, false),
    ]));
    let batch = RecordBatch::try_new(
        migration_schema.clone(),
        vec![
            column(migration_rows.iter().map(|r| r.0), StringArray::from),
            column(migration_rows.iter().map(|r| r.1), StringArray::from),
            column(migration_rows.iter().map(|r| r.2), StringArray::from),
            column(migration_rows.iter().map(|r| r.3), UInt64Array::from),
        ],
    )?;
    write_parquet(
        &truth_dir.join("migration.parquet"),
        migration_schema,
        &[batch],
    )
}

#[derive(Serialize)]
struct GeneratorManifest<'a> {
    generator: &'static str,
    version: &'static str,
    params: &'a GeneratorValidParams,
    schemes: &'static [super::Scheme],
    archetypes: Vec<&'static str>,
    n_parts: usize,
    layout: &'static str,
}

/// Writes `generator.json` and `segtune.toml` (a run configuration for the last period).
pub(crate) fn write_config_and_manifest(
    params: &GeneratorValidParams,
    layout: &Layout,
    n_parts: usize,
) -> Result<PathBuf> {
    let manifest = GeneratorManifest {
        generator: "segtune generate",
        version: env!("CARGO_PKG_VERSION"),
        params,
        schemes: &SCHEMES,
        archetypes: Archetype::ALL.iter().map(|a| a.name()).collect(),
        n_parts,
        layout: "periods/<period>/{partners,assignments,outcomes} are segtune's inputs; truth/ holds what segtune must never read",
    };
    write_json(&layout.root.join("generator.json"), &manifest)?;
    let last = params.periods.len() - 1;
    let features: Vec<String> = GENERATED_FEATURES
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    let config = format!(
        r#"# segtune run configuration written by `segtune generate` (seed {seed}).
# It evaluates the last generated period; every key is documented in
# pipeline/segtune.example.toml.
period = "{period}"
seed = {seed}
margin-rate = {margin}

[inputs]
partners = "{partners}"
assignments = "{assignments}"
outcomes = "{outcomes}"

[features]
numeric = [{features}]
categorical = ["partner_type", "region", "tier"]
revenue = "revenue_12m"

# Heavy-tailed money and counts are log-transformed before scaling.
[features.transforms]
{log1p}

[[outcome]]
name = "revenue"
covariate = "revenue_pre"
# The smallest revenue lift per partner worth detecting: power.parquet says
# which holdout share would detect it in each segment.
min-effect = 3000.0

# Counts are valued per unit; they have no pre-period column here.
[[outcome]]
name = "deal_registrations"
value-per-unit = 150.0

[[outcome]]
name = "certifications_earned"
value-per-unit = 400.0

# Rule segments, decided before clustering, first match wins.
[[rules]]
name = "new"
segment-name = "New partners"
condition = "tenure_months < 6"

[[rules]]
name = "dormant"
segment-name = "Dormant partners"
condition = "days_since_last_deal > 180 && portal_logins_90d == 0"
"#,
        seed = params.seed,
        period = params.periods[last],
        margin = params.margin_rate,
        partners = layout.relative(last, "partners"),
        assignments = layout.relative(last, "assignments"),
        outcomes = layout.relative(last, "outcomes"),
        features = features.join(", "),
        log1p = crate::generator::model::LOG1P_FEATURES
            .iter()
            .map(|name| format!("{name} = \"log1p\""))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let path = layout.root.join("segtune.toml");
    fs_err::write(&path, config).map_err(|source| DataError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
