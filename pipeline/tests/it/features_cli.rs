//! Feature options from the configuration reach the fitted transform saved
//! with the run; bad ones are refused with the key.

use crate::common::{assert_mentions, generate_into, run, segtune, Fixture, CONFIG};

#[test]
fn transforms_weights_one_hot_and_indicators_shape_the_saved_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "2000", "--periods", "1"]);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let config = config.replace(
        "revenue = \"revenue_12m\"\n",
        "revenue = \"revenue_12m\"\nscaling = \"robust\"\nmissing-indicators = true\n\n[features.weights]\nrevenue_12m = 2.0\n\n[features.one-hot]\ntier = 0.5\n",
    );
    let config = config.replace(
        "tenure_months = \"log1p\"",
        "tenure_months = \"rank\"\nwin_rate = { winsorise = [0.01, 0.99] }",
    );
    std::fs::write(data.join("f.toml"), &config).expect("write");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(data.join("f.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--no-progress"]));
    assert_eq!(code, 0, "{stderr}\n{config}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).expect("model"))
            .expect("json");
    let names: Vec<&str> = model["features"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for expected in [
        "revenue_12m",
        "win_rate_missing",
        "tier=gold",
        "tier=platinum",
        "tier=registered",
        "tier=silver",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let transform = &model["transform"];
    assert_eq!(transform["scaling"], "robust");
    let column = |name: &str| {
        transform["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .expect("column")
    };
    assert_eq!(column("revenue_12m")["weight"], 2.0);
    assert_eq!(column("tenure_months")["transform"], "rank");
    assert!(column("win_rate")["clip"]
        .as_array()
        .is_some_and(|c| c.len() == 2));
}

#[test]
fn an_unknown_transform_is_refused_with_its_key() {
    let fixture = Fixture::new();
    fixture.write_config(&format!(
        "{CONFIG}\n[features.transforms]\nwin_rate = \"sqrt\"\n"
    ));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(
        &stderr,
        &["features.transforms.win_rate", "unknown transform `sqrt`"],
    );
}

#[test]
fn one_hot_needs_a_categorical_column() {
    let fixture = Fixture::new();
    fixture.write_config(&format!("{CONFIG}\n[features.one-hot]\nregion = 1.0\n"));
    let (code, _, stderr) = fixture.validate();
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(
        &stderr,
        &["features.one-hot.region", "not in features.categorical"],
    );
}
