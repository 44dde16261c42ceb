//! The previous run: what this run needs from the last period's run folder.
//!
//! Its segments give the evaluated period's strata (when the assignments do
//! not carry them) and keep segment ids stable; its weights are the
//! `previous_weight` of each new weight; its manifest says which segment ids
//! were ever used, so a retired id is never handed out again.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::ingest::{IngestError, Problem};

/// What a previous run left behind.
#[derive(Debug, Clone, Default)]
pub struct PreviousRun {
    /// The run folder.
    pub dir: PathBuf,
    /// Its run id.
    pub run_id: Option<String>,
    /// Its status (`proposed`, `approved`, `published`).
    pub status: Option<String>,
    /// Segment per partner.
    pub segment_of: HashMap<String, u32>,
    /// Segment names by id.
    pub segment_names: BTreeMap<u32, String>,
    /// Weights by (segment id, scheme id).
    pub weights: HashMap<(u32, String), f64>,
    /// Its holdout share by segment id (the draw the evaluated period had).
    pub holdout_share: HashMap<u32, f64>,
    /// Its posterior of net value per partner by segment and scheme (empty
    /// for runs before the posterior was written).
    pub posterior: HashMap<(u32, String), segtune_models::tuning::Belief>,
    /// Consecutive holdout periods per partner, from its draw (empty for
    /// runs before the streak was written).
    pub holdout_streak: HashMap<String, u32>,
    /// Highest segment id ever used up to that run.
    pub max_segment_id: u32,
    /// Segment id of each rule (by rule name).
    pub rule_ids: BTreeMap<String, u32>,
    /// The saved transform and centroids, for continuity.
    pub model: Option<crate::continuity::PreviousModel>,
    /// Per-feature bins, for drift.
    pub drift_reference: Vec<segtune_models::drift::DriftReference>,
}

fn problem(file: &Path, column: Option<&str>, message: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        column: column.map(str::to_string),
        row: None,
        partner_id: None,
        message,
    }
}

fn batches(path: &Path) -> Result<Vec<arrow_array::RecordBatch>, Problem> {
    let file = std::fs::File::open(path)
        .map_err(|e| problem(path, None, format!("cannot be read: {e}")))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| problem(path, None, format!("is not a readable Parquet file: {e}")))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| problem(path, None, format!("cannot be decoded: {e}")))
}

/// Reads a previous run folder.
pub fn read(dir: &Path) -> Result<PreviousRun, IngestError> {
    let mut out = PreviousRun {
        dir: dir.to_path_buf(),
        ..PreviousRun::default()
    };
    let mut problems = Vec::new();
    let segments_path = dir.join("segments.parquet");
    match batches(&segments_path) {
        Err(p) => problems.push(p),
        Ok(batches) => {
            for batch in batches {
                let (Some(ids), Some(segments), Some(names)) = (
                    batch.column_by_name("partner_id"),
                    batch.column_by_name("segment_id"),
                    batch.column_by_name("segment_name"),
                ) else {
                    problems.push(problem(
                        &segments_path,
                        None,
                        "lacks partner_id, segment_id or segment_name".into(),
                    ));
                    break;
                };
                let (Some(ids), Some(segments), Some(names)) = (
                    ids.as_string_opt::<i32>(),
                    segments.as_primitive_opt::<UInt32Type>(),
                    names.as_string_opt::<i32>(),
                ) else {
                    problems.push(problem(
                        &segments_path,
                        None,
                        "has unexpected column types".into(),
                    ));
                    break;
                };
                for ((id, segment), name) in ids.iter().zip(segments.iter()).zip(names.iter()) {
                    if let (Some(id), Some(segment)) = (id, segment) {
                        out.segment_of.insert(id.to_string(), segment);
                        out.max_segment_id = out.max_segment_id.max(segment);
                        if let Some(name) = name {
                            out.segment_names
                                .entry(segment)
                                .or_insert_with(|| name.to_string());
                        }
                    }
                }
            }
        }
    }
    let weights_path = dir.join("weights.parquet");
    match batches(&weights_path) {
        Err(p) => problems.push(p),
        Ok(batches) => {
            for batch in batches {
                let columns = (
                    batch
                        .column_by_name("segment_id")
                        .and_then(|c| c.as_primitive_opt::<UInt32Type>().cloned()),
                    batch
                        .column_by_name("scheme_id")
                        .and_then(|c| c.as_string_opt::<i32>().cloned()),
                    batch
                        .column_by_name("weight")
                        .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned()),
                    batch
                        .column_by_name("holdout_share")
                        .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned()),
                );
                let (Some(segments), Some(schemes), Some(weights), Some(holdout)) = columns else {
                    problems.push(problem(
                        &weights_path,
                        None,
                        "lacks segment_id, scheme_id, weight or holdout_share".into(),
                    ));
                    break;
                };
                for (((segment, scheme), weight), holdout) in segments
                    .iter()
                    .zip(schemes.iter())
                    .zip(weights.iter())
                    .zip(holdout.iter())
                {
                    if let (Some(segment), Some(scheme), Some(weight)) = (segment, scheme, weight) {
                        out.weights.insert((segment, scheme.to_string()), weight);
                    }
                    if let (Some(segment), Some(holdout)) = (segment, holdout) {
                        out.holdout_share.insert(segment, holdout);
                    }
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("model.json")) {
        if let Ok(model) = serde_json::from_str::<serde_json::Value>(&text) {
            out.model = crate::continuity::PreviousModel::from_json(&model);
            out.drift_reference =
                serde_json::from_value(model["drift_reference"].clone()).unwrap_or_default();
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir.join("posterior.json")) {
        let rows: Vec<crate::tune::PosteriorRow> = serde_json::from_str(&text)
            .map_err(|e| {
                problem(
                    &dir.join("posterior.json"),
                    None,
                    format!("is not a segtune posterior: {e}"),
                )
            })
            .unwrap_or_else(|p| {
                problems.push(p);
                Vec::new()
            });
        for row in rows {
            out.posterior.insert(
                (row.segment_id, row.scheme_id),
                segtune_models::tuning::Belief {
                    mean: row.mean,
                    variance: row.variance,
                },
            );
        }
    }
    if let Ok(batches) = batches(&dir.join("assignments_next.parquet")) {
        for batch in batches {
            let (Some(ids), Some(streaks)) = (
                batch
                    .column_by_name("partner_id")
                    .and_then(|c| c.as_string_opt::<i32>().cloned()),
                batch
                    .column_by_name("holdout_streak")
                    .and_then(|c| c.as_primitive_opt::<UInt32Type>().cloned()),
            ) else {
                break;
            };
            for (id, streak) in ids.iter().zip(streaks.iter()) {
                if let (Some(id), Some(streak)) = (id, streak) {
                    if streak > 0 {
                        out.holdout_streak.insert(id.to_string(), streak);
                    }
                }
            }
        }
    }
    let manifest_path = dir.join("manifest.json");
    match std::fs::read_to_string(&manifest_path)
        .map(|text| serde_json::from_str::<serde_json::Value>(&text))
    {
        Ok(Ok(manifest)) => {
            out.run_id = manifest["run_id"].as_str().map(str::to_string);
            out.status = manifest["status"].as_str().map(str::to_string);
            if let Some(rules) = manifest["rule_segment_ids"].as_object() {
                for (name, id) in rules {
                    if let Some(id) = id.as_u64().and_then(|id| u32::try_from(id).ok()) {
                        out.rule_ids.insert(name.clone(), id);
                    }
                }
            }
            if let Some(high) = manifest["segment_id_high_water"].as_u64() {
                out.max_segment_id = out
                    .max_segment_id
                    .max(u32::try_from(high).unwrap_or(u32::MAX));
            }
        }
        Ok(Err(error)) => problems.push(problem(
            &manifest_path,
            None,
            format!("is not valid JSON: {error}"),
        )),
        Err(error) => problems.push(problem(
            &manifest_path,
            None,
            format!("cannot be read: {error}"),
        )),
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(IngestError { problems })
    }
}
