//! The whole pipeline end to end: against the generator's truth, byte for
//! byte across thread counts, with and without truth/ present, and every
//! output read back against the schemas of data/SCHEMA.md.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use segtune_data::schema;

use crate::common::{
    assert_mentions, floats, generate_into, listing, read, rewrite_with_row_groups, run,
    segment_of, segtune, segtune_run, strings, u32s, u64s,
};

fn demo(dir: &Path, partners: usize) -> PathBuf {
    let out = dir.join("demo");
    let (code, stdout, stderr) = run(segtune()
        .args(["demo", "--partners", &partners.to_string(), "--out"])
        .arg(&out));
    assert_eq!(code, 0, "{stderr}");
    assert_mentions(
        &stdout,
        &[
            "Segments",
            "Highest net value per segment",
            "Weights for 2026-Q4",
            "report.html",
        ],
    );
    out
}

fn generate(dir: &Path, partners: usize) -> PathBuf {
    let out = dir.join("data");
    generate_into(&out, &["--partners", &partners.to_string()]);
    out
}

fn run_segtune(
    config: &Path,
    out: &Path,
    extra: &[&str],
    threads: Option<usize>,
) -> (i32, String, String) {
    let mut command = segtune_run(config, out);
    command.args(extra);
    if let Some(threads) = threads {
        command.env("RAYON_NUM_THREADS", threads.to_string());
    }
    run(&mut command)
}

/// Every output file's bytes; the manifest without its timings.
fn output_bytes(run_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (path, _) in listing(run_dir) {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut bytes = std::fs::read(&path).expect("read");
        if name == "manifest.json" {
            let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
            manifest.as_object_mut().expect("object").remove("timings");
            bytes = manifest.to_string().into_bytes();
        }
        if name.ends_with(".parquet") || name.ends_with(".json") {
            out.insert(name, bytes);
        }
    }
    out
}

#[test]
fn the_true_best_scheme_leads_or_is_within_the_leaders_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = demo(dir.path(), 50_000);
    let (_, segments) = read(&root.join("run/segments.parquet"));
    let (_, truth) = read(&root.join("data/truth/2026-Q3/archetypes.parquet"));
    let archetype_of: HashMap<String, String> = strings(&truth, "partner_id")
        .into_iter()
        .flatten()
        .zip(strings(&truth, "archetype").into_iter().flatten())
        .collect();
    let mut landed: BTreeMap<String, BTreeMap<u32, usize>> = BTreeMap::new();
    for (partner, segment) in strings(&segments, "partner_id")
        .into_iter()
        .flatten()
        .zip(u32s(&segments, "segment_id").into_iter().flatten())
    {
        *landed
            .entry(archetype_of[&partner].clone())
            .or_default()
            .entry(segment)
            .or_default() += 1;
    }
    let truth_cells: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root.join("data/truth/lift.json")).expect("truth"),
    )
    .expect("json");
    let (_, lift) = read(&root.join("run/lift.parquet"));
    let (segment_ids, schemes, nets, n_treated, costs, ci_low, ci_high) = (
        u32s(&lift, "segment_id"),
        strings(&lift, "scheme_id"),
        floats(&lift, "net"),
        u64s(&lift, "n_treated"),
        floats(&lift, "cost"),
        floats(&lift, "ci_low"),
        floats(&lift, "ci_high"),
    );
    let mut passed = Vec::new();
    for (archetype, segments) in &landed {
        let (segment, _) = segments
            .iter()
            .max_by_key(|(_, n)| **n)
            .expect("some segment");
        let best = truth_cells
            .iter()
            .filter(|c| c["period"] == "2026-Q3" && c["archetype"] == archetype.as_str())
            .max_by(|a, b| {
                a["true_net"]
                    .as_f64()
                    .unwrap_or(f64::MIN)
                    .total_cmp(&b["true_net"].as_f64().unwrap_or(f64::MIN))
            })
            .and_then(|c| c["scheme_id"].as_str())
            .expect("truth has the archetype")
            .to_string();
        // Estimated net per treated partner of each scheme in that segment, with the leader's interval.
        let rows: Vec<usize> = (0..segment_ids.len())
            .filter(|i| segment_ids[*i] == Some(*segment) && nets[*i].is_some())
            .collect();
        let per = |i: usize| nets[i].unwrap_or(f64::MIN) / n_treated[i].unwrap_or(1).max(1) as f64;
        let Some(&leader) = rows.iter().max_by(|a, b| per(**a).total_cmp(&per(**b))) else {
            continue;
        };
        let Some(&best_row) = rows
            .iter()
            .find(|i| schemes[**i].as_deref() == Some(best.as_str()))
        else {
            continue;
        };
        let cost_per = costs[leader].unwrap_or(0.0) / n_treated[leader].unwrap_or(1).max(1) as f64;
        let low = 0.3 * ci_low[leader].unwrap_or(f64::NAN) - cost_per;
        let high = 0.3 * ci_high[leader].unwrap_or(f64::NAN) - cost_per;
        if leader == best_row || (low..=high).contains(&per(best_row)) {
            passed.push(archetype.clone());
        }
    }
    assert!(
        passed.len() >= 5,
        "only {passed:?} of {:?} pass",
        landed.keys().collect::<Vec<_>>()
    );
}

#[test]
fn outputs_are_byte_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 8_000);
    let mut outputs = Vec::new();
    for threads in [1, 2, 8] {
        let out = dir.path().join(format!("run-{threads}"));
        let (code, stdout, stderr) =
            run_segtune(&data.join("segtune.toml"), &out, &[], Some(threads));
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
        outputs.push(output_bytes(&out));
    }
    assert!(outputs[0].len() >= 7, "{:?}", outputs[0].keys());
    for other in &outputs[1..] {
        assert_eq!(
            other.keys().collect::<Vec<_>>(),
            outputs[0].keys().collect::<Vec<_>>(),
            "the same files whatever the thread count"
        );
        for (name, bytes) in &outputs[0] {
            assert!(
                other.get(name) == Some(bytes),
                "{name} differs between thread counts"
            );
        }
    }
}

#[test]
fn f32_iterations_give_the_f64_segments_and_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 8_000);
    let config = data.join("segtune.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(
        !text.contains("[segments]"),
        "the generated config has no [segments]"
    );
    let single = data.join("f32.toml");
    std::fs::write(
        &single,
        format!("{text}\n[segments]\nprecision = \"f32\"\n"),
    )
    .expect("write");
    let (exact, rounded) = (dir.path().join("f64"), dir.path().join("f32"));
    for (config, out) in [(&config, &exact), (&single, &rounded)] {
        let (code, _, stderr) = run_segtune(config, out, &[], None);
        assert_eq!(code, 0, "{stderr}");
    }
    let manifest = |run: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).expect("manifest"))
            .expect("json")
    };
    let (m64, m32) = (manifest(&exact), manifest(&rounded));
    // The default is left out of the resolved configuration (run ids of
    // earlier runs stay), f32 is recorded, and so the run ids differ.
    assert!(!m64.to_string().contains("\"precision\""));
    assert!(m32.to_string().contains("\"precision\":\"f32\""), "{m32}");
    assert_ne!(m64["run_id"], m32["run_id"]);
    // Same k, and the same segment for (almost) every partner.
    let (s64, s32) = (
        segment_of(&exact.join("segments.parquet")),
        segment_of(&rounded.join("segments.parquet")),
    );
    assert_eq!(s64.len(), s32.len());
    let k = |s: &HashMap<String, u32>| s.values().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(k(&s64), k(&s32));
    let same = s64.iter().filter(|(p, s)| s32.get(*p) == Some(s)).count();
    assert!(
        same as f64 >= 0.995 * s64.len() as f64,
        "{same} of {} partners in the same segment",
        s64.len()
    );
}

#[test]
fn a_file_of_many_row_groups_gives_the_same_run_as_its_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 8_000);
    let config = data.join("segtune.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let period = text
        .lines()
        .find_map(|line| line.strip_prefix("period = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("period")
        .to_string();
    let mut rewritten = text.clone();
    for table in ["partners", "assignments", "outcomes"] {
        let input = data
            .join("periods")
            .join(&period)
            .join(format!("{table}.parquet"));
        let target = data.join(format!("{table}-groups.parquet"));
        rewrite_with_row_groups(&input, &target, 1_000);
        rewritten = rewritten.replace(
            &format!("periods/{period}/{table}.parquet\""),
            &format!("{table}-groups.parquet\""),
        );
    }
    assert_ne!(rewritten, text, "the inputs were redirected");
    let single = data.join("groups.toml");
    std::fs::write(&single, rewritten).expect("write");
    let (parts, groups) = (dir.path().join("parts"), dir.path().join("groups"));
    for (config, out) in [(&config, &parts), (&single, &groups)] {
        let (code, _, stderr) = run_segtune(config, out, &[], None);
        assert_eq!(code, 0, "{stderr}");
    }
    assert_eq!(
        segment_of(&parts.join("segments.parquet")),
        segment_of(&groups.join("segments.parquet"))
    );
    for file in ["lift.parquet", "weights.parquet"] {
        let (a, b) = (read(&parts.join(file)).1, read(&groups.join(file)).1);
        for column in ["lift", "weight"] {
            if a[0].schema().index_of(column).is_ok() {
                assert_eq!(floats(&a, column), floats(&b, column), "{file} {column}");
            }
        }
    }
}

#[test]
fn an_existing_run_folder_needs_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 2_000);
    let out = dir.path().join("run");
    assert_eq!(
        run_segtune(&data.join("segtune.toml"), &out, &[], None).0,
        0
    );
    let before = output_bytes(&out);
    let (code, stdout, stderr) = run_segtune(&data.join("segtune.toml"), &out, &[], None);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert_mentions(&stderr, &["already exists", "--force"]);
    assert_eq!(before, output_bytes(&out), "the earlier run is untouched");
    let (code, _, stderr) = run_segtune(&data.join("segtune.toml"), &out, &["--force"], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        before,
        output_bytes(&out),
        "the same inputs give the same outputs"
    );
    let siblings: Vec<_> = listing(dir.path())
        .into_iter()
        .filter(|(p, _)| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".run"))
        })
        .collect();
    assert!(siblings.is_empty(), "no staging folders left: {siblings:?}");
}

#[test]
fn a_run_does_not_need_truth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 3_000);
    let with_truth = dir.path().join("with");
    assert_eq!(
        run_segtune(&data.join("segtune.toml"), &with_truth, &[], None).0,
        0
    );
    std::fs::remove_dir_all(data.join("truth")).expect("remove truth");
    let without = dir.path().join("without");
    let (code, _, stderr) = run_segtune(&data.join("segtune.toml"), &without, &[], None);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(output_bytes(&with_truth), output_bytes(&without));
}

#[test]
fn every_output_matches_the_documented_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 4_000);
    let out = dir.path().join("run");
    let (code, stdout, stderr) = run_segtune(&data.join("segtune.toml"), &out, &[], None);
    assert_eq!(code, 0, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(line["evaluated_period"], "2026-Q3");
    assert_eq!(line["target_period"], "2026-Q4");
    assert_eq!(line["segments"], 6);

    let fields = |s: &arrow_schema::Schema| {
        s.fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone(), f.is_nullable()))
            .collect::<Vec<_>>()
    };
    for (file, expected) in [
        ("segments.parquet", schema::segments()),
        ("lift.parquet", schema::lift()),
        ("power.parquet", schema::power()),
        ("randomisation.parquet", schema::randomisation()),
        ("weights.parquet", schema::weights()),
        ("assignments_next.parquet", schema::assignments_next()),
    ] {
        let (actual, _) = read(&out.join(file));
        assert_eq!(fields(&actual), fields(&expected), "{file}");
    }
    let features: Vec<String> = segtune_data::schema::GENERATED_FEATURES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    let (profiles, profile_batches) = read(&out.join("segment_profiles.parquet"));
    assert_eq!(
        fields(&profiles),
        fields(&schema::segment_profiles(&features))
    );
    let shares: f64 = floats(&profile_batches, "share_partners")
        .into_iter()
        .flatten()
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);

    // Weights: the JSON holds the Parquet's rows, and each segment's weights sum to 1.
    let (_, weights) = read(&out.join("weights.parquet"));
    let json: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("weights.json")).expect("json"))
            .expect("array");
    assert_eq!(
        json.len(),
        weights.iter().map(RecordBatch::num_rows).sum::<usize>()
    );
    let keys: Vec<String> = schema::weights()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut sums: BTreeMap<u64, f64> = BTreeMap::new();
    for row in &json {
        let object = row.as_object().expect("object");
        assert_eq!(
            object
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            keys.iter().cloned().collect()
        );
        *sums
            .entry(row["segment_id"].as_u64().expect("id"))
            .or_default() += row["weight"].as_f64().expect("weight");
    }
    assert_eq!(sums.len(), 6);
    assert!(sums.values().all(|s| (s - 1.0).abs() < 1e-9), "{sums:?}");

    // Every partner is segmented and drawn; the draw holds out 10 % per segment.
    let (_, segments) = read(&out.join("segments.parquet"));
    let (_, next) = read(&out.join("assignments_next.parquet"));
    let n = segments.iter().map(RecordBatch::num_rows).sum::<usize>();
    assert_eq!(next.iter().map(RecordBatch::num_rows).sum::<usize>(), n);
    let holdouts = strings(&next, "scheme_id")
        .iter()
        .filter(|s| s.as_deref() == Some("holdout"))
        .count();
    assert!(
        (holdouts as f64 / n as f64 - 0.10).abs() < 0.002,
        "{holdouts} of {n}"
    );

    // The manifest names every input with its hash and the run id.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["run_id"], line["run_id"]);
    assert_eq!(manifest["status"], "proposed");
    let inputs = manifest["inputs"].as_array().expect("inputs");
    assert_eq!(inputs.len(), 3);
    assert!(inputs
        .iter()
        .all(|i| i["sha256"].as_str().is_some_and(|h| h.len() == 64)));
    assert!(manifest["timings"]["seconds"]["segment"].as_f64().is_some());
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert_mentions(
        &report,
        &["<svg", "Weights for 2026-Q4", "Lift of each scheme"],
    );
    assert!(!report.contains("<script"), "no JavaScript");
}

#[test]
fn without_evidence_a_run_writes_initial_weights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = generate(dir.path(), 2_000);
    let config = std::fs::read_to_string(data.join("segtune.toml")).expect("config");
    let without_evidence: String = config
        .lines()
        .filter(|l| !l.starts_with("assignments") && !l.starts_with("outcomes"))
        .take_while(|l| !l.starts_with("[[outcome]]"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(data.join("no-evidence.toml"), &without_evidence).expect("write");
    let (code, _, stderr) = run_segtune(
        &data.join("no-evidence.toml"),
        &dir.path().join("a"),
        &[],
        None,
    );
    assert_eq!(code, 2, "schemes are needed: {stderr}");
    assert_mentions(&stderr, &["tuning.schemes"]);
    std::fs::write(
        data.join("no-evidence.toml"),
        format!("{without_evidence}\n[tuning]\nschemes = [\"a\", \"b\", \"c\", \"d\"]\n"),
    )
    .expect("write");
    let out = dir.path().join("b");
    let (code, _, stderr) = run_segtune(&data.join("no-evidence.toml"), &out, &[], None);
    assert_eq!(code, 0, "{stderr}");
    let (_, weights) = read(&out.join("weights.parquet"));
    assert!(floats(&weights, "weight").iter().all(|w| *w == Some(0.25)));
    assert!(strings(&weights, "reason")
        .iter()
        .all(|r| r.as_deref() == Some("set to 0.25: no evidence yet: equal initial weight")));
    let (_, lift) = read(&out.join("lift.parquet"));
    assert_eq!(lift.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
}
