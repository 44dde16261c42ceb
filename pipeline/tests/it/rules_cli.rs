//! Rule segments on the command line: invalid rules are refused with the
//! rule, the column and the problem (exit 2); matched partners form their
//! segments, keyed by rule name.

use crate::common::{assert_mentions, generate_into, run, segtune, Fixture, CONFIG};

#[track_caller]
fn refused(rules: &str, fragments: &[&str]) {
    let fixture = Fixture::new();
    fixture.write_config(&format!("{CONFIG}\n{rules}"));
    let (code, stdout, stderr) = fixture.validate();
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert_mentions(&stderr, fragments);
}

#[test]
fn an_invalid_rule_names_the_rule_and_its_line() {
    refused(
        "[[rules]]\nname = \"broken\"\ncondition = \"tenure_months <\"\n",
        &[
            "rules.0.condition",
            "line 20",
            "rule `broken`",
            "needs 2 operands",
        ],
    );
}

#[test]
fn a_rule_that_tries_to_reach_outside_is_refused() {
    refused(
        "[[rules]]\nname = \"escape\"\ncondition = \"str::from(1) == \\\"1\\\"\"\n",
        &["rule `escape`", "functions are not allowed"],
    );
    refused(
        "[[rules]]\nname = \"assign\"\ncondition = \"x = 1\"\n",
        &["rule `assign`", "not allowed in a rule"],
    );
}

#[test]
fn a_rule_on_a_missing_column_names_the_rule_and_the_column() {
    let fixture = Fixture::new();
    fixture.write_config(&format!("{CONFIG}\n[segments]\nk = 2\nbootstrap = 0\n\n[[rules]]\nname = \"ghost\"\ncondition = \"visits > 3\"\n"));
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(fixture.path("segtune.toml"))
        .arg("--out")
        .arg(fixture.path("run")));
    assert_eq!(code, 2, "{stderr}");
    // The key and line of the rule's condition in the configuration.
    let line = std::fs::read_to_string(fixture.path("segtune.toml"))
        .expect("config")
        .lines()
        .position(|l| l.starts_with("condition = \"visits"))
        .expect("the condition")
        + 1;
    assert_mentions(
        &stderr,
        &[
            "segtune.toml",
            &format!("key `rules.0.condition` (line {line})"),
            "rule `ghost`",
            "column `visits`",
            "no such column",
        ],
    );
    assert!(!fixture.path("run").exists());
}

#[test]
fn rule_segments_come_first_and_keep_their_rule_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "3000", "--periods", "1"]);
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(data.join("segtune.toml"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["rule_segment_ids"]["new"], 1);
    assert_eq!(manifest["rule_segment_ids"]["dormant"], 2);
    let weights: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("weights.json")).expect("weights"))
            .expect("json");
    assert!(weights.iter().any(|w| w["segment_name"] == "New partners"));
    assert!(weights
        .iter()
        .any(|w| w["segment_name"] == "Dormant partners"));
}

#[test]
fn segments_no_naming_rule_matches_get_a_neutral_profile_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "3000", "--periods", "1"]);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    std::fs::write(
        data.join("names.toml"),
        format!("{config}\n[[names]]\nname = \"Giants\"\nwhen = \"revenue_12m > 50\"\n"),
    )
    .expect("write");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(data.join("names.toml"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let weights: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("weights.json")).expect("weights"))
            .expect("json");
    let names: std::collections::BTreeSet<&str> = weights
        .iter()
        .filter_map(|w| w["segment_name"].as_str())
        .collect();
    assert!(!names.contains("Giants"));
    assert!(
        names.iter().filter(|n| n.starts_with("Segment ")).count() >= 3,
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| !n.contains("Top performers")),
        "configured names replace the defaults: {names:?}"
    );

    std::fs::write(
        data.join("bad-names.toml"),
        format!("{config}\n[[names]]\nname = \"Visitors\"\nwhen = \"visits > 1\"\n"),
    )
    .expect("write");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(data.join("bad-names.toml"))
        .arg("--out")
        .arg(dir.path().join("bad")));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["rule `Visitors`", "column `visits`"]);
}

#[test]
fn the_default_names_follow_the_archetypes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("demo");
    let (code, stdout, stderr) = run(segtune()
        .args(["demo", "--partners", "20000", "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    for name in [
        "New partners",
        "Dormant partners",
        "Top performers",
        "Growth partners",
        "Steady contributors",
        "Low engagement",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
}
