//! One test per refusal of bad input: exit code 3, a message that names the
//! file, the column and the row or partner, and nothing written.

use crate::common::{assert_mentions, partners_columns, write_table, Col, Fixture, CONFIG};

/// The fixture with one partners column replaced (by name).
fn with_partners_column(replacement: Col) -> Fixture {
    let fixture = Fixture::new();
    let mut replacement = Some(replacement);
    let columns = partners_columns()
        .into_iter()
        .map(|column| {
            if column.name() == replacement.as_ref().map_or("", Col::name) {
                replacement.take().unwrap_or(column)
            } else {
                column
            }
        })
        .collect();
    fixture.write_partners(columns);
    fixture
}

/// Runs validate and checks the refusal.
#[track_caller]
fn refused(fixture: &Fixture, fragments: &[&str]) -> String {
    let (code, stdout, stderr) = fixture.validate();
    assert_eq!(
        code, 3,
        "expected exit 3 (invalid input data)\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.is_empty(), "nothing on stdout on failure: {stdout}");
    assert_mentions(&stderr, fragments);
    stderr
}

/// Runs `segtune run` on the fixture and checks the refusal: exit 3, the
/// fragments named, no run folder written.
#[track_caller]
fn run_refused(fixture: &Fixture, fragments: &[&str]) {
    let out = fixture.path("run");
    let (code, stdout, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &out,
    ));
    assert_eq!(code, 3, "stdout: {stdout}\nstderr: {stderr}");
    assert_mentions(&stderr, fragments);
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_valid_fixture_passes() {
    let fixture = Fixture::new();
    let (code, stdout, stderr) = fixture.validate();
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(
        &stdout,
        &[
            "\"status\":\"valid\"",
            "\"partners\":6",
            "\"assignments\":4",
            "\"outcomes\":6",
        ],
    );
}

#[test]
fn missing_column_is_refused() {
    let fixture = Fixture::new();
    fixture.write_config(&CONFIG.replace("\"win_rate\"]", "\"win_rate\", \"certifications\"]"));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `certifications`",
            "column is missing",
        ],
    );
}

#[test]
fn missing_file_is_refused() {
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path("outcomes.parquet")).expect("remove");
    refused(&fixture, &["outcomes.parquet", "cannot be read"]);
}

#[test]
fn with_the_partners_unreadable_the_other_tables_are_still_checked() {
    // One run reports everything: an unreadable partners table does not
    // hide a wrongly typed assignments column or a missing outcome column.
    let fixture = Fixture::new();
    std::fs::remove_file(fixture.path("partners.parquet")).expect("remove");
    write_table(
        &fixture.path("assignments.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A1")]),
            Col::Text("scheme_id", vec![Some("holdout")]),
            Col::Text("cost", vec![Some("ten")]),
        ],
    );
    write_table(
        &fixture.path("outcomes.parquet"),
        vec![Col::Text("partner_id", vec![Some("A1")])],
    );
    let stderr = refused(
        &fixture,
        &[
            "partners.parquet",
            "cannot be read",
            "assignments.parquet",
            "column `cost`",
            "outcomes.parquet",
            "column `revenue`",
            "column `revenue_pre`",
        ],
    );
    assert_eq!(stderr.matches("\n  - ").count(), 4, "{stderr}");
}

#[test]
fn non_numeric_feature_is_refused() {
    let fixture = with_partners_column(Col::Text("win_rate", vec![Some("high"); 6]));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `win_rate`",
            "wrong type: Utf8",
            "numeric",
        ],
    );
}

#[test]
fn null_partner_id_is_refused() {
    let fixture = with_partners_column(Col::Text(
        "partner_id",
        vec![
            Some("A1"),
            Some("A2"),
            None,
            Some("A4"),
            Some("A5"),
            Some("A6"),
        ],
    ));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `partner_id`",
            "row 2",
            "partner_id is null",
        ],
    );
}

#[test]
fn duplicate_partner_id_is_refused() {
    let fixture = with_partners_column(Col::Text(
        "partner_id",
        vec![
            Some("A1"),
            Some("A2"),
            Some("A3"),
            Some("A2"),
            Some("A5"),
            Some("A6"),
        ],
    ));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "row 3",
            "partner_id `A2`",
            "duplicate partner_id",
            "first seen",
            "row 1",
        ],
    );
}

#[test]
fn duplicate_partner_id_across_part_files_is_refused() {
    let fixture = Fixture::new();
    let parts = fixture.path("partners");
    let part = |ids: Vec<Option<&'static str>>| {
        let n = ids.len();
        vec![
            Col::Text("partner_id", ids),
            Col::Float("revenue_12m", vec![Some(1.0); n]),
            Col::Float("win_rate", vec![Some(0.2); n]),
            Col::Text("tier", vec![Some("gold"); n]),
        ]
    };
    write_table(
        &parts.join("part-00000.parquet"),
        part(vec![Some("A1"), Some("A2"), Some("A3")]),
    );
    write_table(
        &parts.join("part-00001.parquet"),
        part(vec![Some("A4"), Some("A1"), Some("A6")]),
    );
    fixture.write_config(
        &CONFIG.replace("partners = \"partners.parquet\"", "partners = \"partners\""),
    );
    refused(
        &fixture,
        &[
            "part-00001.parquet",
            "row 1",
            "partner_id `A1`",
            "first seen in",
            "part-00000.parquet",
            "row 0",
        ],
    );
}

#[test]
fn nan_is_refused() {
    let fixture = with_partners_column(Col::Float(
        "win_rate",
        vec![
            Some(0.1),
            Some(f64::NAN),
            None,
            Some(0.3),
            Some(0.0),
            Some(1.0),
        ],
    ));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `win_rate`",
            "row 1",
            "partner_id `A2`",
            "NaN",
        ],
    );
}

#[test]
fn a_refused_run_leaves_no_folder_it_made() {
    // The default output `runs/<period>` beside the configuration, and an
    // --out two new folders deep: a refused run leaves neither folder.
    let fixture = with_partners_column(Col::Float("win_rate", vec![Some(f64::NAN); 6]));
    let (code, _, stderr) = crate::common::run(
        crate::common::segtune()
            .arg("run")
            .arg("--config")
            .arg(fixture.path("segtune.toml")),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(!fixture.path("runs").exists(), "an empty runs/ was left");
    let deep = fixture.path("new/deeper/run");
    let (code, _, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &deep,
    ));
    assert_eq!(code, 3, "{stderr}");
    assert!(!fixture.path("new").exists(), "an empty new/ was left");
    // An output no folder can be made for (under a file) is a usage error.
    let (code, _, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &fixture.path("segtune.toml/run"),
    ));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["segtune.toml/run", "choose another output"]);
}

#[test]
fn infinity_is_refused() {
    let fixture = with_partners_column(Col::Float(
        "revenue_12m",
        vec![
            Some(1.0),
            Some(2.0),
            Some(3.0),
            Some(4.0),
            Some(f64::INFINITY),
            Some(6.0),
        ],
    ));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `revenue_12m`",
            "row 4",
            "partner_id `A5`",
            "inf",
        ],
    );
}

#[test]
fn negative_cost_is_refused() {
    let fixture = Fixture::new();
    write_table(
        &fixture.path("assignments.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A1"), Some("A2")]),
            Col::Text("scheme_id", vec![Some("holdout"), Some("cert_bonus")]),
            Col::Float("cost", vec![Some(0.0), Some(-5.0)]),
        ],
    );
    refused(
        &fixture,
        &[
            "assignments.parquet",
            "column `cost`",
            "row 1",
            "partner_id `A2`",
            "negative cost",
        ],
    );
}

#[test]
fn assignment_for_an_unknown_partner_is_refused() {
    let fixture = Fixture::new();
    write_table(
        &fixture.path("assignments.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A1"), Some("Z9")]),
            Col::Text("scheme_id", vec![Some("holdout"), Some("cert_bonus")]),
            Col::Float("cost", vec![Some(0.0), Some(5.0)]),
        ],
    );
    refused(
        &fixture,
        &[
            "assignments.parquet",
            "row 1",
            "partner_id `Z9`",
            "unknown partner",
        ],
    );
}

#[test]
fn two_assignments_for_one_partner_are_refused() {
    let fixture = Fixture::new();
    write_table(
        &fixture.path("assignments.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A1"), Some("A1")]),
            Col::Text("scheme_id", vec![Some("holdout"), Some("cert_bonus")]),
            Col::Float("cost", vec![Some(0.0), Some(5.0)]),
        ],
    );
    refused(
        &fixture,
        &[
            "assignments.parquet",
            "row 1",
            "partner_id `A1`",
            "more than one row",
        ],
    );
}

#[test]
fn empty_table_is_refused() {
    let fixture = Fixture::new();
    fixture.write_partners(vec![
        Col::Text("partner_id", vec![]),
        Col::Float("revenue_12m", vec![]),
        Col::Float("win_rate", vec![]),
        Col::Text("tier", vec![]),
    ]);
    refused(&fixture, &["partners.parquet", "table is empty"]);
}

#[test]
fn a_file_that_is_not_parquet_is_refused() {
    let fixture = Fixture::new();
    std::fs::write(
        fixture.path("partners.parquet"),
        "partner_id,revenue_12m\nA1,3\n",
    )
    .expect("write");
    refused(
        &fixture,
        &["partners.parquet", "not a readable Parquet file"],
    );
}

#[test]
fn a_truncated_parquet_file_is_refused() {
    let fixture = Fixture::new();
    let bytes = std::fs::read(fixture.path("outcomes.parquet")).expect("read");
    std::fs::write(fixture.path("outcomes.parquet"), &bytes[..bytes.len() / 2]).expect("write");
    refused(
        &fixture,
        &[
            "outcomes.parquet",
            "not a readable Parquet file (not Parquet, or truncated)",
        ],
    );
}

#[test]
fn part_files_with_conflicting_schemas_are_refused() {
    let fixture = Fixture::new();
    let parts = fixture.path("partners");
    write_table(
        &parts.join("part-00000.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A1"), Some("A2")]),
            Col::Float("revenue_12m", vec![Some(1.0), Some(2.0)]),
            Col::Float("win_rate", vec![Some(0.1), Some(0.2)]),
            Col::Text("tier", vec![Some("gold"), Some("gold")]),
        ],
    );
    write_table(
        &parts.join("part-00001.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("A3"), Some("A4")]),
            Col::Int("revenue_12m", vec![Some(1), Some(2)]),
            Col::Float("win_rate", vec![Some(0.1), Some(0.2)]),
            Col::Text("tier", vec![Some("gold"), Some("gold")]),
        ],
    );
    fixture.write_config(
        &CONFIG.replace("partners = \"partners.parquet\"", "partners = \"partners\""),
    );
    refused(
        &fixture,
        &[
            "part-00001.parquet",
            "column `revenue_12m`",
            "conflicting schemas",
            "Int64 here, Float64 in",
            "part-00000.parquet",
        ],
    );
}

#[test]
fn a_part_file_folder_is_read_as_one_table() {
    let fixture = Fixture::new();
    let parts = fixture.path("partners");
    for (index, ids) in [["A1", "A2", "A3"], ["A4", "A5", "A6"]].iter().enumerate() {
        write_table(
            &parts.join(format!("part-{index:05}.parquet")),
            vec![
                Col::Text("partner_id", ids.iter().map(|s| Some(*s)).collect()),
                Col::Float(
                    "revenue_12m",
                    vec![Some(1.0), Some(2.0), Some(index as f64)],
                ),
                Col::Float("win_rate", vec![Some(0.1), Some(0.2), Some(0.3)]),
                Col::Text("tier", vec![Some("gold"); 3]),
            ],
        );
    }
    // Files a reader must skip: hidden, temporary and non-Parquet.
    std::fs::write(parts.join(".part-00002.parquet.tmp"), "junk").expect("write");
    std::fs::write(parts.join("_SUCCESS"), "").expect("write");
    fixture.write_config(
        &CONFIG.replace("partners = \"partners.parquet\"", "partners = \"partners\""),
    );
    let (code, stdout, stderr) = fixture.validate();
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(&stdout, &["\"partners\":6", "\"partner_files\":2"]);
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let fixture = with_partners_column(Col::Float(
        "win_rate",
        vec![Some(f64::NAN), Some(0.2), Some(f64::NAN), None, None, None],
    ));
    write_table(
        &fixture.path("assignments.parquet"),
        vec![
            Col::Text("partner_id", vec![Some("Z1"), Some("A2")]),
            Col::Text("scheme_id", vec![Some("holdout"), None]),
            Col::Float("cost", vec![Some(-1.0), Some(5.0)]),
        ],
    );
    let stderr = refused(
        &fixture,
        &[
            "5 problems",
            "row 0",
            "row 2",
            "partner_id `Z1`",
            "negative cost",
            "scheme_id is null",
        ],
    );
    assert_eq!(stderr.matches("\n  - ").count(), 5, "{stderr}");
}

#[test]
fn only_the_configured_columns_are_checked() {
    // `unused_count` is not configured: a NaN-free but wrongly typed unused
    // column must not matter, and it is not decoded.
    let fixture = with_partners_column(Col::Text("unused_count", vec![Some("x"); 6]));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_partner_id_with_control_characters_is_refused() {
    let fixture = with_partners_column(Col::Text(
        "partner_id",
        vec![
            Some("A1"),
            Some("A\u{7}2"),
            Some("A3"),
            Some("A4"),
            Some("A5"),
            Some("A6"),
        ],
    ));
    refused(
        &fixture,
        &["partners.parquet", "row 1", "control characters"],
    );
}

#[test]
fn inputs_beyond_the_limits_are_refused_before_they_are_read() {
    let with_limits = |limits: &str| format!("{CONFIG}\n[limits]\n{limits}\n");
    // Rows, from the footers: the fixture has 6 partners.
    let fixture = Fixture::new();
    fixture.write_config(&with_limits("max-rows = 5"));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "holds 6 rows in 1 file(s), more than limits.max-rows = 5",
            "refused before reading them",
        ],
    );
    // Exactly at the limit passes.
    fixture.write_config(&with_limits("max-rows = 6"));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 0, "{stderr}");
    // Columns.
    fixture.write_config(&with_limits("max-columns = 3"));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "columns, more than limits.max-columns = 3",
        ],
    );
    // A text value: one partner id of 300 bytes, named by file, column and row.
    let long = "P".repeat(300);
    let fixture = with_partners_column(Col::Strings(
        "partner_id",
        vec![
            Some("A1".into()),
            Some("A2".into()),
            Some(long),
            Some("A4".into()),
            Some("A5".into()),
            Some("A6".into()),
        ],
    ));
    fixture.write_config(&with_limits("max-string-length = 64"));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "column `partner_id`",
            "row 2",
            "a value of 300 bytes",
            "longer than limits.max-string-length = 64",
        ],
    );
    // A run refused for a limit writes nothing.
    let fixture = Fixture::new();
    fixture.write_config(&with_limits("max-rows = 5"));
    let out = fixture.path("run");
    let (code, _, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &out,
    ));
    assert_eq!(code, 3, "{stderr}");
    assert!(!out.exists(), "a refused run writes nothing");
    // Limits of 0 are a configuration error (exit 2).
    fixture.write_config(&with_limits("max-columns = 0"));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["limits.max-columns", "must be at least 1"]);
}

#[test]
fn a_list_column_where_a_number_is_expected_is_refused() {
    use std::sync::Arc;
    let fixture = Fixture::new();
    let ids = arrow_array::StringArray::from(crate::common::IDS.to_vec());
    let lists = arrow_array::ListArray::from_iter_primitive::<arrow_array::types::Float64Type, _, _>(
        (0..6).map(|i| Some(vec![Some(f64::from(i))])),
    );
    let revenue = arrow_array::Float64Array::from(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let tier = arrow_array::StringArray::from(vec!["gold"; 6]);
    let batch = arrow_array::RecordBatch::try_from_iter([
        ("partner_id", Arc::new(ids) as arrow_array::ArrayRef),
        ("revenue_12m", Arc::new(revenue)),
        ("win_rate", Arc::new(lists)),
        ("tier", Arc::new(tier)),
    ])
    .expect("batch");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(fixture.path("partners.parquet")).expect("create"),
        batch.schema(),
        None,
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    refused(
        &fixture,
        &["partners.parquet", "win_rate", "wrong type", "List"],
    );
}

#[test]
fn a_constant_feature_is_refused() {
    let fixture = with_partners_column(Col::Float(
        "win_rate",
        vec![Some(0.5), None, Some(0.5), Some(0.5), Some(0.5), Some(0.5)],
    ));
    refused(
        &fixture,
        &["partners.parquet", "win_rate", "constant", "0.5"],
    );
}

#[test]
fn a_scheme_the_configuration_does_not_know_is_refused() {
    let fixture = Fixture::new();
    fixture.write_config(&format!(
        "{CONFIG}\n[tuning]\nschemes = [\"deal_reg_spiff\"]\n"
    ));
    refused(
        &fixture,
        &[
            "assignments.parquet",
            "scheme_id",
            "cert_bonus",
            "tuning.schemes",
            "A2",
        ],
    );
}

#[test]
fn a_missing_outcome_column_is_refused() {
    let fixture = Fixture::new();
    write_table(
        &fixture.path("outcomes.parquet"),
        vec![
            Col::Text(
                "partner_id",
                crate::common::IDS.iter().map(|s| Some(*s)).collect(),
            ),
            Col::Float("revenue", vec![Some(1.0); 6]),
        ],
    );
    refused(&fixture, &["outcomes.parquet", "revenue_pre", "missing"]);
}

#[test]
fn fewer_partners_than_the_smallest_k_are_refused() {
    let fixture = Fixture::new();
    fixture.write_config(&format!("{CONFIG}\n[segments]\nk-min = 7\nk-max = 8\n"));
    run_refused(&fixture, &["partners.parquet", "6 partners", "k = 7"]);
}

#[test]
fn a_file_the_parquet_reader_panics_on_is_refused_without_a_panic() {
    // Found by fuzzing (fuzz/regressions/parquet/): parquet 60.1 panics on a
    // page of this file instead of returning an error.
    let crash = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/parquet/crash-e56153bea64a361d042dd3c9ebdd8e4cfacafe6a");
    let fixture = Fixture::new();
    std::fs::copy(&crash, fixture.path("partners.parquet")).expect("copy");
    fixture.write_config(
        &CONFIG
            .replace(
                "numeric = [\"revenue_12m\", \"win_rate\"]\ncategorical = [\"tier\"]",
                "categorical = []",
            )
            .replace("revenue = \"revenue_12m\"", "revenue = \"revenue\""),
    );
    let stderr = refused(&fixture, &["partners.parquet", "cannot be decoded"]);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn rules_that_take_every_partner_are_refused_clearly() {
    let fixture = Fixture::new();
    fixture.write_config(&format!(
        "{CONFIG}\n[[rules]]\nname = \"everyone\"\nsegment-name = \"Everyone\"\ncondition = \"win_rate >= 0 || win_rate < 0 || tier == \\\"gold\\\" || tier != \\\"gold\\\"\"\n"
    ));
    run_refused(
        &fixture,
        &["partners.parquet", "every partner matched a rule"],
    );
}

#[test]
fn an_all_null_feature_is_refused() {
    let fixture = with_partners_column(Col::Float("win_rate", vec![None; 6]));
    refused(
        &fixture,
        &["partners.parquet", "win_rate", "every value is null"],
    );
}

/// The fixture with `win_rate` replaced and a rule taking some partners.
fn with_rule(win_rate: Vec<Option<f64>>, condition: &str) -> Fixture {
    let fixture = with_partners_column(Col::Float("win_rate", win_rate));
    fixture.write_config(&format!(
        "{CONFIG}\n[[rules]]\nname = \"some\"\nsegment-name = \"Some\"\ncondition = \"{condition}\"\n"
    ));
    fixture
}

#[test]
fn a_feature_null_or_constant_among_the_partners_left_to_cluster_is_refused() {
    // The table as a whole passes; the rule takes the partners that made
    // the difference, and the three left have no value, or one value.
    let fixture = with_rule(
        vec![Some(0.1), None, None, None, Some(0.9), Some(1.0)],
        "win_rate >= 0",
    );
    refused(
        &fixture,
        &[
            "partners.parquet",
            "win_rate",
            "every value is null among the",
            "partners left to cluster",
        ],
    );
    let fixture = with_rule(
        vec![
            Some(0.1),
            Some(0.5),
            Some(0.5),
            Some(0.5),
            Some(0.9),
            Some(1.0),
        ],
        "win_rate < 0.2 || win_rate > 0.8",
    );
    refused(
        &fixture,
        &[
            "partners.parquet",
            "win_rate",
            "constant (every value is 0.5) among the 3 partners left to cluster",
        ],
    );
    // `run` refuses it the same way, before writing anything.
    run_refused(&fixture, &["partners.parquet", "win_rate", "constant"]);
}

#[test]
fn a_partner_id_one_byte_over_the_longest_is_refused() {
    // 256 bytes are accepted (unusual_inputs); 257 are not.
    let long: &'static str = Box::leak(("é".repeat(128) + "x").into_boxed_str());
    assert_eq!(long.len(), segtune_data::ids::MAX_ID_LEN + 1);
    let mut ids: Vec<Option<&str>> = crate::common::IDS.iter().map(|s| Some(*s)).collect();
    ids[3] = Some(long);
    let fixture = with_partners_column(Col::Text("partner_id", ids));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "partner_id",
            "row 3",
            "longer than 256 bytes",
        ],
    );
}

#[test]
fn exactly_as_many_partners_as_the_smallest_k_run() {
    // The boundary of `fewer_partners_than_the_smallest_k_are_refused`:
    // six partners and k = 6 run (each partner its own segment).
    let fixture = Fixture::new();
    fixture.write_config(&format!("{CONFIG}\n[segments]\nk = 6\n"));
    let out = fixture.path("run");
    let (code, stdout, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &out,
    ));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["quality"]["k"], 6);
}

/// Rewrites the fixture's table `file` with column `name` replaced by
/// `array` (any type).
fn replace_column(fixture: &Fixture, file: &str, name: &str, array: arrow_array::ArrayRef) {
    let path = fixture.path(file);
    let (schema, batches) = crate::common::read(&path);
    assert_eq!(batches.len(), 1, "a small table");
    let columns: Vec<(String, arrow_array::ArrayRef)> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let column = if field.name() == name {
                array.clone()
            } else {
                batches[0].column(i).clone()
            };
            (field.name().clone(), column)
        })
        .collect();
    let batch = arrow_array::RecordBatch::try_from_iter(columns).expect("batch");
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&path).expect("create"),
        batch.schema(),
        None,
    )
    .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

#[test]
fn columns_of_other_types_are_refused_in_every_table() {
    use std::sync::Arc;
    let six = 6;
    let four = 4;
    let struct_of = |n: usize| -> arrow_array::ArrayRef {
        Arc::new(arrow_array::StructArray::from(vec![(
            Arc::new(arrow_schema::Field::new(
                "x",
                arrow_schema::DataType::Float64,
                true,
            )),
            Arc::new(arrow_array::Float64Array::from(vec![1.0; n])) as arrow_array::ArrayRef,
        )]))
    };
    let cases: Vec<(&str, &str, arrow_array::ArrayRef, &str)> = vec![
        (
            "partners.parquet",
            "win_rate",
            Arc::new(arrow_array::BooleanArray::from(vec![true; six])),
            "Boolean",
        ),
        (
            "partners.parquet",
            "win_rate",
            Arc::new(arrow_array::Date32Array::from(vec![19_000; six])),
            "Date32",
        ),
        (
            "partners.parquet",
            "win_rate",
            Arc::new(arrow_array::BinaryArray::from(vec![&b"0.5"[..]; six])),
            "Binary",
        ),
        ("partners.parquet", "win_rate", struct_of(six), "Struct"),
        (
            "partners.parquet",
            "tier",
            Arc::new(arrow_array::Int32Array::from(vec![1; six])),
            "Int32",
        ),
        (
            "assignments.parquet",
            "cost",
            Arc::new(arrow_array::StringArray::from(vec!["12.5"; four])),
            "Utf8",
        ),
        (
            "assignments.parquet",
            "scheme_id",
            Arc::new(arrow_array::Int64Array::from(vec![1; four])),
            "Int64",
        ),
        (
            "outcomes.parquet",
            "revenue",
            Arc::new(arrow_array::BooleanArray::from(vec![false; six])),
            "Boolean",
        ),
        ("outcomes.parquet", "revenue_pre", struct_of(six), "Struct"),
    ];
    for (file, column, array, type_name) in cases {
        let fixture = Fixture::new();
        replace_column(&fixture, file, column, array);
        refused(&fixture, &[file, column, "wrong type", type_name]);
    }
}

#[test]
fn a_one_hot_feature_constant_among_the_partners_left_to_cluster_is_refused() {
    let fixture = with_partners_column(Col::Text(
        "tier",
        vec![
            Some("gold"),
            Some("gold"),
            Some("gold"),
            Some("silver"),
            Some("registered"),
            Some("platinum"),
        ],
    ));
    fixture.write_config(&format!(
        "{CONFIG}\n[features.one-hot]\ntier = 1.0\n\n[[rules]]\nname = \"others\"\nsegment-name = \"Others\"\ncondition = \"tier != \\\"gold\\\"\"\n"
    ));
    refused(
        &fixture,
        &[
            "partners.parquet",
            "tier",
            "one-hot feature is constant (every value is `gold`) among the 3 partners",
        ],
    );
}

#[test]
fn fewer_distinct_partners_than_the_smallest_k_are_refused() {
    // Six partners but two distinct rows of features: k = 3 cannot be
    // formed (was a "k = 3" run with two segments).
    let fixture = Fixture::new();
    let halves = |low: f64, high: f64| {
        vec![
            Some(low),
            Some(low),
            Some(low),
            Some(high),
            Some(high),
            Some(high),
        ]
    };
    fixture.write_partners(
        partners_columns()
            .into_iter()
            .map(|column| match column.name() {
                "win_rate" => Col::Float("win_rate", halves(0.1, 0.9)),
                "revenue_12m" => Col::Float("revenue_12m", halves(5.0, 7.0)),
                _ => column,
            })
            .collect(),
    );
    refused(
        &fixture,
        &[
            "partners.parquet",
            "only 2 distinct feature values",
            "k = 3",
        ],
    );
    run_refused(&fixture, &["only 2 distinct feature values"]);
}

#[test]
fn a_sweep_beyond_the_distinct_partners_leaves_those_k_out() {
    // Three distinct rows of features, a sweep of 2 to 4: k = 4 cannot be
    // fitted and is left out, said in the reason (was exit 1, "k-means
    // failed", found by `odd_programs`).
    let fixture = Fixture::new();
    let pairs = |a: f64, b: f64, c: f64| vec![Some(a), Some(a), Some(b), Some(b), Some(c), Some(c)];
    fixture.write_partners(
        partners_columns()
            .into_iter()
            .map(|column| match column.name() {
                "win_rate" => Col::Float("win_rate", pairs(0.1, 0.5, 0.9)),
                "revenue_12m" => Col::Float("revenue_12m", pairs(5.0, 6.0, 7.0)),
                _ => column,
            })
            .collect(),
    );
    fixture.write_config(&format!(
        "{CONFIG}\n[segments]\nk-min = 2\nk-max = 4\nfallback-k = 2\nbootstrap = 3\n"
    ));
    let out = fixture.path("run");
    let (code, _, stderr) = crate::common::run(&mut crate::common::segtune_run(
        &fixture.path("segtune.toml"),
        &out,
    ));
    assert_eq!(code, 0, "{stderr}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    let selection = &manifest["quality"]["k_selection"];
    assert!(
        selection["reason"]
            .as_str()
            .is_some_and(|r| r.contains("k = 4 left out: only 3 distinct partners")),
        "{selection}"
    );
    assert!(manifest["quality"]["k"].as_u64().is_some_and(|k| k <= 3));
}
