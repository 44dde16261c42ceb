//! `segtune approve` and `segtune publish`: only approved runs are
//! published, versions land whole under history/, `latest` switches
//! atomically, a republish changes nothing, an older period needs
//! --rollback, a failure before the switch leaves the previous version in
//! place, and concurrent publishes do not interleave.

use std::path::{Path, PathBuf};

use crate::common::{floats, read, run, run_peer, segtune, segtune_run, strings, two_runs, u32s};

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
    // version.json says which run and approval the version is.
    let version: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(to.join("latest/version.json")).expect("version.json"),
    )
    .expect("JSON");
    let link = latest(to);
    let parts: Vec<&str> = link.split('/').collect();
    assert_eq!(parts.len(), 3, "{link}");
    assert_eq!(version["run_id"], parts[2]);
    assert_eq!(version["target_period"], parts[1]);
    assert!(version["evaluated_period"].is_string(), "{version}");
    assert_eq!(version["approved_by"], "Ops Lead");
    assert!(version["program_version"].is_string(), "{version}");
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
    let mut files: Vec<String> = std::fs::read_dir(&version)
        .expect("version")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected = segtune::publish::PUBLISHED_FILES.map(String::from).to_vec();
    expected.sort();
    assert_eq!(files, expected);
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

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    crate::common::listing(dir)
        .into_iter()
        .filter(|(path, _)| path.is_file())
        .map(|(path, _)| {
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect()
}

/// (segment, scheme) -> (weight, reason) from a run's weights.json.
fn weights_of(run_dir: &Path) -> std::collections::BTreeMap<(u32, String), (f64, String, String)> {
    let text = std::fs::read_to_string(run_dir.join("weights.json")).expect("weights.json");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("JSON");
    rows.iter()
        .map(|r| {
            (
                (
                    r["segment_id"].as_u64().expect("id") as u32,
                    r["scheme_id"].as_str().expect("scheme").to_string(),
                ),
                (
                    r["weight"].as_f64().expect("weight"),
                    r["reason"].as_str().expect("reason").to_string(),
                    r["segment_name"].as_str().expect("name").to_string(),
                ),
            )
        })
        .collect()
}

/// A run of 2026-Q1 with the 2025-Q4 run as its previous run (lift within
/// the previous run's segments, which overrides of this run do not touch).
fn run_after(dir: &Path, previous: &Path) -> PathBuf {
    let data = dir.join("data");
    let config = std::fs::read_to_string(data.join("second.toml")).expect("config");
    let config = config.replacen(
        "[inputs]\n",
        &format!(
            "[inputs]\nprevious-run = {:?}\n",
            previous.display().to_string()
        ),
        1,
    );
    std::fs::write(data.join("third.toml"), config).expect("config");
    let out = dir.join("run-3");
    let (code, _, stderr) = run(&mut segtune_run(&data.join("third.toml"), &out));
    assert_eq!(code, 0, "{stderr}");
    out
}

fn approve_with(run_dir: &Path, overrides: &Path) -> (i32, String, String) {
    run(segtune()
        .arg("approve")
        .arg(run_dir)
        .args(["--by", "Ops Lead", "--overrides"])
        .arg(overrides))
}

#[test]
fn approving_with_each_kind_of_override_re_derives_the_run_and_an_invalid_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = two_runs(dir.path());
    let second = run_after(dir.path(), &first);
    let proposed = weights_of(&second);
    let segments: Vec<u32> = {
        let mut ids: Vec<u32> = proposed.keys().map(|(s, _)| *s).collect();
        ids.dedup();
        ids
    };
    assert!(segments.len() >= 4, "{segments:?}");
    let schemes: Vec<String> = proposed
        .keys()
        .filter(|(s, _)| *s == segments[0])
        .map(|(_, scheme)| scheme.clone())
        .collect();
    let before = contents(&second);
    let manifest_before: serde_json::Value =
        serde_json::from_slice(&before[&second.join("manifest.json")]).expect("manifest");
    let floor = manifest_before["config"]["tuning"]["floor"]
        .as_f64()
        .expect("floor");

    // Invalid overrides: exit 2, every problem named, nothing changed.
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let (a, b, c, d) = (segments[0], segments[1], segments[2], segments[3]);
    let other_name = &proposed[&(b, schemes[0].clone())].2;
    for (text, expected) in [
        ("[[scheme]]\nsegment = 999\nscheme = \"nope\"\ncap = 1.5\npin = 0.1\n", vec!["segment 999 is not in this run", "scheme `nope` is not in this run", "exactly one of `pin`, `cap` or `off`", "`cap = 1.5`"]),
        (&format!("[[rename]]\nsegment = {a}\nname = \"{other_name}\"\n"), vec!["would both be called"]),
        (&format!("[[pin-partners]]\nsegment = {a}\npartners = [\"P-unknown\"]\n"), vec!["partner `P-unknown` is not among this run's partners"]),
        (&format!("[[scheme]]\nsegment = {a}\nscheme = \"{}\"\npin = 0.9\n[[scheme]]\nsegment = {a}\nscheme = \"{}\"\npin = 0.9\n", schemes[0], schemes[1]), vec![&format!("the [[scheme]] entries of segment {a}: the least the"), "more than 1", "nothing was changed"]),
        (&format!("[[scheme]]\nsegment = {a}\nscheme = \"{}\"\ncap = {}\n", schemes[0], floor / 2.0), vec![&format!("`{}` is capped at {}, below the floor of {floor}", schemes[0], floor / 2.0)]),
        ("[[renam]]\nsegment = 1\n", vec!["unknown field `renam`", "line 1"]),
        ("", vec!["has no [[rename]], [[pin-partners]] or [[scheme]] entry"]),
    ] {
        let (code, _, stderr) = approve_with(&second, &write("bad.toml", text));
        assert_eq!(code, 2, "{text}\n{stderr}");
        crate::common::assert_mentions(&stderr, &expected);
        assert!(contents(&second) == before, "{text}: the run folder changed");
    }

    // One override of each kind.
    let segment_rows = read(&second.join("segments.parquet")).1;
    let ids = strings(&segment_rows, "partner_id");
    let of = u32s(&segment_rows, "segment_id");
    let moved: Vec<String> = ids
        .iter()
        .zip(&of)
        .filter(|(_, s)| **s != Some(b))
        .take(3)
        .map(|(id, _)| id.clone().expect("id"))
        .collect();
    let (capped, cap_weight) = schemes
        .iter()
        .map(|s| (s.clone(), proposed[&(d, s.clone())].0))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .expect("a scheme");
    let cap = (cap_weight - 0.1).max(floor + 0.01);
    let name = "<b>Key</b> & accounts";
    let overrides = write(
        "overrides.toml",
        &format!(
            "[[rename]]\nsegment = {a}\nname = \"{name}\"\n\n\
             [[pin-partners]]\nsegment = {b}\npartners = {moved:?}\n\n\
             [[scheme]]\nsegment = {c}\nscheme = \"{s0}\"\npin = 0.3\n\n\
             [[scheme]]\nsegment = {d}\nscheme = \"{capped}\"\ncap = {cap}\n\n\
             [[scheme]]\nsegment = {a}\nscheme = \"{s1}\"\noff = true\n",
            s0 = schemes[0],
            s1 = schemes[1],
        ),
    );
    let (code, stdout, stderr) = approve_with(&second, &overrides);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("renamed segment"), "{stdout}");

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(second.join("manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["status"], "approved");
    assert_eq!(
        manifest["run_id"], manifest_before["run_id"],
        "an approval keeps the run id"
    );
    assert_eq!(manifest["approval"]["approved_by"], "Ops Lead");
    let kinds: Vec<&str> = manifest["approval"]["overrides"]
        .as_array()
        .expect("overrides")
        .iter()
        .map(|o| o["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["pin_partners", "rename", "scheme", "scheme", "scheme"]
    );
    assert_eq!(
        std::fs::read(second.join("weights_proposed.parquet")).expect("proposed"),
        before[&second.join("weights.parquet")],
        "the proposal is kept as it was"
    );

    // Weights: the overrides hold, every other limit still holds, and
    // segments without a scheme override keep the proposal.
    let approved = weights_of(&second);
    assert_eq!(approved[&(c, schemes[0].clone())].0, 0.3);
    assert!(approved[&(d, capped.clone())].0 <= cap + 1e-12);
    assert_eq!(approved[&(a, schemes[1].clone())].0, 0.0);
    for ((segment, scheme), (weight, reason, segment_name)) in &approved {
        let sum: f64 = approved
            .iter()
            .filter(|((s, _), _)| s == segment)
            .map(|(_, (w, _, _))| w)
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "segment {segment}: {sum}");
        let overridden = [(c, &schemes[0]), (d, &capped), (a, &schemes[1])]
            .iter()
            .any(|(s, x)| s == segment && *x == scheme);
        if overridden {
            assert!(reason.contains("by Ops Lead at approval"), "{reason}");
        } else if *segment != a {
            assert!(*weight >= floor - 1e-12, "{segment} {scheme}: {weight}");
        }
        if ![a, c, d].contains(segment) {
            assert_eq!(
                (*weight, reason),
                (
                    proposed[&(*segment, scheme.clone())].0,
                    &proposed[&(*segment, scheme.clone())].1
                ),
                "segment {segment} has no scheme override"
            );
        }
        let expected_name = if *segment == a {
            name
        } else {
            &proposed[&(*segment, scheme.clone())].2
        };
        assert_eq!(segment_name, expected_name);
    }

    // Segments, profiles and the next draw agree with the pins and the name.
    let rows = read(&second.join("segments.parquet")).1;
    let by_partner: std::collections::HashMap<String, (u32, String, String, Option<f64>)> =
        strings(&rows, "partner_id")
            .into_iter()
            .zip(u32s(&rows, "segment_id"))
            .zip(strings(&rows, "source"))
            .zip(strings(&rows, "segment_name"))
            .zip(floats(&rows, "distance"))
            .map(|((((id, s), source), n), distance)| {
                (
                    id.expect("id"),
                    (
                        s.expect("segment"),
                        source.expect("source"),
                        n.expect("name"),
                        distance,
                    ),
                )
            })
            .collect();
    for partner in &moved {
        let (segment, source, _, distance) = &by_partner[partner];
        assert_eq!(
            (*segment, source.as_str(), *distance),
            (b, "override", None),
            "{partner}"
        );
    }
    assert_eq!(
        by_partner.values().filter(|v| v.1 == "override").count(),
        moved.len()
    );
    assert!(by_partner
        .values()
        .filter(|v| v.0 == a)
        .all(|v| v.2 == name));
    let profiles = read(&second.join("segment_profiles.parquet")).1;
    let sizes: std::collections::BTreeMap<u32, u64> = u32s(&profiles, "segment_id")
        .into_iter()
        .zip(crate::common::u64s(&profiles, "n_partners"))
        .map(|(s, n)| (s.expect("id"), n.expect("n")))
        .collect();
    for (segment, size) in &sizes {
        let members = by_partner.values().filter(|v| v.0 == *segment).count() as u64;
        assert_eq!(*size, members, "segment {segment}");
    }
    let next = crate::common::segment_of(&second.join("assignments_next.parquet"));
    for partner in &moved {
        assert_eq!(next[partner], b, "{partner} is drawn in its pinned segment");
    }

    // The report shows the override name as text.
    let page = std::fs::read_to_string(second.join("report.html")).expect("report");
    assert!(!page.contains("<b>Key</b>"), "unescaped HTML in the report");
    assert!(page.contains("&lt;b&gt;Key&lt;&#x2f;b&gt; &amp; accounts"));

    // Approving again is refused; the approved weights are what is published.
    let (code, _, stderr) = approve_with(&second, &overrides);
    assert_eq!(code, 2, "{stderr}");
    let to = dir.path().join("published");
    let (code, _, stderr) = publish(&second, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_whole(&to);
    assert_eq!(
        std::fs::read(to.join("latest/weights.json")).expect("published"),
        std::fs::read(second.join("weights.json")).expect("approved")
    );
}

#[test]
fn approving_with_overrides_refuses_inputs_changed_since_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = two_runs(dir.path());
    let second = run_after(dir.path(), &first);
    let overrides = dir.path().join("overrides.toml");
    let weights = weights_of(&second);
    let (segment, _) = weights.keys().next().expect("a weight");
    std::fs::write(
        &overrides,
        format!("[[rename]]\nsegment = {segment}\nname = \"Renamed\"\n"),
    )
    .expect("write");
    // The previous run's weights change after this run read them.
    let before = contents(&second);
    let previous_weights = first.join("weights.parquet");
    let mut bytes = std::fs::read(&previous_weights).expect("read");
    bytes.push(b'\n');
    std::fs::write(&previous_weights, bytes).expect("write");
    let (code, _, stderr) = approve_with(&second, &overrides);
    assert_eq!(code, 3, "{stderr}");
    crate::common::assert_mentions(&stderr, &["weights.parquet", "previous run input changed"]);
    assert!(contents(&second) == before, "the run folder changed");
}

#[test]
fn a_run_approved_again_with_other_weights_is_not_published_over_its_version() {
    // The same run (same inputs, so the same run id) approved with one
    // renaming and published; then re-run and approved with another. Its
    // version exists with other weights: refused (exit 2), and `latest` and
    // the version keep the first approval's weights. Approved the first way
    // again, it publishes (nothing to change).
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, second) = two_runs(dir.path());
    let segment = weights_of(&second).keys().next().expect("a weight").0;
    let rename = |name: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!("[[rename]]\nsegment = {segment}\nname = \"{name}\"\n"),
        )
        .expect("overrides");
        path
    };
    let to = dir.path().join("published");
    let (code, _, stderr) = approve_with(&second, &rename("Alpha"));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = publish(&second, &to, &[]);
    assert_eq!(code, 0, "{stderr}");
    let version = latest(&to);
    let published = contents(&to.join(&version));
    let config = dir.path().join("data/second.toml");
    for (name, expected) in [("Beta", 2), ("Alpha", 0)] {
        let (code, _, stderr) = run(segtune_run(&config, &second).arg("--force"));
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = approve_with(&second, &rename(name));
        assert_eq!(code, 0, "{stderr}");
        let (code, _, stderr) = publish(&second, &to, &[]);
        assert_eq!(code, expected, "{name}: {stderr}");
        if expected == 2 {
            assert!(
                stderr.contains("already published with other weights"),
                "{stderr}"
            );
        }
        assert_eq!(latest(&to), version);
        assert!(
            contents(&to.join(&version)) == published,
            "{name}: the version changed"
        );
    }
    assert!(
        std::fs::read_to_string(to.join(&version).join("weights.json"))
            .expect("published weights")
            .contains("Alpha")
    );
}

#[test]
fn a_run_whose_files_changed_after_it_is_neither_approved_nor_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = two_runs(dir.path());
    let to = dir.path().join("published");
    // Edited weights (a JSON with one weight more): publish refuses, names
    // the file, and publishes nothing.
    approve(&first);
    let json = first.join("weights.json");
    let text = std::fs::read_to_string(&json).expect("weights.json");
    std::fs::write(
        &json,
        text.replacen("\"weight\":", "\"weight\": 0.5, \"was\":", 1),
    )
    .expect("tamper");
    let before = contents(&first);
    let (code, stdout, stderr) = publish(&first, &to, &[]);
    assert_eq!(code, 3, "{stdout}{stderr}");
    crate::common::assert_mentions(
        &stderr,
        &["weights.json", "was changed after the run", "SHA-256"],
    );
    assert!(!to.join("latest").exists() && !to.join("history").exists());
    assert!(contents(&first) == before, "the run folder changed");
    // A missing table: approve refuses and leaves the run proposed.
    std::fs::remove_file(second.join("lift.parquet")).expect("remove");
    let before = contents(&second);
    let (code, _, stderr) = run(segtune().arg("approve").arg(&second).args(["--by", "Ops"]));
    assert_eq!(code, 3, "{stderr}");
    crate::common::assert_mentions(&stderr, &["lift.parquet", "is missing from the run folder"]);
    assert!(contents(&second) == before, "the run folder changed");
}

#[test]
fn on_a_first_run_the_segments_overrides_leave_alone_keep_their_proposal() {
    // A first run: lift within the new segments, pooled across them, so a
    // pinned partner changes the evidence every segment's prior pools.
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = two_runs(dir.path());
    let proposed = weights_of(&first);
    let posterior_of = |run_dir: &Path| -> Vec<serde_json::Value> {
        let rows: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("posterior.json")).expect("posterior"),
        )
        .expect("JSON");
        rows
    };
    let posterior_before = posterior_of(&first);
    let rows = read(&first.join("segments.parquet")).1;
    let ids = strings(&rows, "partner_id");
    let of = u32s(&rows, "segment_id");
    let mut segments: Vec<u32> = proposed.keys().map(|(s, _)| *s).collect();
    segments.dedup();
    assert!(segments.len() >= 4, "{segments:?}");
    // The ten largest partners of one segment pinned to another (as the
    // partners' file lists them, in the segments' order); a cap in a third.
    // The rest are left alone.
    let partners = read(&dir.path().join("data/periods/2025-Q4/partners.parquet")).1;
    let revenue: std::collections::HashMap<String, f64> = strings(&partners, "partner_id")
        .into_iter()
        .zip(floats(&partners, "revenue_12m"))
        .filter_map(|(id, revenue)| Some((id?, revenue?)))
        .collect();
    // Partners move between segments with a lift estimate of their own, so
    // the pool the others borrow from changes.
    let estimated: Vec<u32> = segments
        .iter()
        .copied()
        .filter(|s| {
            proposed.iter().any(|((segment, _), (_, reason, _))| {
                segment == s && !reason.contains("no estimate")
            })
        })
        .collect();
    assert!(estimated.len() >= 2, "{proposed:?}");
    let (from, to) = (estimated[0], estimated[1]);
    let capped = *segments
        .iter()
        .find(|s| ![from, to].contains(*s))
        .expect("a third segment");
    let mut members: Vec<(f64, String)> = ids
        .iter()
        .zip(&of)
        .filter(|(_, s)| **s == Some(from))
        .map(|(id, _)| {
            let id = id.clone().expect("id");
            (revenue.get(&id).copied().unwrap_or(0.0), id)
        })
        .collect();
    members.sort_by(|a, b| b.0.total_cmp(&a.0));
    let moved: Vec<String> = members.into_iter().take(10).map(|(_, id)| id).collect();
    let scheme = proposed
        .keys()
        .find(|(s, _)| *s == capped)
        .map(|(_, scheme)| scheme.clone())
        .expect("a scheme");
    let overrides = dir.path().join("overrides.toml");
    std::fs::write(
        &overrides,
        format!(
            "[[pin-partners]]\nsegment = {to}\npartners = {moved:?}\n\n[[scheme]]\nsegment = {capped}\nscheme = \"{scheme}\"\ncap = 0.1\n"
        ),
    )
    .expect("overrides");
    let (code, _, stderr) = approve_with(&first, &overrides);
    assert_eq!(code, 0, "{stderr}");
    let approved = weights_of(&first);
    assert!(approved[&(capped, scheme.clone())].0 <= 0.1 + 1e-12);
    let untouched: Vec<u32> = segments
        .iter()
        .copied()
        .filter(|s| ![from, to, capped].contains(s))
        .collect();
    assert!(!untouched.is_empty());
    for ((segment, scheme), row) in &approved {
        if untouched.contains(segment) {
            assert_eq!(
                row,
                &proposed[&(*segment, scheme.clone())],
                "segment {segment} was left alone"
            );
        }
    }
    let posterior_after = posterior_of(&first);
    let kept = |rows: &[serde_json::Value]| -> Vec<serde_json::Value> {
        rows.iter()
            .filter(|r| untouched.iter().any(|s| r["segment_id"] == *s))
            .cloned()
            .collect()
    };
    assert_eq!(kept(&posterior_after), kept(&posterior_before));
    assert_eq!(posterior_after.len(), posterior_before.len());
}
