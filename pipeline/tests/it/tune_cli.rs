//! Tuning limits from the configuration: schemes switched off, pinned and
//! capped; limits that cannot be met together are a configuration error
//! with nothing written.

use std::path::{Path, PathBuf};

use crate::common::{
    assert_mentions, floats, generate_into, read, run, segtune, segtune_run, strings, u32s,
};

fn generated(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    generate_into(&data, &["--partners", "4000", "--periods", "1"]);
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
                assert!(
                    reason.contains("switched off by the configuration"),
                    "{reason}"
                );
            }
            "cert_bonus" => {
                let pinned = if segment == 1 { 0.4 } else { 0.3 };
                assert!(
                    (weight - pinned).abs() < 1e-12,
                    "segment {segment}: {weight}"
                );
                assert!(reason.contains("pinned by the configuration"), "{reason}");
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

/// `validate` and `run` both refuse `config` as a configuration error (exit
/// 2) naming `fragments`, and the run writes nothing.
#[track_caller]
fn refused_by_validate_and_run(config: &Path, out: &Path, fragments: &[&str]) {
    let (code, stdout, stderr) = run(segtune().arg("validate").arg("--config").arg(config));
    assert_eq!(code, 2, "validate: {stdout}{stderr}");
    assert_mentions(&stderr, fragments);
    let (code, stdout, stderr) = run(&mut segtune_run(config, out));
    assert_eq!(code, 2, "run: {stderr}");
    assert!(stdout.is_empty());
    assert_mentions(&stderr, fragments);
    assert!(!out.exists(), "no run folder");
}

#[test]
fn limits_that_cannot_be_met_are_a_configuration_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generated(dir.path());
    let out = dir.path().join("run");
    // The schemes come from the assignments here (no `tuning.schemes`), so
    // these are found once they are read, by `validate` as by `run`.
    let config = with_tuning(
        &data,
        "infeasible.toml",
        "pinned = { cert_bonus = 0.7, attach_bonus = 0.3 }\nfloor = 0.05",
    );
    refused_by_validate_and_run(
        &config,
        &out,
        &[
            "infeasible.toml",
            "key `tuning` (line",
            "the least the 5 schemes can get sums to 1.150, more than 1",
            "pinned: attach_bonus 0.3, cert_bonus 0.7; floor 0.05 for each of the others",
        ],
    );
    let config = with_tuning(&data, "floor.toml", "floor = 0.3");
    refused_by_validate_and_run(&config, &out, &["sums to 1.500, more than 1"]);
    let config = with_tuning(
        &data,
        "caps.toml",
        "caps = { cert_bonus = 0.1, attach_bonus = 0.1, deal_reg_spiff = 0.1, cosell_fund = 0.1, new_market_bonus = 0.1 }",
    );
    refused_by_validate_and_run(
        &config,
        &out,
        &[
            "the most the 5 schemes can get sums to 0.500, less than 1",
            "attach_bonus up to 0.1",
        ],
    );
    let config = with_tuning(&data, "below.toml", "caps = { cert_bonus = 0.01 }");
    refused_by_validate_and_run(
        &config,
        &out,
        &["`cert_bonus` is capped at 0.01, below the floor of 0.05"],
    );
    // A scheme the assignments lack: a typo would leave its limit doing
    // nothing, but a scheme switched off is out of the draws by design, so
    // it is a warning (log, validate's JSON, the page), not a refusal.
    let config = with_tuning(
        &data,
        "typo.toml",
        "off = [\"cert_bonsu\"]\ninitial-weights = { atach_bonus = 1.0 }\n\n[[tuning.segment]]\nid = 3\ncaps = { deal_reg = 0.2 }",
    );
    let warned = [
        "key `tuning.off` (line",
        "`cert_bonsu` is not a scheme of the assignments (they have: attach_bonus, cert_bonus, cosell_fund, deal_reg_spiff, new_market_bonus), so this limit does nothing this period",
        "key `tuning.initial-weights` (line",
        "`atach_bonus`",
        "key `tuning.segment.0.caps` (line",
        "`deal_reg`",
    ];
    let (code, stdout, stderr) = run(segtune().arg("validate").arg("--config").arg(&config));
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(&stderr, &warned);
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON line");
    assert_eq!(
        summary["warnings"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );
    let (code, _, stderr) = run(&mut segtune_run(&config, &out));
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(&stderr, &warned);
    let report = std::fs::read_to_string(out.join("report.json")).expect("report.json");
    assert_mentions(
        &report,
        &["\"Configuration\"", "`cert_bonsu` is not a scheme"],
    );
    std::fs::remove_dir_all(&out).expect("clean");
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

/// partner -> (scheme, holdout streak) from a run's assignments_next.parquet.
fn draw_of(run_dir: &Path) -> std::collections::HashMap<String, (String, u32)> {
    let (_, batches) = read(&run_dir.join("assignments_next.parquet"));
    let ids = strings(&batches, "partner_id");
    let schemes = strings(&batches, "scheme_id");
    let streaks = u32s(&batches, "holdout_streak");
    ids.into_iter()
        .zip(schemes)
        .zip(streaks)
        .map(|((id, scheme), streak)| {
            (
                id.expect("id"),
                (scheme.expect("scheme"), streak.expect("streak")),
            )
        })
        .collect()
}

#[test]
fn strategic_partners_are_never_held_out_nor_counted_and_holdout_streaks_are_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "4000", "--periods", "2"]);
    // The first quarter, with every fifth partner of its assignments strategic.
    let (_, assigned) = read(&data.join("periods/2025-Q4/assignments.parquet"));
    let ids: Vec<String> = strings(&assigned, "partner_id")
        .into_iter()
        .flatten()
        .collect();
    let strategic: Vec<String> = ids.iter().step_by(5).cloned().collect();
    crate::common::write_table(
        &data.join("strategic.parquet"),
        vec![crate::common::Col::Strings(
            "partner_id",
            strategic.iter().cloned().map(Some).collect(),
        )],
    );
    let first = with_tuning(
        &data,
        "first.toml",
        "holdout-share = 0.3\nmax-consecutive-holdouts = 1",
    );
    let text = std::fs::read_to_string(&first)
        .expect("config")
        .replace("2026-Q1", "2025-Q4")
        .replace("[inputs]", "[inputs]\nstrategic = \"strategic.parquet\"");
    std::fs::write(&first, text).expect("config");
    let first_run = dir.path().join("first");
    let (code, _, stderr) = run(&mut segtune_run(&first, &first_run));
    assert_eq!(code, 0, "{stderr}");
    let first_draw = draw_of(&first_run);
    let strategic: std::collections::HashSet<&String> = strategic.iter().collect();
    let held: Vec<&String> = first_draw
        .iter()
        .filter(|(_, (scheme, _))| scheme == "holdout")
        .map(|(id, _)| id)
        .collect();
    assert!(held.len() > 500, "{} held out", held.len());
    assert!(
        held.iter().all(|id| !strategic.contains(id)),
        "a strategic partner held out"
    );
    // Never counted in lift: about 90 % of the assigned partners are
    // treated, so with strategic partners the revenue cells would hold more
    // treated partners than there are non-strategic ones.
    let (_, lift) = read(&first_run.join("lift.parquet"));
    let outcome = strings(&lift, "outcome");
    let treated: u64 = crate::common::u64s(&lift, "n_treated")
        .iter()
        .zip(&outcome)
        .filter(|(_, o)| o.as_deref() == Some("revenue"))
        .map(|(n, _)| n.expect("n"))
        .sum();
    let not_strategic = (ids.len() - strategic.len()) as u64;
    assert!(
        treated > not_strategic / 2 && treated <= not_strategic,
        "treated {treated} of {not_strategic} non-strategic partners"
    );

    // The next quarter with the cap of 1: nobody held out twice in a row.
    let second = with_tuning(
        &data,
        "second.toml",
        "holdout-share = 0.3\nmax-consecutive-holdouts = 1",
    );
    let second_run = dir.path().join("second");
    let (code, _, stderr) = run(segtune_run(&second, &second_run)
        .args(["--previous-run", first_run.to_str().expect("utf-8")]));
    assert_eq!(code, 0, "{stderr}");
    let second_draw = draw_of(&second_run);
    let mut carried = 0;
    for id in &held {
        if let Some((scheme, streak)) = second_draw.get(*id) {
            carried += 1;
            assert_ne!(scheme, "holdout", "{id} held out twice in a row");
            assert_eq!(*streak, 0);
        }
    }
    assert!(
        carried > 500,
        "only {carried} held-out partners carried over"
    );
    assert!(second_draw
        .values()
        .any(|(s, streak)| s == "holdout" && *streak == 1));
}

#[test]
fn the_recommended_holdout_share_follows_power_within_its_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generated(dir.path());
    let config = with_tuning(
        &data,
        "recommended.toml",
        "holdout-policy = \"recommended\"\nholdout-min = 0.08\nholdout-max = 0.25",
    );
    let out = dir.path().join("run");
    let (code, _, stderr) = run(&mut segtune_run(&config, &out));
    assert_eq!(code, 0, "{stderr}");
    let (_, power) = read(&out.join("power.parquet"));
    let recommended: std::collections::HashMap<u32, Option<f64>> = u32s(&power, "segment_id")
        .into_iter()
        .flatten()
        .zip(floats(&power, "recommended_holdout_share"))
        .collect();
    assert!(!recommended.is_empty());
    let (_, weights) = read(&out.join("weights.parquet"));
    for (segment, share) in u32s(&weights, "segment_id")
        .into_iter()
        .flatten()
        .zip(floats(&weights, "holdout_share").into_iter().flatten())
    {
        let expected = match recommended.get(&segment) {
            Some(Some(h)) => h.clamp(0.08, 0.25),
            Some(None) => 0.25,
            None => 0.10,
        };
        assert!(
            (share - expected).abs() < 1e-12,
            "segment {segment}: {share} vs {expected}"
        );
    }
}
