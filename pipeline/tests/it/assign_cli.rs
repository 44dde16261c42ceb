//! `segtune assign` gives the same segment as the full run, for partners in both.

use crate::common::{
    assert_mentions, floats, generate_into, read, run, segment_of, segtune, strings, u32s,
};

#[test]
fn assign_gives_the_same_segments_as_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    generate_into(&data, &["--partners", "4000", "--periods", "2"]);
    let run_dir = dir.path().join("run");
    let (code, _, stderr) = run(segtune()
        .arg("run")
        .arg("--config")
        .arg(data.join("segtune.toml"))
        .arg("--out")
        .arg(&run_dir));
    assert_eq!(code, 0, "{stderr}");

    // The run's own partners: identical segments.
    let out = dir.path().join("assigned.parquet");
    let (code, stdout, stderr) = run(segtune()
        .arg("assign")
        .arg("--run")
        .arg(&run_dir)
        .arg("--partners")
        .arg(data.join("periods/2026-Q1/partners.parquet"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(&stdout, &["\"partners\":", "\"segments\":"]);
    let (from_run, assigned) = (
        segment_of(&run_dir.join("segments.parquet")),
        segment_of(&out),
    );
    assert_eq!(from_run.len(), assigned.len());
    let differ = from_run
        .iter()
        .filter(|(partner, segment)| assigned.get(*partner) != Some(segment))
        .count();
    assert_eq!(differ, 0, "{differ} partners differ");
    // Row for row (the same partners file), every column but the previous
    // segment (assign has no previous run) is the run's: names, sources,
    // distances, second-nearest segments and margins.
    let ((run_schema, run_rows), (schema, rows)) =
        (read(&run_dir.join("segments.parquet")), read(&out));
    assert_eq!(run_schema, schema);
    for column in ["partner_id", "segment_name", "source"] {
        assert_eq!(
            strings(&run_rows, column),
            strings(&rows, column),
            "{column}"
        );
    }
    for column in ["segment_id", "second_segment_id"] {
        assert_eq!(u32s(&run_rows, column), u32s(&rows, column), "{column}");
    }
    // Distances from the saved transform, to rounding.
    for column in ["distance", "margin"] {
        let (ours, theirs) = (floats(&run_rows, column), floats(&rows, column));
        assert_eq!(
            ours.iter().map(Option::is_some).collect::<Vec<_>>(),
            theirs.iter().map(Option::is_some).collect::<Vec<_>>(),
            "{column}: the same rows have one"
        );
        let worst = ours
            .iter()
            .zip(&theirs)
            .filter_map(|(a, b)| Some((a.as_ref()? - b.as_ref()?).abs()))
            .fold(0.0f64, f64::max);
        assert!(worst < 1e-9, "{column} differs by up to {worst}");
    }
    assert!(u32s(&rows, "previous_segment_id")
        .iter()
        .all(Option::is_none));

    // Another period's partners: every one gets a segment of the run.
    let other = dir.path().join("other.parquet");
    let (code, _, stderr) = run(segtune()
        .arg("assign")
        .arg("--run")
        .arg(&run_dir)
        .arg("--partners")
        .arg(data.join("periods/2025-Q4/partners.parquet"))
        .arg("--out")
        .arg(&other));
    assert_eq!(code, 0, "{stderr}");
    let known: std::collections::HashSet<u32> = from_run.values().copied().collect();
    assert!(segment_of(&other).values().all(|s| known.contains(s)));

    // An existing output needs --force.
    let (code, _, stderr) = run(segtune()
        .arg("assign")
        .arg("--run")
        .arg(&run_dir)
        .arg("--partners")
        .arg(data.join("periods/2025-Q4/partners.parquet"))
        .arg("--out")
        .arg(&other));
    assert_eq!(code, 2, "{stderr}");
}
