//! `segtune simulate`, small: the closed loop is consistent (each period's
//! draw is the one the previous run proposed, so the randomisation check
//! passes everywhere) and segtune captures a stated share of the gain the
//! oracle makes over the uniform program. The full-size figure (50,000
//! partners, 8 periods, seeds 0 to 9) is in bench/RESULTS.md.

use crate::common::{read, run, segtune};

/// The bound CI holds on 8,000 partners, 5 periods, 2 seeds, periods 3 to 5
/// (measured 0.34 and 0.36 of the oracle's gain: at this size a segment's
/// lift is too noisy to learn much in three periods). The full-size target,
/// 0.6 on the mean of 10 seeds at 50,000 partners, is in bench/RESULTS.md.
const CI_BOUND: f64 = 0.25;

#[test]
fn a_small_closed_loop_is_consistent_and_beats_the_uniform_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sim");
    let (code, stdout, stderr) = run(segtune()
        .args([
            "simulate",
            "--partners",
            "8000",
            "--periods",
            "5",
            "--seeds",
            "2",
            "--from-period",
            "3",
            "--out",
        ])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let captured: Vec<f64> = line["captured"]
        .as_array()
        .expect("captured")
        .iter()
        .map(|c| c.as_f64().expect("number"))
        .collect();
    assert_eq!(captured.len(), 2);
    let mean = captured.iter().sum::<f64>() / 2.0;
    assert!(
        mean >= CI_BOUND,
        "segtune captured {captured:?} of the oracle's gain"
    );
    assert!(captured.iter().all(|c| *c > 0.0), "{captured:?}");
    assert!(out.join("simulation.svg").exists());

    // Every run after the first evaluated the draw its previous run proposed.
    for seed in 0..2 {
        let runs = out.join(format!("seed-{seed}/runs"));
        let mut names: Vec<String> = std::fs::read_dir(&runs)
            .expect("runs")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 5, "{names:?}");
        for name in &names[1..] {
            let (_, batches) = read(&runs.join(name).join("randomisation.parquet"));
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            assert!(rows > 0, "{name}: no randomisation check");
            for batch in &batches {
                let mismatch = arrow_array::cast::AsArray::as_boolean(
                    batch.column_by_name("mismatch").expect("mismatch"),
                );
                assert_eq!(mismatch.true_count(), 0, "seed {seed} {name}");
            }
        }
    }
}
