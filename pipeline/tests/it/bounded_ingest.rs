//! Issue 10's check: the memory-bounded ingest (row groups decoded in
//! parallel, each column converted and its Arrow arrays freed before the
//! next, partner ids in one buffer) gives the same partners table, and so the
//! same scaled matrix, as the simplest read of the same Parquet: every file
//! read whole, in name order, each column cast to Float64 or taken as text.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use segtune::config::{Overrides, RunSettings};
use segtune::features;
use segtune::ingest::{ingest, CategoricalColumn, NumericColumn, PartnersTable};

use crate::common::{generate_into, parquet_files, read, rewrite_with_row_groups};

/// The partners table as the simplest reader sees it.
fn simple_partners(path: &Path, like: &PartnersTable) -> PartnersTable {
    let batches: Vec<RecordBatch> = parquet_files(path)
        .iter()
        .flat_map(|file| read(file).1)
        .collect();
    let floats = |name: &str| -> Vec<f64> {
        batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column_by_name(name).expect(name);
                let cast = arrow_cast::cast(column, &DataType::Float64).expect("numeric");
                cast.as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let texts = |name: &str| -> Vec<Option<String>> {
        batches
            .iter()
            .flat_map(|batch| {
                let column = batch.column_by_name(name).expect(name);
                let cast = arrow_cast::cast(column, &DataType::Utf8).expect("text");
                cast.as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let numeric = |name: &str| NumericColumn {
        name: name.to_string(),
        values: floats(name),
    };
    PartnersTable {
        ids: texts("partner_id")
            .into_iter()
            .map(|id| id.expect("id"))
            .collect(),
        numeric: like.numeric.iter().map(|c| numeric(&c.name)).collect(),
        revenue: numeric(&like.revenue.name),
        categorical: like
            .categorical
            .iter()
            .map(|c| {
                let values = texts(&c.name);
                let mut levels: Vec<String> = values.iter().flatten().cloned().collect();
                levels.sort();
                levels.dedup();
                CategoricalColumn {
                    name: c.name.clone(),
                    codes: values
                        .iter()
                        .map(|v| {
                            v.as_ref()
                                .map(|v| levels.binary_search(v).expect("a level") as u32)
                        })
                        .collect(),
                    levels,
                }
            })
            .collect(),
        files: like.files.clone(),
    }
}

/// Asserts two tables hold the same values (NaN for null, compared by bits).
fn assert_same_table(ingested: &PartnersTable, simple: &PartnersTable) {
    assert_eq!(ingested.ids, simple.ids);
    let bits = |c: &NumericColumn| c.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(ingested.numeric.len(), simple.numeric.len());
    for (a, b) in ingested.numeric.iter().zip(&simple.numeric) {
        assert_eq!(a.name, b.name);
        assert!(bits(a) == bits(b), "column `{}` differs", a.name);
    }
    assert!(bits(&ingested.revenue) == bits(&simple.revenue));
    assert_eq!(ingested.categorical, simple.categorical);
}

#[test]
fn the_bounded_ingest_gives_the_simple_reads_table_and_matrix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "6000"]);
    let config = data.join("segtune.toml");
    let settings = RunSettings::load(&config, &Overrides::default()).expect("config");
    // The generated part files, and the same table as one file of 700-row
    // groups (decoded in parallel).
    let one_file = dir.path().join("partners.parquet");
    rewrite_with_row_groups(&settings.inputs.partners, &one_file, 700);
    let mut matrices = Vec::new();
    for partners in [settings.inputs.partners.clone(), one_file] {
        let settings = RunSettings::load(
            &config,
            &Overrides {
                partners: Some(partners.clone()),
                ..Overrides::default()
            },
        )
        .expect("config");
        let inputs = ingest(&settings).expect("the generated data is valid");
        let ingested = &inputs.partners;
        assert!(ingested.ids.len() > 5_000, "{}", ingested.ids.len());
        assert!(
            ingested.numeric.iter().any(|c| c.n_missing() > 0),
            "the generated features have nulls, so that NaN handling is compared too"
        );
        let simple = simple_partners(&partners, ingested);
        assert_same_table(ingested, &simple);
        // Every row, so that the whole table reaches the matrix.
        let rows: Vec<usize> = (0..ingested.ids.len()).collect();
        let from_ingest = features::build(ingested, &rows, &settings.features).expect("features");
        let from_simple = features::build(&simple, &rows, &settings.features).expect("features");
        assert_eq!(from_ingest.names, from_simple.names);
        assert!(
            from_ingest
                .matrix
                .iter()
                .map(|v| v.to_bits())
                .eq(from_simple.matrix.iter().map(|v| v.to_bits())),
            "the scaled matrices differ"
        );
        matrices.push(from_ingest.matrix);
    }
    // And the two layouts give the same matrix.
    assert_eq!(matrices[0], matrices[1]);
}
