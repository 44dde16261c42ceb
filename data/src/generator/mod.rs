//! The seeded synthetic generator and its ground truth.
//!
//! `generate` simulates a channel program of N partners over P periods and
//! writes, per period, the three input tables segtune reads (partners,
//! assignments, outcomes) and, in a separate `truth/` folder, what segtune
//! must never see: each partner's archetype, the true effect of the scheme it
//! got, and the true lift, cost and net value per archetype and scheme.
//!
//! Design choice: the partner population is cut into chunks of `part_rows`
//! slots, each simulated and written on its own (one part file per table and
//! chunk), so memory is bounded by the chunk size, not by N, and chunks run in
//! parallel. Keyed random streams make the bytes independent of the thread
//! count; truth aggregates are combined in chunk order.
//!
//! ```no_run
//! # use segtune_data::generator::{generate, GeneratorParams};
//! let params = GeneratorParams::new().with_partners(10_000).with_seed(7).check()?;
//! let summary = generate(&params, std::path::Path::new("/tmp/synthetic"))?;
//! println!("{} periods", summary.periods.len());
//! # Ok::<(), segtune_data::DataError>(())
//! ```

pub mod model;
mod simulate;
pub mod truth;
mod write;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

pub use model::{Archetype, Scheme, SCHEMES};
pub use simulate::Realised;
use simulate::{simulate_slot, total_slots, SlotHistory};
pub use write::TruthCell;

use crate::period::Period;
use crate::{DataError, Result};

/// Default number of partners.
pub const DEFAULT_PARTNERS: usize = 50_000;
/// Default number of periods.
pub const DEFAULT_PERIODS: usize = 4;
/// Default share of established partners whose archetype changes per period.
pub const DEFAULT_DRIFT: f64 = 0.03;
/// Default holdout share of the generator's own draw.
pub const DEFAULT_HOLDOUT_SHARE: f64 = 0.10;
/// Default first period.
pub const DEFAULT_START_PERIOD: &str = "2025-Q4";
/// Default rate of values missing at random, per feature.
pub const DEFAULT_NULL_RATE: f64 = 0.03;
/// Default partners per part file (also the unit of bounded memory).
pub const DEFAULT_PART_ROWS: usize = 250_000;
/// Default margin rate used for the true net value.
pub const DEFAULT_MARGIN_RATE: f64 = 0.30;
/// Default seed.
pub const DEFAULT_SEED: u64 = 0;

/// Generator parameters: a consuming builder, checked by [`GeneratorParams::check`].
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorParams {
    n_partners: usize,
    n_periods: usize,
    seed: u64,
    drift: f64,
    holdout_share: f64,
    start_period: String,
    null_rate: f64,
    part_rows: usize,
    margin_rate: f64,
}

/// Parameters that passed [`GeneratorParams::check`].
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorValidParams {
    /// Partners per period.
    pub n_partners: usize,
    /// Number of periods.
    pub n_periods: usize,
    /// Seed of every random stream.
    pub seed: u64,
    /// Share of established partners changing archetype per period.
    pub drift: f64,
    /// Holdout share of the generator's own draw.
    pub holdout_share: f64,
    /// Labels of the generated periods, in order.
    pub periods: Vec<String>,
    /// Rate of values missing at random.
    pub null_rate: f64,
    /// Partners per part file.
    pub part_rows: usize,
    /// Margin rate for true net value.
    pub margin_rate: f64,
}

impl Default for GeneratorParams {
    fn default() -> Self {
        Self::new()
    }
}

impl GeneratorParams {
    /// Defaults: 50,000 partners, 4 quarterly periods from 2025-Q4, seed 0,
    /// 3 % drift, 10 % holdout, 3 % missing values, 250,000 rows per part file,
    /// margin rate 0.30.
    pub fn new() -> Self {
        Self {
            n_partners: DEFAULT_PARTNERS,
            n_periods: DEFAULT_PERIODS,
            seed: DEFAULT_SEED,
            drift: DEFAULT_DRIFT,
            holdout_share: DEFAULT_HOLDOUT_SHARE,
            start_period: DEFAULT_START_PERIOD.to_string(),
            null_rate: DEFAULT_NULL_RATE,
            part_rows: DEFAULT_PART_ROWS,
            margin_rate: DEFAULT_MARGIN_RATE,
        }
    }
    /// Partners per period (default 50,000).
    pub fn with_partners(mut self, n: usize) -> Self {
        self.n_partners = n;
        self
    }
    /// Number of periods (default 4).
    pub fn with_periods(mut self, n: usize) -> Self {
        self.n_periods = n;
        self
    }
    /// Seed (default 0).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Share of established partners changing archetype per period (default 0.03).
    pub fn with_drift(mut self, drift: f64) -> Self {
        self.drift = drift;
        self
    }
    /// Holdout share of the generator's draw (default 0.10).
    pub fn with_holdout_share(mut self, share: f64) -> Self {
        self.holdout_share = share;
        self
    }
    /// First period, `YYYY-Qn` or `YYYY-MM` (default 2025-Q4).
    pub fn with_start_period(mut self, label: impl Into<String>) -> Self {
        self.start_period = label.into();
        self
    }
    /// Rate of values missing at random (default 0.03).
    pub fn with_null_rate(mut self, rate: f64) -> Self {
        self.null_rate = rate;
        self
    }
    /// Partners per part file (default 250,000).
    pub fn with_part_rows(mut self, rows: usize) -> Self {
        self.part_rows = rows;
        self
    }

    /// Checks every parameter.
    pub fn check(self) -> Result<GeneratorValidParams> {
        let invalid = |message: String| Err(DataError::InvalidParams(message));
        if self.n_partners == 0 || self.n_partners > 100_000_000 {
            return invalid(format!(
                "partners must be 1 to 100,000,000, got {}",
                self.n_partners
            ));
        }
        if self.n_periods == 0 || self.n_periods > 100 {
            return invalid(format!("periods must be 1 to 100, got {}", self.n_periods));
        }
        for (name, value) in [
            ("drift", self.drift),
            ("holdout share", self.holdout_share),
            ("null rate", self.null_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return invalid(format!("{name} must be in [0, 1], got {value}"));
            }
        }
        if self.part_rows == 0 {
            return invalid("part rows must be at least 1".into());
        }
        let start = Period::parse(&self.start_period)
            .map_err(|e| DataError::InvalidParams(e.to_string()))?;
        let periods = (0..self.n_periods as i64)
            .map(|step| start.offset(step).map(|p| p.to_string()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                DataError::InvalidParams("the start period must be YYYY-Qn or YYYY-MM".into())
            })?;
        Ok(GeneratorValidParams {
            n_partners: self.n_partners,
            n_periods: self.n_periods,
            seed: self.seed,
            drift: self.drift,
            holdout_share: self.holdout_share,
            periods,
            null_rate: self.null_rate,
            part_rows: self.part_rows,
            margin_rate: self.margin_rate,
        })
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    /// The folder written.
    pub out_dir: PathBuf,
    /// Period labels, in order.
    pub periods: Vec<String>,
    /// Partners per period.
    pub n_partners: usize,
    /// Part files per table.
    pub n_parts: usize,
    /// The run configuration written for the last period.
    pub config: PathBuf,
}

/// An assignment file that replaces the generator's own draw in one period:
/// outcomes and truth of that period are then computed for it (closed loop).
#[derive(Debug, Clone, Default)]
pub struct AssignmentOverride {
    /// Period index (into the generated periods).
    pub period: usize,
    /// Scheme per partner id: `None` for holdout, else an index into [`SCHEMES`].
    pub schemes: std::collections::HashMap<String, Option<usize>>,
}

impl AssignmentOverride {
    /// Reads `partner_id` and `scheme_id` from a Parquet assignments file.
    pub fn read(path: &Path, params: &GeneratorValidParams, period: &str) -> Result<Self> {
        use arrow_array::cast::AsArray;
        let period_index = params
            .periods
            .iter()
            .position(|p| p == period)
            .ok_or_else(|| {
                DataError::InvalidParams(format!(
                    "period `{period}` is not one of the generated periods {:?}",
                    params.periods
                ))
            })?;
        let file = fs_err::File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parquet_error = |source| DataError::Parquet {
            path: path.to_path_buf(),
            source,
        };
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            file.into_parts().0,
        )
        .map_err(parquet_error)?
        .build()
        .map_err(parquet_error)?;
        let mut schemes = std::collections::HashMap::new();
        for batch in reader {
            let batch = batch
                .map_err(|e| DataError::InvalidParams(format!("`{}`: {e}", path.display())))?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .and_then(arrow_cast_utf8)
                    .ok_or_else(|| {
                        DataError::InvalidParams(format!(
                            "`{}`: column `{name}` is missing or not text",
                            path.display()
                        ))
                    })
            };
            let (ids, scheme_ids) = (
                column(crate::schema::PARTNER_ID)?,
                column(crate::schema::SCHEME_ID)?,
            );
            for (id, scheme) in ids
                .as_string::<i32>()
                .iter()
                .zip(scheme_ids.as_string::<i32>().iter())
            {
                let (Some(id), Some(scheme)) = (id, scheme) else {
                    continue;
                };
                let index = if scheme == crate::HOLDOUT {
                    None
                } else {
                    Some(SCHEMES.iter().position(|s| s.id == scheme).ok_or_else(|| {
                        DataError::InvalidParams(format!(
                            "`{}`: scheme `{scheme}` is not one of the generator's schemes",
                            path.display()
                        ))
                    })?)
                };
                schemes.insert(id.to_string(), index);
            }
        }
        Ok(Self {
            period: period_index,
            schemes,
        })
    }
}

fn arrow_cast_utf8(array: &arrow_array::ArrayRef) -> Option<arrow_array::ArrayRef> {
    matches!(array.data_type(), arrow_schema::DataType::Utf8).then(|| array.clone())
}

/// The world of one parameter set: simulates slots on demand.
#[derive(Debug, Clone)]
pub struct World {
    params: GeneratorValidParams,
    overrides: Vec<AssignmentOverride>,
    only_periods: Option<Vec<usize>>,
    shock: Option<Shock>,
}

/// One partner's true expected values, from [`World::expected_values`].
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerValue {
    /// Partner id.
    pub partner_id: String,
    /// Its archetype in the period.
    pub archetype: Archetype,
    /// Per scheme: (expected revenue lift, expected cost).
    pub values: Vec<(f64, f64)>,
}

/// A change of the truth mid-simulation: from period `from_period` (an
/// index) on, `scheme` has no revenue lift for partners of `archetype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shock {
    /// First period (index) without the lift.
    pub from_period: usize,
    /// The archetype whose lift vanishes.
    pub archetype: Archetype,
    /// The scheme (index into [`SCHEMES`]).
    pub scheme: usize,
}

impl World {
    /// A world for checked parameters.
    pub fn new(params: GeneratorValidParams) -> Self {
        Self {
            params,
            overrides: Vec::new(),
            only_periods: None,
            shock: None,
        }
    }

    /// The same world with one period's draw replaced (a later replacement
    /// of the same period wins).
    pub fn with_override(mut self, overrides: AssignmentOverride) -> Self {
        self.overrides.retain(|o| o.period != overrides.period);
        self.overrides.push(overrides);
        self
    }

    /// The same world, writing only the tables of `period` (the truth
    /// tables still cover every period): what a closed loop needs each step.
    pub fn only_period(self, period: usize) -> Self {
        self.only_periods(&[period])
    }

    /// The same world, writing the tables of these periods only (the
    /// simulation still runs through every period).
    pub fn only_periods(mut self, periods: &[usize]) -> Self {
        self.only_periods = Some(periods.to_vec());
        self
    }

    /// The same world with a shock to the truth.
    pub fn with_shock(mut self, shock: Shock) -> Self {
        self.shock = Some(shock);
        self
    }

    /// The factor on the true revenue lift of `scheme` for `archetype` in
    /// `period`: 0 under the shock, else 1.
    pub(crate) fn lift_factor(
        &self,
        period: usize,
        archetype: Archetype,
        scheme: Option<usize>,
    ) -> f64 {
        match self.shock {
            Some(shock)
                if period >= shock.from_period
                    && archetype == shock.archetype
                    && scheme == Some(shock.scheme) =>
            {
                0.0
            }
            _ => 1.0,
        }
    }

    /// The replaced draw of `period`, if any.
    pub(crate) fn override_for(&self, period: usize) -> Option<&AssignmentOverride> {
        self.overrides.iter().find(|o| o.period == period)
    }

    /// Whether the tables of `period` are written.
    pub(crate) fn writes(&self, period: usize) -> bool {
        self.only_periods
            .as_ref()
            .is_none_or(|periods| periods.contains(&period))
    }

    /// Every partner in `period`'s draw with its archetype and the true
    /// expected value of each scheme for it: per scheme in [`SCHEMES`] order
    /// the expected revenue lift and the expected cost. Expected over the
    /// outcome and cost noise, so policies can be compared without it.
    pub fn expected_values(&self, period: usize) -> Vec<PartnerValue> {
        let n_slots = total_slots(self.params.n_partners, self.params.n_periods);
        (0..n_slots)
            .into_par_iter()
            .with_min_len(4096)
            .filter_map(|slot| {
                let history = simulate_slot(
                    self.params.seed,
                    slot as u64,
                    self.params.n_partners,
                    self.params.n_periods,
                    self.params.drift,
                );
                let snapshot = history.snapshot(self.params.seed, period, self.params.null_rate)?;
                snapshot.in_draw.then(|| {
                    let values = (0..SCHEMES.len())
                        .map(|s| {
                            snapshot.expected_value(
                                s,
                                self.lift_factor(period, snapshot.archetype, Some(s)),
                            )
                        })
                        .collect();
                    PartnerValue {
                        partner_id: snapshot.partner_id.clone(),
                        archetype: snapshot.archetype,
                        values,
                    }
                })
            })
            .collect()
    }

    /// The parameters.
    pub fn params(&self) -> &GeneratorValidParams {
        &self.params
    }

    pub(crate) fn slots(&self, range: std::ops::Range<usize>) -> Vec<SlotHistory> {
        range
            .into_par_iter()
            .map(|slot| {
                simulate_slot(
                    self.params.seed,
                    slot as u64,
                    self.params.n_partners,
                    self.params.n_periods,
                    self.params.drift,
                )
            })
            .collect()
    }
}

/// Generates every period into `out_dir` (which must exist and be empty).
pub fn generate(params: &GeneratorValidParams, out_dir: &Path) -> Result<GenerateSummary> {
    generate_world(&World::new(params.clone()), out_dir)
}

/// Generates a world (possibly with a replaced draw) into `out_dir`.
pub fn generate_world(world: &World, out_dir: &Path) -> Result<GenerateSummary> {
    let params = world.params();
    let n_slots = total_slots(params.n_partners, params.n_periods);
    let n_parts = n_slots.div_ceil(params.part_rows);
    let layout = write::Layout::new(out_dir, &params.periods, n_parts);
    layout.create_dirs(|period| world.writes(period))?;
    let chunk_truths = (0..n_parts)
        .into_par_iter()
        .map(|part| {
            let start = part * params.part_rows;
            let end = (start + params.part_rows).min(n_slots);
            write::write_chunk(world, &layout, part, world.slots(start..end))
        })
        .collect::<Result<Vec<_>>>()?;
    let truth = chunk_truths.into_iter().fold(
        write::TruthAccumulator::new(params.n_periods),
        |mut acc, chunk| {
            acc.merge(&chunk);
            acc
        },
    );
    write::write_truth_tables(world, &layout, &truth)?;
    let config = write::write_config_and_manifest(params, &layout, n_parts)?;
    Ok(GenerateSummary {
        out_dir: out_dir.to_path_buf(),
        periods: params.periods.clone(),
        n_partners: params.n_partners,
        n_parts,
        config,
    })
}

/// The true lift table (per period, archetype and scheme) without writing files.
pub fn truth_table(params: &GeneratorValidParams) -> Vec<TruthCell> {
    let world = World::new(params.clone());
    let n_slots = total_slots(params.n_partners, params.n_periods);
    let n_parts = n_slots.div_ceil(params.part_rows);
    let chunks: Vec<_> = (0..n_parts)
        .into_par_iter()
        .map(|part| {
            let start = part * params.part_rows;
            let end = (start + params.part_rows).min(n_slots);
            write::accumulate_chunk(&world, &world.slots(start..end))
        })
        .collect();
    let truth = chunks.into_iter().fold(
        write::TruthAccumulator::new(params.n_periods),
        |mut acc, chunk| {
            acc.merge(&chunk);
            acc
        },
    );
    truth.cells(params, |_| true)
}
