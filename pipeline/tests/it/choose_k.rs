//! Choosing k: the gates refuse (exit 4, every k's scores printed), a
//! configured fallback applies, a fixed k skips the choice.

use std::path::Path;

use crate::common::{assert_mentions, generate_into, run, segtune};

fn setup(dir: &Path, segments: &str) -> std::path::PathBuf {
    let data = dir.join("data");
    generate_into(&data, &["--partners", "3000", "--periods", "1"]);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let path = data.join("k.toml");
    std::fs::write(&path, format!("{config}\n[segments]\n{segments}\n")).expect("write");
    path
}

fn manifest(run_dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("manifest.json")).expect("manifest"))
        .expect("json")
}

#[test]
fn no_k_passing_the_gates_exits_4_with_every_score() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path(), "min-share = 0.4");
    let out = dir.path().join("run");
    let (code, stdout, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 4, "{stderr}");
    assert!(stdout.is_empty());
    assert_mentions(
        &stderr,
        &[
            "no k in the sweep passes",
            "silhouette",
            "stability",
            "fallback-k",
        ],
    );
    for k in 3..=6 {
        assert!(
            stderr
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{k} "))),
            "k = {k} missing:\n{stderr}"
        );
    }
    assert!(!out.exists(), "nothing written");
}

#[test]
fn the_fallback_k_applies_when_no_k_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path(), "min-share = 0.4\nfallback-k = 4");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let selection = &manifest(&out)["quality"]["k_selection"];
    assert_eq!(selection["chosen"], 4);
    assert!(selection["reason"]
        .as_str()
        .is_some_and(|r| r.contains("fallback")));
    assert_eq!(selection["candidates"].as_array().map(Vec::len), Some(4));
    let rule_segments = manifest(&out)["rule_segment_ids"]
        .as_object()
        .map_or(0, serde_json::Map::len) as u64;
    assert_eq!(
        manifest(&out)["rows"]["segments"].as_u64(),
        Some(4 + rule_segments)
    );
}

#[test]
fn a_fixed_k_is_used_and_still_scored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path(), "k = 5");
    let out = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let selection = &manifest(&out)["quality"]["k_selection"];
    assert_eq!(selection["chosen"], 5);
    assert!(selection["candidates"][0]["silhouette"].as_f64().is_some());
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert_mentions(
        &report,
        &["How many segments", "fixed by the configuration"],
    );
}

#[test]
fn a_fallback_outside_the_sweep_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = setup(dir.path(), "min-share = 0.4\nfallback-k = 9");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("run")));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(&stderr, &["fallback-k = 9 is outside the sweep"]);
}
