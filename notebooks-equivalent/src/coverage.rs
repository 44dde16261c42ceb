//! Do segtune's 95 % lift intervals cover the truth? One generated program
//! per seed (one period, strata post hoc, k fixed so that every seed has the
//! same number of cells), segtune run in-process, and each cell's interval
//! compared with the mean true effect of the cell's treated partners from
//! the generator's `truth/`. Used by walkthrough 03 and by the coverage test.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use segtune_data::generator::truth::read_effects;
use segtune_data::generator::GeneratorParams;

/// One estimated cell against its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageCell {
    /// Generator seed.
    pub seed: u64,
    /// Outcome.
    pub outcome: String,
    /// Stratum.
    pub segment_id: u32,
    /// Scheme.
    pub scheme_id: String,
    /// The smaller arm's partners.
    pub n_per_arm: u64,
    /// Mean true effect of the cell's treated partners.
    pub truth: f64,
    /// segtune's estimate.
    pub lift: f64,
    /// 95 % interval.
    pub ci: (f64, f64),
    /// HC2 error with the covariate (when one is configured).
    pub se: f64,
    /// Welch error without it.
    pub se_unadjusted: f64,
}

impl CoverageCell {
    /// Whether the interval holds the truth.
    pub fn covered(&self) -> bool {
        self.ci.0 <= self.truth && self.truth <= self.ci.1
    }
}

/// partner_id -> segment_id of a run's `segments.parquet` or
/// `assignments_next.parquet`, in file order.
pub fn segment_of(path: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for batch in crate::batches(path)? {
        let ids = batch
            .column_by_name("partner_id")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| anyhow::anyhow!("{} lacks partner_id", path.display()))?;
        let segments = batch
            .column_by_name("segment_id")
            .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            .ok_or_else(|| anyhow::anyhow!("{} lacks segment_id", path.display()))?;
        for row in 0..batch.num_rows() {
            out.push((ids.value(row).to_string(), segments.value(row)));
        }
    }
    Ok(out)
}

/// Generates one period of `partners` partners with `seed`, runs segtune
/// (k = `k`, no stability resamples) and returns every estimated cell of the
/// outcomes the generator has truth for.
pub fn coverage_cells(seed: u64, partners: usize, k: usize) -> anyhow::Result<Vec<CoverageCell>> {
    let params = GeneratorParams::new()
        .with_partners(partners)
        .with_periods(1)
        .with_seed(seed)
        .check()?;
    let crate::Walkthrough {
        work: _work,
        data,
        params,
        run_dir,
        summary,
        ..
    } = crate::run_generated(params, &format!("[segments]\nk = {k}\nbootstrap = 0\n"))?;
    let segment_of: HashMap<String, u32> = segment_of(&run_dir.join("segments.parquet"))?
        .into_iter()
        .collect();
    let effects = read_effects(&data, &params.periods[0])?;
    // (outcome, stratum, scheme) -> sum of true effects, partners
    let mut truth: BTreeMap<(&str, u32, &str), (f64, usize)> = BTreeMap::new();
    for row in &summary.lift {
        truth
            .entry((&row.outcome, row.segment_id, &row.scheme_id))
            .or_default();
    }
    for (partner, effect) in &effects {
        let Some(segment) = segment_of.get(partner) else {
            continue;
        };
        for ((outcome, stratum, scheme), (sum, n)) in truth.iter_mut() {
            if *stratum == *segment && *scheme == effect.scheme_id {
                if let Some(value) = effect.on(outcome) {
                    *sum += value;
                    *n += 1;
                }
            }
        }
    }
    Ok(summary
        .lift
        .iter()
        .filter_map(|row| {
            let (sum, n) =
                truth.get(&(row.outcome.as_str(), row.segment_id, row.scheme_id.as_str()))?;
            Some(CoverageCell {
                seed,
                outcome: row.outcome.clone(),
                segment_id: row.segment_id,
                scheme_id: row.scheme_id.clone(),
                n_per_arm: row.n_treated.min(row.n_holdout),
                truth: (*n > 0).then(|| sum / *n as f64)?,
                lift: row.lift?,
                ci: (row.ci_low?, row.ci_high?),
                se: row.se?,
                se_unadjusted: row.se_unadjusted?,
            })
        })
        .collect())
}

/// Coverage by bucket of partners per arm: (bucket label, cells, covered share).
pub fn coverage_by_bucket(cells: &[CoverageCell]) -> Vec<(String, usize, f64)> {
    const BUCKETS: [(u64, u64); 4] = [(0, 100), (100, 300), (300, 1000), (1000, u64::MAX)];
    let mut out = Vec::new();
    for (low, high) in BUCKETS {
        let bucket: Vec<&CoverageCell> = cells
            .iter()
            .filter(|c| c.n_per_arm >= low && c.n_per_arm < high)
            .collect();
        if bucket.is_empty() {
            continue;
        }
        let label = if high == u64::MAX {
            format!("{low} and more")
        } else {
            format!("{low} to {}", high - 1)
        };
        let covered = bucket.iter().filter(|c| c.covered()).count();
        out.push((label, bucket.len(), covered as f64 / bucket.len() as f64));
    }
    out
}
