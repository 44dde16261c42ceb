//! The generator: same seed same bytes, whatever the threads; part files;
//! truth kept apart from the inputs.

use segtune_data::generator::{generate, GeneratorParams};

use crate::common::{read_batches, tree_bytes};

fn generate_with_threads(
    params: GeneratorParams,
    threads: usize,
) -> (tempfile::TempDir, Vec<(String, Vec<u8>)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let params = params.check().expect("valid params");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    pool.install(|| generate(&params, dir.path()))
        .expect("generates");
    let bytes = tree_bytes(dir.path());
    (dir, bytes)
}

#[test]
fn same_seed_gives_the_same_bytes_whatever_the_threads() {
    let params = GeneratorParams::new()
        .with_partners(3_000)
        .with_periods(3)
        .with_seed(11)
        .with_part_rows(1_000);
    let (_a, one_thread) = generate_with_threads(params.clone(), 1);
    let (_b, four_threads) = generate_with_threads(params, 4);
    assert!(one_thread.len() > 10);
    assert_eq!(one_thread.len(), four_threads.len());
    for ((name_a, bytes_a), (name_b, bytes_b)) in one_thread.iter().zip(&four_threads) {
        assert_eq!(name_a, name_b);
        assert!(
            bytes_a == bytes_b,
            "{name_a} differs between 1 and 4 threads"
        );
    }
}

#[test]
fn another_seed_gives_other_data() {
    let params = GeneratorParams::new().with_partners(500).with_periods(1);
    let (_a, first) = generate_with_threads(params.clone().with_seed(1), 2);
    let (_b, second) = generate_with_threads(params.with_seed(2), 2);
    let partners = |files: &[(String, Vec<u8>)]| {
        files
            .iter()
            .find(|(n, _)| n.ends_with("partners.parquet"))
            .map(|(_, b)| b.clone())
    };
    assert_ne!(partners(&first), partners(&second));
}

#[test]
fn large_tables_become_part_file_folders() {
    let params = GeneratorParams::new()
        .with_partners(2_500)
        .with_periods(2)
        .with_seed(3)
        .with_part_rows(1_000);
    let (dir, files) = generate_with_threads(params, 2);
    let parts: Vec<&String> = files
        .iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("periods/2025-Q4/partners/"))
        .collect();
    // 2,500 partners + 100 joiners per later period = 2,600 slots: 3 parts, the
    // third holding first-period partners 2,000..2,500 only.
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(dir
        .path()
        .join("periods/2026-Q1/partners/part-00002.parquet")
        .exists());
    let config = std::fs::read_to_string(dir.path().join("segtune.toml")).expect("config written");
    assert!(
        config.contains("partners = \"periods/2026-Q1/partners\""),
        "{config}"
    );
}

#[test]
fn truth_is_never_an_input_column() {
    let params = GeneratorParams::new().with_partners(300).with_periods(1);
    let (dir, _) = generate_with_threads(params, 1);
    for table in ["partners", "assignments", "outcomes"] {
        let file = std::fs::File::open(dir.path().join(format!("periods/2025-Q4/{table}.parquet")))
            .expect("exists");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet");
        for field in reader.schema().fields() {
            for forbidden in ["archetype", "effect", "truth", "baseline"] {
                assert!(
                    !field.name().contains(forbidden),
                    "{table} has column {}",
                    field.name()
                );
            }
        }
    }
    assert!(dir.path().join("truth/2025-Q4/archetypes.parquet").exists());
    assert!(dir.path().join("truth/lift.parquet").exists());
}

#[test]
fn invalid_parameters_are_refused() {
    assert!(GeneratorParams::new().with_partners(0).check().is_err());
    assert!(GeneratorParams::new().with_drift(1.5).check().is_err());
    assert!(GeneratorParams::new()
        .with_start_period("FY26")
        .check()
        .is_err());
    assert!(GeneratorParams::new().with_part_rows(0).check().is_err());
}

fn read_column_f64(path: &std::path::Path, name: &str) -> Vec<Option<f64>> {
    use arrow_array::cast::AsArray;
    read_batches(path)
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect("column")
                .as_primitive::<arrow_array::types::Float64Type>()
                .iter()
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read_column_str(path: &std::path::Path, name: &str) -> Vec<String> {
    use arrow_array::cast::AsArray;
    read_batches(path)
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .expect("column")
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn outcomes_follow_any_given_assignment_file_with_common_random_numbers() {
    use segtune_data::generator::{generate_world, AssignmentOverride, World};
    let params = GeneratorParams::new()
        .with_partners(2_000)
        .with_periods(2)
        .with_seed(4)
        .check()
        .expect("valid");
    let plain = tempfile::tempdir().expect("tempdir");
    generate(&params, plain.path()).expect("generates");
    // Everyone in the second period's draw is held out instead.
    let ids = read_column_str(
        &plain.path().join("periods/2026-Q1/assignments.parquet"),
        "partner_id",
    );
    let schemes = read_column_str(
        &plain.path().join("periods/2026-Q1/assignments.parquet"),
        "scheme_id",
    );
    let override_draw = AssignmentOverride {
        period: 1,
        schemes: ids.iter().map(|id| (id.clone(), None)).collect(),
    };
    let replaced = tempfile::tempdir().expect("tempdir");
    generate_world(
        &World::new(params.clone()).with_override(override_draw),
        replaced.path(),
    )
    .expect("generates");

    // Features and the other period do not change.
    for file in [
        "periods/2026-Q1/partners.parquet",
        "periods/2025-Q4/outcomes.parquet",
        "periods/2025-Q4/assignments.parquet",
    ] {
        assert_eq!(
            std::fs::read(plain.path().join(file)).expect("a"),
            std::fs::read(replaced.path().join(file)).expect("b"),
            "{file}"
        );
    }
    // No effect for anyone now, and every scheme is holdout.
    let effects = read_column_f64(
        &replaced.path().join("truth/2026-Q1/effects.parquet"),
        "effect_revenue",
    );
    assert_eq!(effects.len(), ids.len());
    assert!(effects.iter().all(|e| *e == Some(0.0)));
    assert!(read_column_str(
        &replaced.path().join("periods/2026-Q1/assignments.parquet"),
        "scheme_id"
    )
    .iter()
    .all(|s| s == "holdout"));
    // Partners who were holdout in both draws have the same revenue (common random numbers);
    // partners who lost a positive-effect scheme have different revenue.
    let outcome_ids = read_column_str(
        &plain.path().join("periods/2026-Q1/outcomes.parquet"),
        "partner_id",
    );
    let before = read_column_f64(
        &plain.path().join("periods/2026-Q1/outcomes.parquet"),
        "revenue",
    );
    let after = read_column_f64(
        &replaced.path().join("periods/2026-Q1/outcomes.parquet"),
        "revenue",
    );
    let scheme_of: std::collections::HashMap<&String, &String> = ids.iter().zip(&schemes).collect();
    let mut same = 0;
    let mut changed = 0;
    for ((id, b), a) in outcome_ids.iter().zip(&before).zip(&after) {
        match scheme_of.get(id).map(|s| s.as_str()) {
            Some("holdout") | None => {
                assert_eq!(a, b, "{id}");
                same += 1;
            }
            Some(_) => changed += usize::from(a != b),
        }
    }
    assert!(
        same > 100 && changed > 1_000,
        "same {same}, changed {changed}"
    );
}
