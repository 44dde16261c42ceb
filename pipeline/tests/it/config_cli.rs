//! Configuration errors on the command line: exit 2, naming the key and line.

use crate::common::{assert_mentions, Fixture, CONFIG};

#[track_caller]
fn config_refused(text: &str, fragments: &[&str]) -> String {
    let fixture = Fixture::new();
    fixture.write_config(text);
    let (code, stdout, stderr) = fixture.validate();
    assert_eq!(
        code, 2,
        "expected exit 2\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_mentions(&stderr, fragments);
    stderr
}

#[test]
fn an_unknown_key_names_the_key_and_its_line() {
    let text = CONFIG.replace("seed = 7", "seed = 7\nmarginrate = 0.2");
    config_refused(
        &text,
        &["segtune.toml", "line 3", "unknown field `marginrate`"],
    );
}

#[test]
fn an_unknown_key_in_a_table_names_the_key_and_its_line() {
    let text = CONFIG.replace(
        "revenue = \"revenue_12m\"",
        "revenue = \"revenue_12m\"\nlog = true",
    );
    config_refused(&text, &["line 13", "unknown field `log`"]);
}

#[test]
fn a_wrong_type_names_the_key_and_its_line() {
    let text = CONFIG.replace("seed = 7", "seed = \"seven\"");
    config_refused(&text, &["line 2", "seed", "invalid type"]);
}

#[test]
fn a_bad_value_names_the_key_and_its_line() {
    let text = CONFIG.replace("period = \"2026-Q3\"", "period = \"2026-Q7\"");
    config_refused(&text, &["key `period` (line 1)", "Q1 to Q4"]);
}

#[test]
fn a_missing_required_key_is_named() {
    let text = CONFIG.replace("partners = \"partners.parquet\"\n", "");
    config_refused(&text, &["key `inputs.partners`", "is required"]);
}

#[test]
fn configuration_errors_win_over_data_errors_and_both_are_reported() {
    let fixture = Fixture::new();
    std::fs::write(fixture.path("partners.parquet"), "not parquet").expect("write");
    fixture.write_config(&CONFIG.replace("seed = 7", "seed = 7\nmargin-rate = 2.0"));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(
        &stderr,
        &[
            "margin-rate",
            "must be in [0, 1]",
            "not a readable Parquet file",
        ],
    );
}

#[test]
fn input_paths_can_come_from_the_environment() {
    let fixture = Fixture::new();
    std::fs::rename(
        fixture.path("partners.parquet"),
        fixture.path("elsewhere.parquet"),
    )
    .expect("rename");
    let (code, _, stderr) = crate::common::run(
        crate::common::segtune()
            .arg("validate")
            .env("SEGTUNE_CONFIG", fixture.path("segtune.toml"))
            .env("SEGTUNE_PARTNERS", fixture.path("elsewhere.parquet")),
    );
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn one_configuration_serves_every_period_from_the_environment() {
    // The scheduled job of the README: the period and its inputs from the
    // environment, the output by default `runs/<period>` beside the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    crate::common::generate_into(&data, &["--partners", "3000", "--periods", "2"]);
    let period_file =
        |period: &str, table: &str| data.join(format!("periods/{period}/{table}.parquet"));
    let (code, stdout, stderr) = crate::common::run(
        crate::common::segtune()
            .arg("run")
            .env("SEGTUNE_CONFIG", data.join("segtune.toml"))
            .env("SEGTUNE_PERIOD", "2025-Q4")
            .env("SEGTUNE_PARTNERS", period_file("2025-Q4", "partners"))
            .env("SEGTUNE_ASSIGNMENTS", period_file("2025-Q4", "assignments"))
            .env("SEGTUNE_OUTCOMES", period_file("2025-Q4", "outcomes")),
    );
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON line");
    assert_eq!(summary["evaluated_period"], "2025-Q4");
    assert_eq!(summary["target_period"], "2026-Q1");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("runs/2025-Q4/manifest.json")).expect("runs/2025-Q4"),
    )
    .expect("manifest");
    assert_eq!(manifest["evaluated_period"], "2025-Q4");
    // The next quarter, by the flag this time, after the first.
    let (code, stdout, stderr) = crate::common::run(
        crate::common::segtune()
            .arg("run")
            .arg("--config")
            .arg(data.join("segtune.toml"))
            .args(["--period", "2026-Q1"])
            .arg("--previous-run")
            .arg(data.join("runs/2025-Q4")),
    );
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON line");
    assert_eq!(summary["target_period"], "2026-Q2");
    assert!(data.join("runs/2026-Q1/manifest.json").is_file());
}

#[test]
fn the_example_configuration_documents_every_key_and_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let example =
        std::fs::read_to_string(root.join("segtune.example.toml")).expect("example config exists");
    // Every key the reader knows appears, with its default, in the example.
    for key in [
        "period",
        "target-period",
        "seed",
        "margin-rate",
        "[inputs]",
        "partners",
        "assignments",
        "outcomes",
        "previous-run",
        "[features]",
        "numeric",
        "categorical",
        "revenue",
        "[[outcome]]",
        "name",
        "covariate",
        "value-per-unit",
        "scaling",
        "missing-indicators",
        "[features.transforms]",
        "winsorise",
        "rank",
        "[features.weights]",
        "[features.one-hot]",
        "[segments]",
        "k =",
        "k-min",
        "k-max",
        "fallback-k",
        "min-share",
        "min-stability",
        "silhouette-sample",
        "bootstrap =",
        "bootstrap-size",
        "restarts",
        "max-iterations",
        "tolerance",
        "precision",
        "[evaluation]",
        "min-n-per-arm",
        "fdr",
        "tune-outcome",
        "srm-p-threshold",
        "min-effect",
        "[tuning]",
        "schemes",
        "floor",
        "holdout-share",
        "initial-weights",
        "forgetting",
        "max-step",
        "draws",
        "caps",
        "pinned",
        "off =",
        "[[tuning.segment]]",
        "strategic",
        "holdout-policy",
        "holdout-min",
        "holdout-max",
        "max-consecutive-holdouts",
        "[[rules]]",
        "condition",
        "segment-name",
        "continuity-threshold",
        "drift-threshold",
        "[[names]]",
        "when",
        "[limits]",
        "max-rows",
        "max-columns",
        "max-string-length",
    ] {
        assert!(
            example.contains(key),
            "segtune.example.toml does not document `{key}`"
        );
    }
    let fixture = Fixture::new();
    // The example's paths point at generated data; resolve it against the fixture instead.
    let text = example
        .replace("periods/2026-Q3/partners.parquet", "partners.parquet")
        .replace("periods/2026-Q3/assignments.parquet", "assignments.parquet")
        .replace("periods/2026-Q3/outcomes.parquet", "outcomes.parquet");
    let parsed: Result<toml::Value, _> = toml::from_str(&text);
    assert!(parsed.is_ok(), "the example is valid TOML");
    let settings = segtune::config::RunSettings::from_source(
        &fixture.path("segtune.toml"),
        &text,
        &Default::default(),
    );
    assert!(
        settings.is_ok(),
        "the example resolves: {:?}",
        settings.err().map(|e| e.to_string())
    );
}
