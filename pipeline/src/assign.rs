//! `segtune assign`: put partners into an existing run's segments without
//! re-clustering: the run's rules first, then the run's saved transform and
//! centroids. The same partner gets the same segment as in the run itself
//! (a test holds this).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow_array::cast::AsArray;
use segtune_models::segmentation::assign_to_centroids;

use crate::config::FeatureSettings;
use crate::continuity::PreviousModel;
use crate::exit::UsageError;
use crate::ingest::{read_partners, IngestError};
use crate::outputs::SegmentRow;
use crate::rules::{apply, Rule};

/// What `assign` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AssignSummary {
    /// The file written.
    pub out: PathBuf,
    /// The run used.
    pub run_id: String,
    /// Partners assigned.
    pub partners: usize,
    /// Partners per segment id.
    pub segments: BTreeMap<u32, usize>,
}

fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = fs_err::read_to_string(path).map_err(|e| {
        UsageError(format!(
            "`{}` is not a segtune run folder: {e}",
            path.parent().unwrap_or(path).display()
        ))
    })?;
    serde_json::from_str(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Segment names and sources by id, from the run's profiles.
fn segment_names(run_dir: &Path) -> anyhow::Result<HashMap<u32, (String, String)>> {
    let path = run_dir.join("segment_profiles.parquet");
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = HashMap::new();
    for batch in reader {
        let batch = batch?;
        let (Some(ids), Some(names), Some(sources)) = (
            batch.column_by_name("segment_id").and_then(|c| {
                c.as_primitive_opt::<arrow_array::types::UInt32Type>()
                    .cloned()
            }),
            batch
                .column_by_name("segment_name")
                .and_then(|c| c.as_string_opt::<i32>().cloned()),
            batch
                .column_by_name("source")
                .and_then(|c| c.as_string_opt::<i32>().cloned()),
        ) else {
            anyhow::bail!(
                "`{}` lacks segment_id, segment_name or source",
                path.display()
            );
        };
        for ((id, name), source) in ids.iter().zip(names.iter()).zip(sources.iter()) {
            if let (Some(id), Some(name), Some(source)) = (id, name, source) {
                out.insert(id, (name.to_string(), source.to_string()));
            }
        }
    }
    Ok(out)
}

/// Assigns the partners in `partners_path` to the segments of `run_dir`.
pub fn assign(
    run_dir: &Path,
    partners_path: &Path,
    out: &Path,
    force: bool,
) -> anyhow::Result<AssignSummary> {
    if out.exists() && !force {
        return Err(UsageError(format!(
            "`{}` already exists: choose another file or pass --force",
            out.display()
        ))
        .into());
    }
    let manifest = read_json(&run_dir.join("manifest.json"))?;
    let model_json = read_json(&run_dir.join("model.json"))?;
    let model = PreviousModel::from_json(&model_json)
        .ok_or_else(|| UsageError(format!("`{}` has no usable model.json", run_dir.display())))?;
    let config = &manifest["config"];
    let numeric = match config["features"]["numeric"].as_array() {
        Some(_) => strings(&config["features"]["numeric"]),
        None => model
            .transform
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect(),
    };
    let features = FeatureSettings {
        numeric: Some(numeric),
        categorical: strings(&config["features"]["categorical"]),
        revenue: config["features"]["revenue"]
            .as_str()
            .unwrap_or(crate::config::DEFAULT_REVENUE_COLUMN)
            .to_string(),
        ..FeatureSettings::default()
    };
    let mut problems = Vec::new();
    // The run's limits (the defaults when its manifest has none).
    let limits: crate::config::LimitSettings =
        serde_json::from_value(config["limits"].clone()).unwrap_or_default();
    let partners = read_partners(partners_path, &features, &limits, &mut problems);
    let partners = match partners {
        Some(p) if problems.is_empty() => p,
        _ => return Err(IngestError { problems }.into()),
    };
    let rules: Vec<Rule> = config["rules"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    Rule::parse(
                        r["name"].as_str().unwrap_or(""),
                        r["segment_name"].as_str().unwrap_or(""),
                        r["condition"].as_str().unwrap_or(""),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| UsageError(e.to_string()))?
        .unwrap_or_default();
    let matches = apply(&rules, &partners).map_err(|e| UsageError(e.to_string()))?;
    let rule_ids: Vec<Option<u32>> = rules
        .iter()
        .map(|r| {
            manifest["rule_segment_ids"][&r.name]
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
        })
        .collect();
    let names = segment_names(run_dir)?;

    let n = partners.ids.len();
    let clustered: Vec<usize> = (0..n).filter(|r| matches.rule_of[*r].is_none()).collect();
    let x = model
        .transform_rows(&partners, &clustered)
        .ok_or_else(|| UsageError("the partners lack a column the run's transform needs".into()))?;
    let assignment = assign_to_centroids(x.view(), model.centroids.view());
    let mut segment_id: Vec<Option<u32>> = vec![None; n];
    let mut distance = vec![None; n];
    let mut second = vec![None; n];
    let mut margin = vec![None; n];
    for (row, rule) in matches.rule_of.iter().enumerate() {
        if let Some(rule) = rule {
            segment_id[row] = rule_ids[*rule];
        }
    }
    for (position, row) in clustered.iter().enumerate() {
        segment_id[*row] = Some(model.segment_ids[assignment.labels[position]]);
        distance[*row] = Some(assignment.distances[position]);
        second[*row] = assignment.second[position].map(|s| model.segment_ids[s]);
        margin[*row] = assignment.margins[position];
    }
    if let Some(row) = segment_id.iter().position(Option::is_none) {
        anyhow::bail!(
            "partner `{}` matched a rule whose segment the run does not have",
            &partners.ids[row]
        );
    }
    let ids: Vec<u32> = segment_id.into_iter().flatten().collect();
    // Every segment's name and source, with a neutral name for one the run
    // did not list.
    let labels: HashMap<u32, (String, String)> = ids
        .iter()
        .map(|id| {
            let label = names
                .get(id)
                .cloned()
                .unwrap_or_else(|| (format!("Segment {id}"), "kmeans".to_string()));
            (*id, label)
        })
        .collect();
    crate::outputs::write_segment_rows(out, &partners.ids, |r| {
        let (name, source) = &labels[&ids[r]];
        SegmentRow {
            id: ids[r],
            name,
            source,
            distance: distance[r],
            second: second[r],
            margin: margin[r],
            previous: None,
        }
    })?;
    // The rename into place made durable.
    crate::output::sync_parent(out)?;
    let mut segments = BTreeMap::new();
    for id in &ids {
        *segments.entry(*id).or_default() += 1;
    }
    Ok(AssignSummary {
        out: out.to_path_buf(),
        run_id: manifest["run_id"].as_str().unwrap_or_default().to_string(),
        partners: n,
        segments,
    })
}
