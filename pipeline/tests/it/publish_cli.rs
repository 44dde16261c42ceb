//! `segtune approve` and `segtune publish`: only approved runs are
//! published, versions land whole under history/, `latest` switches
//! atomically, a republish changes nothing, an older period needs
//! --rollback, a failure before the switch leaves the previous version in
//! place, and concurrent publishes do not interleave.

use std::path::{Path, PathBuf};

use crate::common::{
    floats, generate_into, read, run, run_peer, segtune, segtune_run, strings, u32s,
};

/// Two runs of a generated program: 2025-Q4 (for 2026-Q1) and 2026-Q1 (for 2026-Q2).
fn two_runs(dir: &Path) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    generate_into(&data, &["--partners", "3000", "--periods", "2"]);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let fast = "\n[segments]\nk = 3\nbootstrap = 0\n";
    std::fs::write(
        data.join("first.toml"),
        format!("{}{fast}", config.replace("2026-Q1", "2025-Q4")),
    )
    .expect("config");
    std::fs::write(data.join("second.toml"), format!("{config}{fast}")).expect("config");
    let (first, second) = (dir.join("run-1"), dir.join("run-2"));
    for (config, out) in [("first.toml", &first), ("second.toml", &second)] {
        let (code, _, stderr) = run(&mut segtune_run(&data.join(config), out));
        assert_eq!(code, 0, "{stderr}");
    }
    (first, second)
}

fn approve(run_dir: &Path) {
    let (code, stdout, stderr) = run(segtune()
        .arg("approve")
        .arg(run_dir)
        .args(["--by", "Ops Lead"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"approved_by\":\"Ops Lead\""), "{stdout}");
}

fn publish(run_dir: &Path, to: &Path, extra: &[&str]) -> (i32, String, String) {
    run(segtune()
        .arg("publish")
        .arg(run_dir)
        .arg("--to")
        .arg(to)
        .args(extra))
}

fn latest(to: &Path) -> String {
    std::fs::read_link(to.join("latest"))
        .expect("latest is a link")
        .to_string_lossy()
        .into_owned()
}

/// The published weights through `latest`: every segment's weights sum to 1.
fn assert_whole(to: &Path) {
    let (_, batches) = read(&to.join("latest/weights.parquet"));
    let mut sums = std::collections::BTreeMap::new();
    for (segment, weight) in u32s(&batches, "segment_id")
        .into_iter()
        .zip(floats(&batches, "weight"))
    {
        *sums.entry(segment.expect("segment")).or_insert(0.0) += weight.expect("weight");
    }
    assert!(!sums.is_empty());
    for (segment, sum) in sums {
        assert!((sum - 1.0).abs() < 1e-9, "segment {segment}: {sum}");
    }
    for file in ["weights.json", "weights.schema.json"] {
        let text = std::fs::read_to_string(to.join("latest").join(file)).expect(file);
        let _: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    }
}

#[test]
fn only_approved_runs_are_published_whole_and_latest_moves_forward_or_rolls_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = two_runs(dir.path());
    let to = dir.path().join("published");

    let (code, _, stderr) = publish(&first, &to, &[]);
    assert_eq!(code, 2, "an unapproved run: {stderr}");
    assert!(stderr.contains("not approved"), "{stderr}");
    assert!(!to.join("latest").exists());

    approve(&first);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(first.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["status"], "approved");
    assert_eq!(manifest["approval"]["approved_by"], "Ops Lead");
    assert!(first.join("weights_proposed.parquet").exists());
    let (code, _, stderr) = run(segtune().arg("approve").arg(&first).args(["--by", "X"]));
    assert_eq!(code, 2, "approving twice: {stderr}");
    // The report says so, and `segtune report` renders the same page again.
    let page = std::fs::read_to_string(first.join("report.html")).expect("report");
    assert!(page.contains("id=\"status\">approved<") && page.contains("approved by Ops Lead"));
    let (code, _, stderr) = run(segtune().arg("report").arg(&first));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(first.join("report.html")).expect("report"),
        page
    );

    let (code, stdout, stderr) = publish(&first, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"changed\":true"), "{stdout}");
    let first_id = manifest["run_id"].as_str().expect("run id").to_string();
    let page = std::fs::read_to_string(first.join("report.html")).expect("report");
    assert!(
        page.contains("id=\"status\">published<"),
        "the report shows the publish"
    );
    assert_eq!(latest(&to), format!("history/2026-Q1/{first_id}"));
    assert_whole(&to);
    let version = to.join(latest(&to));
    let files: Vec<String> = std::fs::read_dir(&version)
        .expect("version")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let bytes = std::fs::read(version.join("weights.parquet")).expect("bytes");

    // A republish changes nothing.
    let (code, stdout, _) = publish(&first, &to, &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\"changed\":false"), "{stdout}");

    // The next period, then back with --rollback only.
    approve(&second);
    let (code, _, stderr) = publish(&second, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(latest(&to).starts_with("history/2026-Q2/"));
    assert_whole(&to);
    let (code, _, stderr) = publish(&first, &to, &[]);
    assert_eq!(code, 2, "an older period without --rollback: {stderr}");
    assert!(stderr.contains("--rollback"), "{stderr}");
    let (code, _, stderr) = publish(&first, &to, &["--rollback"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(latest(&to), format!("history/2026-Q1/{first_id}"));
    // Published versions are never rewritten.
    assert_eq!(
        std::fs::read(version.join("weights.parquet")).expect("bytes"),
        bytes
    );
    let reasons = strings(&read(&to.join("latest/weights.parquet")).1, "reason");
    assert!(reasons.iter().all(Option::is_some));

    // As downstream systems read it: pyarrow, DuckDB, a JSON Schema validator.
    let peer = run_peer(
        "pipeline/tests/peer/published_peer.py",
        &[to.display().to_string()],
    );
    assert_eq!(peer["schema_matches"], true, "{peer}");
    assert_eq!(peer["rows"], peer["json_rows"]);
    let sums = peer["segment_sums"].as_array().expect("sums");
    assert!(sums.len() >= 3, "{peer}");
    for sum in sums {
        let total = sum[1].as_f64().expect("total");
        assert!((total - 1.0).abs() < 1e-9, "DuckDB: {sum}");
    }
    assert_eq!(peer["json_errors"], serde_json::json!([]), "{peer}");
    assert_eq!(peer["broken_copy_rejected"], true);
}

#[test]
fn an_approver_name_with_html_in_it_is_shown_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = two_runs(dir.path());
    let (code, _, stderr) = run(segtune()
        .arg("approve")
        .arg(&first)
        .args(["--by", "<script>alert(1)</script> & Co"]));
    assert_eq!(code, 0, "{stderr}");
    let page = std::fs::read_to_string(first.join("report.html")).expect("report");
    assert!(
        !page.contains("<script>alert(1)"),
        "unescaped HTML in the report"
    );
    assert!(page.contains("approved by &lt;script&gt;alert(1)&lt;&#x2f;script&gt; &amp; Co"));
}

#[test]
fn a_failure_before_the_switch_leaves_the_previous_version_and_concurrent_publishes_do_not_interleave(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = two_runs(dir.path());
    let to = dir.path().join("published");
    approve(&first);
    approve(&second);
    let (code, _, stderr) = publish(&first, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    let before = latest(&to);

    let (code, _, stderr) = run(segtune()
        .env("SEGTUNE_FAIL_BEFORE_LATEST", "1")
        .arg("publish")
        .arg(&second)
        .arg("--to")
        .arg(&to));
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(latest(&to), before, "latest must not move");
    assert_whole(&to);
    // No partial folder stands under a version's name.
    for entry in std::fs::read_dir(to.join("history/2026-Q2")).expect("history") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(!name.starts_with('.'), "a staging folder was left: {name}");
    }

    // Two publishes of the same run at once: one does it, the other waits
    // for the lock and finds nothing to do.
    let spawn = || {
        segtune()
            .arg("publish")
            .arg(&second)
            .arg("--to")
            .arg(&to)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let (a, b) = (spawn(), spawn());
    let outputs = [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ];
    let changed: Vec<bool> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).contains("\"changed\":true")
        })
        .collect();
    assert_eq!(changed.iter().filter(|c| **c).count(), 1, "{changed:?}");
    assert!(latest(&to).starts_with("history/2026-Q2/"));
    assert_whole(&to);
}
