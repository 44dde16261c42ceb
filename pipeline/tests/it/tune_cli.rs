//! Tuning limits from the configuration: schemes switched off, pinned and
//! capped; limits that cannot be met together are a configuration error
//! with nothing written.

use std::path::{Path, PathBuf};

use crate::common::{assert_mentions, floats, read, run, segtune, segtune_run, strings, u32s};

fn generated(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let (code, _, stderr) = run(segtune()
        .args(["generate", "--partners", "4000", "--periods", "1", "--out"])
        .arg(&data));
    assert_eq!(code, 0, "{stderr}");
    data
}

fn with_tuning(data: &Path, name: &str, tuning: &str) -> PathBuf {
    let mut text = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    text.push_str(&format!(
        "\n[segments]\nk = 3\nbootstrap = 0\n\n[tuning]\n{tuning}\n"
    ));
    let path = data.join(name);
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn switched_off_pinned_and_capped_schemes_get_exactly_their_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generated(dir.path());
    let config = with_tuning(
        &data,
        "limits.toml",
        "off = [\"cosell_fund\"]\npinned = { cert_bonus = 0.3 }\ncaps = { deal_reg_spiff = 0.12 }\n\n[[tuning.segment]]\nid = 1\npinned = { cert_bonus = 0.4 }",
    );
    let out = dir.path().join("run");
    let (code, _, stderr) = run(&mut segtune_run(&config, &out));
    assert_eq!(code, 0, "{stderr}");
    let (_, batches) = read(&out.join("weights.parquet"));
    let segments = u32s(&batches, "segment_id");
    let schemes = strings(&batches, "scheme_id");
    let weights = floats(&batches, "weight");
    let reasons = strings(&batches, "reason");
    let mut sums = std::collections::BTreeMap::new();
    for i in 0..weights.len() {
        let (segment, scheme, weight) = (
            segments[i].expect("segment"),
            schemes[i].as_deref().expect("scheme"),
            weights[i].expect("weight"),
        );
        let reason = reasons[i].as_deref().expect("reason");
        *sums.entry(segment).or_insert(0.0) += weight;
        match scheme {
            "cosell_fund" => {
                assert_eq!(weight, 0.0);
                assert!(reason.contains("switched off by ops"), "{reason}");
            }
            "cert_bonus" => {
                let pinned = if segment == 1 { 0.4 } else { 0.3 };
                assert!(
                    (weight - pinned).abs() < 1e-12,
                    "segment {segment}: {weight}"
                );
                assert!(reason.contains("pinned by ops"), "{reason}");
            }
            "deal_reg_spiff" => assert!(weight <= 0.12 + 1e-12, "{weight}"),
            _ => assert!(weight >= 0.05 - 1e-12, "floor: {weight}"),
        }
    }
    assert!(sums.len() >= 3);
    for (segment, sum) in sums {
        assert!((sum - 1.0).abs() < 1e-9, "segment {segment} sums to {sum}");
    }
}

#[test]
fn limits_that_cannot_be_met_are_a_configuration_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generated(dir.path());
    let config = with_tuning(
        &data,
        "infeasible.toml",
        "pinned = { cert_bonus = 0.7, attach_bonus = 0.3 }\nfloor = 0.05",
    );
    let out = dir.path().join("run");
    let (code, stdout, stderr) = run(&mut segtune_run(&config, &out));
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_mentions(&stderr, &["segment", "constraints cannot be met", "pinned"]);
    assert!(!out.exists(), "no run folder");
    let config = with_tuning(
        &data,
        "bad.toml",
        "forgetting = 1.5\noff = [\"x\"]\npinned = { x = 0.2 }",
    );
    let (code, _, stderr) = run(&mut segtune_run(&config, &out));
    assert_eq!(code, 2, "{stderr}");
    assert_mentions(
        &stderr,
        &["tuning.forgetting", "both pinned and switched off"],
    );
}
