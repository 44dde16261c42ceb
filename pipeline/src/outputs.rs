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
use segtune_data::parquet_io::{write_parquet, write_parquet_batches};
use segtune_data::schema;

use crate::draw::NextAssignments;
use crate::evaluate::{CellDesign, LiftRow, RandomisationRow};
use crate::ids::PartnerIds;
use crate::ingest::PartnersTable;
use crate::power::PowerRow;
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

/// Rows per record batch of the tables with a row per partner: their Arrow
/// columns are built one batch at a time (a multiple of the Parquet
/// writer's 1,024-row mini-batches, so the file is the same bytes as from
/// one batch).
const BATCH_ROWS: usize = 64 * 1024;

/// Writes a table of `n` rows whose columns `columns(rows)` builds for a
/// range of rows, one batch of [`BATCH_ROWS`] at a time.
fn write_rows(
    path: &Path,
    schema: Arc<arrow_schema::Schema>,
    n: usize,
    columns: impl Fn(std::ops::Range<usize>) -> Vec<ArrayRef>,
) -> anyhow::Result<()> {
    let batches = (0..n.div_ceil(BATCH_ROWS).max(1)).map(|batch| {
        let rows = batch * BATCH_ROWS..((batch + 1) * BATCH_ROWS).min(n);
        Ok(RecordBatch::try_new(schema.clone(), columns(rows))?)
    });
    write_parquet_batches(path, schema.clone(), batches)?;
    Ok(())
}

/// One partner's row of `segments.parquet`.
pub struct SegmentRow<'a> {
    /// Segment id.
    pub id: u32,
    /// Segment name.
    pub name: &'a str,
    /// How the partner got there (a rule, k-means, an override).
    pub source: &'a str,
    /// Distance to its centroid (k-means segments only).
    pub distance: Option<f64>,
    /// Id of the nearest other segment.
    pub second: Option<u32>,
    /// Distance gap to that segment.
    pub margin: Option<f64>,
    /// The partner's segment in the previous run.
    pub previous: Option<u32>,
}

/// A `segments.parquet` of the partners `ids` at `path`, row `r` being
/// `row(r)`: the one writer of that table, for a run and for `assign`.
pub fn write_segment_rows<'a>(
    path: &Path,
    ids: &PartnerIds,
    row: impl Fn(usize) -> SegmentRow<'a>,
) -> anyhow::Result<()> {
    write_rows(path, schema::segments(), ids.len(), |rows| {
        let batch: Vec<SegmentRow> = rows.clone().map(&row).collect();
        vec![
            array(ids.range(rows), StringArray::from),
            array(batch.iter().map(|r| r.id), UInt32Array::from),
            array(batch.iter().map(|r| r.name), StringArray::from),
            array(batch.iter().map(|r| r.source), StringArray::from),
            array(batch.iter().map(|r| r.distance), Float64Array::from),
            array(batch.iter().map(|r| r.second), UInt32Array::from),
            array(batch.iter().map(|r| r.margin), Float64Array::from),
            array(batch.iter().map(|r| r.previous), UInt32Array::from),
        ]
    })
}

/// `segments.parquet` of a run.
pub fn write_segments(
    dir: &Path,
    partners: &PartnersTable,
    segments: &Segments,
) -> anyhow::Result<()> {
    write_segment_rows(&dir.join("segments.parquet"), &partners.ids, |r| {
        let info = &segments.segments[segments.member[r]];
        SegmentRow {
            id: info.id,
            name: &info.name,
            source: if segments.pinned[r] {
                crate::segment::SOURCE_OVERRIDE
            } else {
                &info.source
            },
            distance: segments.distance[r],
            second: segments.second[r].map(|index| segments.segments[index].id),
            margin: segments.margin[r],
            previous: segments.previous_segment_id[r],
        }
    })
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
            array(rows.iter().map(|r| r.covariate.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.se_unadjusted), Float64Array::from),
            array(rows.iter().map(|r| r.boot_ci_low), Float64Array::from),
            array(rows.iter().map(|r| r.boot_ci_high), Float64Array::from),
        ],
    )
}

/// `power.parquet`.
pub fn write_power(dir: &Path, rows: &[PowerRow]) -> anyhow::Result<()> {
    write(
        &dir.join("power.parquet"),
        schema::power(),
        vec![
            array(rows.iter().map(|r| r.outcome.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.segment_id), UInt32Array::from),
            array(rows.iter().map(|r| r.n_partners), UInt64Array::from),
            array(rows.iter().map(|r| r.min_effect), Float64Array::from),
            array(rows.iter().map(|r| r.holdout_share), Float64Array::from),
            array(
                rows.iter().map(|r| r.mde_at_holdout_share),
                Float64Array::from,
            ),
            array(
                rows.iter().map(|r| r.recommended_holdout_share),
                Float64Array::from,
            ),
            array(rows.iter().map(|r| r.reachable), BooleanArray::from),
        ],
    )
}

/// `randomisation.parquet`.
pub fn write_randomisation(dir: &Path, rows: &[RandomisationRow]) -> anyhow::Result<()> {
    write(
        &dir.join("randomisation.parquet"),
        schema::randomisation(),
        vec![
            array(rows.iter().map(|r| r.segment_id), UInt32Array::from),
            array(rows.iter().map(|r| r.scheme_id.as_str()), StringArray::from),
            array(rows.iter().map(|r| r.n_observed), UInt64Array::from),
            array(rows.iter().map(|r| r.expected_share), Float64Array::from),
            array(rows.iter().map(|r| r.n_expected), Float64Array::from),
            array(rows.iter().map(|r| r.chi_square), Float64Array::from),
            array(rows.iter().map(|r| r.df), UInt32Array::from),
            array(rows.iter().map(|r| r.p_value), Float64Array::from),
            array(rows.iter().map(|r| r.mismatch), BooleanArray::from),
        ],
    )
}

/// The `--dump-design` debug output: `design.parquet` in `dir`, one row per
/// partner of every estimated cell: `outcome`, `segment_id`, `scheme_id`,
/// `y`, then the design's columns (null where a cell does not use one).
pub fn write_designs(dir: &Path, designs: &[CellDesign]) -> anyhow::Result<()> {
    use arrow_schema::{DataType, Field, Schema};
    const COLUMNS: [&str; 6] = [
        "const",
        "treated",
        "x_c",
        "missing_c",
        "treated_x_c",
        "treated_missing_c",
    ];
    let rows = || {
        designs
            .iter()
            .flat_map(|cell| (0..cell.design.y.len()).map(move |i| (cell, i)))
    };
    let mut fields = vec![
        Field::new("outcome", DataType::Utf8, false),
        Field::new(schema::SEGMENT_ID, DataType::UInt32, false),
        Field::new(schema::SCHEME_ID, DataType::Utf8, false),
        Field::new("y", DataType::Float64, false),
    ];
    let mut columns = vec![
        array(rows().map(|(c, _)| c.outcome.as_str()), StringArray::from),
        array(rows().map(|(c, _)| c.segment_id), UInt32Array::from),
        array(rows().map(|(c, _)| c.scheme_id.as_str()), StringArray::from),
        array(rows().map(|(c, i)| c.design.y[i]), Float64Array::from),
    ];
    for name in COLUMNS {
        fields.push(Field::new(name, DataType::Float64, true));
        columns.push(array(
            rows().map(|(c, i)| {
                let index = c.design.columns.iter().position(|n| *n == name)?;
                Some(c.design.x[[i, index]])
            }),
            Float64Array::from,
        ));
    }
    fs_err::create_dir_all(dir)?;
    write(
        &dir.join("design.parquet"),
        Arc::new(Schema::new(fields)),
        columns,
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
    write_rows(
        &dir.join("assignments_next.parquet"),
        schema::assignments_next(),
        partners.ids.len(),
        |rows| {
            vec![
                array(partners.ids.range(rows.clone()), StringArray::from),
                array(
                    next.segment_id[rows.clone()].iter().copied(),
                    UInt32Array::from,
                ),
                array(
                    next.scheme_id[rows.clone()].iter().map(String::as_str),
                    StringArray::from,
                ),
                array(next.holdout_streak[rows].iter().copied(), UInt32Array::from),
            ]
        },
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
