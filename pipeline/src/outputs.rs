//! Writing the run's tables: Parquet with the schemas of data/SCHEMA.md, and
//! JSON where downstream systems want it.
//!
//! Every writer here takes a hand-off type and a folder; the folder is the
//! staging folder of the run, so nothing is visible until the whole run is
//! renamed into place.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use segtune_data::parquet_io::write_parquet;
use segtune_data::schema;

use crate::draw::NextAssignments;
use crate::evaluate::LiftRow;
use crate::ingest::PartnersTable;
use crate::segment::{SegmentProfile, Segments};
use crate::tune::WeightRow;

fn array<T, A: arrow_array::Array + 'static>(
    values: impl Iterator<Item = T>,
    build: impl FnOnce(Vec<T>) -> A,
) -> ArrayRef {
    Arc::new(build(values.collect()))
}

fn write(
    path: &Path,
    schema: Arc<arrow_schema::Schema>,
    columns: Vec<ArrayRef>,
) -> anyhow::Result<()> {
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    write_parquet(path, schema, &[batch])?;
    Ok(())
}

/// `segments.parquet`.
pub fn write_segments(
    dir: &Path,
    partners: &PartnersTable,
    segments: &Segments,
) -> anyhow::Result<()> {
    let info = |row: usize| &segments.segments[segments.member[row]];
    let n = partners.ids.len();
    write(
        &dir.join("segments.parquet"),
        schema::segments(),
        vec![
            array(partners.ids.iter().map(String::as_str), StringArray::from),
            array((0..n).map(|r| info(r).id), UInt32Array::from),
            array((0..n).map(|r| info(r).name.as_str()), StringArray::from),
            array((0..n).map(|r| info(r).source.as_str()), StringArray::from),
            array(segments.distance.iter().copied(), Float64Array::from),
            array(
                segments
                    .second
                    .iter()
                    .map(|s| s.map(|index| segments.segments[index].id)),
                UInt32Array::from,
            ),
            array(segments.margin.iter().copied(), Float64Array::from),
            array(
                segments.previous_segment_id.iter().copied(),
                UInt32Array::from,
            ),
        ],
    )
}

/// `segment_profiles.parquet`.
pub fn write_profiles(
    dir: &Path,
    features: &[String],
    profiles: &[SegmentProfile],
) -> anyhow::Result<()> {
    let mut columns = vec![
        array(profiles.iter().map(|p| p.id), UInt32Array::from),
        array(profiles.iter().map(|p| p.name.as_str()), StringArray::from),
        array(
            profiles.iter().map(|p| p.source.as_str()),
            StringArray::from,
        ),
        array(
            profiles.iter().map(|p| p.n_partners as u64),
            UInt64Array::from,
        ),
        array(
            profiles.iter().map(|p| p.share_partners),
            Float64Array::from,
        ),
        array(profiles.iter().map(|p| p.share_revenue), Float64Array::from),
    ];
    for index in 0..features.len() {
        columns.push(array(
            profiles.iter().map(|p| p.means[index]),
            Float64Array::from,
        ));
        columns.push(array(
            profiles.iter().map(|p| p.medians[index]),
            Float64Array::from,
        ));
    }
    write(
        &dir.join("segment_profiles.parquet"),
        schema::segment_profiles(features),
        columns,
    )
}

/// `lift.parquet`.
pub fn write_lift(dir: &Path, rows: &[LiftRow]) -> anyhow::Result<()> {
    write(
        &dir.join("lift.parquet"),
        schema::lift(),
        vec![
            array(rows.iter().map(|r| r.outcome.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.segment_id), UInt32Array::from),
            array(rows.iter().map(|r| r.scheme_id.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.n_treated), UInt64Array::from),
            array(rows.iter().map(|r| r.n_holdout), UInt64Array::from),
            array(rows.iter().map(|r| r.lift), Float64Array::from),
            array(rows.iter().map(|r| r.lift_rel), Float64Array::from),
            array(rows.iter().map(|r| r.se), Float64Array::from),
            array(rows.iter().map(|r| r.ci_low), Float64Array::from),
            array(rows.iter().map(|r| r.ci_high), Float64Array::from),
            array(rows.iter().map(|r| r.p_value), Float64Array::from),
            array(rows.iter().map(|r| r.q_value), Float64Array::from),
            array(rows.iter().map(|r| r.significant), BooleanArray::from),
            array(rows.iter().map(|r| r.mde), Float64Array::from),
            array(
                rows.iter().map(|r| r.incremental_outcome),
                Float64Array::from,
            ),
            array(rows.iter().map(|r| r.cost), Float64Array::from),
            array(rows.iter().map(|r| r.net), Float64Array::from),
            array(rows.iter().map(|r| r.roi), Float64Array::from),
            array(rows.iter().map(|r| r.method.as_str()), StringArray::from),
            array(
                rows.iter().map(|r| r.n_treated_missing_outcome),
                UInt64Array::from,
            ),
        ],
    )
}

/// `weights.parquet` and `weights.json` (the same rows).
pub fn write_weights(dir: &Path, rows: &[WeightRow]) -> anyhow::Result<()> {
    write(
        &dir.join("weights.parquet"),
        schema::weights(),
        vec![
            array(
                rows.iter().map(|r| r.target_period.as_str()),
                StringArray::from,
            ),
            array(rows.iter().map(|r| r.segment_id), UInt32Array::from),
            array(
                rows.iter().map(|r| r.segment_name.as_str()),
                StringArray::from,
            ),
            array(rows.iter().map(|r| r.scheme_id.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.weight), Float64Array::from),
            array(rows.iter().map(|r| r.previous_weight), Float64Array::from),
            array(rows.iter().map(|r| r.holdout_share), Float64Array::from),
            array(rows.iter().map(|r| r.reason.as_str()), StringArray::from),
        ],
    )?;
    write_json(&dir.join("weights.json"), &rows)
}

/// `assignments_next.parquet`.
pub fn write_assignments_next(
    dir: &Path,
    partners: &PartnersTable,
    next: &NextAssignments,
) -> anyhow::Result<()> {
    write(
        &dir.join("assignments_next.parquet"),
        schema::assignments_next(),
        vec![
            array(partners.ids.iter().map(String::as_str), StringArray::from),
            array(next.segment_id.iter().copied(), UInt32Array::from),
            array(next.scheme_id.iter().map(String::as_str), StringArray::from),
        ],
    )
}

/// `migration.parquet`: partners by previous and current segment.
pub fn write_migration(dir: &Path, segments: &Segments) -> anyhow::Result<()> {
    let mut counts: std::collections::BTreeMap<(Option<u32>, u32), u64> =
        std::collections::BTreeMap::new();
    for (member, previous) in segments.member.iter().zip(&segments.previous_segment_id) {
        *counts
            .entry((*previous, segments.segments[*member].id))
            .or_default() += 1;
    }
    write(
        &dir.join("migration.parquet"),
        schema::migration(),
        vec![
            array(counts.keys().map(|k| k.0), UInt32Array::from),
            array(counts.keys().map(|k| k.1), UInt32Array::from),
            array(counts.values().copied(), UInt64Array::from),
        ],
    )
}

/// Pretty JSON with a final newline.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    fs_err::write(path, text)?;
    Ok(())
}
