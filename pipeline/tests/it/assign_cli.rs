//! `segtune assign` gives the same segment as the full run, for partners in both.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;

use crate::common::{assert_mentions, run, segtune};

fn segments_of(path: &Path) -> HashMap<String, u32> {
    let file = std::fs::File::open(path).expect("exists");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut out = HashMap::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let ids = batch
            .column_by_name("partner_id")
            .expect("ids")
            .as_string::<i32>()
            .clone();
        let segments = batch
            .column_by_name("segment_id")
            .expect("segments")
            .as_primitive::<UInt32Type>()
            .clone();
        for (id, segment) in ids.iter().zip(segments.iter()) {
            out.insert(id.expect("id").to_string(), segment.expect("segment"));
        }
    }
    out
}

#[test]
fn assign_gives_the_same_segments_as_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (code, _, stderr) = run(segtune()
        .args(["generate", "--partners", "4000", "--periods", "2", "--out"])
        .arg(&data));
    assert_eq!(code, 0, "{stderr}");
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
        segments_of(&run_dir.join("segments.parquet")),
        segments_of(&out),
    );
    assert_eq!(from_run.len(), assigned.len());
    let differ = from_run
        .iter()
        .filter(|(partner, segment)| assigned.get(*partner) != Some(segment))
        .count();
    assert_eq!(differ, 0, "{differ} partners differ");

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
    assert!(segments_of(&other).values().all(|s| known.contains(s)));

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
