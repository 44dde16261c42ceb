//! Issue 11, valid but unusual inputs: the partners table written with
//! every integer width, Float16/32/64, dictionary-encoded and large text,
//! nulls in every column, row groups of 37 rows and pages of a few values,
//! two part files with their columns in different orders, and partner ids
//! in many scripts and lengths, reads exactly as the same table written
//! plainly (Utf8 and Float64, one file); the assignments and outcomes too.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use segtune::config::{Overrides, RunSettings};
use segtune::ingest::ingest;

use crate::common::{run, segtune};

const ROWS: usize = 300;

/// The numeric columns and the type each is written as.
const NUMERIC: [(&str, DataType); 11] = [
    ("n_i8", DataType::Int8),
    ("n_i16", DataType::Int16),
    ("n_i32", DataType::Int32),
    ("n_i64", DataType::Int64),
    ("n_u8", DataType::UInt8),
    ("n_u16", DataType::UInt16),
    ("n_u32", DataType::UInt32),
    ("n_u64", DataType::UInt64),
    ("n_f16", DataType::Float16),
    ("n_f32", DataType::Float32),
    ("n_f64", DataType::Float64),
];

/// Partner ids in many scripts and lengths (1 to 256 bytes, the longest
/// accepted), unique.
fn partner_id(row: usize) -> String {
    let stem = match row % 6 {
        0 => "P".to_string(),
        1 => "partenaire-é".to_string(),
        2 => "合作伙伴".to_string(),
        3 => "شريك".to_string(),
        4 => "🙂".to_string(),
        _ => "x".repeat(segtune_data::ids::MAX_ID_LEN - row.to_string().len()),
    };
    let id = format!("{stem}{row}");
    assert!(id.len() <= segtune_data::ids::MAX_ID_LEN);
    id
}

/// A value every numeric type holds exactly (small whole numbers, and
/// halves for the floating ones), null every 7th row (shifted per column).
fn value(row: usize, column: usize) -> Option<f64> {
    if (row + column).is_multiple_of(7) {
        return None;
    }
    let whole = ((row * 31 + column * 17) % 100) as f64;
    Some(if column >= 8 { whole + 0.5 } else { whole })
}

fn tier(row: usize) -> Option<&'static str> {
    [Some("gold"), Some("silver"), None, Some("registered")][row % 4]
}

/// The plain table: Utf8 and Float64 columns.
fn plain_columns(rows: std::ops::Range<usize>) -> Vec<(String, ArrayRef)> {
    let mut columns: Vec<(String, ArrayRef)> = vec![(
        "partner_id".into(),
        Arc::new(StringArray::from(
            rows.clone().map(partner_id).collect::<Vec<_>>(),
        )),
    )];
    for (j, (name, _)) in NUMERIC.iter().enumerate() {
        columns.push((
            (*name).into(),
            Arc::new(Float64Array::from(
                rows.clone().map(|r| value(r, j)).collect::<Vec<_>>(),
            )),
        ));
    }
    columns.push((
        "tier".into(),
        Arc::new(StringArray::from(rows.map(tier).collect::<Vec<_>>())),
    ));
    columns
}

fn write(path: &Path, columns: Vec<(String, ArrayRef)>, properties: WriterProperties) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, array)| array).collect(),
    )
    .expect("batch");
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).expect("create"),
        schema,
        Some(properties),
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

/// The unusual table: each numeric column cast to its type, the ids and the
/// tier as the given text types; the columns reversed or not.
fn unusual_columns(
    rows: std::ops::Range<usize>,
    reversed: bool,
    [id_type, tier_type]: [DataType; 2],
) -> Vec<(String, ArrayRef)> {
    let mut columns: Vec<(String, ArrayRef)> = plain_columns(rows)
        .into_iter()
        .map(|(name, array)| {
            let target = match name.as_str() {
                "partner_id" => id_type.clone(),
                "tier" => tier_type.clone(),
                other => NUMERIC
                    .iter()
                    .find(|(n, _)| *n == other)
                    .map(|(_, t)| t.clone())
                    .expect("a numeric column"),
            };
            let cast = arrow_cast::cast(&array, &target).expect("cast");
            (name, cast)
        })
        .collect();
    if reversed {
        columns.reverse();
    }
    columns
}

const CONFIG: &str = r#"period = "2026-Q3"
seed = 3

[inputs]
partners = "PARTNERS"

[features]
numeric = ["n_i8", "n_i16", "n_i32", "n_i64", "n_u8", "n_u16", "n_u32", "n_u64", "n_f16", "n_f32", "n_f64"]
categorical = ["tier"]
revenue = "n_f64"

[segments]
k-min = 2
k-max = 3
fallback-k = 2

[tuning]
schemes = ["cert_bonus", "deal_reg_spiff"]
"#;

fn settings(dir: &Path, partners: &str) -> std::path::PathBuf {
    let config = dir.join(format!("{partners}.toml"));
    std::fs::write(&config, CONFIG.replace("PARTNERS", partners)).expect("config");
    config
}

#[test]
fn unusual_but_valid_partners_read_as_the_plain_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        &dir.path().join("plain.parquet"),
        plain_columns(0..ROWS),
        WriterProperties::builder().build(),
    );
    let tiny = || {
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(37))
            .set_data_page_row_count_limit(5)
            .set_write_batch_size(5)
            .set_dictionary_enabled(true)
            .build()
    };
    let plain = ingest(
        &RunSettings::load(
            &settings(dir.path(), "plain.parquet"),
            &Overrides::default(),
        )
        .expect("config"),
    )
    .expect("the plain table is valid");
    let dictionary =
        |key: DataType, value: DataType| DataType::Dictionary(Box::new(key), Box::new(value));
    // Text as dictionaries and large strings; then as string views and a
    // dictionary of views.
    for (name, text_types) in [
        (
            "unusual",
            [
                dictionary(DataType::Int32, DataType::Utf8),
                DataType::LargeUtf8,
            ],
        ),
        (
            "views",
            [
                DataType::Utf8View,
                dictionary(DataType::Int8, DataType::Utf8View),
            ],
        ),
    ] {
        let parts = dir.path().join(name);
        std::fs::create_dir_all(&parts).expect("folder");
        write(
            &parts.join("part-0.parquet"),
            unusual_columns(0..ROWS / 2, false, text_types.clone()),
            tiny(),
        );
        write(
            &parts.join("part-1.parquet"),
            unusual_columns(ROWS / 2..ROWS, true, text_types),
            tiny(),
        );
        let unusual = ingest(
            &RunSettings::load(&settings(dir.path(), name), &Overrides::default()).expect("config"),
        )
        .expect("the unusual table is valid");
        assert_eq!(unusual.partners.ids, plain.partners.ids);
        assert_eq!(unusual.partners.ids.len(), ROWS);
        assert_eq!(&unusual.partners.ids[5], &partner_id(5));
        assert_eq!(unusual.partners.ids[5].len(), segtune_data::ids::MAX_ID_LEN);
        let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for (a, b) in unusual.partners.numeric.iter().zip(&plain.partners.numeric) {
            assert_eq!(a.name, b.name);
            assert_eq!(
                bits(&a.values),
                bits(&b.values),
                "{name}: column `{}`",
                a.name
            );
            assert!(a.n_missing() > 0);
        }
        assert_eq!(unusual.partners.numeric.len(), NUMERIC.len());
        assert_eq!(
            unusual.partners.categorical, plain.partners.categorical,
            "{name}"
        );
    }
    // And the whole job runs on it.
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(settings(dir.path(), "unusual"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert!(out.join("segments.parquet").is_file());
}

#[test]
fn a_single_segments_worth_of_partners_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    crate::common::generate_into(&data, &["--partners", "300"]);
    let config = data.join("segtune.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}\n[segments]\nk = 1\n")).expect("config");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(&mut crate::common::segtune_run(&config, &out));
    assert_eq!(code, 0, "{stderr}");
    let (_, batches) = crate::common::read(&out.join("segments.parquet"));
    let sources = crate::common::strings(&batches, "source");
    let kmeans_ids: std::collections::BTreeSet<u32> = crate::common::u32s(&batches, "segment_id")
        .into_iter()
        .zip(&sources)
        .filter(|(_, source)| source.as_deref() == Some("kmeans"))
        .map(|(id, _)| id.expect("segment"))
        .collect();
    assert_eq!(kmeans_ids.len(), 1, "{kmeans_ids:?}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["quality"]["k"], 1);
}

/// Rewrites `path` with each named column cast to its type (the others as
/// they are), in small row groups.
fn recast(path: &Path, types: &[(&str, DataType)]) {
    let (schema, batches) = crate::common::read(path);
    assert_eq!(batches.len(), 1, "a small table");
    let columns: Vec<(String, ArrayRef)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let array = batches[0].column(i).clone();
            let array = match types.iter().find(|(name, _)| name == field.name()) {
                Some((_, target)) => arrow_cast::cast(&array, target).expect("cast"),
                None => array,
            };
            (field.name().clone(), array)
        })
        .collect();
    write(
        path,
        columns,
        WriterProperties::builder()
            .set_max_row_group_row_count(Some(2))
            .build(),
    );
    let (written, _) = crate::common::read(path);
    for (name, target) in types {
        let field = written.field_with_name(name).expect("column");
        assert_eq!(field.data_type(), target, "`{name}` written as {target}");
    }
}

#[test]
fn unusual_but_valid_assignments_and_outcomes_read_as_the_plain_tables() {
    let fixture = crate::common::Fixture::new();
    let load = || {
        ingest(
            &RunSettings::load(&fixture.path("segtune.toml"), &Overrides::default())
                .expect("config"),
        )
        .expect("valid inputs")
    };
    let plain = load();
    let dictionary =
        |key: DataType, value: DataType| DataType::Dictionary(Box::new(key), Box::new(value));
    recast(
        &fixture.path("assignments.parquet"),
        &[
            ("partner_id", DataType::LargeUtf8),
            ("scheme_id", dictionary(DataType::Int8, DataType::Utf8View)),
            ("cost", DataType::Float32),
            ("segment_id", DataType::Int8),
        ],
    );
    recast(
        &fixture.path("outcomes.parquet"),
        &[
            ("partner_id", dictionary(DataType::UInt16, DataType::Utf8)),
            ("revenue", DataType::Float16),
            ("revenue_pre", DataType::Int16),
        ],
    );
    let unusual = load();
    let bits = |values: &[f64]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let (a, b) = (
        unusual.assignments.expect("assignments"),
        plain.assignments.expect("assignments"),
    );
    assert_eq!(a.partner_row, b.partner_row);
    assert_eq!(a.scheme, b.scheme);
    assert_eq!(a.schemes, b.schemes);
    assert_eq!(bits(&a.cost), bits(&b.cost));
    assert_eq!(a.segment_id, b.segment_id);
    assert!(a.segment_id.contains(&None));
    let (a, b) = (
        unusual.outcomes.expect("outcomes"),
        plain.outcomes.expect("outcomes"),
    );
    assert_eq!(a.partner_row, b.partner_row);
    assert_eq!(a.columns.len(), 2);
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(x.name, y.name);
        assert_eq!(bits(&x.values), bits(&y.values), "`{}`", x.name);
    }
}
