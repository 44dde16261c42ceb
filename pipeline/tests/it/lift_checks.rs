//! The lift estimator's checks: agreement with statsmodels on the very
//! designs segtune fitted, the variance reduction theory predicts, the
//! randomisation check on a fair and a skewed draw, and the edge cases every
//! cell can hit. (Interval coverage over 40 generator seeds is
//! notebooks-equivalent/tests/coverage.rs.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{
    floats, generate_into, read, run, run_peer, segtune_run, strings, u32s, u64s, write_table, Col,
};

/// `segtune generate` into `dir/name`; returns the folder.
fn generate(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    generate_into(&out, args);
    out
}

/// The generated configuration for `period`, k fixed and no stability
/// resamples (fast), written beside it as `name`.
fn config_for(data: &Path, name: &str, period: Option<(&str, &str)>) -> PathBuf {
    let mut text = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    if let Some((last, period)) = period {
        text = text.replace(last, period);
    }
    text.push_str("\n[segments]\nk = 3\nbootstrap = 0\n");
    let path = data.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn run_config(config: &Path, out: &Path, extra: &[&str]) {
    let (code, _, stderr) = run(segtune_run(config, out).args(extra));
    assert_eq!(code, 0, "{stderr}");
}

/// Sets every 25th partner's `revenue_pre` to null (partners without a
/// pre-period), so that cells fit the missing indicator too.
fn blank_some_pre_period_values(path: &Path) {
    use arrow_array::{Array, Float64Array, RecordBatch};
    use std::sync::Arc;
    let (schema, batches) = read(path);
    let index = schema.index_of("revenue_pre").expect("revenue_pre");
    let mut offset = 0;
    let batches: Vec<RecordBatch> =
        batches
            .into_iter()
            .map(|batch| {
                let values = arrow_array::cast::AsArray::as_primitive::<
                    arrow_array::types::Float64Type,
                >(batch.column(index));
                let blanked: Float64Array = (0..values.len())
                    .map(|i| {
                        (!(offset + i).is_multiple_of(25) && values.is_valid(i))
                            .then(|| values.value(i))
                    })
                    .collect();
                offset += values.len();
                let mut columns = batch.columns().to_vec();
                columns[index] = Arc::new(blanked);
                RecordBatch::try_new(schema.clone(), columns).expect("batch")
            })
            .collect();
    let file = std::fs::File::create(path).expect("create");
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).expect("writer");
    for batch in &batches {
        writer.write(batch).expect("write");
    }
    writer.close().expect("close");
}

#[test]
fn lift_and_q_values_agree_with_statsmodels_and_the_covariate_cuts_the_error_as_theory_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A large holdout so that many cells have 1,000 partners per arm, and
    // 200,000 partners: revenue is log-normal, and at 50,000 a cell's sample
    // correlation and the leverage of its largest partners are still noisy
    // enough to put the HC2 ratio up to 17 % off sqrt(1 - rho^2) (measured on
    // seed 3; here the largest gap is under 8 %).
    let data = generate(
        dir.path(),
        "data",
        &[
            "--partners",
            "200000",
            "--periods",
            "1",
            "--seed",
            "3",
            "--holdout-share",
            "0.3",
        ],
    );
    blank_some_pre_period_values(&data.join("periods/2025-Q4/outcomes.parquet"));
    let config = config_for(&data, "fast.toml", None);
    let (out, designs) = (dir.path().join("run"), dir.path().join("designs"));
    run_config(
        &config,
        &out,
        &["--dump-design", designs.to_str().expect("utf-8")],
    );
    let peer = run_peer(
        "pipeline/tests/peer/lift_peer.py",
        &[
            designs.join("design.parquet").display().to_string(),
            out.join("lift.parquet").display().to_string(),
        ],
    );
    let cells = peer["cells"].as_array().expect("cells");
    // Every estimated cell was compared: 3 outcomes x (3 k-means + 2 rule
    // segments) x 5 schemes.
    assert_eq!(cells.len(), 3 * 5 * 5, "{peer}");
    let mut kinds = BTreeMap::new();
    for cell in cells {
        let columns: Vec<&str> = cell["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        *kinds.entry(columns.len()).or_insert(0) += 1;
        for key in ["coef_rel_err", "se_rel_err"] {
            let error = cell[key].as_f64().expect("error");
            assert!(error <= 1e-9, "{key} = {error:e} in {cell}");
        }
    }
    // Both paths were exercised: plain difference in means (2 columns) and
    // Lin's regression with the missing indicator (6 columns).
    assert!(
        kinds.contains_key(&2) && kinds.contains_key(&6),
        "{kinds:?}"
    );
    for q in peer["bh"].as_array().expect("bh") {
        let (ours, theirs) = (
            q["ours"].as_f64().expect("q"),
            q["theirs"].as_f64().expect("q"),
        );
        assert!(
            (ours - theirs).abs() <= 1e-12 * theirs.max(1e-300).max(1.0),
            "{q}"
        );
    }
    // Variance reduction: se with the covariate over se without is within
    // 10 % of sqrt(1 - rho^2), rho^2 the pooled within-arm R^2.
    let large: Vec<&serde_json::Value> = cells.iter().filter(|c| c.get("rho2").is_some()).collect();
    assert!(
        large.len() >= 10,
        "only {} cells with 1,000 per arm",
        large.len()
    );
    for cell in large {
        let (ratio, expected) = (
            cell["se_ratio"].as_f64().expect("ratio"),
            cell["expected_ratio"].as_f64().expect("expected"),
        );
        assert!(
            (ratio / expected - 1.0).abs() <= 0.10,
            "se ratio {ratio:.3} vs sqrt(1 - rho^2) {expected:.3} in {cell}"
        );
        assert!(ratio < 0.95, "the covariate must help: {cell}");
    }
}

/// Reads a run's `randomisation.parquet` as (segment, mismatch, p-value) per stratum.
fn randomisation(run_dir: &Path) -> BTreeMap<u32, (bool, f64)> {
    let (_, batches) = read(&run_dir.join("randomisation.parquet"));
    let segments = u32s(&batches, "segment_id");
    let p_values = floats(&batches, "p_value");
    let mismatch: Vec<bool> = batches
        .iter()
        .flat_map(|b| {
            arrow_array::cast::AsArray::as_boolean(b.column_by_name("mismatch").expect("mismatch"))
                .iter()
                .map(|v| v.expect("not null"))
                .collect::<Vec<_>>()
        })
        .collect();
    segments
        .iter()
        .zip(p_values)
        .zip(mismatch)
        .map(|((s, p), m)| (s.expect("segment"), (m, p.expect("p"))))
        .collect()
}

#[test]
fn the_randomisation_check_passes_the_proposed_draw_and_fires_on_a_skewed_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = ["--partners", "8000", "--periods", "2", "--seed", "5"];
    let data = generate(dir.path(), "data", &args);
    let first = config_for(&data, "first.toml", Some(("2026-Q1", "2025-Q4")));
    let first_run = dir.path().join("first");
    run_config(&first, &first_run, &[]);

    // The draw the first run proposes, and the same draw with most of the
    // largest segment's holdout moved into one scheme.
    let (_, batches) = read(&first_run.join("assignments_next.parquet"));
    let ids: Vec<String> = strings(&batches, "partner_id")
        .into_iter()
        .flatten()
        .collect();
    let segment: Vec<u32> = u32s(&batches, "segment_id").into_iter().flatten().collect();
    let scheme: Vec<String> = strings(&batches, "scheme_id")
        .into_iter()
        .flatten()
        .collect();
    let mut sizes: BTreeMap<u32, usize> = BTreeMap::new();
    for s in &segment {
        *sizes.entry(*s).or_default() += 1;
    }
    let skewed_segment = *sizes.iter().max_by_key(|(_, n)| **n).expect("segments").0;
    let mut skewed = scheme.clone();
    let mut moved = 0;
    for (i, s) in skewed.iter_mut().enumerate() {
        if segment[i] == skewed_segment && s == "holdout" && i % 5 != 0 {
            *s = "cert_bonus".into();
            moved += 1;
        }
    }
    assert!(moved > 100, "moved {moved}");
    let write_draw = |name: &str, schemes: &[String]| -> PathBuf {
        let path = dir.path().join(name);
        write_table(
            &path,
            vec![
                Col::Strings("partner_id", ids.iter().cloned().map(Some).collect()),
                Col::UInt32("segment_id", segment.iter().copied().map(Some).collect()),
                Col::Strings("scheme_id", schemes.iter().cloned().map(Some).collect()),
            ],
        );
        path
    };
    for (name, draw, fires) in [
        ("fair", write_draw("fair.parquet", &scheme), false),
        ("skewed", write_draw("skewed.parquet", &skewed), true),
    ] {
        let mut with_draw = args.to_vec();
        let draw = draw.to_str().expect("utf-8").to_string();
        with_draw.extend(["--assignments", &draw, "--period", "2026-Q1"]);
        let data = generate(dir.path(), &format!("data-{name}"), &with_draw);
        let config = config_for(&data, "second.toml", None);
        let out = dir.path().join(format!("run-{name}"));
        run_config(
            &config,
            &out,
            &["--previous-run", first_run.to_str().expect("utf-8")],
        );
        let checks = randomisation(&out);
        assert_eq!(checks.len(), sizes.len(), "{name}: every stratum checked");
        for (stratum, (mismatch, p)) in &checks {
            let expected = fires && *stratum == skewed_segment;
            assert_eq!(*mismatch, expected, "{name}: stratum {stratum} p = {p:e}");
            if expected {
                assert!(*p < 1e-6, "{name}: p = {p:e}");
            }
        }
        let (_, weights) = read(&out.join("weights.parquet"));
        let reasons = strings(&weights, "reason");
        let held = u32s(&weights, "segment_id")
            .iter()
            .zip(&reasons)
            .filter(|(_, r)| {
                r.as_deref()
                    .is_some_and(|r| r.contains("randomisation check"))
            })
            .map(|(s, _)| s.expect("segment"))
            .collect::<std::collections::BTreeSet<u32>>();
        let expected_held: std::collections::BTreeSet<u32> =
            fires.then_some(skewed_segment).into_iter().collect();
        assert_eq!(held, expected_held, "{name}: held segments");
    }
}

/// A program of 400 partners whose strata (given in the assignments) each
/// exercise one edge case of a lift cell.
#[test]
fn every_edge_case_of_a_cell_gets_its_method_and_no_made_up_lift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 400;
    let id = |i: usize| format!("P{i:04}");
    // (stratum, scheme, outcome present) per partner, in blocks.
    let mut plan: Vec<(u32, &str, bool)> = Vec::new();
    let mut block = |stratum: u32, scheme: &'static str, count: usize, present: bool| {
        plan.extend(std::iter::repeat_n((stratum, scheme, present), count));
    };
    block(1, "holdout", 40, true); // an ordinary stratum: two schemes,
    block(1, "cert_bonus", 40, true);
    block(1, "free_lunch", 40, true); // one of them free (cost 0)
    block(2, "cert_bonus", 40, true); // no holdout
    block(3, "holdout", 40, true); // holdout only: no treated partner
    block(4, "holdout", 40, true); // all outcomes equal
    block(4, "cert_bonus", 40, true);
    block(5, "holdout", 10, true); // below the minimum n per arm
    block(5, "cert_bonus", 10, true);
    block(6, "holdout", 40, true); // treated partners without outcomes
    block(6, "cert_bonus", 50, true);
    for entry in plan.iter_mut().rev().take(10) {
        entry.2 = false;
    }
    assert!(plan.len() <= n);
    let wiggle = |i: usize| ((i * 37) % 23) as f64;
    write_table(
        &dir.path().join("partners.parquet"),
        vec![
            Col::Strings("partner_id", (0..n).map(|i| Some(id(i))).collect()),
            Col::Float(
                "revenue_12m",
                (0..n).map(|i| Some(1000.0 + 50.0 * wiggle(i))).collect(),
            ),
            Col::Float(
                "win_rate",
                (0..n)
                    .map(|i| Some(((i * 13) % 17) as f64 / 17.0))
                    .collect(),
            ),
        ],
    );
    write_table(
        &dir.path().join("assignments.parquet"),
        vec![
            Col::Strings("partner_id", (0..plan.len()).map(|i| Some(id(i))).collect()),
            Col::Text("scheme_id", plan.iter().map(|p| Some(p.1)).collect()),
            Col::Float(
                "cost",
                plan.iter()
                    .map(|p| Some(if p.1 == "cert_bonus" { 10.0 } else { 0.0 }))
                    .collect(),
            ),
            Col::UInt32("segment_id", plan.iter().map(|p| Some(p.0)).collect()),
        ],
    );
    let outcome = |i: usize| -> Option<f64> {
        let (stratum, scheme, present) = plan[i];
        present.then(|| match (stratum, scheme) {
            (4, _) => 5.0,
            (_, "holdout") => 100.0 + wiggle(i),
            _ => 130.0 + wiggle(i),
        })
    };
    write_table(
        &dir.path().join("outcomes.parquet"),
        vec![
            Col::Strings("partner_id", (0..plan.len()).map(|i| Some(id(i))).collect()),
            Col::Float("revenue", (0..plan.len()).map(outcome).collect()),
            Col::Float(
                "revenue_pre",
                (0..plan.len())
                    .map(|i| {
                        Some(if plan[i].0 == 4 {
                            2.0
                        } else {
                            97.0 + wiggle(i)
                        })
                    })
                    .collect(),
            ),
        ],
    );
    std::fs::write(
        dir.path().join("segtune.toml"),
        r#"period = "2026-Q3"
[inputs]
partners = "partners.parquet"
assignments = "assignments.parquet"
outcomes = "outcomes.parquet"
[features]
numeric = ["revenue_12m", "win_rate"]
[segments]
k = 3
bootstrap = 0
[[outcome]]
name = "revenue"
covariate = "revenue_pre"
"#,
    )
    .expect("config");
    let out = dir.path().join("run");
    run_config(&dir.path().join("segtune.toml"), &out, &[]);

    let (_, batches) = read(&out.join("lift.parquet"));
    let segments = u32s(&batches, "segment_id");
    let schemes = strings(&batches, "scheme_id");
    let methods = strings(&batches, "method");
    let lifts = floats(&batches, "lift");
    let ses = floats(&batches, "se");
    let p_values = floats(&batches, "p_value");
    let rois = floats(&batches, "roi");
    let costs = floats(&batches, "cost");
    let n_treated = u64s(&batches, "n_treated");
    let missing = u64s(&batches, "n_treated_missing_outcome");
    let row = |stratum: u32, scheme: &str| -> usize {
        (0..segments.len())
            .find(|r| segments[*r] == Some(stratum) && schemes[*r].as_deref() == Some(scheme))
            .unwrap_or_else(|| panic!("no row for stratum {stratum} scheme {scheme}"))
    };
    let method = |r: usize| methods[r].clone().expect("method");

    // Ordinary: estimated; the lift is the planted 30 (the outcome is the
    // pre-period value plus 3, plus 30 when treated: the adjusted fit is exact).
    let r = row(1, "cert_bonus");
    assert_eq!(method(r), "lin_hc2");
    assert!(
        (lifts[r].expect("lift") - 30.0).abs() < 1e-6,
        "{:?}",
        lifts[r]
    );
    // A free scheme: net and lift, but no ROI.
    let r = row(1, "free_lunch");
    assert_eq!((costs[r], rois[r]), (Some(0.0), None));
    assert!(lifts[r].is_some());
    // No holdout in the stratum.
    let r = row(2, "cert_bonus");
    assert_eq!(method(r), "no_holdout");
    assert_eq!((lifts[r], ses[r]), (None, None));
    // Holdout only: the schemes of the program have no treated partner here.
    let r = row(3, "cert_bonus");
    assert_eq!(
        (method(r), n_treated[r]),
        ("insufficient_n".to_string(), Some(0))
    );
    assert_eq!(lifts[r], None);
    // All outcomes equal: exactly no lift, certainly.
    let r = row(4, "cert_bonus");
    assert_eq!(
        (lifts[r], ses[r], p_values[r]),
        (Some(0.0), Some(0.0), Some(1.0))
    );
    // Below the minimum n per arm: no lift, never a zero.
    let r = row(5, "cert_bonus");
    assert_eq!((method(r), lifts[r]), ("insufficient_n".to_string(), None));
    // Treated partners without an outcome are counted apart, still paid for.
    let r = row(6, "cert_bonus");
    assert_eq!((n_treated[r], missing[r]), (Some(40), Some(10)));
    assert_eq!(costs[r], Some(500.0));
    assert!(lifts[r].is_some());
}

#[test]
fn bootstrap_intervals_are_seeded_the_same_at_any_thread_count_and_bracket_the_lift() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(
        dir.path(),
        "data",
        &["--partners", "6000", "--periods", "1", "--seed", "9"],
    );
    let config = config_for(&data, "boot.toml", None);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text = text.replace("[segments]", "[evaluation]\nbootstrap = 200\n\n[segments]");
    std::fs::write(&config, text).expect("config");
    let mut bytes = Vec::new();
    for threads in ["1", "2"] {
        let out = dir.path().join(format!("run-{threads}"));
        let (code, _, stderr) = run(segtune_run(&config, &out).env("RAYON_NUM_THREADS", threads));
        assert_eq!(code, 0, "{stderr}");
        bytes.push(std::fs::read(out.join("lift.parquet")).expect("lift"));
    }
    assert_eq!(
        bytes[0], bytes[1],
        "bootstrap intervals differ between 1 and 2 threads"
    );
    let (_, batches) = read(&dir.path().join("run-1/lift.parquet"));
    let (lift, low, high) = (
        floats(&batches, "lift"),
        floats(&batches, "boot_ci_low"),
        floats(&batches, "boot_ci_high"),
    );
    let (ci_low, ci_high) = (floats(&batches, "ci_low"), floats(&batches, "ci_high"));
    let mut compared = 0;
    for i in 0..lift.len() {
        if let (Some(l), Some(a), Some(b), Some(c), Some(d)) =
            (lift[i], low[i], high[i], ci_low[i], ci_high[i])
        {
            assert!(a <= l && l <= b, "row {i}: {l} outside [{a}, {b}]");
            // The same order of width as the HC2 interval.
            let ratio = (b - a) / (d - c);
            assert!((0.5..2.0).contains(&ratio), "row {i}: width ratio {ratio}");
            compared += 1;
        }
    }
    assert!(compared >= 30, "only {compared} cells with both intervals");
}
